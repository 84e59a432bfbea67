/* session_registry.c -- see session_registry.h. */
#include "cluster/session_registry.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/metrics.h"
#include "core/u64map.h"
#include "cluster/presence_bus.h"

/* Sessions refreshed by one pipelined call. A batch is sent once the one
 * before is answered, so what a refresh holds until its answer (the op,
 * its encoded command, the reply) is one batch's, whatever the number of
 * connections. Sent all at once, a round held ~1.1 KB per session at its
 * peak, which glibc kept as RSS (bench/RESULTS.md "Idle connections on a
 * cluster gateway (session 6)"). But a batch not answered within
 * BATCH_PATIENCE_MS is not waited for any longer than it takes to make room
 * under REFRESHES_IN_FLIGHT_MAX: while one master of three stalls, a third
 * of each batch waits for the client's timeout (2 s), and the refreshes on
 * the others must still go on: four batches a second, 4,096 refreshes in
 * flight at most (~4 MB), 20,000 sessions in ~20 s, each refreshed within
 * ~35 s at the default 45 s TTL. (Seen with kill -STOP at 6,000 sessions:
 * while one master was stopped, the Redis client, redis_cluster.c, failed
 * the refreshes on the other masters too; not looked into.) */
enum { HEARTBEAT_BATCH = 256, REFRESHES_IN_FLIGHT_MAX = 16 * HEARTBEAT_BATCH, BATCH_PATIENCE_MS = 250 };

typedef struct session {
    uint64_t user;
    uint32_t device;
    bool live;          /* Redis said the entry is written: the connection was told (live_fn) */
    uint64_t since_ms;
} session;

struct session_registry {
    registry_redis *rr;
    presence_bus *bus;         /* NULL: presence and typing stay on this node */
    session_live_fn live;      /* NULL: nothing to tell */
    void *live_ud;
    char node[RR_NODE_MAX];
    uint32_t ttl_ms;
    pthread_mutex_t mu;        /* table */
    u64map table;              /* conn_id + 1 -> session * (bounded by the connections) */
    pthread_cond_t cv;
    pthread_cond_t batch_cv;   /* a heartbeat batch was answered */
    size_t refreshes_in_flight; /* under mu: sent, not answered (<= REFRESHES_IN_FLIGHT_MAX but after a timeout) */
    bool stopping;
    pthread_t thread;
    atomic_uint_fast64_t write_failures, refused, heartbeat_gone, heartbeats, rewritten;
};

static void count_failures(session_registry *s, uint64_t n) {
    atomic_fetch_add(&s->write_failures, n);
    METRIC_ADD(cluster_session_write_failures_total, n);
}

/* The entry of conn_id is in Redis: the connection is told once (always
 * after a connect that applied; after a refresh only when no connect
 * answer said so: one that timed out may still have run). */
static void tell_live(session_registry *s, uint64_t conn_id, bool always) {
    pthread_mutex_lock(&s->mu);
    uint64_t *v = u64map_get(&s->table, conn_id + 1);
    session *x = v ? (session *)(uintptr_t)*v : NULL;
    bool tell = x && (always || !x->live);
    if (x) x->live = true;
    pthread_mutex_unlock(&s->mu);
    if (tell && s->live) s->live(s->live_ud, conn_id);
}

/* One connect's context until its answer (the connection to tell). */
typedef struct connect_ctx {
    session_registry *s;
    uint64_t conn_id;
} connect_ctx;

static void write_done(void *ud, int applied, const char *error) {
    connect_ctx *x = ud;
    session_registry *s = x->s;
    uint64_t conn_id = x->conn_id;
    free(x);
    if (error || applied < 0) count_failures(s, 1);
    else if (applied == 0) atomic_fetch_add(&s->refused, 1);
    else tell_live(s, conn_id, true);
}

/* A compare-and-set connect of rs; its answer goes to write_done. */
static void connect_session(session_registry *s, const rr_session *rs) {
    connect_ctx *x = malloc(sizeof *x);
    if (x) *x = (connect_ctx){s, rs->conn_id};
    if (!x || registry_redis_connect(s->rr, rs, write_done, x) != 0) {
        free(x);
        count_failures(s, 1);
    }
}

static void disconnect_done(void *ud, int applied, const char *error) {
    session_registry *s = ud;
    (void)applied;   /* 0: someone newer holds the entry, which is right */
    if (error) count_failures(s, 1);
}

static void on_added(void *ud, uint64_t user, const registry_entry *e) {
    session_registry *s = ud;
    session *x = malloc(sizeof *x);
    if (!x) {
        count_failures(s, 1);
        return;
    }
    x->user = user;
    x->device = e->device_id;
    x->live = false;
    x->since_ms = clock_wall_ms();
    pthread_mutex_lock(&s->mu);
    uint64_t old = 0;
    bool had = u64map_remove(&s->table, e->conn_id + 1, &old);
    int put = u64map_put(&s->table, e->conn_id + 1, (uint64_t)(uintptr_t)x);
    pthread_mutex_unlock(&s->mu);
    if (had) free((void *)(uintptr_t)old);
    if (put) {
        free(x);
        count_failures(s, 1);
        return;
    }
    if (!had) METRIC_ADD(cluster_sessions, 1);
    rr_session rs = {.user = user, .device = e->device_id, .conn_id = e->conn_id, .since_ms = x->since_ms,
                     .node = s->node};
    connect_session(s, &rs);
    /* after the write, on the same connection: a watcher's read sees it */
    if (s->bus) presence_bus_device_up(s->bus, user);
}

