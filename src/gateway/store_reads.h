/* store_reads.h -- a gateway's store reads, off the worker threads.
 *
 * A worker that reads a store whose node stopped answering (a frozen
 * Cassandra node) waits out the client's deadline, 12 s, and every
 * connection it serves waits with it. So on Cassandra these reads are jobs
 * for this small pool instead, a reader thread doing the read and handing
 * the result back to the connection's worker:
 *   - a sign-in's device read (STORE_READ_DEVICE): done callback; in the
 *     server, a WM_DEVICE_READ worker message. The worker checks the
 *     signature (the nonce never leaves it) and answers;
 *   - a page of a lagging device's catch-up (STORE_READ_CATCHUP_PAGE,
 *     gateway/catchup_read.h): the run callback reads and hands the page
 *     over itself (a WM_INBOX_PAGE message), since its size varies;
 *   - the stored cursor an MQTT persistent session resumes from when it
 *     subscribes to its events (STORE_READ_MQTT_CURSOR): the run callback
 *     reads it and hands it over (WM_CURSOR_READ, gateway/mqtt_conn.h);
 *   - what an MQTT CONNECT needs (STORE_READ_MQTT_CONNECT,
 *     gateway/mqtt_connect_read.h): the device's key and, for a persistent
 *     session, whether a cursor is stored; handed over as a
 *     WM_MQTT_CONNECT_READ, the worker checks the sign-in with it;
 *   - a page of the device messages a StartSync pushes
 *     (STORE_READ_DEVICE_MESSAGES, gateway/device_message_read.h): the run
 *     callback reads and hands the page over (WM_DEVICE_MESSAGES);
 *   - a History, ListConversations or LookupUser request (STORE_READ_REQUEST,
 *     gateway/request_read.h): the run callback reads and builds the
 *     answer, handed over as a WM_REQUEST_READ the worker writes.
 *
 * Bounded: at most `cap` jobs wait; a job that finds the queue full is
 * refused at once (the device is told to retry). Jobs are plain values:
 * stopping with jobs queued or in flight frees nothing but the pool. */
#ifndef PARLEY_GATEWAY_STORE_READS_H
#define PARLEY_GATEWAY_STORE_READS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "gateway/catchup_read.h"
#include "gateway/device_message_read.h"
#include "gateway/mqtt_connect_read.h"
#include "gateway/request_read.h"

struct server;

enum {
    STORE_READS_THREADS = 2,
    STORE_READS_QUEUE = 1024,   /* waiting reads, all workers together */
    STORE_READS_SIG_MAX = 64,   /* crypto_sign_BYTES */
    STORE_READS_KEY_MAX = 32,   /* crypto_sign_PUBLICKEYBYTES */
};

typedef enum store_read_kind {
    STORE_READ_DEVICE = 0,
    STORE_READ_CATCHUP_PAGE,
    STORE_READ_MQTT_CURSOR,
    STORE_READ_MQTT_CONNECT,
    STORE_READ_REQUEST,
    STORE_READ_DEVICE_MESSAGES,
} store_read_kind;

/* DEVICE: read the device (user_id, device_id) for connection conn_id; its
 * answer is for request_id. The signature travels with the job (a longer
 * one is cut and marked invalid) so the worker holds nothing but the nonce.
 * CATCHUP_PAGE: read the page `page` asks for, for conn_id.
 * MQTT_CURSOR: read the cursor of (user_id, device_id), for conn_id.
 * MQTT_CONNECT: read what `connect` asks for, for conn_id.
 * REQUEST: read and answer what `request` asks, for conn_id.
 * DEVICE_MESSAGES: read the page `dm` asks for, for conn_id. */
typedef struct store_read_job {
    uint8_t kind;               /* store_read_kind */
    uint64_t conn_id;
    uint64_t request_id;
    uint64_t user_id;
    uint32_t device_id;
    uint8_t sig_len;            /* 0: no valid signature was sent */
    uint8_t sig[STORE_READS_SIG_MAX];
    union {                     /* by kind: a job is one of them */
        catchup_ask page;
        mqtt_connect_ask connect;
        request_read_ask request;
        dm_ask dm;
    };
} store_read_job;

typedef struct store_read_result {
    store_read_job job;
    int found;                  /* 1 found, 0 no such device, -1 the read failed */
    uint8_t key_len;            /* 0 unless found and the key fits */
    uint8_t key[STORE_READS_KEY_MAX];
} store_read_result;

/* The data of a WM_CURSOR_READ (an MQTT_CURSOR job's result). */
typedef struct store_cursor_read {
    uint64_t user_id;
    uint32_t device_id;
    int rc;                     /* 0 read (cursor 0: none stored), -1 the read failed */
    uint64_t cursor;
} store_cursor_read;

/* Called on a reader thread: fills key/key_len; returns found (see above). */
typedef int (*store_reads_read_fn)(void *ctx, uint64_t user_id, uint32_t device_id,
                                   uint8_t key[STORE_READS_KEY_MAX], uint8_t *key_len);
/* Called on a reader thread with each finished device read. */
typedef void (*store_reads_done_fn)(void *ctx, const store_read_result *r);
/* Called on a reader thread for every other job (a catch-up page, an MQTT
 * cursor or CONNECT, a History, ListConversations or LookupUser, a page of
 * device messages): reads and hands the result to the connection's worker
 * itself. */
typedef void (*store_reads_run_fn)(void *ctx, const store_read_job *job);

typedef struct store_reads store_reads;

/* threads >= 1 readers over a queue of cap jobs; run may be NULL (then
 * only device reads are taken). NULL when out of memory or a thread cannot
 * start. */
store_reads *store_reads_new(size_t threads, size_t cap, store_reads_read_fn read, store_reads_done_fn done,
                             store_reads_run_fn run, void *ctx);
/* Any thread. 0 when queued; -1 when the queue is full or the pool stops
 * (parley_gateway_store_reads_refused_total). */
int store_reads_submit(store_reads *p, const store_read_job *job);
/* A catch-up page job for conn_id (store_reads_submit). */
int store_reads_submit_page(store_reads *p, uint64_t conn_id, const catchup_ask *q);
/* An MQTT cursor job for conn_id (store_reads_submit). */
int store_reads_submit_cursor(store_reads *p, uint64_t conn_id, uint64_t user_id, uint32_t device_id);
/* Drops the jobs still queued, waits for the reads in flight (each at most
 * the store's deadline) and frees the pool. NULL is fine. */
void store_reads_free(store_reads *p);

/* The server's pool: reads srv->store, posts each result to the worker that
 * owns its connection (parley_gateway_catchup_pages_total counts its pages,
 * parley_gateway_mqtt_connect_reads_total its CONNECT reads,
 * parley_gateway_request_reads_total its History, ListConversations and
 * LookupUser requests, parley_gateway_device_message_pages_total its
 * device-message pages). NULL for a
 * store whose reads do not wait (RocksDB: local reads, answered inline) or
 * when it cannot start. */
store_reads *store_reads_start(struct server *srv);

#endif
