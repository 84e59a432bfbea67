/* test_mqtt.c -- parley over MQTT (README "MQTT"), with a minimal MQTT
 * client written here over a socket (the codec's encoders, or raw bytes):
 * both sign-in schemes and their refusals, requests on T/req answered on
 * T/res, events on T/ev at QoS 1 whose PUBACK is the Ack, a persistent
 * session that resumes after what was PUBACKed, MQTT and WebSocket devices
 * talking to each other, subscriptions limited to the device's own topics,
 * and malformed packets refused with the right reason code or a close while
 * another connection on the server keeps working. */
#include <errno.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../check.h"
#include "harness.h"
#include "mqtt_packet.h"
#include "net/mqtt_codec.h"
#include "net/ws.h"

static h_server S;
static int MQTT_PORT;

enum { MQ_BUF = 1 << 17, IO_MS = 10000, MAX_EVENTS = 256 };

typedef struct mq {
    int fd;
    bool ws;                   /* MQTT over WebSocket on the main port (subprotocol mqtt) */
    uint8_t raw[MQ_BUF];       /* ws: WebSocket bytes not yet a whole frame */
    size_t raw_len;
    uint8_t level;
    char topic[48];            /* "p/U.D" */
    uint8_t buf[MQ_BUF];
    size_t len;
    /* events seen on T/ev (QoS 1), in arrival order */
    uint64_t ev_seq[MAX_EVENTS];
    uint16_t ev_pid[MAX_EVENTS];
    size_t n_ev;
    bool sync_done;
    uint16_t next_pid;
    uint64_t next_rid;
} mq;

static mq *mq_new(uint8_t level, const pc_identity *id) {
    mq *m = h_calloc(1, sizeof *m);
    m->fd = -1;
    m->level = level;
    m->next_pid = 1;
    m->next_rid = 1;
    snprintf(m->topic, sizeof m->topic, "p/%llu.%u", (unsigned long long)id->user_id, id->device_id);
    return m;
}

static void mq_close(mq *m) {
    if (m->fd >= 0) close(m->fd);
    m->fd = -1;
    m->len = m->raw_len = 0;
}

static void mq_free(mq *m) {
    if (!m) return;
    mq_close(m);
    h_free(m);
}

