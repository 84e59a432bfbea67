/* conn.h -- one client connection and the worker that owns it.
 *
 * A connection belongs to exactly one worker thread for its whole life; only
 * that thread touches it. Other threads reach it by conn id through the
 * worker's inbox (worker_msg.h), and a stale id (the connection closed and
 * its slot was reused) is recognised by the generation in it.
 *
 * Life: HTTP (waiting for the request head) -> WS (upgraded) -> CLOSING
 * (output is flushed, then the socket is closed). */
#ifndef PARLEY_GATEWAY_CONN_H
#define PARLEY_GATEWAY_CONN_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"
#include "core/clock.h"
#include "core/mpsc.h"
#include "gateway/conn_table.h"
#include "gateway/worker_msg.h"
#include "net/ws.h"
#include "proto/parley.pb-c.h"
#include "server.h"

typedef enum conn_state { CONN_HTTP, CONN_WS, CONN_CLOSING } conn_state;

typedef struct ssl_st SSL;
typedef struct ssl_ctx_st SSL_CTX;

/* What an idle signed-in connection holds is this struct and nothing else
 * of its own (test_conn_memory asserts the bound), so it is kept small:
 * buffers are one pointer each and allocated only while bytes are in
 * transit; sign-in state (c->auth), requests at the writer (c->in_flight)
 * and rarely used state (c->side: rate buckets, the StartSync cursor until
 * SyncDone, device-message paging, a held AckDeviceMessages) are
 * side allocations that exist only while needed; times a sweep compares are
 * 32-bit milliseconds (conn_clock()), since the intervals they measure are
 * bounded far below 2^32 ms; flags are bits. Hot fields go here only with
 * a reason; test_conn_memory fails when the struct grows. */
typedef struct conn {
    /* first, and kept while the slot is free (conn_table.h) */
    uint64_t id;
    struct conn *next_dirty;    /* free slot: the next free one */
    uint64_t user_id;
    uint64_t sent_upto;     /* last user_seq written to the socket */
    uint64_t acked_upto;    /* last user_seq the device acknowledged */
    /* session.c, realtime.c */
    uint64_t device_acked_upto; /* last AckDeviceMessages handed to the writer */
    uint64_t cursor_submitted_upto; /* last Ack handed to the writer (the next starts after it) */
    buf in, out;
    struct conn_auth *auth; /* sign-in state (conn_auth.h): owned, from the upgrade
                               until signed in or closed; NULL otherwise */
    struct conn_side *side; /* rarely used state (conn_side.h): owned; NULL when idle;
                               set from StartSync until SyncDone is sent */
    struct in_flight_table *in_flight; /* requests at the writer, not yet answered, and
                               their decoded bytes (in_flight.c); NULL: none */
    /* TLS (NULL ssl: plain) */
    SSL *ssl;
    ws_reader reader;
    int fd;
    uint32_t device_id;
    uint32_t peer_addr;     /* IPv4, host order: the per-address count */
    /* limits (conn_clock() milliseconds) */
    uint32_t last_rx_ms;    /* last whole WebSocket message or control frame;
                               write side shut: last input read and dropped */
    uint32_t phase_ms;      /* HTTP: when accepted (the handshake timeout);
                               CLOSING: when closing began (a peer that never reads is cut) */
    uint32_t out_moved_ms;  /* last time output was written (or input paused) */
    uint32_t out_unit_left; /* bytes of the head unit of c->out (the 101 head or a
                               frame) still to write; 0: the head is a boundary */
    uint8_t state;          /* conn_state */
    /* flags: one bit each */
    bool epollout : 1;      /* EPOLLOUT is armed */
    bool dirty : 1;         /* on the worker's flush list */
    bool signed_in : 1;
    bool auth_pending : 1;  /* an auth request is with the writer: no other one */
    bool nonce_spent : 1;   /* an auth attempt used the nonce: the next needs a new one */
    bool syncing : 1;       /* StartSync seen: in the registry, receiving events */
    bool lagging : 1;       /* live pushes held back; catching up from the store */
    bool sync_done_sent : 1;
    bool shed : 1;          /* over the accept rate: the upgrade gets 503 */
    bool framed : 1;        /* c->out holds the 101 head, then WebSocket frames */
    bool tls_ready : 1;     /* handshake done (counted once) */
    bool tls_failed : 1;    /* fatal TLS error: no close_notify */
    bool tls_read_wants_write : 1;  /* a read waits for the socket to be writable */
    bool tls_write_wants_read : 1;  /* a flush waits for the socket to be readable */
    bool input_paused : 1;  /* output over its cap or too many requests in flight:
                               the socket is not read (EPOLLIN off) until it drains */
    bool epollin_off : 1;   /* EPOLLIN is not armed */
    bool write_shut : 1;    /* CLOSING: output done, SHUT_WR sent; reading until EOF */
    bool addr_counted : 1;  /* counted as pending (not signed in) for its address */
    bool dm_pending : 1;    /* device messages left to push after StartSync */
    bool ack_pending : 1;   /* an Ack this turn, not yet handed to the writer */
    bool page_pending : 1;  /* a catch-up page is being read off the worker (delivery.c) */
    bool page_recheck : 1;  /* live events were skipped while it was: read once more before
                               calling the catch-up done */
    bool mqtt : 1;          /* speaks MQTT (gateway/mqtt_conn.c): its state is in the
                               worker's mqtt_links, not here; HTTP state = before CONNACK */
    bool read_wait : 1;     /* a store read it asked for is off the worker; no input is handled
                               until it is back (conn_input_blocked). One bit for two reads
                               never out together: an MQTT CONNECT's (before CONNACK,
                               mqtt_conn.c) and a History, ListConversations or LookupUser
                               request's (signed in, session.c) */
} conn;

