/* mqtt_conn.c -- MQTT packets of one connection: CONNECT and sign-in,
 * PUBLISH to T/req into the request dispatch, PUBACK as Ack, SUBSCRIBE
 * limited to the device's own topics, keep-alive; and the PUBLISHes the
 * gateway sends (mqtt_conn.h, README "MQTT"). */
#include "gateway/mqtt_conn.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/u64map.h"
#include "gateway/catchup_read.h"
#include "gateway/conn_auth.h"
#include "gateway/mqtt_auth.h"
#include "gateway/mqtt_connect_read.h"
#include "gateway/store_watch.h"
#include "gateway/mqtt_takeover.h"
#include "gateway/request_limits.h"
#include "gateway/store_reads.h"
#include "net/mqtt_codec.h"

enum {
    TOPIC_MAX = 48,             /* "p/" + 20 + "." + 10 + "/res" digits and all */
    PACKET_ID_SPAN = 65535,     /* packet ids 1..65535 */
    NO_DISCONNECT = 0xFF,       /* close_reason: the device disconnected, say nothing */
    MQTT_RC_TOPIC_ALIAS_INVALID = 0x94,
    MQTT_RC_NO_SUBSCRIPTION = 0x11,
    MQTT_RC_ADMIN_ACTION = 0x98,
    MQTT_RC_PAYLOAD_FORMAT_INVALID = 0x99,
    MQTT_RC_SESSION_TAKEN_OVER = 0x8E,
    ACK_HOLD_MAX = 32,          /* acknowledged events the cursor write may wait for (handle_puback) */
};

/* What an MQTT connection holds beyond struct conn: 40 bytes. */
typedef struct mqtt_link {
    buf ws_in;              /* MQTT over WebSocket: a packet not yet whole across messages */
    uint64_t user;          /* from the client id (the connection's once signed in) */
    uint32_t device;
    uint32_t max_packet;    /* the device's Maximum Packet Size (level 5); 0: none */
    uint16_t keep_alive_s;  /* agreed keep-alive (the server's, when it lowered it); 0: none */
    uint16_t receive_max;   /* the device's Receive Maximum (level 5); 0: not given */
    uint8_t level;          /* 4 or 5; 0 before a CONNECT was understood */
    uint8_t close_reason;   /* level 5 DISCONNECT reason when the server closes; 0: from the close code */
    bool connected : 1;     /* CONNACK sent: a signed-in device */
    bool clean_start : 1;
    bool auth_wait : 1;     /* level-5 AUTH exchange: nonce sent (c->auth), signature awaited */
    bool sub_res : 1;       /* subscribed to T/res */
    bool sub_ev : 1;        /* subscribed to T/ev */
    bool cursor_pending : 1; /* the resume cursor is being read off the worker (Cassandra) */
} mqtt_link;

static mqtt_link *link_of(const worker *w, const conn *c) {
    if (!w->mqtt_links) return NULL;
    uint64_t *v = u64map_get(w->mqtt_links, c->id);
    return v ? (mqtt_link *)(uintptr_t)*v : NULL;
}

bool mqtt_conn_accepted(worker *w, conn *c) {
    if (!w->mqtt_links && !(w->mqtt_links = calloc(1, sizeof *w->mqtt_links))) return false;
    mqtt_link *l = calloc(1, sizeof *l);
    if (!l) return false;
    if (u64map_put(w->mqtt_links, c->id, (uint64_t)(uintptr_t)l)) {
        free(l);
        return false;
    }
    c->mqtt = true;
    return true;
}

void mqtt_conn_free(worker *w, conn *c) {
    uint64_t v = 0;
    if (!w->mqtt_links || !u64map_remove(w->mqtt_links, c->id, &v)) return;
    mqtt_link *l = (mqtt_link *)(uintptr_t)v;
    if (l->connected && c->state == CONN_WS) atomic_fetch_sub(&g_metrics.mqtt_connections, 1);
    if (l->connected) mqtt_takeover_release(w, c, l->user, l->device);
    buf_free(&l->ws_in);
    free(l);
}

/* ---------------------------------------------------------------- output */

/* Over WebSocket each MQTT packet is one binary message (the WebSocket
 * header goes first); over TCP the packets follow each other. */
static size_t ws_head(const conn *c, uint8_t *dst, size_t mqtt_len) {
    return c->framed ? ws_write_header(dst, WS_OP_BINARY, true, mqtt_len, NULL) : 0;
}

static void out_packet(worker *w, conn *c, const uint8_t *p, size_t n) {
    if (n == 0) return;
    uint8_t *dst = buf_reserve(&c->out, WS_MAX_HEADER + n);
    if (!dst) return;   /* out of memory: the close follows anyway */
    size_t h = ws_head(c, dst, n);
    memcpy(dst + h, p, n);
    buf_commit(&c->out, h + n);
    METRIC_INC(frames_out_total);
    conn_mark_dirty(w, c);
}

