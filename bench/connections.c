/* connections.c -- how many idle authenticated connections the server
 * holds, and what each costs it.
 *
 * Phase 1 registers N users (one short-lived connection each) and closes
 * them, so that the server's memory for N users in its store is already in
 * the baseline (the server is restarted in between when the bench runs it,
 * so that registration garbage kept by its allocator is not reused). Phase 2 opens N connections that sign in and start sync,
 * as real devices do, and holds them with WebSocket pings. The server's
 * RSS after phase 2 minus the baseline, over N, is what an idle
 * authenticated connection costs it in user space.
 *
 * One process holds at most RLIMIT_NOFILE sockets (hard limit 20,000 here,
 * which cannot be raised inside the sandbox); past that the work is split
 * over several worker processes, coordinated over pipes. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fleet.h"
#include "identities.h"

typedef struct phase_result {
    uint64_t registered, loaded, ready, shed, errors;   /* loaded: of registered, from --identities */
    double register_s, connect_s;
    long rss_before_kb, rss_after_kb;   /* this bench process */
} phase_result;

static long fd_budget(void) {
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    return (long)rl.rlim_cur - 64;   /* stdio, epoll, pipes */
}

/* whether the parent's byte is waiting on the pipe (not read) */
static bool parent_said_go(int from_parent) {
    struct pollfd p = {.fd = from_parent, .events = POLLIN};
    return poll(&p, 1, 0) > 0;
}

static int read_full(int fd, void *p, size_t n) {
    size_t got = 0;
    while (got < n) {
        ssize_t r = read(fd, (char *)p + got, n - got);
        if (r <= 0) {
            if (r < 0 && errno == EINTR) continue;
            return -1;
        }
        got += (size_t)r;
    }
    return 0;
}

static int write_full(int fd, const void *p, size_t n) {
    return write(fd, p, n) == (ssize_t)n ? 0 : -1;
}

/* --hook CMD at PHASE ("base": users registered, nothing connected;
 * "held": every connection held): measures servers the bench did not
 * start. Bounded by the hook itself; the connections are not pinged
 * meanwhile, so it should take seconds, not the server's idle timeout. */
static void run_hook(const char *phase) {
    if (!g_opt.hook) return;
    setenv("PARLEY_BENCH_PHASE", phase, 1);
    fflush(NULL);
    int rc = system(g_opt.hook);
    if (rc != 0) fprintf(stderr, "parley-bench: --hook at %s exited with status %d\n", phase, rc);
}

/* Phase 1 of one process: registers its slice's users (connections
 * [offset, offset + f->n) of all), or with --identities takes them from
 * the file when it has every one. *loaded says which. */
static uint64_t register_slice(fleet *f, uint64_t offset, int procs, bool *loaded) {
    *loaded = false;
    if (g_opt.identities && identities_load(g_opt.identities, offset, f) == 0) {
        *loaded = true;
        for (int k = 0; k < f->n_loops; k++) f->loops[k].count_auth = true;   /* as below */
        return f->n;
    }
    /* the chat node registers one user at a time (on Cassandra ~100/s
     * here): what waits there must stay under its sign-in timeout, so at
     * most ~256 registrations in flight over every loop and process */
    uint32_t per_loop = 256u / (uint32_t)(procs * f->n_loops);
    if (per_loop < 4) per_loop = 4;
    for (int k = 0; k < f->n_loops; k++) {
        f->loops[k].close_after_auth = true;
        f->loops[k].count_auth = true;
        f->loops[k].max_connecting = per_loop;
    }
    /* bounded, and long enough for a slice at that rate */
    uint64_t got = fleet_bring_up(f, true, false, 300.0 + f->n / 10.0, "register");
    fleet_close_all(f);
    for (int k = 0; k < f->n_loops; k++) {
        f->loops[k].close_after_auth = false;
        f->loops[k].max_connecting = 256;
        f->loops[k].connecting = 0;   /* every socket is closed */
        /* with --identities (servers on a shared, remote store) the
         * sign-ins are bounded the same way: 256 in flight per loop */
        f->loops[k].count_auth = g_opt.identities != NULL;
    }
    if (g_opt.identities && identities_save(g_opt.identities, offset, f))
        fprintf(stderr, "parley-bench: could not write the users to %s\n", g_opt.identities);
    return got;
}

/* where the slice of process p (of procs) starts among n connections */
static uint64_t slice_offset(long n, int procs, int p) {
    return (uint64_t)p * (uint64_t)(n / procs) + (uint64_t)(p < n % procs ? p : n % procs);
}

/* The work of one process over n connections; talks to the parent over
 * to_parent/from_parent (both -1 when it is the only process). */
