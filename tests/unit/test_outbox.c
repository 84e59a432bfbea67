/* test_outbox.c -- the write path and fan-out reach devices only through
 * their port (chat/outbox.h): a writer and a fan-out run here with no
 * gateway at all (no workers) and a port that records every call, and every
 * answer, sign-in, delivery and device-wide order arrives at that port with
 * the right connection and contents. Also: each kind of outbound held by
 * the writer maps to its port call, and a frame too big for the stack
 * buffer is packed whole. */
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"
#include "chat/outbox.h"
#include "chat/reply.h"
#include "chat/writer.h"
#include "core/clock.h"
#include "core/quota.h"
#include "fanout/fanout.h"
#include "queue/queue.h"
#include "registry/registry.h"
#include "store/store.h"

/* ------------------------------------------------------ a recording port */

typedef enum call_kind { CALL_ANSWER, CALL_PUSH, CALL_DELIVER, CALL_CLOSE_DEVICE, CALL_DROP_PRESENCE } call_kind;

typedef struct call {
    call_kind kind;
    uint64_t conn_id, user, about_user, user_seq;
    uint32_t device;
    uint8_t *bytes;     /* owned copy: the frame, or the delivered Message */
    size_t len;
} call;

enum { MAX_CALLS = 512, WAIT_MS = 20000 };

static struct {
    pthread_mutex_t lock;
    call calls[MAX_CALLS];
    size_t n;
    int overflow;
} rec = {.lock = PTHREAD_MUTEX_INITIALIZER};

static void record(call c, const uint8_t *bytes, size_t len) {
    c.bytes = malloc(len ? len : 1);
    if (!c.bytes) abort();
    if (len) memcpy(c.bytes, bytes, len);
    c.len = len;
    pthread_mutex_lock(&rec.lock);
    if (rec.n < MAX_CALLS) rec.calls[rec.n++] = c;
    else rec.overflow = 1, free(c.bytes);
    pthread_mutex_unlock(&rec.lock);
}

static void rec_answer(void *impl, uint64_t conn_id, const uint8_t *frame, size_t len, uint64_t user,
                       uint32_t device) {
    (void)impl;
    record((call){.kind = CALL_ANSWER, .conn_id = conn_id, .user = user, .device = device}, frame, len);
}

static void rec_push(void *impl, uint64_t conn_id, const uint8_t *frame, size_t len) {
    (void)impl;
    record((call){.kind = CALL_PUSH, .conn_id = conn_id}, frame, len);
}

static void rec_deliver(void *impl, const outbox_delivery *d, size_t n) {
    (void)impl;
    for (size_t i = 0; i < n; i++)
        record((call){.kind = CALL_DELIVER, .conn_id = d[i].conn_id, .user = d[i].user_id, .user_seq = d[i].user_seq},
               d[i].message->data, d[i].message->len);
}

static void rec_close_device(void *impl, uint64_t user, uint32_t device) {
    (void)impl;
    record((call){.kind = CALL_CLOSE_DEVICE, .user = user, .device = device}, NULL, 0);
}

static void rec_drop_presence(void *impl, uint64_t user, uint64_t about_user) {
    (void)impl;
    record((call){.kind = CALL_DROP_PRESENCE, .user = user, .about_user = about_user}, NULL, 0);
}

static const outbox_ops rec_ops = {rec_answer, rec_push, rec_deliver, rec_close_device, rec_drop_presence};
static const outbox rec_port = {&rec_ops, NULL};

static void rec_clear(void) {
    pthread_mutex_lock(&rec.lock);
    for (size_t i = 0; i < rec.n; i++) free(rec.calls[i].bytes);
    rec.n = 0;
    rec.overflow = 0;
    pthread_mutex_unlock(&rec.lock);
}

/* Waits (bounded) for the first call of kind to conn_id (any connection for
 * the orders, which name none) matching `user` when non-zero; takes it out
 * of the record into *out (its bytes: the caller frees) and returns 1, or 0
 * on timeout. */
