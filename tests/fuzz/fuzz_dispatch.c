/* fuzz_dispatch.c -- decoded frames through the server's request dispatch
 * (session_handle), not only protobuf-c's unpack: sign-in, reads, writes
 * handed to the real writer thread, sync, receipts, presence, keys, device
 * messages, against a real store in a temp directory with the real writer,
 * queue, registry and fan-out thread.
 *
 * There are no sockets: one worker is built by hand (an inbox, no listener,
 * no epoll, no thread: this thread is its loop), and each input is one
 * connection on it, already upgraded, whose fd is /dev/null: output is only
 * queued on c->out (nothing here flushes it) and discarded. Replies and deliveries
 * the writer and fan-out post to the worker are applied to the connection
 * if it is still the input's, as the worker loop would, else freed. The
 * input format is in dispatch_input.h.
 *
 * Checked: no crash or sanitizer report, a device with a valid signature
 * signs in, and no request makes the connection's state invalid. */
#include <fcntl.h>
#include <ftw.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "chat/writer.h"
#include "core/clock.h"
#include "core/log.h"
#include "fanout/fanout.h"
#include "gateway/conn.h"
#include "gateway/conn_auth.h"
#include "gateway/conn_side.h"
#include "gateway/in_flight.h"
#include "gateway/outbox_local.h"
#include "dispatch_input.h"

enum {
    INBOX_CAP = 1 << 16,
    SETUP_WAIT_MS = 20000,        /* for the writer's answers during set-up */
};

static server srv;
static worker the_worker;
static worker *workers[1];
static char dir[64];
static int null_fd = -1;        /* every connection's fd: conn_send drops output for fd -1 */

static struct fuzz_user {
    uint64_t user_id;
    uint32_t device_id;
    uint8_t pk[crypto_sign_PUBLICKEYBYTES];
    uint8_t sk[crypto_sign_SECRETKEYBYTES];
} users[DISPATCH_USERS];

static void die(const char *what) {
    fprintf(stderr, "fuzz_dispatch: %s\n", what);
    abort();
}

/* ----------------------------------------------------------- connection */

static conn *open_conn(void) {
    conn *c = conn_table_alloc(&the_worker.table, 0);   /* worker 0, slot 0, a new generation */
    if (!c) die("out of memory");
    c->fd = null_fd;
    c->state = CONN_WS;
    c->framed = true;
    c->phase_ms = c->last_rx_ms = conn_clock();
    ws_reader_init(&c->reader, true, srv.cfg.max_message_bytes);
    /* the sign-in state an upgrade makes; an empty Host, so the signed
     * bytes are "parley.v1 auth" || nonce (dispatch_input.h) */
    c->auth = conn_auth_new("", 255, clock_mono_ms());
    if (!c->auth) die("out of memory");
    memset(c->auth->nonce, DISPATCH_NONCE_BYTE, sizeof c->auth->nonce);
    the_worker.n_live = 1;
    return c;
}

/* What a flush would have written is thrown away. */
static void discard_output(conn *c) {
    the_worker.dirty = NULL;
    c->dirty = false;
    c->next_dirty = NULL;
    buf_free(&c->out);
    c->out_unit_left = 0;
}

static void close_conn(conn *c) {
    session_closed(&the_worker, c);
    in_flight_free(c);
    discard_output(c);
    buf_free(&c->in);
    ws_reader_free(&c->reader);
    conn_side_free(c);
    the_worker.n_live = 0;
    conn_table_release(&the_worker.table, c);
}

/* The worker loop's inbox step (worker.c handle_inbox). Returns how many
 * messages were taken. */
