/* queue_local.c -- the embedded queue: one bounded in-memory MPSC queue.
 * The write path is its single producer today and fan-out its single
 * consumer, so one partition keeps per-conversation order trivially. */
#include "queue/queue.h"

#include <stdlib.h>

#include "core/mpsc.h"

struct queue {
    mpsc q;
};

queue *queue_local_new(size_t capacity) {
    queue *q = malloc(sizeof *q);
    if (!q) return NULL;
    if (mpsc_init(&q->q, capacity)) {
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
    while ((n = mpsc_pop_many(&q->q, (void **)items, 256)) > 0)
        for (size_t i = 0; i < n; i++) queue_item_free(items[i]);
    mpsc_destroy(&q->q);
    free(q);
}

int queue_publish(queue *q, queue_item *item) {
    if (mpsc_push(&q->q, item)) {
        queue_item_free(item);
        return -1;
    }
    return 0;
}

size_t queue_consume(queue *q, queue_item **out, size_t max, int timeout_ms) {
    size_t n = mpsc_pop_many(&q->q, (void **)out, max);
    if (n) return n;
    mpsc_wait(&q->q, timeout_ms);
    return mpsc_pop_many(&q->q, (void **)out, max);
}

int queue_closed(queue *q) {
    return q->q.closed;
}

void queue_close(queue *q) { mpsc_close(&q->q); }
size_t queue_depth(queue *q) { return mpsc_depth(&q->q); }