static size_t topic_of(char *out, const conn *c, const char *suffix) {
    int n = snprintf(out, TOPIC_MAX, "p/%llu.%u/%s", (unsigned long long)c->user_id, c->device_id, suffix);
    return n > 0 && n < TOPIC_MAX ? (size_t)n : 0;
}

/* Room for a QoS 0 PUBLISH of payload_len bytes to T/res or T/ev, its
 * head written (*head: the bytes before the payload); NULL when the device
 * does not take it (or memory ran out). */
static uint8_t *publish_start(worker *w, conn *c, bool response, size_t payload_len, size_t *head) {
    mqtt_link *l = link_of(w, c);
    if (!l || !l->connected || !(response ? l->sub_res : l->sub_ev)) return NULL;
    char t[TOPIC_MAX];
    size_t tl = topic_of(t, c, response ? "res" : "ev");
    uint8_t mh[MQTT_PUBLISH_HEAD_MAX + TOPIC_MAX];
    size_t mhl = mqtt_encode_publish_head(mh, sizeof mh, l->level, t, tl, 0, false, 0, payload_len);
    /* 3.1.2.11.4: larger than the device takes: discarded as if sent */
    if (!mhl || (l->max_packet && mhl + payload_len > l->max_packet)) return NULL;
    uint8_t *dst = buf_reserve(&c->out, WS_MAX_HEADER + mhl + payload_len);
    if (!dst) {
        conn_close(w, c, WS_CLOSE_INTERNAL, "out of memory");
        return NULL;
    }
    size_t h = ws_head(c, dst, mhl + payload_len);
    memcpy(dst + h, mh, mhl);
    *head = h + mhl;
    return dst;
}

static void publish_done(worker *w, conn *c, size_t n) {
    buf_commit(&c->out, n);
    METRIC_INC(frames_out_total);
    conn_mark_dirty(w, c);
}

void mqtt_conn_send_bytes(worker *w, conn *c, const uint8_t *data, size_t len) {
    frame_peek pk;
    bool response = frame_peek_parse(data, len, &pk) == 0 && pk.body == PARLEY__V1__FRAME__BODY_RESPONSE;
    size_t head = 0;
    uint8_t *dst = publish_start(w, c, response, len, &head);
    if (!dst) return;
    memcpy(dst + head, data, len);
    publish_done(w, c, head + len);
}

void mqtt_conn_send_frame(worker *w, conn *c, const Parley__V1__Frame *f) {
    size_t n = parley__v1__frame__get_packed_size(f), head = 0;
    uint8_t *dst = publish_start(w, c, f->body_case == PARLEY__V1__FRAME__BODY_RESPONSE, n, &head);
    if (!dst) return;
    parley__v1__frame__pack(f, dst + head);
    publish_done(w, c, head + n);
}

static uint16_t packet_id_of(uint64_t user_seq) { return (uint16_t)((user_seq - 1) % PACKET_ID_SPAN + 1); }

size_t mqtt_conn_event_head(worker *w, conn *c, uint8_t *dst, uint64_t user_seq, size_t payload_len) {
    mqtt_link *l = link_of(w, c);
    if (!l || !l->sub_ev) return 0;
    char t[TOPIC_MAX];
    size_t tl = topic_of(t, c, "ev");
    uint8_t mh[MQTT_PUBLISH_HEAD_MAX + TOPIC_MAX];
    size_t mhl = mqtt_encode_publish_head(mh, sizeof mh, l->level, t, tl, 1, false, packet_id_of(user_seq),
                                          payload_len);
    /* larger than the device takes (3.1.2.11.4): discarded as if sent; the
     * device's PUBACKs of later events move its cursor past it */
    if (!mhl || (l->max_packet && mhl + payload_len > l->max_packet)) return 0;
    size_t h = ws_head(c, dst, mhl + payload_len);
    memcpy(dst + h, mh, mhl);
    return h + mhl;
}

uint32_t mqtt_conn_window(const worker *w, const conn *c) {
    uint32_t win = w->srv->cfg.sync_window;
    const mqtt_link *l = link_of(w, c);
    if (l && l->receive_max && l->receive_max < win) win = l->receive_max;
    return win < PACKET_ID_SPAN ? win : PACKET_ID_SPAN;
}

uint32_t mqtt_conn_idle_ms(const worker *w, const conn *c) {
    const mqtt_link *l = link_of(w, c);
    if (!l || l->keep_alive_s == 0) return w->srv->cfg.idle_timeout_ms;
    return (uint32_t)l->keep_alive_s * 1500u;   /* 1.5 x keep-alive (MQTT 3.1.2.10) */
}

