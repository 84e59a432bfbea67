/* test_signin.c -- sign-in on the raw wire: one signature signs in one
 * device once (a nonce is good for one attempt, one auth request at a time
 * per connection), the signed bytes include the Host the client connected
 * to, and registrations are limited per source address. */
#include <errno.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../check.h"
#include "harness.h"
#include "net/http.h"
#include "net/ws.h"

static h_server S;

enum { RAW_BUF = 1 << 16, IO_TIMEOUT_MS = 5000 };

typedef struct raw {
    int fd;
    uint8_t buf[RAW_BUF];
    size_t off, len;
    ws_reader rd;
    uint8_t nonce[32];
} raw;

static void raw_close(raw *w) {
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    ws_reader_free(&w->rd);
}

static int raw_fill(raw *w) {
    if (w->off > 0) {
        memmove(w->buf, w->buf + w->off, w->len - w->off);
        w->len -= w->off;
        w->off = 0;
    }
    if (w->len == RAW_BUF) return -1;
    ssize_t n = recv(w->fd, w->buf + w->len, RAW_BUF - w->len, 0);
    if (n < 0 && errno == EINTR) return 0;
    if (n <= 0) return -1;
    w->len += (size_t)n;
    return 0;
}

/* Next protobuf Frame from the server, NULL on close, EOF or timeout. */
static Parley__V1__Frame *raw_read(raw *w) {
    uint64_t deadline = h_now_ms() + IO_TIMEOUT_MS;
    while (h_now_ms() < deadline) {
        ws_message m;
        size_t used = 0;
        int r = ws_reader_feed(&w->rd, w->buf + w->off, w->len - w->off, &used, &m);
        w->off += used;
        if (r == WS_ERROR) return NULL;
        if (r == WS_READY) {
            if (m.kind == WS_MSG_CLOSE) return NULL;
            if (m.kind == WS_MSG_BINARY) return parley__v1__frame__unpack(NULL, m.len, m.data);
            continue;
        }
        if (raw_fill(w) < 0) return NULL;
    }
    return NULL;
}

static int raw_send(raw *w, const Parley__V1__Frame *f) {
    size_t len = parley__v1__frame__get_packed_size(f);
    uint8_t *out = malloc(WS_MAX_HEADER + len + 1);
    if (!out) return -1;
    uint8_t mask[4] = {1, 2, 3, 4};
    size_t h = ws_write_header(out, WS_OP_BINARY, true, len, mask);
    parley__v1__frame__pack(f, out + h);
    ws_mask(out + h, len, mask, 0);
    ssize_t n = send(w->fd, out, h + len, MSG_NOSIGNAL);
    free(out);
    return n == (ssize_t)(h + len) ? 0 : -1;
}

/* Connects, upgrades with Host: host, reads the Challenge. 0 or -1. */
static int raw_open(raw *w, const char *host) {
    memset(w, 0, sizeof *w);
    ws_reader_init(&w->rd, false, RAW_BUF);
    w->fd = h_tcp_connect(S.port, IO_TIMEOUT_MS);
    if (w->fd < 0) return -1;
    char key[25], req[512];
    ws_make_client_key(key);
    int n = snprintf(req, sizeof req,
                     "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                     "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n"
                     "Sec-WebSocket-Protocol: parley.v1\r\n\r\n", host, key);
    if (send(w->fd, req, (size_t)n, MSG_NOSIGNAL) != n) return -1;
    http_response res;
    int head = 0;
    while ((head = http_parse_response((const char *)w->buf, w->len, &res)) == 0)
        if (raw_fill(w) < 0) return -1;
    if (head < 0 || res.status != 101) return -1;
    w->off = (size_t)head;
    Parley__V1__Frame *f = raw_read(w);
    int ok = f && f->body_case == PARLEY__V1__FRAME__BODY_CHALLENGE && f->challenge->nonce.len == 32;
    if (ok) memcpy(w->nonce, f->challenge->nonce.data, 32);
    if (f) parley__v1__frame__free_unpacked(f, NULL);
    return ok ? 0 : -1;
}

