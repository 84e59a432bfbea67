/* test_protocol.c -- the wire, raw (not through libparley): HTTP head
 * errors, subprotocol negotiation, WebSocket framing violations and their
 * close codes, undecodable and empty requests, and that a bad connection
 * affects only itself. Uses the harness's raw connections (h_raw_*) and
 * the shared codecs in src/net (ws.h) to build frames and read the
 * server's. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../check.h"
#include "harness.h"
#include "net/ws.h"

#define NEED(x) CHECK((x), "%s", #x)

static h_server S;

/* Raw connections are the harness's (h_raw_*, 1 MiB buffer, 5 s bounds). */

/* Upgrade request with the given Sec-WebSocket-Protocol value (NULL: no
 * header). Returns the HTTP status, or -1. */
static int raw_upgrade(h_raw *w, const char *protocol) {
    if (h_raw_connect(S.port, NULL, w) != 0) return -1;
    int st = h_raw_upgrade(w, protocol);
    if (st == 101) {
        if (!w->upgrade_accept_ok) {
            fprintf(stderr, "  bad Sec-WebSocket-Accept\n");
            return -1;
        }
        if (strcmp(w->upgrade_protocol, "parley.v1") != 0) {
            fprintf(stderr, "  101 with Sec-WebSocket-Protocol '%s'\n", w->upgrade_protocol);
            return 1010; /* upgraded without agreeing on parley.v1: also a failure */
        }
    }
    return st;
}

/* A parley.v1 connection that has read its Challenge. 0 or -1. */
static int raw_open(h_raw *w) {
    int st = raw_upgrade(w, "parley.v1");
    if (st != 101) {
        fprintf(stderr, "  upgrade: status %d\n", st);
        return -1;
    }
    Parley__V1__Frame *f = h_raw_next_frame(w, NULL);
    int ok = f && f->body_case == PARLEY__V1__FRAME__BODY_CHALLENGE && f->challenge &&
             f->challenge->nonce.len == 32 && f->request_id == 0;
    if (ok) memcpy(w->nonce, f->challenge->nonce.data, 32);
    if (f) parley__v1__frame__free_unpacked(f, NULL);
    if (!ok) fprintf(stderr, "  no Challenge after the upgrade\n");
    return ok ? 0 : -1;
}

/* The server's Close code (h_raw_expect_close, 256 messages at most), but
 * a reset is 0 (no close came); an orderly end without one is 1006. */
static int raw_expect_close(h_raw *w) {
    int code = h_raw_expect_close(w, 256);
    return code == 1006 && w->reset ? 0 : code;
}

/* After a close frame the server should end the TCP connection too: an
 * orderly end, not a reset. */
static int raw_wait_eof(h_raw *w) { return h_raw_wait_eof(w) && !w->reset; }

/* Registers a fresh user on the raw connection (signing the challenge). */
static int raw_register(h_raw *w, const char *name) {
    if (h_raw_send_register(w, name, 1) != 0) return -1;
    Parley__V1__Frame *r = h_raw_next_frame(w, NULL);
    int ok = r && r->request_id == 1 && r->body_case == PARLEY__V1__FRAME__BODY_RESPONSE &&
             r->response->status == PARLEY__V1__STATUS__OK;
    if (!ok)
        fprintf(stderr, "  raw RegisterUser: %s\n",
                r && r->body_case == PARLEY__V1__FRAME__BODY_RESPONSE ? r->response->error
                                                                      : "no response");
    if (r) parley__v1__frame__free_unpacked(r, NULL);
    return ok ? 0 : -1;
}

static unsigned raw_names;
static void raw_name(char *out, size_t cap) {
    snprintf(out, cap, "raw%u_%u", (unsigned)getpid() % 100000u, ++raw_names);
}

/* ------------------------------------------------------------------ */

static void healthz_and_metrics(void) {
    int st = 0;
    char body[256];
    NEED(h_http_get(S.port, "/healthz", &st, body, sizeof body) == 0);
    CHECK(st == 200, "/healthz status %d", st);
    CHECK(strncmp(body, "ok", 2) == 0, "/healthz body '%s'", body);
    char *m = h_calloc(1, 1 << 20);
    NEED(m);
    int r = h_http_get(S.port, "/metrics", &st, m, 1 << 20);
    int has = r == 0 && st == 200 && strstr(m, "parley_connections") != NULL;
    h_free(m);
    CHECK(has, "/metrics: r=%d status %d, parley_connections present %d", r, st, has);
    double v;
    CHECK(h_metric(&S, "parley_connections", &v) == 0, "parley_connections has no sample");
}

