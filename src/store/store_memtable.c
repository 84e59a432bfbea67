/* store_memtable.c -- see store_memtable.h. */
#include "store/store_memtable.h"

#include <stdio.h>

int store_memtable_hint_prefix(enum store_cf cf) {
    switch (cf) {
    case CF_MESSAGES: return 1 + 8;   /* 'M' conv | seq, 'S' conv */
    case CF_INBOX: return 1 + 8;      /* 'X' user | user_seq, 'H' user */
    case CF_MEMBERS: return 1 + 8 + 8; /* 'm' conv user | ['r'], 'v' user conv */
    case CF_CURSORS: return 1 + 8 + 4; /* 'r' user device */
    /* a device's client_msg_ids need not arrive in key order (parley-bench's
     * are little-endian counters, libparley's random), but they all land in
     * the device's own stretch of the list, next to its last one: the
     * insert climbs only as high as that stretch instead of from the top */
    case CF_DEDUPE: return 1 + 8 + 4; /* 'i' user device | len id */
    case CF_LOG: return 1 + 4;        /* 'L' partition | offset, 'f' partition */
    case CF_DEFAULT:
    case CF_COUNT:
        break;
    }
    return 0;
}

void store_memtable_tune_db(rocksdb_options_t *db) {
    /* hints are ignored by concurrent memtable writes; on this workload one
     * writer thread inserting with hints costs less CPU in all than several
     * inserting without */
    rocksdb_options_set_allow_concurrent_memtable_write(db, 0);
}

/* The log is trimmed by range deletions whose start key is in its hint
 * prefix's domain. RocksDB 7.8's MemTable::Add looked a hint up by prefix
 * alone, in one map for the point and the range-deletion skip lists, so a
 * range deletion would start from a point list's splice (Debian's debug
 * build asserted on it in test_store's log_checkpoint_and_trim). The
 * release library CMake links (10.10, scripts/rocksdb-release.sh; never
 * Debian's) uses hints for the point list only, so the log has one. */
int store_memtable_tune_cf(rocksdb_options_t **o, enum store_cf cf, char **err) {
    int prefix = store_memtable_hint_prefix(cf);
    if (prefix == 0) return 0;
    /* the C API has no setter for this option; its string form is stable
     * (the same name is in the OPTIONS file RocksDB writes) */
    char spec[96];
    snprintf(spec, sizeof spec, "memtable_insert_with_hint_prefix_extractor=rocksdb.FixedPrefix.%d", prefix);
    rocksdb_options_t *tuned = rocksdb_options_create();
    if (!tuned) return -1;
    rocksdb_get_options_from_string(*o, spec, tuned, err);
    if (*err) {
        rocksdb_options_destroy(tuned);
        return -1;
    }
    rocksdb_options_destroy(*o);
    *o = tuned;
    return 0;
}