static void on_removed(void *ud, uint64_t user, const registry_entry *e) {
    session_registry *s = ud;
    uint64_t v = 0;
    pthread_mutex_lock(&s->mu);
    bool had = u64map_remove(&s->table, e->conn_id + 1, &v);
    pthread_mutex_unlock(&s->mu);
    if (!had) return;
    METRIC_ADD(cluster_sessions, -1);
    session *x = (session *)(uintptr_t)v;
    rr_session rs = {.user = user, .device = e->device_id, .conn_id = e->conn_id, .since_ms = x->since_ms,
                     .node = s->node};
    free(x);
    if (registry_redis_disconnect(s->rr, &rs, disconnect_done, s) != 0) count_failures(s, 1);
    if (s->bus) presence_bus_device_down(s->bus, user);
}

void session_registry_set_bus(session_registry *s, presence_bus *bus) { s->bus = bus; }

void session_registry_set_live(session_registry *s, session_live_fn live, void *ud) {
    s->live = live;
    s->live_ud = ud;
}

void session_registry_mirror(session_registry *s, registry_mirror *m) {
    m->added = on_added;
    m->removed = on_removed;
    m->ud = s;
}

/* One heartbeat batch, kept until its answer: when some of its entries are
 * gone (expired while Redis was away, or deleted), the batch's sessions
 * that are still open here are connected again. The connect is the
 * compare-and-set one: it restores an expired or missing entry and leaves
 * one that a newer connect of the device (on another node) replaced. */
typedef struct hb_batch {
    session_registry *s;
    size_t n;
    rr_session sessions[];
} hb_batch;

static void heartbeat_each(void *ud, size_t i, int result) {
    hb_batch *b = ud;
    if (result == 1) tell_live(b->s, b->sessions[i].conn_id, false);
}

static void heartbeat_done(void *ud, size_t refreshed, size_t gone, size_t failed) {
    hb_batch *b = ud;
    session_registry *s = b->s;
    (void)refreshed;
    atomic_fetch_add(&s->heartbeat_gone, gone);
    METRIC_ADD(cluster_sessions_gone_total, gone);
    count_failures(s, failed);
    for (size_t i = 0; gone && i < b->n; i++) {
        pthread_mutex_lock(&s->mu);
        bool open = u64map_get(&s->table, b->sessions[i].conn_id + 1) != NULL;
        pthread_mutex_unlock(&s->mu);
        /* a close between this check and the connect can leave an entry
         * nobody refreshes: it expires within the TTL, and a frame sent to
         * it meanwhile is dropped here (the device syncs when it returns) */
        if (!open) continue;
        atomic_fetch_add(&s->rewritten, 1);
        connect_session(s, &b->sessions[i]);
    }
    size_t n = b->n;
    free(b);
    pthread_mutex_lock(&s->mu);
    s->refreshes_in_flight -= n;
    pthread_cond_signal(&s->batch_cv);
    pthread_mutex_unlock(&s->mu);
}

static struct timespec deadline_in(uint64_t ms) {
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    uint64_t ns = (uint64_t)until.tv_nsec + ms * 1000000ull;
    until.tv_sec += (time_t)(ns / 1000000000ull);
    until.tv_nsec = (long)(ns % 1000000000ull);
    return until;
}

/* Under s->mu: waits until the batches sent are answered, or, after
 * BATCH_PATIENCE_MS, until another batch fits under
 * REFRESHES_IN_FLIGHT_MAX; that at most a TTL (the Redis client answers
 * every command by its deadline, far sooner). false when stopping or the
 * answers are that late (the round ends; the next one waits again first). */
static bool wait_room_for_batch(session_registry *s) {
    struct timespec patience = deadline_in(BATCH_PATIENCE_MS);
    while (s->refreshes_in_flight && !s->stopping)
        if (pthread_cond_timedwait(&s->batch_cv, &s->mu, &patience) == ETIMEDOUT) break;
    struct timespec until = deadline_in(s->ttl_ms);
    while (s->refreshes_in_flight + HEARTBEAT_BATCH > REFRESHES_IN_FLIGHT_MAX && !s->stopping)
        if (pthread_cond_timedwait(&s->batch_cv, &s->mu, &until) == ETIMEDOUT) break;
    return s->refreshes_in_flight + HEARTBEAT_BATCH <= REFRESHES_IN_FLIGHT_MAX && !s->stopping;
}

/* parley_cluster_session_refreshes_in_flight_peak: what a heartbeat holds
 * at once (REFRESHES_IN_FLIGHT_MAX at most), whatever the number of sessions. */
