/* fuzz_ws.c -- libFuzzer target for the WebSocket reader. The input is
 * played as a byte stream into a server reader and a client reader the way a
 * gateway would (bounded buffer, arbitrary read sizes), once in one piece and
 * once in pseudo-random pieces chosen from the input itself (deterministic).
 * Checked: no crash, every message within its limits, text valid UTF-8, close
 * codes valid, error codes among those the reader may give, no stall with a
 * full buffer, and the same messages whatever the split. */
#include "net/ws.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Everything a run observed, folded into one number (FNV-1a). */
typedef struct transcript {
    uint64_t hash;
    int messages;
    int error;
} transcript;

static void mix(transcript *t, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        t->hash = (t->hash ^ b[i]) * 0x100000001b3ull;
}

static void check_message(const ws_reader *r, const ws_message *m,
                          const uint8_t *buf, size_t have) {
    bool control = m->kind == WS_MSG_PING || m->kind == WS_MSG_PONG || m->kind == WS_MSG_CLOSE;
    if (m->kind < WS_MSG_TEXT || m->kind > WS_MSG_CLOSE)
        abort();
    if (m->len > r->max_message || (control && m->len > 125))
        abort();
    if (m->len > 0) {
        /* data lies in the caller's buffer or in the reader's fragment buffer */
        bool in_buf = m->data >= buf && m->data + m->len <= buf + have;
        bool in_frag = r->frag && m->data >= r->frag->data && m->data + m->len <= r->frag->data + r->frag->cap;
        if (!in_buf && !in_frag)
            abort();
    }
    if (ws_reader_frag_cap(r) > r->max_message)
        abort();
    if (m->kind == WS_MSG_TEXT && !ws_utf8_valid(m->data, m->len))
        abort();
    if (m->kind == WS_MSG_CLOSE) {
        if (!ws_utf8_valid(m->data, m->len))
            abort();
        uint16_t c = m->close_code;
        if (c == 1004 || c == 1006 || c == 1015 || c < 1000 || c >= 5000 ||
            (c == 1005 && m->len != 0))
            abort();
    }
}

/* Plays data into one reader. split: NULL for whole reads, else the bytes
 * that choose each read's size. */
static transcript play(bool server, size_t max_message, const uint8_t *data, size_t size,
                       const uint8_t *split, size_t split_len) {
    transcript t = { 0xcbf29ce484222325ull, 0, 0 };
    ws_reader r;
    ws_reader_init(&r, server, max_message);
    size_t cap = max_message + WS_MAX_HEADER;
    uint8_t *buf = malloc(cap);
    if (!buf)
        abort();
    size_t have = 0, pos = 0, k = 0;
    while (pos < size || have > 0) {
        size_t want = cap - have;
        if (split && split_len)
            want = (size_t)split[k++ % split_len] % 17 + 1;
        if (want > cap - have)
            want = cap - have;
        if (want > size - pos)
            want = size - pos;
        memcpy(buf + have, data + pos, want);
        have += want;
        pos += want;
        for (;;) {
            size_t used = 0;
            ws_message m;
            int rc = ws_reader_feed(&r, buf, have, &used, &m);
            if (used > have)
                abort();
            if (rc == WS_ERROR) {
                uint16_t c = m.close_code;
                if (c != WS_CLOSE_PROTOCOL && c != WS_CLOSE_INVALID_DATA &&
                    c != WS_CLOSE_TOO_BIG && c != WS_CLOSE_INTERNAL)
                    abort();
                t.error = c;
                goto done;
            }
            if (rc == WS_READY) {
                check_message(&r, &m, buf, have);
                t.messages++;
                mix(&t, &m.kind, sizeof m.kind);
                mix(&t, &m.len, sizeof m.len);
                mix(&t, &m.close_code, sizeof m.close_code);
                if (m.len)
                    mix(&t, m.data, m.len);
            } else if (rc != WS_NEED_MORE) {
                abort();
            }
            memmove(buf, buf + used, have - used);
            have -= used;
            if (rc == WS_NEED_MORE) {
                /* a full buffer that yields nothing would stall the connection */
                if (used == 0 && have == cap)
                    abort();
                break;
            }
        }
        if (pos == size)
            break; /* input exhausted: what is left is an incomplete frame */
    }
done:
    free(buf);
    ws_reader_free(&r);
    return t;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 2)
        return 0;
    /* first byte: the message limit; the tail of the input picks the splits */
    size_t max_message = (size_t)data[0] * 4;
    data++;
    size--;
    for (int server = 0; server <= 1; server++) {
        transcript whole = play(server, max_message, data, size, NULL, 0);
        transcript split = play(server, max_message, data, size, data + size / 2, size - size / 2);
        if (whole.hash != split.hash || whole.messages != split.messages ||
            whole.error != split.error)
            abort();
    }
    return 0;
}
