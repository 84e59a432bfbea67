/* test_catchup_off_worker.c -- a device's catch-up reads (its inbox pages)
 * do not hold the gateway worker on Cassandra (src/gateway/catchup_read.h).
 *
 * With one worker on Cassandra and the test hook
 * PARLEY_TEST_HOLD_CATCHUP_READS (every catch-up page read waits while the
 * hook's file exists): bob is offline while alice sends him MESSAGES
 * messages (several pages); the hold file is made; bob signs in again from
 * cursor 0 and starts a sync, whose first page read is now held. What
 * must hold:
 *   - the worker answers another connection meanwhile: a raw connection X
 *     (alice) gets its PushGetKey answered (answered from memory) and
 *     alice's send is acknowledged, while bob has been sent no event;
 *   - once the file is gone, bob gets every message, alice's send during
 *     the hold included, exactly once and in order, then SyncDone;
 *   - the pages went through the reader pool
 *     (parley_gateway_catchup_pages_total: at least one per 128 events).
 *
 * Seen failing: with delivery_pump reading pages on the worker again (the
 * store_reads branch in delivery.c made dead; the hook then holds the
 * worker itself), both cases fail: bob's own StartSync is not answered
 * (its OK waits in the worker's output behind the held read; libparley's
 * request times out), and after the release no SyncDone comes to the
 * connection libparley gave up on.
 *
 * Every wait is on observable state with a generous bound. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"
#include "cassandra_node.h"
#include "harness.h"
#include "hold_file.h"

enum {
    MESSAGES = 300,         /* more than two pages of 128 */
    IO_MS = 30000,          /* bound on each raw read: the worker answers at once when it is free */
    SYNC_MS = 120000,       /* bound on the catch-up once released */
};

#define NEED(x) CHECK((x), "%s", #x)
#define HOOK "PARLEY_TEST_HOLD_CATCHUP_READS"

static h_server S;
static h_dev *alice, *bob;
static h_raw X;
static uint64_t conv;
static h_sent expected[MESSAGES + 1];
static size_t n_expected;
static hold_file hold;

static void worker_serves_others_while_held(void) {
    NEED(hold_file_init(&hold, HOOK) == 0);   /* the server inherits it */
    NEED(cassandra_node_start("catchup_reads") == 0);
    const char *flags[] = {"--store", "cassandra", "--cassandra", cassandra_node_hosts(), "--keyspace",
                           "catchup_reads", "--workers", "1", NULL};
    NEED(h_server_start(&S, flags) == 0);
    NEED(h_direct_pair(&S, &alice, &bob, &conv) == 0);
    h_dev_disconnect(bob);
    for (int i = 0; i < MESSAGES; i++) {
        char text[32];
        snprintf(text, sizeof text, "offline %d", i);
        NEED(h_send_rec(alice, conv, text, expected, &n_expected) == 0);
    }
    h_raw_opts o = {.io_ms = IO_MS};
    NEED(h_raw_open_port(S.port, &o, &X) == 0);
    NEED(h_raw_sign_in(&X, &alice->id) == 0);

    NEED(hold_file_make(&hold) == 0);
    NEED(h_dev_reconnect(&S, bob, 0) == 0);
    h_dev_clear(bob);
    NEED(pc_start_sync(bob->c) == 0);   /* answered before its first page is read */

    /* PushGetKey: answered by the worker from memory (OK, or UNAVAILABLE
     * when push is off), no store read */
    CHECK(h_raw_worker_answers(&X, 7), "X's PushGetKey unanswered while bob's catch-up read was held: the worker waits on it");

    /* a send is acknowledged meanwhile (the writer answers through the
     * worker) and reaches bob later, after what he missed */
    NEED(h_send_rec(alice, conv, "during the hold", expected, &n_expected) == 0);
    h_dev *one[1] = {bob};
    h_pump(one, 1, NULL, NULL, 200);   /* whatever was sent to bob so far, read */
    CHECK(h_dev_count(bob, conv) == 0, "bob was sent %zu events while his page read was held",
          h_dev_count(bob, conv));
}

static void catchup_complete_in_order(void) {
    NEED(hold.held && bob && bob->c);
    hold_file_release(&hold);
    h_dev *one[1] = {bob};
    h_count_goal g = {one, 1, conv, 0, 0};
    CHECK(h_pump(one, 1, h_pred_sync_done, &g, SYNC_MS), "no SyncDone after the hold was released");
    g.want = n_expected;
    g.no_membership = 1;
    CHECK(h_pump(one, 1, h_pred_count, &g, SYNC_MS), "bob has %zu of %zu events", h_dev_count(bob, conv),
          n_expected);
    char why[256];
    CHECK(h_expect_exact(bob, conv, expected, n_expected, why, sizeof why) == 0, "%s", why);
    CHECK(h_dev_check_order(bob, conv, why, sizeof why) == 0, "%s", why);
    double pages = 0;
    NEED(h_metric(&S, "parley_gateway_catchup_pages_total", &pages) == 0);
    CHECK(pages >= (double)(MESSAGES / 128 + 1), "parley_gateway_catchup_pages_total %.0f", pages);
}

int main(void) {
    unsetenv("PARLEY_TEST_STORE");   /* its own server on Cassandra, with the hook */
    RUN(worker_serves_others_while_held);
    RUN(catchup_complete_in_order);
    hold_file_release(&hold);
    h_raw_close(&X);
    if (alice) h_dev_free(alice);
    if (bob) h_dev_free(bob);
    h_server_destroy(&S);
    cassandra_node_stop();
    hold_file_destroy(&hold);
    CHECK_EXIT();
}