static size_t pump_inbox(conn *c) {
    worker_msg *msgs[256];
    size_t n, total = 0;
    for (int round = 0; round < 64 && (n = mpsc_pop_many(&the_worker.inbox, (void **)msgs, 256)) > 0;
         round++) {
        total += n;
        for (size_t i = 0; i < n; i++) {
            worker_msg *m = msgs[i];
            if (c && m->conn_id == c->id && c->state == CONN_WS) {
                switch (m->kind) {
                case WM_REPLY: session_apply_reply(&the_worker, c, m); break;
                case WM_PUSH: conn_send(&the_worker, c, WS_OP_BINARY, m->data, m->len); break;
                case WM_DELIVER: delivery_live(&the_worker, c, m->user_seq, m->message); break;
                case WM_CLOSE_DEVICE:    /* orders name no connection (worker.c scans for them) */
                case WM_DROP_PRESENCE:
                case WM_MQTT_TAKEOVER: break;   /* MQTT connections only; this target speaks WebSocket */
                case WM_RESYNC: break;          /* many nodes only */
                case WM_DEVICE_READ: break;     /* the Cassandra store only (gateway/store_reads.h) */
                case WM_INBOX_PAGE: break;      /* the Cassandra store only (gateway/catchup_read.h) */
                case WM_CURSOR_READ:            /* MQTT on the Cassandra store only */
                case WM_MQTT_CONNECT_READ: break;
                case WM_REQUEST_READ: break;    /* the Cassandra store only: on RocksDB the worker
                                                   answers in place (gateway/request_read.h) */
                case WM_DEVICE_MESSAGES: break; /* the same (gateway/device_message_read.h) */
                }
            }
            worker_msg_free(m);
        }
    }
    return total;
}

static void handle_frame(conn *c, const Parley__V1__Frame *f) {
    size_t n = parley__v1__frame__get_packed_size(f);
    uint8_t *b = malloc(n ? n : 1);
    if (!b) die("out of memory");
    parley__v1__frame__pack(f, b);
    session_handle(&the_worker, c, b, n);
    free(b);
}

static void sign(uint8_t sig[crypto_sign_BYTES], const conn *c, const uint8_t *sk) {
    uint8_t msg[sizeof DISPATCH_AUTH_CONTEXT - 1 + sizeof c->auth->nonce];
    memcpy(msg, DISPATCH_AUTH_CONTEXT, sizeof DISPATCH_AUTH_CONTEXT - 1);
    memcpy(msg + sizeof DISPATCH_AUTH_CONTEXT - 1, c->auth->nonce, sizeof c->auth->nonce);
    crypto_sign_detached(sig, NULL, msg, sizeof msg, sk);
}

static void sign_in(conn *c, const struct fuzz_user *u) {
    uint8_t sig[crypto_sign_BYTES];
    sign(sig, c, u->sk);
    Parley__V1__Frame f;
    Parley__V1__SignIn s;
    parley__v1__frame__init(&f);
    parley__v1__sign_in__init(&s);
    s.user_id = u->user_id;
    s.device_id = u->device_id;
    s.signature.data = sig;
    s.signature.len = sizeof sig;
    f.body_case = PARLEY__V1__FRAME__BODY_SIGN_IN;
    f.sign_in = &s;
    f.request_id = 1;
    handle_frame(c, &f);
    if (!c->signed_in || c->user_id != u->user_id) die("a valid SignIn did not sign in");
    discard_output(c);
}

/* ---------------------------------------------------------------- set-up */

/* Sends f on c and waits for the writer's answer; returns it decoded (the
 * caller frees it) after applying it to c. */
static Parley__V1__Frame *request_and_wait(conn *c, const Parley__V1__Frame *f) {
    handle_frame(c, f);
    uint64_t deadline = clock_mono_ms() + SETUP_WAIT_MS;
    while (clock_mono_ms() < deadline) {
        mpsc_wait(&the_worker.inbox, 100);
        worker_msg *m;
        while (mpsc_pop_many(&the_worker.inbox, (void **)&m, 1) == 1) {
            Parley__V1__Frame *reply = NULL;
            if (m->conn_id == c->id && m->kind == WM_REPLY) {
                session_apply_reply(&the_worker, c, m);
                reply = parley__v1__frame__unpack(NULL, m->len, m->data);
            }
            worker_msg_free(m);
            if (reply && reply->body_case == PARLEY__V1__FRAME__BODY_RESPONSE &&
                reply->request_id == f->request_id) {
                discard_output(c);
                if (reply->response->status != PARLEY__V1__STATUS__OK) die("a set-up request failed");
                return reply;
            }
            if (reply) parley__v1__frame__free_unpacked(reply, NULL);
        }
    }
    die("no answer from the writer during set-up");
    return NULL;
}

