/* test_mqtt_connect_off_worker.c -- an MQTT CONNECT's store reads (the
 * device key its sign-in checks, the cursor behind Session Present) do not
 * hold the gateway worker on Cassandra (src/gateway/mqtt_connect_read.h,
 * src/gateway/mqtt_conn.c).
 *
 * One worker on Cassandra, with the test hook
 * PARLEY_TEST_HOLD_MQTT_CONNECT_READS (every CONNECT read waits while the
 * hook's file exists). bob's device has a stored cursor: it synced and
 * acknowledged alice's message over WebSocket, then CONNECTs without the
 * hold are made until one says Session Present. alice's raw WebSocket
 * connection X is on the same worker; /metrics is read from its own
 * listener (--metrics-listen), which the held worker does not serve. Cases:
 *   - connect_does_not_hold_worker: with the file made, bob CONNECTs (3.1.1,
 *     clean session 0, password scheme) and SUBSCRIBEs to his T/ev in the
 *     same write, before any CONNACK; once the worker has taken the CONNECT
 *     (parley_frames_in_total), X's PushGetKey is answered while bob has
 *     been sent nothing;
 *   - connack_then_suback_after_release: the file removed, bob gets CONNACK
 *     0 with Session Present, then the SUBACK of the SUBSCRIBE that waited;
 *     the read was the reader pool's (parley_gateway_mqtt_connect_reads_total);
 *   - held_past_handshake_timeout: a CONNECT's read held two sweeps past
 *     the server's handshake timeout (3 s here): once released, CONNACK 0
 *     (the TCP link is in the handshake until CONNACK; a read out is not
 *     cut by it);
 *   - wrong_password_refused: a password signed with another key, its read
 *     held, then released: CONNACK 4 (bad user name or password), then the
 *     close;
 *   - websocket_message_waits_for_connack: the same over WebSocket (the main
 *     port, subprotocol mqtt), CONNECT and SUBSCRIBE in one binary
 *     message: nothing is sent while the read is held; once released, the
 *     CONNACK, then the SUBACK;
 *   - refused_while_store_fails: the node frozen and a first CONNECT's read
 *     timed out on it (the store watch probes: the store says it fails), a
 *     second CONNECT gets
 *     CONNACK 3 (server unavailable) without a read; once the node
 *     continues, CONNACK 0 again (bounded retries);
 *   - closed_while_held: a CONNECT whose client closes while its read is
 *     held (the server frees the socket: parley_sockets_open drops); once
 *     released the read's answer finds no connection, the server serves a
 *     new CONNECT of the same device and stops with exit 0 (the ASan build:
 *     no error, no leak).
 *
 * Seen failing: with connect_read (mqtt_conn.c) reading on the worker again
 * on Cassandra (the store_reads branch made dead; the hook then holds the
 * worker itself), connect_does_not_hold_worker fails: X's PushGetKey waits
 * behind the held read and the bounded read gives up. With
 * mqtt_conn_connect_read not handling what waited in the connection's MQTT
 * buffer (ws_in), websocket_message_waits_for_connack fails: no SUBACK.
 * Without the store watch's check in connect_read, refused_while_store_fails
 * fails: the CONNECT's read is made (and times out on the frozen node).
 * With the handshake timeout applied to a CONNECT whose read is out
 * (worker.c sweep), held_past_handshake_timeout fails: no CONNACK, the
 * socket closed.
 *
 * The test owns its node (it freezes it). The MQTT client is
 * tests/integration/mqtt_client.h. Every wait is on observable state with
 * a generous bound. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../check.h"
#include "cassandra_node.h"
#include "harness.h"
#include "hold_file.h"
#include "mqtt_client.h"
#include "net/mqtt_codec.h"
#include "net/ws.h"

enum {
    IO_MS = 20000,          /* bound on each read: the worker answers at once when it is free */
    QUIET_MS = 300,         /* how long "nothing was sent" is looked for */
    FAIL_WAIT_MS = 90000,   /* a read on the frozen node fails at the CQL deadline (12 s): a bound */
    HANDSHAKE_MS = 3000,    /* the server's --handshake-timeout */
    SWEEP_MS = 1000,        /* the worker looks for timed-out connections this often (worker.c sweep) */
};

#define NEED(x) CHECK((x), "%s", #x)
#define HOOK "PARLEY_TEST_HOLD_MQTT_CONNECT_READS"
#define CONNECT_READS "parley_gateway_mqtt_connect_reads_total"

