/* scenarios.c -- direct, group, sync and reconnect, each built from the
 * fleet phases, each reporting through report.c. (connections, which may
 * span several processes, is in connections.c.) */
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench_e2e.h"
#include "fleet.h"

static void server_facts(const server_proc *s) {
    report_str("server_fsync", s->fsync, "server fsync policy");
    report_num("server_workers", s->workers, "", "server worker threads");
    if (s->pid > 0) report_num("server_threads_total", (double)proc_threads(s->pid), "",
                               "server threads in all (/proc)");
    report_num("bench_threads", g_opt.threads, "", "bench loops (threads)");
}

/* --e2e: how the figures were made, and what a run must show to be valid */
static void e2e_facts(const load_result *r) {
    if (!g_opt.e2e) return;   /* without --e2e the report is as it always was */
    report_str("e2e", "on", "end-to-end encryption (Sender Keys)");
    report_num("wire_body_bytes", (double)atomic_load(&g_e2e_wire_bytes), "B",
               "ciphertext per message (on the wire, in the store)");
    report_num("decrypt_errors", (double)r->decrypt_errors, "", "deliveries that did not decrypt");
    report_num("bench_rss_kb", (double)proc_rss_kb(getpid()), "kB", "bench RSS (sender-key states)");
    report_note("--e2e: sender keys handed over in-process at setup; key distribution is measured apart");
    if (r->decrypt_errors) g_e2e_run_invalid = true;
}

/* receivers: deliveries each acked message owes to other devices (1 in
 * direct, size-1 in group). The run is valid only when the deliveries after
 * the drain are exactly that many per acked message: scripts/bench.sh
 * prints no figure of a run that is not. */
static void load_figures(const load_result *r, double rate, bool receipts, uint64_t receivers) {
    report_num("offered_rate", rate, "msgs/s", rate > 0 ? "offered rate" : "offered rate (0 = max)");
    report_num("seconds", r->seconds, "s", "timed window");
    report_num("sent", (double)r->sent, "", "sends in window");
    report_num("acked_per_s", (double)r->acked / r->seconds, "msgs/s", "acknowledged sends/s");
    report_num("deliveries_per_s", (double)r->delivered / r->seconds, "msgs/s",
               "deliveries/s (to other members' devices)");
    report_num("echoes_per_s", (double)r->echoes / r->seconds, "msgs/s",
               "own messages pushed back to the sending device/s");
    if (receipts) report_num("receipts_per_s", (double)r->receipts / r->seconds, "/s", "delivery receipts/s");
    report_num("acked_total", (double)r->drained_acked, "", "acked after drain");
    report_num("delivered_total", (double)r->drained_delivered, "", "delivered after drain");
    report_num("receivers_per_msg", (double)receivers, "", "deliveries owed per acked message");
    report_num("deliveries_expected", (double)(r->drained_acked * receivers), "", "acked after drain x receivers");
    bool valid = r->drained_acked > 0 && r->drained_delivered == r->drained_acked * receivers &&
                 r->decrypt_errors == 0;
    report_str("valid", valid ? "true" : "false",
               g_opt.e2e ? "deliveries == acked x receivers, none undecryptable" : "deliveries == acked x receivers");
    report_num("errors", (double)r->errors, "", "errors");
    report_num("shed", (double)r->shed, "", "shed (503/1013/UNAVAILABLE)");
    report_hist("send_ack", &r->ack, "send->ack");
    report_hist("send_delivery", &r->deliv, "send->delivery");
}

/* ------------------------------------------------------------- direct */

static bool pair_sender(fleet *f, uint32_t i) {
    (void)f;
    return i % 2 == 0;
}

static bool pair_sends(uint32_t i) { return pair_sender(NULL, i); }