static void malformed_http_400(void) {
    h_raw w;
    NEED(h_raw_connect(S.port, NULL, &w) == 0);
    const char *bad = "THIS IS NOT HTTP\r\n\r\n";
    NEED(send(w.fd, bad, strlen(bad), MSG_NOSIGNAL) == (ssize_t)strlen(bad));
    int st = h_raw_read_head(&w);
    /* then the server closes */
    int eof = 0;
    uint64_t deadline = h_now_ms() + (uint64_t)w.io_ms;
    while (h_now_ms() < deadline) {
        char tmp[4096];
        ssize_t n = recv(w.fd, tmp, sizeof tmp, 0);
        if (n == 0) {
            eof = 1;
            break;
        }
        if (n < 0 && errno != EINTR) break;
    }
    h_raw_close(&w);
    CHECK(st == 400, "malformed request head: status %d, want 400", st);
    CHECK(eof, "connection not closed after the 400");
}

static void subprotocol_required(void) {
    h_raw w;
    int st = raw_upgrade(&w, NULL);
    h_raw_close(&w);
    CHECK(st != 101 && st != 1010, "upgrade without Sec-WebSocket-Protocol: status %d", st);
    CHECK(st >= 400, "upgrade without subprotocol: status %d, want a 4xx", st);
    st = raw_upgrade(&w, "chat, superchat");
    h_raw_close(&w);
    CHECK(st != 101 && st != 1010, "upgrade with only unknown subprotocols: status %d", st);
    /* parley.v1 among others is fine */
    st = raw_upgrade(&w, "chat, parley.v1");
    h_raw_close(&w);
    CHECK(st == 101, "upgrade offering 'chat, parley.v1': status %d", st);
}

static void unmasked_frame_1002(void) {
    h_raw w;
    NEED(raw_open(&w) == 0);
    uint8_t payload[4] = { 0x08, 0x01, 0, 0 };
    NEED(h_raw_send_ws(&w, WS_OP_BINARY, 1, payload, 2, 0) == 0);
    int code = raw_expect_close(&w);
    int eof = raw_wait_eof(&w);
    h_raw_close(&w);
    CHECK(code == 1002, "unmasked client frame: close %d, want 1002", code);
    CHECK(eof, "connection still open after the close");
}

static void bad_opcode_1002(void) {
    h_raw w;
    NEED(raw_open(&w) == 0);
    uint8_t payload[2] = { 0x08, 0x01 };
    NEED(h_raw_send_ws(&w, 0x3, 1, payload, 2, 1) == 0);
    int code = raw_expect_close(&w);
    h_raw_close(&w);
    CHECK(code == 1002, "reserved opcode 0x3: close %d, want 1002", code);
    /* reserved bits set */
    NEED(raw_open(&w) == 0);
    uint8_t fr[2 + 4 + 2] = { 0x80 | 0x40 | WS_OP_BINARY, 0x80 | 2, 1, 2, 3, 4, 0x08 ^ 1, 0x01 ^ 2 };
    NEED(send(w.fd, fr, sizeof fr, MSG_NOSIGNAL) == (ssize_t)sizeof fr);
    code = raw_expect_close(&w);
    h_raw_close(&w);
    CHECK(code == 1002, "RSV1 set: close %d, want 1002", code);
}

static void oversized_frame_1009(void) {
    h_raw w;
    NEED(raw_open(&w) == 0);
    uint8_t hdr[WS_MAX_HEADER];
    uint8_t mask[4] = { 1, 2, 3, 4 };
    size_t h = ws_write_header(hdr, WS_OP_BINARY, true, (uint64_t)1 << 40, mask);
    NEED(send(w.fd, hdr, h, MSG_NOSIGNAL) == (ssize_t)h);
    uint8_t some[64] = { 0 };
    send(w.fd, some, sizeof some, MSG_NOSIGNAL);
    int code = raw_expect_close(&w);
    h_raw_close(&w);
    CHECK(code == 1009, "2^40-byte frame header: close %d, want 1009", code);
}

