/* test_mpsc_gather.c -- mpsc_pop_gather (core/mpsc.h): a busy consumer
 * (its last pop took items) that finds a short queue waits, bounded, for
 * it to grow, and takes everything that arrived in one pop; the push that
 * brings the queue to the wanted count ends the wait; pushes during the
 * wait write no eventfd; it never waits on an empty queue, on one that
 * already holds enough, or after the consumer went idle. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <unistd.h>

#include "../check.h"
#include "core/clock.h"
#include "core/mpsc.h"

enum {
    WANT = 8,
    LONG_LINGER_US = 60u * 1000u * 1000u,  /* 60 s: a wait that ends before it was ended by a push */
    SHORT_LINGER_US = 20u * 1000u,         /* 20 ms: only the deadline can end it */
    WAIT_FOR_GATHER_MS = 30000,            /* the producer's bound on waiting for the gather to start */
};

/* eventfd writes since the last read (0: not readable) */
static uint64_t wakes(mpsc *q) {
    uint64_t v = 0;
    if (read(q->wake_fd, &v, sizeof v) != (ssize_t)sizeof v) return 0;
    return v;
}

static bool gathering(mpsc *q) {
    pthread_mutex_lock(&q->lock);
    bool g = q->gather_want != 0;
    pthread_mutex_unlock(&q->lock);
    return g;
}

struct producer {
    mpsc *q;
    int pushes;         /* items to push once the consumer gathers */
    bool close_instead; /* close the queue instead of pushing */
    atomic_bool saw_gather;
};

/* Waits (bounded) until the consumer is inside mpsc_pop_gather, then
 * pushes one item at a time with a short pause between them (or closes). */
static void *producer_main(void *arg) {
    struct producer *p = arg;
    uint64_t start = clock_mono_ms();
    while (!gathering(p->q) && clock_mono_ms() - start < WAIT_FOR_GATHER_MS) usleep(1000);
    atomic_store(&p->saw_gather, gathering(p->q));
    if (p->close_instead) {
        mpsc_close(p->q);
        return NULL;
    }
    for (int i = 0; i < p->pushes; i++) {
        mpsc_push(p->q, (void *)(uintptr_t)(100 + i));
        usleep(500);
    }
    return NULL;
}

/* One thread: the cases where it must not wait, and the deadline. */
static void mpsc_gather_waits_only_for_a_short_queue(void) {
    mpsc q;
    CHECK(mpsc_init(&q, 64) == 0, "init");
    void *out[64];
    bool waited = true;
    CHECK(mpsc_pop_gather(&q, out, 64, WANT, LONG_LINGER_US, &waited) == 0, "an empty queue gave items");
    CHECK(!waited, "it waited on an empty queue");
    /* idle (it saw the queue empty): a lone item is taken at once */
    mpsc_push(&q, (void *)1);
    CHECK(mpsc_pop_gather(&q, out, 64, WANT, LONG_LINGER_US, &waited) == 1, "the lone item not taken");
    CHECK(!waited, "an idle consumer waited for more (a lone item delayed)");
    /* mpsc_wait also makes it idle */
    CHECK(mpsc_pop_many(&q, out, 64) == 0, "pop of an empty queue");
    mpsc_push(&q, (void *)1);
    mpsc_wait(&q, 0);
    CHECK(mpsc_pop_gather(&q, out, 64, WANT, LONG_LINGER_US, &waited) == 1, "the item not taken");
    CHECK(!waited, "a consumer woken from mpsc_wait waited for more");
    /* busy from here (its last pop took items) */
    for (uintptr_t i = 1; i <= WANT; i++) mpsc_push(&q, (void *)i);
    CHECK(mpsc_pop_gather(&q, out, 64, WANT, LONG_LINGER_US, &waited) == WANT, "a full want not taken at once");
    CHECK(!waited, "it waited although the queue held the wanted count");
    /* a short queue and nobody pushing: the deadline ends the wait, and
     * what was queued is taken, in order */
    for (uintptr_t i = 1; i <= 3; i++) mpsc_push(&q, (void *)i);
    CHECK(mpsc_pop_gather(&q, out, 64, WANT, SHORT_LINGER_US, &waited) == 3, "the short queue not taken");
    CHECK(waited, "it did not wait on a short queue");
    CHECK(out[0] == (void *)1 && out[1] == (void *)2 && out[2] == (void *)3, "out of order");
    /* max below want: the wanted count is at most what it may take */
    for (uintptr_t i = 1; i <= 4; i++) mpsc_push(&q, (void *)i);
    CHECK(mpsc_pop_gather(&q, out, 4, WANT, LONG_LINGER_US, &waited) == 4, "max items not taken");
    CHECK(!waited, "it waited for more than it may take");
    mpsc_destroy(&q);
}