static int run_slice(uint32_t n, uint64_t offset, int procs, int to_parent, int from_parent, phase_result *pr) {
    fleet f;
    if (fleet_init(&f, n, g_opt.threads)) return 1;
    uint64_t t = now_ns();
    bool loaded;
    pr->registered = register_slice(&f, offset, procs, &loaded);
    pr->loaded = loaded ? pr->registered : 0;
    pr->register_s = (double)(now_ns() - t) / 1e9;
    fleet_close_all(&f);
    char go = 0;
    if (to_parent >= 0 && g_opt.register_only) return write_full(to_parent, pr, sizeof *pr) ? 1 : 0;
    if (to_parent >= 0 && (write_full(to_parent, pr, sizeof *pr) || read_full(from_parent, &go, 1)))
        return 1;
    if (to_parent < 0) {
        struct timespec ts = {1, 0};   /* let the server settle before the baseline */
        nanosleep(&ts, NULL);
    }
    pr->rss_before_kb = proc_rss_kb(getpid());
    t = now_ns();
    /* bounded; sign-ins through gateway nodes that read Cassandra ran at
     * ~300/s in all on this machine, so a slice of 19,000 of 190,000
     * needs longer than the 300 s that suit one local server */
    pr->ready = fleet_bring_up(&f, false, true, 300.0 + n / 20.0, "connect");
    pr->connect_s = (double)(now_ns() - t) / 1e9;
    pr->shed = LOOPS_SUM(f.loops, f.n_loops, shed);
    pr->errors = LOOPS_SUM(f.loops, f.n_loops, errors);
    for (uint32_t i = 0; i < n; i++) conn_trim(f.all[i]);
    /* hold, with heartbeats, for the set time */
    run_loops(f.loops, f.n_loops, "hold", NULL, g_opt.hold);
    pr->rss_after_kb = proc_rss_kb(getpid());
    if (to_parent >= 0) {
        if (write_full(to_parent, pr, sizeof *pr)) return 1;
        /* the parent waits for every slice and then measures the servers:
         * until it says go, keep pinging, or a gateway closes these
         * connections as idle (--idle-timeout, 60 s) while a slower slice
         * is still signing in (seen at 190,000 over 10 gateways: 17,100 of
         * each gateway's 19,000 closed) */
        while (!parent_said_go(from_parent)) run_loops(f.loops, f.n_loops, "wait", NULL, 1.0);
        if (read_full(from_parent, &go, 1)) return 1;
    }
    /* caller measures the server now (single process); the fleet stays up
     * until it returns here */
    if (to_parent < 0) return 0;
    fleet_close_all(&f);
    fleet_free(&f);
    return 0;
}

int scenario_connections(server_proc *s) {
    long n = g_opt.n, budget = fd_budget();
    int procs = g_opt.procs > 0 ? g_opt.procs : (int)((n + budget - 1) / budget);
    if (procs < 1) procs = 1;
    if (n > budget)
        fprintf(stderr,
                "parley-bench: %ld connections asked, but one process may open only %ld sockets "
                "(RLIMIT_NOFILE %ld); spreading over %d processes\n",
                n, budget, budget + 64, procs);
    if (s->pid > 0 && n > budget)
        fprintf(stderr,
                "parley-bench: note: the server is one process with the same limit, so it cannot "
                "hold more than about %ld; the rest will be refused\n", budget);
    long rss0 = s->pid > 0 ? proc_rss_kb(s->pid) : -1;
    phase_result total = {0};
    long bench_before = 0, bench_after = 0, server_base = -1, server_after = -1;
    double register_s = 0, connect_s = 0;
    long half_rss = -1;
    uint64_t half_n = 0;
    if (procs == 1) {
        phase_result pr = {0};
        /* the fleet must stay up while the server is measured, so run the
         * slice's phases here step by step */
        fleet f;
        if (fleet_init(&f, (uint32_t)n, g_opt.threads)) return 1;
        uint64_t t = now_ns();
        bool loaded;
        pr.registered = register_slice(&f, 0, 1, &loaded);
        pr.loaded = loaded ? pr.registered : 0;
        register_s = (double)(now_ns() - t) / 1e9;
        fleet_close_all(&f);
        if (g_opt.register_only) {
            total = pr;
            fleet_free(&f);
            goto report;
        }
        if (s->pid > 0) {
            /* restart the server so that the transient memory of registering
             * N users (freed, but kept by its allocator) is not reused by the
             * connections and hidden from the figure */
            server_stop(s, SIGTERM);
            if (server_restart(s)) return 1;
        }
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL);
        server_base = s->pid > 0 ? proc_rss_kb(s->pid) : -1;
        run_hook("base");
        bench_before = proc_rss_kb(getpid());
        t = now_ns();
        /* in two halves: memory the allocator kept from registration is
         * reused by the first half, so the second half shows what a
         * connection really adds */
        pr.ready = fleet_bring_up_part(&f, false, true, 300, "connect", 0, 0.5);
        run_loops(f.loops, f.n_loops, "settle", NULL, 1.0);
        half_rss = s->pid > 0 ? proc_rss_kb(s->pid) : -1;
        half_n = pr.ready;
        pr.ready += fleet_bring_up_part(&f, false, true, 300, "connect", 0.5, 1.0);
        connect_s = (double)(now_ns() - t) / 1e9 - 1.0;
        pr.shed = LOOPS_SUM(f.loops, f.n_loops, shed);
        pr.errors = LOOPS_SUM(f.loops, f.n_loops, errors);
        for (uint32_t i = 0; i < f.n; i++) conn_trim(f.all[i]);
        run_loops(f.loops, f.n_loops, "hold", NULL, g_opt.hold);
        server_after = s->pid > 0 ? proc_rss_kb(s->pid) : -1;
        run_hook("held");
        bench_after = proc_rss_kb(getpid());
        total = pr;
        fleet_close_all(&f);
        fleet_free(&f);
    } else {
        int up[64][2], down[64][2];
        pid_t kids[64];
        if (procs > 64) procs = 64;
        for (int p = 0; p < procs; p++) {
            long share = n / procs + (p < n % procs);
            if (pipe(up[p]) || pipe(down[p])) return 1;
            kids[p] = fork();
            if (kids[p] == 0) {
                g_opt.proc_index = p + 1;
                close(up[p][0]);
                close(down[p][1]);
                phase_result pr = {0};
                int rc = run_slice((uint32_t)share, slice_offset(n, procs, p), procs, up[p][1], down[p][0], &pr);
                _exit(rc);
            }
            close(up[p][1]);
            close(down[p][0]);
        }
        phase_result pr[64];
        for (int p = 0; p < procs; p++) {   /* all registered */
            if (read_full(up[p][0], &pr[p], sizeof pr[p])) return 1;
            total.registered += pr[p].registered;
            total.loaded += pr[p].loaded;
            if (pr[p].register_s > register_s) register_s = pr[p].register_s;
        }
        if (g_opt.register_only) {
            for (int p = 0; p < procs; p++) waitpid(kids[p], NULL, 0);
            goto report;
        }
        if (s->pid > 0) {   /* as above: a baseline without registration garbage */
            server_stop(s, SIGTERM);
            if (server_restart(s)) return 1;
        }
        struct timespec ts = {1, 0};
        nanosleep(&ts, NULL);
        server_base = s->pid > 0 ? proc_rss_kb(s->pid) : -1;
        run_hook("base");
        char go = 1;
        for (int p = 0; p < procs; p++) write_full(down[p][1], &go, 1);
        for (int p = 0; p < procs; p++) {   /* all connected and held */
            if (read_full(up[p][0], &pr[p], sizeof pr[p])) return 1;
            total.ready += pr[p].ready;
            total.shed += pr[p].shed;
            total.errors += pr[p].errors;
            if (pr[p].connect_s > connect_s) connect_s = pr[p].connect_s;
            bench_before += pr[p].rss_before_kb;
            bench_after += pr[p].rss_after_kb;
        }
        server_after = s->pid > 0 ? proc_rss_kb(s->pid) : -1;
        run_hook("held");
        for (int p = 0; p < procs; p++) {
            write_full(down[p][1], &go, 1);
            waitpid(kids[p], NULL, 0);
        }
    }
