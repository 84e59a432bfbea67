/* device_message_read.h -- one page of the device messages a StartSync
 * pushes, read from the store.
 *
 * After a StartSync the device messages waiting in the device's queue (key
 * hand-outs and other envelopes for it) are pushed before the events they
 * may unlock, a page at a time under the output cap (realtime.c). On
 * Cassandra each page is a network round trip (a frozen node: the client's
 * deadline, 12 s), so there the page is a job for the reader pool
 * (gateway/store_reads.h, STORE_READ_DEVICE_MESSAGES) and comes back to
 * the connection's worker as a WM_DEVICE_MESSAGES; on RocksDB the worker
 * reads it itself (local reads). Either way the page is this one value,
 * built here and written by realtime.c.
 *
 * The page is self-contained (message bytes copied in) and carries the ask
 * it answers: the worker compares that with the connection's paging when
 * it arrives (a newer StartSync started the paging again: the page is
 * dropped and the first one asked for).
 *
 * Test hook: with the environment variable
 * PARLEY_TEST_HOLD_DEVICE_MESSAGE_READS set to a path, every page read
 * first waits while that file exists (at most TEST_HOLD_MAX_MS,
 * core/test_hold.h): test_device_messages_off_worker. */
#ifndef PARLEY_GATEWAY_DEVICE_MESSAGE_READ_H
#define PARLEY_GATEWAY_DEVICE_MESSAGE_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/worker_msg.h"

struct store;
struct store_reads;

enum {
    DM_PAGE = 64,               /* messages in one page at most */
    DM_PAGE_BYTES = 1 << 20,    /* message bytes: a page stops after the message that passes this */
};

/* What a page read asks for, taken from the connection when it is asked. */
typedef struct dm_ask {
    uint64_t user_id;
    uint64_t after;             /* queue_seqs after this one (the last pushed; 0: from the first) */
    uint32_t device_id;
} dm_ask;

/* The head of a WM_DEVICE_MESSAGES's data; the messages follow. */
typedef struct dm_page_head {
    dm_ask ask;
    uint32_t n;                 /* messages in the page */
    bool failed;                /* the read failed (after the messages here, if any) */
} dm_page_head;

/* Reads the page q asks for from st and returns it as a WM_DEVICE_MESSAGES
 * for conn_id (the caller owns it). Any thread; it waits on the store (and
 * on the test hook). */
worker_msg *dm_read_page(struct store *st, uint64_t conn_id, const dm_ask *q);

/* The read as a STORE_READ_DEVICE_MESSAGES job for conn_id:
 * store_reads_submit (0 queued, -1 the queue is full). */
int dm_read_submit(struct store_reads *p, uint64_t conn_id, const dm_ask *q);

/* The page's head; false when m is not a well-formed page. */
bool dm_page_head_of(const worker_msg *m, dm_page_head *h);

/* The messages of a page, in queue_seq order: 1 and the next one (its
 * encoded parley.v1.DeviceMessage in msg/len), 0 at the end. */
typedef struct dm_entries {
    const uint8_t *p, *end;
} dm_entries;
void dm_entries_start(const worker_msg *m, dm_entries *it);
int dm_entries_next(dm_entries *it, uint64_t *queue_seq, const uint8_t **msg, size_t *len);

#endif