static void register_user(int i) {
    struct fuzz_user *u = &users[i];
    uint8_t seed[crypto_sign_SEEDBYTES];
    memset(seed, DISPATCH_KEY_SEED_BYTE + i, sizeof seed);   /* the same keys every run */
    crypto_sign_seed_keypair(u->pk, u->sk, seed);
    conn *c = open_conn();
    uint8_t sig[crypto_sign_BYTES];
    sign(sig, c, u->sk);
    char name[16];
    snprintf(name, sizeof name, "fuzz%d", i + 1);
    Parley__V1__Frame f;
    Parley__V1__RegisterUser r;
    parley__v1__frame__init(&f);
    parley__v1__register_user__init(&r);
    r.name = name;
    r.device_public_key.data = u->pk;
    r.device_public_key.len = sizeof u->pk;
    r.signature.data = sig;
    r.signature.len = sizeof sig;
    f.request_id = 1;
    f.body_case = PARLEY__V1__FRAME__BODY_REGISTER_USER;
    f.register_user = &r;
    Parley__V1__Frame *reply = request_and_wait(c, &f);
    if (reply->response->result_case != PARLEY__V1__RESPONSE__RESULT_REGISTERED)
        die("RegisterUser answered without Registered");
    u->user_id = reply->response->registered->user_id;
    u->device_id = reply->response->registered->device_id;
    parley__v1__frame__free_unpacked(reply, NULL);
    if (u->user_id != (uint64_t)i + 1)
        fprintf(stderr, "fuzz_dispatch: user %d got id %llu (seeds assume %d)\n", i,
                (unsigned long long)u->user_id, i + 1);
    close_conn(c);
}

static uint64_t conversation_of(Parley__V1__Frame *reply) {
    if (reply->response->result_case != PARLEY__V1__RESPONSE__RESULT_CONVERSATION)
        die("answer without a conversation");
    uint64_t id = reply->response->conversation->conversation_id;
    parley__v1__frame__free_unpacked(reply, NULL);
    return id;
}

static void create_conversations(void) {
    conn *c = open_conn();
    sign_in(c, &users[0]);
    uint64_t members[DISPATCH_USERS - 1];
    for (int i = 1; i < DISPATCH_USERS; i++) members[i - 1] = users[i].user_id;
    Parley__V1__Frame f;
    Parley__V1__CreateGroup g;
    parley__v1__frame__init(&f);
    parley__v1__create_group__init(&g);
    g.name = "fuzz";
    g.n_member_user_ids = DISPATCH_USERS - 1;
    g.member_user_ids = members;
    f.request_id = 2;
    f.body_case = PARLEY__V1__FRAME__BODY_CREATE_GROUP;
    f.create_group = &g;
    uint64_t group = conversation_of(request_and_wait(c, &f));
    Parley__V1__OpenDirect d;
    parley__v1__open_direct__init(&d);
    d.peer_user_id = users[1].user_id;
    parley__v1__frame__init(&f);
    f.request_id = 3;
    f.body_case = PARLEY__V1__FRAME__BODY_OPEN_DIRECT;
    f.open_direct = &d;
    uint64_t direct = conversation_of(request_and_wait(c, &f));
    if (group != DISPATCH_GROUP || direct != DISPATCH_DIRECT)
        fprintf(stderr, "fuzz_dispatch: conversations %llu and %llu (seeds assume %d and %d)\n",
                (unsigned long long)group, (unsigned long long)direct, DISPATCH_GROUP,
                DISPATCH_DIRECT);
    close_conn(c);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb;
    (void)flag;
    (void)ftw;
    remove(path);
    return 0;
}

/* At exit, in main.c's order, so LeakSanitizer sees everything freed and
 * the temp directory goes. */
static void teardown(void) {
    mpsc_close(&the_worker.inbox);      /* posts fail (and are freed) from now on */
    server_core_stop(&srv);
    pump_inbox(NULL);
    mpsc_destroy(&the_worker.inbox);
    conn_table_free(&the_worker.table);
    server_core_free(&srv);
    store_close(srv.store);
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    close(null_fd);
}

