/* internal.h -- libparley's private state, shared by the files in client/.
 *
 * conn.c      transport: URL, TCP connect, HTTP upgrade, WebSocket frames, reading
 * reconnect.c backoff with full jitter, reconnect + sign in again + resync
 * requests.c  one request/response round trip, with retries across reconnects
 * api.c       the typed request calls of parley.h
 * identity.c  keys, challenge signatures, register / sign in
 * sync.c      events, dedupe, acks, pc_poll
 * realtime.c  presence, typing, receipts, keys, devices, device messages */
#ifndef PARLEY_CLIENT_INTERNAL_H
#define PARLEY_CLIENT_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "net/http.h"
#include "net/ws.h"
#include "parley.h"

enum {
    PC_MAX_SERVER_MESSAGE = 1 << 20,   /* the server never sends more (protocol fact) */
    PC_READ_BUF_MAX = PC_MAX_SERVER_MESSAGE + WS_MAX_HEADER,
    PC_ACK_EVERY = 64,                 /* events between acks; the server window is ~1024 */
    PC_NONCE_BYTES = 32,
    PC_AUTH_CONTEXT_LEN = 14,          /* "parley.v1 auth" */
    PC_HOST_MAX = 256,
    PC_PATH_MAX = 1024,                /* tls_ca_file */
    PC_PING_DEFAULT_MS = 30000,
    PC_MAX_SERVERS = 16,               /* URLs in a server list */
    PC_SERVER_LIST_MAX = 4096,         /* bytes of a server list */
};

typedef struct ssl_st SSL;

/* A source of uniform random numbers in [0, upper_bound): the backoff's
 * jitter draws from it (reconnect.c). */
typedef uint32_t (*pc_uniform_fn)(void *ud, uint32_t upper_bound);
typedef struct ssl_ctx_st SSL_CTX;

/* conversation id -> last seq handed to the callback; open addressing,
 * linear probing, grows at 1/2 load. Key 0 marks an empty slot (conversation
 * ids start at 1; an event for conversation 0 is never tracked). */
typedef struct pc_seen_map {
    uint64_t *keys;
    uint64_t *vals;
    size_t cap;    /* power of two, or 0 */
    size_t count;
} pc_seen_map;

struct pc_client {
    /* options, with defaults filled in */
    char host[PC_HOST_MAX];
    char port[8];
    char host_header[PC_HOST_MAX + 16]; /* the Host sent with the upgrade: signed at sign-in */
    char path[256];
    int connect_timeout_ms, request_timeout_ms;
    int reconnect_base_ms, reconnect_cap_ms, max_reconnects;
    int ping_interval_ms;     /* 0: no pings */
    bool use_tls;             /* wss:// */
    char tls_ca_file[PC_PATH_MAX];
    /* servers.c: the server list, when server_url names more than one */
    char *server_list;        /* the list as given (owned); NULL: one server */
    int server_count;         /* URLs in it; 1 with one server */
    int server_index;         /* the one host/port/path above are from */
    bool server_picked;       /* the first connect's random pick is made */
    uint32_t servers_tried;   /* bit i: server i failed since the last success */

    /* transport */
    int fd;                   /* -1 when not connected */
    bool want_connected;      /* pc_connect succeeded and pc_close not called: reconnect on loss */
    ws_reader reader;
    uint8_t *rbuf;            /* bytes read, not yet consumed by the reader */
    size_t rlen, rcap;
    uint8_t nonce[PC_NONCE_BYTES];
    bool have_nonce;
    int64_t last_tx_ms;       /* last bytes sent: pings go out when it is old */
    SSL_CTX *tls_ctx;         /* made at the first wss:// connect, kept */
    SSL *ssl;                 /* this connection's TLS, NULL over ws:// */
    bool tls_want_write;      /* the last TLS read needs the socket writable */

    /* why the last connection ended; drives the reconnect delay */
    int last_close_code;      /* 0: none seen */
    int retry_after_s;        /* from a 503, -1 when none */
    int backoff_attempt;      /* exponent of the next backoff; reset once healthy */
    int64_t next_attempt_ms;  /* pc_poll: when the scheduled reconnect is due; 0: none */
    int failed_attempts;      /* pc_poll: reconnects failed in a row */
    pc_uniform_fn jitter_uniform; /* NULL: libsodium's randombytes_uniform */
    void *jitter_ud;

