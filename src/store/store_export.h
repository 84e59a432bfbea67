/* store_export.h -- every record of a store as one stream, and back: the
 * groundwork for moving a store from one backend to another (RocksDB to
 * Cassandra and back), used by `parley store export|import`.
 *
 * The stream is backend-neutral: it holds the records as store_scan_all
 * gives them (tagged key, value) and is written back with store_put_record,
 * so any backend reads and writes it through store.h alone.
 *
 *   "PARLEYSTORE\n" version(4)                       header, version 1
 *   'R' key_len(4) value_len(4) key value             one per record
 *   'E' count(8)                                      the end: how many 'R'
 *
 * Integers are big-endian. A stream without its end, or whose count does
 * not match, is refused: a cut-short copy never passes for a whole one. */
#ifndef PARLEY_STORE_EXPORT_H
#define PARLEY_STORE_EXPORT_H

#include <stdint.h>
#include <stdio.h>

#include "store/store.h"

enum {
    STORE_EXPORT_VERSION = 1,
    STORE_EXPORT_KEY_MAX = 1024,              /* bounds checked before reading a record */
    STORE_EXPORT_VALUE_MAX = 64 * 1024 * 1024,
};

/* Writes every record of s to out. 0 with *records, or -1 with *err
 * (free() it). */
int store_export(store *s, FILE *out, uint64_t *records, char **err);

/* Reads a stream into s, which must hold no record yet (an import never
 * mixes with what is there); commits as it goes and syncs at the end.
 * 0 with *records, or -1 with *err (free() it); on -1 the store may hold
 * part of the stream: import into a fresh directory and remove it on
 * failure. */
int store_import(store *s, FILE *in, uint64_t *records, char **err);

#endif
