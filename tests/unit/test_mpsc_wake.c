/* test_mpsc_wake.c -- the mpsc's coalesced wake-ups (core/mpsc.h): a push
 * writes the eventfd only when the consumer may be asleep, and no wake-up
 * is ever lost. The eventfd is a counter, so the value read back is the
 * number of writes since the last read. */
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "../check.h"
#include "core/clock.h"
#include "core/mpsc.h"

/* eventfd writes since the last read (0: not readable) */
static uint64_t wakes(mpsc *q) {
    uint64_t v = 0;
    if (read(q->wake_fd, &v, sizeof v) != (ssize_t)sizeof v) return 0;
    return v;
}

/* One thread, every step checked: a burst to a sleeping consumer is one
 * write, to a busy one none; each way the consumer can say it may sleep
 * (a pop that takes nothing, mpsc_prepare_sleep, mpsc_wait) re-arms it. */
static void mpsc_wake_only_when_consumer_may_sleep(void) {
    mpsc q;
    CHECK(mpsc_init(&q, 256) == 0, "init");
    void *items[256];
    /* a fresh queue's consumer may be asleep: 100 posts, one write */
    for (uintptr_t i = 1; i <= 100; i++) CHECK(mpsc_push(&q, (void *)i) == 0, "push");
    CHECK(wakes(&q) == 1, "a burst to a sleeping consumer is one eventfd write");
    CHECK(mpsc_pop_many(&q, items, 256) == 100, "pop");
    /* it took items: busy until it sees the queue empty */
    for (uintptr_t i = 1; i <= 50; i++) CHECK(mpsc_push(&q, (void *)i) == 0, "push");
    void *run[10];
    for (int i = 0; i < 10; i++) run[i] = (void *)(uintptr_t)(i + 1);
    CHECK(mpsc_push_many(&q, run, 10) == 10, "push_many");
    CHECK(mpsc_try_push(&q, (void *)1) == 0, "try_push");
    CHECK(wakes(&q) == 0, "posts to a busy consumer wrote the eventfd");
    CHECK(mpsc_pop_many(&q, items, 256) == 61, "pop");
    /* about to sleep, but an item is waiting: no sleep, still busy */
    CHECK(mpsc_push(&q, (void *)1) == 0, "push");
    CHECK(!mpsc_prepare_sleep(&q), "prepare_sleep with an item waiting");
    CHECK(mpsc_push(&q, (void *)2) == 0, "push");
    CHECK(wakes(&q) == 0, "a consumer that may not sleep was woken");
    CHECK(mpsc_pop_many(&q, items, 256) == 2, "pop");
    /* empty: from now on the first post wakes it, once */
    CHECK(mpsc_prepare_sleep(&q), "prepare_sleep on an empty queue");
    CHECK(mpsc_push_many(&q, run, 10) == 10, "push_many");
    CHECK(mpsc_push(&q, (void *)1) == 0, "push");
    CHECK(wakes(&q) == 1, "a sleeping consumer got %s", "no single wake-up");
    CHECK(mpsc_pop_many(&q, items, 256) == 11, "pop");
    /* a pop that takes nothing re-arms it too */
    CHECK(mpsc_pop_many(&q, items, 256) == 0, "pop of an empty queue");
    CHECK(mpsc_push(&q, (void *)1) == 0, "push");
    CHECK(wakes(&q) == 1, "a push after an empty pop did not wake");
    CHECK(mpsc_pop_many(&q, items, 256) == 1, "pop");
    /* and so does mpsc_wait (timeout 0: looks, finds nothing, returns) */
    mpsc_wait(&q, 0);
    CHECK(mpsc_push(&q, (void *)1) == 0, "push");
    CHECK(wakes(&q) == 1, "a push after mpsc_wait did not wake");
    /* mpsc_wake always writes (a flag to look at, not an item) */
    CHECK(mpsc_pop_many(&q, items, 256) == 1, "pop");
    mpsc_wake(&q);
    CHECK(wakes(&q) == 1, "mpsc_wake to a busy consumer did not write");
    mpsc_destroy(&q);
}

/* ---------------------------------------------- producers vs a sleeper */

enum {
    PRODUCERS = 4,
    ROUNDS = 300,
    PER_ROUND = 40,             /* per producer per round */
    TOTAL = PRODUCERS * ROUNDS * PER_ROUND,
    SLEEP_MS = 5000,            /* a consumer asleep this long with items queued lost a wake-up */
    DEADLINE_MS = 180000,       /* the whole case, however loaded the machine */
};

static mpsc shared;
static pthread_mutex_t round_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t round_cond = PTHREAD_COND_INITIALIZER;
static size_t consumed;         /* under round_lock */
static atomic_bool give_up;

/* Each round the producers post a burst (single pushes, runs, try_push)
 * and wait until the consumer has taken everything, so it keeps going
 * back to sleep and every round's first post must wake it. */
