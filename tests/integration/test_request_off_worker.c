/* test_request_off_worker.c -- a History, ListConversations or LookupUser
 * request's reads do not hold the gateway worker on Cassandra
 * (src/gateway/request_read.h).
 *
 * With one worker on Cassandra and the test hook
 * PARLEY_TEST_HOLD_REQUEST_READS (every such read waits while the hook's
 * file exists): alice sends bob MESSAGES messages; a raw connection Y
 * signed in as bob sends a History of the conversation and, right behind
 * it without waiting, a ListConversations and a LookupUser of alice, while
 * the hold file exists. The
 * server logs the hook once, at the first read that meets it: from then on
 * the History read is held. What must hold:
 *   - the worker answers other connections meanwhile: a raw connection X
 *     (alice) gets its PushGetKey answered (from memory) and alice's send
 *     is acknowledged, while Y has been answered nothing;
 *   - once the file is gone, Y's answers come in the order it asked: the
 *     History page first, with every message alice sent (the one during
 *     the hold too) in seq order, then the list, naming the conversation,
 *     then alice's user id;
 *   - all three were read by the reader pool
 *     (parley_gateway_request_reads_total 3);
 *   - a LookupUser of a name longer than any the server stores is answered
 *     NOT_FOUND without a read (the count stays 3);
 *   - MQTT over WebSocket, a History and a LookupUser PUBLISHed in one
 *     WebSocket message: the History's read is out when the LookupUser is
 *     reached, which waits in the connection's MQTT buffer; both are
 *     answered, in order (seen failing without mqtt_conn_input_held in
 *     session_request_read: the LookupUser is never answered);
 *   - while the store says it fails (its node frozen, a first History's
 *     read timed out on it off the worker), a History is answered
 *     UNAVAILABLE at once, without a read; after SIGCONT one is answered
 *     again (this case freezes the node: the program gets its own,
 *     tests/run.sh);
 *   - a connection that closes while its History read is held is gone when
 *     the answer comes, which is dropped: the read is made, the server
 *     lives on, answers again, and stops with exit status 0 (ASan: no
 *     error, no leak).
 *
 * Seen failing: with request_read in session.c reading on the worker again
 * (its store_reads branch made dead; the hook then holds the worker itself),
 * X's PushGetKey is not answered while the hold lasts (the first case
 * fails), and parley_gateway_request_reads_total is 0.
 *
 * Every wait is on observable state with a generous bound. */
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"
#include "cassandra_node.h"
#include "harness.h"
#include "hold_file.h"
#include "mqtt_client.h"
#include "net/mqtt_codec.h"
#include "net/ws.h"

enum {
    MESSAGES = 5,
    IO_MS = 30000,          /* bound on each raw read: the worker answers at once when it is free */
    HOOK_MS = 30000,        /* bound on the wait for the held read to meet the hook */
    RID_HISTORY = 11,
    RID_LIST = 12,
    RID_LOOKUP = 13,
    RID_LOOKUP_LONG = 14,
    RID_FAILING = 30,
    RID_MQTT_HISTORY = 41,
    RID_MQTT_LOOKUP = 42,
    FAIL_WAIT_MS = 90000,   /* a read on the frozen node fails at the CQL deadline (12 s): a bound */
    RID_KEY = 7,
};

#define NEED(x) CHECK((x), "%s", #x)
#define HOOK "PARLEY_TEST_HOLD_REQUEST_READS"

static h_server S;
static h_dev *alice, *bob;
static h_raw X, Y;
static uint64_t conv;
static h_sent expected[MESSAGES + 1];
static size_t n_expected;
static hold_file hold;
static int frozen;          /* the node is SIGSTOPped (SIGCONT at the end whatever happened) */

/* 1 when the server's log names the hook: test_hold.c logs it at the first
 * read that meets it (nothing before the held History reads through it). */
static int hook_met(void) {
    FILE *f = fopen(S.log, "r");
    if (!f) return 0;
    char line[1024];
    int met = 0;
    while (!met && fgets(line, sizeof line, f)) met = strstr(line, "test hook " HOOK "=") != NULL;
    fclose(f);
    return met;
}

