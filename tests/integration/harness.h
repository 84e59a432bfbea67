/* harness.h -- what every integration test needs: start the real server
 * binary on a free loopback port with a fresh data directory, stop it
 * (SIGTERM or kill -9), restart it on the same directory and port, read its
 * /healthz, /metrics and VmRSS, and drive devices through libparley while
 * recording every event and receipt they see.
 *
 * Every wait here is bounded by a deadline; deadlines are liveness bounds
 * (give up instead of hanging), never timing assertions.
 *
 * Every server started is stopped at exit (atexit) even when a CHECK fails,
 * and the child is killed by the kernel if the test process dies
 * (PR_SET_PDEATHSIG). Stops are graceful (SIGTERM, a 100 ms drain window,
 * a bounded wait) unless the test asks for kill -9, so the server's
 * shutdown and LeakSanitizer run; a server stopped by h_server_destroy,
 * h_server_restart or at exit that does not exit 0 is a test failure. */
#ifndef PARLEY_TESTS_HARNESS_H
#define PARLEY_TESTS_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "parley.h"

enum { H_MAX_EXTRA_ARGS = 24 };

typedef struct h_server {
    char bin[512];
    char dir[256];          /* temp dir (mkdtemp), removed by h_server_destroy */
    char data[320];         /* dir/data: --data */
    char log[320];          /* dir/server.log: stdout + stderr of the server */
    int port;
    char url[64];           /* ws://127.0.0.1:port */
    pid_t pid;              /* 0 when not running */
    char *extra[H_MAX_EXTRA_ARGS];
    int n_extra;
    int starts;             /* how many times started */
} h_server;

/* Creates the temp dir, picks a port and starts the server with the extra
 * flags (NULL-terminated list, may be NULL), waiting until /healthz says 200.
 * Returns 0, or -1 after printing the server log tail. */
int h_server_start(h_server *s, const char *const *extra_args);
/* Starts again (same binary, dir, port, flags) after a stop; a server still
 * running is stopped first and must exit 0 (else the case fails). */
int h_server_restart(h_server *s);
/* SIGTERM, wait (bounded, 10 s), then SIGKILL. Returns the exit status
 * from waitpid, or -1 if it had to be killed. */
int h_server_stop(h_server *s);
/* SIGKILL + waitpid. */
void h_server_kill9(h_server *s);
/* Stops if running (SIGTERM; it must exit 0, else the case fails) and
 * removes the temp dir. Safe to call twice. */
void h_server_destroy(h_server *s);
/* Prints the last `lines` lines of the server log to stderr. */
void h_server_log_tail(const h_server *s, int lines);
/* 1 if the process is still alive (not exited). */
int h_server_alive(h_server *s);

/* One HTTP/1.1 GET with Connection: close on 127.0.0.1:port. Fills *status
 * and body (NUL-terminated, truncated to cap-1). Returns 0 or -1. */
int h_http_get(int port, const char *path, int *status, char *body, size_t cap);
/* Sum of every sample of metric `name` (with or without labels) in /metrics.
 * Returns 0 and fills *out, or -1 if the metric is absent or /metrics fails. */
int h_metric(const h_server *s, const char *name, double *out);
/* The same from the /metrics of 127.0.0.1:port (a --metrics-listen
 * listener: served off the workers, so it answers while one is held). */
int h_metric_at(int port, const char *name, double *out);
/* VmRSS of the server in KiB, or -1. */
long h_rss_kb(const h_server *s);

/* Free loopback TCP port (bind port 0, read back, close). */
int h_free_port(void);
/* Connected TCP socket to 127.0.0.1:port with send/recv timeouts, or -1. */
int h_tcp_connect(int port, int timeout_ms);

uint64_t h_now_ms(void);
void h_sleep_ms(int ms);

/* ------------------------------------------------------------- devices */

