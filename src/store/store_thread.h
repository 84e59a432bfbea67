/* store_thread.h -- what a committing thread keeps between its commits.
 *
 * Each commit to RocksDB goes through a rocksdb WriteBatch. The writer and
 * fan-out threads commit thousands of times a second, and creating and
 * destroying a batch each time costs an allocation of its buffer and of
 * the object, grown again by reallocations as the batch fills. Instead each
 * thread keeps one batch, cleared (its buffer kept) after every commit;
 * one that grew past STORE_THREAD_BATCH_KEEP (a commit of a large backlog)
 * is freed rather than hold that memory for the rest of the thread's life.
 *
 * RocksDB counts perf-context events (key compares, bytes read, ...) per
 * thread, on by default (its perf level kEnableCount); parley reads none of
 * them, so a thread turns them off when it takes its batch the first time.
 *
 * The batch belongs to the calling thread: freed at the thread's exit (or
 * by store_thread_release). Used by store_rocksdb.c's commit only. */
#ifndef PARLEY_STORE_THREAD_H
#define PARLEY_STORE_THREAD_H

#include <rocksdb/c.h>
#include <stddef.h>

/* a kept batch larger than this after its commit is freed */
enum { STORE_THREAD_BATCH_KEEP = 4 << 20 };

/* The calling thread's batch, empty; NULL only if out of memory. */
rocksdb_writebatch_t *store_thread_batch(void);

/* The commit of wb (from store_thread_batch) is over: cleared and kept, or
 * freed when it grew past STORE_THREAD_BATCH_KEEP. */
void store_thread_batch_done(rocksdb_writebatch_t *wb);

/* The calling thread's kept batch, NULL if it has none (for tests). */
rocksdb_writebatch_t *store_thread_kept_batch(void);

/* Frees the calling thread's batch now (thread exit does it too). */
void store_thread_release(void);

#endif