    /* identity kept for signing in again after a reconnect */
    pc_identity id;
    bool have_identity;

    /* requests */
    uint64_t next_request_id;

    /* sync */
    bool sync_started, sync_done;
    uint64_t delivered;       /* highest user_seq handled (handed out or dropped) */
    uint64_t acked;           /* highest user_seq sent in an Ack (or set by pc_set_cursor) */
    unsigned unacked_events;  /* events handled since the last Ack */
    pc_seen_map seen;
    pc_event_fn on_event;
    void *on_event_ud;
    pc_receipt_fn on_receipt;
    void *on_receipt_ud;
    bool in_callback;         /* a callback runs: blocking calls would re-enter the reader */

    /* real time (realtime.c): push callbacks, device message dedupe */
    pc_presence_fn on_presence;
    void *on_presence_ud;
    pc_typing_fn on_typing;
    void *on_typing_ud;
    pc_keys_low_fn on_keys_low;
    void *on_keys_low_ud;
    pc_device_list_fn on_device_list;
    void *on_device_list_ud;
    pc_device_message_fn on_device_message;
    void *on_device_message_ud;
    uint64_t device_messages_seen;   /* highest queue_seq handed out */
    bool device_ack_due;             /* device messages arrived since the last AckDeviceMessages */

    pc_stats stats;
    int status;               /* of the last failure */
    uint64_t retry_after_ms;  /* from the last error response (RATE_LIMITED, UNAVAILABLE) */
    char error[256];
};