static int write_all(int fd, const void *p, size_t n) {
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ws: p[0..n) as one masked binary WebSocket message */
static int ws_send(mq *m, const void *p, size_t n) {
    static uint8_t frame[MQ_BUF + 16];
    if (n > MQ_BUF) return -1;
    const uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
    size_t h = ws_write_header(frame, WS_OP_BINARY, true, n, mask);
    memcpy(frame + h, p, n);
    ws_mask(frame + h, n, mask, 0);
    return write_all(m->fd, frame, h + n);
}

/* ws: moves the payloads of the whole frames in raw to buf; -1 on a close frame */
static int ws_unwrap(mq *m) {
    for (;;) {
        if (m->raw_len < 2) return 0;
        size_t len = m->raw[1] & 0x7f, head = 2;
        if (len == 126) {
            if (m->raw_len < 4) return 0;
            len = (size_t)m->raw[2] << 8 | m->raw[3];
            head = 4;
        } else if (len == 127) {
            if (m->raw_len < 10) return 0;
            len = 0;
            for (int i = 0; i < 8; i++) len = len << 8 | m->raw[2 + i];
            head = 10;
        }
        if (m->raw_len < head + len) return 0;
        if ((m->raw[0] & 0x0f) == WS_OP_CLOSE) return -1;
        if ((m->raw[0] & 0x0f) == WS_OP_BINARY || (m->raw[0] & 0x0f) == 0) {
            if (m->len + len > MQ_BUF) return -1;
            memcpy(m->buf + m->len, m->raw + head, len);
            m->len += len;
        }
        memmove(m->raw, m->raw + head + len, m->raw_len - head - len);
        m->raw_len -= head + len;
    }
}

/* ws: TCP connect to the main port and upgrade with subprotocol mqtt. */
static int ws_open(mq *m) {
    m->fd = h_tcp_connect(S.port, IO_MS);
    if (m->fd < 0) return -1;
    const char req[] = "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
                       "Sec-WebSocket-Protocol: mqtt\r\n\r\n";
    if (write_all(m->fd, req, sizeof req - 1)) return -1;
    char head[1024];
    size_t n = 0;
    uint64_t deadline = h_now_ms() + IO_MS;
    while (n < sizeof head - 1 && h_now_ms() < deadline) {
        ssize_t r = recv(m->fd, head + n, 1, 0);   /* byte by byte: nothing after the head is taken */
        if (r <= 0) return -1;
        n++;
        head[n] = 0;
        if (n >= 4 && memcmp(head + n - 4, "\r\n\r\n", 4) == 0) break;
    }
    return strstr(head, " 101 ") && strstr(head, "Sec-WebSocket-Protocol: mqtt\r\n") ? 0 : -1;
}

static int mq_write(mq *m, const void *p, size_t n) {
    if (m->ws) return ws_send(m, p, n);
    const uint8_t *b = p;
    while (n > 0) {
        ssize_t w = send(m->fd, b, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        b += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The next whole packet: 1 (first, body copied to out, *len), 0 timeout,
 * -1 the server closed the connection. */
static int mq_next(mq *m, uint8_t *first, uint8_t *out, size_t cap, size_t *len, int timeout_ms) {
    uint64_t deadline = h_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int r = mqtt_take_packet(m->buf, &m->len, first, out, cap, len);
        if (r != 0) return r;
        uint64_t now = h_now_ms();
        if (now >= deadline) return 0;
        struct pollfd pfd = {.fd = m->fd, .events = POLLIN};
        int pr = poll(&pfd, 1, (int)(deadline - now));
        if (pr < 0 && errno == EINTR) continue;
        if (pr <= 0) return 0;
        uint8_t *dst = m->ws ? m->raw + m->raw_len : m->buf + m->len;
        size_t room = m->ws ? MQ_BUF - m->raw_len : MQ_BUF - m->len;
        if (room == 0) return -1;
        ssize_t n = recv(m->fd, dst, room, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return -1;
        if (!m->ws) {
            m->len += (size_t)n;
        } else {
            m->raw_len += (size_t)n;
            if (ws_unwrap(m)) return -1;
        }
    }
}

/* Waits until the server closes the connection, skipping packets; true when
 * it did. *disconnect: the reason code of a DISCONNECT seen on the way (-1: none). */
static bool mq_closed(mq *m, int *disconnect) {
    static uint8_t body[MQ_BUF];
    *disconnect = -1;
    for (int i = 0; i < 1000; i++) {
        uint8_t first;
        size_t len;
        int r = mq_next(m, &first, body, sizeof body, &len, IO_MS);
        if (r < 0) return true;
        if (r == 0) return false;
        if (first >> 4 == MQTT_DISCONNECT) *disconnect = len > 0 ? body[0] : 0;
    }
    return false;
}

static void make_password(const pc_identity *id, const char *client_id, uint64_t ts, char *out, size_t cap) {
    /* the spec, written out again here: "parley.v1 mqtt password" || TS (8 bytes BE) || client id */
    uint8_t msg[23 + 8 + 64];
    memcpy(msg, "parley.v1 mqtt password", 23);
    for (int i = 0; i < 8; i++) msg[23 + i] = (uint8_t)(ts >> (56 - 8 * i));
    size_t idl = strlen(client_id);
    memcpy(msg + 31, client_id, idl);
    uint8_t sig[64];
    crypto_sign_detached(sig, NULL, msg, 31 + idl, id->secret_key);
    char b64[100];
    sodium_bin2base64(b64, sizeof b64, sig, sizeof sig, sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    snprintf(out, cap, "%llu.%s", (unsigned long long)ts, b64);
}

static uint64_t wall_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (uint64_t)t.tv_sec * 1000 + (uint64_t)t.tv_nsec / 1000000;
}

/* TCP connect and CONNECT with the password scheme: client id `client_id`
 * (NULL: id's own), password signed by id at ts. Returns the CONNACK reason
 * (level 4: return code), -1 when none came. */
static int mq_connect_password(mq *m, const pc_identity *id, const char *client_id, uint64_t ts, bool clean,
                               bool *present) {
    char cid[48], pw[160];
    if (!client_id) {
        snprintf(cid, sizeof cid, "%llu.%u", (unsigned long long)id->user_id, id->device_id);
        client_id = cid;
    }
    make_password(id, client_id, ts, pw, sizeof pw);
    mq_close(m);
    if (m->ws ? ws_open(m) : (m->fd = h_tcp_connect(MQTT_PORT, IO_MS)) < 0) return -1;
    uint8_t p[512];
    mqtt_connect_args a = {.level = m->level, .clean_start = clean, .keep_alive = 30, .client_id = client_id,
                           .username = client_id, .password = (const uint8_t *)pw, .password_len = strlen(pw)};
    size_t n = mqtt_encode_connect(p, sizeof p, &a);
    /* over WebSocket the CONNECT spans two messages (a packet may) */
    if (!n || (m->ws ? mq_write(m, p, 7) || mq_write(m, p + 7, n - 7) : mq_write(m, p, n))) return -1;
    uint8_t first, body[256];
    size_t len;
    if (mq_next(m, &first, body, sizeof body, &len, IO_MS) != 1 || first >> 4 != MQTT_CONNACK) return -1;
    mqtt_connack ca;
    if (mqtt_decode_connack(m->level, first, body, len, &ca) != MQTT_OK) return -1;
    if (present) *present = ca.session_present;
    return ca.reason;
}

/* A password's TS must be after the device's last one: two logins in one
 * millisecond take the next millisecond, as a real client would. */
static uint64_t fresh_ts(void) {
    static uint64_t last;
    uint64_t now = wall_ms();
    last = now > last ? now : last + 1;
    return last;
}

static int mq_login(mq *m, const pc_identity *id, bool clean, bool *present) {
    return mq_connect_password(m, id, NULL, fresh_ts(), clean, present);
}

/* SUBSCRIBE to filters (suffixes of T when they start with '/', else as
 * given) at QoS 1; the SUBACK's codes into codes. Returns how many, -1. */
static int mq_subscribe(mq *m, const char *const *filters, size_t n, uint8_t *codes) {
    char full[8][64];
    const char *f[8];
    for (size_t i = 0; i < n && i < 8; i++) {
        if (filters[i][0] == '/') snprintf(full[i], sizeof full[i], "%s%s", m->topic, filters[i]);
        else snprintf(full[i], sizeof full[i], "%s", filters[i]);
        f[i] = full[i];
    }
    uint8_t opts[8] = {1, 1, 1, 1, 1, 1, 1, 1};
    uint8_t p[1024];
    uint16_t pid = m->next_pid++;
    size_t len = mqtt_encode_subscribe(p, sizeof p, m->level, false, pid, f, opts, n);
    if (!len || mq_write(m, p, len)) return -1;
    uint8_t first, body[512];
    if (mq_next(m, &first, body, sizeof body, &len, IO_MS) != 1 || first >> 4 != MQTT_SUBACK) return -1;
    mqtt_suback sa;
    if (mqtt_decode_suback(m->level, first, body, len, &sa) != MQTT_OK || sa.packet_id != pid) return -1;
    memcpy(codes, sa.codes.p, sa.codes.len);
    return (int)sa.codes.len;
}

static int mq_subscribe_own(mq *m) {
    const char *f[] = {"/res", "/ev"};
    uint8_t codes[2];
    return mq_subscribe(m, f, 2, codes) == 2 && codes[0] == 1 && codes[1] == 1 ? 0 : -1;
}

/* PUBLISHes f (request_id set here) to T/req at QoS qos; returns the request id. */
static uint64_t mq_request(mq *m, Parley__V1__Frame *f, uint8_t qos) {
    f->request_id = m->next_rid++;
    size_t n = parley__v1__frame__get_packed_size(f);
    uint8_t *p = malloc(n + 128);
    char topic[64];
    snprintf(topic, sizeof topic, "%s/req", m->topic);
    size_t h = mqtt_encode_publish_head(p, n + 128, m->level, topic, strlen(topic), qos, false,
                                        qos ? m->next_pid++ : 0, n);
    parley__v1__frame__pack(f, p + h);
    int r = mq_write(m, p, h + n);
    free(p);
    return r ? 0 : f->request_id;
}

static int mq_puback(mq *m, uint16_t pid) {
    uint8_t p[8];
    size_t n = mqtt_encode_ack(p, sizeof p, m->level, MQTT_PUBACK, pid, 0);
    return mq_write(m, p, n);
}

/* PUBACK with a reason code (level 5). */
static int mq_puback_reason(mq *m, uint16_t pid, uint8_t reason) {
    uint8_t p[8];
    size_t n = mqtt_encode_ack(p, sizeof p, m->level, MQTT_PUBACK, pid, reason);
    return n ? mq_write(m, p, n) : -1;
}

/* PINGREQ, and packets read until its PINGRESP: everything the server did
 * for the packets sent before it on this connection is done. 0 or -1. */
static int mq_ping(mq *m) {
    static uint8_t body[MQ_BUF];
    uint8_t ping[2] = {0xC0, 0x00}, first;
    size_t len;
    if (mq_write(m, ping, 2)) return -1;
    for (int i = 0; i < 4096; i++) {
        if (mq_next(m, &first, body, sizeof body, &len, IO_MS) != 1) return -1;
        if (first == 0xD0) return 0;
    }
    return -1;
}

/* Reads packets until the Response to rid (returned, or NULL), recording
 * events and SyncDone on the way; PUBACKs of our QoS 1 requests skipped.
 * rid 0: until SyncDone. Every PUBLISH must be on one of our topics. */
static Parley__V1__Frame *mq_until(mq *m, uint64_t rid, bool *foreign) {
    static uint8_t body[MQ_BUF];
    for (int i = 0; i < 4096; i++) {
        uint8_t first;
        size_t len;
        if (mq_next(m, &first, body, sizeof body, &len, IO_MS) != 1) return NULL;
        if (first >> 4 != MQTT_PUBLISH) continue;
        mqtt_publish p;
        if (mqtt_decode_publish(m->level, first, body, len, &p) != MQTT_OK) return NULL;
        size_t tl = strlen(m->topic);
        if (p.topic.len <= tl || memcmp(p.topic.p, m->topic, tl) != 0) {
            if (foreign) *foreign = true;
            continue;
        }
        Parley__V1__Frame *f = parley__v1__frame__unpack(NULL, p.payload.len, p.payload.p);
        if (!f) return NULL;
        if (f->body_case == PARLEY__V1__FRAME__BODY_EVENT && p.qos == 1 && m->n_ev < MAX_EVENTS) {
            m->ev_seq[m->n_ev] = f->event->user_seq;
            m->ev_pid[m->n_ev++] = p.packet_id;
        }
        if (f->body_case == PARLEY__V1__FRAME__BODY_SYNC_DONE) m->sync_done = true;
        if ((rid && f->body_case == PARLEY__V1__FRAME__BODY_RESPONSE && f->request_id == rid) ||
            (!rid && f->body_case == PARLEY__V1__FRAME__BODY_SYNC_DONE))
            return f;
        parley__v1__frame__free_unpacked(f, NULL);
    }
    return NULL;
}

static int mq_send_text(mq *m, uint64_t conv, const char *text, uint64_t *seq) {
    Parley__V1__Frame f;
    Parley__V1__SendMessage sm;
    parley__v1__frame__init(&f);
    parley__v1__send_message__init(&sm);
    uint8_t cmid[16];
    randombytes_buf(cmid, sizeof cmid);
    sm.conversation_id = conv;
    sm.client_msg_id.data = cmid;
    sm.client_msg_id.len = sizeof cmid;
    sm.type = PARLEY__V1__MESSAGE_TYPE__TEXT;
    sm.body.data = (uint8_t *)text;
    sm.body.len = strlen(text);
    f.body_case = PARLEY__V1__FRAME__BODY_SEND_MESSAGE;
    f.send_message = &sm;
    uint64_t rid = mq_request(m, &f, 1);
    Parley__V1__Frame *r = rid ? mq_until(m, rid, NULL) : NULL;
    int ok = r && r->response->status == PARLEY__V1__STATUS__OK && r->response->result_case ==
             PARLEY__V1__RESPONSE__RESULT_SENT;
    if (ok && seq) *seq = r->response->sent->seq;
    if (r) parley__v1__frame__free_unpacked(r, NULL);
    return ok ? 0 : -1;
}

/* ------------------------------------------------------------ fixtures */

/* A user on WebSocket (owner) with a second device to be used over MQTT
 * (its WebSocket client is closed: only its identity is kept). */
static h_dev *OWNER, *PEER;
static pc_identity MQ_ID;       /* OWNER's second device */
static pc_identity MQ_ID2;      /* OWNER's third: a second MQTT client id open at the same time
                                   (a newer connection with the same client id takes over) */
static uint64_t CONV;           /* OWNER <-> PEER, both accepted */

/* A new device of owner, registered over WebSocket (link token) and
 * closed there: its identity, to use over MQTT. */
static int link_identity(h_dev *owner, pc_identity *out) {
    h_dev *d = h_device_link(&S, owner);
    if (!d) return -1;
    *out = d->id;
    h_dev_free(d);
    return 0;
}

static int fixtures(void) {
    OWNER = h_user_new(&S, NULL);
    PEER = h_user_new(&S, NULL);
    if (!OWNER || !PEER) return -1;
    if (link_identity(OWNER, &MQ_ID) || link_identity(OWNER, &MQ_ID2)) return -1;
    if (pc_open_direct(OWNER->c, PEER->id.user_id, &CONV) != 0) return -1;
    if (h_send(OWNER, CONV, "hello") == 0) return -1;
    return h_accept(PEER, CONV);
}

/* ------------------------------------------------------------ cases */

static void password_scheme(void) {
    mq *m = mq_new(4, &MQ_ID);
    double fails0 = 0, fails1 = 0;
    CHECK(h_metric(&S, "parley_mqtt_auth_failures_total", &fails0) == 0, "metric missing");
    uint64_t ts = fresh_ts();
    int rc = mq_connect_password(m, &MQ_ID, NULL, ts, true, NULL);
    CHECK(rc == MQTT_V4_ACCEPTED, "good password: CONNACK %d", rc);
    CHECK(mq_subscribe_own(m) == 0, "subscribe");
    Parley__V1__Frame f;
    Parley__V1__ListConversations lc;
    parley__v1__frame__init(&f);
    parley__v1__list_conversations__init(&lc);
    f.body_case = PARLEY__V1__FRAME__BODY_LIST_CONVERSATIONS;
    f.list_conversations = &lc;
    uint64_t rid = mq_request(m, &f, 0);
    Parley__V1__Frame *r = mq_until(m, rid, NULL);
    CHECK(r && r->response->status == PARLEY__V1__STATUS__OK, "ListConversations over MQTT not answered");
    size_t n = r->response->conversations->n_conversations;
    parley__v1__frame__free_unpacked(r, NULL);
    CHECK(n == 1, "the device sees %zu conversations", n);

    /* the same password again: a replay */
    rc = mq_connect_password(m, &MQ_ID, NULL, ts, true, NULL);
    CHECK(rc == MQTT_V4_NOT_AUTHORIZED, "replayed password: CONNACK %d", rc);
    /* an older TS than the last accepted, though within the window */
    rc = mq_connect_password(m, &MQ_ID, NULL, ts - 1000, true, NULL);
    CHECK(rc == MQTT_V4_NOT_AUTHORIZED, "earlier TS: CONNACK %d", rc);
    /* stale: two minutes old */
    rc = mq_connect_password(m, &MQ_ID, NULL, wall_ms() - 120000, true, NULL);
    CHECK(rc == MQTT_V4_NOT_AUTHORIZED, "stale TS: CONNACK %d", rc);
    /* another device's client id, signed with this key */
    char other[48];
    snprintf(other, sizeof other, "%llu.%u", (unsigned long long)OWNER->id.user_id, OWNER->id.device_id);
    rc = mq_connect_password(m, &MQ_ID, other, fresh_ts(), true, NULL);
    CHECK(rc == MQTT_V4_BAD_USER_PASS, "wrong device: CONNACK %d", rc);
    /* not USER.DEVICE */
    rc = mq_connect_password(m, &MQ_ID, "012.1", fresh_ts(), true, NULL);
    CHECK(rc == MQTT_V4_ID_REJECTED, "bad client id: CONNACK %d", rc);
    /* and a fresh one still works at level 5 */
    m->level = 5;
    rc = mq_connect_password(m, &MQ_ID, NULL, fresh_ts(), true, NULL);
    CHECK(rc == MQTT_RC_SUCCESS, "level 5 password: CONNACK 0x%02x", rc);
    CHECK(h_metric(&S, "parley_mqtt_auth_failures_total", &fails1) == 0, "metric missing");
    CHECK(fails1 >= fails0 + 5, "auth failures counted %.0f -> %.0f", fails0, fails1);
    mq_free(m);
}

/* MQTT 5 AUTH exchange: CONNECT with the method, AUTH 0x18 with a nonce,
 * AUTH 0x18 with the signature, CONNACK. */
static int mq_connect_enhanced(mq *m, const pc_identity *id, bool corrupt) {
    mq_close(m);
    m->fd = h_tcp_connect(MQTT_PORT, IO_MS);
    if (m->fd < 0) return -1;
    char cid[48];
    snprintf(cid, sizeof cid, "%llu.%u", (unsigned long long)id->user_id, id->device_id);
    uint8_t p[512], first, body[512];
    size_t len;
    mqtt_connect_args a = {.level = 5, .clean_start = true, .keep_alive = 30, .client_id = cid,
                           .auth_method = "parley-ed25519"};
    size_t n = mqtt_encode_connect(p, sizeof p, &a);
    if (mq_write(m, p, n)) return -1;
    if (mq_next(m, &first, body, sizeof body, &len, IO_MS) != 1 || first >> 4 != MQTT_AUTH) return -1;
    mqtt_reason_packet au;
    if (mqtt_decode_auth(first, body, len, &au) != MQTT_OK || au.reason != MQTT_RC_CONTINUE_AUTH ||
        au.props.auth_data.len != 32)
        return -1;
    uint8_t msg[19 + 32], sig[64];
    memcpy(msg, "parley.v1 mqtt auth", 19);
    memcpy(msg + 19, au.props.auth_data.p, 32);
    crypto_sign_detached(sig, NULL, msg, sizeof msg, id->secret_key);
    if (corrupt) sig[0] ^= 1;
    n = mqtt_encode_auth(p, sizeof p, MQTT_RC_CONTINUE_AUTH, "parley-ed25519", sig, sizeof sig);
    if (mq_write(m, p, n)) return -1;
    if (mq_next(m, &first, body, sizeof body, &len, IO_MS) != 1 || first >> 4 != MQTT_CONNACK) return -1;
    mqtt_connack ca;
    if (mqtt_decode_connack(5, first, body, len, &ca) != MQTT_OK) return -1;
    return ca.reason;
}

static void enhanced_auth(void) {
    mq *m = mq_new(5, &MQ_ID);
    int rc = mq_connect_enhanced(m, &MQ_ID, false);
    CHECK(rc == MQTT_RC_SUCCESS, "parley-ed25519: CONNACK 0x%02x", rc);
    CHECK(mq_subscribe_own(m) == 0, "subscribe");
    uint64_t seq = 0;
    CHECK(mq_send_text(m, CONV, "via mqtt 5 auth", &seq) == 0 && seq > 0, "send after AUTH sign-in");
    rc = mq_connect_enhanced(m, &MQ_ID, true);
    CHECK(rc == MQTT_RC_NOT_AUTHORIZED, "bad signature: CONNACK 0x%02x, want 0x87", rc);
    mq_free(m);
}

/* MQTT -> WebSocket and WebSocket -> MQTT in one conversation. */
static void talks_to_websocket(void) {
    mq *m = mq_new(4, &MQ_ID);
    CHECK(mq_login(m, &MQ_ID, true, NULL) == 0, "connect");
    CHECK(mq_subscribe_own(m) == 0, "subscribe");
    /* catch up (clean start: the device asks, as over WebSocket) */
    Parley__V1__Frame f;
    Parley__V1__StartSync ss;
    parley__v1__frame__init(&f);
    parley__v1__start_sync__init(&ss);
    f.body_case = PARLEY__V1__FRAME__BODY_START_SYNC;
    f.start_sync = &ss;
    uint64_t rid = mq_request(m, &f, 1);
    Parley__V1__Frame *r = mq_until(m, rid, NULL);
    CHECK(r && r->response->status == PARLEY__V1__STATUS__OK, "StartSync over MQTT");
    parley__v1__frame__free_unpacked(r, NULL);
    r = mq_until(m, 0, NULL);
    CHECK(r, "no SyncDone over MQTT");
    parley__v1__frame__free_unpacked(r, NULL);

    uint64_t seq = 0;
    CHECK(mq_send_text(m, CONV, "from mqtt", &seq) == 0, "send over MQTT");
    CHECK(h_dev_sync(PEER, 10000) == 0, "peer sync");
    h_dev *peer[] = {PEER};
    uint64_t until = h_now_ms() + IO_MS;
    while (!h_dev_has(PEER, CONV, seq) && h_now_ms() < until) {
        h_count_goal g = {.devs = peer, .n = 1, .conv = CONV, .want = h_dev_count(PEER, CONV) + 1};
        h_pump(peer, 1, h_pred_count, &g, 200);
    }
    CHECK(h_dev_has(PEER, CONV, seq), "the WebSocket peer did not get seq %llu sent over MQTT", (unsigned long long)seq);

    uint64_t back = h_send(PEER, CONV, "from websocket");
    CHECK(back > 0, "send over WebSocket");
    /* the MQTT device gets it as a QoS 1 event on T/ev */
    bool got = false;
    for (int i = 0; i < 64 && !got; i++) {
        size_t had = m->n_ev;
        Parley__V1__Frame ping;
        Parley__V1__ListConversations lc;
        parley__v1__frame__init(&ping);
        parley__v1__list_conversations__init(&lc);
        ping.body_case = PARLEY__V1__FRAME__BODY_LIST_CONVERSATIONS;
        ping.list_conversations = &lc;
        r = mq_until(m, mq_request(m, &ping, 0), NULL);
        CHECK(r, "connection lost");
        parley__v1__frame__free_unpacked(r, NULL);
        got = m->n_ev > had;
        if (!got) h_sleep_ms(100);
    }
    CHECK(got, "no event over MQTT for the WebSocket peer's message");
    mq_free(m);
}

/* Events at QoS 1; PUBACK = Ack; a persistent session resumes after the
 * last PUBACKed event and sends each unacknowledged one once. */
static void puback_advances_cursor(void) {
    /* a fresh device, so its inbox cursor starts at 0 */
    h_dev *third = h_device_link(&S, OWNER);
    CHECK(third, "third device");
    pc_identity id = third->id;
    for (int i = 0; i < 6; i++) CHECK(h_send(PEER, CONV, "backlog") > 0, "send %d", i);

    h_dev_free(third);
    mq *m = mq_new(4, &id);
    bool present = false;
    CHECK(mq_login(m, &id, false, &present) == 0, "connect");
    CHECK(mq_subscribe_own(m) == 0, "subscribe");
    /* persistent session: sync starts by itself at SUBSCRIBE */
    Parley__V1__Frame *r = mq_until(m, 0, NULL);
    CHECK(r, "no SyncDone after SUBSCRIBE");
    parley__v1__frame__free_unpacked(r, NULL);
    size_t total = m->n_ev;
    CHECK(total >= 6, "%zu events", total);
    for (size_t i = 1; i < total; i++) CHECK(m->ev_seq[i] > m->ev_seq[i - 1], "events out of order");
    uint64_t last = m->ev_seq[total - 1];
    /* PUBACK the first half */
    size_t half = total / 2;
    for (size_t i = 0; i < half; i++) CHECK(mq_puback(m, m->ev_pid[i]) == 0, "puback");
    uint64_t acked = m->ev_seq[half - 1];
    mq_close(m);   /* dropped without DISCONNECT: the PUBACKs still count */

    /* the writer stores the cursor after the drop, asynchronously: sessions
     * are opened until one resumes after it (each one checked: it starts no
     * later than the first unacknowledged event, in order, without gaps) */
    bool resumed = false;
    uint64_t until = h_now_ms() + 20000;
    for (int attempt = 0; !resumed && attempt < 100 && h_now_ms() < until; attempt++) {
        m->n_ev = 0;
        m->sync_done = false;
        present = false;
        CHECK(mq_login(m, &id, false, &present) == 0, "reconnect");
        CHECK(mq_subscribe_own(m) == 0, "subscribe again");
        r = mq_until(m, 0, NULL);
        CHECK(r, "no SyncDone after the reconnect");
        parley__v1__frame__free_unpacked(r, NULL);
        CHECK(m->n_ev > 0 && m->ev_seq[0] <= acked + 1, "resumed at %llu: skipped unacknowledged events",
              (unsigned long long)(m->n_ev ? m->ev_seq[0] : 0));
        for (size_t i = 1; i < m->n_ev; i++) CHECK(m->ev_seq[i] == m->ev_seq[i - 1] + 1, "gap or duplicate");
        CHECK(m->ev_seq[m->n_ev - 1] >= last, "ended at %llu before %llu",
              (unsigned long long)m->ev_seq[m->n_ev - 1], (unsigned long long)last);
        /* CONNACK and SUBSCRIBE read the cursor at two moments: both must have seen it */
        resumed = m->ev_seq[0] == acked + 1 && present;
        mq_close(m);
        if (!resumed) h_sleep_ms(200);
    }
    /* exactly the events after the last PUBACKed one, each once */
    CHECK(resumed, "never resumed after the PUBACKed user_seq %llu with Session Present", (unsigned long long)acked);
    mq_free(m);
}

static void subscriptions_limited(void) {
    mq *m = mq_new(4, &MQ_ID);
    CHECK(mq_login(m, &MQ_ID, true, NULL) == 0, "connect");
    char other[64];
    snprintf(other, sizeof other, "p/%llu.%u/ev", (unsigned long long)PEER->id.user_id, PEER->id.device_id);
    const char *bad[] = {other, "#", "p/#", "+/+/ev", "/req"};
    uint8_t codes[8];
    CHECK(mq_subscribe(m, bad, 5, codes) == 5, "SUBACK");
    for (int i = 0; i < 5; i++) CHECK(codes[i] == 0x80, "filter %d granted 0x%02x (3.1.1 wants 0x80)", i, codes[i]);
    /* level 5 says 0x87 */
    mq *m5 = mq_new(5, &MQ_ID2);   /* another client id: the same one would take m over */
    CHECK(mq_login(m5, &MQ_ID2, true, NULL) == 0, "connect 5");
    CHECK(mq_subscribe(m5, bad, 3, codes) == 3, "SUBACK 5");
    for (int i = 0; i < 3; i++) CHECK(codes[i] == 0x87, "filter %d: 0x%02x, want 0x87", i, codes[i]);
    /* traffic for the peer goes on; nothing of it reaches these connections */
    CHECK(h_send(OWNER, CONV, "not for mqtt eyes") > 0, "send");
    const char *own[] = {"/res"};
    CHECK(mq_subscribe(m, own, 1, codes) == 1 && codes[0] == 1, "own topic");
    Parley__V1__Frame f;
    Parley__V1__ListConversations lc;
    parley__v1__frame__init(&f);
    parley__v1__list_conversations__init(&lc);
    f.body_case = PARLEY__V1__FRAME__BODY_LIST_CONVERSATIONS;
    f.list_conversations = &lc;
    bool foreign = false;
    Parley__V1__Frame *r = mq_until(m, mq_request(m, &f, 0), &foreign);
    CHECK(r, "request after refused subscriptions");
    parley__v1__frame__free_unpacked(r, NULL);
    CHECK(!foreign, "a PUBLISH outside the device's topics arrived");
    CHECK(m->n_ev == 0, "events arrived without a T/ev subscription");
    mq_free(m);
    mq_free(m5);
}

/* One bad input on a fresh connection; returns the DISCONNECT reason (-1:
 * closed without one; -2: not closed). signed_in: CONNACK first. */
static int bad_input(uint8_t level, bool signed_in, const uint8_t *bytes, size_t n) {
    mq *m = mq_new(level, &MQ_ID);
    int result = -2;
    if (signed_in) {
        if (mq_login(m, &MQ_ID, true, NULL) != 0) {
            mq_free(m);
            return -3;
        }
    } else {
        m->fd = h_tcp_connect(MQTT_PORT, IO_MS);
    }
    int reason = -1;
    if (m->fd >= 0 && mq_write(m, bytes, n) == 0 && mq_closed(m, &reason)) result = reason;
    mq_free(m);
    return result;
}

static void malformed_packets(void) {
    /* a healthy connection that must keep working throughout (another
     * client id than the bad inputs', which would take it over) */
    mq *ok = mq_new(5, &MQ_ID2);
    CHECK(mq_login(ok, &MQ_ID2, true, NULL) == 0, "connect");
    char t[64];
    /* the bad inputs' own T/req (they sign in as MQ_ID) */
    snprintf(t, sizeof t, "p/%llu.%u/req", (unsigned long long)MQ_ID.user_id, MQ_ID.device_id);
    size_t tl = strlen(t);

    const uint8_t five_byte_len[] = {0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F};
    CHECK(bad_input(5, true, five_byte_len, sizeof five_byte_len) == MQTT_RC_MALFORMED, "5-byte length: want 0x81");
    const uint8_t non_minimal[] = {0xC0, 0x80, 0x00};
    CHECK(bad_input(5, true, non_minimal, sizeof non_minimal) == MQTT_RC_MALFORMED, "non-minimal length: want 0x81");
    CHECK(bad_input(4, true, five_byte_len, sizeof five_byte_len) == -1, "3.1.1 bad length: want a plain close");
    const uint8_t ping_first[] = {0xC0, 0x00};
    CHECK(bad_input(5, false, ping_first, sizeof ping_first) == -1, "PINGREQ before CONNECT: want a close");
    /* a second CONNECT */
    uint8_t p[600];
    mqtt_connect_args a = {.level = 5, .clean_start = true, .client_id = "1.1"};
    size_t n = mqtt_encode_connect(p, sizeof p, &a);
    CHECK(bad_input(5, true, p, n) == MQTT_RC_PROTOCOL_ERROR, "second CONNECT: want 0x82");
    /* oversize: a declared length over --max-message (1 MiB here) */
    const uint8_t huge[] = {0x30, 0xFF, 0xFF, 0x7F};   /* 2 MiB */
    CHECK(bad_input(5, true, huge, sizeof huge) == MQTT_RC_PACKET_TOO_LARGE, "oversize: want 0x95");
    /* QoS 2 to T/req */
    n = mqtt_encode_publish_head(p, sizeof p, 5, t, tl, 2, false, 7, 0);
    CHECK(bad_input(5, true, p, n) == MQTT_RC_QOS_NOT_SUPPORTED, "QoS 2: want 0x9B");
    n = mqtt_encode_publish_head(p, sizeof p, 4, t, tl, 2, false, 7, 0);
    CHECK(bad_input(4, true, p, n) == -1, "3.1.1 QoS 2: want a close");
    /* retained */
    n = mqtt_encode_publish_head(p, sizeof p, 5, t, tl, 0, true, 0, 0);
    CHECK(bad_input(5, true, p, n) == MQTT_RC_RETAIN_NOT_SUPPORTED, "retain: want 0x9A");
    /* a topic that is not UTF-8 */
    const uint8_t bad_topic[] = {0x30, 0x06, 0x00, 0x03, 'p', 0xC0, 0xAF, 0x00};
    CHECK(bad_input(5, true, bad_topic, sizeof bad_topic) == MQTT_RC_MALFORMED, "bad UTF-8 topic: want 0x81");
    /* QoS 0 PUBLISH to another topic */
    n = mqtt_encode_publish_head(p, sizeof p, 5, "p/1.1/req", 9, 0, false, 0, 0);
    CHECK(bad_input(5, true, p, n) == MQTT_RC_TOPIC_NAME_INVALID, "foreign topic: want 0x90");
    /* a property given twice: Payload Format Indicator in a PUBLISH */
    uint8_t dup[128];
    size_t k = 0;
    dup[k++] = 0x30;
    dup[k++] = (uint8_t)(2 + tl + 5);
    dup[k++] = 0;
    dup[k++] = (uint8_t)tl;
    memcpy(dup + k, t, tl);
    k += tl;
    dup[k++] = 0x04;
    dup[k++] = 0x01; dup[k++] = 0x00; dup[k++] = 0x01; dup[k++] = 0x00;
    CHECK(bad_input(5, true, dup, k) == MQTT_RC_PROTOCOL_ERROR, "duplicate property: want 0x82");

    /* the healthy connection still answers */
    uint8_t ping[2] = {0xC0, 0x00}, first, body[64];
    size_t len;
    CHECK(mq_write(ok, ping, 2) == 0, "ping");
    CHECK(mq_next(ok, &first, body, sizeof body, &len, IO_MS) == 1 && first == 0xD0, "no PINGRESP after the bad inputs");
    double malformed = 0;
    CHECK(h_metric(&S, "parley_mqtt_malformed_total", &malformed) == 0 && malformed >= 10,
          "malformed counted %.0f", malformed);
    mq_free(ok);
}

/* The same over WebSocket on the main port (subprotocol mqtt): sign-in,
 * subscribe, a send answered on T/res, every packet in binary messages. */
static void over_websocket(void) {
    mq *m = mq_new(5, &MQ_ID);
    m->ws = true;
    int rc = mq_login(m, &MQ_ID, true, NULL);
    CHECK(rc == MQTT_RC_SUCCESS, "CONNECT over WebSocket: CONNACK %d", rc);
    CHECK(mq_subscribe_own(m) == 0, "subscribe over WebSocket");
    uint64_t seq = 0;
    CHECK(mq_send_text(m, CONV, "over websocket", &seq) == 0 && seq > 0, "send over MQTT over WebSocket");
    /* a PINGREQ split across two messages still gets its PINGRESP */
    uint8_t ping[2] = {0xC0, 0x00}, first, body[16];
    size_t len;
    CHECK(mq_write(m, ping, 1) == 0 && mq_write(m, ping + 1, 1) == 0, "ping");
    CHECK(mq_next(m, &first, body, sizeof body, &len, IO_MS) == 1 && first == 0xD0, "no PINGRESP");
    mq_free(m);
}

/* Keep-alive: a device silent for 1.5 x its keep-alive is disconnected
 * (MQTT 5: DISCONNECT 0x8D) and shown offline. */
static void keep_alive_expires(void) {
    mq *m = mq_new(5, &MQ_ID);
    char cid[48], pw[160];
    snprintf(cid, sizeof cid, "%llu.%u", (unsigned long long)MQ_ID.user_id, MQ_ID.device_id);
    make_password(&MQ_ID, cid, fresh_ts(), pw, sizeof pw);
    m->fd = h_tcp_connect(MQTT_PORT, IO_MS);
    CHECK(m->fd >= 0, "connect");
    uint8_t p[512];
    mqtt_connect_args a = {.level = 5, .clean_start = true, .keep_alive = 1, .client_id = cid, .username = cid,
                           .password = (const uint8_t *)pw, .password_len = strlen(pw)};
    size_t n = mqtt_encode_connect(p, sizeof p, &a);
    CHECK(mq_write(m, p, n) == 0, "write");
    double idle0 = 0, idle1 = 0;
    CHECK(h_metric(&S, "parley_idle_timeouts_total", &idle0) == 0, "metric missing");
    int reason = -1;
    CHECK(mq_closed(m, &reason), "still open after 1.5 x a 1 s keep-alive and then some");
    CHECK(reason == MQTT_RC_KEEP_ALIVE_TIMEOUT, "DISCONNECT 0x%02x, want 0x8D", reason);
    CHECK(h_metric(&S, "parley_idle_timeouts_total", &idle1) == 0 && idle1 >= idle0 + 1, "idle timeout not counted");
    mq_free(m);
}

/* Reads from fd until a packet of type `type` arrived whole (anything
 * before it is skipped); 0 or -1. */
static int await_packet(int fd, uint8_t type) {
    uint8_t b[4096];
    size_t have = 0;
    uint64_t deadline = h_now_ms() + IO_MS;
    while (h_now_ms() < deadline) {
        uint8_t first;
        uint32_t rem;
        size_t hl;
        while (mqtt_fixed_header(b, have, &first, &rem, &hl) == MQTT_OK && hl + rem <= have) {
            if (first >> 4 == type) return 0;
            memmove(b, b + hl + rem, have - hl - rem);
            have -= hl + rem;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 1000) <= 0) continue;
        if (have == sizeof b) return -1;
        ssize_t r = recv(fd, b + have, sizeof b - have, 0);
        if (r <= 0) return -1;
        have += (size_t)r;
    }
    return -1;
}

/* One signed-in, idle MQTT 3.1.1 connection: its fd. synced: a persistent
 * session subscribed to T/ev that has had its SyncDone (in the registry,
 * receiving live events), as a WebSocket device after StartSync. */
static int open_idle(const pc_identity *id, bool synced) {
    char cid[48], pw[160];
    snprintf(cid, sizeof cid, "%llu.%u", (unsigned long long)id->user_id, id->device_id);
    make_password(id, cid, fresh_ts(), pw, sizeof pw);
    int fd = h_tcp_connect(MQTT_PORT, IO_MS);
    if (fd < 0) return -1;
    uint8_t p[512];
    mqtt_connect_args a = {.level = 4, .clean_start = !synced, .keep_alive = 600, .client_id = cid,
                           .username = cid, .password = (const uint8_t *)pw, .password_len = strlen(pw)};
    size_t n = mqtt_encode_connect(p, sizeof p, &a);
    uint8_t ack[4];
    size_t got = 0;
    if (write_all(fd, p, n) == 0) {
        uint64_t deadline = h_now_ms() + IO_MS;
        while (got < 4 && h_now_ms() < deadline) {
            struct pollfd pfd = {.fd = fd, .events = POLLIN};
            if (poll(&pfd, 1, 1000) <= 0) continue;
            ssize_t r = recv(fd, ack + got, 4 - got, 0);
            if (r <= 0) break;
            got += (size_t)r;
        }
    }
    if (got != 4 || ack[0] != 0x20 || ack[3] != 0) {
        close(fd);
        return -1;
    }
    if (synced) {
        char ev[64];
        snprintf(ev, sizeof ev, "p/%s/ev", cid);
        const char *f[] = {ev};
        const uint8_t q[] = {1};
        n = mqtt_encode_subscribe(p, sizeof p, 4, false, 1, f, q, 1);
        /* SUBACK, then SyncDone (a QoS 0 PUBLISH: the inbox is empty) */
        if (write_all(fd, p, n) || await_packet(fd, MQTT_PUBLISH)) {
            close(fd);
            return -1;
        }
    }
    return fd;
}

/* Memory per idle MQTT connection: the server's RSS growth over N idle
 * signed-in connections, divided by N (printed; bounded loosely so that a
 * buffer kept per idle connection would fail it). The connections stay
 * open (into *fds) so that the next measurement does not reuse their memory. */
enum { IDLE_N = 4000, IDLE_WARM = 200 };

/* ids: one client id per connection (a second connection with the same
 * client id would take the first over). */
static void measure_idle(const pc_identity *ids, bool synced, int *fds) {
    double open0 = 0, open = 0;
    CHECK(h_metric(&S, "parley_mqtt_connections", &open0) == 0, "metric missing");
    for (int i = 0; i < IDLE_WARM; i++)
        CHECK((fds[i] = open_idle(&ids[i], synced)) >= 0, "warm-up connection %d", i);
    long before = h_rss_kb(&S);
    for (int i = IDLE_WARM; i < IDLE_N + IDLE_WARM; i++)
        CHECK((fds[i] = open_idle(&ids[i], synced)) >= 0, "connection %d not accepted", i);
    CHECK(h_metric(&S, "parley_mqtt_connections", &open) == 0, "metric missing");
    long after = h_rss_kb(&S);
    CHECK(open >= open0 + IDLE_N + IDLE_WARM, "%.0f MQTT connections more, want %d", open - open0,
          IDLE_N + IDLE_WARM);
    double per = (double)(after - before) * 1024.0 / IDLE_N;
    if (!RSS_MEANINGFUL) {   /* AddressSanitizer: quarantine and redzones, RSS says nothing */
        check_note("mqtt: idle connection memory not measured under AddressSanitizer");
        return;
    }
    check_note("mqtt: %.0f bytes of server RSS per idle MQTT connection, %s (%d connections, RSS %ld -> %ld KiB)",
               per, synced ? "subscribed to T/ev and synced" : "signed in only", IDLE_N, before, after);
    CHECK(per < 2048, "%.0f bytes per idle MQTT connection", per);
}

static void idle_connection_memory(void) {
    /* the connections of the cases before are gone first (closed by this
     * side; the server sees it a moment later) */
    double open = 1;
    uint64_t until = h_now_ms() + 20000;
    while (h_now_ms() < until && h_metric(&S, "parley_mqtt_connections", &open) == 0 && open > 0) h_sleep_ms(50);
    CHECK(open == 0, "%.0f MQTT connections still open", open);
    enum { ALL = 2 * (IDLE_N + IDLE_WARM) };
    int *fds = h_calloc(ALL, sizeof *fds);
    for (int i = 0; i < ALL; i++) fds[i] = -1;
    /* a user per connection, all registered before the measurements (their
     * inboxes are empty: the sync of each synced connection is just SyncDone) */
    pc_identity *ids = h_calloc(ALL, sizeof *ids);
    uint64_t t0 = h_now_ms();
    int registered = 0;
    for (; registered < ALL; registered++) {
        h_dev *u = h_user_new(&S, NULL);
        if (!u) break;
        ids[registered] = u->id;
        h_dev_free(u);
    }
    check_note("mqtt: %d users registered for the idle connections in %llu ms", registered,
               (unsigned long long)(h_now_ms() - t0));
    if (registered == ALL) {
        measure_idle(ids, false, fds);
        if (!check_case_failed) measure_idle(ids + IDLE_N + IDLE_WARM, true, fds + IDLE_N + IDLE_WARM);
    }
    for (int i = 0; i < ALL; i++)
        if (fds[i] >= 0) close(fds[i]);
    h_free(fds);
    h_free(ids);
    CHECK(registered == ALL, "registered %d of %d users", registered, ALL);
}

/* --mqtt-listen speaks TLS when --tls-cert is given: a TLS client that
 * trusts the server's certificate signs in with the password scheme. */
static void over_tls(void) {
    char dir[] = "/tmp/parley-mqtt-tls-XXXXXX", cert[512], key[512];
    CHECK(mkdtemp(dir), "temp dir");
    CHECK(h_make_cert(dir, cert, key, sizeof cert) == 0, "certificate");
    int port = h_free_port();
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    const char *args[] = {"--tls-cert", cert, "--tls-key", key, "--mqtt-listen", listen, NULL};
    h_server T;
    int started = h_server_start_tls(&T, args);
    pc_identity id;
    pc_identity_generate(&id);
    pc_options o;
    h_client_options(&T, &o);
    o.tls_ca_file = cert;
    pc_client *c = started == 0 ? pc_new(&o) : NULL;
    int registered = c && pc_connect(c) == 0 && pc_register_user(c, "mqtt_over_tls", &id) == 0;
    if (c) pc_free(c);
    int connack = -1;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    int fd = registered ? h_tcp_connect(port, IO_MS) : -1;
    if (fd >= 0 && ctx && SSL_CTX_load_verify_locations(ctx, cert, NULL) == 1) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        char cid[48], pw[160];
        snprintf(cid, sizeof cid, "%llu.%u", (unsigned long long)id.user_id, id.device_id);
        make_password(&id, cid, fresh_ts(), pw, sizeof pw);
        uint8_t p[512], ack[4];
        mqtt_connect_args a = {.level = 4, .clean_start = true, .keep_alive = 30, .client_id = cid,
                               .username = cid, .password = (const uint8_t *)pw, .password_len = strlen(pw)};
        size_t n = mqtt_encode_connect(p, sizeof p, &a);
        int got = 0;
        if (SSL_connect(ssl) == 1 && SSL_write(ssl, p, (int)n) == (int)n)
            while (got < 4) {
                int r = SSL_read(ssl, ack + got, 4 - got);
                if (r <= 0) break;
                got += r;
            }
        if (got == 4 && ack[0] == 0x20) connack = ack[3];
    }
    if (ssl) SSL_free(ssl);
    if (ctx) SSL_CTX_free(ctx);
    if (fd >= 0) close(fd);
    int stopped = started == 0 ? h_server_stop(&T) : 0;
    h_server_destroy(&T);
    unlink(cert);
    unlink(key);
    rmdir(dir);
    CHECK(started == 0, "TLS server did not start");
    CHECK(registered, "registration over wss");
    CHECK(connack == MQTT_V4_ACCEPTED, "CONNACK over TLS: %d", connack);
    CHECK(stopped == 0, "TLS server exit");
}

/* MQTT 5 Maximum Packet Size of the device: a larger PUBLISH is not sent
 * (the Response to ListConversations here), smaller packets still are. */
static void device_max_packet_size(void) {
    mq *m = mq_new(5, &MQ_ID);
    char cid[48], pw[160];
    snprintf(cid, sizeof cid, "%llu.%u", (unsigned long long)MQ_ID.user_id, MQ_ID.device_id);
    make_password(&MQ_ID, cid, fresh_ts(), pw, sizeof pw);
    m->fd = h_tcp_connect(MQTT_PORT, IO_MS);
    CHECK(m->fd >= 0, "connect");
    uint8_t p[512], first, body[4096];
    size_t len;
    mqtt_connect_args a = {.level = 5, .clean_start = true, .keep_alive = 30, .client_id = cid, .username = cid,
                           .password = (const uint8_t *)pw, .password_len = strlen(pw), .max_packet_size = 48};
    size_t n = mqtt_encode_connect(p, sizeof p, &a);
    CHECK(mq_write(m, p, n) == 0, "write");
    CHECK(mq_next(m, &first, body, sizeof body, &len, IO_MS) == 1 && first == 0x20 && len >= 2 && body[1] == 0,
          "CONNACK");
    CHECK(mq_subscribe_own(m) == 0, "subscribe");
    Parley__V1__Frame f;
    Parley__V1__ListConversations lc;
    parley__v1__frame__init(&f);
    parley__v1__list_conversations__init(&lc);
    f.body_case = PARLEY__V1__FRAME__BODY_LIST_CONVERSATIONS;
    f.list_conversations = &lc;
    CHECK(mq_request(m, &f, 0) != 0, "request");
    uint8_t ping[2] = {0xC0, 0x00};
    CHECK(mq_write(m, ping, 2) == 0, "ping");
    /* the answer to the request comes before the PINGRESP, or not at all */
    bool oversize = false, pong = false;
    for (int i = 0; i < 16 && !pong; i++) {
        if (mq_next(m, &first, body, sizeof body, &len, IO_MS) != 1) break;
        if (first >> 4 == MQTT_PUBLISH && 1 + mqtt_varint_size((uint32_t)len) + len > 48) oversize = true;
        pong = first == 0xD0;
    }
    CHECK(pong, "no PINGRESP");
    CHECK(!oversize, "a PUBLISH over the device's Maximum Packet Size of 48 was sent");
    mq_free(m);
}

/* UNSUBSCRIBE T/ev in a syncing session, an event arrives, SUBSCRIBE again:
 * the event passed over is sent (from the last PUBACK), not lost. */

/* OWNER's WebSocket device (synced, then live) has (CONV, seq): fan-out
 * has appended it to OWNER's inbox, so a session that syncs now finds it
 * there. Bounded by IO_MS. */
static bool owner_device_has(uint64_t seq) {
    if (h_dev_sync(OWNER, IO_MS) != 0) return false;
    h_dev *owner[] = {OWNER};
    uint64_t until = h_now_ms() + IO_MS;
    while (!h_dev_has(OWNER, CONV, seq) && h_now_ms() < until) {
        h_count_goal g = {.devs = owner, .n = 1, .conv = CONV, .want = h_dev_count(OWNER, CONV) + 1};
        h_pump(owner, 1, h_pred_count, &g, 200);
    }
    return h_dev_has(OWNER, CONV, seq) > 0;
}
static void resubscribe_gets_skipped(void) {
    mq *m = mq_new(4, &MQ_ID);
    CHECK(mq_login(m, &MQ_ID, true, NULL) == 0, "connect");
    CHECK(mq_subscribe_own(m) == 0, "subscribe");
    Parley__V1__Frame f;
    Parley__V1__StartSync ss;
    parley__v1__frame__init(&f);
    parley__v1__start_sync__init(&ss);
    f.body_case = PARLEY__V1__FRAME__BODY_START_SYNC;
    f.start_sync = &ss;
    Parley__V1__Frame *r = mq_until(m, mq_request(m, &f, 0), NULL);
    CHECK(r, "StartSync");
    parley__v1__frame__free_unpacked(r, NULL);
    r = mq_until(m, 0, NULL);
    CHECK(r, "SyncDone");
    parley__v1__frame__free_unpacked(r, NULL);
    /* every event so far PUBACKed */
    for (size_t i = 0; i < m->n_ev; i++) CHECK(mq_puback(m, m->ev_pid[i]) == 0, "puback");
    char ev[64];
    snprintf(ev, sizeof ev, "%s/ev", m->topic);
    uint8_t p[128];
    const char *fl[] = {ev};
    size_t n = mqtt_encode_subscribe(p, sizeof p, 4, true, m->next_pid++, fl, NULL, 1);
    CHECK(mq_write(m, p, n) == 0, "unsubscribe");
    static uint8_t ubody[MQ_BUF];
    uint8_t ufirst = 0;
    size_t ulen = 0;
    for (int i = 0; i < 256 && ufirst != 0xB0; i++)   /* events already on their way come first */
        CHECK(mq_next(m, &ufirst, ubody, sizeof ubody, &ulen, IO_MS) == 1, "no UNSUBACK");
    /* an event while unsubscribed: delivered to the owner's WebSocket device
     * by the same fan-out, so by then this connection has passed it too */
    uint64_t seq = h_send(PEER, CONV, "while unsubscribed");
    CHECK(seq > 0, "send");
    CHECK(owner_device_has(seq), "the WebSocket device did not get it");
    size_t before = m->n_ev;
    uint8_t codes[1];
    const char *again[] = {"/ev"};
    CHECK(mq_subscribe(m, again, 1, codes) == 1 && codes[0] == 1, "subscribe again");
    bool got = false;
    for (int i = 0; i < 64 && !got; i++) {
        Parley__V1__Frame q;
        Parley__V1__ListConversations lc;
        parley__v1__frame__init(&q);
        parley__v1__list_conversations__init(&lc);
        q.body_case = PARLEY__V1__FRAME__BODY_LIST_CONVERSATIONS;
        q.list_conversations = &lc;
        r = mq_until(m, mq_request(m, &q, 0), NULL);
        CHECK(r, "connection lost");
        parley__v1__frame__free_unpacked(r, NULL);
        for (size_t k = before; k < m->n_ev; k++) got = got || m->ev_seq[k] > 0;
        if (!got) h_sleep_ms(100);
    }
    CHECK(got, "the event passed over while unsubscribed never came");
    mq_free(m);
}

/* Reads until SyncDone; returns the events recorded so far (0: none, or
 * no SyncDone). */
static size_t mq_sync_events(mq *m) {
    Parley__V1__Frame *r = mq_until(m, 0, NULL);
    if (!r) return 0;
    parley__v1__frame__free_unpacked(r, NULL);
    return m->n_ev;
}

/* Session takeover (MQTT 3.1.1 3.1.4-2, MQTT 5 3.1.4-3): a CONNECT with the
 * client id of an open MQTT connection closes that one (MQTT 5: DISCONNECT
 * 0x8E) as the new one gets its CONNACK; the new session resumes from the
 * cursor and sends again, in order and without gaps, the events the old
 * one got but did not PUBACK (the device dedupes by user_seq); the
 * device's WebSocket connection stays open. Then at 3.1.1: the older
 * connection is closed without a DISCONNECT. */
static void session_takeover(void) {
    h_dev *ws = h_device_link(&S, OWNER);   /* the device, also on WebSocket throughout */
    CHECK(ws, "device");
    pc_identity id = ws->id;
    for (int i = 0; i < 6; i++) CHECK(h_send(PEER, CONV, "before the takeover") > 0, "send %d", i);
    double taken0 = 0, taken1 = 0;
    CHECK(h_metric(&S, "parley_mqtt_takeovers_total", &taken0) == 0, "metric missing");

    mq *a = mq_new(5, &id), *b = mq_new(5, &id), *c = mq_new(4, &id), *d = mq_new(4, &id);
    CHECK(mq_login(a, &id, false, NULL) == MQTT_RC_SUCCESS, "first connection");
    CHECK(mq_subscribe_own(a) == 0, "subscribe");
    size_t total = mq_sync_events(a);
    CHECK(total >= 6, "%zu events before the takeover", total);
    size_t half = total / 2;
    for (size_t i = 0; i < half; i++) CHECK(mq_puback(a, a->ev_pid[i]) == 0, "puback");
    uint64_t acked = a->ev_seq[half - 1], last = a->ev_seq[total - 1];
    CHECK(mq_ping(a) == 0, "the first connection answers");   /* its PUBACKs were handled */

    bool present = false;
    int rc = mq_login(b, &id, false, &present);
    CHECK(rc == MQTT_RC_SUCCESS, "the same client id again: CONNACK 0x%02x", rc);
    int reason = -2;
    CHECK(mq_closed(a, &reason), "the older connection is still open after the takeover");
    CHECK(reason == 0x8E, "the older connection got DISCONNECT %d, want 0x8E Session taken over", reason);
    CHECK(h_metric(&S, "parley_mqtt_takeovers_total", &taken1) == 0 && taken1 >= taken0 + 1,
          "takeover not counted (%.0f -> %.0f)", taken0, taken1);

    CHECK(mq_subscribe_own(b) == 0, "subscribe on the new connection");
    CHECK(mq_sync_events(b) > 0, "no events on the new connection");
    CHECK(b->ev_seq[0] <= acked + 1, "the new session starts at %llu: the events after the PUBACKed %llu were lost",
          (unsigned long long)b->ev_seq[0], (unsigned long long)acked);
    for (size_t i = 1; i < b->n_ev; i++) CHECK(b->ev_seq[i] == b->ev_seq[i - 1] + 1, "gap or duplicate");
    CHECK(b->ev_seq[b->n_ev - 1] >= last, "the new session ended at %llu before %llu",
          (unsigned long long)b->ev_seq[b->n_ev - 1], (unsigned long long)last);

    /* the device's WebSocket connection was not touched */
    CHECK(h_dev_sync(ws, IO_MS) == 0, "the device's WebSocket connection no longer answers");

    /* MQTT 3.1.1 takes over the MQTT 5 connection, and is taken over with a plain close */
    CHECK(mq_login(c, &id, false, NULL) == MQTT_V4_ACCEPTED, "3.1.1 connection");
    CHECK(mq_closed(b, &reason) && reason == 0x8E, "the MQTT 5 connection was not taken over (%d)", reason);
    CHECK(mq_login(d, &id, false, NULL) == MQTT_V4_ACCEPTED, "second 3.1.1 connection");
    CHECK(mq_closed(c, &reason), "the older 3.1.1 connection is still open");
    CHECK(reason == -1, "3.1.1 got a DISCONNECT (0x%02x)", reason);
    CHECK(mq_ping(d) == 0, "the newest connection answers");
    CHECK(h_dev_sync(ws, IO_MS) == 0, "the device's WebSocket connection no longer answers");
    mq_free(a);
    mq_free(b);
    mq_free(c);
    mq_free(d);
    h_dev_free(ws);
}

/* Takeovers in a row: each new connection closes the one before it with
 * 0x8E, and only the newest stays. The server has one worker per core and
 * the kernel spreads the connections over the workers' listeners, so both
 * the same-worker close and the post to another worker's inbox are taken
 * (all CHAIN_N on one worker: 1 in 2^(CHAIN_N-1) on two cores). */
enum { CHAIN_N = 12 };

static void takeover_chain(void) {
    pc_identity id;
    CHECK(link_identity(OWNER, &id) == 0, "device");
    mq *m[CHAIN_N];
    for (int i = 0; i < CHAIN_N; i++) m[i] = mq_new(i % 2 ? 4 : 5, &id);
    for (int i = 0; i < CHAIN_N; i++) {
        int rc = mq_login(m[i], &id, true, NULL);
        CHECK(rc == 0, "connection %d: CONNACK %d", i, rc);
        if (i == 0) continue;
        int reason = -2;
        CHECK(mq_closed(m[i - 1], &reason), "connection %d still open after connection %d took over", i - 1, i);
        CHECK(reason == (m[i - 1]->level == 5 ? 0x8E : -1), "connection %d closed with %d", i - 1, reason);
    }
    CHECK(mq_ping(m[CHAIN_N - 1]) == 0, "the newest connection answers");
    for (int i = 0; i < CHAIN_N; i++) mq_free(m[i]);
}

/* MQTT 5 PUBACK with a reason code of 0x80 or more: the device failed to
 * handle the event, so it is no Ack (no cursor advance is handed to the
 * writer: parley_acks_submitted_total stays) and the event comes again in
 * the next session. */
static void puback_error_not_ack(void) {
    pc_identity id;
    CHECK(link_identity(OWNER, &id) == 0, "device");
    CHECK(h_send(PEER, CONV, "refused by the device") > 0, "send");
    mq *m = mq_new(5, &id);
    CHECK(mq_login(m, &id, false, NULL) == MQTT_RC_SUCCESS, "connect");
    CHECK(mq_subscribe_own(m) == 0, "subscribe");
    size_t n = mq_sync_events(m);
    CHECK(n >= 1, "no event");
    uint64_t refused = m->ev_seq[n - 1];
    for (size_t i = 0; i + 1 < n; i++) CHECK(mq_puback(m, m->ev_pid[i]) == 0, "puback");
    CHECK(mq_ping(m) == 0, "ping");   /* the good PUBACKs' cursor advance is submitted by now */
    double acks0 = 0, acks1 = 0, errs0 = 0, errs1 = 0;
    CHECK(h_metric(&S, "parley_acks_submitted_total", &acks0) == 0, "metric missing");
    CHECK(h_metric(&S, "parley_mqtt_puback_errors_total", &errs0) == 0, "metric missing");
    CHECK(mq_puback_reason(m, m->ev_pid[n - 1], 0x80) == 0, "PUBACK 0x80");
    /* an Ack is submitted at the end of the loop turn that read it, before
     * that turn's output: after the PINGRESP it would be counted */
    CHECK(mq_ping(m) == 0, "ping");
    CHECK(h_metric(&S, "parley_acks_submitted_total", &acks1) == 0, "metric missing");
    CHECK(h_metric(&S, "parley_mqtt_puback_errors_total", &errs1) == 0, "metric missing");
    CHECK(acks1 == acks0, "PUBACK 0x80 taken as an Ack: acks submitted %.0f -> %.0f", acks0, acks1);
    CHECK(errs1 == errs0 + 1, "PUBACK 0x80 not counted (%.0f -> %.0f)", errs0, errs1);

    m->n_ev = 0;
    CHECK(mq_login(m, &id, false, NULL) == MQTT_RC_SUCCESS, "reconnect");
    CHECK(mq_subscribe_own(m) == 0, "subscribe again");
    CHECK(mq_sync_events(m) >= 1, "no events in the next session");
    bool again = false;
    for (size_t i = 0; i < m->n_ev; i++) again = again || m->ev_seq[i] == refused;
    CHECK(again, "the event refused with PUBACK 0x80 (user_seq %llu) did not come again",
          (unsigned long long)refused);
    mq_free(m);
}

/* PUBACKs each in their own packet and loop turn are folded into one cursor
 * write (CHAT_ACK) per ACK_HOLD_MAX (32) acknowledged events while some of
 * the events sent are unacknowledged; the PUBACK of the last event sent
 * writes the cursor at once, and the next session resumes after it. */
static void pubacks_folded(void) {
    enum { HOLD = 32 };
    pc_identity id;
    CHECK(link_identity(OWNER, &id) == 0, "device");
    uint64_t last_sent = 0;
    for (int i = 0; i < HOLD + 2; i++) CHECK((last_sent = h_send(PEER, CONV, "folded")) > 0, "send %d", i);
    /* all in the inbox before the session syncs: one fan-out had not yet
     * appended would come live after SyncDone, so the last event synced
     * would not be the last sent and its PUBACK would rightly be held
     * (seen at load 8: "the PUBACK of the last event sent made 0 cursor
     * writes") */
    CHECK(owner_device_has(last_sent), "the owner's WebSocket device did not get the last send");
    mq *m = mq_new(4, &id);
    CHECK(mq_login(m, &id, false, NULL) == MQTT_V4_ACCEPTED, "connect");
    CHECK(mq_subscribe_own(m) == 0, "subscribe");
    size_t n = mq_sync_events(m);
    CHECK(n >= HOLD + 2, "%zu events", n);
    double acks0 = 0, acks1 = 0, acks2 = 0, held0 = 0, held1 = 0;
    CHECK(h_metric(&S, "parley_acks_submitted_total", &acks0) == 0, "metric missing");
    CHECK(h_metric(&S, "parley_mqtt_acks_held_total", &held0) == 0, "metric missing");
    /* each PUBACK alone in a loop turn: the ping answers after it was handled */
    for (size_t i = 0; i + 1 < n; i++) {
        CHECK(mq_puback(m, m->ev_pid[i]) == 0, "puback %zu", i);
        CHECK(mq_ping(m) == 0, "ping");
    }
    CHECK(h_metric(&S, "parley_acks_submitted_total", &acks1) == 0, "metric missing");
    CHECK(h_metric(&S, "parley_mqtt_acks_held_total", &held1) == 0, "metric missing");
    double writes = (double)((n - 1) / HOLD);
    CHECK(acks1 - acks0 == writes, "%zu PUBACKs made %.0f cursor writes, want %.0f", n - 1, acks1 - acks0, writes);
    CHECK(held1 - held0 == (double)(n - 1) - writes, "held %.0f", held1 - held0);
    uint64_t last = m->ev_seq[n - 1];
    CHECK(mq_puback(m, m->ev_pid[n - 1]) == 0, "last puback");
    CHECK(mq_ping(m) == 0, "ping");
    CHECK(h_metric(&S, "parley_acks_submitted_total", &acks2) == 0, "metric missing");
    CHECK(acks2 - acks1 == 1, "the PUBACK of the last event sent made %.0f cursor writes", acks2 - acks1);
    mq_close(m);
    /* the stored cursor is the last event: a new event is all the next session gets */
    CHECK(h_send(PEER, CONV, "after") > 0, "send after");
    /* the writer stores it asynchronously: sessions until one resumes there */
    bool resumed = false;
    uint64_t until = h_now_ms() + 20000;
    for (int attempt = 0; !resumed && attempt < 100 && h_now_ms() < until; attempt++) {
        m->n_ev = 0;
        m->sync_done = false;
        CHECK(mq_login(m, &id, false, NULL) == 0, "reconnect");
        CHECK(mq_subscribe_own(m) == 0, "subscribe again");
        /* none before SyncDone: fan-out had not appended "after" to the
         * inbox when this session's sync read it (it comes live): again */
        if (mq_sync_events(m) >= 1) {
            CHECK(m->ev_seq[0] <= last + 1, "resumed at %llu: skipped events", (unsigned long long)m->ev_seq[0]);
            resumed = m->ev_seq[0] == last + 1;
        }
        mq_close(m);
        if (!resumed) h_sleep_ms(200);
    }
    CHECK(resumed, "never resumed after the last PUBACKed user_seq %llu", (unsigned long long)last);
    mq_free(m);
}

/* MQTT connections count against --max-connections like WebSocket ones:
 * at the cap CONNACK says return code 3 (server unavailable). */
static void connection_cap(void) {
    int port = h_free_port();
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    const char *args[] = {"--mqtt-listen", listen, "--max-connections", "1", NULL};
    h_server T;
    CHECK(h_server_start(&T, args) == 0, "server with --max-connections 1");
    h_dev *ws = h_user_new(&T, NULL);   /* the one connection */
    pc_identity id = ws ? ws->id : MQ_ID;
    int saved = MQTT_PORT;
    MQTT_PORT = port;
    mq *m = mq_new(4, &id);
    int at_cap = ws ? mq_login(m, &id, true, NULL) : -2;
    if (ws) h_dev_free(ws);
    /* the WebSocket connection gone, the place is free */
    double open = 1;
    uint64_t until = h_now_ms() + 20000;
    while (h_now_ms() < until && h_metric(&T, "parley_connections", &open) == 0 && open > 0) h_sleep_ms(50);
    int below = mq_login(m, &id, true, NULL);
    double rejected = 0;
    h_metric(&T, "parley_upgrades_rejected_total", &rejected);
    mq_free(m);
    MQTT_PORT = saved;
    int stopped = h_server_stop(&T);
    h_server_destroy(&T);
    CHECK(at_cap == MQTT_V4_UNAVAILABLE, "CONNACK at the cap: %d, want 3", at_cap);
    CHECK(below == MQTT_V4_ACCEPTED, "CONNACK below the cap: %d", below);
    CHECK(rejected >= 1, "refusal not counted in parley_upgrades_rejected_total");
    CHECK(stopped == 0, "server exit");
}

int main(void) {
    MQTT_PORT = h_free_port();
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", MQTT_PORT);
    const char *args[] = {"--mqtt-listen", listen, NULL};
    if (h_server_start(&S, args) != 0 || fixtures() != 0) {
        printf("FAIL setup\n");
        h_server_destroy(&S);
        return 1;
    }
    RUN(password_scheme);
    RUN(enhanced_auth);
    RUN(talks_to_websocket);
    RUN(puback_advances_cursor);
    RUN(subscriptions_limited);
    RUN(malformed_packets);
    RUN(over_websocket);
    RUN(keep_alive_expires);
    RUN(over_tls);
    RUN(device_max_packet_size);
    RUN(resubscribe_gets_skipped);
    RUN(connection_cap);
    RUN(session_takeover);
    RUN(takeover_chain);
    RUN(puback_error_not_ack);
    RUN(pubacks_folded);
    RUN(idle_connection_memory);
    h_dev_free(OWNER);
    h_dev_free(PEER);
    if (h_server_stop(&S) != 0) printf("FAIL server exit\n");
    h_server_destroy(&S);
    CHECK_EXIT();
}
