/* store_memtable.h -- how the memtables are tuned for parley's inserts.
 *
 * Profile (scripts/callgrind.sh --pairs 50): ~60 % of the server's
 * instructions were RocksDB skip-list inserts, ~14,600 instructions a key,
 * ~83 key compares each, because every insert searched the skip list from
 * its top. Most of parley's keys are appended just after a key of the same
 * prefix (a conversation's next seq, a user's next user_seq, a newer
 * version of a cursor or read marks, a partition's next fan-out log
 * offset) or near it (a device's next client_msg_id): a per-prefix insert
 * hint lets such an insert start from where the last one of its prefix
 * went. Hints are used only by non-concurrent memtable writes, so the DB
 * writes its memtables from one thread at a time (the write group's
 * leader). Neither
 * changes what is stored or how it is read: no format change. */
#ifndef PARLEY_STORE_MEMTABLE_H
#define PARLEY_STORE_MEMTABLE_H

#include <rocksdb/c.h>

#include "store/store_layout.h"

/* The DB-wide part: memtable writes by the group's leader alone. */
void store_memtable_tune_db(rocksdb_options_t *db);

/* Family cf's insert hint, set on its options *o (replaced by a tuned
 * copy). 0, or -1 with *err (free() it) if RocksDB refused the option. */
int store_memtable_tune_cf(rocksdb_options_t **o, enum store_cf cf, char **err);

/* The hint prefix length of family cf in bytes, 0 for none (for tests). */
int store_memtable_hint_prefix(enum store_cf cf);

#endif