/* "parley.v1 auth" || nonce || host (host NULL: the old form, no host) */
static void sign(const raw *w, const char *host, const uint8_t sk[64], uint8_t sig[64]) {
    uint8_t msg[14 + 32 + 256];
    size_t hl = host ? strlen(host) : 0;
    memcpy(msg, "parley.v1 auth", 14);
    memcpy(msg + 14, w->nonce, 32);
    if (hl) memcpy(msg + 46, host, hl);
    crypto_sign_detached(sig, NULL, msg, 46 + hl, sk);
}

static void register_frame(Parley__V1__Frame *f, Parley__V1__RegisterUser *ru, uint64_t id, char *name,
                           uint8_t pk[32], uint8_t sig[64]) {
    parley__v1__frame__init(f);
    parley__v1__register_user__init(ru);
    ru->name = name;
    ru->device_public_key = (ProtobufCBinaryData){32, pk};
    ru->device_name = "raw";
    ru->signature = (ProtobufCBinaryData){64, sig};
    f->request_id = id;
    f->body_case = PARLEY__V1__FRAME__BODY_REGISTER_USER;
    f->register_user = ru;
}

/* Reads until the response to request id; its status, or -1. Challenges
 * that come meanwhile refresh w->nonce. */
static int response_status(raw *w, uint64_t id, uint64_t *retry_after_ms) {
    for (int i = 0; i < 16; i++) {
        Parley__V1__Frame *f = raw_read(w);
        if (!f) return -1;
        int st = -2;
        if (f->body_case == PARLEY__V1__FRAME__BODY_CHALLENGE && f->challenge->nonce.len == 32)
            memcpy(w->nonce, f->challenge->nonce.data, 32);
        if (f->body_case == PARLEY__V1__FRAME__BODY_RESPONSE && f->request_id == id) {
            st = (int)f->response->status;
            if (retry_after_ms) *retry_after_ms = f->response->retry_after_ms;
        }
        parley__v1__frame__free_unpacked(f, NULL);
        if (st != -2) return st;
    }
    return -1;
}

static char host_of_server[64];

static void one_signature_signs_in_once(void) {
    CHECK(h_server_start(&S, NULL) == 0, "server did not start");
    snprintf(host_of_server, sizeof host_of_server, "127.0.0.1:%d", S.port);
    /* an existing device, to try a SignIn in the middle */
    h_dev *existing = h_user_new(&S, NULL);
    CHECK(existing, "user");
    raw w;
    CHECK(raw_open(&w, host_of_server) == 0, "raw connection");
    uint8_t pk[32], sk[64], sig[64], sig_in[64];
    crypto_sign_keypair(pk, sk);
    sign(&w, host_of_server, sk, sig);
    sign(&w, host_of_server, existing->id.secret_key, sig_in);
    /* five registrations with one signature, and a SignIn, before any answer */
    enum { N = 5 };
    char names[N][32];
    for (int i = 0; i < N; i++) {
        Parley__V1__Frame f;
        Parley__V1__RegisterUser ru;
        snprintf(names[i], sizeof names[i], "once%d_%d", i, S.port);
        register_frame(&f, &ru, (uint64_t)i + 1, names[i], pk, sig);
        CHECK(raw_send(&w, &f) == 0, "send %d", i);
    }
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    Parley__V1__SignIn si = PARLEY__V1__SIGN_IN__INIT;
    si.user_id = existing->id.user_id;
    si.device_id = existing->id.device_id;
    si.signature = (ProtobufCBinaryData){64, sig_in};
    f.request_id = 100;
    f.body_case = PARLEY__V1__FRAME__BODY_SIGN_IN;
    f.sign_in = &si;
    CHECK(raw_send(&w, &f) == 0, "send sign-in");
    /* the answers come in any order: collect them by request id */
    int status[N + 1], answered = 0;
    for (int i = 0; i <= N; i++) status[i] = -1;
    for (int i = 0; i < 64 && answered < N + 1; i++) {
        Parley__V1__Frame *a = raw_read(&w);
        if (!a) break;
        if (a->body_case == PARLEY__V1__FRAME__BODY_RESPONSE) {
            uint64_t rid = a->request_id == 100 ? 0 : a->request_id;
            if (rid <= N && status[rid] == -1) {
                status[rid] = (int)a->response->status;
                answered++;
            }
        }
        parley__v1__frame__free_unpacked(a, NULL);
    }
    int ok = 0, sign_in_status = status[0];
    for (int i = 1; i <= N; i++) ok += status[i] == PARLEY__V1__STATUS__OK;
    raw_close(&w);
    CHECK(ok == 1, "%d users registered with one signature, want 1", ok);
    CHECK(sign_in_status != PARLEY__V1__STATUS__OK, "a SignIn during a registration switched the connection");
    /* the names refused were not taken */
    uint64_t id = 0;
    int found = 0;
    for (int i = 0; i < N; i++) found += pc_lookup_user(existing->c, names[i], &id) == 0;
    CHECK(found == 1, "%d of the names exist, want 1", found);
    h_dev_free(existing);
    h_server_destroy(&S);
}

