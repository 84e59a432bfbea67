/* fleet.c -- a set of connections spread over the bench's loops, and the
 * phases every scenario is built from: bring up (connect, register or sign
 * in, start sync), run a setup request on some connections, load for a set
 * time, drain. Setup requests are queued from the main thread between
 * phases, while no loop runs, so the loops never share a connection. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fleet.h"

int fleet_init(fleet *f, uint32_t n, int threads) {
    memset(f, 0, sizeof *f);
    if (threads < 1) threads = 1;
    if ((uint32_t)threads > n && n > 0) threads = (int)n;
    f->n = n;
    f->n_loops = threads;
    f->all = calloc(n ? n : 1, sizeof *f->all);
    f->loops = calloc((size_t)threads, sizeof *f->loops);
    if (!f->all || !f->loops) return -1;
    for (uint32_t i = 0; i < n; i++)
        if (!(f->all[i] = conn_new(i))) return -1;
    /* connection i lives on loop i % threads */
    for (int t = 0; t < threads; t++) {
        uint32_t cnt = n / (uint32_t)threads + ((uint32_t)t < n % (uint32_t)threads);
        bconn **mine = calloc(cnt ? cnt : 1, sizeof *mine);
        if (!mine) return -1;
        for (uint32_t k = 0; k < cnt; k++) mine[k] = f->all[k * (uint32_t)threads + (uint32_t)t];
        if (loop_init(&f->loops[t], t, mine, cnt)) return -1;
    }
    return 0;
}

void fleet_free(fleet *f) {
    for (int t = 0; t < f->n_loops; t++) loop_free(&f->loops[t]);   /* frees the conns */
    free(f->loops);
    free(f->all);
}

bloop *fleet_loop_of(fleet *f, uint32_t i) {
    return &f->loops[i % (uint32_t)f->n_loops];
}

void fleet_reset_counters(fleet *f) {
    for (int t = 0; t < f->n_loops; t++) {
        memset(&f->loops[t].cnt, 0, sizeof f->loops[t].cnt);
        hist_init(&f->loops[t].ack_lat);
        hist_init(&f->loops[t].deliv_lat);
    }
}

static bool all_ready(bloop *l) { return CNT_GET(l, ready) >= l->target; }

static bool none_pending(bloop *l) {
    for (uint32_t i = 0; i < l->n; i++)
        if (l->conns[i]->pending && l->conns[i]->fd >= 0) return false;
    return true;
}

uint64_t fleet_bring_up(fleet *f, bool register_new, bool sync, double timeout_s, const char *label) {
    return fleet_bring_up_part(f, register_new, sync, timeout_s, label, 0, 1.0);
}

uint64_t fleet_bring_up_part(fleet *f, bool register_new, bool sync, double timeout_s,
                             const char *label, double from, double to) {
    for (int t = 0; t < f->n_loops; t++) {
        bloop *l = &f->loops[t];
        memset(&l->cnt, 0, sizeof l->cnt);
        l->register_new = register_new;
        l->auto_sync = sync;
        l->connect_next = (uint32_t)(from * l->n);
        l->connect_upto = (uint32_t)(to * l->n);
        l->target = l->connect_upto - l->connect_next;
    }
    run_loops(f->loops, f->n_loops, label, all_ready, timeout_s);
    return LOOPS_SUM(f->loops, f->n_loops, ready);
}

void fleet_wait_pending(fleet *f, double timeout_s, const char *label) {
    run_loops(f->loops, f->n_loops, label, none_pending, timeout_s);
}

void fleet_sync_all(fleet *f, double timeout_s) {
    for (uint32_t i = 0; i < f->n; i++)
        if (f->all[i]->fd >= 0 && !f->all[i]->syncing) conn_start_sync(fleet_loop_of(f, i), f->all[i]);
    fleet_wait_pending(f, timeout_s, "start sync");
}

void fleet_close_all(fleet *f) {
    for (uint32_t i = 0; i < f->n; i++) {
        conn_shutdown(fleet_loop_of(f, i), f->all[i]);
        conn_trim(f->all[i]);
    }
}

static fleet *g_drain;
static uint64_t g_expect_deliveries;

