/* test_store_writebatch.c -- a committing thread keeps its RocksDB
 * WriteBatch (store_thread.h): the same batch serves the thread's next
 * commit, cleared, so a commit to one store never carries the records of
 * the thread's previous commit (to the same or another store); a batch that
 * grew past STORE_THREAD_BATCH_KEEP is freed after its commit; and commits
 * from several threads, small and large, read back exactly. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "store/store.h"
#include "store/store_thread.h"

static store *open_in(char *d, size_t size) {
    snprintf(d, size, "/tmp/parley-writebatch-XXXXXX");
    if (!mkdtemp(d)) return NULL;
    char *err = NULL;
    store *s = store_open(d, 0, 0, &err);
    free(err);
    return s;
}

static void close_and_remove(store *s, const char *d) {
    if (s) store_close(s);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", d);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", d);
}

/* message (conv, seq) reads as body: 1; absent: 0; different: -1 */
static int message_is(store *s, uint64_t conv, uint64_t seq, const uint8_t *body, size_t len) {
    store_bytes v;
    int r = store_get_message(s, conv, seq, &v);
    if (r != 1) return r;
    int same = v.len == len && memcmp(v.data, body, len) == 0;
    store_bytes_free(&v);
    return same ? 1 : -1;
}

static int put_and_commit(store *s, uint64_t conv, uint64_t seq, const uint8_t *body, size_t len) {
    store_batch *b = store_batch_new();
    store_put_message(b, conv, seq, body, len);
    int r = store_commit(s, b, false);
    store_batch_free(b);
    return r;
}

static void a_batch_is_kept_and_reused(void) {
    char da[64], db[64];
    store *a = open_in(da, sizeof da), *b = open_in(db, sizeof db);
    int opened = a && b;
    rocksdb_writebatch_t *first = NULL, *second = NULL;
    int c1 = -1, c2 = -1, x_in_a = -1, x_in_b = -1, y_in_b = -1;
    if (opened) {
        c1 = put_and_commit(a, 1, 1, (const uint8_t *)"x", 1);
        first = store_thread_kept_batch();
        c2 = put_and_commit(b, 2, 1, (const uint8_t *)"y", 1);
        second = store_thread_kept_batch();
        x_in_a = message_is(a, 1, 1, (const uint8_t *)"x", 1);
        x_in_b = message_is(b, 1, 1, (const uint8_t *)"x", 1);
        y_in_b = message_is(b, 2, 1, (const uint8_t *)"y", 1);
    }
    close_and_remove(a, da);
    close_and_remove(b, db);
    CHECK(opened, "store_open");
    CHECK(c1 == 0 && c2 == 0, "a commit failed");
    CHECK(first != NULL, "no batch kept after a commit");
    CHECK(second == first, "the second commit used another batch (%p, then %p)", (void *)first, (void *)second);
    CHECK(x_in_a == 1 && y_in_b == 1, "a committed record does not read back");
    CHECK(x_in_b == 0, "the kept batch carried the first commit's record into the second store");
}

static void a_large_batch_is_freed(void) {
    char d[64];
    store *s = open_in(d, sizeof d);
    size_t len = 1 << 20;
    uint8_t *body = malloc(len);
    int ok = s && body;
    int big = -1, small = -1, reads = 1;
    rocksdb_writebatch_t *after_big = (rocksdb_writebatch_t *)1, *after_small = NULL;
    if (ok) {
        store_batch *b = store_batch_new();
        for (uint64_t seq = 1; seq <= 5; seq++) {   /* 5 MiB: over the 4 MiB kept */
            memset(body, (int)seq, len);
            store_put_message(b, 7, seq, body, len);
        }
        big = store_commit(s, b, false);
        store_batch_free(b);
        after_big = store_thread_kept_batch();
        small = put_and_commit(s, 8, 1, (const uint8_t *)"z", 1);
        after_small = store_thread_kept_batch();
        for (uint64_t seq = 1; seq <= 5; seq++) {
            memset(body, (int)seq, len);
            if (message_is(s, 7, seq, body, len) != 1) reads = 0;
        }
        if (message_is(s, 8, 1, (const uint8_t *)"z", 1) != 1) reads = 0;
    }
    free(body);
    close_and_remove(s, d);
    CHECK(ok, "store_open or malloc");
    CHECK(big == 0 && small == 0, "a commit failed");
    CHECK(after_big == NULL, "a batch of 5 MiB was kept after its commit");
    CHECK(after_small != NULL, "no batch kept after the next small commit");
    CHECK(reads, "a committed record does not read back");
}

enum { THREADS = 3, COMMITS = 200 };

struct writer { store *s; uint64_t conv; int failed; };

/* each commit: seq's record, and every 50th a batch over the kept size */
static void *write_many(void *arg) {
    struct writer *w = arg;
    static const size_t big = 600 << 10;
    uint8_t *body = malloc(big);
    if (!body) { w->failed = 1; return NULL; }
    for (uint64_t seq = 1; seq <= COMMITS && !w->failed; seq++) {
        store_batch *b = store_batch_new();
        size_t n = seq % 50 == 0 ? 8 : 1;
        for (size_t i = 0; i < n; i++) {
            memset(body, (int)(w->conv * 31 + seq + i), big);
            store_put_message(b, w->conv + i * 1000, seq, body, seq % 50 == 0 ? big : 16 + seq % 7);
        }
        w->failed = store_commit(w->s, b, seq % 2 == 0) != 0;
        store_batch_free(b);
    }
    free(body);
    return NULL;
}

static void commits_from_threads_read_back(void) {
    char d[64];
    store *s = open_in(d, sizeof d);
    CHECK(s, "store_open");
    struct writer w[THREADS];
    pthread_t t[THREADS];
    int started = 0;
    for (int i = 0; i < THREADS; i++) {
        w[i] = (struct writer){s, (uint64_t)i + 1, 0};
        if (pthread_create(&t[i], NULL, write_many, &w[i]) == 0) started++;
        else w[i].failed = 1;
    }
    for (int i = 0; i < started; i++) pthread_join(t[i], NULL);
    int failed = 0, wrong = 0;
    uint8_t *body = malloc(600 << 10);
    for (int i = 0; i < THREADS && body; i++) {
        failed |= w[i].failed;
        for (uint64_t seq = 1; seq <= COMMITS; seq++) {
            size_t n = seq % 50 == 0 ? 8 : 1, len = seq % 50 == 0 ? (size_t)600 << 10 : 16 + seq % 7;
            for (size_t j = 0; j < n; j++) {
                memset(body, (int)(w[i].conv * 31 + seq + j), len);
                if (message_is(s, w[i].conv + j * 1000, seq, body, len) != 1) wrong++;
            }
            /* nothing beyond what was written: the next seq of the batch's
             * conversations is absent until written */
        }
        if (message_is(s, w[i].conv, COMMITS + 1, body, 1) != 0) wrong++;
    }
    free(body);
    close_and_remove(s, d);
    CHECK(started == THREADS, "pthread_create");
    CHECK(!failed, "a commit failed");
    CHECK(wrong == 0, "%d records do not read back as written", wrong);
}

int main(void) {
    RUN(a_batch_is_kept_and_reused);
    RUN(a_large_batch_is_freed);
    RUN(commits_from_threads_read_back);
    store_thread_release();
    CHECK_EXIT();
}
