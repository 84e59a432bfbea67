/* bench.h -- parley-bench's shared pieces: options, the lean connection, the
 * per-thread epoll loop, counters.
 *
 * One loop per thread owns a slice of the connections and touches only them,
 * so nothing on the hot path takes a lock. A connection is kept small (about
 * 200 bytes plus buffers that exist only while bytes are in transit) so that
 * the generator's own memory and cache footprint stay far below the server's
 * and it is not the bottleneck it appears to measure. */
#ifndef PARLEY_BENCH_H
#define PARLEY_BENCH_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "hist.h"

/* ------------------------------------------------------------- options */

enum { BENCH_MAX_SERVERS = 16 };   /* URLs in --server */
/* the slot after them: --register-server, where users are registered */
enum { BENCH_REGISTER_SERVER = BENCH_MAX_SERVERS };

typedef struct bench_opts {
    const char *scenario;
    char server_url[1024];      /* "" -> start build/parley ourselves */
    char host[64];              /* the (first) server: where /metrics and the like are read */
    int port;
    /* --server URL1,URL2,...: every connection picks one at random and
     * another after each loss (conn.c); one entry when there is one server */
    int n_servers;
    char hosts[BENCH_MAX_SERVERS + 1][64];   /* + the --register-server slot */
    int ports[BENCH_MAX_SERVERS + 1];
    bool register_server;       /* --register-server: new users registered there, not on --server */
    bool spread_even;           /* --spread even: connection i on server i mod n_servers */
    const char *hook;           /* connections --hook CMD: run at "base" and "held" (PARLEY_BENCH_PHASE) */
    const char *identities;     /* connections --identities FILE: users kept across runs (identities.h) */
    bool register_only;         /* connections --register-only: register (or find) the users, no more */
    const char *parley_bin;     /* server binary when the bench starts it */
    const char *fsync;          /* policy given to (or claimed for) the server */
    int server_workers;         /* 0: the server's default (one per core) */
    const char *json_path;
    const char *plot_path;
    int threads;                /* bench loops */
    int procs;                  /* connections: worker processes (0: as needed) */
    long n;                     /* connections / reconnect */
    long pairs;                 /* direct */
    long group_size, groups;    /* group */
    long senders;               /* group: senders per group, -1 = all */
    long backlog;               /* sync */
    double rate;                /* msgs/s in total; 0 = max */
    int window;                 /* sends in flight per sender (max mode) */
    double seconds;             /* load duration */
    long messages;              /* > 0: max mode sends exactly this many in all, then ends (--seconds bounds it) */
    double hold;                /* connections: hold time */
    double heartbeat;           /* seconds between pings per connection */
    int body_bytes;
    int ack_every;              /* events between cumulative acks */
    const char *restart_mode;   /* reconnect: "kill" or "drain" */
    int quiet;
    int proc_index;             /* set in worker processes */
    bool e2e;                   /* --e2e: Sender Keys on every send and delivery (bench_e2e.c) */
    long e2e_tamper_every;      /* hidden, tests only: corrupt every Nth ciphertext (0: never) */
} bench_opts;

extern bench_opts g_opt;

/* -------------------------------------------------------------- clock */

uint64_t now_ns(void);
static inline double ns_to_ms(uint64_t ns) { return (double)ns / 1e6; }

/* ------------------------------------------------------------ counters */

/* Updated by loop threads, read by the progress line: relaxed atomics. */
typedef struct counters {
    _Atomic uint64_t sent, acked, delivered, receipts, errors;
    _Atomic uint64_t connected, ready, shed, closed, sync_events, echoes;
    _Atomic uint64_t decrypt_errors;   /* --e2e: deliveries that did not decrypt */
} counters;

#define CNT_ADD(l, f, v) atomic_fetch_add_explicit(&(l)->cnt.f, (v), memory_order_relaxed)
#define CNT_GET(l, f) atomic_load_explicit(&(l)->cnt.f, memory_order_relaxed)

/* ---------------------------------------------------------- connection */

enum conn_state {
    BC_IDLE,        /* no socket (not yet, or waiting to reconnect) */
    BC_CONNECTING,  /* TCP connect in progress */
    BC_UPGRADING,   /* upgrade sent, waiting for 101 */
    BC_CHALLENGE,   /* upgraded, waiting for the server's Challenge */
    BC_AUTH,        /* RegisterUser / SignIn sent */
    BC_SIGNED,      /* signed in (StartSync may follow) */
};

/* setup requests, recorded in the request id's low byte */
enum setup_op { OP_NONE, OP_REGISTER, OP_SIGNIN, OP_OPEN_DIRECT, OP_CREATE_GROUP, OP_START_SYNC };

/* request ids of load sends carry the send time: this bit set, the rest ns */
#define SEND_ID_BIT (1ull << 63)

typedef struct bench_e2e bench_e2e;   /* bench_e2e.c: NULL unless --e2e */

