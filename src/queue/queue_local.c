/* queue_local.c -- the embedded queue: one bounded in-memory MPSC queue per
 * consumer. Each conversation partition has one producer (its writer) and
 * one consumer (partition mod consumers), and a consumer's queue keeps
 * every producer's order, so its consumer sees each of its conversations'
 * items in seq order. An item is published once, to that consumer only:
 * fan-out reads each message once (src/fanout/fanout.c). */
#include "queue/queue.h"

#include <stdlib.h>
#include <string.h>

#include "core/mpsc.h"

struct queue {
    uint32_t n;
    mpsc q[];
};

queue *queue_local_new(size_t capacity, uint32_t consumers) {
    if (consumers == 0) consumers = 1;
    queue *q = calloc(1, sizeof *q + consumers * sizeof q->q[0]);
    if (!q) return NULL;
    for (q->n = 0; q->n < consumers; q->n++)
        if (mpsc_init(&q->q[q->n], capacity)) {
            for (uint32_t i = 0; i < q->n; i++) mpsc_destroy(&q->q[i]);
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
    free(q);
}

static mpsc *consumer_of(queue *q, const queue_item *item) { return &q->q[item->partition % q->n]; }

int queue_publish(queue *q, queue_item *item) {
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

/* Each consumer's share of items[0..n), in order, with one lock per
 * consumer: a writer publishes a whole group commit at once. Where each
 * item goes is worked out before the first push: a pushed item may be
 * consumed and freed at once. */
int queue_publish_many(queue *q, queue_item **items, size_t n) {
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