static uint8_t reason_for_close(uint16_t ws_code) {
    switch (ws_code) {
    case WS_CLOSE_NORMAL: return MQTT_RC_SUCCESS;
    case WS_CLOSE_GOING_AWAY: return MQTT_RC_KEEP_ALIVE_TIMEOUT;   /* the idle timeout */
    case WS_CLOSE_PROTOCOL: return MQTT_RC_PROTOCOL_ERROR;
    case WS_CLOSE_INVALID_DATA: return MQTT_RC_PAYLOAD_FORMAT_INVALID;
    case WS_CLOSE_POLICY: return MQTT_RC_ADMIN_ACTION;
    case WS_CLOSE_TOO_BIG: return MQTT_RC_PACKET_TOO_LARGE;
    case WS_CLOSE_RESTART: return MQTT_RC_SERVER_SHUTTING_DOWN;
    case WS_CLOSE_TRY_AGAIN: return MQTT_RC_SERVER_BUSY;
    default: return MQTT_RC_UNSPECIFIED;
    }
}

void mqtt_conn_disconnect(worker *w, conn *c, uint16_t ws_code) {
    mqtt_link *l = link_of(w, c);
    if (!l || !l->connected) return;   /* before CONNACK: a refusing CONNACK, if any, was sent */
    atomic_fetch_sub(&g_metrics.mqtt_connections, 1);
    if (l->level != 5 || l->close_reason == NO_DISCONNECT) return;
    uint8_t p[16];
    out_packet(w, c, p, mqtt_encode_disconnect(p, sizeof p, l->close_reason ? l->close_reason : reason_for_close(ws_code), NULL));
}

void mqtt_conn_taken_over(worker *w, conn *c, uint64_t user, uint32_t device) {
    mqtt_link *l = c->mqtt ? link_of(w, c) : NULL;
    /* the table's key is a hash: check that this is the device's connection */
    if (!l || !l->connected || c->state != CONN_WS || l->user != user || l->device != device) return;
    METRIC_INC(mqtt_takeovers_total);
    l->close_reason = MQTT_RC_SESSION_TAKEN_OVER;
    conn_close(w, c, WS_CLOSE_POLICY, "session taken over");
}

/* ---------------------------------------------------------------- refusals */

/* A packet the connection cannot go on after: level 5 gets DISCONNECT with
 * reason (after CONNACK) or a CONNACK with it (before), 3.1.1 the close. */
static void refuse(worker *w, conn *c, mqtt_link *l, uint8_t reason, const char *why) {
    if (reason == MQTT_RC_PACKET_TOO_LARGE) METRIC_INC(mqtt_too_large_total);
    else METRIC_INC(mqtt_malformed_total);
    METRIC_INC(protocol_errors_total);
    log_debug("mqtt: connection %llx: %s (0x%02x)", (unsigned long long)c->id, why, reason);
    if (!l->connected && l->level == 5) {
        uint8_t p[64];
        out_packet(w, c, p, mqtt_encode_connack(p, sizeof p, 5, false, reason, NULL));
    }
    l->close_reason = reason;
    conn_close(w, c, WS_CLOSE_PROTOCOL, why);
}

/* CONNACK refusing the sign-in, then the close. */
static void connack_refuse(worker *w, conn *c, mqtt_link *l, uint8_t v5_reason, uint8_t v4_code) {
    METRIC_INC(mqtt_auth_failures_total);
    uint8_t p[64];
    out_packet(w, c, p, l->level == 5 ? mqtt_encode_connack(p, sizeof p, 5, false, v5_reason, NULL)
                                      : mqtt_encode_connack(p, sizeof p, 4, false, v4_code, NULL));
    conn_close(w, c, WS_CLOSE_POLICY, "sign-in refused");
}

static void connack_auth_result(worker *w, conn *c, mqtt_link *l, mqtt_auth_result r) {
    switch (r) {
    case MQTT_AUTH_BAD:
        connack_refuse(w, c, l, l->auth_wait ? MQTT_RC_NOT_AUTHORIZED : MQTT_RC_BAD_USER_PASS, MQTT_V4_BAD_USER_PASS);
        break;
    case MQTT_AUTH_STALE:
        connack_refuse(w, c, l, MQTT_RC_NOT_AUTHORIZED, MQTT_V4_NOT_AUTHORIZED);
        break;
    default:
        connack_refuse(w, c, l, MQTT_RC_SERVER_UNAVAILABLE, MQTT_V4_UNAVAILABLE);
        break;
    }
}

/* CONNACK "server busy" (3.1.1: server unavailable), then the close: the
 * device may try again shortly. Not a refused sign-in. */
static void connack_busy(worker *w, conn *c, mqtt_link *l, const char *why) {
    uint8_t p[16];
    out_packet(w, c, p, mqtt_encode_connack(p, sizeof p, l->level, false,
                                            l->level == 5 ? MQTT_RC_SERVER_BUSY : MQTT_V4_UNAVAILABLE, NULL));
    conn_close(w, c, WS_CLOSE_TRY_AGAIN, why);
}

/* ---------------------------------------------------------------- CONNECT */

