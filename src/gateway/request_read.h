/* request_read.h -- the read requests of a signed-in device (History,
 * ListConversations, LookupUser), read from the store and answered.
 *
 * A History page is a membership read and a scan of the conversation's
 * messages; a conversation list is a scan of the user's conversations and,
 * for each, its member records, the conversation, its last seq and a
 * consent read; a LookupUser one read of the name. On Cassandra each
 * read is a network round trip (a frozen node: the client's deadline,
 * 12 s), so there the request is a job for
 * the reader pool (gateway/store_reads.h, STORE_READ_REQUEST) and its
 * answer comes back to the connection's worker as a WM_REQUEST_READ; on
 * RocksDB the worker reads it itself (local reads). Either way the answer
 * is made here, as the encoded Frame the device gets, and written by
 * session.c, so both stores give the same bytes through the same path.
 *
 * The answer is self-contained (the ask it answers, then the Frame), so it
 * needs nothing from the connection, which may have closed by the time it
 * arrives: then it is dropped. One such read per connection is out at a
 * time, and the connection's input waits until it is back (worker.c
 * conn_input_blocked): requests are answered in the order they were sent,
 * as on the worker, and one device cannot fill the pool's queue.
 *
 * Test hook: with the environment variable PARLEY_TEST_HOLD_REQUEST_READS
 * set to a path, every read made here first waits while that file exists
 * (at most TEST_HOLD_MAX_MS, core/test_hold.h): test_request_off_worker. */
#ifndef PARLEY_GATEWAY_REQUEST_READ_H
#define PARLEY_GATEWAY_REQUEST_READ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/worker_msg.h"

struct store;
struct store_reads;

typedef enum request_read_kind {
    REQUEST_READ_HISTORY = 1,
    REQUEST_READ_LIST,          /* ListConversations */
    REQUEST_READ_LOOKUP_USER,
} request_read_kind;

/* A LookupUser's name travels with the ask, at most this many bytes; no
 * stored name is longer (the writer takes 1..32, chat/writer_internal.h
 * MAX_NAME), so a longer one is answered NOT_FOUND without a read. */
enum { REQUEST_READ_NAME_MAX = 64 };

/* What the request asks, taken from it and the connection when it is asked. */
typedef struct request_read_ask {
    uint64_t request_id;
    uint64_t user_id;           /* the signed-in user asking */
    uint64_t conversation_id;   /* HISTORY */
    uint64_t before_seq;        /* HISTORY: 0 from the newest */
    uint64_t max_bytes;         /* HISTORY: --history-page-bytes */
    uint32_t limit;             /* HISTORY: as sent (0: the default) */
    uint8_t kind;               /* request_read_kind */
    uint8_t name_len;           /* LOOKUP_USER: bytes of name */
    char name[REQUEST_READ_NAME_MAX]; /* LOOKUP_USER, not NUL-terminated */
} request_read_ask;

/* Reads what q asks from st (after the test hook) and returns the answer
 * as a WM_REQUEST_READ for conn_id (the caller owns it). Any thread. */
worker_msg *request_read_answer(struct store *st, uint64_t conn_id, const request_read_ask *q);

/* The read as a STORE_READ_REQUEST job for conn_id: store_reads_submit
 * (0 queued, -1 the queue is full). */
int request_read_submit(struct store_reads *p, uint64_t conn_id, const request_read_ask *q);

/* The ask a WM_REQUEST_READ answers and its encoded Frame; false when m
 * is not one. */
bool request_read_of(const worker_msg *m, request_read_ask *q, const uint8_t **frame, size_t *len);

#endif
