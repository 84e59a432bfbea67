/* test_store_perf_counts.c -- RocksDB counts perf-context events per thread,
 * on by default; a thread that has committed through the store has turned
 * them off (store_thread.h), so its later reads count nothing. A thread
 * that never committed still counts: the check can see a count. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <rocksdb/c.h>

#include "../check.h"
#include "store/store.h"
#include "store/store_thread.h"

static store *st;

struct probe { int commit_first; int failed; uint64_t compares; };

/* reads a few messages with the perf context reset, on a new thread */
static void *read_and_count(void *arg) {
    struct probe *p = arg;
    if (p->commit_first) {
        store_batch *b = store_batch_new();
        store_put_message(b, 2, 1, (const uint8_t *)"b", 1);
        p->failed = store_commit(st, b, false) != 0;
        store_batch_free(b);
    }
    rocksdb_perfcontext_t *pc = rocksdb_perfcontext_create();
    rocksdb_perfcontext_reset(pc);
    for (uint64_t seq = 1; seq <= 20; seq++) {
        store_bytes v;
        if (store_get_message(st, 1, seq, &v) == 1) store_bytes_free(&v);
        else p->failed = 1;
    }
    p->compares = rocksdb_perfcontext_metric(pc, rocksdb_user_key_comparison_count);
    rocksdb_perfcontext_destroy(pc);
    return NULL;
}

static void committing_threads_count_nothing(void) {
    char d[64];
    snprintf(d, sizeof d, "/tmp/parley-perf-XXXXXX");
    CHECK(mkdtemp(d) != NULL, "mkdtemp");
    char *err = NULL;
    st = store_open(d, 0, 0, &err);
    free(err);
    CHECK(st, "store_open");
    store_batch *b = store_batch_new();
    for (uint64_t seq = 1; seq <= 20; seq++) store_put_message(b, 1, seq, (const uint8_t *)"a", 1);
    int committed = store_commit(st, b, false) == 0;
    store_batch_free(b);
    struct probe reader = {0, 0, 0}, committer = {1, 0, 0};
    pthread_t t;
    int ran = committed && pthread_create(&t, NULL, read_and_count, &reader) == 0;
    if (ran) pthread_join(t, NULL);
    ran = ran && pthread_create(&t, NULL, read_and_count, &committer) == 0;
    if (ran) pthread_join(t, NULL);
    store_close(st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", d);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", d);
    CHECK(committed && ran, "commit or pthread_create failed");
    CHECK(!reader.failed && !committer.failed, "a read or commit failed");
    CHECK(reader.compares > 0, "a thread that never committed counted no key compares: the check sees nothing");
    CHECK(committer.compares == 0, "a committing thread still counts perf events (%llu key compares)",
          (unsigned long long)committer.compares);
}

int main(void) {
    RUN(committing_threads_count_nothing);
    store_thread_release();
    CHECK_EXIT();
}
