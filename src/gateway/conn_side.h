/* conn_side.h -- a connection's rarely used state, in a side allocation
 * made when it is first needed and dropped (by the worker's once-a-second
 * sweep) once it holds nothing a fresh one would not:
 *   - the cursor a StartSync came with (until SyncDone is sent);
 *   - the token buckets of typing indicators and presence subscriptions
 *     (a bucket that has refilled is the same as no bucket);
 *   - the paging of device messages after a StartSync (until it ends);
 *   - the newest AckDeviceMessages of a loop turn (until the turn ends).
 * An idle connection holds one NULL pointer for all of it. */
#ifndef PARLEY_GATEWAY_CONN_SIDE_H
#define PARLEY_GATEWAY_CONN_SIDE_H

#include <stdbool.h>
#include <stdint.h>

#include "gateway/conn.h"

typedef struct conn_side {
    uint64_t typing_refilled_ms;    /* 0: the bucket is full (never taken from) */
    uint64_t presence_refilled_ms;  /* 0: the bucket is full */
    uint64_t buckets_full_ms;       /* from then on both buckets are full again */
    uint64_t sync_from;             /* the cursor the latest StartSync came with */
    uint64_t dm_after;              /* device messages at sync: the last queue_seq pushed */
    float typing_tokens;
    float presence_tokens;
    uint32_t dm_sent;               /* pushed since the latest StartSync */
    bool dm_reading;                /* a page of them is being read off the worker (Cassandra,
                                       gateway/device_message_read.h); only while dm_pending.
                                       The input waits meanwhile (worker.c conn_input_blocked),
                                       as it did while the worker read the page itself */
    uint32_t device_ack_bytes;      /* what decoding device_ack allocated */
    Parley__V1__Frame *device_ack;  /* newest AckDeviceMessages of this turn, not yet handed
                                       to the writer (owned); session_flush_acks */
} conn_side;

/* c's side state, allocated (zeroed: full buckets, no paging) if it has
 * none; NULL when memory runs out. */
conn_side *conn_side_get(conn *c);
/* A bucket was taken from: it is full again at full_ms (monotonic). */
void conn_side_bucket_until(conn_side *s, uint64_t full_ms);
/* Frees c's side state when nothing in it matters any more at now_ms: no
 * catch-up before SyncDone, no device-message paging and both buckets full. Returns true when c holds
 * no side state afterwards. */
bool conn_side_trim(conn *c, uint64_t now_ms);
void conn_side_free(conn *c);

#endif