/* One event as a device saw it (a copy; body truncated to H_BODY_MAX). */
enum { H_BODY_MAX = 2048 };
typedef struct h_event {
    uint64_t user_seq;
    uint64_t conversation_id;
    uint64_t seq;
    uint64_t sender_user_id;
    uint32_t sender_device_id;
    int type;
    size_t body_len;            /* the real length */
    uint8_t *body;              /* malloc'd copy of min(body_len, H_BODY_MAX) bytes */
    char mime_type[64];
    uint64_t size;
    uint64_t ref_seq;
    int membership_action;      /* MEMBERSHIP: Membership.action */
    size_t n_membership_users;
    uint64_t membership_users[8];
} h_event;

typedef struct h_receipt {
    uint64_t conversation_id;
    uint64_t user_id;
    int kind;
    uint64_t seq;
} h_receipt;

typedef struct h_dev {
    pc_client *c;
    pc_identity id;
    char name[40];
    h_event *ev;
    size_t n_ev, cap_ev;
    h_receipt *rc;
    size_t n_rc, cap_rc;
} h_dev;

/* Connects a new client to s and registers a new user named `name` (must be
 * unique on that server; "" or NULL: a unique one is made up). The device
 * records events and receipts. Returns NULL on failure (message on stderr). */
h_dev *h_user_new(const h_server *s, const char *name);
/* Links a further device to the user of `owner` (token + RegisterDevice). */
h_dev *h_device_link(const h_server *s, h_dev *owner);
/* A new connection for an existing identity: pc_new, connect, sign in,
 * pc_set_cursor(cursor) (no "seen" state, so a duplicate from the server
 * shows up in the record). Recording continues into d. Frees d->c first if
 * set (closing it). Returns 0 or -1. */
int h_dev_reconnect(const h_server *s, h_dev *d, uint64_t cursor);
/* A device record for an existing identity (e.g. to re-sync a user's inbox
 * from scratch on a fresh connection): allocates, then h_dev_reconnect. */
h_dev *h_dev_for_identity(const h_server *s, const pc_identity *id, const char *name,
                          uint64_t cursor);
/* Closes (close frame) and frees the client, keeping the record. */
void h_dev_disconnect(h_dev *d);
/* Frees everything. */
void h_dev_free(h_dev *d);
/* Forgets recorded events and receipts. */
void h_dev_clear(h_dev *d);

/* Allocations that must not leak when a CHECK returns early: h_calloc
 * memory (and every h_dev) not freed by the test is freed at exit, before
 * LeakSanitizer looks. */
void *h_calloc(size_t n, size_t size);
void h_free(void *p);

/* Options the harness uses for its clients: server url, shortish timeouts. */
void h_client_options(const h_server *s, pc_options *o);

/* Events of d in conversation conv, in arrival order, copied into out (cap),
 * returns the count. Only non-MEMBERSHIP ones if no_membership. */
size_t h_dev_conv_events(const h_dev *d, uint64_t conv, int no_membership,
                         const h_event **out, size_t cap);
/* Number of recorded events in conv (all types). */
size_t h_dev_count(const h_dev *d, uint64_t conv);
/* Number of recorded events in conv of a given type (0: any). */
size_t h_dev_count_type(const h_dev *d, uint64_t conv, int type);
/* Checks d's record of conv: seqs strictly increasing, no duplicate. Returns
 * 0 or -1 with a description in why. */
int h_dev_check_order(const h_dev *d, uint64_t conv, char *why, size_t why_cap);
/* Is (conv, seq) in d's record? Returns how many times. */
int h_dev_has(const h_dev *d, uint64_t conv, uint64_t seq);

/* Polls every client of devs (pc_poll(c, 0) round robin, poll() on their
 * fds when idle) until pred(ud) returns non-zero or timeout_ms passes.
 * pred NULL: just pump for timeout_ms. Returns 1 if pred held, 0 on
 * timeout. A client whose pc_poll returns -1 is skipped from then on
 * (reported on stderr). */
int h_pump(h_dev *const *devs, size_t n, int (*pred)(void *ud), void *ud, int timeout_ms);