int scenario_direct(server_proc *s) {
    uint32_t n = (uint32_t)(g_opt.pairs * 2);
    fleet f;
    if (fleet_init(&f, n, g_opt.threads)) return 1;
    uint64_t up = fleet_bring_up(&f, true, false, 120, "register");
    if (up < n) fprintf(stderr, "parley-bench: only %llu of %u connections came up\n",
                        (unsigned long long)up, n);
    for (uint32_t i = 0; i + 1 < n; i += 2)
        conn_open_direct(fleet_loop_of(&f, i), f.all[i], f.all[i + 1]->user_id);
    fleet_wait_pending(&f, 60, "open direct");
    /* the receiver opens it too, which accepts the sender: otherwise it is a
     * message request and the server stops the sender after 20 messages */
    for (uint32_t i = 0; i + 1 < n; i += 2)
        conn_open_direct(fleet_loop_of(&f, i + 1), f.all[i + 1], f.all[i]->user_id);
    fleet_wait_pending(&f, 60, "accept direct");
    for (uint32_t i = 0; i + 1 < n; i += 2) f.all[i + 1]->conv = f.all[i]->conv;
    for (uint32_t i = 0; g_opt.e2e && i + 1 < n; i += 2)
        if (bench_e2e_distribute(&f.all[i], 2, pair_sends)) {
            fprintf(stderr, "parley-bench: --e2e: could not create the sender keys\n");
            fleet_close_all(&f);
            fleet_free(&f);
            return 1;
        }
    fleet_sync_all(&f, 60);
    load_result r;
    fleet_load(&f, pair_sender, g_opt.rate, g_opt.seconds, 1, &r);
    report_begin("direct");
    server_facts(s);
    report_num("pairs", (double)g_opt.pairs, "", "1:1 pairs (one sender each)");
    report_num("window", g_opt.window, "", "sends in flight per sender (max mode)");
    report_num("body_bytes", g_opt.body_bytes, "B", "message body");
    e2e_facts(&r);
    load_figures(&r, g_opt.rate, false, 1);
    report_plot(g_opt.plot_path, &r.ack, "send->ack", &r.deliv, "send->delivery");
    fleet_close_all(&f);
    fleet_free(&f);
    return 0;
}

/* -------------------------------------------------------------- group */

static bool group_sender(fleet *f, uint32_t i) {
    (void)f;
    long k = (long)(i % (uint32_t)g_opt.group_size);
    return g_opt.senders < 0 || k < g_opt.senders;
}

static bool group_sends(uint32_t i) { return group_sender(NULL, i); }

int scenario_group(server_proc *s) {
    uint32_t size = (uint32_t)g_opt.group_size, n = size * (uint32_t)g_opt.groups;
    fleet f;
    if (fleet_init(&f, n, g_opt.threads)) return 1;
    uint64_t up = fleet_bring_up(&f, true, false, 180, "register");
    if (up < n) fprintf(stderr, "parley-bench: only %llu of %u connections came up\n",
                        (unsigned long long)up, n);
    uint64_t *members = calloc(size, sizeof *members);
    for (uint32_t g = 0; g < (uint32_t)g_opt.groups; g++) {
        for (uint32_t k = 1; k < size; k++) members[k - 1] = f.all[g * size + k]->user_id;
        conn_create_group(fleet_loop_of(&f, g * size), f.all[g * size], members, size - 1);
    }
    free(members);
    fleet_wait_pending(&f, 60, "create groups");
    for (uint32_t i = 0; i < n; i++) f.all[i]->conv = f.all[i - i % size]->conv;
    for (uint32_t g = 0; g_opt.e2e && g < (uint32_t)g_opt.groups; g++)
        if (bench_e2e_distribute(&f.all[g * size], size, group_sends)) {
            fprintf(stderr, "parley-bench: --e2e: could not create the sender keys\n");
            fleet_close_all(&f);
            fleet_free(&f);
            return 1;
        }
    fleet_sync_all(&f, 60);
    /* the membership events of the new groups arrive first; let them settle */
    run_loops(f.loops, f.n_loops, "settle", NULL, 1.0);
    long senders = g_opt.senders < 0 ? (long)size : g_opt.senders;
    load_result r;
    fleet_load(&f, group_sender, g_opt.rate, g_opt.seconds, size - 1, &r);
    report_begin(strcmp(g_opt.scenario, "live") == 0 ? "live" : "group");
    server_facts(s);
    report_num("group_size", size, "", "members per group");
    report_num("groups", (double)g_opt.groups, "", "groups");
    report_num("senders_per_group", (double)senders, "", "senders per group");
    report_num("window", g_opt.window, "", "sends in flight per sender (max mode)");
    report_num("body_bytes", g_opt.body_bytes, "B", "message body");
    e2e_facts(&r);
    load_figures(&r, g_opt.rate, true, size - 1);
    report_note("every member's device receives every message, the sender's own included");
    report_plot(g_opt.plot_path, &r.deliv, "send->delivery", &r.ack, "send->ack");
    fleet_close_all(&f);
    fleet_free(&f);
    return 0;
}

