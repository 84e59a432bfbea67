/* loop.c -- one epoll loop per thread over its own connections: bring-up
 * pacing, reconnects, heartbeats, the load schedule, periodic acks, and
 * the progress line printed while loops run. */
#include <arpa/inet.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

void conn_event(bloop *l, bconn *c, uint32_t events);

enum { EVENTS_PER_WAIT = 512, RBUF_BYTES = 1 << 20 };

uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int loop_init(bloop *l, int id, bconn **conns, uint32_t n) {
    memset(l, 0, sizeof *l);
    l->id = id;
    l->conns = conns;
    l->n = n;
    l->max_connecting = 256;
    l->epfd = epoll_create1(EPOLL_CLOEXEC);
    l->rcap = RBUF_BYTES;
    l->rbuf = malloc(l->rcap);
    l->rng = 0x9e3779b97f4a7c15ull ^ ((uint64_t)id << 32) ^ now_ns();
    for (int i = 0; i <= BENCH_MAX_SERVERS; i++) {
        if (i >= g_opt.n_servers && !(i == BENCH_REGISTER_SERVER && g_opt.register_server)) continue;
        l->server[i].sin_family = AF_INET;
        l->server[i].sin_port = htons((uint16_t)g_opt.ports[i]);
        inet_pton(AF_INET, g_opt.hosts[i], &l->server[i].sin_addr);
    }
    hist_init(&l->ack_lat);
    hist_init(&l->deliv_lat);
    return l->epfd >= 0 && l->rbuf ? 0 : -1;
}

void loop_free(bloop *l) {
    for (uint32_t i = 0; i < l->n; i++) conn_free_mem(l->conns[i]);
    free(l->conns);
    free(l->senders);
    free(l->back_at);
    free(l->rbuf);
    if (l->epfd >= 0) close(l->epfd);
}

/* Sends what the schedule says is due: in rate mode message k of this loop
 * goes at load_t0 + k * interval from sender k mod n_senders and carries its
 * intended time (so a stall shows in the latency instead of hiding it:
 * no coordinated omission); in max mode every sender keeps g_opt.window
 * sends in flight and stamps the real time. */
static void load_tick(bloop *l, uint64_t now) {
    if (!l->sending || l->n_senders == 0) return;
    if (now >= l->load_end) {
        l->sending = false;
        return;
    }
    if (l->load_interval_ns) {
        uint32_t budget = 4096;   /* bounded per turn; the rest goes next turn */
        while (budget-- && l->load_t0 + l->load_seq * l->load_interval_ns <= now) {
            bconn *c = l->senders[l->load_seq % l->n_senders];
            uint64_t due = l->load_t0 + l->load_seq * l->load_interval_ns;
            l->load_seq++;
            if (c->fd < 0 || !c->syncing || c->inflight >= 4096) continue;   /* counted as not sent */
            conn_send_message(l, c, due);
        }
        return;
    }
    for (uint32_t i = 0; i < l->n_senders; i++) {
        bconn *c = l->senders[i];
        if (c->fd < 0 || !c->syncing) continue;
        while (c->inflight < (uint32_t)g_opt.window) {
            if (l->send_limit && CNT_GET(l, sent) >= l->send_limit) return;
            conn_send_message(l, c, now_ns());
        }
    }
}

static uint64_t next_load_due(const bloop *l, uint64_t now) {
    if (!l->sending || !l->load_interval_ns) return now + 1000000;
    uint64_t due = l->load_t0 + l->load_seq * l->load_interval_ns;
    return due > now ? due : now;
}

/* every 100 ms: cumulative acks that did not reach ack_every or did not
 * find a send to ride on (ack_ride.h), heartbeats,
 * bring-up pacing and due reconnects */
static void housekeeping(bloop *l, uint64_t now) {
    uint64_t hb = (uint64_t)(g_opt.heartbeat * 1e9);
    for (uint32_t i = 0; i < l->n; i++) {
        bconn *c = l->conns[i];
        if (c->fd >= 0) {
            if (c->last_user_seq > c->acked_user_seq) conn_ack(l, c);
            if (hb && c->state == BC_SIGNED && now - c->last_ping >= hb) {
                /* spread the first pings over the interval */
                if (c->last_ping == 0) c->last_ping = now - (uint64_t)(c->index % 1000) * (hb / 1000);
                else {
                    conn_ping(l, c);
                    c->last_ping = now;
                }
            }
        } else if (c->reconnect_at && c->reconnect_at <= now && l->connecting < l->max_connecting) {
            conn_open(l, c);
        }
    }
}