static bool drained(bloop *l) {
    (void)l;
    fleet *f = g_drain;
    uint64_t sent = LOOPS_SUM(f->loops, f->n_loops, sent);
    uint64_t acked = LOOPS_SUM(f->loops, f->n_loops, acked) + LOOPS_SUM(f->loops, f->n_loops, errors);
    /* a delivery that did not decrypt still arrived: waiting longer would not help */
    uint64_t deliv = LOOPS_SUM(f->loops, f->n_loops, delivered) + LOOPS_SUM(f->loops, f->n_loops, decrypt_errors);
    return acked >= sent && deliv >= g_expect_deliveries;
}

static uint64_t g_fanout;

/* --messages: this loop's share sent, acked and delivered. A loop's
 * deliveries need not be its own senders' (a group spans loops), so with
 * several loops the drain below still waits for the rest. */
static bool fixed_done(bloop *l) {
    uint64_t sent = CNT_GET(l, sent);
    return sent >= l->send_limit && CNT_GET(l, acked) + CNT_GET(l, errors) >= sent &&
           (g_opt.threads > 1 || CNT_GET(l, delivered) + CNT_GET(l, decrypt_errors) >= sent * g_fanout);
}

void fleet_load(fleet *f, bool (*is_sender)(fleet *, uint32_t), double rate, double seconds,
                uint64_t fanout, load_result *out) {
    uint64_t t0 = now_ns() + 20000000ull;
    for (int t = 0; t < f->n_loops; t++) {
        bloop *l = &f->loops[t];
        free(l->senders);
        l->senders = calloc(l->n ? l->n : 1, sizeof *l->senders);
        l->n_senders = 0;
        for (uint32_t k = 0; k < l->n; k++) {
            uint32_t gi = l->conns[k]->index;
            l->conns[k]->sends_load = is_sender(f, gi);
            if (l->conns[k]->sends_load) l->senders[l->n_senders++] = l->conns[k];
        }
        l->count_deliveries = true;
        l->load_t0 = t0;
        l->load_seq = 0;
        l->load_interval_ns = rate > 0 ? (uint64_t)(1e9 * f->n_loops / rate) : 0;
        l->load_end = t0 + (uint64_t)(seconds * 1e9);
        l->sending = true;
    }
    /* a fixed count (--messages, max mode): split over the loops; each loop
     * ends once its share is sent, acked and delivered */
    bool fixed = g_opt.messages > 0 && rate <= 0;
    for (int t = 0; fixed && t < f->n_loops; t++)
        f->loops[t].send_limit = (uint64_t)g_opt.messages / (uint64_t)f->n_loops +
                                 ((uint64_t)t < (uint64_t)g_opt.messages % (uint64_t)f->n_loops);
    g_fanout = fanout;
    fleet_reset_counters(f);
    uint64_t start = now_ns();
    run_loops(f->loops, f->n_loops, "load", fixed ? fixed_done : NULL, seconds + 0.02);
    double elapsed = (double)(now_ns() - start) / 1e9 - 0.02;
    out->seconds = elapsed;
    out->sent = LOOPS_SUM(f->loops, f->n_loops, sent);
    out->acked = LOOPS_SUM(f->loops, f->n_loops, acked);
    out->delivered = LOOPS_SUM(f->loops, f->n_loops, delivered);
    out->receipts = LOOPS_SUM(f->loops, f->n_loops, receipts);
    out->echoes = LOOPS_SUM(f->loops, f->n_loops, echoes);
    /* let what is in flight land, so its latency is counted too (bounded) */
    for (int t = 0; t < f->n_loops; t++) f->loops[t].sending = false;
    g_drain = f;
    g_expect_deliveries = out->sent * fanout;
    run_loops(f->loops, f->n_loops, "drain", drained, 10.0);
    out->drained_acked = LOOPS_SUM(f->loops, f->n_loops, acked);
    out->drained_delivered = LOOPS_SUM(f->loops, f->n_loops, delivered);
    out->errors = LOOPS_SUM(f->loops, f->n_loops, errors);
    out->shed = LOOPS_SUM(f->loops, f->n_loops, shed);
    out->decrypt_errors = LOOPS_SUM(f->loops, f->n_loops, decrypt_errors);
    hist_init(&out->ack);
    hist_init(&out->deliv);
    for (int t = 0; t < f->n_loops; t++) {
        hist_merge(&out->ack, &f->loops[t].ack_lat);
        hist_merge(&out->deliv, &f->loops[t].deliv_lat);
    }
}