static h_server S;
static int mqtt_port;
static int metrics_port;    /* --metrics-listen: its own thread, not the held worker's */
static h_dev *alice, *bob;
static h_raw X;
static mq B = {.fd = -1};   /* bob's pipelined session (cases 1 and 2) */
static uint64_t conv;
static uint64_t last_ts;    /* a password's TS must grow per device */
static hold_file hold;
static int frozen;          /* the node is SIGSTOPped (SIGCONT at the end whatever happened) */

/* CONNECT, then (subscribe) a SUBSCRIBE to T/ev with packet id 1, into
 * out: their length, 0. */
static size_t connect_bytes(const pc_identity *id, const uint8_t *sk, bool subscribe, uint8_t *out, size_t cap) {
    size_t n = mq_password_connect(id, sk, &last_ts, out, cap);
    if (!n || !subscribe) return n;
    char filter[64];
    snprintf(filter, sizeof filter, "p/%llu.%u/ev", (unsigned long long)id->user_id, id->device_id);
    const char *filters[] = {filter};
    uint8_t opts[] = {1};
    size_t s = mqtt_encode_subscribe(out + n, cap - n, 4, false, 1, filters, opts, 1);
    return s ? n + s : 0;
}

/* Opens m and sends connect_bytes in one write: the server has both
 * packets before it answers. */
static int mq_open_connect(mq *m, const pc_identity *id, const uint8_t *sk, bool subscribe) {
    if (mq_open(m, mqtt_port, IO_MS) != 0) return -1;
    uint8_t p[768];
    size_t n = connect_bytes(id, sk, subscribe, p, sizeof p);
    return n ? mq_write(m, p, n) : -1;
}

/* The CONNACK m waits for: its return code (and *present), -1 none. */
static int mq_connack(mq *m, bool *present) {
    uint8_t first, body[64];
    size_t len;
    if (mq_next(m, &first, body, sizeof body, &len, IO_MS) != 1 || first >> 4 != MQTT_CONNACK) return -1;
    mqtt_connack ca;
    if (mqtt_decode_connack(4, first, body, len, &ca) != MQTT_OK) return -1;
    if (present) *present = ca.session_present;
    return ca.reason;
}

static void mq_disconnect(mq *m) {
    uint8_t p[4];
    size_t n = mqtt_encode_empty(p, sizeof p, MQTT_DISCONNECT);
    if (n) mq_write(m, p, n);
    mq_close(m);
}

/* X asks for the push key: answered (any status) within IO_MS is 1. */
static int x_served(uint64_t request_id) { return h_raw_worker_answers(&X, request_id); }

/* Polls a metric until pred holds (at most ms); the last value in *v. */
static int metric_until_ms(const char *name, double *v, int (*pred)(double v, double ref), double ref, int ms) {
    uint64_t deadline = h_now_ms() + (uint64_t)ms;
    do {
        if (h_metric_at(metrics_port, name, v) == 0 && pred(*v, ref)) return 1;
        h_sleep_ms(50);
    } while (h_now_ms() < deadline);
    return 0;
}
static int metric_until(const char *name, double *v, int (*pred)(double v, double ref), double ref) {
    return metric_until_ms(name, v, pred, ref, IO_MS);
}
static int at_least(double v, double ref) { return v >= ref; }
static int at_most(double v, double ref) { return v <= ref; }