/* present: CONNACK's Session Present (a persistent session with a stored cursor). */
static void accept_device(worker *w, conn *c, mqtt_link *l, bool enhanced, bool present) {
    const config *cfg = &w->srv->cfg;
    if (!c->framed) {
        /* counted like an upgraded WebSocket (over WebSocket it was, at the upgrade) */
        if ((unsigned long)atomic_fetch_add(&g_metrics.connections, 1) >= cfg->max_connections) {
            atomic_fetch_sub(&g_metrics.connections, 1);
            METRIC_INC(upgrades_rejected_total);
            connack_busy(w, c, l, "too many connections");
            return;
        }
        c->state = CONN_WS;
    }
    /* the device's older MQTT connection is closed before or as this one
     * gets its CONNACK (3.1.4-2 / 3.1.4-3) */
    if (!mqtt_takeover_claim(w, c, l->user, l->device)) {
        connack_busy(w, c, l, "the older connection's worker is busy");
        return;
    }
    session_sign_in_device(w, c, l->user, l->device);
    mqtt_connack_info info = {0};
    if (l->level == 5) {
        info.max_packet_size = (uint32_t)cfg->max_message_bytes;
        info.receive_maximum = (uint16_t)mqtt_conn_window(w, c);
        info.send_limits = true;
        info.auth_method = enhanced ? MQTT_AUTH_METHOD : NULL;
        /* the server's idle timeout bounds the keep-alive; Server Keep Alive
         * tells the device the one that applies (3.2.2.3.14) */
        uint32_t idle_s = cfg->idle_timeout_ms / 1000;
        if (idle_s && (l->keep_alive_s == 0 || (uint32_t)l->keep_alive_s * 3 / 2 > idle_s)) {
            uint32_t ka = idle_s * 2 / 3;
            l->keep_alive_s = (uint16_t)(ka == 0 ? 1 : ka > 65535 ? 65535 : ka);
            info.server_keep_alive = l->keep_alive_s;
        }
    }
    uint8_t p[128];
    out_packet(w, c, p, mqtt_encode_connack(p, sizeof p, l->level, present, MQTT_RC_SUCCESS, &info));
    l->auth_wait = false;
    l->connected = true;
    c->last_rx_ms = conn_clock();
    atomic_fetch_add(&g_metrics.mqtt_connections, 1);
    METRIC_INC(mqtt_connects_total);
}

/* The sign-in checked against what was read (gateway/mqtt_connect_read.h):
 * CONNACK either way. The one end of both stores' paths. */
static void connect_finish(worker *w, conn *c, mqtt_link *l, const mqtt_connect_read *r) {
    bool enhanced = r->ask.scheme == MQTT_CONNECT_SIGNATURE;
    mqtt_auth_result a = mqtt_connect_read_check(r, enhanced && c->auth ? c->auth->nonce : NULL, clock_wall_ms());
    if (a != MQTT_AUTH_OK) connack_auth_result(w, c, l, a);
    else accept_device(w, c, l, enhanced, r->present);
}

/* What the sign-in needs from the store (the device's key; the cursor for
 * Session Present). Cassandra: one job for the reader pool, and until it
 * is back (mqtt_conn_connect_read) the connection's input waits, so a
 * packet sent right after CONNECT is handled after the CONNACK. RocksDB:
 * local reads, made here. */
static void connect_read(worker *w, conn *c, mqtt_link *l, mqtt_connect_ask *q) {
    q->user_id = l->user;
    q->device_id = l->device;
    q->want_cursor = !l->clean_start;
    if (store_watch_reads_held(w->srv)) {   /* not read while it fails: gateway/store_watch.h */
        connack_busy(w, c, l, "the store is not answering; retry");
        return;
    }
    if (w->srv->store_reads) {
        if (mqtt_connect_read_submit(w->srv->store_reads, c->id, q) != 0) {
            connack_busy(w, c, l, "server busy");
            return;
        }
        c->read_wait = true;
        return;
    }
    mqtt_connect_read r;
    mqtt_connect_read_store(w->srv->store, q, &r);
    connect_finish(w, c, l, &r);
}

void mqtt_conn_connect_read(worker *w, conn *c, const worker_msg *m) {
    mqtt_link *l = c->mqtt ? link_of(w, c) : NULL;
    mqtt_connect_read r;
    /* the connection closed meanwhile, or this is not the read it waits for */
    if (!l || c->state == CONN_CLOSING || !c->read_wait || l->connected || !mqtt_connect_read_of(m, &r) ||
        r.ask.user_id != l->user || r.ask.device_id != l->device)
        return;
    c->read_wait = false;
    connect_finish(w, c, l, &r);
    mqtt_conn_input_held(w, c);   /* what came in CONNECT's message after it */
}

void mqtt_conn_input_held(worker *w, conn *c) {
    mqtt_link *l = c->mqtt ? link_of(w, c) : NULL;
    /* MQTT over WebSocket: packets that came in the message of the one the
     * read was for waited in ws_in (no new message will push them through);
     * over TCP the input resumes when the answer is written (worker.c
     * conn_flush) */
    if (l && c->state == CONN_WS && buf_len(&l->ws_in) > 0) {
        buf_consume(&l->ws_in, mqtt_conn_input(w, c, buf_head(&l->ws_in), buf_len(&l->ws_in), NULL));
        if (buf_len(&l->ws_in) == 0) buf_free(&l->ws_in);
    }
}

