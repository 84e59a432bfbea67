/* test_cassandra_outage.c -- the server on Cassandra while Cassandra goes
 * away: frozen (SIGSTOP), then killed (SIGKILL) and started again on the
 * same port and data, with a client sending throughout.
 *
 * What must hold (DESIGN.md, "ack means durable"; issue 12):
 *   - a send made while Cassandra is away is not acknowledged as stored
 *     (no OK Response to it) while it is away; an error answer is allowed;
 *   - /healthz answers 503 with a reason meanwhile;
 *   - the server recovers by itself once Cassandra is back: /healthz 200
 *     without any client action, and new sends are acknowledged;
 *   - a retry of an unacknowledged send with the same client_msg_id is
 *     answered with the first one's seq if the first was stored, and never
 *     makes a second message;
 *   - history and a fresh device's sync hold every acknowledged message
 *     exactly once, in seq order, before and after a restart of the server.
 *
 * The test owns its node (it freezes and kills it), so it starts one of
 * its own whatever PARLEY_TEST_STORE says. Every wait is on observable
 * state (a Response, /healthz, the node's process) with a generous bound. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"
#include "cassandra_node.h"
#include "harness.h"

enum {
    N_BEFORE = 5,                 /* acknowledged before the outage */
    N_DURING = 3,                 /* sent while Cassandra is frozen */
    N_AFTER = 5,                  /* sent once it is back */
    N_ALL = N_BEFORE + N_DURING + N_AFTER,
    HEALTH_WAIT_MS = 120000,      /* bounds, not expectations */
    RECOVER_WAIT_MS = 240000,
    ANSWER_WAIT_MS = 60000,
    POLL_IO_MS = 300,             /* one read's bound while polling a raw connection */
};

#define NEED(x) CHECK((x), "%s", #x)

static h_server S;

/* one message as the test tracks it */
typedef struct tracked {
    char text[32];
    uint8_t cmid[16];
    uint64_t request_id;
    int answered;                 /* a Response to request_id came */
    int status;                   /* its status */
    uint64_t seq;                 /* its seq when OK */
    int duplicate;                /* Sent.duplicate */
} tracked;

static tracked M[N_ALL];

static void make_message(int i, const char *phase) {
    memset(&M[i], 0, sizeof M[i]);
    snprintf(M[i].text, sizeof M[i].text, "%s-%d", phase, i);
    for (size_t k = 0; k < sizeof M[i].cmid; k++) M[i].cmid[k] = (uint8_t)(0x40 + i * 7 + (int)k);
}

static int send_tracked(h_raw *w, uint64_t conv, tracked *t) {
    Parley__V1__SendMessage sm = PARLEY__V1__SEND_MESSAGE__INIT;
    sm.conversation_id = conv;
    sm.client_msg_id.data = t->cmid;
    sm.client_msg_id.len = sizeof t->cmid;
    sm.type = PARLEY__V1__MESSAGE_TYPE__TEXT;
    sm.body.data = (uint8_t *)t->text;
    sm.body.len = strlen(t->text);
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_SEND_MESSAGE;
    f.send_message = &sm;
    f.request_id = t->request_id = w->next_request_id++;
    t->answered = 0;
    return h_raw_send_frame(w, &f);
}

/* Records one Response frame into the tracked message it answers. */
static void record_response(const Parley__V1__Frame *r, tracked *ts, int n) {
    if (r->body_case != PARLEY__V1__FRAME__BODY_RESPONSE) return;
    for (int i = 0; i < n; i++) {
        if (ts[i].request_id != r->request_id || ts[i].answered) continue;
        ts[i].answered = 1;
        ts[i].status = r->response->status;
        if (r->response->status == PARLEY__V1__STATUS__OK &&
            r->response->result_case == PARLEY__V1__RESPONSE__RESULT_SENT) {
            ts[i].seq = r->response->sent->seq;
            ts[i].duplicate = r->response->sent->duplicate;
        }
        if (r->response->status != PARLEY__V1__STATUS__OK)
            fprintf(stderr, "  '%s' answered %d: %s\n", ts[i].text, r->response->status,
                    r->response->error ? r->response->error : "");
    }
}

/* Reads whatever w has now (until a read times out after POLL_IO_MS),
 * recording Responses; -1 when the connection is gone. */
