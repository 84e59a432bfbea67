/* store_rocksdb.h -- the embedded backend: a store on RocksDB in a local
 * directory (store_rocksdb.c), with group commit and fsync on sync. */
#ifndef PARLEY_STORE_ROCKSDB_H
#define PARLEY_STORE_ROCKSDB_H

#include "store/store_backend.h"

/* NULL with *err (free() it) when the directory does not open; see
 * store_open_ex in store.h for what opening refuses. */
store *store_rocksdb_open(const char *dir, const store_options *o, char **err);

#endif