static void connect_does_not_hold_worker(void) {
    NEED(hold_file_init(&hold, HOOK) == 0);   /* the server inherits it */
    NEED(cassandra_node_start("mqtt_connect_reads") == 0);
    mqtt_port = h_free_port();
    metrics_port = h_free_port();
    char listen[64], metrics[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", mqtt_port);
    snprintf(metrics, sizeof metrics, "127.0.0.1:%d", metrics_port);
    /* a TCP MQTT connection is in the handshake until CONNACK, but not
     * timed out while its CONNECT's read is out: a short handshake
     * timeout, which the holds here outlast (held_past_handshake_timeout) */
    char handshake[16];
    snprintf(handshake, sizeof handshake, "%d", HANDSHAKE_MS);
    const char *flags[] = {"--store", "cassandra", "--cassandra", cassandra_node_hosts(), "--keyspace",
                           "mqtt_connect_reads", "--workers", "1", "--mqtt-listen", listen,
                           "--handshake-timeout", handshake, "--metrics-listen", metrics, NULL};
    NEED(h_server_start(&S, flags) == 0);
    NEED(h_direct_pair(&S, &alice, &bob, &conv) == 0);
    NEED(h_send(alice, conv, "for the cursor") != 0);
    NEED(h_dev_sync(bob, IO_MS) == 0);   /* events acknowledged by the library */
    NEED(pc_flush_acks(bob->c) == 0);
    h_dev_disconnect(bob);               /* the cursor goes to the writer at the close */
    /* stored asynchronously: CONNECTs (not held) until one says so */
    bool present = false;
    uint64_t until = h_now_ms() + IO_MS;
    while (!present && h_now_ms() < until) {
        mq m = {.fd = -1};
        NEED(mq_open_connect(&m, &bob->id, bob->id.secret_key, false) == 0);
        int rc = mq_connack(&m, &present);
        mq_disconnect(&m);
        CHECK(rc == 0, "CONNACK %d before the hold", rc);
        if (!present) h_sleep_ms(100);
    }
    NEED(present);
    h_raw_opts o = {.io_ms = IO_MS};
    NEED(h_raw_open_port(S.port, &o, &X) == 0);
    NEED(h_raw_sign_in(&X, &alice->id) == 0);
    h_dev_disconnect(alice);   /* from here only X and bob send (frames_in_total below) */

    double frames = -1, frames_now = -1;
    NEED(h_metric_at(metrics_port, "parley_frames_in_total", &frames) == 0);
    NEED(hold_file_make(&hold) == 0);
    NEED(mq_open_connect(&B, &bob->id, bob->id.secret_key, true) == 0);
    /* the worker has taken bob's CONNECT (counted as it is handled): X's
     * request comes after it, not before it in the same turn */
    NEED(metric_until("parley_frames_in_total", &frames_now, at_least, frames + 1));
    CHECK(x_served(7), "X's PushGetKey unanswered while bob's CONNECT read was held: the worker waits on it");
    uint8_t first, body[256];
    size_t len;
    int got = mq_next(&B, &first, body, sizeof body, &len, QUIET_MS);
    CHECK(got == 0, "bob was sent a packet (type %d) while his CONNECT read was held", got == 1 ? first >> 4 : -1);
}

static void connack_then_suback_after_release(void) {
    NEED(hold.held && B.fd >= 0);
    double before = -1, after = -1;
    NEED(h_metric_at(metrics_port, CONNECT_READS, &before) == 0);
    hold_file_release(&hold);
    bool present = false;
    int rc = mq_connack(&B, &present);
    CHECK(rc == 0, "CONNACK %d after the release (want 0, first)", rc);
    CHECK(present, "CONNACK without Session Present: bob has a stored cursor");
    uint8_t first, body[256];
    size_t len;
    int got = mq_next(&B, &first, body, sizeof body, &len, IO_MS);
    CHECK(got == 1 && first >> 4 == MQTT_SUBACK, "no SUBACK after the CONNACK (%d, type %d)", got,
          got == 1 ? first >> 4 : -1);
    mqtt_suback sa;
    NEED(mqtt_decode_suback(4, first, body, len, &sa) == MQTT_OK);
    CHECK(sa.packet_id == 1 && sa.codes.len == 1 && sa.codes.p[0] == 1, "SUBACK %u: %u codes, first 0x%02x",
          sa.packet_id, sa.codes.len, sa.codes.len ? sa.codes.p[0] : 0);
    CHECK(metric_until(CONNECT_READS, &after, at_least, before + 1), "%s %.0f -> %.0f: not read by the pool",
          CONNECT_READS, before, after);
    mq_disconnect(&B);
}

/* A CONNECT whose read is held longer than the handshake timeout (two
 * sweeps past it) gets its CONNACK once the read is back: a read on a
 * slow store (Cassandra's deadline is 12 s) is not cut at the handshake
 * timeout (10 s by default). */
static void held_past_handshake_timeout(void) {
    NEED(S.pid > 0 && !hold.held);
    double before = -1, now = -1;
    NEED(h_metric_at(metrics_port, "parley_frames_in_total", &before) == 0);
    NEED(hold_file_make(&hold) == 0);
    mq m = {.fd = -1};
    NEED(mq_open_connect(&m, &bob->id, bob->id.secret_key, false) == 0);
    NEED(metric_until("parley_frames_in_total", &now, at_least, before + 1));   /* taken: its read is held */
    h_sleep_ms(HANDSHAKE_MS + 2 * SWEEP_MS);
    hold_file_release(&hold);
    int rc = mq_connack(&m, NULL);
    CHECK(rc == 0, "CONNACK %d for a CONNECT whose read was held past the handshake timeout (want 0; -1: none)",
          rc);
    mq_disconnect(&m);
}

static void wrong_password_refused(void) {
    NEED(S.pid > 0);
    uint8_t other_pk[32], other_sk[64];
    crypto_sign_keypair(other_pk, other_sk);
    NEED(hold_file_make(&hold) == 0);
    mq m = {.fd = -1};
    NEED(mq_open_connect(&m, &bob->id, other_sk, false) == 0);
    uint8_t first, body[64];
    size_t len;
    int got = mq_next(&m, &first, body, sizeof body, &len, QUIET_MS);
    CHECK(got == 0, "answered (%d, type %d) while the CONNECT read was held", got, got == 1 ? first >> 4 : -1);
    hold_file_release(&hold);
    int rc = mq_connack(&m, NULL);
    CHECK(rc == MQTT_V4_BAD_USER_PASS, "CONNACK %d, want %d (bad user name or password)", rc,
          MQTT_V4_BAD_USER_PASS);
    got = mq_next(&m, &first, body, sizeof body, &len, IO_MS);
    CHECK(got == -1, "the refused connection was not closed (%d, type %d)", got, got == 1 ? first >> 4 : -1);
    mq_close(&m);
}

/* The type of the MQTT packet that is the whole of W's next binary
 * message; -1 none (or not one whole packet). */
static int ws_next_packet(h_raw *w) {
    ws_message m;
    for (int i = 0; i < 8; i++) {
        if (h_raw_next_message(w, &m) != 1) return -1;
        if (m.kind != WS_MSG_BINARY) continue;
        uint8_t first = 0;
        uint32_t rem = 0;
        size_t hl = 0;
        if (mqtt_fixed_header(m.data, m.len, &first, &rem, &hl) != MQTT_OK || hl + rem != m.len) return -1;
        return first >> 4;
    }
    return -1;
}

static void websocket_message_waits_for_connack(void) {
    NEED(S.pid > 0);
    double before = -1, after = -1;
    NEED(h_metric_at(metrics_port, "parley_sockets_open", &before) == 0);
    h_raw W;
    h_raw_opts o = {.io_ms = IO_MS};
    NEED(h_raw_connect(S.port, &o, &W) == 0);
    int status = h_raw_upgrade(&W, "mqtt");
    CHECK(status == 101, "upgrade to mqtt: HTTP %d", status);
    NEED(hold_file_make(&hold) == 0);
    uint8_t p[768];
    size_t n = connect_bytes(&bob->id, bob->id.secret_key, true, p, sizeof p);
    NEED(n > 0 && h_raw_send_ws(&W, WS_OP_BINARY, 1, p, n, 1) == 0);   /* both packets, one message */
    CHECK(x_served(8), "X's PushGetKey unanswered while an MQTT over WebSocket CONNECT read was held");
    struct pollfd pf = {.fd = W.fd, .events = POLLIN};
    CHECK(W.len == W.off && poll(&pf, 1, QUIET_MS) == 0, "the WebSocket MQTT client was sent something while held");
    hold_file_release(&hold);
    int type = ws_next_packet(&W);
    CHECK(type == MQTT_CONNACK, "after the release: packet type %d, want CONNACK", type);
    type = ws_next_packet(&W);
    CHECK(type == MQTT_SUBACK, "after the CONNACK: packet type %d, want the SUBACK that waited", type);
    h_raw_close(&W);
    /* gone on the server too before the next case counts sockets (seen
     * racing it: W's close and the next connection cancelled out) */
    CHECK(metric_until("parley_sockets_open", &after, at_most, before), "sockets open %.0f after W's close, %.0f before",
          after, before);
}

/* While the store says it fails (its node frozen, a CONNECT's read timed
 * out on it: the store watch probes), a CONNECT is answered without a read: CONNACK
 * 3 (server unavailable), the connect reads unchanged, as a WebSocket
 * sign-in is answered UNAVAILABLE (gateway/store_watch.h). Once the node
 * continues a CONNECT is accepted again (bounded retries). */
static void refused_while_store_fails(void) {
    NEED(S.pid > 0);
    double probes = -1, probes_now = -1, reads = -1, reads_after = -1, open_before = -1, open_after = -1;
    NEED(h_metric_at(metrics_port, "parley_sockets_open", &open_before) == 0);
    NEED(h_metric_at(metrics_port, "parley_store_watch_probes_total", &probes) == 0);
    NEED(cassandra_node_freeze(30000) == 0);
    frozen = 1;
    /* a first CONNECT, its answer not waited for: its read times out on the
     * frozen node (the CQL deadline), and the store says it fails */
    mq first = {.fd = -1};
    NEED(mq_open_connect(&first, &bob->id, bob->id.secret_key, false) == 0);
    CHECK(metric_until_ms("parley_store_watch_probes_total", &probes_now, at_least, probes + 1, FAIL_WAIT_MS),
          "the store never said it fails (store watch probes %.0f -> %.0f)", probes, probes_now);
    mq_close(&first);
    NEED(h_metric_at(metrics_port, CONNECT_READS, &reads) == 0);
    mq m = {.fd = -1};
    NEED(mq_open_connect(&m, &bob->id, bob->id.secret_key, false) == 0);
    int refused = mq_connack(&m, NULL);
    mq_close(&m);
    NEED(h_metric_at(metrics_port, CONNECT_READS, &reads_after) == 0);
    NEED(kill(cassandra_node_pid(), SIGCONT) == 0);
    frozen = 0;
    CHECK(refused == MQTT_V4_UNAVAILABLE, "CONNACK %d while the store failed, want 3 (server unavailable)", refused);
    CHECK(reads_after == reads, "%s %.0f -> %.0f: a CONNECT read the failing store", CONNECT_READS, reads,
          reads_after);
    int rc = -1;
    for (uint64_t until = h_now_ms() + 120000; rc != 0 && h_now_ms() < until;) {
        NEED(mq_open_connect(&m, &bob->id, bob->id.secret_key, false) == 0);
        rc = mq_connack(&m, NULL);
        mq_disconnect(&m);
        if (rc != 0) h_sleep_ms(500);
    }
    CHECK(rc == 0, "CONNACK %d after the node continued", rc);
    /* every CONNECT's socket gone on the server too before the next case
     * counts sockets (seen racing it in CI, as the WebSocket case's) */
    CHECK(metric_until("parley_sockets_open", &open_after, at_most, open_before),
          "sockets open %.0f after the CONNECTs' closes, %.0f before", open_after, open_before);
}

static void closed_while_held(void) {
    NEED(S.pid > 0);
    double base = -1, open_now = -1, reads = -1, reads_after = -1;
    NEED(h_metric_at(metrics_port, "parley_sockets_open", &base) == 0);
    NEED(h_metric_at(metrics_port, CONNECT_READS, &reads) == 0);
    NEED(hold_file_make(&hold) == 0);
    mq m = {.fd = -1};
    NEED(mq_open_connect(&m, &bob->id, bob->id.secret_key, false) == 0);
    CHECK(metric_until("parley_sockets_open", &open_now, at_least, base + 1), "sockets open %.0f, base %.0f",
          open_now, base);
    mq_close(&m);
    /* the server sees the close while the read is out and frees the socket */
    CHECK(metric_until("parley_sockets_open", &open_now, at_most, base), "sockets open %.0f after the close, base %.0f",
          open_now, base);
    hold_file_release(&hold);
    /* the read was made and handed back: it found no connection */
    CHECK(metric_until(CONNECT_READS, &reads_after, at_least, reads + 1), "%s %.0f -> %.0f", CONNECT_READS, reads,
          reads_after);
    CHECK(h_server_alive(&S), "the server died");
    bool present = false;
    NEED(mq_open_connect(&m, &bob->id, bob->id.secret_key, false) == 0);
    int rc = mq_connack(&m, &present);
    mq_disconnect(&m);
    CHECK(rc == 0, "a new CONNECT of bob's device: CONNACK %d", rc);
    CHECK(present, "a new CONNECT of bob's device: no Session Present");
    /* ASan: an error or a leak makes the server's exit status non-zero */
    h_raw_close(&X);
    int st = h_server_stop(&S);
    CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "the server's stop: wait status 0x%x", st);
}

int main(void) {
    unsetenv("PARLEY_TEST_STORE");   /* its own server on Cassandra, with the hook */
    RUN(connect_does_not_hold_worker);
    RUN(connack_then_suback_after_release);
    RUN(held_past_handshake_timeout);
    RUN(wrong_password_refused);
    RUN(websocket_message_waits_for_connack);
    RUN(refused_while_store_fails);
    RUN(closed_while_held);
    hold_file_release(&hold);
    if (frozen) kill(cassandra_node_pid(), SIGCONT);
    mq_close(&B);
    h_raw_close(&X);
    if (alice) h_dev_free(alice);
    if (bob) h_dev_free(bob);
    h_server_destroy(&S);
    cassandra_node_stop();
    hold_file_destroy(&hold);
    CHECK_EXIT();
}