static int wait_call(call_kind kind, uint64_t conn_id, uint64_t user, call *out) {
    uint64_t deadline = clock_mono_ms() + WAIT_MS;
    for (;;) {
        pthread_mutex_lock(&rec.lock);
        for (size_t i = 0; i < rec.n; i++) {
            call *c = &rec.calls[i];
            bool conn_ok = kind == CALL_CLOSE_DEVICE || kind == CALL_DROP_PRESENCE || c->conn_id == conn_id;
            if (c->kind == kind && conn_ok && (user == 0 || c->user == user)) {
                *out = *c;   /* taken: its bytes go to the caller */
                memmove(c, c + 1, (rec.n - i - 1) * sizeof *c);
                rec.n--;
                pthread_mutex_unlock(&rec.lock);
                return 1;
            }
        }
        pthread_mutex_unlock(&rec.lock);
        if (clock_mono_ms() >= deadline) return 0;
        usleep(5000);
    }
}

/* ---------------------------------------------------------- the server */

static char dir[64];
static server srv;

static int start(void) {
    snprintf(dir, sizeof dir, "/tmp/parley-outbox-XXXXXX");
    if (!mkdtemp(dir)) return -1;
    config_defaults(&srv.cfg);
    snprintf(srv.cfg.data_dir, sizeof srv.cfg.data_dir, "%s", dir);
    srv.cfg.fsync = FSYNC_OFF;
    char *err = NULL;
    srv.store = store_open(dir, 0, 0, &err);
    free(err);
    if (!srv.store) return -1;
    srv.n_workers = 0;   /* no gateway: the port is the only way out */
    srv.workers = NULL;
    srv.outbox = &rec_port;
    return server_core_start(&srv);
}

static void stop(void) {
    server_core_stop(&srv);
    server_core_free(&srv);
    if (srv.store) store_close(srv.store);
    memset(&srv, 0, sizeof srv);
    rec_clear();
    if (!dir[0]) return;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", dir);
    dir[0] = 0;
}

/* Submits frame (packed, then unpacked: the request owns a heap copy) as
 * the device (user, device) on conn_id. 0 or -1. */
static int submit(uint64_t conn_id, uint64_t user, uint32_t device, Parley__V1__Frame *f) {
    size_t n = parley__v1__frame__get_packed_size(f);
    uint8_t *b = malloc(n ? n : 1);
    if (!b) return -1;
    parley__v1__frame__pack(f, b);
    chat_request *r = calloc(1, sizeof *r);
    if (!r) abort();
    r->op = CHAT_FRAME;
    r->conn_id = conn_id;
    r->request_id = f->request_id;
    r->user_id = user;
    r->device_id = device;
    r->frame = parley__v1__frame__unpack(NULL, n, b);
    free(b);
    if (!r->frame || writer_submit(srv.writer, r) != 0) {
        chat_request_free(r);
        return -1;
    }
    return 0;
}

/* The Response in an answer's bytes (caller frees), or NULL. */
static Parley__V1__Frame *response_of(const call *c, uint64_t request_id) {
    Parley__V1__Frame *f = parley__v1__frame__unpack(NULL, c->len, c->bytes);
    if (f && (f->body_case != PARLEY__V1__FRAME__BODY_RESPONSE || f->request_id != request_id)) {
        parley__v1__frame__free_unpacked(f, NULL);
        return NULL;
    }
    return f;
}

/* Registers name on conn_id; the port's answer signs the connection in.
 * Returns the user id, or 0. */
