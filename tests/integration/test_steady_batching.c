/* test_steady_batching.c -- the writers' steady-rate batching (README
 * "Steady-rate batching", core/mpsc.h mpsc_pop_gather) keeps the write
 * path's guarantees, and is off with --fsync always.
 *
 * Alice sends SENDS messages to Bob one at a time (each acknowledged
 * before the next). With --fsync batch (the gather on the writers' path)
 * and with --fsync always, Bob's device gets exactly the messages
 * acknowledged, in order; with --fsync always no writer ever gathers
 * (parley_writer_gathers_total stays 0). How many gathers lone sends make
 * with --fsync batch depends on timing (a writer gathers only while busy),
 * so it is printed, not asserted; the gather's rules are checked in
 * tests/unit/test_mpsc_gather.c. */
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "../check.h"
#include "harness.h"

enum {
    SENDS = 20,
    WAIT_MS = 60000,
};

/* Runs the exchange on a started server; NULL, or what went wrong (why
 * holds the details). *gathered: the counter's rise over the sends. */
static const char *exchange(h_server *s, double *gathered, char *why, size_t why_cap) {
    h_dev *alice = h_user_new(s, NULL), *bob = h_user_new(s, NULL);
    const char *err = NULL;
    uint64_t conv = 0;
    h_sent exp[SENDS];
    size_t n = 0;
    double before = 0, after = 0;
    if (!alice || !bob) err = "users";
    else if (pc_open_direct(alice->c, bob->id.user_id, &conv) != 0) err = "open direct";
    else if (h_accept(bob, conv) != 0) err = "bob accepts";
    else if (h_dev_sync(bob, WAIT_MS) != 0) err = "bob syncs";
    else if (h_metric(s, "parley_writer_gathers_total", &before) != 0) err = "metric before";
    for (int i = 0; !err && i < SENDS; i++) {
        char text[32];
        snprintf(text, sizeof text, "steady %d", i);
        if (h_send_rec(alice, conv, text, exp, &n) != 0) err = "a send was not acknowledged";
    }
    if (!err && h_metric(s, "parley_writer_gathers_total", &after) != 0) err = "metric after";
    if (!err) {
        *gathered = after - before;
        h_count_goal g = {&bob, 1, conv, n, 1};
        if (!h_pump(&bob, 1, h_pred_count, &g, WAIT_MS)) err = "bob did not get every message";
        else if (h_expect_exact(bob, conv, exp, n, why, why_cap) != 0) err = "bob's messages";
    }
    if (alice) h_dev_free(alice);
    if (bob) h_dev_free(bob);
    return err;
}

static void fsync_batch_delivers_exactly(void) {
    h_server s;
    memset(&s, 0, sizeof s);
    CHECK(h_server_start(&s, NULL) == 0, "server did not start");
    double gathered = -1;
    char why[256] = "";
    const char *err = exchange(&s, &gathered, why, sizeof why);
    int status = h_server_stop(&s);
    h_server_destroy(&s);
    CHECK(!err, "%s %s", err, why);
    check_note("--fsync batch: %d lone sends, %.0f writer gathers", SENDS, gathered);
    CHECK(status == 0, "the server did not exit cleanly (status %d)", status);
}

static void fsync_always_never_gathers(void) {
    static const char *const args[] = {"--fsync", "always", NULL};
    h_server s;
    memset(&s, 0, sizeof s);
    CHECK(h_server_start(&s, args) == 0, "server did not start");
    double gathered = -1;
    char why[256] = "";
    const char *err = exchange(&s, &gathered, why, sizeof why);
    int status = h_server_stop(&s);
    h_server_destroy(&s);
    CHECK(!err, "%s %s", err, why);
    CHECK(gathered == 0, "--fsync always: %.0f gathers, want 0", gathered);
    CHECK(status == 0, "the server did not exit cleanly (status %d)", status);
}

int main(void) {
    if (sodium_init() < 0) return 1;
    RUN(fsync_batch_delivers_exactly);
    RUN(fsync_always_never_gathers);
    CHECK_EXIT();
}
