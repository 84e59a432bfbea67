/* store_batch_ops.h -- a store_batch is a list of writes kept until commit.
 *
 * The put functions of store.h do not know the store (they take only the
 * batch), so they cannot name a column family; and RocksDB's memtable
 * inserts run fastest when keys arrive in order. So writes are recorded
 * here, and turned into a RocksDB write batch at commit time: per column
 * family, in key order, and with every write a later write of the same key
 * in the same batch supersedes left out (a device's several cursor moves in
 * one group commit become one put). A range delete is a barrier: writes on
 * either side of it keep their side, so the batch means what its calls
 * said in the order they were made.
 *
 * The list itself is backend-neutral: store_batch_each (store_backend.h)
 * gives the writes in call order to any backend; batch_ops_build is the
 * RocksDB translation. */
#ifndef PARLEY_STORE_BATCH_OPS_H
#define PARLEY_STORE_BATCH_OPS_H

#include <rocksdb/c.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

enum batch_op_kind { BATCH_PUT, BATCH_DELETE, BATCH_DELETE_RANGE };

void batch_ops_put(store_batch *b, const uint8_t *k, size_t klen, const void *v, size_t vlen);
void batch_ops_delete(store_batch *b, const uint8_t *k, size_t klen);
/* deletes [from, to) */
void batch_ops_delete_range(store_batch *b, const uint8_t *from, size_t from_len, const uint8_t *to,
                            size_t to_len);

/* the column family of a key, by its first byte */
typedef rocksdb_column_family_handle_t *(*batch_cf_fn)(void *ud, uint8_t tag);

/* Fills wb (cleared first) from b's writes as described above. Returns the
 * number of writes left out as superseded. */
size_t batch_ops_build(const store_batch *b, rocksdb_writebatch_t *wb, batch_cf_fn cf, void *ud);
/* Forgets the writes (after a commit). */
void batch_ops_clear(store_batch *b);

#endif