typedef struct bconn {
    int fd;
    uint8_t state;
    bool epollout, dirty, syncing, sync_done, want_sync;
    uint16_t pending;           /* setup requests awaiting an answer */
    uint32_t index;             /* global, for source address and peers */
    uint32_t inflight;          /* load sends not yet acknowledged */
    uint32_t attempts;          /* reconnect attempts since the last success */
    uint8_t server;             /* index into g_opt.hosts/ports of its server */
    bool placed;                /* server picked (at the first connect) */
    uint32_t device_id;
    uint64_t user_id;
    uint64_t conv;              /* the conversation this connection sends to */
    uint64_t last_user_seq;     /* highest event received */
    uint64_t acked_user_seq;    /* last cumulative Ack sent */
    bool sends_load;            /* one of the loop's senders: its Acks ride on its sends (ack_ride.h) */
    uint64_t last_send_id;
    uint64_t reconnect_at;      /* ns; BC_IDLE with this set: reconnect then */
    uint64_t last_ping;
    uint32_t req_seq;
    uint8_t nonce[32];
    uint8_t sk[64];             /* Ed25519 secret key (public key = sk + 32) */
    uint8_t *in;                /* bytes of an incomplete frame / HTTP head */
    uint32_t in_len, in_cap;
    uint8_t *out;               /* bytes the socket did not take yet */
    uint32_t out_off, out_len, out_cap;
    struct bconn *next_dirty;
    bench_e2e *e2e;             /* owned; --e2e only */
} bconn;

/* --------------------------------------------------------------- loop */

typedef struct bloop {
    int id;
    int epfd;
    bconn **conns;              /* owned */
    uint32_t n;
    uint32_t connect_next;      /* next conn to open in bring-up */
    uint32_t connect_upto;      /* bring-up stops before this one (0: all) */
    uint32_t connecting;        /* handshakes in progress */
    uint32_t max_connecting;
    bool reconnect;             /* reopen lost connections with backoff */
    bool auto_sync;             /* StartSync right after sign-in */
    bool register_new;          /* unregistered conns RegisterUser (else stay challenged) */
    bool count_deliveries;      /* measure bench messages in events */
    bool close_after_auth;      /* registration only: close once registered */
    bool count_auth;            /* a connection counts in `connecting` until signed in, not only
                                 * until challenged: bounds registrations / sign-ins in flight
                                 * where the server does them slowly (one accounts thread) */
    struct sockaddr_in server[BENCH_MAX_SERVERS + 1];   /* g_opt.hosts/ports */
    bconn *dirty;
    uint8_t *rbuf;
    size_t rcap;
    uint64_t rng;
    counters cnt;
    hist ack_lat, deliv_lat;
    _Atomic bool stop;
    /* load: a single schedule over this loop's senders */
    bconn **senders;
    uint32_t n_senders;
    uint64_t load_t0, load_seq, load_interval_ns, load_end;
    bool sending;
    uint64_t send_limit;        /* max mode: stop after this many sends (0: no limit) */
    uint64_t target;            /* phase goal: ready connections in this loop */
    /* reconnect: when each connection came back (ns since reconnect_t0) */
    uint64_t reconnect_t0;
    uint64_t *back_at;
    uint32_t n_back;
    char last_error[160];
} bloop;

int loop_init(bloop *l, int id, bconn **conns, uint32_t n);
void loop_free(bloop *l);
/* Runs the loop until done(l) is true, l->stop is set, or deadline_ns. */
void loop_run(bloop *l, bool (*done)(bloop *), uint64_t deadline_ns);

bconn *conn_new(uint32_t index);
void conn_free_mem(bconn *c);
/* Starts (or restarts) the connection: TCP, upgrade, challenge, auth. */
void conn_open(bloop *l, bconn *c);
void conn_shutdown(bloop *l, bconn *c);       /* close without reconnecting */
void conn_trim(bconn *c);                     /* drop idle buffers */
/* Setup requests (answered through c->pending). */
void conn_open_direct(bloop *l, bconn *c, uint64_t peer_user);
void conn_create_group(bloop *l, bconn *c, const uint64_t *members, size_t n);
void conn_start_sync(bloop *l, bconn *c);
/* One load message to c->conv; ts is the time stamped into the body. */
void conn_send_message(bloop *l, bconn *c, uint64_t ts);
void conn_ack(bloop *l, bconn *c);
void conn_ping(bloop *l, bconn *c);
void loop_flush(bloop *l);

/* -------------------------------------------------------- threads */

/* Runs fn(loop) on every loop, one thread each, and prints a progress line
 * every second until all return. label names the phase. */
void run_loops(bloop *loops, int n, const char *label, bool (*done)(bloop *), double seconds);
uint64_t loops_sum(bloop *loops, int n, size_t counter_offset);
#define LOOPS_SUM(loops, n, field) loops_sum((loops), (n), offsetof(counters, field))

/* ---------------------------------------------------------- server */

typedef struct server_proc {
    int pid;                   /* 0: external */
    char data_dir[256];
    char fsync[16];
    int workers;
    int port;
} server_proc;

int server_start(server_proc *s, const char *data_dir);   /* data_dir NULL: new temp dir */
int server_restart(server_proc *s);
void server_stop(server_proc *s, int sig);                /* waits for exit */
void server_cleanup(server_proc *s);                      /* removes the temp dir */
long proc_rss_kb(int pid);                                /* VmRSS, -1 if unknown */
long proc_threads(int pid);

/* --------------------------------------------------------- report */

void report_begin(const char *scenario);
void report_num(const char *key, double value, const char *unit, const char *label);
void report_str(const char *key, const char *value, const char *label);
void report_hist(const char *key, const hist *h, const char *label);
void report_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int report_end(const char *json_path);
void report_plot(const char *png_path, const hist *a, const char *a_label, const hist *b,
                 const char *b_label);

/* -------------------------------------------------------- scenarios */

int scenario_connections(server_proc *s);
int scenario_direct(server_proc *s);
int scenario_group(server_proc *s);
int scenario_reconnect(server_proc *s);
int scenario_sync(server_proc *s);

#endif
