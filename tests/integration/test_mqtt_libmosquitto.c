/* test_mqtt_libmosquitto.c -- a standard MQTT client library (libmosquitto,
 * Debian's libmosquitto-dev) drives parley's MQTT listener (README "MQTT"):
 * a device registered over WebSocket signs in with the password scheme
 * (parley_mqtt.h), subscribes to p/USER.DEVICE/ev and /res, and receives what
 * a WebSocket user sends it as protobuf Frame{event} PUBLISHes at QoS 1,
 * which libmosquitto PUBACKs (the device's Ack).
 *
 * The application on top dedupes by user_seq across connections, as a
 * WebSocket device does; what it shows must be every message once, in order.
 *
 *   persistent_session_resumes_after_abrupt_drop (MQTT 3.1.1, clean session
 *     off): events PUBACKed (the sender's DELIVERED receipt says the cursor
 *     is committed), then more sent while the client does not read, the
 *     socket dropped with them unread; the reconnect (Session Present) gets
 *     exactly the unread ones, in order, and none of the PUBACKed ones.
 *   qos1_redelivered_after_puback_lost (MQTT 5, clean start off): the
 *     client goes through a proxy in this process that swallows its
 *     PUBACKs; it shows two events, the connection drops, the reconnect gets
 *     those two again (never PUBACKed) and the application shows neither
 *     twice.
 *   publish_to_req_reaches_websocket_user: a SendMessage Frame published to
 *     p/USER.DEVICE/req at QoS 1 is answered on /res with Sent and the
 *     WebSocket member receives it.
 *
 * One server for the program, started with --mqtt-listen on a free port and
 * stopped by the harness (by PID) on every path. Every wait is bounded. */
#include <errno.h>
#include <mosquitto.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <unistd.h>

#include "../check.h"
#include "harness.h"
#include "parley_mqtt.h"
#include "proto/parley.pb-c.h"

enum { WAIT_MS = 30000, MAX_EVENTS = 256, KEEPALIVE_S = 60 };

static h_server S;
static int g_mqtt_port;
static bool g_up;

/* ------------------------------------------------------------ an MQTT device */

typedef struct shown {   /* what the application showed, after dedupe */
    uint64_t user_seq, conv, seq;
    int type;
    char text[64];
} shown;

typedef struct mq_dev {
    struct mosquitto *m;
    pc_identity id;
    int version;                            /* MQTT_PROTOCOL_V311 or _V5 */
    char client_id[PC_MQTT_CLIENT_ID_MAX];
    char t_ev[64], t_res[64], t_req[64];
    uint64_t last_ts;                       /* of the last password: the next is above it */
    /* this connection */
    bool connected, refused, lost;
    int connack_rc, session_present, subacks;
    uint64_t raw[MAX_EVENTS];               /* user_seq of every event PUBLISH received */
    uint64_t raw_seq[MAX_EVENTS];           /* its message's seq */
    size_t n_raw;
    int responses, last_status;
    uint64_t last_sent_seq;
    /* across connections */
    shown shown[MAX_EVENTS];
    size_t n_shown, duplicates;
    uint64_t shown_max;
} mq_dev;

static void on_connect(struct mosquitto *m, void *ud, int rc, int flags, const mosquitto_property *props) {
    (void)m; (void)props;
    mq_dev *d = ud;
    d->connack_rc = rc;
    if (rc != 0) {
        d->refused = true;
        return;
    }
    d->connected = true;
    d->session_present = flags & 1;
}

static void on_subscribe(struct mosquitto *m, void *ud, int mid, int n, const int *granted,
                         const mosquitto_property *props) {
    (void)m; (void)mid; (void)props;
    mq_dev *d = ud;
    for (int i = 0; i < n; i++)
        if (granted[i] <= 1) d->subacks++;
}

static void on_disconnect(struct mosquitto *m, void *ud, int rc, const mosquitto_property *props) {
    (void)m; (void)rc; (void)props;
    mq_dev *d = ud;
    d->lost = true;
    d->connected = false;
}

