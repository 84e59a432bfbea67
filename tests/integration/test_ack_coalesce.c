/* test_ack_coalesce.c -- acks are coalesced per connection per loop turn
 * before they cross to the write path: a device that sends a burst of Acks
 * costs the writer one cursor request, not one per Ack, and the cursor it
 * stores (with the delivered receipts it raises) is the last Ack's, durable
 * across a restart.
 * A raw connection (src/net codecs) sends the burst in one write, so the
 * acks arrive together; libparley would send one Ack per poll. */
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

/* ------------------------------------------------------------ raw client
 * (as in test_quotas.c) */

enum { RAW_BUF = 1 << 20, IO_TIMEOUT_MS = 30000 };

/* ------------------------------------------------------------ raw client */

typedef struct raw_ws {
    int fd;
    uint8_t *buf;
    size_t off, len;
    ws_reader rd;
    uint8_t nonce[32];
    int eof;
    int close_code;
} raw_ws;

static void raw_close(raw_ws *w) {
    if (!w->buf) return;   /* never opened */
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    ws_reader_free(&w->rd);
    free(w->buf);
    w->buf = NULL;
}

/* Next whole message. 1: *m filled (valid until the next call); 0: EOF,
 * timeout or a malformed frame. */
static int raw_next(raw_ws *w, ws_message *m) {
    uint64_t deadline = h_now_ms() + IO_TIMEOUT_MS;
    for (;;) {
        size_t consumed = 0;
        int r = ws_reader_feed(&w->rd, w->buf + w->off, w->len - w->off, &consumed, m);
        w->off += consumed;
        if (r == WS_READY) return 1;
        if (r == WS_ERROR) return 0;
        if (w->off > 0) {
            memmove(w->buf, w->buf + w->off, w->len - w->off);
            w->len -= w->off;
            w->off = 0;
        }
        if (h_now_ms() >= deadline || w->len == RAW_BUF) return 0;
        ssize_t n = recv(w->fd, w->buf + w->len, RAW_BUF - w->len, 0);
        if (n == 0) {
            w->eof = 1;
            return 0;
        }
        if (n < 0) {
            if (errno == EINTR || errno == EAGAIN) continue;
            return 0;
        }
        w->len += (size_t)n;
    }
}

/* Appends one masked binary frame holding f to out (cap bytes); its length or 0. */
static size_t raw_pack_frame(const Parley__V1__Frame *f, uint8_t *out, size_t cap) {
    size_t len = parley__v1__frame__get_packed_size(f);
    if (WS_MAX_HEADER + len > cap) return 0;
    uint8_t mask[4] = {0x12, 0x34, 0x56, 0x78};
    size_t h = ws_write_header(out, WS_OP_BINARY, true, len, mask);
    parley__v1__frame__pack(f, out + h);
    ws_mask(out + h, len, mask, 0);
    return h + len;
}