static void handle_connect(worker *w, conn *c, mqtt_link *l, uint8_t first, const uint8_t *body, size_t len) {
    mqtt_connect k;
    int r = mqtt_decode_connect(first, body, len, &k);
    l->level = k.level == 4 || k.level == 5 ? k.level : 0;
    if (r == MQTT_RC_UNSUPPORTED_VERSION) {
        /* 3.1.2.2: answer in the version the server speaks best for it */
        uint8_t p[16];
        out_packet(w, c, p, l->level == 5 ? mqtt_encode_connack(p, sizeof p, 5, false, r, NULL)
                                          : mqtt_encode_connack(p, sizeof p, 4, false, MQTT_V4_BAD_VERSION, NULL));
        METRIC_INC(mqtt_malformed_total);
        conn_close(w, c, WS_CLOSE_PROTOCOL, "unsupported protocol version");
        return;
    }
    if (r != MQTT_OK) {
        refuse(w, c, l, (uint8_t)r, "malformed CONNECT");
        return;
    }
    l->clean_start = k.clean_start;
    l->keep_alive_s = k.keep_alive;
    l->receive_max = k.props.receive_maximum;
    l->max_packet = k.props.max_packet_size;
    if (!mqtt_parse_client_id(k.client_id.p, k.client_id.len, &l->user, &l->device)) {
        connack_refuse(w, c, l, MQTT_RC_CLIENT_ID_INVALID, MQTT_V4_ID_REJECTED);
        return;
    }
    if (l->level == 5 && k.props.auth_method.p) {
        if (k.props.auth_method.len != strlen(MQTT_AUTH_METHOD) ||
            memcmp(k.props.auth_method.p, MQTT_AUTH_METHOD, k.props.auth_method.len) != 0) {
            connack_refuse(w, c, l, MQTT_RC_BAD_AUTH_METHOD, 0);
            return;
        }
        /* over WebSocket the upgrade made it (its deadline counts from there) */
        if (!c->auth) c->auth = conn_auth_new("", 0, clock_mono_ms());
        if (!c->auth) {
            connack_refuse(w, c, l, MQTT_RC_SERVER_UNAVAILABLE, 0);
            return;
        }
        randombytes_buf(c->auth->nonce, MQTT_NONCE_BYTES);
        l->auth_wait = true;
        uint8_t p[128];
        out_packet(w, c, p, mqtt_encode_auth(p, sizeof p, MQTT_RC_CONTINUE_AUTH, MQTT_AUTH_METHOD, c->auth->nonce,
                                             MQTT_NONCE_BYTES));
        return;
    }
    /* the password scheme: User Name = the client id */
    if (!k.has_username || !k.has_password || k.username.len != k.client_id.len ||
        memcmp(k.username.p, k.client_id.p, k.client_id.len) != 0) {
        connack_refuse(w, c, l, MQTT_RC_BAD_USER_PASS, MQTT_V4_BAD_USER_PASS);
        return;
    }
    /* a password not of the form is refused before anything is read */
    mqtt_connect_ask q = {.scheme = MQTT_CONNECT_PASSWORD};
    mqtt_auth_result a = mqtt_auth_parse_password(k.password.p, k.password.len, &q.ts, q.sig);
    if (a != MQTT_AUTH_OK) connack_auth_result(w, c, l, a);
    else connect_read(w, c, l, &q);
}

static void handle_auth_reply(worker *w, conn *c, mqtt_link *l, uint8_t first, const uint8_t *body, size_t len) {
    mqtt_reason_packet a;
    int r = mqtt_decode_auth(first, body, len, &a);
    if (r != MQTT_OK) {
        refuse(w, c, l, (uint8_t)r, "malformed AUTH");
        return;
    }
    if (a.reason != MQTT_RC_CONTINUE_AUTH || a.props.auth_method.len != strlen(MQTT_AUTH_METHOD) ||
        memcmp(a.props.auth_method.p, MQTT_AUTH_METHOD, a.props.auth_method.len) != 0) {
        connack_refuse(w, c, l, MQTT_RC_BAD_AUTH_METHOD, 0);
        return;
    }
    if (a.props.auth_data.len != MQTT_AUTH_SIG_BYTES) {   /* not a signature: nothing to read for */
        connack_auth_result(w, c, l, MQTT_AUTH_BAD);
        return;
    }
    mqtt_connect_ask q = {.scheme = MQTT_CONNECT_SIGNATURE};
    memcpy(q.sig, a.props.auth_data.p, MQTT_AUTH_SIG_BYTES);
    connect_read(w, c, l, &q);
}

/* ---------------------------------------------------------------- after CONNACK */

/* Which of the device's topics a name or filter is: 'r' T/res, 'e' T/ev,
 * 'q' T/req, 'a' T/# or T/+ (both of the device's output topics), 0 none. */