static int wait_hook_met(void) {
    for (int waited = 0; waited < HOOK_MS; waited += 10) {
        if (hook_met()) return 1;
        usleep(10 * 1000);
    }
    return 0;
}

/* Nothing from the server is waiting on Y, read or unread. */
static int y_silent(void) {
    struct pollfd p = {.fd = Y.fd, .events = POLLIN};
    return Y.len == Y.off && poll(&p, 1, 0) == 0;
}

/* The next Response on Y (pushes skipped, at most 16 frames), or NULL. */
static Parley__V1__Frame *y_next_response(void) {
    for (int i = 0; i < 16; i++) {
        Parley__V1__Frame *f = h_raw_next_frame(&Y, NULL);
        if (!f) return NULL;
        if (f->body_case == PARLEY__V1__FRAME__BODY_RESPONSE) return f;
        parley__v1__frame__free_unpacked(f, NULL);
    }
    return NULL;
}

/* The page holds exactly expected[] (seq, sender, text), oldest first,
 * membership records aside. 0, or -1 with why. */
static int page_is_expected(const Parley__V1__HistoryPage *p, char *why, size_t cap) {
    size_t k = 0;
    for (size_t i = 0; i < p->n_messages; i++) {
        const Parley__V1__Message *m = p->messages[i];
        if (m->type == PARLEY__V1__MESSAGE_TYPE__MEMBERSHIP) continue;
        if (k == n_expected) {
            snprintf(why, cap, "more messages than the %zu sent: seq %llu", n_expected,
                     (unsigned long long)m->seq);
            return -1;
        }
        const h_sent *e = &expected[k++];
        size_t tl = strlen(e->text);
        if (m->seq != e->seq || m->sender_user_id != e->sender || m->body.len != tl ||
            memcmp(m->body.data, e->text, tl) != 0) {
            snprintf(why, cap, "message %zu: seq %llu, want seq %llu '%.63s'", k - 1, (unsigned long long)m->seq,
                     (unsigned long long)e->seq, e->text);
            return -1;
        }
    }
    if (k != n_expected) {
        snprintf(why, cap, "%zu messages, want %zu", k, n_expected);
        return -1;
    }
    return 0;
}

static void worker_serves_others_while_held(void) {
    NEED(hold_file_init(&hold, HOOK) == 0);   /* the server inherits it */
    NEED(cassandra_node_start("request_reads") == 0);
    char mqtt_listen[64];   /* MQTT over WebSocket too needs MQTT on */
    snprintf(mqtt_listen, sizeof mqtt_listen, "127.0.0.1:%d", h_free_port());
    const char *flags[] = {"--store", "cassandra", "--cassandra", cassandra_node_hosts(), "--keyspace",
                           "request_reads", "--workers", "1", "--mqtt-listen", mqtt_listen, NULL};
    NEED(h_server_start(&S, flags) == 0);
    NEED(h_direct_pair(&S, &alice, &bob, &conv) == 0);
    for (int i = 0; i < MESSAGES; i++) {
        char text[32];
        snprintf(text, sizeof text, "before %d", i);
        NEED(h_send_rec(alice, conv, text, expected, &n_expected) == 0);
    }
    h_raw_opts o = {.io_ms = IO_MS};
    NEED(h_raw_open_port(S.port, &o, &X) == 0);
    NEED(h_raw_sign_in(&X, &alice->id) == 0);
    NEED(h_raw_open_port(S.port, &o, &Y) == 0);
    NEED(h_raw_sign_in(&Y, &bob->id) == 0);
    NEED(!hook_met());   /* no read has met the hook yet */

    NEED(hold_file_make(&hold) == 0);
    Parley__V1__History hq = PARLEY__V1__HISTORY__INIT;
    hq.conversation_id = conv;
    hq.limit = 50;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_HISTORY;
    f.history = &hq;
    f.request_id = RID_HISTORY;
    NEED(h_raw_send_frame(&Y, &f) == 0);
    Parley__V1__ListConversations lq = PARLEY__V1__LIST_CONVERSATIONS__INIT;
    Parley__V1__Frame g = PARLEY__V1__FRAME__INIT;
    g.body_case = PARLEY__V1__FRAME__BODY_LIST_CONVERSATIONS;
    g.list_conversations = &lq;
    g.request_id = RID_LIST;
    NEED(h_raw_send_frame(&Y, &g) == 0);
    Parley__V1__LookupUser uq = PARLEY__V1__LOOKUP_USER__INIT;
    uq.name = alice->name;
    Parley__V1__Frame u = PARLEY__V1__FRAME__INIT;
    u.body_case = PARLEY__V1__FRAME__BODY_LOOKUP_USER;
    u.lookup_user = &uq;
    u.request_id = RID_LOOKUP;
    NEED(h_raw_send_frame(&Y, &u) == 0);
    CHECK(wait_hook_met(), "Y's History read never met the hook");

    /* PushGetKey: answered by the worker from memory (OK, or UNAVAILABLE
     * when push is off), no store read */
    CHECK(h_raw_worker_answers(&X, RID_KEY), "X's PushGetKey unanswered while Y's History read was held: the worker waits on it");

    /* a send is acknowledged meanwhile (the writer answers through the
     * worker); the History read, made after the hold, has it too */
    NEED(h_send_rec(alice, conv, "during the hold", expected, &n_expected) == 0);
    CHECK(y_silent(), "Y was answered while its History read was held");
}