static void signature_covers_the_host(void) {
    CHECK(h_server_start(&S, NULL) == 0, "server did not start");
    snprintf(host_of_server, sizeof host_of_server, "127.0.0.1:%d", S.port);
    uint8_t pk[32], sk[64], sig[64];
    crypto_sign_keypair(pk, sk);
    char name[32];
    snprintf(name, sizeof name, "host_%d", S.port);
    const char *wrong[] = {NULL, "chat.example.org:443"};   /* no host; another host */
    for (int i = 0; i < 2; i++) {
        raw w;
        CHECK(raw_open(&w, host_of_server) == 0, "raw connection");
        sign(&w, wrong[i], sk, sig);
        Parley__V1__Frame f;
        Parley__V1__RegisterUser ru;
        register_frame(&f, &ru, 1, name, pk, sig);
        CHECK(raw_send(&w, &f) == 0, "send");
        int st = response_status(&w, 1, NULL);
        /* after the failure a new nonce came: signing it with the Host works */
        sign(&w, host_of_server, sk, sig);
        register_frame(&f, &ru, 2, name, pk, sig);
        int st2 = -1;
        if (i == 1 && raw_send(&w, &f) == 0) st2 = response_status(&w, 2, NULL);
        raw_close(&w);
        CHECK(st == PARLEY__V1__STATUS__UNAUTHENTICATED, "signature over host '%s': status %d",
              wrong[i] ? wrong[i] : "(none)", st);
        if (i == 1) CHECK(st2 == PARLEY__V1__STATUS__OK, "the new nonce, signed with the Host: status %d", st2);
    }
    h_server_destroy(&S);
}

static void registrations_limited_per_address(void) {
    const char *flags[] = {"--register-rate-loopback", "3", NULL};
    CHECK(h_server_start(&S, flags) == 0, "server did not start");
    double limited0 = 0, limited1 = 0;
    CHECK(h_metric(&S, "parley_registrations_rate_limited_total", &limited0) == 0, "metric missing");
    for (int i = 0; i < 3; i++) {
        h_dev *d = h_user_new(&S, NULL);
        CHECK(d, "registration %d within the limit", i);
        h_dev_free(d);
    }
    /* the fourth within the minute, on the raw wire (libparley would wait
     * out RATE_LIMITED and try again) */
    snprintf(host_of_server, sizeof host_of_server, "127.0.0.1:%d", S.port);
    raw w;
    CHECK(raw_open(&w, host_of_server) == 0, "raw connection");
    uint8_t pk[32], sk[64], sig[64];
    crypto_sign_keypair(pk, sk);
    sign(&w, host_of_server, sk, sig);
    char name[32];
    snprintf(name, sizeof name, "fourth_%d", S.port);
    Parley__V1__Frame f;
    Parley__V1__RegisterUser ru;
    register_frame(&f, &ru, 1, name, pk, sig);
    uint64_t retry_after = 0;
    int st = raw_send(&w, &f) == 0 ? response_status(&w, 1, &retry_after) : -1;
    raw_close(&w);
    CHECK(st == PARLEY__V1__STATUS__RATE_LIMITED, "fourth registration: status %d, want RATE_LIMITED", st);
    CHECK(retry_after > 0, "no retry_after_ms");
    CHECK(h_metric(&S, "parley_registrations_rate_limited_total", &limited1) == 0, "metric missing");
    CHECK(limited1 > limited0, "not counted (%.0f -> %.0f)", limited0, limited1);
    h_server_destroy(&S);
}

int main(void) {
    RUN(one_signature_signs_in_once);
    RUN(signature_covers_the_host);
    RUN(registrations_limited_per_address);
    CHECK_EXIT();
}