/* An event PUBLISH: recorded raw, shown once (user_seq above all shown). */
static void on_event(mq_dev *d, const Parley__V1__Event *e) {
    if (d->n_raw < MAX_EVENTS) {
        d->raw_seq[d->n_raw] = e->message ? e->message->seq : 0;
        d->raw[d->n_raw++] = e->user_seq;
    }
    if (e->user_seq <= d->shown_max) {
        d->duplicates++;
        return;
    }
    d->shown_max = e->user_seq;
    if (d->n_shown >= MAX_EVENTS || !e->message) return;
    shown *s = &d->shown[d->n_shown++];
    s->user_seq = e->user_seq;
    s->conv = e->message->conversation_id;
    s->seq = e->message->seq;
    s->type = e->message->type;
    size_t len = e->message->body.len < sizeof s->text - 1 ? e->message->body.len : sizeof s->text - 1;
    if (len) memcpy(s->text, e->message->body.data, len);   /* a membership event has no body */
    s->text[len] = '\0';
}

static void on_message(struct mosquitto *m, void *ud, const struct mosquitto_message *msg,
                       const mosquitto_property *props) {
    (void)m; (void)props;
    mq_dev *d = ud;
    Parley__V1__Frame *f = parley__v1__frame__unpack(NULL, (size_t)msg->payloadlen, msg->payload);
    if (!f) {
        fprintf(stderr, "  %s: %s: not a Frame (%d bytes)\n", d->client_id, msg->topic, msg->payloadlen);
        return;
    }
    if (strcmp(msg->topic, d->t_ev) == 0 && f->body_case == PARLEY__V1__FRAME__BODY_EVENT) on_event(d, f->event);
    if (strcmp(msg->topic, d->t_res) == 0 && f->body_case == PARLEY__V1__FRAME__BODY_RESPONSE) {
        d->responses++;
        d->last_status = f->response->status;
        if (f->response->result_case == PARLEY__V1__RESPONSE__RESULT_SENT)
            d->last_sent_seq = f->response->sent->seq;
    }
    parley__v1__frame__free_unpacked(f, NULL);
}

static void mq_init(mq_dev *d, const pc_identity *id, int version) {
    memset(d, 0, sizeof *d);
    d->id = *id;
    d->version = version;
    pc_mqtt_client_id(id, d->client_id, sizeof d->client_id);
    snprintf(d->t_ev, sizeof d->t_ev, "p/%s/ev", d->client_id);
    snprintf(d->t_res, sizeof d->t_res, "p/%s/res", d->client_id);
    snprintf(d->t_req, sizeof d->t_req, "p/%s/req", d->client_id);
}

/* Drops the connection without DISCONNECT: the socket is closed with
 * whatever it holds unread (a reset), as when a phone loses its network. */
static void mq_drop(mq_dev *d) {
    if (!d->m) return;
    mosquitto_destroy(d->m);
    d->m = NULL;
    d->connected = false;
}

static void mq_free(mq_dev *d) {
    if (d->m) {
        if (d->connected) mosquitto_disconnect(d->m);
        mosquitto_destroy(d->m);
        d->m = NULL;
    }
}

/* One turn for the MQTT devices and the WebSocket devices. */
static void pump(mq_dev *const *mq, size_t n_mq, h_dev *const *ws, size_t n_ws) {
    for (size_t i = 0; i < n_mq; i++)
        if (mq[i]->m && !mq[i]->lost) mosquitto_loop(mq[i]->m, 10, 1);
    if (n_ws) h_pump(ws, n_ws, NULL, NULL, 10);
}

#define PUMP_UNTIL(cond, mq, n_mq, ws, n_ws)                                        \
    do {                                                                            \
        uint64_t until_ = h_now_ms() + WAIT_MS;                                     \
        while (!(cond) && h_now_ms() < until_) pump(mq, n_mq, ws, n_ws);            \
    } while (0)

/* Connects to port (the server's, or a proxy's) with a fresh password,
 * clean session off, and subscribes to T/ev and T/res. 0 or -1. */