static void answers_in_order_after_release(void) {
    NEED(hold.held && Y.fd >= 0);
    hold_file_release(&hold);
    Parley__V1__Frame *h = y_next_response();
    CHECK(h && h->request_id == RID_HISTORY, "Y's first answer after the release: request %llu, want the History",
          h ? (unsigned long long)h->request_id : 0ULL);
    if (h && h->request_id == RID_HISTORY) {
        const Parley__V1__Response *r = h->response;
        CHECK(r->status == PARLEY__V1__STATUS__OK && r->result_case == PARLEY__V1__RESPONSE__RESULT_HISTORY,
              "History answered status %d, result %d", r->status, r->result_case);
        if (r->result_case == PARLEY__V1__RESPONSE__RESULT_HISTORY) {
            char why[256];
            CHECK(page_is_expected(r->history, why, sizeof why) == 0, "%s", why);
            CHECK(!r->history->has_more, "has_more set on a page holding the whole conversation");
        }
    }
    if (h) parley__v1__frame__free_unpacked(h, NULL);

    Parley__V1__Frame *l = y_next_response();
    CHECK(l && l->request_id == RID_LIST, "Y's second answer: request %llu, want the ListConversations",
          l ? (unsigned long long)l->request_id : 0ULL);
    if (l && l->request_id == RID_LIST) {
        const Parley__V1__Response *r = l->response;
        int listed = 0;
        if (r->status == PARLEY__V1__STATUS__OK && r->result_case == PARLEY__V1__RESPONSE__RESULT_CONVERSATIONS)
            for (size_t i = 0; i < r->conversations->n_conversations; i++)
                listed += r->conversations->conversations[i]->conversation_id == conv;
        CHECK(listed == 1, "the list (status %d) names the conversation %d times", r->status, listed);
    }
    if (l) parley__v1__frame__free_unpacked(l, NULL);

    Parley__V1__Frame *u = y_next_response();
    CHECK(u && u->request_id == RID_LOOKUP, "Y's third answer: request %llu, want the LookupUser",
          u ? (unsigned long long)u->request_id : 0ULL);
    if (u && u->request_id == RID_LOOKUP) {
        const Parley__V1__Response *r = u->response;
        CHECK(r->status == PARLEY__V1__STATUS__OK && r->result_case == PARLEY__V1__RESPONSE__RESULT_USER &&
                  r->user->user_id == alice->id.user_id && strcmp(r->user->name, alice->name) == 0,
              "LookupUser of alice answered status %d, result %d", r->status, r->result_case);
    }
    if (u) parley__v1__frame__free_unpacked(u, NULL);

    double reads = -1;
    NEED(h_metric(&S, "parley_gateway_request_reads_total", &reads) == 0);
    CHECK(reads == 3, "parley_gateway_request_reads_total %.0f, want 3", reads);
}

