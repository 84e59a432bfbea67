#include "core/mpsc.h"

#include <errno.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <time.h>
#include <sys/eventfd.h>
#include <unistd.h>

int mpsc_init(mpsc *q, size_t cap) {
    q->items = calloc(cap, sizeof *q->items);
    if (!q->items) return -1;
    q->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (q->wake_fd < 0) { free(q->items); return -1; }
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->not_full, NULL);
    /* mpsc_pop_gather's deadline is on the monotonic clock */
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&q->gathered, &attr);
    pthread_condattr_destroy(&attr);
    q->gather_want = 0;
    q->cap = cap;
    q->head = q->count = 0;
    q->closed = false;
    q->consumer_busy = false;
    return 0;
}

void mpsc_destroy(mpsc *q) {
    close(q->wake_fd);
    free(q->items);
    pthread_mutex_destroy(&q->lock);
    pthread_cond_destroy(&q->not_full);
    pthread_cond_destroy(&q->gathered);
}

void mpsc_wake(mpsc *q) {
    uint64_t one = 1;
    /* EAGAIN means the counter is already non-zero: the consumer will wake */
    ssize_t r = write(q->wake_fd, &one, sizeof one);
    (void)r;
}

static int push(mpsc *q, void *item, bool block) {
    pthread_mutex_lock(&q->lock);
    while (block && !q->closed && q->count == q->cap)
        pthread_cond_wait(&q->not_full, &q->lock);
    if (q->closed || q->count == q->cap) {
        pthread_mutex_unlock(&q->lock);
        return -1;
    }
    q->items[(q->head + q->count) % q->cap] = item;
    /* only the push that makes the queue non-empty needs to wake, and only
     * if the consumer may be asleep (mpsc.h) */
    bool wake = q->count++ == 0 && !q->consumer_busy;
    if (q->gather_want && q->count == q->gather_want) pthread_cond_signal(&q->gathered);
    pthread_mutex_unlock(&q->lock);
    if (wake) mpsc_wake(q);
    return 0;
}

int mpsc_push(mpsc *q, void *item) { return push(q, item, true); }

size_t mpsc_push_many(mpsc *q, void *const *items, size_t n) {
    size_t done = 0;
    bool wake_needed = false;
    pthread_mutex_lock(&q->lock);
    while (done < n) {
        while (!q->closed && q->count == q->cap) {
            /* full: let the consumer run before waiting for room */
            if (wake_needed) {
                pthread_mutex_unlock(&q->lock);
                mpsc_wake(q);
                wake_needed = false;
                pthread_mutex_lock(&q->lock);
                continue;
            }
            pthread_cond_wait(&q->not_full, &q->lock);
        }
        if (q->closed) break;
        while (done < n && q->count < q->cap) {
            q->items[(q->head + q->count) % q->cap] = items[done++];
            if (q->count++ == 0 && !q->consumer_busy) wake_needed = true;
        }
        if (q->gather_want && q->count >= q->gather_want) pthread_cond_signal(&q->gathered);
    }
    pthread_mutex_unlock(&q->lock);
    if (wake_needed) mpsc_wake(q);
    return done;
}
int mpsc_try_push(mpsc *q, void *item) { return push(q, item, false); }

/* under q->lock: takes up to max items */
static size_t take_locked(mpsc *q, void **out, size_t max) {
    size_t n = q->count < max ? q->count : max;
    for (size_t i = 0; i < n; i++) out[i] = q->items[(q->head + i) % q->cap];
    q->head = (q->head + n) % q->cap;
    q->count -= n;
    /* items taken: the consumer will look again before it sleeps; none: it
     * saw the queue empty and may sleep next */
    q->consumer_busy = n > 0;
    if (n) pthread_cond_broadcast(&q->not_full);
    return n;
}

size_t mpsc_pop_many(mpsc *q, void **out, size_t max) {
    pthread_mutex_lock(&q->lock);
    size_t n = take_locked(q, out, max);
    pthread_mutex_unlock(&q->lock);
    return n;
}

size_t mpsc_pop_gather(mpsc *q, void **out, size_t max, size_t want, unsigned linger_us, bool *waited) {
    if (want > max) want = max;
    if (want > q->cap) want = q->cap;
    pthread_mutex_lock(&q->lock);
    /* only a busy consumer gathers: its last pop took items, so requests are
     * arriving faster than it finishes them. One that went idle (an empty
     * pop, mpsc_wait) takes a lone item at once: nothing is coming to wait
     * for, and a short sleep would only add a wake-up to that item. */
    bool wait = linger_us > 0 && q->consumer_busy && q->count > 0 && q->count < want && !q->closed;
    if (wait) {
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        uint64_t ns = (uint64_t)deadline.tv_nsec + (uint64_t)linger_us * 1000u;
        deadline.tv_sec += (time_t)(ns / 1000000000u);
        deadline.tv_nsec = (long)(ns % 1000000000u);
        q->consumer_busy = true;   /* it will look again: pushes need not write the eventfd */
        q->gather_want = want;
        /* bounded: the deadline ends it (spurious wake-ups only loop until then) */
        while (q->count < want && !q->closed &&
               pthread_cond_timedwait(&q->gathered, &q->lock, &deadline) != ETIMEDOUT) {}
        q->gather_want = 0;
    }
    if (waited) *waited = wait;
    size_t n = take_locked(q, out, max);
    pthread_mutex_unlock(&q->lock);
    return n;
}

void mpsc_drain_wakeup(mpsc *q) {
    uint64_t v;
    ssize_t r = read(q->wake_fd, &v, sizeof v);
    (void)r;
}

void mpsc_wait(mpsc *q, int timeout_ms) {
    pthread_mutex_lock(&q->lock);
    bool ready = q->count > 0 || q->closed;
    if (!ready) q->consumer_busy = false;   /* from here a push wakes it */
    pthread_mutex_unlock(&q->lock);
    if (!ready) {
        struct pollfd p = {.fd = q->wake_fd, .events = POLLIN};
        while (poll(&p, 1, timeout_ms) < 0 && errno == EINTR) {}
    }
    mpsc_drain_wakeup(q);
}

bool mpsc_prepare_sleep(mpsc *q) {
    pthread_mutex_lock(&q->lock);
    bool empty = q->count == 0;
    if (empty) q->consumer_busy = false;   /* from here a push wakes it */
    pthread_mutex_unlock(&q->lock);
    return empty;
}

void mpsc_close(mpsc *q) {
    pthread_mutex_lock(&q->lock);
    q->closed = true;
    pthread_cond_broadcast(&q->not_full);
    pthread_cond_signal(&q->gathered);
    pthread_mutex_unlock(&q->lock);
    mpsc_wake(q);
}

size_t mpsc_depth(mpsc *q) {
    pthread_mutex_lock(&q->lock);
    size_t n = q->count;
    pthread_mutex_unlock(&q->lock);
    return n;
}