/* Common predicates. */
typedef struct h_count_goal {
    h_dev *const *devs;
    size_t n;
    uint64_t conv;
    size_t want;            /* each device has >= want events in conv (non-MEMBERSHIP if no_membership) */
    int no_membership;
} h_count_goal;
int h_pred_count(void *ud);           /* ud: h_count_goal */
int h_pred_sync_done(void *ud);       /* ud: h_count_goal (devs, n) */

/* pc_start_sync on d and pump until SyncDone. Returns 0 or -1. */
int h_dev_sync(h_dev *d, int timeout_ms);

/* Makes a text send and returns the seq (0 on failure, error on stderr). */
uint64_t h_send(h_dev *d, uint64_t conv, const char *text);

/* What a test sent and got acknowledged, to compare against what devices saw. */
typedef struct h_sent {
    uint64_t seq;
    uint64_t sender;
    char text[64];
} h_sent;
/* 1 when e's body is exactly text. */
int h_event_body_is(const h_event *e, const char *text);
/* Sends text from d (pc_send_text) and appends it to exp[*n]. 0 or -1. */
int h_send_rec(h_dev *d, uint64_t conv, const char *text, h_sent *exp, size_t *n);
/* d's non-MEMBERSHIP events of conv are exactly exp[0..n) in that order
 * (seq, sender, text). 0, or -1 with a description in why. */
int h_expect_exact(const h_dev *d, uint64_t conv, const h_sent *exp, size_t n, char *why,
                   size_t why_cap);
/* Pages backwards through conv's whole history (limit 200 per page, bounded)
 * and returns the messages oldest first as a malloc'd array of copies
 * (bodies truncated like events; free with h_events_free). NULL on failure
 * (pc error on stderr); *n the count. Also fails if a page is not oldest
 * first or pages overlap. */
h_event *h_history_all(h_dev *d, uint64_t conv, size_t *n);
void h_events_free(h_event *ev, size_t n);

/* Starts s again like h_server_restart, but waits only until /healthz
 * answers at all, whatever its status: for a server that is up but not
 * healthy (its disk under --min-free-disk, say). 0, or -1 (log tail
 * printed). */
int h_server_restart_unhealthy(h_server *s);

/* For check.h (declared weak there): failures the harness saw on its own
 * since the last call (a server that did not exit 0 when h_server_destroy,
 * h_server_restart or h_server_start stopped it); resets the count. */
int check_case_extra_failures(void);

/* For a server a test started itself (not through h_server_start): SIGTERM,
 * a bounded wait (SIGKILL past it), and unless it exited 0 the log tail
 * (log may be NULL) and a "FAIL <what>: ..." line of its own, so it counts
 * even when called outside a case. Returns the waitpid status, -1 if killed. */
int h_pid_stop_checked(pid_t pid, const char *log, const char *what);

/* Consent (message requests): d accepts the other member of direct
 * conversation conv, or whoever added it to group conv. h_accept_all accepts
 * every request in d's conversation list. 0 or -1 (error on stderr). */
int h_accept(h_dev *d, uint64_t conv);
int h_accept_all(h_dev *d);
/* Users "alice" and "bob" signed up on s, a direct conversation opened by
 * alice and accepted by bob (*conv). 0, or -1 (said on stderr; what was
 * made is in *alice, *bob for the caller to free). */
int h_direct_pair(const h_server *s, h_dev **alice, h_dev **bob, uint64_t *conv);

/* ------------------------------------------------------ raw connections
 *
 * A WebSocket connection that speaks the protocol frame by frame, without
 * libparley's own checks: for sending what a well-behaved client never
 * sends (over-limit bodies, nonsense ids) and seeing exactly what the
 * server answers. Every read is bounded (5 s per frame). */