static int metric_until_ms(const char *name, double *v, int at_least, double ref, int ms) {
    uint64_t deadline = h_now_ms() + (uint64_t)ms;
    do {
        if (h_metric(&S, name, v) == 0 && (at_least ? *v >= ref : *v <= ref)) return 1;
        h_sleep_ms(50);
    } while (h_now_ms() < deadline);
    return 0;
}

static int metric_until(const char *name, double *v, int at_least, double ref) {
    return metric_until_ms(name, v, at_least, ref, IO_MS);
}

/* Y's History of conv as request rid: the answer's status, or -1. */
static int y_history(uint64_t rid) {
    Parley__V1__History hq = PARLEY__V1__HISTORY__INIT;
    hq.conversation_id = conv;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_HISTORY;
    f.history = &hq;
    f.request_id = rid;
    if (h_raw_send_frame(&Y, &f) != 0) return -1;
    return h_raw_await_response(&Y, rid, 16, NULL);
}

/* W's next MQTT PUBLISH (each a whole binary message): the parley Frame
 * it carries (free it), NULL when none comes. Other packets are skipped. */
static Parley__V1__Frame *ws_next_publish(h_raw *w) {
    ws_message m;
    for (int i = 0; i < 16; i++) {
        if (h_raw_next_message(w, &m) != 1) return NULL;
        if (m.kind != WS_MSG_BINARY) continue;
        uint8_t first = 0;
        uint32_t rem = 0;
        size_t hl = 0;
        if (mqtt_fixed_header(m.data, m.len, &first, &rem, &hl) != MQTT_OK || hl + rem != m.len) return NULL;
        if (first >> 4 != MQTT_PUBLISH) continue;
        mqtt_publish pb;
        if (mqtt_decode_publish(4, first, m.data + hl, rem, &pb) != MQTT_OK) return NULL;
        return parley__v1__frame__unpack(NULL, pb.payload.len, pb.payload.p);
    }
    return NULL;
}

/* f as a QoS 0 PUBLISH to topic, appended at out[n..cap): the new length, 0. */
static size_t publish_frame(uint8_t *out, size_t n, size_t cap, const char *topic, const Parley__V1__Frame *f) {
    size_t len = parley__v1__frame__get_packed_size(f);
    size_t h = mqtt_encode_publish_head(out + n, cap - n, 4, topic, strlen(topic), 0, false, 0, len);
    if (!h || cap - n - h < len) return 0;
    parley__v1__frame__pack(f, out + n + h);
    return n + h + len;
}