static int raw_send_all(raw_ws *w, const uint8_t *p, size_t n) {
    uint64_t deadline = h_now_ms() + 3 * IO_TIMEOUT_MS;
    while (n > 0) {
        ssize_t k = send(w->fd, p, n, MSG_NOSIGNAL);
        /* EAGAIN: the socket's send timeout; a busy server reads later */
        if (k < 0 && (errno == EINTR || errno == EAGAIN) && h_now_ms() < deadline) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

static int raw_send_frame(raw_ws *w, const Parley__V1__Frame *f) {
    size_t cap = WS_MAX_HEADER + parley__v1__frame__get_packed_size(f);
    uint8_t *b = malloc(cap);
    if (!b) return -1;
    size_t n = raw_pack_frame(f, b, cap);
    int r = n ? raw_send_all(w, b, n) : -1;
    free(b);
    return r;
}

/* Next protobuf Frame (pings and pongs skipped). NULL on close, EOF or timeout. */
static Parley__V1__Frame *raw_read_frame(raw_ws *w) {
    for (int i = 0; i < 64; i++) {
        ws_message m;
        if (raw_next(w, &m) != 1) return NULL;
        if (m.kind == WS_MSG_CLOSE) {
            w->close_code = m.close_code;
            return NULL;
        }
        if (m.kind == WS_MSG_BINARY) return parley__v1__frame__unpack(NULL, m.len, m.data);
    }
    return NULL;
}

/* Upgraded to parley.v1, Challenge read. 0 or -1. */
static int raw_open(raw_ws *w) {
    memset(w, 0, sizeof *w);
    w->fd = -1;
    w->buf = malloc(RAW_BUF);
    ws_reader_init(&w->rd, false, RAW_BUF);
    w->fd = w->buf ? h_tcp_connect(S.port, IO_TIMEOUT_MS) : -1;
    if (w->fd < 0) return -1;
    char key[25];
    ws_make_client_key(key);
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET / HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: parley.v1\r\n\r\n",
                     S.port, key);
    if (raw_send_all(w, (const uint8_t *)req, (size_t)n) != 0) return -1;
    uint64_t deadline = h_now_ms() + IO_TIMEOUT_MS;
    http_response res;
    int head = 0;
    while (head == 0 && h_now_ms() < deadline) {
        head = http_parse_response((const char *)w->buf, w->len, &res);
        if (head != 0) break;
        ssize_t k = recv(w->fd, w->buf + w->len, RAW_BUF - w->len, 0);
        if (k <= 0 && !(k < 0 && errno == EINTR)) return -1;
        if (k > 0) w->len += (size_t)k;
    }
    if (head <= 0 || res.status != 101) return -1;
    w->off = (size_t)head;
    Parley__V1__Frame *f = raw_read_frame(w);
    int ok = f && f->body_case == PARLEY__V1__FRAME__BODY_CHALLENGE && f->challenge->nonce.len == 32;
    if (ok) memcpy(w->nonce, f->challenge->nonce.data, 32);
    if (f) parley__v1__frame__free_unpacked(f, NULL);
    return ok ? 0 : -1;
}

/* Reads until the Response to request_id: its status (result in *out if
 * asked, caller frees), or -1. */
static int raw_response(raw_ws *w, uint64_t request_id, Parley__V1__Frame **out) {
    for (int i = 0; i < 10000; i++) {
        Parley__V1__Frame *r = raw_read_frame(w);
        if (!r) return -1;
        if (r->body_case == PARLEY__V1__FRAME__BODY_RESPONSE && r->request_id == request_id) {
            int st = r->response->status;
            if (out) *out = r;
            else parley__v1__frame__free_unpacked(r, NULL);
            return st;
        }
        parley__v1__frame__free_unpacked(r, NULL);
    }
    return -1;
}

/* A raw connection signed in as an existing device. 0 or -1. */
static int raw_sign_in(raw_ws *w, const pc_identity *id) {
    if (raw_open(w) != 0) return -1;
    uint8_t msg[14 + 32 + 32], sig[64];
    memcpy(msg, "parley.v1 auth", 14);
    memcpy(msg + 14, w->nonce, 32);
    int host_len = snprintf((char *)msg + 46, 32, "127.0.0.1:%d", S.port);   /* the Host raw_open sent */
    crypto_sign_detached(sig, NULL, msg, 46 + (size_t)host_len, id->secret_key);
    Parley__V1__SignIn si = PARLEY__V1__SIGN_IN__INIT;
    si.user_id = id->user_id;
    si.device_id = id->device_id;
    si.signature.data = sig;
    si.signature.len = sizeof sig;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = 1;
    f.body_case = PARLEY__V1__FRAME__BODY_SIGN_IN;
    f.sign_in = &si;
    if (raw_send_frame(w, &f) != 0) return -1;
    return raw_response(w, 1, NULL) == PARLEY__V1__STATUS__OK ? 0 : -1;
}

/* ----------------------------------------------------------------- cases */

enum { MESSAGES = 100 };

/* Catches up from the start: StartSync, then frames until SyncDone. *head:
 * the highest user_seq of an Event seen. 0 or -1. */
static int raw_sync_all(raw_ws *w, uint64_t *head, size_t *events) {
    Parley__V1__StartSync ss = PARLEY__V1__START_SYNC__INIT;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = 2;
    f.body_case = PARLEY__V1__FRAME__BODY_START_SYNC;
    f.start_sync = &ss;
    if (raw_send_frame(w, &f) != 0) return -1;
    *head = 0;
    *events = 0;
    for (int i = 0; i < 10000; i++) {
        Parley__V1__Frame *r = raw_read_frame(w);
        if (!r) return -1;
        int done = r->body_case == PARLEY__V1__FRAME__BODY_SYNC_DONE;
        if (r->body_case == PARLEY__V1__FRAME__BODY_EVENT) {
            (*events)++;
            if (r->event->user_seq > *head) *head = r->event->user_seq;
        }
        parley__v1__frame__free_unpacked(r, NULL);
        if (done) return 0;
    }
    return -1;
}

/* One Ack per user_seq 1..head, packed back to back and sent with one
 * write, then a LookupUser: its answer comes after the worker handled
 * every Ack before it (and the turn that handled them ended). 0 or -1. */
static int raw_ack_burst(raw_ws *w, uint64_t head) {
    size_t cap = (size_t)head * 32 + 64, len = 0;
    uint8_t *b = malloc(cap);
    if (!b) return -1;
    for (uint64_t s = 1; s <= head; s++) {
        Parley__V1__Ack ack = PARLEY__V1__ACK__INIT;
        ack.user_seq = s;
        Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
        f.body_case = PARLEY__V1__FRAME__BODY_ACK;
        f.ack = &ack;
        size_t n = raw_pack_frame(&f, b + len, cap - len);
        if (n == 0) {
            free(b);
            return -1;
        }
        len += n;
    }
    int r = raw_send_all(w, b, len);
    free(b);
    if (r != 0) return -1;
    Parley__V1__LookupUser lu = PARLEY__V1__LOOKUP_USER__INIT;
    lu.name = "nobody-by-this-name";
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = 3;
    f.body_case = PARLEY__V1__FRAME__BODY_LOOKUP_USER;
    f.lookup_user = &lu;
    if (raw_send_frame(w, &f) != 0) return -1;
    return raw_response(w, 3, NULL) >= 0 ? 0 : -1;
}

/* delivered_seq of user in conv, as GetReceipts says (0 if absent), or -1 */
static int64_t delivered_seq_of(h_dev *d, uint64_t conv, uint64_t user) {
    Parley__V1__ReceiptList *l = NULL;
    if (pc_get_receipts(d->c, conv, &l) != 0) {
        fprintf(stderr, "  pc_get_receipts: %s (status %d)\n", pc_error(d->c), pc_status(d->c));
        return -1;
    }
    int64_t seq = 0;
    for (size_t i = 0; i < l->n_members; i++)
        if (l->members[i]->user_id == user) seq = (int64_t)l->members[i]->delivered_seq;
    parley__v1__receipt_list__free_unpacked(l, NULL);
    return seq;
}

/* Bob catches up on 100 messages from Alice and acks every event in one
 * burst: the writer gets at most a few cursor requests (one per loop turn
 * the burst was read in; one write of a few KB is read in one), every
 * other Ack is counted as folded, and after a restart Bob's delivered seq is
 * Alice's last message (the highest Ack, stored). */
static void ack_burst_is_one_writer_request(void) {
    CHECK(h_server_start(&S, NULL) == 0, "server did not start");
    h_dev *alice = h_user_new(&S, NULL), *bob = h_user_new(&S, NULL);
    CHECK(alice && bob, "users");
    uint64_t conv = 0, last = 0;
    CHECK(pc_open_direct(alice->c, bob->id.user_id, &conv) == 0, "open direct: %s", pc_error(alice->c));
    CHECK(h_accept(bob, conv) == 0, "bob accepts");
    for (int i = 0; i < MESSAGES; i++) {
        char text[32];
        snprintf(text, sizeof text, "m%d", i);
        last = h_send(alice, conv, text);
        CHECK(last != 0, "send %d", i);
    }
    h_dev_disconnect(bob);   /* libparley would ack on its own */

    raw_ws *w = h_calloc(1, sizeof *w);
    CHECK(w && raw_sign_in(w, &bob->id) == 0, "raw sign-in");
    uint64_t head = 0;
    size_t events = 0;
    CHECK(raw_sync_all(w, &head, &events) == 0, "sync to SyncDone");
    CHECK(events >= MESSAGES && head >= MESSAGES, "bob caught up on %zu events (head %llu), want >= %d",
          events, (unsigned long long)head, MESSAGES);
    double sub0 = 0, fold0 = 0, sub1 = 0, fold1 = 0;
    CHECK(h_metric(&S, "parley_acks_submitted_total", &sub0) == 0, "metric");
    CHECK(h_metric(&S, "parley_acks_coalesced_total", &fold0) == 0, "metric");
    CHECK(raw_ack_burst(w, head) == 0, "ack burst");
    CHECK(h_metric(&S, "parley_acks_submitted_total", &sub1) == 0, "metric");
    CHECK(h_metric(&S, "parley_acks_coalesced_total", &fold1) == 0, "metric");
    raw_close(w);
    double submitted = sub1 - sub0, folded = fold1 - fold0;
    fprintf(stderr, "  %llu acks in one burst: %.0f cursor requests to the writer, %.0f folded\n",
            (unsigned long long)head, submitted, folded);
    CHECK(submitted >= 1 && submitted <= 3, "%.0f cursor requests for %llu acks in one burst", submitted,
          (unsigned long long)head);
    CHECK(submitted + folded == (double)head, "%.0f submitted + %.0f folded, want %llu (every ack accounted)",
          submitted, folded, (unsigned long long)head);

    /* the stored result is the last Ack's, and it survives a restart */
    h_dev_disconnect(alice);
    CHECK(h_server_restart(&S) == 0, "restart");
    CHECK(h_dev_reconnect(&S, alice, 0) == 0, "alice reconnects");
    int64_t delivered = delivered_seq_of(alice, conv, bob->id.user_id);
    CHECK(delivered == (int64_t)last, "bob's delivered seq after restart %lld, want %llu (the last message)",
          (long long)delivered, (unsigned long long)last);
    h_dev_free(alice);
    h_dev_free(bob);
    int exit_status = h_server_stop(&S);
    if (exit_status != 0) h_server_log_tail(&S, 40);
    h_server_destroy(&S);
    CHECK(exit_status == 0, "the server did not exit cleanly (status %d)", exit_status);
}

int main(void) {
    if (sodium_init() < 0) return 1;
    RUN(ack_burst_is_one_writer_request);
    CHECK_EXIT();
}