static uint64_t register_user(uint64_t conn_id, const char *name) {
    uint8_t pk[32];
    randombytes_buf(pk, sizeof pk);
    Parley__V1__RegisterUser ru = PARLEY__V1__REGISTER_USER__INIT;
    ru.name = (char *)name;
    ru.device_public_key.data = pk;
    ru.device_public_key.len = sizeof pk;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = 1;
    f.body_case = PARLEY__V1__FRAME__BODY_REGISTER_USER;
    f.register_user = &ru;
    call c;
    if (submit(conn_id, 0, 0, &f) != 0 || !wait_call(CALL_ANSWER, conn_id, 0, &c)) return 0;
    Parley__V1__Frame *resp = response_of(&c, 1);
    uint64_t user = 0;
    if (resp && resp->response->status == PARLEY__V1__STATUS__OK &&
        resp->response->result_case == PARLEY__V1__RESPONSE__RESULT_REGISTERED &&
        resp->response->registered->user_id == c.user && c.device == 1)
        user = c.user;
    else
        fprintf(stderr, "  register %s: answer user %llu device %u\n", name, (unsigned long long)c.user, c.device);
    if (resp) parley__v1__frame__free_unpacked(resp, NULL);
    free(c.bytes);
    return user;
}

/* Sends request f as (user, device) on conn_id and returns the answer's
 * Response frame (caller frees), or NULL. */
static Parley__V1__Frame *request(uint64_t conn_id, uint64_t user, uint32_t device, Parley__V1__Frame *f) {
    call c;
    if (submit(conn_id, user, device, f) != 0 || !wait_call(CALL_ANSWER, conn_id, 0, &c)) return NULL;
    Parley__V1__Frame *resp = response_of(&c, f->request_id);
    free(c.bytes);
    return resp;
}

enum { ALICE_CONN = 70, BOB_CONN = 80, BOB2_CONN = 81 };

/* The whole round: sign-ins, an answer, a send answered and delivered, a
 * block (presence order), a device linked and removed (close order) -- all
 * through the recording port, with no worker anywhere. */