static void mqtt_websocket_requests_in_one_message(void) {
    NEED(S.pid > 0);
    h_raw W = {.fd = -1};
    h_raw_opts o = {.io_ms = IO_MS};
    NEED(h_raw_connect(S.port, &o, &W) == 0);
    NEED(h_raw_upgrade(&W, "mqtt") == 101);
    uint64_t last_ts = 0;
    uint8_t p[2048];
    size_t n = mq_password_connect(&bob->id, bob->id.secret_key, &last_ts, p, sizeof p);
    char res[64], req[64];
    snprintf(res, sizeof res, "p/%llu.%u/res", (unsigned long long)bob->id.user_id, bob->id.device_id);
    snprintf(req, sizeof req, "p/%llu.%u/req", (unsigned long long)bob->id.user_id, bob->id.device_id);
    const char *filters[] = {res};
    uint8_t opts[] = {0};
    size_t s = n ? mqtt_encode_subscribe(p + n, sizeof p - n, 4, false, 1, filters, opts, 1) : 0;
    NEED(s > 0 && h_raw_send_ws(&W, WS_OP_BINARY, 1, p, n + s, 1) == 0);
    ws_message m;
    int acks = 0;   /* CONNACK, SUBACK */
    for (int i = 0; i < 8 && acks < 2 && h_raw_next_message(&W, &m) == 1; i++)
        acks += m.kind == WS_MSG_BINARY && m.len > 0 && (m.data[0] >> 4 == MQTT_CONNACK || m.data[0] >> 4 == MQTT_SUBACK);
    NEED(acks == 2);

    Parley__V1__History hq = PARLEY__V1__HISTORY__INIT;
    hq.conversation_id = conv;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_HISTORY;
    f.history = &hq;
    f.request_id = RID_MQTT_HISTORY;
    Parley__V1__LookupUser uq = PARLEY__V1__LOOKUP_USER__INIT;
    uq.name = alice->name;
    Parley__V1__Frame u = PARLEY__V1__FRAME__INIT;
    u.body_case = PARLEY__V1__FRAME__BODY_LOOKUP_USER;
    u.lookup_user = &uq;
    u.request_id = RID_MQTT_LOOKUP;
    n = publish_frame(p, 0, sizeof p, req, &f);
    n = n ? publish_frame(p, n, sizeof p, req, &u) : 0;
    NEED(n > 0 && h_raw_send_ws(&W, WS_OP_BINARY, 1, p, n, 1) == 0);   /* both packets, one message */
    Parley__V1__Frame *a = ws_next_publish(&W);
    CHECK(a && a->request_id == RID_MQTT_HISTORY && a->body_case == PARLEY__V1__FRAME__BODY_RESPONSE &&
              a->response->result_case == PARLEY__V1__RESPONSE__RESULT_HISTORY,
          "MQTT over WebSocket: the first answer is not the History's (request %llu)",
          a ? (unsigned long long)a->request_id : 0ULL);
    if (a) parley__v1__frame__free_unpacked(a, NULL);
    Parley__V1__Frame *b = ws_next_publish(&W);
    CHECK(b && b->request_id == RID_MQTT_LOOKUP && b->body_case == PARLEY__V1__FRAME__BODY_RESPONSE &&
              b->response->result_case == PARLEY__V1__RESPONSE__RESULT_USER &&
              b->response->user->user_id == alice->id.user_id,
          "MQTT over WebSocket: the LookupUser that waited behind the History's read: request %llu",
          b ? (unsigned long long)b->request_id : 0ULL);
    if (b) parley__v1__frame__free_unpacked(b, NULL);
    h_raw_close(&W);
}

static void refused_while_store_fails(void) {
    NEED(Y.fd >= 0);
    double probes = -1, probes_now = -1, reads = -1, reads_after = -1;
    NEED(h_metric(&S, "parley_store_watch_probes_total", &probes) == 0);
    NEED(cassandra_node_freeze(30000) == 0);
    frozen = 1;
    /* a first History: its read times out on the frozen node (off the
     * worker), the store says it fails, and the answer is an error */
    int first = y_history(RID_FAILING);
    CHECK(first > 0 && first != PARLEY__V1__STATUS__OK, "a History on the frozen node: status %d", first);
    CHECK(metric_until_ms("parley_store_watch_probes_total", &probes_now, 1, probes + 1, FAIL_WAIT_MS),
          "the store never said it fails (store watch probes %.0f -> %.0f)", probes, probes_now);
    NEED(h_metric(&S, "parley_gateway_request_reads_total", &reads) == 0);
    int refused = y_history(RID_FAILING + 1);
    NEED(h_metric(&S, "parley_gateway_request_reads_total", &reads_after) == 0);
    NEED(kill(cassandra_node_pid(), SIGCONT) == 0);
    frozen = 0;
    CHECK(refused == PARLEY__V1__STATUS__UNAVAILABLE, "a History while the store failed: status %d, want UNAVAILABLE",
          refused);
    CHECK(reads_after == reads, "request reads %.0f -> %.0f: a History read the failing store", reads, reads_after);
    int rc = -1;
    for (uint64_t until = h_now_ms() + 120000, rid = RID_FAILING + 2; rc != 0 && h_now_ms() < until; rid++) {
        rc = y_history(rid);
        if (rc != 0) h_sleep_ms(500);
    }
    CHECK(rc == 0, "a History after the node continued: status %d", rc);
}