static void bring_up(bloop *l) {
    uint32_t upto = l->connect_upto ? l->connect_upto : l->n;
    while (l->connect_next < upto && l->connecting < l->max_connecting) {
        bconn *c = l->conns[l->connect_next++];
        if (c->fd < 0) conn_open(l, c);
    }
}

void loop_run(bloop *l, bool (*done)(bloop *), uint64_t deadline) {
    struct epoll_event ev[EVENTS_PER_WAIT];
    uint64_t next_house = 0;
    for (;;) {
        uint64_t now = now_ns();
        if (atomic_load(&l->stop) || now >= deadline || (done && done(l))) break;
        bring_up(l);
        load_tick(l, now);
        if (now >= next_house) {
            housekeeping(l, now);
            next_house = now + 100000000ull;
        }
        loop_flush(l);
        uint64_t wake = next_load_due(l, now);
        if (wake > next_house) wake = next_house;
        if (wake > deadline) wake = deadline;
        uint64_t wait = wake > now ? wake - now : 0;
        struct timespec ts = {(time_t)(wait / 1000000000ull), (long)(wait % 1000000000ull)};
        int n = epoll_pwait2(l->epfd, ev, EVENTS_PER_WAIT, &ts, NULL);
        if (n < 0 && errno != EINTR) break;
        for (int i = 0; i < n; i++) conn_event(l, ev[i].data.ptr, ev[i].events);
    }
    loop_flush(l);
}

/* ---------------------------------------------------------- threads */

typedef struct loop_job {
    bloop *l;
    bool (*done)(bloop *);
    uint64_t deadline;
    atomic_bool finished;
} loop_job;

static void *loop_thread(void *arg) {
    loop_job *j = arg;
    loop_run(j->l, j->done, j->deadline);
    atomic_store(&j->finished, true);
    return NULL;
}

uint64_t loops_sum(bloop *loops, int n, size_t off) {
    uint64_t s = 0;
    for (int i = 0; i < n; i++)
        s += atomic_load_explicit((_Atomic uint64_t *)((char *)&loops[i].cnt + off),
                                  memory_order_relaxed);
    return s;
}

void run_loops(bloop *loops, int n, const char *label, bool (*done)(bloop *), double seconds) {
    loop_job *jobs = calloc((size_t)n, sizeof *jobs);
    pthread_t *t = calloc((size_t)n, sizeof *t);
    uint64_t start = now_ns();
    uint64_t deadline = start + (uint64_t)(seconds * 1e9);
    for (int i = 0; i < n; i++) {
        jobs[i].l = &loops[i];
        jobs[i].done = done;
        jobs[i].deadline = deadline;
        atomic_store(&loops[i].stop, false);
        pthread_create(&t[i], NULL, loop_thread, &jobs[i]);
    }
    uint64_t last_sent = 0, last_acked = 0, last_deliv = 0, last_ready = 0, last_t = start;
    for (;;) {
        bool all = true;
        for (int i = 0; i < n; i++) all = all && atomic_load(&jobs[i].finished);
        if (all) break;
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
        uint64_t now = now_ns();
        if (now - last_t < 1000000000ull) continue;
        double dt = (double)(now - last_t) / 1e9;
        uint64_t s = LOOPS_SUM(loops, n, sent), a = LOOPS_SUM(loops, n, acked);
        uint64_t d = LOOPS_SUM(loops, n, delivered), r = LOOPS_SUM(loops, n, ready);
        if (!g_opt.quiet)
            fprintf(stderr,
                    "\r[%s %5.1fs] ready %llu (+%.0f/s)  sent %.0f/s  acked %.0f/s  delivered %.0f/s  "
                    "shed %llu  errors %llu   ",
                    label, (double)(now - start) / 1e9, (unsigned long long)r,
                    (double)(r - last_ready) / dt, (double)(s - last_sent) / dt,
                    (double)(a - last_acked) / dt, (double)(d - last_deliv) / dt,
                    (unsigned long long)LOOPS_SUM(loops, n, shed),
                    (unsigned long long)LOOPS_SUM(loops, n, errors));
        last_sent = s, last_acked = a, last_deliv = d, last_ready = r, last_t = now;
    }
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
    if (!g_opt.quiet && now_ns() - start >= 1000000000ull) fprintf(stderr, "\n");
    for (int i = 0; i < n; i++)
        if (loops[i].last_error[0] && !g_opt.quiet)
            fprintf(stderr, "[%s] loop %d last error: %s\n", label, i, loops[i].last_error);
    free(jobs);
    free(t);
}
