/* test_signin_off_worker.c -- a sign-in's device read does not hold the
 * gateway worker (src/gateway/store_reads.h).
 *
 * With one worker on Cassandra: device X is signed in and idle; the node
 * is frozen (SIGSTOP); device Y sends a SignIn, whose device read now
 * waits on the frozen node; then X sends PushGetKey, which the worker
 * answers from memory. What must hold:
 *   - X's answer arrives while Y's sign-in is still unanswered: when X's
 *     answer is read, Y's socket holds nothing (a worker that made the
 *     read itself would have answered Y first: both go out from the one
 *     thread, Y's before X's, and loopback delivers at send);
 *   - a second SignIn on Y while the first is pending is refused CONFLICT;
 *   - once the node continues (SIGCONT) Y's first sign-in is answered,
 *     OK or UNAVAILABLE, and a sign-in after it succeeds (bounded retries);
 *   - the read went through the pool (parley_gateway_store_reads_total).
 *
 * Seen failing: with handle_sign_in reading inline again (the
 * store_reads branch removed, session.c), x_answered_while_y_pending fails:
 * Y's socket already held its UNAVAILABLE answer when X's came.
 *
 * The test owns its node (it freezes it): it starts one of its own. Every
 * wait is on observable state with a generous bound. */
#include <poll.h>
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "cassandra_node.h"
#include "harness.h"

enum {
    IO_MS = 60000,          /* bound on each read: well past the CQL deadline (12 s) */
    RETRY_MS = 120000,      /* bound on signing in again after the node continues */
};

#define NEED(x) CHECK((x), "%s", #x)

static h_server S;
static h_dev *alice, *bob;
static h_raw X, Y;
static int frozen;

/* The status of the Response to request_id, reading (at most 16 frames,
 * Challenges skipped) until it comes; -1 when none does. */
static int response_to(h_raw *w, uint64_t request_id) {
    for (int i = 0; i < 16; i++) {
        int code = 0;
        Parley__V1__Frame *r = h_raw_next_frame(w, &code);
        if (!r) return -1;
        int st = r->body_case == PARLEY__V1__FRAME__BODY_RESPONSE && r->request_id == request_id
                     ? (int)r->response->status : -2;
        parley__v1__frame__free_unpacked(r, NULL);
        if (st != -2) return st;
    }
    return -1;
}

/* Bytes waiting on w's socket now (or in its buffer), without waiting. */
static int has_input(const h_raw *w) {
    if (w->len > w->off) return 1;
    struct pollfd p = {.fd = w->fd, .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

static void x_answered_while_y_pending(void) {
    NEED(cassandra_node_start("signin_reads") == 0);
    const char *flags[] = {"--store", "cassandra", "--cassandra", cassandra_node_hosts(), "--keyspace",
                           "signin_reads", "--workers", "1", NULL};
    NEED(h_server_start(&S, flags) == 0);
    alice = h_user_new(&S, "alice");
    bob = h_user_new(&S, "bob");
    NEED(alice && bob);
    h_raw_opts o = {.io_ms = IO_MS};
    NEED(h_raw_open_port(S.port, &o, &X) == 0);
    NEED(h_raw_sign_in(&X, &alice->id) == 0);
    NEED(h_raw_open_port(S.port, &o, &Y) == 0);   /* has its Challenge: not signed in */

    NEED(cassandra_node_freeze(30000) == 0);
    frozen = 1;
    NEED(h_raw_send_sign_in(&Y, &bob->id, 1) == 0);
    /* PushGetKey: answered by the worker from memory (OK or UNAVAILABLE
     * when push is off), no store read */
    Parley__V1__PushGetKey gk = PARLEY__V1__PUSH_GET_KEY__INIT;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_PUSH_GET_KEY;
    f.push_get_key = &gk;
    f.request_id = 7;
    NEED(h_raw_send_frame(&X, &f) == 0);
    int st = response_to(&X, 7);
    CHECK(st >= 0, "X's PushGetKey unanswered");
    CHECK(!has_input(&Y), "Y's sign-in was answered before X's PushGetKey: the worker waited on the read");

    /* one sign-in at a time: a second one while the read is out is refused */
    NEED(h_raw_send_sign_in(&Y, &bob->id, 2) == 0);
    st = response_to(&Y, 2);
    CHECK(st == PARLEY__V1__STATUS__CONFLICT, "second SignIn while pending: status %d", st);
}

static void y_signed_in_after_continue(void) {
    NEED(frozen);
    NEED(kill(cassandra_node_pid(), SIGCONT) == 0);
    frozen = 0;
    int st = response_to(&Y, 1);
    CHECK(st == PARLEY__V1__STATUS__OK || st == PARLEY__V1__STATUS__UNAVAILABLE, "Y's first SignIn: status %d", st);
    if (st != PARLEY__V1__STATUS__OK) {   /* as a device would: again on a new connection */
        int ok = 0;
        for (uint64_t until = h_now_ms() + RETRY_MS; !ok && h_now_ms() < until; h_sleep_ms(500)) {
            h_raw_close(&Y);
            h_raw_opts o = {.io_ms = IO_MS};
            ok = h_raw_open_port(S.port, &o, &Y) == 0 && h_raw_sign_in(&Y, &bob->id) == 0;
        }
        CHECK(ok, "Y never signed in after the node continued");
    }
    double reads = 0;
    NEED(h_metric(&S, "parley_gateway_store_reads_total", &reads) == 0);
    CHECK(reads >= 1, "parley_gateway_store_reads_total %.0f: the read did not go through the pool", reads);
}

int main(void) {
    unsetenv("PARLEY_TEST_STORE");   /* its own node, which it freezes */
    RUN(x_answered_while_y_pending);
    RUN(y_signed_in_after_continue);
    if (cassandra_node_pid() > 0) kill(cassandra_node_pid(), SIGCONT);   /* a failed case may leave it frozen */
    h_raw_close(&X);
    h_raw_close(&Y);
    if (alice) h_dev_free(alice);
    if (bob) h_dev_free(bob);
    h_server_destroy(&S);
    cassandra_node_stop();
    CHECK_EXIT();
}