static void write_path_reaches_devices_only_through_port(void) {
    rec_clear();
    CHECK(start() == 0, "writer and fan-out did not start");
    uint64_t alice = register_user(ALICE_CONN, "alice"), bob = register_user(BOB_CONN, "bob");
    CHECK(alice && bob, "registrations answered through the port (alice %llu, bob %llu)",
          (unsigned long long)alice, (unsigned long long)bob);
    registry_entry ea = {.conn_id = ALICE_CONN, .device_id = 1}, eb = {.conn_id = BOB_CONN, .device_id = 1};
    CHECK(registry_add(srv.registry, alice, &ea) == 0 && registry_add(srv.registry, bob, &eb) == 0, "registry");

    Parley__V1__OpenDirect od = PARLEY__V1__OPEN_DIRECT__INIT;
    od.peer_user_id = bob;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = 2;
    f.body_case = PARLEY__V1__FRAME__BODY_OPEN_DIRECT;
    f.open_direct = &od;
    Parley__V1__Frame *resp = request(ALICE_CONN, alice, 1, &f);
    CHECK(resp && resp->response->status == PARLEY__V1__STATUS__OK &&
              resp->response->result_case == PARLEY__V1__RESPONSE__RESULT_CONVERSATION,
          "OpenDirect answered OK with a conversation");
    uint64_t conv = resp->response->conversation->conversation_id;
    parley__v1__frame__free_unpacked(resp, NULL);

    Parley__V1__SendMessage sm = PARLEY__V1__SEND_MESSAGE__INIT;
    sm.conversation_id = conv;
    sm.client_msg_id.data = (uint8_t *)"m1";
    sm.client_msg_id.len = 2;
    sm.type = PARLEY__V1__MESSAGE_TYPE__TEXT;
    sm.body.data = (uint8_t *)"hello";
    sm.body.len = 5;
    f = (Parley__V1__Frame)PARLEY__V1__FRAME__INIT;
    f.request_id = 3;
    f.body_case = PARLEY__V1__FRAME__BODY_SEND_MESSAGE;
    f.send_message = &sm;
    resp = request(ALICE_CONN, alice, 1, &f);
    CHECK(resp && resp->response->status == PARLEY__V1__STATUS__OK &&
              resp->response->result_case == PARLEY__V1__RESPONSE__RESULT_SENT,
          "SendMessage answered Sent");
    uint64_t seq = resp->response->sent->seq;
    parley__v1__frame__free_unpacked(resp, NULL);

    /* fan-out: the message to bob's connection, as an inbox event of bob
     * (after the conversation's MEMBERSHIP event) */
    int ok = 0, events = 0;
    for (; events < 8 && !ok; events++) {
        call d;
        if (!wait_call(CALL_DELIVER, BOB_CONN, bob, &d)) break;
        Parley__V1__Message *m = parley__v1__message__unpack(NULL, d.len, d.bytes);
        free(d.bytes);
        CHECK(m, "the delivered bytes are a Message");
        ok = m->conversation_id == conv && m->seq == seq && m->sender_user_id == alice && m->body.len == 5 &&
             memcmp(m->body.data, "hello", 5) == 0 && d.user_seq > 0;
        parley__v1__message__free_unpacked(m, NULL);
    }
    CHECK(ok, "no delivery of seq %llu to bob's connection through the port among %d", (unsigned long long)seq,
          events);

    /* bob blocks alice: alice's connections stop hearing bob's presence */
    Parley__V1__BlockUser bu = PARLEY__V1__BLOCK_USER__INIT;
    bu.user_id = alice;
    f = (Parley__V1__Frame)PARLEY__V1__FRAME__INIT;
    f.request_id = 4;
    f.body_case = PARLEY__V1__FRAME__BODY_BLOCK_USER;
    f.block_user = &bu;
    resp = request(BOB_CONN, bob, 1, &f);
    CHECK(resp && resp->response->status == PARLEY__V1__STATUS__OK, "BlockUser answered OK");
    parley__v1__frame__free_unpacked(resp, NULL);
    call p;
    CHECK(wait_call(CALL_DROP_PRESENCE, 0, alice, &p), "no drop-presence order through the port");
    free(p.bytes);
    CHECK(p.about_user == bob, "drop presence about %llu, want bob %llu", (unsigned long long)p.about_user,
          (unsigned long long)bob);

    /* bob links a second device and removes it from the first */
    Parley__V1__CreateLinkToken lt = PARLEY__V1__CREATE_LINK_TOKEN__INIT;
    f = (Parley__V1__Frame)PARLEY__V1__FRAME__INIT;
    f.request_id = 5;
    f.body_case = PARLEY__V1__FRAME__BODY_CREATE_LINK_TOKEN;
    f.create_link_token = &lt;
    resp = request(BOB_CONN, bob, 1, &f);
    CHECK(resp && resp->response->status == PARLEY__V1__STATUS__OK &&
              resp->response->result_case == PARLEY__V1__RESPONSE__RESULT_LINK_TOKEN,
          "CreateLinkToken answered with a token");
    char token[128];
    snprintf(token, sizeof token, "%s", resp->response->link_token->token);
    parley__v1__frame__free_unpacked(resp, NULL);
    uint8_t pk[32];
    randombytes_buf(pk, sizeof pk);
    Parley__V1__RegisterDevice rd = PARLEY__V1__REGISTER_DEVICE__INIT;
    rd.token = token;
    rd.device_public_key.data = pk;
    rd.device_public_key.len = sizeof pk;
    f = (Parley__V1__Frame)PARLEY__V1__FRAME__INIT;
    f.request_id = 6;
    f.body_case = PARLEY__V1__FRAME__BODY_REGISTER_DEVICE;
    f.register_device = &rd;
    call a;
    CHECK(submit(BOB2_CONN, 0, 0, &f) == 0 && wait_call(CALL_ANSWER, BOB2_CONN, 0, &a), "RegisterDevice answered");
    free(a.bytes);
    CHECK(a.user == bob && a.device == 2, "the answer signs conn %d in as %llu/%u, want bob/2", BOB2_CONN,
          (unsigned long long)a.user, a.device);
    Parley__V1__RemoveDevice rm = PARLEY__V1__REMOVE_DEVICE__INIT;
    rm.device_id = 2;
    f = (Parley__V1__Frame)PARLEY__V1__FRAME__INIT;
    f.request_id = 7;
    f.body_case = PARLEY__V1__FRAME__BODY_REMOVE_DEVICE;
    f.remove_device = &rm;
    resp = request(BOB_CONN, bob, 1, &f);
    CHECK(resp && resp->response->status == PARLEY__V1__STATUS__OK, "RemoveDevice answered OK");
    parley__v1__frame__free_unpacked(resp, NULL);
    call cd;
    CHECK(wait_call(CALL_CLOSE_DEVICE, 0, bob, &cd), "no close-device order through the port");
    free(cd.bytes);
    CHECK(cd.device == 2, "close device %u, want 2", cd.device);
    CHECK(!rec.overflow, "more than %d port calls recorded", MAX_CALLS);
    stop();
}