static int drain(h_raw *w, tracked *ts, int n) {
    for (int i = 0; i < 10000; i++) {
        int code = 0;
        Parley__V1__Frame *r = h_raw_next_frame(w, &code);
        if (!r) return w->eof || code != 0 ? -1 : 0;
        record_response(r, ts, n);
        parley__v1__frame__free_unpacked(r, NULL);
    }
    return 0;
}

/* Waits (bounded) until every ts[0..n) is answered or w is gone. */
static int await_all(h_raw *w, tracked *ts, int n, int timeout_ms) {
    uint64_t until = h_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        int all = 1;
        for (int i = 0; i < n; i++) all = all && ts[i].answered;
        if (all) return 0;
        if (h_now_ms() > until || drain(w, ts, n) != 0) return -1;
    }
}

static int health(char *body, size_t cap) {
    int st = 0;
    if (h_http_get(S.port, "/healthz", &st, body, cap) != 0) return -1;
    return st;
}

/* Waits (bounded) until /healthz answers want, draining w meanwhile so
 * Responses are recorded as they come. */
static int await_health(int want, h_raw *w, tracked *ts, int n, int timeout_ms, char *body, size_t cap) {
    uint64_t until = h_now_ms() + (uint64_t)timeout_ms;
    while (h_now_ms() < until) {
        if (health(body, cap) == want) return 0;
        if (w && w->fd >= 0 && !w->eof) drain(w, ts, n);
        else h_sleep_ms(POLL_IO_MS);
    }
    return -1;
}

/* Waits (bounded) until the node's process is gone (or a zombie). */
static int await_node_gone(pid_t pid, int timeout_ms) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    for (uint64_t until = h_now_ms() + (uint64_t)timeout_ms; h_now_ms() < until; h_sleep_ms(50)) {
        FILE *f = fopen(path, "r");
        if (!f) return 0;
        char stat[512];
        size_t got = fread(stat, 1, sizeof stat - 1, f);
        fclose(f);
        stat[got] = '\0';
        const char *paren = strrchr(stat, ')');
        if (paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X')) return 0;
    }
    return -1;
}

static int open_sender(h_raw *w, const pc_identity *id) {
    h_raw_opts o = {0};
    o.io_ms = POLL_IO_MS;
    if (h_raw_open_port(S.port, &o, w) != 0) return -1;
    return h_raw_sign_in(w, id);
}

static int ok(const tracked *t) { return t->answered && t->status == PARLEY__V1__STATUS__OK && t->seq > 0; }

/* exp[] from M[] in seq order: what history and sync must show, exactly */
static size_t expected(h_sent *exp, uint64_t sender) {
    size_t n = 0;
    for (int i = 0; i < N_ALL; i++) {
        exp[n].seq = M[i].seq;
        exp[n].sender = sender;
        _Static_assert(sizeof exp[n].text >= sizeof M[i].text, "h_sent holds a tracked text");
        memcpy(exp[n].text, M[i].text, sizeof M[i].text);
        n++;
    }
    /* insertion sort by seq (13 entries) */
    for (size_t i = 1; i < n; i++)
        for (size_t j = i; j > 0 && exp[j - 1].seq > exp[j].seq; j--) {
            h_sent t = exp[j];
            exp[j] = exp[j - 1];
            exp[j - 1] = t;
        }
    return n;
}

/* history through dev holds exactly exp (seq, sender, text), in order */
static int history_is(h_dev *dev, uint64_t conv, const h_sent *exp, size_t n, char *why, size_t cap) {
    size_t nh = 0;
    h_event *hist = h_history_all(dev, conv, &nh);
    if (!hist) {
        snprintf(why, cap, "history failed");
        return -1;
    }
    size_t k = 0;
    int rc = 0;
    for (size_t i = 0; i < nh && rc == 0; i++) {
        if (hist[i].type == PARLEY__V1__MESSAGE_TYPE__MEMBERSHIP) continue;
        if (k >= n) {
            snprintf(why, cap, "history has more than %zu messages: seq %llu", n,
                     (unsigned long long)hist[i].seq);
            rc = -1;
        } else if (hist[i].seq != exp[k].seq || hist[i].sender_user_id != exp[k].sender ||
                   !h_event_body_is(&hist[i], exp[k].text)) {
            snprintf(why, cap, "history[%zu]: seq %llu, want seq %llu '%s'", k,
                     (unsigned long long)hist[i].seq, (unsigned long long)exp[k].seq, exp[k].text);
            rc = -1;
        }
        k++;
    }
    if (rc == 0 && k != n) {
        snprintf(why, cap, "history has %zu messages, want %zu", k, n);
        rc = -1;
    }
    h_events_free(hist, nh);
    return rc;
}

