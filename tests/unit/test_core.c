/* test_core.c -- the server's data structures: u64map, buf, mpsc, blob. */
#include <pthread.h>
#include <string.h>

#include "../check.h"
#include "core/blob.h"
#include "core/buf.h"
#include "core/mpsc.h"
#include "core/u64map.h"

static void u64map_put_get_remove(void) {
    u64map m = {0};
    for (uint64_t k = 1; k <= 10000; k++) CHECK(u64map_put(&m, k, k * 3) == 0, "put %lu", k);
    CHECK(m.count == 10000, "count %zu", m.count);
    for (uint64_t k = 1; k <= 10000; k++) {
        uint64_t *v = u64map_get(&m, k);
        CHECK(v && *v == k * 3, "get %lu", k);
    }
    CHECK(u64map_get(&m, 10001) == NULL, "absent key found");
    /* remove every other key; the rest must stay reachable (backward shift) */
    for (uint64_t k = 2; k <= 10000; k += 2) CHECK(u64map_remove(&m, k, NULL), "remove %lu", k);
    for (uint64_t k = 1; k <= 10000; k++) {
        uint64_t *v = u64map_get(&m, k);
        if (k % 2) CHECK(v && *v == k * 3, "odd key %lu lost after removals", k);
        else CHECK(v == NULL, "removed key %lu still there", k);
    }
    CHECK(!u64map_remove(&m, 2, NULL), "removed twice");
    CHECK(u64map_put(&m, 0, 1) == -1, "key 0 is reserved");
    u64map_put(&m, 1, 99);
    CHECK(*u64map_get(&m, 1) == 99 && m.count == 5000, "overwrite");
    u64map_free(&m);
}

/* colliding keys: many keys in one probe run, removed from the middle */
static void u64map_collisions(void) {
    u64map m = {0};
    uint64_t keys[64];
    for (int i = 0; i < 64; i++) {
        keys[i] = (uint64_t)(i + 1) << 40;
        CHECK(u64map_put(&m, keys[i], (uint64_t)i) == 0, "put");
    }
    for (int i = 0; i < 64; i += 3) CHECK(u64map_remove(&m, keys[i], NULL), "remove");
    for (int i = 0; i < 64; i++) {
        uint64_t *v = u64map_get(&m, keys[i]);
        if (i % 3 == 0) CHECK(!v, "key %d still present", i);
        else CHECK(v && *v == (uint64_t)i, "key %d lost", i);
    }
    u64map_free(&m);
}

static void buf_grow_consume_release(void) {
    buf b = {0};
    for (int i = 0; i < 1000; i++) CHECK(buf_append(&b, "0123456789", 10) == 0, "append");
    CHECK(buf_len(&b) == 10000, "len %zu", buf_len(&b));
    buf_consume(&b, 9995);
    CHECK(buf_len(&b) == 5 && memcmp(buf_head(&b), "56789", 5) == 0, "head after consume");
    buf_consume(&b, 5);
    CHECK(b.m == NULL && buf_held(&b) == 0, "empty buffer keeps memory");
    buf_free(&b);
}

static mpsc q;
static void *producer(void *arg) {
    uintptr_t base = (uintptr_t)arg;
    for (uintptr_t i = 1; i <= 20000; i++) mpsc_push(&q, (void *)(base + i));
    return NULL;
}

/* 4 producers, one consumer, a small queue: every item arrives once, and
 * each producer's items arrive in order */
static void mpsc_many_producers(void) {
    CHECK(mpsc_init(&q, 64) == 0, "init");
    pthread_t t[4];
    for (uintptr_t i = 0; i < 4; i++) pthread_create(&t[i], NULL, producer, (void *)(i << 20));
    uintptr_t last[4] = {0};
    size_t total = 0;
    while (total < 80000) {
        void *items[32];
        size_t n = mpsc_pop_many(&q, items, 32);
        if (n == 0) mpsc_wait(&q, 1000);
        for (size_t i = 0; i < n; i++) {
            uintptr_t v = (uintptr_t)items[i];
            uintptr_t p = v >> 20, seq = v & 0xfffff;
            CHECK(p < 4 && seq == last[p] + 1, "producer %lu: %lu after %lu", p, seq, last[p]);
            last[p] = seq;
        }
        total += n;
    }
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    CHECK(mpsc_try_push(&q, (void *)1) == 0, "push after drain");
    mpsc_close(&q);
    CHECK(mpsc_push(&q, (void *)2) == -1, "push after close");
    mpsc_destroy(&q);
}

static void *batch_producer(void *arg) {
    uintptr_t base = (uintptr_t)arg;
    void *items[100];
    for (uintptr_t i = 0; i < 200; i++) {
        for (uintptr_t j = 0; j < 100; j++) items[j] = (void *)(base + i * 100 + j + 1);
        mpsc_push_many(&q, items, 100);
    }
    return NULL;
}

/* runs larger than the queue: every item arrives once, in order per producer */
static void mpsc_push_many_larger_than_queue(void) {
    CHECK(mpsc_init(&q, 32) == 0, "init");
    pthread_t t[2];
    for (uintptr_t i = 0; i < 2; i++) pthread_create(&t[i], NULL, batch_producer, (void *)(i << 20));
    uintptr_t last[2] = {0};
    size_t total = 0;
    while (total < 40000) {
        void *items[16];
        size_t n = mpsc_pop_many(&q, items, 16);
        if (n == 0) mpsc_wait(&q, 1000);
        for (size_t i = 0; i < n; i++) {
            uintptr_t v = (uintptr_t)items[i], p = v >> 20, seq = v & 0xfffff;
            CHECK(p < 2 && seq == last[p] + 1, "producer %lu: %lu after %lu", p, seq, last[p]);
            last[p] = seq;
        }
        total += n;
    }
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    mpsc_close(&q);
    void *one = (void *)1;
    CHECK(mpsc_push_many(&q, &one, 1) == 0, "push_many after close queued something");
    mpsc_destroy(&q);
}

static void blob_refcount(void) {
    blob *b = blob_new("abc", 3);
    CHECK(b && b->len == 3 && memcmp(b->data, "abc", 3) == 0, "new");
    blob_ref(b);
    blob_unref(b);
    CHECK(atomic_load(&b->refs) == 1, "refs %u", atomic_load(&b->refs));
    blob_unref(b);
}

int main(void) {
    RUN(u64map_put_get_remove);
    RUN(u64map_collisions);
    RUN(buf_grow_consume_release);
    RUN(mpsc_many_producers);
    RUN(mpsc_push_many_larger_than_queue);
    RUN(blob_refcount);
    CHECK_EXIT();
}