/* Each kind an outbound holds becomes its own port call with its fields;
 * a frame bigger than the stack buffer of reply_answer_now arrives whole. */
static void outbound_kinds_map_to_port_calls(void) {
    rec_clear();
    outbound *ans = reply_ok(11, 5);
    ans->user_id = 42;
    ans->device_id = 3;
    outbound_send(&rec_port, ans);
    Parley__V1__Frame pf = PARLEY__V1__FRAME__INIT;
    outbound_send(&rec_port, reply_pack(OUT_PUSH, 12, &pf));
    outbound *close = outbound_new(OUT_CLOSE_DEVICE, 0, 0);
    close->user_id = 7;
    close->device_id = 2;
    outbound_send(&rec_port, close);
    outbound *drop = outbound_new(OUT_DROP_PRESENCE, 0, 0);
    drop->user_id = 8;
    drop->about_user = 9;
    outbound_send(&rec_port, drop);
    char big[4000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = 0;
    Parley__V1__Frame bf;
    Parley__V1__Response br;
    reply_init(&bf, &br, 6, PARLEY__V1__STATUS__BAD_REQUEST, big);
    reply_answer_now(&rec_port, 13, &bf);

    pthread_mutex_lock(&rec.lock);
    size_t n = rec.n;
    call c[5];
    memcpy(c, rec.calls, (n < 5 ? n : 5) * sizeof c[0]);
    pthread_mutex_unlock(&rec.lock);
    CHECK(n == 5, "%zu port calls, want 5", n);
    Parley__V1__Frame *f0 = response_of(&c[0], 5);
    int ok0 = f0 && f0->response->status == PARLEY__V1__STATUS__OK;
    if (f0) parley__v1__frame__free_unpacked(f0, NULL);
    CHECK(c[0].kind == CALL_ANSWER && c[0].conn_id == 11 && c[0].user == 42 && c[0].device == 3 && ok0,
          "answer: kind %d conn %llu signs in %llu/%u", c[0].kind, (unsigned long long)c[0].conn_id,
          (unsigned long long)c[0].user, c[0].device);
    CHECK(c[1].kind == CALL_PUSH && c[1].conn_id == 12, "push: kind %d conn %llu", c[1].kind,
          (unsigned long long)c[1].conn_id);
    CHECK(c[2].kind == CALL_CLOSE_DEVICE && c[2].user == 7 && c[2].device == 2, "close device: %d %llu/%u",
          c[2].kind, (unsigned long long)c[2].user, c[2].device);
    CHECK(c[3].kind == CALL_DROP_PRESENCE && c[3].user == 8 && c[3].about_user == 9, "drop presence: %d %llu %llu",
          c[3].kind, (unsigned long long)c[3].user, (unsigned long long)c[3].about_user);
    Parley__V1__Frame *f4 = response_of(&c[4], 6);
    int ok4 = f4 && f4->response->status == PARLEY__V1__STATUS__BAD_REQUEST && f4->response->error &&
              strcmp(f4->response->error, big) == 0;
    if (f4) parley__v1__frame__free_unpacked(f4, NULL);
    CHECK(c[4].kind == CALL_ANSWER && c[4].conn_id == 13 && ok4, "a %zu-byte answer did not arrive whole",
          sizeof big);
    rec_clear();
}

int main(void) {
    if (sodium_init() < 0) return 1;
    atexit(stop);   /* a failed CHECK leaves the threads and the directory */
    RUN(outbound_kinds_map_to_port_calls);
    RUN(write_path_reaches_devices_only_through_port);
    CHECK_EXIT();
}
