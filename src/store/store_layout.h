/* store_layout.h -- which column family holds which record, how each one
 * is tuned, and the one-time move of a store made before the families.
 *
 * Every key keeps its first byte (the record kind, listed in
 * store_rocksdb.c); the kind picks the family. Families group records by
 * how they are used:
 *   messages  'M' (conv, seq) and 'S' last seq   append-only, read by range
 *   inbox     'X' (user, user_seq) and 'H' head  append-only, read by range
 *   dedupe    'i' client_msg_id                 point lookups that mostly miss
 *   log       'L' fan-out log and 'f' checkpoint  appended, then range-deleted
 *   cursors   'r' device cursors                overwritten on every ack
 *   members   'm' member records and read marks, 'v' a user's conversations
 *   default   everything else (users, devices, keys, consent, counters, ...)
 * Retention's compaction filter runs on messages, inbox and dedupe. */
#ifndef PARLEY_STORE_LAYOUT_H
#define PARLEY_STORE_LAYOUT_H

#include <rocksdb/c.h>
#include <stdbool.h>
#include <stdint.h>

enum store_cf { CF_DEFAULT, CF_MESSAGES, CF_INBOX, CF_DEDUPE, CF_LOG, CF_CURSORS, CF_MEMBERS, CF_COUNT };

extern const char *const store_cf_names[CF_COUNT];

enum store_cf store_cf_of_tag(uint8_t tag);
/* the families retention removes records from */
bool store_cf_expires(enum store_cf cf);

/* Options of family cf: a copy of base (the DB options and what all
 * families share) tuned to the family's use; retention (may be NULL) is set
 * on the families that expire. Destroy with rocksdb_options_destroy. */
rocksdb_options_t *store_cf_options(rocksdb_options_t *base, enum store_cf cf,
                                    rocksdb_compactionfilter_t *retention);

/* The layout version recorded in the default family; a store without it
 * was made before the families (or its move was interrupted). */
enum { STORE_LAYOUT_VERSION = 2 };

/* Marks a new store as having the current layout. 0 or -1 with *err. */
int store_layout_mark(rocksdb_t *db, rocksdb_column_family_handle_t *const cf[CF_COUNT],
                      rocksdb_writeoptions_t *sync, char **err);

/* Moves every record of a store made before the families from the default
 * family into its own, then records the layout. Each step puts a chunk of
 * records into their families and deletes them from the default one in
 * one synced commit, so a crash at any point leaves every record in exactly
 * one place, and the next open carries on where this one stopped. A store
 * already in the current layout costs one read. 0 (with *moved) or -1 with
 * *err (free() it). */
int store_layout_migrate(rocksdb_t *db, rocksdb_column_family_handle_t *const cf[CF_COUNT],
                         rocksdb_writeoptions_t *sync, uint64_t *moved, char **err);

#endif