static void sends_wait_out_an_outage(void) {
    NEED(cassandra_node_start("outage") == 0);
    const char *flags[] = {"--store", "cassandra", "--cassandra", cassandra_node_hosts(), "--keyspace",
                           "outage", "--send-rate", "100000", NULL};
    NEED(h_server_start(&S, flags) == 0);
    h_dev *alice = h_user_new(&S, "alice"), *bob = h_user_new(&S, "bob");
    NEED(alice && bob);
    uint64_t conv = 0;
    NEED(pc_open_direct(alice->c, bob->id.user_id, &conv) == 0);
    NEED(h_accept(bob, conv) == 0);
    h_raw *w = h_calloc(1, sizeof *w);
    NEED(w);
    w->fd = -1;
    NEED(open_sender(w, &alice->id) == 0);
    char body[128];

    /* before: acknowledged as usual */
    for (int i = 0; i < N_BEFORE; i++) {
        make_message(i, "before");
        NEED(send_tracked(w, conv, &M[i]) == 0);
    }
    CHECK(await_all(w, M, N_BEFORE, ANSWER_WAIT_MS) == 0, "sends before the outage unanswered");
    for (int i = 0; i < N_BEFORE; i++) CHECK(ok(&M[i]), "'%s' status %d", M[i].text, M[i].status);

    /* Cassandra frozen: sends go out and must not be acknowledged */
    CHECK(cassandra_node_freeze(30000) == 0, "cassandra_node_freeze");
    pid_t node = cassandra_node_pid();
    for (int i = N_BEFORE; i < N_BEFORE + N_DURING; i++) {
        make_message(i, "during");
        NEED(send_tracked(w, conv, &M[i]) == 0);
    }
    CHECK(await_health(503, w, M, N_ALL, HEALTH_WAIT_MS, body, sizeof body) == 0,
          "/healthz did not say 503 while Cassandra is frozen (last: %s)", body);
    CHECK(strlen(body) > 1, "/healthz 503 with no reason");
    fprintf(stderr, "  /healthz while frozen: 503 %s", body);
    if (w->fd >= 0 && !w->eof) drain(w, M, N_ALL);
    for (int i = N_BEFORE; i < N_BEFORE + N_DURING; i++)
        CHECK(!(M[i].answered && M[i].status == PARLEY__V1__STATUS__OK),
              "'%s' acknowledged (seq %llu) while Cassandra was frozen", M[i].text,
              (unsigned long long)M[i].seq);

    /* ... then killed: still no acknowledgement, still 503 */
    CHECK(kill(node, SIGKILL) == 0, "SIGKILL to the node");
    CHECK(await_node_gone(node, 30000) == 0, "the node did not die");
    int st = health(body, sizeof body);
    CHECK(st == 503, "/healthz %d with Cassandra dead: %s", st, body);
    if (w->fd >= 0 && !w->eof) drain(w, M, N_ALL);
    for (int i = N_BEFORE; i < N_BEFORE + N_DURING; i++)
        CHECK(!(M[i].answered && M[i].status == PARLEY__V1__STATUS__OK),
              "'%s' acknowledged (seq %llu) with Cassandra dead", M[i].text, (unsigned long long)M[i].seq);
    int acked_while_away = 0;
    for (int i = N_BEFORE; i < N_BEFORE + N_DURING; i++) acked_while_away += ok(&M[i]);
    CHECK(acked_while_away == 0, "%d sends acknowledged while Cassandra was away", acked_while_away);

    /* back on the same port and data: the server recovers by itself */
    CHECK(cassandra_node_restart() == 0, "cassandra_node_restart");
    CHECK(await_health(200, w, M, N_ALL, RECOVER_WAIT_MS, body, sizeof body) == 0,
          "/healthz did not come back to 200 after Cassandra returned (last: %s)", body);

    /* what became of the sends made while it was away: answered by now, or
     * the connection is gone; either way the client retries each with the
     * same client_msg_id, on a fresh connection if need be */
    if (w->fd >= 0 && !w->eof) await_all(w, M + N_BEFORE, N_DURING, ANSWER_WAIT_MS);
    uint64_t first_seq[N_DURING];
    for (int i = 0; i < N_DURING; i++) {
        const tracked *t = &M[N_BEFORE + i];
        first_seq[i] = ok(t) ? t->seq : 0;
        fprintf(stderr, "  '%s' first attempt: %s (status %d, seq %llu)\n", t->text,
                t->answered ? "answered" : "unanswered", t->status, (unsigned long long)t->seq);
    }
    if (w->eof || w->fd < 0) {
        h_raw_close(w);
        w->fd = -1;
        CHECK(open_sender(w, &alice->id) == 0, "reconnect the sender");
    }
    for (int i = N_BEFORE; i < N_BEFORE + N_DURING; i++) NEED(send_tracked(w, conv, &M[i]) == 0);
    CHECK(await_all(w, M + N_BEFORE, N_DURING, ANSWER_WAIT_MS) == 0, "retries unanswered");
    for (int i = 0; i < N_DURING; i++) {
        const tracked *t = &M[N_BEFORE + i];
        CHECK(ok(t), "retry of '%s': status %d", t->text, t->status);
        if (first_seq[i])
            CHECK(t->seq == first_seq[i] && t->duplicate,
                  "retry of '%s' (stored as seq %llu) answered seq %llu duplicate %d", t->text,
                  (unsigned long long)first_seq[i], (unsigned long long)t->seq, t->duplicate);
    }

    /* acks resume for new messages */
    for (int i = N_BEFORE + N_DURING; i < N_ALL; i++) {
        make_message(i, "after");
        NEED(send_tracked(w, conv, &M[i]) == 0);
    }
    CHECK(await_all(w, M + N_BEFORE + N_DURING, N_AFTER, ANSWER_WAIT_MS) == 0, "sends after unanswered");
    for (int i = N_BEFORE + N_DURING; i < N_ALL; i++)
        CHECK(ok(&M[i]) && !M[i].duplicate, "'%s' status %d dup %d", M[i].text, M[i].status, M[i].duplicate);

    /* order: before < during < after, and each phase in send order */
    for (int i = 1; i < N_ALL; i++)
        CHECK(M[i].seq > M[i - 1].seq, "'%s' seq %llu not above '%s' seq %llu", M[i].text,
              (unsigned long long)M[i].seq, M[i - 1].text, (unsigned long long)M[i - 1].seq);

    /* nothing acknowledged lost, nothing stored twice: history and a fresh
     * device's sync, before and after a restart of the server */
    h_sent exp[N_ALL];
    size_t n = expected(exp, alice->id.user_id);
    char why[256];
    CHECK(history_is(bob, conv, exp, n, why, sizeof why) == 0, "%s", why);
    h_dev *fresh = h_dev_for_identity(&S, &bob->id, "bob-fresh", 0);
    NEED(fresh);
    CHECK(h_dev_sync(fresh, ANSWER_WAIT_MS) == 0, "fresh device's sync");
    CHECK(h_expect_exact(fresh, conv, exp, n, why, sizeof why) == 0, "sync: %s", why);

    h_raw_close(w);
    w->fd = -1;
    h_dev_disconnect(alice);
    h_dev_disconnect(bob);
    h_dev_disconnect(fresh);
    CHECK(h_server_restart(&S) == 0, "server restart");
    CHECK(h_dev_reconnect(&S, bob, 0) == 0, "bob reconnects");
    CHECK(history_is(bob, conv, exp, n, why, sizeof why) == 0, "after a restart: %s", why);

    h_dev_free(fresh);
    h_dev_free(alice);
    h_dev_free(bob);
    h_free(w);
    h_server_destroy(&S);
}

int main(void) {
    /* this program's servers run on its own node, with the flags above */
    unsetenv("PARLEY_TEST_STORE");
    RUN(sends_wait_out_an_outage);
    CHECK_EXIT();
}