/* --------------------------------------------------------------- sync */

static bool synced(bloop *l) {
    for (uint32_t i = 0; i < l->n; i++) {
        bconn *c = l->conns[i];
        if (c->index == 1 && (!c->sync_done || CNT_GET(l, delivered) < l->target)) return false;
    }
    return true;
}

int scenario_sync(server_proc *s) {
    fleet f;
    if (fleet_init(&f, 2, 1)) return 1;
    if (fleet_bring_up(&f, true, false, 30, "register") < 2) {
        fprintf(stderr, "parley-bench: could not register the two devices\n");
        fleet_free(&f);
        return 1;
    }
    bloop *l = &f.loops[0];
    conn_open_direct(l, f.all[0], f.all[1]->user_id);
    fleet_wait_pending(&f, 30, "open direct");
    conn_open_direct(l, f.all[1], f.all[0]->user_id);   /* accepts: no request bound */
    fleet_wait_pending(&f, 30, "accept direct");
    f.all[1]->conv = f.all[0]->conv;
    conn_shutdown(l, f.all[1]);   /* the receiver goes offline */
    /* the sender fills the backlog, g_opt.window sends in flight */
    l->send_limit = (uint64_t)g_opt.backlog;
    if (g_opt.window < 256) g_opt.window = 256;   /* filling is not what is measured */
    l->senders = calloc(1, sizeof *l->senders);
    l->senders[0] = f.all[0];
    f.all[0]->sends_load = true;
    l->n_senders = 1;
    f.all[0]->syncing = true;     /* may send: it has no need to receive */
    l->load_interval_ns = 0;
    l->load_end = UINT64_MAX;
    l->sending = true;
    fleet_reset_counters(&f);
    uint64_t t = now_ns();
    l->target = 0;
    run_loops(f.loops, 1, "backlog", NULL, 0.001);
    while (CNT_GET(l, acked) + CNT_GET(l, errors) < (uint64_t)g_opt.backlog && now_ns() - t < 300e9)
        run_loops(f.loops, 1, "backlog", NULL, 0.5);
    l->sending = false;
    double fill_s = (double)(now_ns() - t) / 1e9;
    uint64_t filled_n = CNT_GET(l, acked);
    /* the receiver comes back: sign in, StartSync from cursor 0 */
    fleet_reset_counters(&f);
    l->count_deliveries = false;
    l->auto_sync = true;
    l->register_new = false;
    l->target = filled_n;
    f.all[1]->acked_user_seq = f.all[1]->last_user_seq = 0;
    uint64_t t0 = now_ns();
    conn_open(l, f.all[1]);
    run_loops(f.loops, 1, "catch-up", synced, 300);
    double catch_s = (double)(now_ns() - t0) / 1e9;
    uint64_t got = CNT_GET(l, delivered);
    report_begin("sync");
    server_facts(s);
    report_num("backlog", (double)filled_n, "msgs", "backlog written while offline");
    report_num("fill_rate", (double)filled_n / fill_s, "msgs/s", "backlog write rate (1 sender)");
    report_num("caught_up", (double)got, "msgs", "events received on return");
    report_num("catch_up_s", catch_s, "s", "connect+sign-in+sync to SyncDone");
    report_num("catch_up_rate", (double)got / catch_s, "msgs/s", "catch-up rate");
    report_num("ack_every", g_opt.ack_every, "", "events per cumulative Ack");
    fleet_close_all(&f);
    fleet_free(&f);
    return 0;
}

/* ---------------------------------------------------------- reconnect */

typedef struct restart_job {
    server_proc *s;
    fleet *f;
    uint64_t killed_at, up_at;
    int rc;
} restart_job;

static void *restart_thread(void *arg) {
    restart_job *j = arg;
    struct timespec ts = {1, 0};
    nanosleep(&ts, NULL);
    bool kill9 = strcmp(g_opt.restart_mode, "kill") == 0;
    j->killed_at = now_ns();
    server_stop(j->s, kill9 ? SIGKILL : SIGTERM);
    j->rc = server_restart(j->s);
    j->up_at = now_ns();
    return NULL;
}

