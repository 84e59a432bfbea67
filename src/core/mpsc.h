/* mpsc.h -- a bounded multi-producer single-consumer queue of pointers,
 * the only way work crosses threads. The consumer is woken through an
 * eventfd it can put in its epoll set (or block on with mpsc_wait).
 *
 * Bounded: mpsc_push blocks while the queue is full (backpressure onto the
 * producer, which is never a loop thread waiting on its own queue);
 * mpsc_try_push fails instead.
 *
 * Wake-ups are coalesced: a push writes the eventfd only when it makes the
 * queue non-empty AND the consumer may be asleep. The consumer counts as
 * busy (will look at the queue again before it sleeps, so needs no wake-up)
 * from a pop that took items until it next sees the queue empty under the
 * lock: a pop that takes nothing, mpsc_wait, or mpsc_prepare_sleep. Every
 * consumer looks at the queue that way before it blocks on wake_fd, so a
 * burst of N posts to a busy consumer costs no eventfd write at all, and to
 * a sleeping one a single write and a single wake-up. The flag is read and
 * written only under the lock, which orders it against the items: a push
 * after the consumer's last look sees the flag clear; a push before it is
 * seen by that look. */
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
    bool consumer_busy;    /* the consumer took items and has not seen the queue
                              empty since: it needs no wake-up (under lock) */
    pthread_cond_t gathered;  /* a gathering consumer has its items (mpsc_pop_gather) */
    size_t gather_want;       /* while it gathers: the count that ends the wait; else 0 */
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
/* Takes up to max items; returns how many. Never blocks. Taking items marks
 * the consumer busy; taking none marks it as maybe asleep. */
size_t mpsc_pop_many(mpsc *q, void **out, size_t max);
/* Like mpsc_pop_many, but when the consumer is busy (its last pop took
 * items: it has not seen the queue empty since) and fewer than want items
 * (at least one) are queued, first waits up to linger_us for more: until
 * want are queued, the queue is closed, or the time passes. Then takes up
 * to max. It never waits on an empty queue (that is mpsc_wait's job), nor
 * after the consumer went idle, so a lone item after a quiet spell is not
 * delayed; it waits when items keep arriving while the consumer works
 * (a steady rate). For a consumer whose
 * cost is per pop (a commit, an fsync), so that a steady trickle of items
 * is taken a few at a time rather than one by one. The consumer stays busy
 * while it gathers, so pushes write no eventfd; only the push that brings
 * the count to want signals it (a condition variable), so a gather costs
 * at most one wake-up. *waited (may be NULL): whether it waited. */
size_t mpsc_pop_gather(mpsc *q, void **out, size_t max, size_t want, unsigned linger_us, bool *waited);
/* Blocks until an item is queued, the queue is closed or timeout_ms passes
 * (-1: no timeout). Clears the wake-up. */
void mpsc_wait(mpsc *q, int timeout_ms);
/* The consumer is about to block on wake_fd (in its own epoll_wait): true
 * if the queue is empty, and from now on a push wakes it; false if items
 * are waiting (it must not block; it stays busy). */
bool mpsc_prepare_sleep(mpsc *q);
/* Wakes the consumer without pushing (e.g. it left items for its next turn,
 * or must look at a flag). */
void mpsc_wake(mpsc *q);
/* Clears the eventfd after an epoll wake-up. */
void mpsc_drain_wakeup(mpsc *q);
/* Wakes the consumer and makes further pushes fail. */
void mpsc_close(mpsc *q);
size_t mpsc_depth(mpsc *q);

#endif