typedef struct h_raw {
    int fd;
    uint8_t *buf;               /* read buffer (1 MiB unless h_raw_opts says) */
    size_t off, len;
    void *reader;               /* ws_reader */
    uint8_t nonce[32];          /* from the Challenge */
    int eof;
    uint64_t next_request_id;
    int port;
    char host[64];              /* the Host header of the upgrade */
    size_t buf_cap;             /* size of buf (h_raw_opts.buf_size) */
    int io_ms;                  /* bound on each read and the socket's timeouts */
    int close_code;             /* of the Close frame a read met; 0 before one */
    char close_reason[128];     /* its reason, NUL-terminated (cut to fit) */
    int reset;                  /* the server reset the connection (eof is set too) */
    int upgrade_accept_ok;      /* the upgrade's Sec-WebSocket-Accept matched */
    char upgrade_protocol[64];  /* the upgrade's Sec-WebSocket-Protocol answer */
} h_raw;

/* TCP connect, upgrade to parley.v1, read the Challenge. 0 or -1. */
int h_raw_open(const h_server *s, h_raw *w);
/* Signs the connection in as id (which must be registered): the signature
 * covers "parley.v1 auth" || nonce || Host. 0 or -1. */
int h_raw_sign_in(h_raw *w, const pc_identity *id);
/* Sends f with the next request id and reads frames (skipping pushes, at
 * most 256) until its Response. Returns the response status (and *resp, if
 * resp, the whole frame: free with parley__v1__frame__free_unpacked), or -1
 * when none came (connection closed: *close_code, if given, the server's
 * close code or 1006). */
int h_raw_request(h_raw *w, Parley__V1__Frame *f, Parley__V1__Frame **resp, int *close_code);
/* The next protobuf frame the server sent (pings skipped), or NULL on close
 * (*close_code: its code, 1006 without one) or after 5 s (0). Free with
 * parley__v1__frame__free_unpacked. */
Parley__V1__Frame *h_raw_next_frame(h_raw *w, int *close_code);
/* Sends raw bytes as one masked binary WebSocket message. 0 or -1. */
int h_raw_send_binary(h_raw *w, const void *data, size_t len);
/* Closes w; safe on a closed or a zeroed, never opened h_raw. */
void h_raw_close(h_raw *w);

/* ------------------------------------------------------------------ TLS */

/* Makes a self-signed certificate for 127.0.0.1 (the openssl command) as
 * dir/cert.pem and dir/key.pem; their paths into cert/key (cap each).
 * 0 or -1. */
int h_make_cert(const char *dir, char *cert, char *key, size_t cap);
/* One HTTP/1.1 GET over TLS to 127.0.0.1:port trusting ca_file. Returns 0
 * and fills *status and body (NUL-terminated), or -1. */
int h_tls_get(int port, const char *ca_file, const char *path, int *status, char *body,
              size_t cap);
/* h_server_start for a wss:// server: extra_args must hold --tls-cert FILE
 * and --tls-key FILE; ready once /healthz answers 200 over TLS. s->url is
 * wss://127.0.0.1:port. */
int h_server_start_tls(h_server *s, const char *const *extra_args);
/* h_server_restart for a server made by h_server_start_tls. */
int h_server_restart_tls(h_server *s);


/* A round trip through the write path's accounts owner (a link token
 * request, committed after everything that owner has pending): once it is
 * answered, the device-message acks and key changes d sent before it are
 * committed, and what that owner pushed for them went out first. Requests
 * on different owners (chat/writer_route.c) are not ordered with each
 * other, so a barrier must go through the owner it waits for. 0 or -1. */
int h_accounts_barrier(h_dev *d);

/* Under AddressSanitizer (the server is built the same way as the test)
 * RSS says nothing about buffering: freed memory sits in ASan's quarantine
 * and every allocation carries redzones and shadow. RSS bounds are
 * checked in normal builds only (RSS_MEANINGFUL 1); the rest of a test
 * runs everywhere. */
#if defined(__SANITIZE_ADDRESS__)
#define RSS_MEANINGFUL 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RSS_MEANINGFUL 0
#endif
#endif
#ifndef RSS_MEANINGFUL
#define RSS_MEANINGFUL 1
#endif

