/* queue_local.c -- the embedded queue: one bounded in-memory MPSC queue per
 * consumer. Each conversation partition has one producer (its writer) and
 * one consumer (partition mod consumers), and a consumer's queue keeps
 * every producer's order, so its consumer sees each of its conversations'
 * items in seq order. An item is published once, to that consumer only:
 * fan-out reads each message once (src/fanout/fanout.c). */
#include "queue/queue.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/mpsc.h"

/* conversation -> receivers, as fan-out last counted them: one 64-bit word
 * per slot (a tag from the conversation's hash and the count), so a read is
 * never torn; a collision only costs an estimate */
enum { HINT_SLOTS = 65536, HINT_COUNT_BITS = 20, ROOM_WAIT_MS = 50 };

struct queue {
    uint32_t n;
    /* the bound in deliveries (queue.h) */
    uint64_t deliveries_max;       /* 0: none */
    uint32_t unknown_weight;
    _Atomic uint64_t *hints;       /* [HINT_SLOTS], allocated with the bound */
    atomic_long pending;           /* reserved or counted, not yet routed */
    atomic_int waiters;
    pthread_mutex_t room_lock;
    pthread_cond_t room;
    mpsc q[];
};

/* process-wide copies for /metrics (one queue per server process) */
static atomic_long pending_shown, peak_shown, max_shown;
static atomic_ulong waits_total;

queue *queue_local_new(size_t capacity, uint32_t consumers) {
    if (consumers == 0) consumers = 1;
    queue *q = calloc(1, sizeof *q + consumers * sizeof q->q[0]);
    if (!q) return NULL;
    pthread_mutex_init(&q->room_lock, NULL);
    pthread_cond_init(&q->room, NULL);
    for (q->n = 0; q->n < consumers; q->n++)
        if (mpsc_init(&q->q[q->n], capacity)) {
            for (uint32_t i = 0; i < q->n; i++) mpsc_destroy(&q->q[i]);
            pthread_mutex_destroy(&q->room_lock);
            pthread_cond_destroy(&q->room);
            free(q);
            return NULL;
        }
    return q;
}

void queue_item_free(queue_item *item) {
    if (!item) return;
    blob_unref(item->message);
    free(item);
}

void queue_free(queue *q) {
    if (!q) return;
    queue_item *items[256];
    size_t n;
    for (uint32_t c = 0; c < q->n; c++) {
        while ((n = mpsc_pop_many(&q->q[c], (void **)items, 256)) > 0)
            for (size_t i = 0; i < n; i++) queue_item_free(items[i]);
        mpsc_destroy(&q->q[c]);
    }
    pthread_mutex_destroy(&q->room_lock);
    pthread_cond_destroy(&q->room);
    free(q->hints);
    free(q);
}

/* ------------------------------------------------ the bound in deliveries */

static uint64_t conv_hash(uint64_t conv) {
    uint64_t h = conv * 0x9E3779B97F4A7C15ull;
    return h ^ (h >> 31);
}

void queue_bound_deliveries(queue *q, uint64_t max, uint32_t unknown_weight) {
    if (max && !q->hints && !(q->hints = calloc(HINT_SLOTS, sizeof *q->hints))) abort();
    q->deliveries_max = max;
    q->unknown_weight = unknown_weight ? unknown_weight : 1;
    atomic_store(&max_shown, (long)max);
}

static void show_pending(long now) {
    atomic_store(&pending_shown, now);
    long peak = atomic_load(&peak_shown);
    while (now > peak && !atomic_compare_exchange_weak(&peak_shown, &peak, now)) {}
}

/* the reservation of a message of conv: its last count, capped at the bound */
static uint32_t weight_of(const queue *q, uint64_t conv) {
    uint64_t h = conv_hash(conv);
    uint64_t word = atomic_load_explicit(&q->hints[h % HINT_SLOTS], memory_order_relaxed);
    uint64_t w = word && word >> HINT_COUNT_BITS == h >> HINT_COUNT_BITS ? word & ((1u << HINT_COUNT_BITS) - 1)
                                                                       : q->unknown_weight;
    return (uint32_t)(w < q->deliveries_max ? w : q->deliveries_max);
}