static bool reconnect_all_back(bloop *l) { return l->n_back >= l->n; }

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int scenario_reconnect(server_proc *s) {
    if (s->pid <= 0) {
        fprintf(stderr, "parley-bench: reconnect restarts the server, so the bench must start it "
                        "(leave out --server)\n");
        return 2;
    }
    uint32_t n = (uint32_t)g_opt.n;
    fleet f;
    if (fleet_init(&f, n, g_opt.threads)) return 1;
    uint64_t up = fleet_bring_up(&f, true, true, 180, "connect");
    fprintf(stderr, "parley-bench: %llu of %u connected and syncing\n", (unsigned long long)up, n);
    restart_job j = {.s = s, .f = &f};
    for (int t = 0; t < f.n_loops; t++) {
        bloop *l = &f.loops[t];
        memset(&l->cnt, 0, sizeof l->cnt);
        l->reconnect = true;
        l->target = l->n;
        free(l->back_at);
        l->back_at = calloc(l->n ? l->n : 1, sizeof *l->back_at);
        l->n_back = 0;
        l->reconnect_t0 = now_ns() + 1000000000ull;   /* the restart thread kills then */
    }
    pthread_t th;
    pthread_create(&th, NULL, restart_thread, &j);
    run_loops(f.loops, f.n_loops, "reconnect", NULL, 1.0);   /* until the kill */
    /* then until every connection is back (each loop stops when its own are) */
    run_loops(f.loops, f.n_loops, "reconnect", reconnect_all_back, 120);
    pthread_join(th, NULL);
    uint64_t *all = calloc(n ? n : 1, sizeof *all);
    uint32_t m = 0;
    for (int t = 0; t < f.n_loops; t++)
        for (uint32_t k = 0; k < f.loops[t].n_back; k++) all[m++] = f.loops[t].back_at[k];
    qsort(all, m, sizeof *all, cmp_u64);
    uint64_t kill_off = j.killed_at - f.loops[0].reconnect_t0;   /* ~0 */
    double down_s = (double)(j.up_at - j.killed_at) / 1e9;
    report_begin("reconnect");
    server_facts(s);
    report_str("restart_mode", g_opt.restart_mode, "server stopped by");
    report_num("connections", n, "", "connections before the restart");
    report_num("server_down_s", down_s, "s", "stop signal -> server healthy again");
    report_num("back", m, "", "connections back (signed in + syncing)");
    const double qs[] = {0.5, 0.99, 1.0};
    const char *names[] = {"t50_s", "t99_s", "t100_s"}, *labels[] = {
        "time until 50% back (from the stop signal)", "time until 99% back", "time until 100% back"};
    for (int i = 0; i < 3; i++) {
        uint64_t want = (uint64_t)(qs[i] * n + 0.5);
        if (want < 1) want = 1;
        double v = want <= m ? (double)(all[want - 1] - kill_off) / 1e9 : -1;
        report_num(names[i], v, "s", labels[i]);
    }
    report_num("shed", (double)LOOPS_SUM(f.loops, f.n_loops, shed), "", "shed (503 / 1013)");
    report_num("reconnect_errors", (double)LOOPS_SUM(f.loops, f.n_loops, errors), "",
               "failed attempts (refused while down, etc.)");
    /* reconnects per 250 ms after the server is up again */
    char shape[256] = "";
    size_t off = 0;
    uint64_t up_off = j.up_at > f.loops[0].reconnect_t0 ? j.up_at - f.loops[0].reconnect_t0 : 0;
    for (int b = 0; b < 16 && off < sizeof shape - 16; b++) {
        uint64_t lo = up_off + (uint64_t)b * 250000000ull, hi = lo + 250000000ull, cnt = 0;
        for (uint32_t k = 0; k < m; k++)
            if (all[k] >= lo && all[k] < hi) cnt++;
        off += (size_t)snprintf(shape + off, sizeof shape - off, "%s%llu", b ? " " : "",
                                (unsigned long long)cnt);
    }
    report_str("rate_shape", shape, "back per 250 ms after server up (first 4 s)");
    report_note("clients back off exponentially with full jitter (base 100 ms, cap 5 s), as libparley");
    free(all);
    fleet_close_all(&f);
    fleet_free(&f);
    return j.rc ? 1 : 0;
}

