/* store_dir.h -- what a data directory holds before the store opens it.
 *
 * parley creates a store only in an absent or empty directory, and marks
 * every store it creates with a file of its own (PARLEY_STORE). A directory
 * that holds anything else is opened, never created over: a store with a
 * file missing (CURRENT, say) must not be mistaken for "no store yet", or
 * RocksDB writes a new, empty one beside the old files and later deletes
 * them as obsolete. */
#ifndef PARLEY_STORE_DIR_H
#define PARLEY_STORE_DIR_H

#include <stddef.h>

enum store_dir_state {
    STORE_DIR_ABSENT,        /* nothing there: a store may be created */
    STORE_DIR_EMPTY,         /* an empty directory (lost+found aside): likewise */
    STORE_DIR_MARKED,        /* parley's marker is there: open, never create */
    STORE_DIR_UNMARKED_DB,   /* a RocksDB CURRENT file but no marker: a store made
                                before markers existed; open, never create */
    STORE_DIR_FOREIGN,       /* anything else: refuse */
    STORE_DIR_ERROR,         /* cannot be read (or not a directory) */
};

/* Looks at dir; on STORE_DIR_ERROR, why holds the reason. */
enum store_dir_state store_dir_inspect(const char *dir, char *why, size_t why_cap);
/* Writes the marker durably (temporary file, fsync, rename, fsync of the
 * directory). 0, or -1 with the reason in why. */
int store_dir_mark(const char *dir, char *why, size_t why_cap);

#define STORE_DIR_MARKER "PARLEY_STORE"

#endif