static int mq_connect(mq_dev *d, int port) {
    mq_drop(d);
    d->connected = d->refused = d->lost = false;
    d->subacks = 0;
    d->n_raw = 0;
    d->m = mosquitto_new(d->client_id, false, d);
    if (!d->m) return -1;
    mosquitto_int_option(d->m, MOSQ_OPT_PROTOCOL_VERSION, d->version);
    mosquitto_connect_v5_callback_set(d->m, on_connect);
    mosquitto_subscribe_v5_callback_set(d->m, on_subscribe);
    mosquitto_message_v5_callback_set(d->m, on_message);
    mosquitto_disconnect_v5_callback_set(d->m, on_disconnect);
    uint64_t ts = pc_mqtt_now_ms();
    if (ts <= d->last_ts) ts = d->last_ts + 1;   /* the server takes each TS once */
    d->last_ts = ts;
    char pw[PC_MQTT_PASSWORD_MAX];
    if (pc_mqtt_password(&d->id, ts, pw, sizeof pw) < 0) return -1;
    mosquitto_username_pw_set(d->m, d->client_id, pw);
    if (mosquitto_connect(d->m, "127.0.0.1", port, KEEPALIVE_S) != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "  %s: connect to %d failed\n", d->client_id, port);
        return -1;
    }
    mq_dev *one[] = {d};
    PUMP_UNTIL(d->connected || d->refused || d->lost, one, 1, NULL, 0);
    if (!d->connected) {
        fprintf(stderr, "  %s: not connected (CONNACK %d)\n", d->client_id, d->connack_rc);
        return -1;
    }
    mosquitto_subscribe(d->m, NULL, d->t_ev, 1);
    mosquitto_subscribe(d->m, NULL, d->t_res, 1);
    PUMP_UNTIL(d->subacks >= 2 || d->lost, one, 1, NULL, 0);
    return d->subacks >= 2 ? 0 : -1;
}

/* the messages the test sent (not the conversation's membership events) */
static bool is_text_in(const shown *s, uint64_t conv) {
    return s->conv == conv && s->type == PARLEY__V1__MESSAGE_TYPE__TEXT;
}

static size_t shown_in_conv(const mq_dev *d, uint64_t conv) {
    size_t n = 0;
    for (size_t i = 0; i < d->n_shown; i++) n += is_text_in(&d->shown[i], conv);
    return n;
}

/* The text messages of conv the application showed are exactly texts[0..n), in
 * order, each once, with strictly increasing seqs. 0 or -1 (why printed). */
static int shown_exactly(const mq_dev *d, uint64_t conv, const char *const *texts, size_t n) {
    size_t k = 0;
    uint64_t last_seq = 0;
    for (size_t i = 0; i < d->n_shown; i++) {
        const shown *s = &d->shown[i];
        if (!is_text_in(s, conv)) continue;
        if (k >= n || strcmp(s->text, texts[k]) != 0 || s->seq <= last_seq) {
            fprintf(stderr, "  shown #%zu: seq %llu \"%s\", expected \"%s\" after seq %llu\n", k,
                    (unsigned long long)s->seq, s->text, k < n ? texts[k] : "(nothing)",
                    (unsigned long long)last_seq);
            return -1;
        }
        last_seq = s->seq;
        k++;
    }
    if (k != n) {
        fprintf(stderr, "  shown %zu messages, expected %zu\n", k, n);
        return -1;
    }
    return 0;
}

/* raw events of this connection carrying seq in conv? (the test's conv only) */
static int raw_count_seq(const mq_dev *d, uint64_t seq) {
    int n = 0;
    for (size_t i = 0; i < d->n_raw; i++) n += d->raw_seq[i] == seq;
    return n;
}

/* The highest DELIVERED receipt a has from user in conv. */
static uint64_t delivered_to(const h_dev *a, uint64_t conv, uint64_t user) {
    uint64_t best = 0;
    for (size_t i = 0; i < a->n_rc; i++)
        if (a->rc[i].conversation_id == conv && a->rc[i].user_id == user &&
            a->rc[i].kind == PARLEY__V1__RECEIPT_KIND__DELIVERED && a->rc[i].seq > best)
            best = a->rc[i].seq;
    return best;
}

/* alice (WebSocket, syncing) and a new user whose device will be the MQTT one;
 * the direct conversation between them, accepted by both. */
static int two_users(h_dev **alice, h_dev **bob, uint64_t *conv) {
    *alice = h_user_new(&S, NULL);
    *bob = h_user_new(&S, NULL);
    if (!*alice || !*bob) return -1;
    if (pc_open_direct((*alice)->c, (*bob)->id.user_id, conv) != 0) return -1;
    if (h_accept(*bob, *conv) != 0) return -1;
    if (h_dev_sync(*alice, WAIT_MS) != 0) return -1;
    return 0;
}

/* ---------------------------------------------------------------- the cases */

static mq_dev g_d;   /* the case's MQTT device: RUN_MQ frees it on every path */
#define RUN_MQ(fn) do { RUN(fn); mq_free(&g_d); } while (0)