/* Waits until want more deliveries fit under the bound (want is at most the
 * bound, so an empty pipeline always has room), then reserves them. Closed:
 * stops waiting (the push that follows refuses the items). */
static void reserve(queue *q, uint64_t want) {
    long max = (long)q->deliveries_max;
    long now = atomic_load(&q->pending);
    while (now + (long)want <= max || now == 0) {
        if (atomic_compare_exchange_weak(&q->pending, &now, now + (long)want)) {
            show_pending(now + (long)want);
            return;
        }
    }
    atomic_fetch_add(&waits_total, 1);
    pthread_mutex_lock(&q->room_lock);
    atomic_fetch_add(&q->waiters, 1);
    for (;;) {
        now = atomic_load(&q->pending);
        if ((now + (long)want <= max || now == 0) &&
            atomic_compare_exchange_strong(&q->pending, &now, now + (long)want))
            break;
        if (queue_closed(q)) break;
        /* woken by queue_deliveries_done; the timeout only guards a missed wake */
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += ROOM_WAIT_MS * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        int rc = pthread_cond_timedwait(&q->room, &q->room_lock, &until);
        if (rc != 0 && rc != ETIMEDOUT) break;
    }
    atomic_fetch_sub(&q->waiters, 1);
    pthread_mutex_unlock(&q->room_lock);
    show_pending(atomic_load(&q->pending));
}

void queue_deliveries_counted(queue *q, const queue_item *item, uint32_t receivers) {
    if (!q->deliveries_max) return;
    uint64_t h = conv_hash(item->conversation_id);
    uint32_t count = receivers < (1u << HINT_COUNT_BITS) ? receivers : (1u << HINT_COUNT_BITS) - 1;
    atomic_store_explicit(&q->hints[h % HINT_SLOTS], (h >> HINT_COUNT_BITS << HINT_COUNT_BITS) | count,
                          memory_order_relaxed);
    long delta = (long)receivers - (long)item->deliveries;
    if (delta > 0) show_pending(atomic_fetch_add(&q->pending, delta) + delta);
    else if (delta < 0) queue_deliveries_done(q, (uint64_t)-delta);
}

void queue_deliveries_done(queue *q, uint64_t n) {
    if (!q->deliveries_max || n == 0) return;
    atomic_store(&pending_shown, atomic_fetch_sub(&q->pending, (long)n) - (long)n);
    if (atomic_load(&q->waiters) > 0) {
        pthread_mutex_lock(&q->room_lock);
        pthread_cond_broadcast(&q->room);
        pthread_mutex_unlock(&q->room_lock);
    }
}

long queue_pending_deliveries(queue *q) { return atomic_load(&q->pending); }

size_t queue_metrics_render(char *out, size_t cap) {
    int n = snprintf(out, cap,
        "# HELP parley_fanout_pending_deliveries Deliveries (receivers x messages) published to fan-out and not yet routed.\n"
        "# TYPE parley_fanout_pending_deliveries gauge\nparley_fanout_pending_deliveries %ld\n"
        "# HELP parley_fanout_pending_deliveries_max The bound on them (--fanout-pending-max; 0: none).\n"
        "# TYPE parley_fanout_pending_deliveries_max gauge\nparley_fanout_pending_deliveries_max %ld\n"
        "# HELP parley_fanout_pending_deliveries_peak The highest pending deliveries since start.\n"
        "# TYPE parley_fanout_pending_deliveries_peak gauge\nparley_fanout_pending_deliveries_peak %ld\n"
        "# HELP parley_fanout_bound_waits_total Writer hand-offs that waited for fan-out to make room under the bound.\n"
        "# TYPE parley_fanout_bound_waits_total counter\nparley_fanout_bound_waits_total %lu\n",
        atomic_load(&pending_shown), atomic_load(&max_shown), atomic_load(&peak_shown), atomic_load(&waits_total));
    if (n < 0) return 0;
    return (size_t)n < cap ? (size_t)n : 0;
}

