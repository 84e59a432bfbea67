/* store_thread.c -- see store_thread.h. */
#include "store/store_thread.h"

#include <pthread.h>
#include <stdlib.h>

/* The thread's batch: in a thread-local for the fast path, and in a
 * pthread key so that the key's destructor frees it when the thread exits. */
static __thread rocksdb_writebatch_t *kept;
static pthread_key_t kept_key;
static pthread_once_t kept_once = PTHREAD_ONCE_INIT;

static void free_at_exit(void *wb) { rocksdb_writebatch_destroy(wb); }

static void make_key(void) {
    if (pthread_key_create(&kept_key, free_at_exit) != 0) abort();
}

rocksdb_writebatch_t *store_thread_batch(void) {
    if (kept) return kept;
    pthread_once(&kept_once, make_key);
    kept = rocksdb_writebatch_create();
    if (!kept) return NULL;
    pthread_setspecific(kept_key, kept);
    /* set per thread; once is enough, and a thread's first batch comes once
     * (again only after a large batch was freed) */
    rocksdb_set_perf_level(rocksdb_disable);
    return kept;
}

void store_thread_batch_done(rocksdb_writebatch_t *wb) {
    size_t size = 0;
    rocksdb_writebatch_data(wb, &size);
    if (wb == kept && size <= STORE_THREAD_BATCH_KEEP) {
        rocksdb_writebatch_clear(wb);
        return;
    }
    if (wb == kept) store_thread_release();
    else rocksdb_writebatch_destroy(wb);
}

rocksdb_writebatch_t *store_thread_kept_batch(void) { return kept; }

void store_thread_release(void) {
    if (!kept) return;
    pthread_setspecific(kept_key, NULL);
    rocksdb_writebatch_destroy(kept);
    kept = NULL;
}