/* libFuzzer's per-input leak check is turned off for this target (it reads
 * its flags after LLVMFuzzerInitialize returns, so one can be added here;
 * -detect_leaks=1 on the command line, which comes later, turns it back
 * on). Why: nearly every input leaves work in the writer and fan-out
 * threads, so mallocs and frees never balance within an input, and
 * libFuzzer then ran every input twice and a LeakSanitizer scan of the
 * whole heap (RocksDB's included) after it: 3 to 5 times fewer executions.
 * Leaks are still caught: teardown frees everything, LeakSanitizer runs at
 * exit and its report makes the run fail (a strdup leaked per LookupUser:
 * exit status 1 with the report). */
enum { MAX_ARGS = 256 };
static char *args[MAX_ARGS + 2];
static char no_per_input_leak_check[] = "-detect_leaks=0";

static void add_flag(int *argc, char ***argv) {
    if (*argc < 1 || *argc > MAX_ARGS) return;
    args[0] = (*argv)[0];
    args[1] = no_per_input_leak_check;
    for (int i = 1; i < *argc; i++) args[i + 1] = (*argv)[i];
    args[*argc + 1] = NULL;
    *argc += 1;
    *argv = args;
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    add_flag(argc, argv);
    if (sodium_init() < 0) die("sodium_init");
    snprintf(dir, sizeof dir, "/tmp/parley-fuzz-dispatch-XXXXXX");
    if (!mkdtemp(dir)) die("mkdtemp");
    null_fd = open("/dev/null", O_WRONLY | O_CLOEXEC);
    if (null_fd < 0) die("open /dev/null");
    config_defaults(&srv.cfg);
    snprintf(srv.cfg.data_dir, sizeof srv.cfg.data_dir, "%s", dir);
    srv.cfg.fsync = FSYNC_OFF;          /* durability is not what this explores */
    srv.cfg.workers = 1;
    /* quotas lifted: inputs explore the requests, not the token buckets */
    srv.cfg.send_rate = srv.cfg.user_send_rate = 1000000;
    srv.cfg.write_rate = srv.cfg.user_write_rate = 1000000;
    srv.cfg.user_writer_share = 65536;
    log_set_level(LOG_ERROR);
    char *err = NULL;
    srv.store = store_open(dir, srv.cfg.retention_ms, srv.cfg.retention_sweep_ms, &err);
    if (!srv.store) die(err ? err : "store_open");
    /* the worker: what worker_new sets up, minus listener, epoll and thread */
    the_worker.srv = &srv;
    the_worker.index = 0;
    the_worker.epoll_fd = the_worker.listen_fd = the_worker.spare_fd = -1;
    if (mpsc_init(&the_worker.inbox, INBOX_CAP))
        die("worker set-up");
    workers[0] = &the_worker;
    srv.workers = workers;
    srv.n_workers = 1;
    static outbox port;   /* the writer's answers reach the_worker's inbox */
    outbox_local_init(&port, &srv);
    srv.outbox = &port;
    if (server_core_start(&srv)) die("server set-up");
    atexit(teardown);
    for (int i = 0; i < DISPATCH_USERS; i++) register_user(i);
    create_conversations();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    conn *c = open_conn();
    if (!(data[0] & DISPATCH_SIGNED_OUT)) sign_in(c, &users[data[0] & DISPATCH_USER_MASK]);
    size_t pos = 1;
    for (int frames = 0; frames < DISPATCH_MAX_FRAMES && size - pos >= 2; frames++) {
        size_t len = (size_t)data[pos] | (size_t)data[pos + 1] << 8;
        pos += 2;
        if (len > size - pos) break;
        /* a copy of exactly len bytes, so ASan sees any overread */
        uint8_t *msg = malloc(len ? len : 1);
        if (!msg) die("out of memory");
        memcpy(msg, data + pos, len);
        session_handle(&the_worker, c, msg, len);
        free(msg);
        pos += len;
        if (c->state != CONN_WS) break;     /* closed (undecodable frame): the loop stops reading */
        if (c->signed_in && c->user_id == 0) die("signed in as user 0");
        pump_inbox(c);
        /* keep what a slow socket would hold (the output cap is reachable),
         * drop the rest */
        if (buf_len(&c->out) > srv.cfg.conn_output_cap) discard_output(c);
    }
    pump_inbox(c);
    close_conn(c);
    return 0;
}