static mpsc *consumer_of(queue *q, const queue_item *item) { return &q->q[item->partition % q->n]; }

int queue_publish(queue *q, queue_item *item) {
    item->deliveries = 0;
    if (q->deliveries_max) reserve(q, item->deliveries = weight_of(q, item->conversation_id));
    if (mpsc_push(consumer_of(q, item), item)) {
        queue_item_free(item);
        return -1;
    }
    return 0;
}

/* pushes items[0..n) to consumer c; frees what a closed queue refused */
static int push_all(mpsc *m, queue_item **items, size_t n) {
    size_t done = mpsc_push_many(m, (void *const *)items, n);
    for (size_t i = done; i < n; i++) queue_item_free(items[i]);
    return done == n ? 0 : -1;
}

static int publish_fitting(queue *q, queue_item **items, size_t n);

/* Under a bound: items[0..n) in runs that fit under it, each run waiting
 * for its room, in order. */
int queue_publish_many(queue *q, queue_item **items, size_t n) {
    if (!q->deliveries_max) {
        for (size_t i = 0; i < n; i++) items[i]->deliveries = 0;
        return publish_fitting(q, items, n);
    }
    int rc = 0;
    for (size_t i = 0; i < n;) {
        uint64_t want = 0;
        size_t j = i;
        for (; j < n; j++) {
            uint32_t w = weight_of(q, items[j]->conversation_id);
            if (j > i && want + w > q->deliveries_max) break;
            items[j]->deliveries = w;
            want += w;
        }
        reserve(q, want);
        rc |= publish_fitting(q, items + i, j - i);
        i = j;
    }
    return rc;
}

/* Each consumer's share of items[0..n), in order, with one lock per
 * consumer: a writer publishes a whole group commit at once. Where each
 * item goes is worked out before the first push: a pushed item may be
 * consumed and freed at once. */
static int publish_fitting(queue *q, queue_item **items, size_t n) {
    if (n == 0) return 0;
    if (q->n == 1) return push_all(&q->q[0], items, n);
    queue_item **share = malloc(n * sizeof *share);
    uint32_t *to = malloc(n * sizeof *to);
    if (!share || !to) abort();   /* an acknowledged message must reach fan-out */
    for (size_t i = 0; i < n; i++) to[i] = items[i]->partition % q->n;
    int rc = 0;
    for (uint32_t c = 0; c < q->n; c++) {
        size_t k = 0;
        for (size_t i = 0; i < n; i++)
            if (to[i] == c) share[k++] = items[i];
        if (k) rc |= push_all(&q->q[c], share, k);
    }
    free(share);
    free(to);
    return rc;
}

int queue_wake_fd(queue *q, uint32_t consumer) { return q->q[consumer < q->n ? consumer : 0].wake_fd; }

size_t queue_consume(queue *q, uint32_t consumer, queue_item **out, size_t max, int timeout_ms) {
    mpsc *m = &q->q[consumer < q->n ? consumer : 0];
    size_t n = mpsc_pop_many(m, (void **)out, max);
    if (n) return n;
    mpsc_wait(m, timeout_ms);
    return mpsc_pop_many(m, (void **)out, max);
}

int queue_closed(queue *q) {
    return q->q[q->n - 1].closed;   /* closed last (queue_close): then all are */
}

void queue_close(queue *q) {
    for (uint32_t c = 0; c < q->n; c++) mpsc_close(&q->q[c]);
}

size_t queue_depth(queue *q) {
    size_t deepest = 0;
    for (uint32_t c = 0; c < q->n; c++) {
        size_t d = mpsc_depth(&q->q[c]);
        if (d > deepest) deepest = d;
    }
    return deepest;
}