static void text_frames(void) {
    h_raw w;
    NEED(raw_open(&w) == 0);
    const uint8_t bad[] = { 'h', 0xff, 0xfe, 'i' };
    NEED(h_raw_send_ws(&w, WS_OP_TEXT, 1, bad, sizeof bad, 1) == 0);
    int code = raw_expect_close(&w);
    h_raw_close(&w);
    CHECK(code == 1007, "text frame with invalid UTF-8: close %d, want 1007", code);

    NEED(raw_open(&w) == 0);
    const char *good = "hello, parley";
    NEED(h_raw_send_ws(&w, WS_OP_TEXT, 1, good, strlen(good), 1) == 0);
    code = raw_expect_close(&w);
    h_raw_close(&w);
    /* well-formed, just not what parley.v1 speaks (binary only) */
    CHECK(code == 1003, "valid UTF-8 text frame: close %d, want 1003", code);
}

static void undecodable_protobuf_isolated(void) {
    /* a healthy libparley client and a healthy raw connection first */
    h_dev *a = h_user_new(&S, NULL), *b = h_user_new(&S, NULL);
    NEED(a && b);
    uint64_t conv = 0;
    NEED(pc_open_direct(a->c, b->id.user_id, &conv) == 0);
    h_raw ok;
    NEED(raw_open(&ok) == 0);
    char name[40];
    raw_name(name, sizeof name);
    NEED(raw_register(&ok, name) == 0);

    h_raw w;
    NEED(raw_open(&w) == 0);
    /* field 1 (request_id) as a varint that never ends, then a length-
     * delimited field claiming more bytes than exist */
    const uint8_t junk[] = { 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                             0xff, 0x52, 0x7f, 0x01 };
    NEED(h_raw_send_ws(&w, WS_OP_BINARY, 1, junk, sizeof junk, 1) == 0);
    int close_code = 0;
    Parley__V1__Frame *r = h_raw_next_frame(&w, &close_code);
    /* a binary message that is no Frame: the data is inconsistent with the
     * message type, so the connection closes with 1007 and nothing else */
    int got_frame = r != NULL;
    if (r) parley__v1__frame__free_unpacked(r, NULL);
    h_raw_close(&w);
    CHECK(!got_frame && close_code == 1007,
          "undecodable protobuf: %s, close code %d, want close 1007",
          got_frame ? "a frame came back" : "no frame", close_code);

    /* nobody else noticed */
    CHECK(h_server_alive(&S), "server died");
    uint64_t seq = h_send(a, conv, "still here");
    CHECK(seq != 0, "other client's send failed after the bad frame");
    Parley__V1__ListConversations lc = PARLEY__V1__LIST_CONVERSATIONS__INIT;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = 9;
    f.body_case = PARLEY__V1__FRAME__BODY_LIST_CONVERSATIONS;
    f.list_conversations = &lc;
    NEED(h_raw_send_frame(&ok, &f) == 0);
    int st = h_raw_await_response(&ok, 9, 32, NULL);
    h_raw_close(&ok);
    CHECK(st == PARLEY__V1__STATUS__OK, "other raw connection's request: status %d", st);
    h_dev_free(a);
    h_dev_free(b);
}

static void empty_and_unknown_requests(void) {
    h_raw w;
    NEED(raw_open(&w) == 0);
    /* before sign-in: refused either way */
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = 5;
    NEED(h_raw_send_frame(&w, &f) == 0);
    int st = h_raw_await_response(&w, 5, 32, NULL);
    CHECK(st == PARLEY__V1__STATUS__BAD_REQUEST || st == PARLEY__V1__STATUS__UNAUTHENTICATED,
          "empty request before sign-in: status %d", st);

    char name[40];
    raw_name(name, sizeof name);
    NEED(raw_register(&w, name) == 0);
    /* empty: request_id and no body */
    f.request_id = 6;
    NEED(h_raw_send_frame(&w, &f) == 0);
    st = h_raw_await_response(&w, 6, 32, NULL);
    CHECK(st == PARLEY__V1__STATUS__BAD_REQUEST, "empty request: status %d, want BAD_REQUEST",
          st);
    /* unknown: request_id 7 plus field 99 (varint) that this schema does not have */
    const uint8_t unknown[] = { 0x08, 0x07, 0x98, 0x06, 0x01 };
    NEED(h_raw_send_ws(&w, WS_OP_BINARY, 1, unknown, sizeof unknown, 1) == 0);
    st = h_raw_await_response(&w, 7, 32, NULL);
    CHECK(st == PARLEY__V1__STATUS__BAD_REQUEST, "unknown request: status %d, want BAD_REQUEST",
          st);
    /* a server-to-client body sent by the client */
    Parley__V1__SyncDone sd = PARLEY__V1__SYNC_DONE__INIT;
    f.request_id = 8;
    f.body_case = PARLEY__V1__FRAME__BODY_SYNC_DONE;
    f.sync_done = &sd;
    NEED(h_raw_send_frame(&w, &f) == 0);
    st = h_raw_await_response(&w, 8, 32, NULL);
    CHECK(st == PARLEY__V1__STATUS__BAD_REQUEST, "SyncDone as a request: status %d", st);
    /* the connection still works */
    Parley__V1__ListConversations lc = PARLEY__V1__LIST_CONVERSATIONS__INIT;
    f.request_id = 10;
    f.body_case = PARLEY__V1__FRAME__BODY_LIST_CONVERSATIONS;
    f.list_conversations = &lc;
    NEED(h_raw_send_frame(&w, &f) == 0);
    st = h_raw_await_response(&w, 10, 32, NULL);
    h_raw_close(&w);
    CHECK(st == PARLEY__V1__STATUS__OK, "request after the bad ones: status %d", st);
}

