/* catchup_read.h -- one page of a device's catch-up, read from the store.
 *
 * A lagging connection (it skipped live events, or a StartSync put it
 * behind) catches up from its user's inbox a page at a time: the entries
 * after the last user_seq it was sent and the stored messages they point
 * to; on the page that finds nothing left, also the receipts its first
 * SyncDone carries. On Cassandra each read is a network round trip (a
 * frozen node: the client's deadline, seconds), so there the page is a
 * job for the reader pool (gateway/store_reads.h) and comes back to the
 * connection's worker as a WM_INBOX_PAGE message; on RocksDB the worker
 * reads it itself (local reads). Either way the page is this one value,
 * built here and written to the socket by delivery.c, so both stores take
 * the same path through the worker.
 *
 * The page is self-contained (message bytes copied in), so it needs
 * nothing from the connection, which may have moved on or closed by the
 * time it arrives: the worker compares the ask it carries with the
 * connection's state then (delivery.c).
 *
 * Test hook: with the environment variable PARLEY_TEST_HOLD_CATCHUP_READS
 * set to a path, every page read (and MQTT's cursor read) first waits while that file exists
 * (at most TEST_HOLD_MAX_MS, core/test_hold.h), so a test can keep a catch-up read outstanding and
 * see what the worker does meanwhile (test_catchup_off_worker). */
#ifndef PARLEY_GATEWAY_CATCHUP_READ_H
#define PARLEY_GATEWAY_CATCHUP_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/worker_msg.h"
#include "proto/parley.pb-c.h"

struct store;

enum {
    CATCHUP_PAGE = 128,                 /* entries in one page at most */
    CATCHUP_PAGE_BYTES = 1 << 20,       /* message bytes: a page stops after the entry that passes this */
    CATCHUP_RECEIPTS_MAX = 1024,        /* receipts in one SyncDone */
};

/* What a page read asks for, taken from the connection when it is asked. */
typedef struct catchup_ask {
    uint64_t user_id;
    uint64_t after;         /* entries after this user_seq (the connection's sent_upto) */
    uint64_t sync_from;     /* receipts only: the StartSync cursor */
    uint32_t limit;         /* entries at most (the room in its window), 1..CATCHUP_PAGE */
    bool receipts;          /* an empty page also carries the first SyncDone's receipts */
} catchup_ask;

/* The head of a WM_INBOX_PAGE's data; receipts then entries follow. */
typedef struct catchup_page_head {
    catchup_ask ask;
    uint32_t n_entries;
    uint32_t n_receipts;    /* only on an empty page that asked for them */
    bool failed;            /* a read failed after the entries here: the rest later */
} catchup_page_head;

/* Reads the page q asks for from st and returns it as a WM_INBOX_PAGE
 * message for conn_id (the caller owns it). Any thread; it waits on the
 * store (and on the test hook). */
worker_msg *catchup_read_page(struct store *st, uint64_t conn_id, const catchup_ask *q);

/* The stored cursor of (user, device) an MQTT persistent session resumes
 * its catch-up from (0: none): store_get_cursor, after the test hook. Any
 * thread. 0 or -1 (the read failed). */
int catchup_read_cursor(struct store *st, uint64_t user, uint32_t device, uint64_t *cursor);

/* The page's head; false when m is not a well-formed page. */
bool catchup_page_head_of(const worker_msg *m, catchup_page_head *h);

/* The entries of a page, in user_seq order: 1 and the next one (gone: its
 * message is no longer stored, retention; msg/len then empty), 0 at the end. */
typedef struct catchup_entries {
    const uint8_t *p, *end;
} catchup_entries;
void catchup_entries_start(const worker_msg *m, catchup_entries *it);
int catchup_entries_next(catchup_entries *it, uint64_t *user_seq, const uint8_t **msg, size_t *len, bool *gone);

/* The page's receipts into items[0..cap) (initialised Receipt values that
 * point nowhere else); returns how many. */
size_t catchup_page_receipts(const worker_msg *m, Parley__V1__Receipt *items, size_t cap);

#endif