static void long_name_not_found_without_read(void) {
    NEED(Y.fd >= 0);
    char name[200];
    memset(name, 'a', sizeof name - 1);
    name[sizeof name - 1] = 0;
    Parley__V1__LookupUser uq = PARLEY__V1__LOOKUP_USER__INIT;
    uq.name = name;
    Parley__V1__Frame u = PARLEY__V1__FRAME__INIT;
    u.body_case = PARLEY__V1__FRAME__BODY_LOOKUP_USER;
    u.lookup_user = &uq;
    u.request_id = RID_LOOKUP_LONG;
    NEED(h_raw_send_frame(&Y, &u) == 0);
    int status = h_raw_await_response(&Y, RID_LOOKUP_LONG, 16, NULL);
    CHECK(status == PARLEY__V1__STATUS__NOT_FOUND, "LookupUser of a 199-byte name: status %d", status);
    double reads = -1;
    NEED(h_metric(&S, "parley_gateway_request_reads_total", &reads) == 0);
    CHECK(reads == 3, "parley_gateway_request_reads_total %.0f, want 3 (no read for it)", reads);
}

static void closed_while_held(void) {
    NEED(Y.fd >= 0);
    double open_base = -1, open_now = -1, taken = -1, taken_now = -1, reads = -1, reads_now = -1;
    NEED(h_metric(&S, "parley_sockets_open", &open_base) == 0);
    NEED(h_metric(&S, "parley_gateway_request_reads_total", &reads) == 0);
    h_raw Z = {.fd = -1};
    h_raw_opts o = {.io_ms = IO_MS};
    NEED(h_raw_open_port(S.port, &o, &Z) == 0);
    NEED(h_raw_sign_in(&Z, &bob->id) == 0);
    NEED(h_metric(&S, "parley_gateway_store_reads_total", &taken) == 0);
    NEED(hold_file_make(&hold) == 0);
    Parley__V1__History hq = PARLEY__V1__HISTORY__INIT;
    hq.conversation_id = conv;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_HISTORY;
    f.history = &hq;
    f.request_id = RID_HISTORY;
    NEED(h_raw_send_frame(&Z, &f) == 0);
    /* a reader took it (counted before the read, which the hold keeps
     * out), then Z goes */
    CHECK(metric_until("parley_gateway_store_reads_total", &taken_now, 1, taken + 1),
          "Z's History read never taken by a reader");
    h_raw_close(&Z);
    CHECK(metric_until("parley_sockets_open", &open_now, 0, open_base), "sockets open %.0f after Z's close, base %.0f",
          open_now, open_base);
    hold_file_release(&hold);
    CHECK(metric_until("parley_gateway_request_reads_total", &reads_now, 1, reads + 1),
          "the held read was never made: request reads %.0f -> %.0f", reads, reads_now);
    CHECK(h_server_alive(&S), "the server died");
    Parley__V1__Frame *resp = NULL;
    f.request_id = RID_HISTORY + 100;
    NEED(h_raw_send_frame(&Y, &f) == 0);
    int status = h_raw_await_response(&Y, f.request_id, 16, &resp);
    CHECK(status == PARLEY__V1__STATUS__OK && resp && resp->response->result_case ==
                                                     PARLEY__V1__RESPONSE__RESULT_HISTORY,
          "Y's History after Z's answer was dropped: status %d", status);
    if (resp) parley__v1__frame__free_unpacked(resp, NULL);
    /* ASan: an error or a leak makes the server's exit status non-zero */
    h_raw_close(&X);
    h_raw_close(&Y);
    int st = h_server_stop(&S);
    CHECK(st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0, "the server's stop: wait status 0x%x", st);
}

int main(void) {
    unsetenv("PARLEY_TEST_STORE");   /* its own server on Cassandra, with the hook */
    RUN(worker_serves_others_while_held);
    RUN(answers_in_order_after_release);
    RUN(long_name_not_found_without_read);
    RUN(mqtt_websocket_requests_in_one_message);
    RUN(refused_while_store_fails);
    RUN(closed_while_held);
    hold_file_release(&hold);
    if (frozen) kill(cassandra_node_pid(), SIGCONT);
    h_raw_close(&X);
    h_raw_close(&Y);
    if (alice) h_dev_free(alice);
    if (bob) h_dev_free(bob);
    h_server_destroy(&S);
    cassandra_node_stop();
    hold_file_destroy(&hold);
    CHECK_EXIT();
}