/* The end-of-program check that s is still running after all the cases:
 * 1 when it is; else shows the tail of its log, prints the case line
 * "FAIL server_survived" and returns 0 (the caller counts the failure:
 * check.h's counters are the test program's own). */
int h_server_survived(h_server *s);

/* Raw connections with more control than h_raw_open/h_raw_request give,
 * for tests that pipeline, pack frames themselves or need a bigger buffer
 * or longer bound (0 in a field: the default). */
typedef struct h_raw_opts {
    size_t buf_size;            /* read buffer and largest message: 1 MiB */
    int io_ms;                  /* each read's bound and the socket timeouts: 5000 */
    int rcvbuf;                 /* SO_RCVBUF before connect (a small window): system's */
} h_raw_opts;
/* h_raw_open on 127.0.0.1:port (o may be NULL). 0 or -1. */
int h_raw_open_port(int port, const h_raw_opts *o, h_raw *w);
/* Packs f as one masked binary WebSocket frame into out (cap bytes), for
 * sending later, many back to back, with h_raw_send_bytes. Its length, or 0
 * when it does not fit. */
size_t h_raw_pack_frame(const Parley__V1__Frame *f, uint8_t *out, size_t cap);
/* Sends n bytes exactly as given (pre-packed frames, or anything), waiting
 * out a busy server's full socket for at most 3 * io_ms. Touches only the
 * socket, so one thread may send while another reads. 0 or -1. */
int h_raw_send_bytes(h_raw *w, const void *data, size_t n);
/* Sends f with the request_id it carries and does not wait for an answer
 * (pipelining). 0 or -1. */
int h_raw_send_frame(h_raw *w, const Parley__V1__Frame *f);
/* Reads frames (at most max_frames; others are dropped) until the
 * Response to request_id: its status (and *resp, if resp, the frame: free
 * it), or -1 (closed, timed out or the bound reached; w->eof and
 * w->close_code say which). */
int h_raw_await_response(h_raw *w, uint64_t request_id, int max_frames, Parley__V1__Frame **resp);
/* w (signed in) asks for the push key, which the worker answers from
 * memory with no store read (OK, or UNAVAILABLE when push is off): the
 * probe the off-worker tests make to see the worker is free. 1 when it
 * is answered, any status, within w's io_ms; else 0. */
int h_raw_worker_answers(h_raw *w, uint64_t request_id);

/* The WebSocket layer itself, for tests of the wire (struct ws_message is
 * src/net/ws.h's). TCP to 127.0.0.1:port with w's buffers, no upgrade (send
 * what you like on w->fd). 0 or -1. */
int h_raw_connect(int port, const h_raw_opts *o, h_raw *w);
/* Sends an upgrade naming protocol (no Sec-WebSocket-Protocol if NULL) and
 * reads the answer's head: the HTTP status, or -1; sets
 * w->upgrade_accept_ok and w->upgrade_protocol. */
int h_raw_upgrade(h_raw *w, const char *protocol);
/* Reads an HTTP response head from w (after sending what you chose on
 * w->fd): its status, or -1. */
int h_raw_read_head(h_raw *w);
struct ws_message;
/* The next message or control frame of any kind: 1 (m valid until the next
 * read), 0 EOF (w->eof) or timeout, -1 the server's frames are malformed. */
int h_raw_next_message(h_raw *w, struct ws_message *m);
/* h_raw_next_frame, with the frame's encoded length in *size. */
Parley__V1__Frame *h_raw_next_frame_sized(h_raw *w, size_t *size, int *close_code);
/* Sends one WebSocket frame as given: any opcode, fin, masked or not. 0 or -1. */
int h_raw_send_ws(h_raw *w, uint8_t opcode, int fin, const void *payload, size_t len, int masked);
/* Reads (at most max_messages, others skipped) until the server's Close:
 * its code (w->close_code and w->close_reason kept), 1006 when the
 * connection ended without one, 0 on timeout, -2 on malformed frames. */
