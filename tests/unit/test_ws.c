/* test_ws.c -- WebSocket framing: handshake keys, header encoding, masking,
 * close payloads, UTF-8, and the reader's handling of every violation. */
#include "../check.h"
#include "net/ws.h"

#include <stdint.h>
#include <string.h>

static const uint8_t MASK[4] = { 0x37, 0xfa, 0x21, 0x3d };

/* Builds one frame at out: header, then payload (masked when mask != NULL).
 * Returns its length. */
static size_t frame(uint8_t *out, uint8_t opcode, bool fin, const void *payload,
                    size_t len, const uint8_t *mask) {
    size_t h = ws_write_header(out, opcode, fin, len, mask);
    if (len)
        memcpy(out + h, payload, len);
    if (mask)
        ws_mask(out + h, len, mask, 0);
    return h + len;
}

static void accept_key_rfc_example(void) {
    char out[29];
    CHECK(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out) == 0, "rc");
    CHECK(strcmp(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") == 0, "got %s", out);
}

static void accept_key_rejects_bad_keys(void) {
    char out[29];
    CHECK(ws_accept_key("", out) == -1, "empty");
    CHECK(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ=", out) == -1, "short");
    CHECK(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ===", out) == -1, "long");
    CHECK(ws_accept_key("dGhlIHNhbXBsZSBub25jZQo=", out) == -1, "17 bytes");
    CHECK(ws_accept_key("dGhlIHNhbXBsZSBub25j*Q==", out) == -1, "bad char");
    CHECK(ws_accept_key(" GhlIHNhbXBsZSBub25jZQ==", out) == -1, "blank");
    CHECK(ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==x", out) == -1, "trailing");
}

static void client_key_is_valid_and_random(void) {
    char a[25], b[25], acc[29];
    ws_make_client_key(a);
    ws_make_client_key(b);
    CHECK(strlen(a) == 24 && a[22] == '=' && a[23] == '=', "shape %s", a);
    CHECK(strcmp(a, b) != 0, "two keys equal: %s", a);
    CHECK(ws_accept_key(a, acc) == 0 && strlen(acc) == 28, "server accepts it");
}

static void header_lengths(void) {
    uint8_t h[WS_MAX_HEADER];
    CHECK(ws_write_header(h, WS_OP_TEXT, true, 125, NULL) == 2, "7-bit");
    CHECK(h[0] == 0x81 && h[1] == 125, "%02x %02x", h[0], h[1]);
    CHECK(ws_write_header(h, WS_OP_BINARY, false, 126, NULL) == 4, "16-bit");
    CHECK(h[0] == 0x02 && h[1] == 126 && h[2] == 0 && h[3] == 126, "16-bit bytes");
    CHECK(ws_write_header(h, WS_OP_BINARY, true, 65535, NULL) == 4, "16-bit max");
    CHECK(ws_write_header(h, WS_OP_BINARY, true, 65536, NULL) == 10, "64-bit");
    CHECK(h[1] == 127 && h[2] == 0 && h[7] == 1 && h[8] == 0 && h[9] == 0, "64-bit bytes");
    CHECK(ws_write_header(h, WS_OP_PING, true, 0x0102030405060708ull, MASK) == 14, "masked 64");
    CHECK(h[1] == 0xFF && h[2] == 1 && h[9] == 8, "len bytes");
    CHECK(memcmp(h + 10, MASK, 4) == 0, "mask bytes");
}

static void mask_round_trip_in_pieces(void) {
    uint8_t data[37], orig[37];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = orig[i] = (uint8_t)(i * 7);
    ws_mask(data, sizeof data, MASK, 0);
    CHECK(memcmp(data, orig, sizeof data) != 0, "masking changed nothing");
    CHECK(data[0] == (orig[0] ^ MASK[0]) && data[5] == (orig[5] ^ MASK[1]), "xor");
    /* unmask in uneven pieces, as a sender streaming a payload would */
    ws_mask(data, 3, MASK, 0);
    ws_mask(data + 3, 10, MASK, 3);
    ws_mask(data + 13, 24, MASK, 13);
    CHECK(memcmp(data, orig, sizeof data) == 0, "round trip");
}

static void close_payload(void) {
    uint8_t out[125];
    CHECK(ws_close_payload(out, 1000, NULL) == 2 && out[0] == 0x03 && out[1] == 0xE8, "code");
    CHECK(ws_close_payload(out, 1001, "bye") == 5 && memcmp(out + 2, "bye", 3) == 0, "reason");
    char long_reason[200];
    memset(long_reason, 'r', sizeof long_reason - 1);
    long_reason[sizeof long_reason - 1] = '\0';
    CHECK(ws_close_payload(out, 1000, long_reason) == 125, "truncated to 125");
    /* "é" is 2 bytes: 61 of them are 122 bytes, a 62nd would straddle byte 123 */
    char accents[200] = "";
    for (int i = 0; i < 62; i++)
        strcat(accents, "\xc3\xa9");
    size_t n = ws_close_payload(out, 1000, accents);
    CHECK(n == 2 + 122, "cut at code point: %zu", n);
    CHECK(ws_utf8_valid(out + 2, n - 2), "still valid UTF-8");
    CHECK(ws_close_payload(out, 1000, "\xff") == 2, "invalid reason dropped");
    CHECK(ws_close_payload(out, WS_CLOSE_NO_STATUS, "x") == 0, "1005 never on the wire");
}

static void utf8_validation(void) {
    static const struct { const char *s; bool ok; } cases[] = {
        { "", true }, { "hello", true }, { "\xc3\xa9", true }, { "\xe2\x82\xac", true },
        { "\xf0\x9f\x98\x80", true }, { "\xf4\x8f\xbf\xbf", true }, { "\xef\xbb\xbf", true },
        { "\xed\x9f\xbf", true },          /* U+D7FF, just below the surrogates */
        { "\x80", false }, { "\xbf", false }, { "\xc0\x80", false }, { "\xc1\xbf", false },
        { "\xe0\x80\xaf", false },         /* overlong '/' */
        { "\xf0\x80\x80\xaf", false }, { "\xed\xa0\x80", false }, { "\xed\xbf\xbf", false },
        { "\xf4\x90\x80\x80", false }, { "\xf5\x80\x80\x80", false }, { "\xf8\x88\x80\x80\x80", false },
        { "\xfe", false }, { "\xff", false }, { "\xc3", false }, { "\xe2\x82", false },
        { "\xf0\x9f\x98", false }, { "a\xc3(", false }, { "\xce\xba\xe1\xbd\xb9\xcf\x83", true },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bool got = ws_utf8_valid((const uint8_t *)cases[i].s, strlen(cases[i].s));
        CHECK(got == cases[i].ok, "case %zu", i);
    }
    CHECK(ws_utf8_valid((const uint8_t *)"a\0b", 3), "NUL is valid UTF-8");
}

static void reader_masked_text_in_place(void) {
    ws_reader r;
    ws_reader_init(&r, true, 1024);
    uint8_t buf[64];
    size_t n = frame(buf, WS_OP_TEXT, true, "Hello", 5, MASK);
    size_t used;
    ws_message m;
    CHECK(ws_reader_feed(&r, buf, n, &used, &m) == WS_READY, "ready");
    CHECK(used == n && m.kind == WS_MSG_TEXT && m.len == 5, "used %zu len %zu", used, m.len);
    CHECK(memcmp(m.data, "Hello", 5) == 0, "payload");
    CHECK(m.data == buf + 6, "handed back in place, not copied");
    ws_reader_free(&r);
}

static void reader_lengths_16_and_64(void) {
    static uint8_t buf[70000 + WS_MAX_HEADER], payload[70000];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)i;
    ws_reader r;
    ws_reader_init(&r, false, sizeof payload);
    size_t lens[] = { 0, 125, 126, 65535, 65536, 70000 };
    for (size_t k = 0; k < sizeof lens / sizeof lens[0]; k++) {
        size_t n = frame(buf, WS_OP_BINARY, true, payload, lens[k], NULL);
        size_t used;
        ws_message m;
        CHECK(ws_reader_feed(&r, buf, n - 1, &used, &m) == WS_NEED_MORE && used == 0,
              "len %zu short", lens[k]);
        CHECK(ws_reader_feed(&r, buf, n, &used, &m) == WS_READY, "len %zu", lens[k]);
        CHECK(used == n && m.kind == WS_MSG_BINARY && m.len == lens[k], "len %zu", lens[k]);
        CHECK(m.len == 0 || memcmp(m.data, payload, m.len) == 0, "payload %zu", lens[k]);
    }
    /* non-minimal encodings are accepted: 5 bytes in the 64-bit form */
    uint8_t odd[] = { 0x82, 127, 0, 0, 0, 0, 0, 0, 0, 5, 'a', 'b', 'c', 'd', 'e' };
    size_t used;
    ws_message m;
    CHECK(ws_reader_feed(&r, odd, sizeof odd, &used, &m) == WS_READY && m.len == 5, "long form");
    ws_reader_free(&r);
}

static int expect_error(bool server, size_t max, uint8_t *buf, size_t len) {
    ws_reader r;
    ws_reader_init(&r, server, max);
    size_t used, off = 0;
    ws_message m;
    int rc;
    /* frames before the offending one may be fine: feed them all */
    while ((rc = ws_reader_feed(&r, buf + off, len - off, &used, &m)) != WS_ERROR) {
        if (used == 0)
            break;
        off += used;
    }
    ws_reader_free(&r);
    return rc == WS_ERROR ? m.close_code : 0;
}

static void reader_unmasked_client_frame(void) {
    uint8_t buf[32];
    size_t n = frame(buf, WS_OP_TEXT, true, "hi", 2, NULL);
    CHECK(expect_error(true, 100, buf, n) == WS_CLOSE_PROTOCOL, "server wants masks");
    n = frame(buf, WS_OP_TEXT, true, "hi", 2, MASK);
    CHECK(expect_error(false, 100, buf, n) == WS_CLOSE_PROTOCOL, "client refuses masks");
    /* decided from the first two bytes */
    CHECK(expect_error(false, 100, buf, 2) == WS_CLOSE_PROTOCOL, "early");
}

static void reader_reserved_bits_and_opcodes(void) {
    for (uint8_t rsv = 1; rsv < 8; rsv++) {
        uint8_t buf[] = { (uint8_t)(0x81 | rsv << 4), 0 };
        CHECK(expect_error(false, 100, buf, 2) == WS_CLOSE_PROTOCOL, "rsv %u", rsv);
    }
    uint8_t bad_ops[] = { 3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF };
    for (size_t i = 0; i < sizeof bad_ops; i++) {
        uint8_t buf[] = { (uint8_t)(0x80 | bad_ops[i]), 0 };
        CHECK(expect_error(false, 100, buf, 2) == WS_CLOSE_PROTOCOL, "op %u", bad_ops[i]);
    }
}

static void reader_control_frame_rules(void) {
    uint8_t big[200];
    memset(big, 'p', sizeof big);
    uint8_t buf[256];
    size_t n = frame(buf, WS_OP_PING, true, big, 126, NULL);
    CHECK(expect_error(false, 1000, buf, n) == WS_CLOSE_PROTOCOL, "ping of 126");
    n = frame(buf, WS_OP_PING, false, "x", 1, NULL);
    CHECK(expect_error(false, 1000, buf, n) == WS_CLOSE_PROTOCOL, "fragmented ping");
    n = frame(buf, WS_OP_PONG, true, big, 125, NULL);
    ws_reader r;
    ws_reader_init(&r, false, 125);
    size_t used;
    ws_message m;
    CHECK(ws_reader_feed(&r, buf, n, &used, &m) == WS_READY && m.kind == WS_MSG_PONG &&
          m.len == 125, "pong of 125");
    ws_reader_free(&r);
    /* under a tiny limit a control frame must fit it too, or a caller
     * buffering max_message + WS_MAX_HEADER could never complete it */
    CHECK(expect_error(false, 10, buf, n) == WS_CLOSE_TOO_BIG, "pong over a limit of 10");
}

static void reader_continuation_rules(void) {
    uint8_t buf[64];
    size_t n = frame(buf, WS_OP_CONT, true, "x", 1, NULL);
    CHECK(expect_error(false, 100, buf, n) == WS_CLOSE_PROTOCOL, "continuation of nothing");
    n = frame(buf, WS_OP_TEXT, false, "a", 1, NULL);
    n += frame(buf + n, WS_OP_BINARY, true, "b", 1, NULL);
    CHECK(expect_error(false, 100, buf, n) == WS_CLOSE_PROTOCOL, "new message mid-fragments");
}

static void reader_64bit_top_bit(void) {
    uint8_t buf[] = { 0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 1 };
    CHECK(expect_error(false, 100, buf, sizeof buf) == WS_CLOSE_PROTOCOL, "top bit");
}

static void reader_oversized_fails_before_payload(void) {
    /* 2^62 bytes announced: 1009 from the 10 header bytes alone */
    uint8_t huge[] = { 0x82, 0xFF, 0x40, 0, 0, 0, 0, 0, 0, 0 };
    CHECK(expect_error(true, 1 << 20, huge, sizeof huge) == WS_CLOSE_TOO_BIG, "2^62");
    uint8_t hdr[WS_MAX_HEADER];
    size_t n = ws_write_header(hdr, WS_OP_BINARY, true, 101, NULL);
    CHECK(expect_error(false, 100, hdr, n) == WS_CLOSE_TOO_BIG, "101 > 100");
    /* the limit is for the whole message: fragments add up */
    uint8_t buf[256], payload[60] = { 0 };
    n = frame(buf, WS_OP_BINARY, false, payload, 60, NULL);
    n += frame(buf + n, WS_OP_CONT, false, payload, 40, NULL);
    size_t before_third = n;
    n += ws_write_header(buf + n, WS_OP_CONT, true, 1, NULL);
    CHECK(expect_error(false, 100, buf, n) == WS_CLOSE_TOO_BIG, "fragments over limit");
    /* but exactly the limit is fine */
    ws_reader r;
    ws_reader_init(&r, false, 100);
    n = before_third + frame(buf + before_third, WS_OP_CONT, true, NULL, 0, NULL);
    size_t used;
    ws_message m;
    CHECK(ws_reader_feed(&r, buf, n, &used, &m) == WS_READY && m.len == 100, "exactly 100");
    CHECK(ws_reader_frag_cap(&r) <= 100, "fragment buffer %u past max_message", (unsigned)ws_reader_frag_cap(&r));
    ws_reader_free(&r);
}

static void reader_invalid_utf8(void) {
    uint8_t buf[64];
    size_t n = frame(buf, WS_OP_TEXT, true, "a\xc3(", 3, MASK);
    CHECK(expect_error(true, 100, buf, n) == WS_CLOSE_INVALID_DATA, "text");
    n = frame(buf, WS_OP_BINARY, true, "a\xc3(", 3, MASK);
    CHECK(expect_error(true, 100, buf, n) == 0, "binary is not checked");
    n = frame(buf, WS_OP_TEXT, false, "ok", 2, NULL);
    n += frame(buf + n, WS_OP_CONT, true, "\xed\xa0\x80", 3, NULL);
    CHECK(expect_error(false, 100, buf, n) == WS_CLOSE_INVALID_DATA, "fragmented surrogate");
    n = frame(buf, WS_OP_TEXT, true, "\xe2\x82", 2, NULL);
    CHECK(expect_error(false, 100, buf, n) == WS_CLOSE_INVALID_DATA, "truncated at end");
}

static void reader_fragmented_text_mid_codepoint_with_ping(void) {
    /* "€" (e2 82 ac) split across fragments, a ping in between */
    uint8_t buf[128];
    size_t n = frame(buf, WS_OP_TEXT, false, "ab\xe2", 3, MASK);
    n += frame(buf + n, WS_OP_PING, true, "p!", 2, MASK);
    n += frame(buf + n, WS_OP_CONT, false, "\x82", 1, MASK);
    n += frame(buf + n, WS_OP_CONT, true, "\xac" "cd", 3, MASK);
    ws_reader r;
    ws_reader_init(&r, true, 100);
    size_t used, off = 0;
    ws_message m;
    CHECK(ws_reader_feed(&r, buf, n, &used, &m) == WS_READY, "ping first");
    CHECK(m.kind == WS_MSG_PING && m.len == 2 && memcmp(m.data, "p!", 2) == 0, "ping");
    off += used;
    CHECK(ws_reader_feed(&r, buf + off, n - off, &used, &m) == WS_READY, "text");
    CHECK(off + used == n, "all consumed");
    CHECK(m.kind == WS_MSG_TEXT && m.len == 7 && memcmp(m.data, "ab\xe2\x82\xac" "cd", 7) == 0,
          "reassembled");
    ws_reader_free(&r);
}

static void reader_need_more_means_nothing_whole_left(void) {
    /* a non-final fragment followed by a whole final one in the same buffer:
     * one call must absorb the first and return the message */
    uint8_t buf[64];
    size_t n = frame(buf, WS_OP_BINARY, false, "12", 2, NULL);
    n += frame(buf + n, WS_OP_CONT, true, "34", 2, NULL);
    ws_reader r;
    ws_reader_init(&r, false, 100);
    size_t used;
    ws_message m;
    CHECK(ws_reader_feed(&r, buf, n, &used, &m) == WS_READY && used == n, "one call");
    CHECK(m.kind == WS_MSG_BINARY && m.len == 4 && memcmp(m.data, "1234", 4) == 0, "data");
    /* a lone non-final fragment: consumed, and more is needed */
    n = frame(buf, WS_OP_BINARY, false, "12", 2, NULL);
    CHECK(ws_reader_feed(&r, buf, n, &used, &m) == WS_NEED_MORE && used == n, "absorbed");
    ws_reader_free(&r);
}

static void reader_close_frames(void) {
    static const struct { uint16_t code; int want; } cases[] = {
        { 1000, 0 }, { 1001, 0 }, { 1002, 0 }, { 1003, 0 }, { 1007, 0 }, { 1011, 0 },
        { 1012, 0 }, { 1013, 0 }, { 3000, 0 }, { 4999, 0 },
        { 0, 1002 }, { 999, 1002 }, { 1004, 1002 }, { 1005, 1002 }, { 1006, 1002 },
        { 1015, 1002 }, { 1016, 1002 }, { 2999, 1002 }, { 5000, 1002 }, { 65535, 1002 },
    };
    uint8_t buf[64], pl[8];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        pl[0] = (uint8_t)(cases[i].code >> 8);
        pl[1] = (uint8_t)cases[i].code;
        memcpy(pl + 2, "why", 3);
        size_t n = frame(buf, WS_OP_CLOSE, true, pl, 5, MASK);
        ws_reader r;
        ws_reader_init(&r, true, 100);
        size_t used;
        ws_message m;
        int rc = ws_reader_feed(&r, buf, n, &used, &m);
        if (cases[i].want) {
            CHECK(rc == WS_ERROR && m.close_code == cases[i].want, "code %u", cases[i].code);
        } else {
            CHECK(rc == WS_READY && m.kind == WS_MSG_CLOSE && m.close_code == cases[i].code,
                  "code %u", cases[i].code);
            CHECK(m.len == 3 && memcmp(m.data, "why", 3) == 0, "reason %u", cases[i].code);
        }
        ws_reader_free(&r);
    }
    ws_reader r;
    ws_reader_init(&r, false, 100);
    size_t used;
    ws_message m;
    size_t n = frame(buf, WS_OP_CLOSE, true, NULL, 0, NULL);
    CHECK(ws_reader_feed(&r, buf, n, &used, &m) == WS_READY && m.close_code == 1005 &&
          m.len == 0, "empty close -> 1005");
    ws_reader_free(&r);
    n = frame(buf, WS_OP_CLOSE, true, "\x03", 1, NULL);
    CHECK(expect_error(false, 100, buf, n) == WS_CLOSE_PROTOCOL, "1-byte close");
    n = frame(buf, WS_OP_CLOSE, true, "\x03\xe8\xff", 3, NULL);
    CHECK(expect_error(false, 100, buf, n) == WS_CLOSE_INVALID_DATA, "bad reason");
    /* our own close payload round-trips */
    n = ws_close_payload(pl, WS_CLOSE_TRY_AGAIN, "busy");
    n = frame(buf, WS_OP_CLOSE, true, pl, n, NULL);
    ws_reader_init(&r, false, 100);
    CHECK(ws_reader_feed(&r, buf, n, &used, &m) == WS_READY && m.close_code == 1013 &&
          m.len == 4, "round trip");
    ws_reader_free(&r);
}

/* The caller's loop: append one byte, feed, drop what was consumed. */
static void reader_byte_at_a_time(void) {
    static uint8_t stream[4096], buf[4096];
    uint8_t big[300];
    for (size_t i = 0; i < sizeof big; i++)
        big[i] = (uint8_t)('a' + i % 26);
    size_t n = 0;
    n += frame(stream + n, WS_OP_TEXT, true, "hello", 5, MASK);
    n += frame(stream + n, WS_OP_BINARY, false, big, 200, MASK);
    n += frame(stream + n, WS_OP_PING, true, "", 0, MASK);
    n += frame(stream + n, WS_OP_CONT, true, big + 200, 100, MASK);
    n += frame(stream + n, WS_OP_TEXT, true, "\xf0\x9f\x98\x80", 4, MASK);
    n += frame(stream + n, WS_OP_CLOSE, true, "\x03\xe8", 2, MASK);
    static const struct { ws_kind kind; size_t len; } want[] = {
        { WS_MSG_TEXT, 5 }, { WS_MSG_PING, 0 }, { WS_MSG_BINARY, 300 },
        { WS_MSG_TEXT, 4 }, { WS_MSG_CLOSE, 0 },
    };
    ws_reader r;
    ws_reader_init(&r, true, 1000);
    size_t have = 0, got = 0;
    for (size_t i = 0; i < n; i++) {
        buf[have++] = stream[i];
        for (;;) {
            size_t used;
            ws_message m;
            int rc = ws_reader_feed(&r, buf, have, &used, &m);
            CHECK(rc != WS_ERROR, "error %u at byte %zu", m.close_code, i);
            if (rc == WS_READY) {
                CHECK(got < 5 && m.kind == want[got].kind && m.len == want[got].len,
                      "message %zu: kind %d len %zu", got, m.kind, m.len);
                if (m.kind == WS_MSG_BINARY)
                    CHECK(memcmp(m.data, big, 300) == 0, "binary content");
                got++;
            }
            memmove(buf, buf + used, have - used);
            have -= used;
            if (rc == WS_NEED_MORE)
                break;
        }
    }
    CHECK(got == 5 && have == 0, "got %zu messages, %zu left", got, have);
    ws_reader_free(&r);
}

int main(void) {
    RUN(accept_key_rfc_example);
    RUN(accept_key_rejects_bad_keys);
    RUN(client_key_is_valid_and_random);
    RUN(header_lengths);
    RUN(mask_round_trip_in_pieces);
    RUN(close_payload);
    RUN(utf8_validation);
    RUN(reader_masked_text_in_place);
    RUN(reader_lengths_16_and_64);
    RUN(reader_unmasked_client_frame);
    RUN(reader_reserved_bits_and_opcodes);
    RUN(reader_control_frame_rules);
    RUN(reader_continuation_rules);
    RUN(reader_64bit_top_bit);
    RUN(reader_oversized_fails_before_payload);
    RUN(reader_invalid_utf8);
    RUN(reader_fragmented_text_mid_codepoint_with_ping);
    RUN(reader_need_more_means_nothing_whole_left);
    RUN(reader_close_frames);
    RUN(reader_byte_at_a_time);
    CHECK_EXIT();
}