report:
    report_begin("connections");
    report_str("server_fsync", s->fsync, "server fsync policy");
    report_num("server_workers", s->workers, "", "server worker threads");
    report_num("asked", (double)n, "", "connections asked");
    report_num("bench_processes", procs, "", "bench processes");
    report_num("registered", (double)total.registered, "", "users registered (phase 1)");
    if (g_opt.identities)
        report_num("registered_from_file", (double)total.loaded, "", "of them taken from --identities");
    if (total.registered > total.loaded)
        report_num("register_rate", (double)(total.registered - total.loaded) / register_s, "/s", "register rate");
    if (g_opt.register_only) return 0;
    report_num("held", (double)total.ready, "", "connections held (signed in + syncing)");
    report_num("connect_rate", (double)total.ready / connect_s, "/s",
               "connect rate (TCP+upgrade+sign-in+sync)");
    report_num("shed", (double)total.shed, "", "shed (503/1013)");
    report_num("errors", (double)total.errors, "", "errors");
    report_num("hold_s", g_opt.hold, "s", "held for");
    if (server_after > 0) {
        report_num("server_rss_start_kb", (double)rss0, "KB", "server RSS at start");
        report_num("server_rss_base_kb", (double)server_base, "KB", "server RSS, users registered, no connections");
        report_num("server_rss_held_kb", (double)server_after, "KB", "server RSS holding the connections");
        if (half_rss > 0 && total.ready > half_n) {
            report_num("server_rss_half_kb", (double)half_rss, "KB", "server RSS holding the first half");
            report_num("server_bytes_per_conn_marginal",
                       (double)(server_after - half_rss) * 1024 / (double)(total.ready - half_n), "B",
                       "server bytes per idle connection (second half)");
        }
        if (total.ready)
            report_num("server_bytes_per_conn", (double)(server_after - server_base) * 1024 / (double)total.ready,
                       "B", "server user-space bytes per idle connection");
    } else {
        report_note("server started elsewhere: its RSS is not visible to the bench");
    }
    if (total.ready)
        report_num("bench_bytes_per_conn", (double)(bench_after - bench_before) * 1024 / (double)total.ready,
                   "B", "bench bytes per connection");
    report_note("kernel socket memory (both ends) is not in either RSS");
    return 0;
}