static char own_topic(const conn *c, const mqtt_bytes *name) {
    char t[TOPIC_MAX];
    size_t tl = topic_of(t, c, "");   /* "p/U.D/" */
    if (name->len <= tl || memcmp(name->p, t, tl) != 0) return 0;
    const uint8_t *s = name->p + tl;
    size_t n = name->len - tl;
    if (n == 3 && memcmp(s, "res", 3) == 0) return 'r';
    if (n == 2 && memcmp(s, "ev", 2) == 0) return 'e';
    if (n == 3 && memcmp(s, "req", 3) == 0) return 'q';
    if (n == 1 && (s[0] == '#' || s[0] == '+')) return 'a';
    return 0;
}

static void handle_publish(worker *w, conn *c, mqtt_link *l, uint8_t first, const uint8_t *body, size_t len) {
    mqtt_publish p;
    int r = mqtt_decode_publish(l->level, first, body, len, &p);
    if (r != MQTT_OK) {
        refuse(w, c, l, (uint8_t)r, "malformed PUBLISH");
        return;
    }
    if (p.qos == 2) {
        refuse(w, c, l, MQTT_RC_QOS_NOT_SUPPORTED, "QoS 2 is not supported");
        return;
    }
    if (p.retain) {
        refuse(w, c, l, MQTT_RC_RETAIN_NOT_SUPPORTED, "retain is not supported");
        return;
    }
    if (MQTT_HAS(&p.props, MQTT_PROP_TOPIC_ALIAS)) {   /* Topic Alias Maximum is 0 */
        refuse(w, c, l, MQTT_RC_TOPIC_ALIAS_INVALID, "topic aliases are not supported");
        return;
    }
    if (own_topic(c, &p.topic) != 'q') {
        if (l->level == 5 && p.qos == 1) {
            uint8_t a[8];
            out_packet(w, c, a, mqtt_encode_ack(a, sizeof a, 5, MQTT_PUBACK, p.packet_id, MQTT_RC_NOT_AUTHORIZED));
            return;
        }
        refuse(w, c, l, MQTT_RC_TOPIC_NAME_INVALID, "publish only to p/USER.DEVICE/req");
        return;
    }
    if (p.qos == 1) {   /* received by the gateway; "stored" is the Response */
        uint8_t a[8];
        out_packet(w, c, a, mqtt_encode_ack(a, sizeof a, l->level, MQTT_PUBACK, p.packet_id, MQTT_RC_SUCCESS));
    }
    frame_peek pk;
    if (!l->sub_ev && frame_peek_parse(p.payload.p, p.payload.len, &pk) == 0 &&
        pk.body == PARLEY__V1__FRAME__BODY_START_SYNC) {
        /* events would have nowhere to go: the window would fill unseen */
        conn_send_error(w, c, pk.request_id, PARLEY__V1__STATUS__BAD_REQUEST,
                        "subscribe to p/USER.DEVICE/ev before StartSync");
        return;
    }
    session_handle(w, c, p.payload.p, p.payload.len);
}

/* A PUBACK of an event: the device's Ack of its user_seq. Packet ids are
 * user_seq mod 65535 and at most 65535 events are in flight, so exactly one
 * user_seq in (acked, sent] has it; MQTT devices acknowledge in order
 * (4.6), so it acknowledges every event before it too. */
static void handle_puback(worker *w, conn *c, mqtt_link *l, uint8_t first, const uint8_t *body, size_t len) {
    mqtt_ack a;
    int r = mqtt_decode_ack(l->level, first, body, len, &a);
    if (r != MQTT_OK) {
        refuse(w, c, l, (uint8_t)r, "malformed PUBACK");
        return;
    }
    /* MQTT 5 3.4.2.1: a reason code of 0x80 or more says the device failed to
     * handle the event: not an Ack, the event stays unacknowledged and comes
     * again in its next session (unless a later PUBACK acknowledges past it:
     * acknowledgements are in order) */
    if (a.reason >= MQTT_RC_UNSPECIFIED) {
        METRIC_INC(mqtt_puback_errors_total);
        return;
    }
    uint64_t acked = c->acked_upto;
    uint64_t k = ((uint64_t)a.packet_id - 1 + PACKET_ID_SPAN - acked % PACKET_ID_SPAN) % PACKET_ID_SPAN;
    uint64_t user_seq = acked + 1 + k;
    if (user_seq > c->sent_upto) return;
    session_ack_upto(w, c, user_seq);
    /* A device PUBACKs every event in its own packet, so most PUBACKs
     * arrive alone in a loop turn and would each become a cursor write
     * (CHAT_ACK: a store write and an inbox scan in the writer). The window
     * moves at once; the cursor is handed to the writer once ACK_HOLD_MAX
     * events are acknowledged past it, or when the device has acknowledged
     * all it was sent, and at the close (session_closed). */
    if (c->ack_pending && c->acked_upto < c->sent_upto && c->acked_upto - c->cursor_submitted_upto < ACK_HOLD_MAX) {
        c->ack_pending = false;
        METRIC_INC(mqtt_acks_held_total);
    }
}