static void fragmented_request_ping_and_close(void) {
    h_raw w;
    NEED(raw_open(&w) == 0);
    char name[40];
    raw_name(name, sizeof name);
    NEED(raw_register(&w, name) == 0);
    /* a request split over three fragments with a ping in between */
    Parley__V1__ListConversations lc = PARLEY__V1__LIST_CONVERSATIONS__INIT;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = 21;
    f.body_case = PARLEY__V1__FRAME__BODY_LIST_CONVERSATIONS;
    f.list_conversations = &lc;
    uint8_t b[64];
    size_t len = parley__v1__frame__pack(&f, b);
    NEED(len >= 3);
    NEED(h_raw_send_ws(&w, WS_OP_BINARY, 0, b, 1, 1) == 0);
    NEED(h_raw_send_ws(&w, WS_OP_PING, 1, "pp", 2, 1) == 0);
    NEED(h_raw_send_ws(&w, WS_OP_CONT, 0, b + 1, 1, 1) == 0);
    NEED(h_raw_send_ws(&w, WS_OP_CONT, 1, b + 2, len - 2, 1) == 0);
    int got_pong = 0, st = -1;
    for (int i = 0; i < 16 && st < 0; i++) {
        ws_message m;
        if (h_raw_next_message(&w, &m) != 1) break;
        if (m.kind == WS_MSG_PONG && m.len == 2 && memcmp(m.data, "pp", 2) == 0) got_pong = 1;
        if (m.kind == WS_MSG_BINARY) {
            Parley__V1__Frame *r = parley__v1__frame__unpack(NULL, m.len, m.data);
            if (r && r->request_id == 21 && r->body_case == PARLEY__V1__FRAME__BODY_RESPONSE)
                st = r->response->status;
            if (r) parley__v1__frame__free_unpacked(r, NULL);
        }
    }
    CHECK(got_pong, "no pong echoing the ping's payload");
    CHECK(st == PARLEY__V1__STATUS__OK, "fragmented request: status %d", st);
    /* clean close: the server answers with a close frame */
    uint8_t cp[125];
    size_t cl = ws_close_payload(cp, 1000, "bye");
    NEED(h_raw_send_ws(&w, WS_OP_CLOSE, 1, cp, cl, 1) == 0);
    int code = raw_expect_close(&w);
    h_raw_close(&w);
    CHECK(code == 1000, "close handshake: server answered %d, want 1000", code);
}

int main(void) {
    if (sodium_init() < 0) return 1;
    if (h_server_start(&S, NULL) != 0) {
        printf("FAIL server_starts\n");
        return 1;
    }
    RUN(healthz_and_metrics);
    RUN(malformed_http_400);
    RUN(subprotocol_required);
    RUN(unmasked_frame_1002);
    RUN(bad_opcode_1002);
    RUN(oversized_frame_1009);
    RUN(text_frames);
    RUN(undecodable_protobuf_isolated);
    RUN(empty_and_unknown_requests);
    RUN(fragmented_request_ping_and_close);
    if (!h_server_survived(&S)) check_failures_total++;
    h_server_destroy(&S);
    CHECK_EXIT();
}