static void note_in_flight_peak(size_t now) {
    long peak = atomic_load(&g_metrics.cluster_session_refreshes_in_flight_peak);
    while ((long)now > peak &&
           !atomic_compare_exchange_weak(&g_metrics.cluster_session_refreshes_in_flight_peak, &peak, (long)now)) {
    }
}

/* One round: the table in batches of HEARTBEAT_BATCH, each copied under the
 * lock and sent after it, once the batch before is answered (or, past
 * BATCH_PATIENCE_MS, leaves room for it). */
static void heartbeat_round(session_registry *s) {
    size_t next = 0;
    for (;;) {
        hb_batch *b = malloc(sizeof *b + HEARTBEAT_BATCH * sizeof b->sessions[0]);
        if (!b) break;
        b->s = s;
        b->n = 0;
        pthread_mutex_lock(&s->mu);
        if (!wait_room_for_batch(s)) {
            pthread_mutex_unlock(&s->mu);
            free(b);
            break;
        }
        for (; next < s->table.cap && b->n < HEARTBEAT_BATCH; next++) {
            u64map_slot *slot = &s->table.slots[next];
            if (!slot->key) continue;
            const session *x = (const session *)(uintptr_t)slot->value;
            b->sessions[b->n++] = (rr_session){.user = x->user, .device = x->device, .conn_id = slot->key - 1,
                                               .since_ms = x->since_ms, .node = s->node};
        }
        bool more = next < s->table.cap;
        s->refreshes_in_flight += b->n;   /* heartbeat_done takes them back, also when called in the call */
        note_in_flight_peak(s->refreshes_in_flight);
        pthread_mutex_unlock(&s->mu);
        /* a table that grew between two batches is covered next round */
        size_t n = b->n;
        if (n == 0) free(b);
        else if (registry_redis_heartbeat_each(s->rr, b->sessions, n, heartbeat_each, heartbeat_done, b) != 0) {
            free(b);
            count_failures(s, n);
            pthread_mutex_lock(&s->mu);
            s->refreshes_in_flight -= n;
            pthread_mutex_unlock(&s->mu);
        }
        if (!more) {
            METRIC_INC(cluster_session_heartbeats_total);
            break;
        }
    }
    atomic_fetch_add(&s->heartbeats, 1);
}

static void *heartbeat_thread(void *arg) {
    session_registry *s = arg;
    pthread_mutex_lock(&s->mu);
    while (!s->stopping) {
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        uint64_t ns = (uint64_t)until.tv_nsec + (uint64_t)(s->ttl_ms / 3) * 1000000ull;
        until.tv_sec += (time_t)(ns / 1000000000ull);
        until.tv_nsec = (long)(ns % 1000000000ull);
        while (!s->stopping && pthread_cond_timedwait(&s->cv, &s->mu, &until) != ETIMEDOUT) {
        }
        if (s->stopping) break;
        pthread_mutex_unlock(&s->mu);
        heartbeat_round(s);
        pthread_mutex_lock(&s->mu);
    }
    pthread_mutex_unlock(&s->mu);
    return NULL;
}

session_registry *session_registry_start(registry_redis *rr, const char *node, uint32_t session_ttl_ms) {
    session_registry *s = calloc(1, sizeof *s);
    if (!s || strlen(node) >= sizeof s->node) {
        free(s);
        return NULL;
    }
    s->rr = rr;
    strcpy(s->node, node);
    s->ttl_ms = session_ttl_ms;
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    pthread_cond_init(&s->batch_cv, NULL);
    if (pthread_create(&s->thread, NULL, heartbeat_thread, s) != 0) {
        pthread_mutex_destroy(&s->mu);
        pthread_cond_destroy(&s->cv);
        pthread_cond_destroy(&s->batch_cv);
        free(s);
        return NULL;
    }
    return s;
}

void session_registry_stop(session_registry *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stopping = true;
    pthread_cond_signal(&s->cv);
    pthread_cond_signal(&s->batch_cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->thread, NULL);
}

void session_registry_free(session_registry *s) {
    if (!s) return;
    METRIC_ADD(cluster_sessions, -(long)s->table.count);
    for (size_t i = 0; i < s->table.cap; i++)
        if (s->table.slots[i].key) free((void *)(uintptr_t)s->table.slots[i].value);
    u64map_free(&s->table);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    pthread_cond_destroy(&s->batch_cv);
    free(s);
}

session_registry_stats session_registry_get_stats(session_registry *s) {
    pthread_mutex_lock(&s->mu);
    uint64_t live = s->table.count;
    pthread_mutex_unlock(&s->mu);
    session_registry_stats st = {
        .live = live,
        .write_failures = atomic_load(&s->write_failures),
        .refused = atomic_load(&s->refused),
        .heartbeat_gone = atomic_load(&s->heartbeat_gone),
        .heartbeats = atomic_load(&s->heartbeats),
        .rewritten = atomic_load(&s->rewritten),
    };
    return st;
}