static void handle_subscribe(worker *w, conn *c, mqtt_link *l, uint8_t first, const uint8_t *body, size_t len,
                             bool unsubscribe) {
    mqtt_subscribe s;
    int r = unsubscribe ? mqtt_decode_unsubscribe(l->level, first, body, len, &s)
                        : mqtt_decode_subscribe(l->level, first, body, len, &s);
    if (r != MQTT_OK) {
        refuse(w, c, l, (uint8_t)r, unsubscribe ? "malformed UNSUBSCRIBE" : "malformed SUBSCRIBE");
        return;
    }
    uint8_t *codes = malloc(s.n_filters);   /* at most the packet's length */
    if (!codes) {
        conn_close(w, c, WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    bool ev_before = l->sub_ev;
    size_t pos = 0, i = 0;
    mqtt_bytes f;
    uint8_t opts;
    while (i < s.n_filters && mqtt_next_filter(&s, &pos, &f, &opts)) {
        char which = own_topic(c, &f);
        bool own = which == 'r' || which == 'e' || which == 'a';
        if (unsubscribe) {
            bool had = (which == 'r' && l->sub_res) || (which == 'e' && l->sub_ev) ||
                       (which == 'a' && (l->sub_res || l->sub_ev));
            if (which == 'r' || which == 'a') l->sub_res = false;
            if (which == 'e' || which == 'a') l->sub_ev = false;
            codes[i++] = had ? MQTT_RC_SUCCESS : MQTT_RC_NO_SUBSCRIPTION;
            continue;
        }
        if (!own) {
            METRIC_INC(mqtt_subscribe_refused_total);
            codes[i++] = l->level == 5 ? MQTT_RC_NOT_AUTHORIZED : 0x80;
            continue;
        }
        if (which == 'r' || which == 'a') l->sub_res = true;
        if (which == 'e' || which == 'a') l->sub_ev = true;
        codes[i++] = (opts & 3) ? 1 : 0;   /* granted QoS: min(requested, 1) */
    }
    size_t cap = 16 + i;
    uint8_t *p = malloc(cap);
    if (p) out_packet(w, c, p, mqtt_encode_suback(p, cap, l->level, unsubscribe ? MQTT_UNSUBACK : MQTT_SUBACK,
                                                  s.packet_id, codes, i));
    free(p);
    free(codes);
    /* T/ev again in a session that syncs: events passed over while it was
     * not subscribed are sent again from the device's last PUBACK, before a
     * later PUBACK could move the cursor past them */
    if (!ev_before && l->sub_ev && c->syncing) {
        session_start_sync(w, c, 0, c->acked_upto, false);
        return;
    }
    /* a persistent session resumes from the stored cursor once events have somewhere to go */
    if (!ev_before && l->sub_ev && !l->clean_start && !c->syncing) {
        if (w->srv->store_reads) {
            /* Cassandra: read off the worker; mqtt_conn_cursor_read starts
             * the sync (one read at a time: a later SUBSCRIBE waits for it) */
            if (l->cursor_pending) return;
            if (store_reads_submit_cursor(w->srv->store_reads, c->id, c->user_id, c->device_id) != 0) {
                conn_close(w, c, WS_CLOSE_TRY_AGAIN, "server busy");
                return;
            }
            l->cursor_pending = true;
            return;
        }
        uint64_t cursor = 0;
        if (catchup_read_cursor(w->srv->store, c->user_id, c->device_id, &cursor) < 0) {
            conn_close(w, c, WS_CLOSE_INTERNAL, "store read failed");
            return;
        }
        session_start_sync(w, c, 0, cursor, false);
    }
}

void mqtt_conn_cursor_read(worker *w, conn *c, const worker_msg *m) {
    mqtt_link *l = link_of(w, c);
    store_cursor_read r;
    if (!l || !l->cursor_pending || m->len != sizeof r) return;
    memcpy(&r, m->data, sizeof r);
    l->cursor_pending = false;
    if (r.rc < 0) {
        conn_close(w, c, WS_CLOSE_INTERNAL, "store read failed");
        return;
    }
    /* still wanted: subscribed to T/ev (not unsubscribed meanwhile) and not syncing */
    if (l->connected && l->sub_ev && !c->syncing) session_start_sync(w, c, 0, r.cursor, false);
}

static void handle_packet(worker *w, conn *c, mqtt_link *l, uint8_t first, const uint8_t *body, size_t len) {
    uint8_t type = first >> 4;
    if (!l->connected) {   /* before CONNACK */
        if (l->auth_wait && type == MQTT_AUTH) handle_auth_reply(w, c, l, first, body, len);
        else if (l->auth_wait) refuse(w, c, l, MQTT_RC_PROTOCOL_ERROR, "AUTH expected");
        else if (type == MQTT_CONNECT) handle_connect(w, c, l, first, body, len);
        else refuse(w, c, l, MQTT_RC_PROTOCOL_ERROR, "the first packet must be CONNECT");
        return;
    }
    switch (type) {
    case MQTT_CONNECT:
        refuse(w, c, l, MQTT_RC_PROTOCOL_ERROR, "a second CONNECT");
        break;
    case MQTT_PUBLISH:
        handle_publish(w, c, l, first, body, len);
        break;
    case MQTT_PUBACK:
        handle_puback(w, c, l, first, body, len);
        break;
    case MQTT_SUBSCRIBE:
    case MQTT_UNSUBSCRIBE:
        handle_subscribe(w, c, l, first, body, len, type == MQTT_UNSUBSCRIBE);
        break;
    case MQTT_PINGREQ: {
        if (mqtt_decode_empty(first, len) != MQTT_OK) {
            refuse(w, c, l, MQTT_RC_MALFORMED, "malformed PINGREQ");
            break;
        }
        uint8_t p[2];
        out_packet(w, c, p, mqtt_encode_empty(p, sizeof p, MQTT_PINGRESP));
        break;
    }
    case MQTT_DISCONNECT: {
        mqtt_reason_packet d;
        if (mqtt_decode_disconnect(l->level, first, body, len, &d) != MQTT_OK) {
            refuse(w, c, l, MQTT_RC_MALFORMED, "malformed DISCONNECT");
            break;
        }
        l->close_reason = NO_DISCONNECT;   /* the device said goodbye: nothing to answer */
        conn_close(w, c, WS_CLOSE_NORMAL, "");
        break;
    }
    case MQTT_AUTH:
        /* re-authentication is not offered: the connection's key was proven once */
        if (l->level == 5) refuse(w, c, l, MQTT_RC_BAD_AUTH_METHOD, "re-authentication is not supported");
        else refuse(w, c, l, MQTT_RC_MALFORMED, "AUTH in MQTT 3.1.1");
        break;
    default:   /* reserved 0, QoS 2 flow (never started), server-to-client packets */
        refuse(w, c, l, type == 0 ? MQTT_RC_MALFORMED : MQTT_RC_PROTOCOL_ERROR, "unexpected packet type");
        break;
    }
}

size_t mqtt_conn_input(worker *w, conn *c, const uint8_t *data, size_t len, bool *blocked) {
    if (blocked) *blocked = false;
    mqtt_link *l = link_of(w, c);
    if (!l) {
        conn_close(w, c, WS_CLOSE_INTERNAL, "no MQTT state");
        return len;
    }
    const config *cfg = &w->srv->cfg;
    size_t done = 0;
    while (done < len && c->state != CONN_CLOSING) {
        /* CONNECT's read is out: what follows waits for its CONNACK; a
         * request's read (session.c): what follows waits for its answer */
        if (c->read_wait) {
            if (blocked) *blocked = true;
            break;
        }
        /* output is bounded before it is produced (worker.c conn_input_blocked) */
        if (blocked && l->connected && conn_input_blocked(w, c)) {
            *blocked = true;
            break;
        }
        uint8_t first = 0;
        uint32_t rem = 0;
        size_t hl = 0;
        int r = mqtt_fixed_header(data + done, len - done, &first, &rem, &hl);
        if (r == MQTT_NEED_MORE) break;
        if (r != MQTT_OK) {
            refuse(w, c, l, MQTT_RC_MALFORMED, "bad remaining length");
            break;
        }
        /* the packet limit is known from the header: nothing larger is buffered */
        size_t limit = l->connected ? cfg->max_message_bytes : cfg->unauth_max_message;
        if ((size_t)rem + hl > limit) {
            refuse(w, c, l, MQTT_RC_PACKET_TOO_LARGE, "packet too large");
            break;
        }
        if (rem > len - done - hl) break;
        c->last_rx_ms = conn_clock();
        METRIC_INC(frames_in_total);
        handle_packet(w, c, l, first, data + done + hl, rem);
        done += hl + rem;
    }
    return done;
}

void mqtt_conn_ws_message(worker *w, conn *c, const uint8_t *data, size_t len) {
    mqtt_link *l = link_of(w, c);
    if (!l) {
        conn_close(w, c, WS_CLOSE_INTERNAL, "no MQTT state");
        return;
    }
    /* the WebSocket loop bounds output before each message; the packets of
     * one message are all handled (what is held here waits for no event) */
    if (buf_len(&l->ws_in) == 0) {
        size_t used = mqtt_conn_input(w, c, data, len, NULL);
        if (used < len && c->state != CONN_CLOSING && buf_append(&l->ws_in, data + used, len - used))
            conn_close(w, c, WS_CLOSE_INTERNAL, "out of memory");
    } else if (buf_append(&l->ws_in, data, len)) {
        conn_close(w, c, WS_CLOSE_INTERNAL, "out of memory");
    } else {
        /* at most a packet under the limit (refused past it from its header) plus one message */
        buf_consume(&l->ws_in, mqtt_conn_input(w, c, buf_head(&l->ws_in), buf_len(&l->ws_in), NULL));
    }
    if (buf_len(&l->ws_in) == 0) buf_free(&l->ws_in);
}
