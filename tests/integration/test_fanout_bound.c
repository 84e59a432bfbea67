/* test_fanout_bound.c -- the hand-off from the writers to fan-out is
 * bounded in deliveries (receivers x messages), not messages
 * (--fanout-pending-max, src/queue/queue_local.c).
 *
 * A group of 20 users; eight of them each pipeline 40 sends on a raw
 * connection (320 messages, 6,400 deliveries) into a server whose bound is
 * 100 deliveries (5 messages of this group). The writers' group commits
 * hold more than that, so they must wait for fan-out: the test checks that
 * they did (parley_fanout_bound_waits_total went up), that the pending
 * deliveries never went past the bound (parley_fanout_pending_deliveries_peak,
 * the highest count the server ever reached), that every send was
 * acknowledged and every member's device got every message exactly once in
 * order, and that the pending count returns to 0. */
#include <sodium.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "harness.h"

static h_server S;

enum {
    MEMBERS = 20,
    SENDERS = 8,
    PER_SENDER = 40,
    BOUND = 100,
    WAIT_MS = 120000,
    IO_TIMEOUT_MS = 30000,
    BURSTS_MAX = 5,   /* bursts until the writers have waited at least once */
};

static const char *const args[] = {"--fanout-pending-max", "100", "--send-rate", "10000", NULL};

static double metric(const char *name) {
    double v = -1;
    return h_metric(&S, name, &v) == 0 ? v : -1;
}

/* the k-th send of a sender's burst: request 1000 + k */
typedef struct burst_sends {
    uint64_t conv;
    int burst, sender;
    char id[32], body[32];
    Parley__V1__SendMessage sm;
} burst_sends;

static int make_send(void *ud, size_t k, Parley__V1__Frame *f) {
    burst_sends *s = ud;
    snprintf(s->id, sizeof s->id, "b%d-s%d-%zu", s->burst, s->sender, k);
    snprintf(s->body, sizeof s->body, "m%zu", k);
    h_frame_send_text(f, &s->sm, 1000 + (uint64_t)k, s->conv, s->id, s->body);
    return 0;
}

/* PER_SENDER sends packed back to back in one write */
static int pipeline_sends(h_raw *w, uint64_t conv, int burst, int sender) {
    burst_sends s = {.conv = conv, .burst = burst, .sender = sender};
    return h_raw_send_frames(w, PER_SENDER, make_send, &s);
}

/* the answers to requests 1000 .. 1000+PER_SENDER-1, in any order: how many were OK */
static int count_ok(h_raw *w) {
    int ok = 0, answered = 0;
    for (int i = 0; i < 100000 && answered < PER_SENDER; i++) {
        int close_code = 0;
        Parley__V1__Frame *r = h_raw_next_frame(w, &close_code);
        if (!r) {
            fprintf(stderr, "  no answer after %d (close code %d)\n", answered, close_code);
            break;
        }
        if (r->body_case == PARLEY__V1__FRAME__BODY_RESPONSE && r->request_id >= 1000 &&
            r->request_id < 1000 + PER_SENDER) {
            answered++;
            if (r->response->status == PARLEY__V1__STATUS__OK) ok++;
            else fprintf(stderr, "  send %llu: status %d %s\n", (unsigned long long)r->request_id,
                         r->response->status, r->response->error ? r->response->error : "");
        }
        parley__v1__frame__free_unpacked(r, NULL);
    }
    return ok;
}