/* c's slot in its worker's conn table: the id's low 24 bits. */
static inline uint32_t conn_slot(const conn *c) { return (uint32_t)(c->id & 0xffffff); }

/* The clock of the 32-bit times in struct conn: monotonic milliseconds,
 * truncated. Compare two of them only by unsigned difference
 * ((uint32_t)(now - then)), which is right for intervals under 49 days. */
static inline uint32_t conn_clock(void) { return (uint32_t)clock_mono_ms(); }

typedef struct worker {
    server *srv;
    uint32_t index;
    int epoll_fd;
    int listen_fd;
    mpsc inbox;             /* worker_msg * from the writer, fan-out, receipts */
    pthread_t thread;
    atomic_bool stopping;
    uint8_t *read_buf;      /* WebSocket input is read here first (worker.c READ_CHUNK bytes) */
    uint32_t decoded_bytes; /* what decoding the request being handled allocated
                               (session.c: one request at a time per worker) */
    conn_table table;       /* the connections, by slot (conn_table.h) */
    conn *dirty;            /* connections with output to write this turn */
    uint64_t last_sweep_ms;
    SSL_CTX *tls;           /* shared by the workers; NULL: plain listener */
    int spare_fd;           /* released to accept-and-close when out of fds */
    bool fd_warned;         /* "out of file descriptors" logged this second */
    uint32_t n_live;        /* connections in the table */
    /* drain (SIGTERM): WebSocket connections closed in slices */
    bool draining;
    uint64_t drain_start_ms;
    uint32_t drain_total;   /* WebSocket connections when the drain began */
    uint32_t drain_closed;
    uint32_t drain_cursor;  /* next slot to look at */
    int mqtt_listen_fd;     /* --mqtt-listen; -1: none */
    struct u64map *mqtt_links; /* conn id -> struct mqtt_link * (mqtt_conn.c); NULL until the first */
} worker;

/* worker.c: output. Everything is queued on c->out and written once per
 * loop turn; conn_mark_dirty puts c on that turn's write list. */
