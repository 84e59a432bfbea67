/* mpsc.h -- a bounded multi-producer single-consumer queue of pointers,
 * the only way work crosses threads. The consumer is woken through an
 * eventfd it can put in its epoll set (or block on with mpsc_wait).
 *
 * Bounded: mpsc_push blocks while the queue is full (backpressure onto the
 * producer, which is never a loop thread waiting on its own queue);
 * mpsc_try_push fails instead. */
#ifndef PARLEY_CORE_MPSC_H
#define PARLEY_CORE_MPSC_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct mpsc {
    pthread_mutex_t lock;
    pthread_cond_t not_full;
    void **items;
    size_t cap, head, count;
    int wake_fd;           /* eventfd: readable when items were pushed */
    bool closed;
} mpsc;

int mpsc_init(mpsc *q, size_t cap);
void mpsc_destroy(mpsc *q);
/* 0, or -1 if the queue was closed. Blocks while full. */
int mpsc_push(mpsc *q, void *item);
/* 0, or -1 if full or closed. */
int mpsc_try_push(mpsc *q, void *item);
/* Pushes items[0..n) in order under one lock (blocking while full); returns
 * how many were queued (fewer only if the queue was closed). */
size_t mpsc_push_many(mpsc *q, void *const *items, size_t n);
/* Takes up to max items; returns how many. Never blocks. */
size_t mpsc_pop_many(mpsc *q, void **out, size_t max);
/* Blocks until an item is queued, the queue is closed or timeout_ms passes
 * (-1: no timeout). Clears the wake-up. */
void mpsc_wait(mpsc *q, int timeout_ms);
/* Wakes the consumer without pushing (e.g. it left items for its next turn,
 * or must look at a flag). */
void mpsc_wake(mpsc *q);
/* Clears the eventfd after an epoll wake-up. */
void mpsc_drain_wakeup(mpsc *q);
/* Wakes the consumer and makes further pushes fail. */
void mpsc_close(mpsc *q);
size_t mpsc_depth(mpsc *q);

#endif