static void persistent_session_resumes_after_abrupt_drop(void) {
    CHECK(g_up, "server not started");
    h_dev *alice, *bob;
    uint64_t conv;
    CHECK(two_users(&alice, &bob, &conv) == 0, "users and conversation");
    h_dev_disconnect(bob);   /* bob goes on over MQTT only */
    mq_dev *d = &g_d;
    mq_init(d, &bob->id, MQTT_PROTOCOL_V311);
    mq_dev *mq[] = {d};
    h_dev *ws[] = {alice};
    CHECK(mq_connect(d, g_mqtt_port) == 0, "MQTT 3.1.1 connect with the password scheme");

    static const char *const texts[] = {"one", "two", "three", "four", "five", "six"};
    uint64_t seqs[6];
    for (int i = 0; i < 3; i++) CHECK((seqs[i] = h_send(alice, conv, texts[i])) != 0, "send %d", i);
    PUMP_UNTIL(shown_in_conv(d, conv) >= 3 || d->lost, mq, 1, ws, 1);
    CHECK(shown_in_conv(d, conv) == 3, "first three arrived over MQTT (%zu)", shown_in_conv(d, conv));
    /* the PUBACKs reached the server and the cursor is committed: the
     * sender is told they were delivered */
    PUMP_UNTIL(delivered_to(alice, conv, bob->id.user_id) >= seqs[2] || d->lost, mq, 1, ws, 1);
    CHECK(delivered_to(alice, conv, bob->id.user_id) >= seqs[2], "DELIVERED receipt for the PUBACKed three");

    /* three more while the device reads nothing: they wait in its socket */
    for (int i = 3; i < 6; i++) CHECK((seqs[i] = h_send(alice, conv, texts[i])) != 0, "send %d", i);
    int pending = 0;
    uint64_t until = h_now_ms() + WAIT_MS;
    while (pending == 0 && h_now_ms() < until) {
        h_pump(ws, 1, NULL, NULL, 20);
        ioctl(mosquitto_socket(d->m), FIONREAD, &pending);
    }
    CHECK(pending > 0, "the server sent the new events to the MQTT socket");
    mq_drop(d);

    CHECK(mq_connect(d, g_mqtt_port) == 0, "reconnect");
    CHECK(d->session_present == 1, "CONNACK Session Present for a device with a cursor");
    PUMP_UNTIL(shown_in_conv(d, conv) >= 6 || d->lost, mq, 1, ws, 1);
    CHECK(shown_exactly(d, conv, texts, 6) == 0, "the application shows all six once, in order");
    for (int i = 0; i < 3; i++)
        CHECK(raw_count_seq(d, seqs[i]) == 0, "PUBACKed seq %llu sent again", (unsigned long long)seqs[i]);
    for (int i = 3; i < 6; i++)
        CHECK(raw_count_seq(d, seqs[i]) == 1, "unread seq %llu came %d times after the reconnect",
              (unsigned long long)seqs[i], raw_count_seq(d, seqs[i]));
    mq_free(d);
}

/* ---- a proxy that can swallow the client's PUBACKs and cut the connection */

typedef struct proxy {
    int listen_fd, port, upstream_port;
    atomic_int drop_pubacks, cut, dropped;
    pthread_t th;
} proxy;