static void group_burst_stays_under_the_bound(void) {
    CHECK(h_server_start(&S, args) == 0, "server did not start");
    CHECK(metric("parley_fanout_pending_deliveries_max") == BOUND, "the bound is shown: %.0f",
          metric("parley_fanout_pending_deliveries_max"));
    h_dev **m = h_calloc(MEMBERS, sizeof *m);
    CHECK(m, "alloc");
    for (int u = 0; u < MEMBERS; u++) CHECK((m[u] = h_user_new(&S, NULL)), "user %d", u);
    uint64_t others[MEMBERS - 1], group = 0;
    for (int u = 1; u < MEMBERS; u++) others[u - 1] = m[u]->id.user_id;
    CHECK(pc_create_group(m[0]->c, "bounded", others, MEMBERS - 1, &group) == 0, "create group: %s",
          pc_error(m[0]->c));
    for (int u = 0; u < MEMBERS; u++) CHECK(h_dev_sync(m[u], WAIT_MS) == 0, "member %d syncs", u);

    /* the senders' raw connections (their pc devices stay, receiving) */
    h_raw *w = h_calloc(SENDERS, sizeof *w);
    CHECK(w, "alloc");
    const h_raw_opts o = {.io_ms = IO_TIMEOUT_MS};
    for (int s = 0; s < SENDERS; s++)
        CHECK(h_raw_open_port(S.port, &o, &w[s]) == 0 && h_raw_sign_in(&w[s], &m[s]->id) == 0, "sender %d raw", s);

    int acked = 0, bursts = 0;
    double waits0 = metric("parley_fanout_bound_waits_total");
    do {
        for (int s = 0; s < SENDERS; s++) CHECK(pipeline_sends(&w[s], group, bursts, s) == 0, "burst %d sender %d", bursts, s);
        for (int s = 0; s < SENDERS; s++) acked += count_ok(&w[s]);
        bursts++;
        CHECK(metric("parley_fanout_pending_deliveries_peak") <= BOUND,
              "burst %d: pending deliveries reached %.0f, above the bound %d", bursts,
              metric("parley_fanout_pending_deliveries_peak"), BOUND);
    } while (metric("parley_fanout_bound_waits_total") <= waits0 && bursts < BURSTS_MAX);
    fprintf(stderr, "  %d bursts, %d acked, peak %.0f, waits %.0f\n", bursts, acked, metric("parley_fanout_pending_deliveries_peak"), metric("parley_fanout_bound_waits_total") - waits0);
    CHECK(acked == bursts * SENDERS * PER_SENDER, "every send acknowledged: %d of %d", acked,
          bursts * SENDERS * PER_SENDER);
    CHECK(metric("parley_fanout_bound_waits_total") > waits0, "the writers waited for room (%d bursts)", bursts);

    /* every member's device gets every message, once, in order */
    h_count_goal g = {m, MEMBERS, group, (size_t)acked, 1};
    CHECK(h_pump(m, MEMBERS, h_pred_count, &g, WAIT_MS), "every member gets all %d messages", acked);
    for (int u = 0; u < MEMBERS; u++) {
        char why[256] = "";
        CHECK(h_dev_conv_events(m[u], group, 1, NULL, 0) == (size_t)acked, "member %d: %zu messages, want %d", u,
              h_dev_conv_events(m[u], group, 1, NULL, 0), acked);
        CHECK(h_dev_check_order(m[u], group, why, sizeof why) == 0, "member %d: %s", u, why);
    }
    CHECK(metric("parley_fanout_pending_deliveries_peak") <= BOUND, "pending deliveries reached %.0f, above %d",
          metric("parley_fanout_pending_deliveries_peak"), BOUND);
    uint64_t until = h_now_ms() + WAIT_MS;
    while (metric("parley_fanout_pending_deliveries") != 0 && h_now_ms() < until) h_sleep_ms(20);
    CHECK(metric("parley_fanout_pending_deliveries") == 0, "nothing pending once all is delivered: %.0f",
          metric("parley_fanout_pending_deliveries"));

    for (int s = 0; s < SENDERS; s++) h_raw_close(&w[s]);
    for (int u = 0; u < MEMBERS; u++) h_dev_free(m[u]);
    int exit_status = h_server_stop(&S);
    if (exit_status != 0) h_server_log_tail(&S, 40);
    h_server_destroy(&S);
    CHECK(exit_status == 0, "the server did not exit cleanly (status %d)", exit_status);
}

int main(void) {
    if (sodium_init() < 0) return 1;
    RUN(group_burst_stays_under_the_bound);
    CHECK_EXIT();
}