int h_raw_expect_close(h_raw *w, int max_messages);
/* Reads until the server ends the TCP connection (bounded by io_ms): 1 when
 * it did (w->reset tells a reset from an orderly end), else 0. */
int h_raw_wait_eof(h_raw *w);

/* Sends a RegisterUser for a fresh user called name (device "raw", a new
 * key pair signing w's Challenge) with request_id, without waiting for its
 * answer. 0 or -1. */
int h_raw_send_register(h_raw *w, const char *name, uint64_t request_id);

/* A key set the server accepts, the same for the same tag: an Ed25519
 * identity key ik (from a seed made of tag), a 32-byte signed pre-key spk
 * and ik's signature of it (the server verifies it on UploadKeys). */
void h_test_keys(uint8_t tag, uint8_t ik[32], uint8_t spk[32], uint8_t sig[64]);
/* The store the servers of h_server_start run on: "rocksdb" (default) or,
 * with PARLEY_TEST_STORE=cassandra, "cassandra": each h_server then gets
 * --store cassandra --cassandra HOSTS --keyspace (its own, kept across
 * restarts); HOSTS is PARLEY_TEST_CASSANDRA, or a node this program starts
 * (tests/integration/cassandra_node.h) and stops at exit. */
const char *h_test_store(void);
/* s's --keyspace, "" when it has none */
const char *h_server_keyspace(const h_server *s);
/* DROP KEYSPACE IF EXISTS keyspace on hosts ("HOST:PORT"). 0 or -1. The
 * harness drops the keyspaces it made on a node of PARLEY_TEST_CASSANDRA
 * itself (at h_server_destroy, and at exit). */
int h_cassandra_drop_keyspace(const char *hosts, const char *keyspace);

/* user's delivered and read marks in conv, as viewer's GetReceipts shows
 * them: 0 found, 1 no such member (both 0), -1 the request failed. */
int h_member_marks(h_dev *viewer, uint64_t conv, uint64_t user, uint64_t *delivered, uint64_t *read);

/* A barrier on a raw connection: a LookupUser of a name nobody has, sent
 * after whatever came before it; its answer says the worker handled all
 * that and ended the turn. Frames read meanwhile (at most max_frames) are
 * dropped. 0 or -1. */
int h_raw_barrier(h_raw *w, uint64_t request_id, int max_frames);
/* One Ack of user_seq, then h_raw_barrier: the Ack went to the writer
 * alone, with exactly this range. 0 or -1. */
int h_raw_ack_barrier(h_raw *w, uint64_t user_seq, uint64_t request_id, int max_frames);

/* A burst: n frames packed back to back and sent with one write, so the
 * server reads them in one turn. make(ud, i, f) fills frame i (f starts as
 * an empty Frame); it may point f into storage of its own that stays valid
 * until its next call. 0, or -1 (make returned non-zero, out of memory, or
 * the send failed). */
typedef int (*h_frame_maker)(void *ud, size_t i, Parley__V1__Frame *f);
int h_raw_send_frames(h_raw *w, size_t n, h_frame_maker make, void *ud);
/* Fills f (and sm, which f points to) as a text SendMessage of request_id
 * to conv with client_msg_id; the strings are borrowed. */
void h_frame_send_text(Parley__V1__Frame *f, Parley__V1__SendMessage *sm, uint64_t request_id, uint64_t conv,
                       const char *client_msg_id, const char *text);

/* Starts prog with args (NULL-terminated, at most H_SPAWN_ARGS_MAX are
 * passed), its stdout and stderr appended to log; the child's pid, or -1.
 * The caller waits for it and stops it by that pid. */
enum { H_SPAWN_ARGS_MAX = 38 };
pid_t h_spawn_logged(const char *prog, const char *const *args, const char *log);

/* Sends a SignIn for id on w signed over w's current nonce, with
 * request_id; the answer is not waited for (h_raw_sign_in waits). 0 or -1. */
int h_raw_send_sign_in(h_raw *w, const pc_identity *id, uint64_t request_id);

#endif