static int send_all(int fd, const uint8_t *p, size_t n) {
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static void *proxy_run(void *arg) {
    proxy *p = arg;
    struct pollfd lp = {.fd = p->listen_fd, .events = POLLIN};
    uint64_t until = h_now_ms() + WAIT_MS;
    while (poll(&lp, 1, 100) == 0)
        if (atomic_load(&p->cut) || h_now_ms() > until) return NULL;
    int cfd = accept(p->listen_fd, NULL, NULL);
    int sfd = cfd >= 0 ? h_tcp_connect(p->upstream_port, 5000) : -1;
    static uint8_t cbuf[1 << 16];
    size_t clen = 0;
    /* bounded: the case cuts it well before, or this gives up */
    until = h_now_ms() + 4 * WAIT_MS;
    while (cfd >= 0 && sfd >= 0 && !atomic_load(&p->cut) && h_now_ms() < until) {
        struct pollfd fds[2] = {{.fd = cfd, .events = POLLIN}, {.fd = sfd, .events = POLLIN}};
        if (poll(fds, 2, 50) <= 0) continue;
        if (fds[1].revents) {   /* server -> client: as it is */
            uint8_t buf[1 << 16];
            ssize_t n = recv(sfd, buf, sizeof buf, 0);
            if (n <= 0 || send_all(cfd, buf, (size_t)n) < 0) break;
        }
        if (fds[0].revents) {   /* client -> server: whole packets, PUBACKs maybe not */
            ssize_t n = recv(cfd, cbuf + clen, sizeof cbuf - clen, 0);
            if (n <= 0) break;
            clen += (size_t)n;
            size_t off = 0;
            for (;;) {
                size_t i = off + 1, rem = 0;
                int shift = 0;
                bool whole = false;
                while (i < clen && shift <= 21) {
                    rem |= (size_t)(cbuf[i] & 0x7f) << shift;
                    shift += 7;
                    if (!(cbuf[i++] & 0x80)) {
                        whole = true;
                        break;
                    }
                }
                if (!whole || clen - i < rem) break;
                bool puback = (cbuf[off] >> 4) == 4;
                if (puback && atomic_load(&p->drop_pubacks))
                    atomic_fetch_add(&p->dropped, 1);
                else if (send_all(sfd, cbuf + off, i + rem - off) < 0)
                    break;
                off = i + rem;
            }
            memmove(cbuf, cbuf + off, clen - off);
            clen -= off;
            if (clen == sizeof cbuf) break;   /* a packet bigger than the client ever sends */
        }
    }
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    if (cfd >= 0) {
        setsockopt(cfd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
        close(cfd);
    }
    if (sfd >= 0) close(sfd);
    return NULL;
}

static int proxy_start(proxy *p, int upstream_port) {
    memset(p, 0, sizeof *p);
    p->upstream_port = upstream_port;
    p->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t al = sizeof a;
    if (p->listen_fd < 0 || bind(p->listen_fd, (struct sockaddr *)&a, sizeof a) < 0 ||
        listen(p->listen_fd, 1) < 0 || getsockname(p->listen_fd, (struct sockaddr *)&a, &al) < 0)
        return -1;
    p->port = ntohs(a.sin_port);
    return pthread_create(&p->th, NULL, proxy_run, p) == 0 ? 0 : -1;
}

static void proxy_stop(proxy *p) {
    atomic_store(&p->cut, 1);
    pthread_join(p->th, NULL);
    close(p->listen_fd);
}

static void qos1_redelivered_after_puback_lost(void) {
    CHECK(g_up, "server not started");
    h_dev *alice, *carol;
    uint64_t conv;
    CHECK(two_users(&alice, &carol, &conv) == 0, "users and conversation");
    h_dev_disconnect(carol);
    static proxy px;
    CHECK(proxy_start(&px, g_mqtt_port) == 0, "proxy");
    mq_dev *d = &g_d;
    mq_init(d, &carol->id, MQTT_PROTOCOL_V5);
    mq_dev *mq[] = {d};
    h_dev *ws[] = {alice};
    int rc = mq_connect(d, px.port);
    if (rc != 0) proxy_stop(&px);
    CHECK(rc == 0, "MQTT 5 connect through the proxy");

    static const char *const texts[] = {"alpha", "beta", "gamma"};
    uint64_t seqs[3];
    bool ok = (seqs[0] = h_send(alice, conv, texts[0])) != 0;
    PUMP_UNTIL(!ok || delivered_to(alice, conv, carol->id.user_id) >= seqs[0] || d->lost, mq, 1, ws, 1);
    ok = ok && shown_in_conv(d, conv) == 1 && delivered_to(alice, conv, carol->id.user_id) >= seqs[0];
    if (!ok) proxy_stop(&px);
    CHECK(ok, "the first event shown and PUBACKed (DELIVERED receipt)");

    atomic_store(&px.drop_pubacks, 1);
    ok = (seqs[1] = h_send(alice, conv, texts[1])) != 0 && (seqs[2] = h_send(alice, conv, texts[2])) != 0;
    PUMP_UNTIL(!ok || (shown_in_conv(d, conv) >= 3 && atomic_load(&px.dropped) >= 2) || d->lost, mq, 1, ws, 1);
    int dropped = atomic_load(&px.dropped);
    proxy_stop(&px);   /* the connection drops with two events never PUBACKed */
    CHECK(ok, "sends");
    CHECK(shown_in_conv(d, conv) == 3 && dropped >= 2, "two more shown (%zu), their PUBACKs lost (%d)",
          shown_in_conv(d, conv), dropped);
    CHECK(delivered_to(alice, conv, carol->id.user_id) < seqs[1], "DELIVERED moved without a PUBACK");
    mq_drop(d);

    CHECK(mq_connect(d, g_mqtt_port) == 0, "reconnect, directly");
    PUMP_UNTIL((raw_count_seq(d, seqs[1]) && raw_count_seq(d, seqs[2])) || d->lost, mq, 1, ws, 1);
    CHECK(raw_count_seq(d, seqs[1]) == 1 && raw_count_seq(d, seqs[2]) == 1,
          "the two un-PUBACKed events came again once each (%d, %d)", raw_count_seq(d, seqs[1]),
          raw_count_seq(d, seqs[2]));
    CHECK(raw_count_seq(d, seqs[0]) == 0, "the PUBACKed event came again");
    CHECK(d->duplicates >= 2, "the application dropped the redelivered two (%zu)", d->duplicates);
    CHECK(shown_exactly(d, conv, texts, 3) == 0, "the application shows each once, in order");
    /* now PUBACKed: the sender hears the last one was delivered */
    PUMP_UNTIL(delivered_to(alice, conv, carol->id.user_id) >= seqs[2] || d->lost, mq, 1, ws, 1);
    CHECK(delivered_to(alice, conv, carol->id.user_id) >= seqs[2], "DELIVERED after the redelivery");
    mq_free(d);
}

static void publish_to_req_reaches_websocket_user(void) {
    CHECK(g_up, "server not started");
    h_dev *alice, *bob;
    uint64_t conv;
    CHECK(two_users(&alice, &bob, &conv) == 0, "users and conversation");
    h_dev_disconnect(bob);
    mq_dev *d = &g_d;
    mq_init(d, &bob->id, MQTT_PROTOCOL_V5);
    mq_dev *mq[] = {d};
    h_dev *ws[] = {alice};
    CHECK(mq_connect(d, g_mqtt_port) == 0, "MQTT 5 connect");

    Parley__V1__SendMessage sm = PARLEY__V1__SEND_MESSAGE__INIT;
    sm.conversation_id = conv;
    sm.client_msg_id = (ProtobufCBinaryData){.len = 9, .data = (uint8_t *)"mosq-id-1"};
    sm.type = PARLEY__V1__MESSAGE_TYPE__TEXT;
    sm.body = (ProtobufCBinaryData){.len = 14, .data = (uint8_t *)"from mosquitto"};
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = 7;
    f.body_case = PARLEY__V1__FRAME__BODY_SEND_MESSAGE;
    f.send_message = &sm;
    uint8_t buf[256];
    size_t len = parley__v1__frame__pack(&f, buf);
    CHECK(mosquitto_publish(d->m, NULL, d->t_req, (int)len, buf, 1, false) == MOSQ_ERR_SUCCESS, "publish");
    PUMP_UNTIL(d->responses > 0 || d->lost, mq, 1, ws, 1);
    CHECK(d->responses == 1 && d->last_status == PARLEY__V1__STATUS__OK && d->last_sent_seq > 0,
          "Sent on /res (responses %d, status %d)", d->responses, d->last_status);
    h_count_goal g = {.devs = ws, .n = 1, .conv = conv, .want = 1, .no_membership = 1};
    CHECK(h_pump(ws, 1, h_pred_count, &g, WAIT_MS), "the WebSocket user got it");
    const h_event *e[2];
    CHECK(h_dev_conv_events(alice, conv, 1, e, 2) == 1, "once");
    CHECK(h_event_body_is(e[0], "from mosquitto") && e[0]->seq == d->last_sent_seq &&
          e[0]->sender_user_id == bob->id.user_id, "the message as sent, from bob");
    mq_free(d);
}

int main(void) {
    mosquitto_lib_init();
    g_mqtt_port = h_free_port();
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", g_mqtt_port);
    const char *args[] = {"--mqtt-listen", listen, NULL};
    g_up = h_server_start(&S, args) == 0;
    RUN_MQ(persistent_session_resumes_after_abrupt_drop);
    RUN_MQ(qos1_redelivered_after_puback_lost);
    RUN_MQ(publish_to_req_reaches_websocket_user);
    h_server_destroy(&S);
    mosquitto_lib_cleanup();
    CHECK_EXIT();
}