void conn_mark_dirty(worker *w, conn *c);
void conn_send(worker *w, conn *c, uint8_t opcode, const void *data, size_t len);
void conn_send_frame(worker *w, conn *c, const Parley__V1__Frame *f);
/* A Response frame answering request_id. */
void conn_respond(worker *w, conn *c, uint64_t request_id, Parley__V1__Response *resp);
void conn_send_error(worker *w, conn *c, uint64_t request_id, Parley__V1__Status status,
                     const char *error);
/* RATE_LIMITED, saying how long to wait; counted in /metrics. */
void conn_send_rate_limited(worker *w, conn *c, uint64_t request_id, const char *error,
                            uint64_t retry_after_ms);
/* Sends a close frame with code and closes once it is written. */
void conn_close(worker *w, conn *c, uint16_t code, const char *reason);

/* Sign-in succeeded: the connection gets the signed-in message limit and
 * stops counting as pending for its address. */
void conn_signed_in(worker *w, conn *c);
/* Output at or past conn-output-cap, max-in-flight requests (or their
 * max-in-flight-bytes) at the writer, an MQTT CONNECT's read, a request's
 * read or a page of device messages at sync out: the connection's input
 * waits. */
bool conn_input_blocked(const worker *w, const conn *c);

/* session.c: one decoded request from a signed-in or signing-in device */
void session_handle(worker *w, conn *c, const uint8_t *data, size_t len);
void session_closed(worker *w, conn *c);
/* Hands this turn's newest Ack and AckDeviceMessages of c to the writer, one
 * request each: acks are coalesced per connection per loop turn before they
 * cross threads. Called for the dirty connections at the end of each turn
 * (worker.c flush_dirty) and when c closes or starts a sync. */
void session_flush_acks(worker *w, conn *c);
void session_apply_reply(worker *w, conn *c, worker_msg *m);
/* A sign-in's device read came back (WM_DEVICE_READ, gateway/store_reads.h). */
void session_device_read(worker *w, conn *c, const worker_msg *m);
/* A History, ListConversations or LookupUser answer read off the worker came back
 * (WM_REQUEST_READ, gateway/request_read.h). */
void session_request_read(worker *w, conn *c, const worker_msg *m);
/* Closes this worker's connections signed in as (user, device): the device
 * was removed (1008). */
void session_close_device(worker *w, uint64_t user, uint32_t device);
/* This worker's connections of user stop receiving about_user's presence
 * (about_user blocked user). */
void session_drop_presence(worker *w, uint64_t user, uint64_t about_user);
/* A new sign-in challenge (nonce) to the device: after the upgrade and after
 * each failed auth attempt, since a nonce is good for one attempt. */
void session_challenge(worker *w, conn *c);
/* Sign-in by another route than SignIn (MQTT CONNECT): the same registry
 * presence and limits, no response. */
void session_sign_in_device(worker *w, conn *c, uint64_t user, uint32_t device);
/* StartSync from after (respond: answer request_id as over WebSocket). */
void session_start_sync(worker *w, conn *c, uint64_t request_id, uint64_t after, bool respond);
/* Ack up to user_seq (an MQTT PUBACK), coalesced like WebSocket Acks. */
void session_ack_upto(worker *w, conn *c, uint64_t user_seq);

/* delivery.c: events to a device */
void delivery_live(worker *w, conn *c, uint64_t user_seq, const blob *message);
/* Sends stored events after c->sent_upto while the window and the output
 * cap allow; sends SyncDone once the first catch-up ends. On Cassandra the
 * reads are made off the worker (gateway/catchup_read.h): the pump asks
 * for a page and returns; delivery_page goes on when it comes. */
void delivery_pump(worker *w, conn *c);
/* A catch-up page read off the worker came back (WM_INBOX_PAGE). */
void delivery_page(worker *w, conn *c, const worker_msg *m);
/* New entries may be in c's inbox that it was not sent: it catches up. */
void delivery_catch_up(worker *w, conn *c);
/* True while the output is under its cap (pushes may be added). */
bool delivery_output_room(const worker *w, const conn *c);

#endif