static void *round_producer(void *arg) {
    uintptr_t p = (uintptr_t)arg;
    uintptr_t seq = 0;
    for (uintptr_t r = 0; r < ROUNDS && !atomic_load(&give_up); r++) {
        for (int i = 0; i < PER_ROUND;) {
            if (i % 3 == 0 && i + 4 <= PER_ROUND) {
                void *run[4];
                for (int j = 0; j < 4; j++) run[j] = (void *)(p << 32 | ++seq);
                mpsc_push_many(&shared, run, 4);
                i += 4;
            } else {
                void *item = (void *)(p << 32 | ++seq);
                if (i % 2) mpsc_push(&shared, item);
                else
                    while (mpsc_try_push(&shared, item) && !atomic_load(&give_up)) sched_yield();
                i++;
            }
        }
        size_t target = (size_t)(r + 1) * PRODUCERS * PER_ROUND;
        pthread_mutex_lock(&round_lock);
        while (consumed < target && !atomic_load(&give_up)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += 1;
            pthread_cond_timedwait(&round_cond, &round_lock, &ts);
        }
        pthread_mutex_unlock(&round_lock);
    }
    return NULL;
}

/* The consumer as a worker loop runs it (gateway/worker.c): pops in chunks
 * and stops at a short one, says it is about to sleep, waits in epoll on
 * the eventfd, reads the eventfd only when epoll reported it. Every item
 * arrives once and in each producer's order; a sleep that ends by timeout
 * with items queued and no eventfd write is a lost wake-up. */
static void mpsc_no_lost_wakeup_with_a_sleeping_consumer(void) {
    CHECK(mpsc_init(&shared, 64) == 0, "init");
    consumed = 0;
    atomic_store(&give_up, false);
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN};
    CHECK(ep >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, shared.wake_fd, &ev) == 0, "epoll");
    pthread_t t[PRODUCERS];
    for (uintptr_t i = 0; i < PRODUCERS; i++) pthread_create(&t[i], NULL, round_producer, (void *)(i + 1));
    uintptr_t last[PRODUCERS + 1] = {0};
    uint64_t start = clock_mono_ms(), sleeps = 0, woken = 0;
    size_t total = 0;
    const char *failure = NULL;
    while (total < TOTAL && !failure) {
        if (clock_mono_ms() - start > DEADLINE_MS) {
            failure = "deadline passed";
            break;
        }
        void *items[16];
        size_t n = 16;
        while (n == 16 && (n = mpsc_pop_many(&shared, items, 16)) > 0) {
            for (size_t i = 0; i < n; i++) {
                uintptr_t v = (uintptr_t)items[i], p = v >> 32, seq = v & 0xffffffffu;
                if (p < 1 || p > PRODUCERS || seq != last[p] + 1) {
                    failure = "out of order or foreign item";
                    break;
                }
                last[p] = seq;
            }
            total += n;
            pthread_mutex_lock(&round_lock);
            consumed = total;
            pthread_cond_broadcast(&round_cond);
            pthread_mutex_unlock(&round_lock);
        }
        if (failure || total == TOTAL) break;
        if (!mpsc_prepare_sleep(&shared)) continue;
        sleeps++;
        struct epoll_event got;
        int r = epoll_wait(ep, &got, 1, SLEEP_MS);
        if (r == 1) {
            woken++;
            mpsc_drain_wakeup(&shared);
        } else if (r == 0 && mpsc_depth(&shared) > 0) {
            /* the one benign case: the push landed and its write is on its
             * way (the producer writes right after unlocking) */
            struct pollfd pf = {.fd = shared.wake_fd, .events = POLLIN};
            if (poll(&pf, 1, 2000) != 1) failure = "asleep with items queued and no wake-up";
            else mpsc_drain_wakeup(&shared);
        }
    }
    atomic_store(&give_up, true);
    pthread_mutex_lock(&round_lock);
    pthread_cond_broadcast(&round_cond);
    pthread_mutex_unlock(&round_lock);
    /* a producer may still block in a full queue: take what it posts
     * (each gives up within a second of give_up; 60 s is generous) */
    bool joined = true;
    for (int i = 0; i < PRODUCERS; i++) {
        void *items[64];
        int tries = 0;
        while (pthread_tryjoin_np(t[i], NULL) != 0 && tries++ < 60000) {
            mpsc_pop_many(&shared, items, 64);
            usleep(1000);
        }
        if (tries > 60000) joined = false;
    }
    CHECK(joined, "a producer did not stop");
    close(ep);
    mpsc_destroy(&shared);
    check_note("mpsc_wake: %d items, %lu sleeps, %lu eventfd wake-ups", TOTAL, (unsigned long)sleeps,
               (unsigned long)woken);
    CHECK(!failure, "%s (%zu of %d items consumed)", failure, total, TOTAL);
    CHECK(total == TOTAL, "%zu of %d items consumed", total, TOTAL);
}

int main(void) {
    RUN(mpsc_wake_only_when_consumer_may_sleep);
    RUN(mpsc_no_lost_wakeup_with_a_sleeping_consumer);
    CHECK_EXIT();
}