/* ---- errors (requests.c) */
/* Records a failure: status is a PARLEY__V1__STATUS__* or -1. Returns -1. */
int pc_fail(pc_client *c, int status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- the server URL (client.c) and the server list (servers.c) */
/* Parses one "ws[s]://host[:port][/path]" into host, port, path, use_tls.
 * 0, or -1 with the reason in c->error. */
int pc_parse_url(pc_client *c, const char *url);
/* Takes server_url (one URL or "URL1,URL2,..."): checks every URL and the
 * bounds, keeps a list of several. Leaves host/port/path on the first URL.
 * 0 or -1 (pc_fail set). */
int pc_servers_init(pc_client *c, const char *server_url);
/* Before the first connect: a server picked at random from the list. */
void pc_servers_pick_first(pc_client *c);
/* After a failed attempt or a lost connection: another server, picked at
 * random among those not tried since the last success (all but the current
 * one when every one was); a no-op with one server. */
void pc_servers_next(pc_client *c);
/* A connection succeeded: every server may be tried again. */
void pc_servers_connected(pc_client *c);
void pc_servers_free(pc_client *c);

/* ---- time (conn.c) */
int64_t pc_now_ms(void);
/* ms left until deadline (>= 0); deadline < 0 means none: returns -1. */
int pc_ms_left(int64_t deadline);

/* ---- transport (conn.c) */
/* One attempt: TCP connect, upgrade, wait for the Challenge. 0 or -1
 * (pc_fail set; c->retry_after_s set if the server answered 503). */
int pc_conn_open(pc_client *c);
/* Drops the socket without a close handshake. */
void pc_conn_drop(pc_client *c);
/* Packs and sends one Frame as a masked binary message. 0, or -1 after
 * dropping the connection. */
int pc_conn_send_frame(pc_client *c, const Parley__V1__Frame *f);
/* Sends a close frame with code (best effort) and drops the connection. */
void pc_conn_close(pc_client *c, uint16_t code);
/* Sends a ping if nothing was sent for ping_interval_ms. 0, or -1 after
 * dropping the connection. */
int pc_conn_keepalive(pc_client *c);
/* When the next keepalive ping is due (-1: never, or not connected). */
int64_t pc_conn_ping_due(const pc_client *c);

/* Reads and handles frames until a Response with request_id want arrives
 * (want 0: none wanted), or deadline passes (-1: none), or, when
 * stop_after_any, until at least one frame was handled and nothing more is
 * buffered. Pushes are dispatched on the way. *resp receives the wanted
 * Response's Frame (caller frees with parley__v1__frame__free_unpacked).
 * Returns 1 when the wanted response (or, with stop_after_any, any frame)
 * arrived, 0 on timeout, -1 when the connection is lost (dropped, pc_fail
 * set). *handled, if not NULL, is increased by the frames handled. */
int pc_conn_pump(pc_client *c, uint64_t want, int64_t deadline, bool stop_after_any,
                 Parley__V1__Frame **resp, int *handled);

/* ---- reconnect (reconnect.c) */
/* The wait before the next connection attempt (and counts the attempt). */
int pc_backoff_delay_ms(pc_client *c);
/* Replaces the jitter's random source (NULL: back to libsodium's), so tests
 * can draw from a seeded sequence or watch the draws. */
void pc_set_jitter_source(pc_client *c, pc_uniform_fn fn, void *ud);
void pc_sleep_ms(int ms);
/* Reconnects after a loss: backoff, connect, sign in with the kept identity,
 * restart sync. Uses at most *budget attempts (decremented). Sleeps through
 * the backoff (for blocking calls). 0 or -1. */
int pc_reconnect(pc_client *c, int *budget);
/* pc_poll's reconnect: never sleeps past deadline (-1: none). 1 connected,
 * 0 the next attempt is not due yet (or failed and another is scheduled),
 * -1 given up (max_reconnects failures in a row) or refused. */
int pc_reconnect_until(pc_client *c, int64_t deadline);

/* ---- requests (requests.c) */
/* Per-attempt hooks a request may need: auth requests sign the current
 * connection's nonce. */
typedef struct pc_request {
    Parley__V1__Frame *frame;
    bool retry_safe;              /* may be re-sent after it was already sent */
    bool sent;                    /* some attempt's frame fully left */
    ProtobufCBinaryData *sig;     /* if set: refreshed with a signature of the nonce */
    const uint8_t *sign_key;      /* 64-byte Ed25519 secret key for sig */
    uint64_t *cursor;             /* if set: refreshed with c->delivered (StartSync) */
    uint8_t sig_buf[64];
} pc_request;

/* Sends req and waits for its Response, reconnecting and re-sending as
 * allowed. On success returns 0 and *out is the response frame (status OK),
 * which the caller frees. */
int pc_request_run(pc_client *c, pc_request *req, Parley__V1__Frame **out);
/* pc_request_run, then checks the answer carries result `want` (NOT_SET:
 * anything). On success *out is the response frame, owned by the caller. */
int pc_run(pc_client *c, Parley__V1__Frame *f, bool retry_safe, Parley__V1__Response__ResultCase want,
           Parley__V1__Frame **out);
/* The same for requests whose answer carries nothing but OK. */
int pc_run_no_result(pc_client *c, Parley__V1__Frame *f, bool retry_safe);
/* One attempt on the current connection, no reconnect: used while
 * reconnecting. Returns 0 (OK response in *out), -1 protocol error or
 * transport loss (pc_fail set; c->fd < 0 tells which). */
int pc_request_once(pc_client *c, pc_request *req, Parley__V1__Frame **out);

/* ---- identity (identity.c) */
/* Signs "parley.v1 auth" || nonce || host (the Host header the upgrade
 * carried) with sk into sig. */
void pc_sign_challenge(const uint8_t nonce[PC_NONCE_BYTES], const char *host, const uint8_t sk[64],
                       uint8_t sig[64]);
/* SignIn with c->id on the current connection (no reconnect). 0 or -1. */
int pc_sign_in_once(pc_client *c);

/* ---- real time (realtime.c) */
/* Handles a Presence, TypingIndicator, KeysLow, DeviceListChanged or
 * DeviceMessage push; 1 if f was one of those, else 0. */
int pc_realtime_dispatch(pc_client *c, const Parley__V1__Frame *f);
/* Sends AckDeviceMessages{up_to = device_messages_seen} if any device
 * message arrived since the last one (pc_flush_acks calls it). 0 or -1. */
int pc_flush_device_acks(pc_client *c);

/* ---- sync (sync.c) */
void pc_dispatch_push(pc_client *c, const Parley__V1__Frame *f);
/* StartSync{after = c->delivered} on the current connection (no reconnect). */
int pc_start_sync_once(pc_client *c);
void pc_seen_free(pc_seen_map *m);

#endif