/* Two threads, the consumer busy: items pushed while it gathers come in
 * the same pop; the WANT-th push ends the wait long before its 60 s linger; those
 * pushes wrote no eventfd (the consumer is busy). */
static void mpsc_gather_takes_what_arrives_during_the_wait(void) {
    mpsc q;
    CHECK(mpsc_init(&q, 64) == 0, "init");
    void *first[1];
    mpsc_push(&q, (void *)7);
    CHECK(mpsc_pop_many(&q, first, 1) == 1, "pop");   /* busy: items keep coming */
    mpsc_push(&q, (void *)1);
    wakes(&q);   /* the first push woke a consumer that may have slept */
    struct producer p = {.q = &q, .pushes = WANT - 1};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, producer_main, &p) == 0, "thread");
    void *out[64];
    bool waited = false;
    uint64_t start = clock_mono_ms();
    size_t n = mpsc_pop_gather(&q, out, 64, WANT, LONG_LINGER_US, &waited);
    uint64_t took_ms = clock_mono_ms() - start;
    pthread_join(t, NULL);
    CHECK(atomic_load(&p.saw_gather), "the consumer never gathered");
    CHECK(waited, "it did not wait");
    CHECK(n == WANT, "one pop took %zu items, want %d (the pushes during the wait)", n, WANT);
    for (size_t i = 1; i < n; i++) CHECK(out[i] == (void *)(uintptr_t)(100 + i - 1), "item %zu out of order", i);
    CHECK(took_ms < LONG_LINGER_US / 1000u, "the wanted count did not end the wait (%llu ms)",
          (unsigned long long)took_ms);
    CHECK(wakes(&q) == 0, "pushes to a gathering consumer wrote the eventfd");
    mpsc_destroy(&q);
}

/* A close ends a gather at once (a stopping writer is not held 60 s). */
static void mpsc_gather_ends_at_close(void) {
    mpsc q;
    CHECK(mpsc_init(&q, 64) == 0, "init");
    void *first[1];
    mpsc_push(&q, (void *)7);
    CHECK(mpsc_pop_many(&q, first, 1) == 1, "pop");   /* busy */
    mpsc_push(&q, (void *)1);
    struct producer p = {.q = &q, .close_instead = true};
    pthread_t t;
    CHECK(pthread_create(&t, NULL, producer_main, &p) == 0, "thread");
    void *out[64];
    bool waited = false;
    uint64_t start = clock_mono_ms();
    size_t n = mpsc_pop_gather(&q, out, 64, WANT, LONG_LINGER_US, &waited);
    uint64_t took_ms = clock_mono_ms() - start;
    pthread_join(t, NULL);
    CHECK(atomic_load(&p.saw_gather), "the consumer never gathered");
    CHECK(n == 1 && out[0] == (void *)1, "the queued item not taken at the close");
    CHECK(took_ms < LONG_LINGER_US / 1000u, "the close did not end the wait (%llu ms)", (unsigned long long)took_ms);
    mpsc_destroy(&q);
}

int main(void) {
    RUN(mpsc_gather_waits_only_for_a_short_queue);
    RUN(mpsc_gather_takes_what_arrives_during_the_wait);
    RUN(mpsc_gather_ends_at_close);
    CHECK_EXIT();
}
