/* test_request_limits.c -- the look at a Frame before decoding it
 * (frame_peek_parse), an Ack read in place (frame_read_ack), the per-type
 * size limits, the budgeted decoder, and the deduplication of presence ids.
 *
 * Seen failing: ack_read_in_place, with frame_read_ack changed to take a
 * second user_seq in one Ack, or a second Ack in one frame (the decoder
 * merges those; the fast path must leave them to it), and before varints
 * had to be in their shortest form (the 8-byte length). */
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "core/config.h"
#include "gateway/presence_access.h"
#include "gateway/request_limits.h"

#define NEED(x) CHECK((x), "%s", #x)

static size_t pack(const Parley__V1__Frame *f, uint8_t *out) { return parley__v1__frame__pack(f, out); }

static void peek_finds_request_id_and_body(void) {
    Parley__V1__History h = PARLEY__V1__HISTORY__INIT;
    h.conversation_id = 77;
    h.limit = 10;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = 123456789;
    f.body_case = PARLEY__V1__FRAME__BODY_HISTORY;
    f.history = &h;
    uint8_t b[64];
    size_t n = pack(&f, b);
    frame_peek pk;
    NEED(frame_peek_parse(b, n, &pk) == 0);
    CHECK(pk.request_id == 123456789, "request_id %llu", (unsigned long long)pk.request_id);
    CHECK(pk.body == PARLEY__V1__FRAME__BODY_HISTORY, "body %u", pk.body);
    /* an empty frame: no body */
    NEED(frame_peek_parse(b, 0, &pk) == 0);
    CHECK(pk.body == 0 && pk.request_id == 0, "empty frame: body %u", pk.body);
}

static void peek_refuses_malformed(void) {
    frame_peek pk;
    const uint8_t truncated_len[] = {(21 << 3 | 2) | 0x80, 1, 10, 1, 2};   /* says 10, has 2 */
    CHECK(frame_peek_parse(truncated_len, sizeof truncated_len, &pk) == -1, "length past the end");
    const uint8_t endless_varint[] = {0x08, 0xff, 0xff, 0xff};
    CHECK(frame_peek_parse(endless_varint, sizeof endless_varint, &pk) == -1, "unterminated varint");
    const uint8_t group[] = {(5 << 3) | 3};
    CHECK(frame_peek_parse(group, sizeof group, &pk) == -1, "group wire type");
    const uint8_t field_zero[] = {0x00, 0x01};
    CHECK(frame_peek_parse(field_zero, sizeof field_zero, &pk) == -1, "field number 0");
    const uint8_t fixed_short[] = {(3 << 3) | 1, 1, 2};
    CHECK(frame_peek_parse(fixed_short, sizeof fixed_short, &pk) == -1, "short 64-bit field");
}

static size_t ack_frame(uint64_t request_id, uint64_t user_seq, uint8_t *out) {
    Parley__V1__Ack a = PARLEY__V1__ACK__INIT;
    a.user_seq = user_seq;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = request_id;
    f.body_case = PARLEY__V1__FRAME__BODY_ACK;
    f.ack = &a;
    return pack(&f, out);
}

/* the Acks clients send are read in place, as the decoder reads them;
 * anything more is left to the decoder */
static void ack_read_in_place(void) {
    const uint64_t seqs[] = {0, 1, 127, 128, 1ull << 35, UINT64_MAX};
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        for (uint64_t rid = 0; rid <= 300; rid += 300) {
            uint8_t b[64];
            size_t n = ack_frame(rid, seqs[i], b);
            uint64_t got = 7;
            CHECK(frame_read_ack(b, n, &got) == 1, "ack of %llu (request_id %llu) not read", (unsigned long long)seqs[i],
                  (unsigned long long)rid);
            Parley__V1__Frame *f = parley__v1__frame__unpack(NULL, n, b);
            NEED(f && f->ack);
            uint64_t want = f->ack->user_seq;
            parley__v1__frame__free_unpacked(f, NULL);
            CHECK(got == want && got == seqs[i], "read %llu, decoder %llu", (unsigned long long)got,
                  (unsigned long long)want);
        }
    }
    uint64_t got;
    const uint8_t ack_23 = 23 << 3 | 2;   /* 0xba: two bytes as a varint key */
    const uint8_t empty_ack[] = {ack_23, 0x01, 0x00};
    CHECK(frame_read_ack(empty_ack, sizeof empty_ack, &got) == 1 && got == 0, "an empty Ack");
    const uint8_t twice_seq[] = {ack_23, 0x01, 0x04, 0x08, 0x05, 0x08, 0x06};
    CHECK(frame_read_ack(twice_seq, sizeof twice_seq, &got) == 0, "user_seq twice in one Ack");
    const uint8_t two_acks[] = {ack_23, 0x01, 0x02, 0x08, 0x05, ack_23, 0x01, 0x02, 0x08, 0x06};
    CHECK(frame_read_ack(two_acks, sizeof two_acks, &got) == 0, "two Acks in one frame");
    const uint8_t unknown_in_ack[] = {ack_23, 0x01, 0x04, 0x08, 0x05, 0x10, 0x01};
    CHECK(frame_read_ack(unknown_in_ack, sizeof unknown_in_ack, &got) == 0, "an unknown field in the Ack");
    const uint8_t then_history[] = {ack_23, 0x01, 0x02, 0x08, 0x05, 21 << 3 | 2 | 0x80, 0x01, 0x02, 0x08, 0x01};
    CHECK(frame_read_ack(then_history, sizeof then_history, &got) == 0, "an Ack, then another body");
    const uint8_t truncated[] = {ack_23, 0x01, 0x05, 0x08, 0x05};
    CHECK(frame_read_ack(truncated, sizeof truncated, &got) == 0, "Ack length past the end");
    const uint8_t wide[] = {ack_23, 0x01, 0x0b, 0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};
    CHECK(frame_read_ack(wide, sizeof wide, &got) == 0, "a user_seq wider than 64 bits");
    /* varints longer than they need be: the decoder refuses a length in 8
     * bytes (fuzz_frame found this one) and reads a padded value, so the
     * fast path takes neither */
    const uint8_t long_len[] = {ack_23, 0x01, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    CHECK(frame_read_ack(long_len, sizeof long_len, &got) == 0, "an Ack length in 8 bytes");
    const uint8_t long_seq[] = {ack_23, 0x01, 0x03, 0x08, 0x85, 0x00};
    CHECK(frame_read_ack(long_seq, sizeof long_seq, &got) == 0, "a user_seq padded to 2 bytes");
    const uint8_t long_key[] = {ack_23 | 0x80, 0x81, 0x00, 0x02, 0x08, 0x05};
    CHECK(frame_read_ack(long_key, sizeof long_key, &got) == 0, "the Ack's key padded to 3 bytes");
    const uint8_t no_ack[] = {0x08, 0x05};
    CHECK(frame_read_ack(no_ack, sizeof no_ack, &got) == 0, "a request_id alone");
    CHECK(frame_read_ack(no_ack, 0, &got) == 0, "an empty frame");
}

static void only_sign_in_before_sign_in(void) {
    NEED(request_allowed_before_sign_in(PARLEY__V1__FRAME__BODY_SIGN_IN));
    NEED(request_allowed_before_sign_in(PARLEY__V1__FRAME__BODY_REGISTER_USER));
    NEED(request_allowed_before_sign_in(PARLEY__V1__FRAME__BODY_REGISTER_DEVICE));
    NEED(!request_allowed_before_sign_in(PARLEY__V1__FRAME__BODY_HISTORY));
    NEED(!request_allowed_before_sign_in(PARLEY__V1__FRAME__BODY_UPLOAD_KEYS));
    NEED(!request_allowed_before_sign_in(0));
}

static void size_limits_per_type(void) {
    config cfg;
    config_defaults(&cfg);
    CHECK(request_size_limit(&cfg, PARLEY__V1__FRAME__BODY_SEND_MESSAGE) == 65536 + 4096, "send");
    CHECK(request_size_limit(&cfg, PARLEY__V1__FRAME__BODY_UPLOAD_KEYS) == 65536, "upload keys");
    CHECK(request_size_limit(&cfg, PARLEY__V1__FRAME__BODY_SIGN_IN) == 4096, "sign-in");
    /* a group of max_group_members 64-bit ids fits its limit */
    size_t group = request_size_limit(&cfg, PARLEY__V1__FRAME__BODY_CREATE_GROUP);
    CHECK(group >= 10 * (size_t)cfg.max_group_members + 128 + 16, "create group limit %zu", group);
}

/* n empty pre-keys in an UploadKeys frame: small on the wire, large decoded */
static uint8_t *empty_prekeys(size_t n, size_t *len) {
    uint8_t *b = malloc(2 * n + 16);
    if (!b) return NULL;
    size_t p = 0, inner = 2 * n;
    b[p++] = (uint8_t)((28 << 3 | 2) | 0x80);
    b[p++] = (28 << 3 | 2) >> 7;
    while (inner >= 0x80) { b[p++] = (uint8_t)(inner | 0x80); inner >>= 7; }
    b[p++] = (uint8_t)inner;
    for (size_t i = 0; i < n; i++) {
        b[p++] = 3 << 3 | 2;
        b[p++] = 0;
    }
    *len = p;
    return b;
}

static void decode_budget_refuses_expansion(void) {
    size_t len;
    uint8_t *b = empty_prekeys(30000, &len);   /* 60 KB -> ~2 MB of structs */
    NEED(b);
    bool over = false;
    size_t used = 0;
    Parley__V1__Frame *f = request_decode(b, len, &over, &used);
    free(b);
    if (f) parley__v1__frame__free_unpacked(f, NULL);
    CHECK(f == NULL && over, "30000 empty pre-keys decoded (over %d, used %zu)", over, used);
    /* 200 of them (the protocol's limit) decode, within the budget */
    b = empty_prekeys(200, &len);
    NEED(b);
    f = request_decode(b, len, &over, &used);
    free(b);
    int n = f && f->upload_keys ? (int)f->upload_keys->n_one_time_pre_keys : -1;
    if (f) parley__v1__frame__free_unpacked(f, NULL);
    CHECK(n == 200 && !over && used > 0 && used <= request_decode_budget(len), "200 pre-keys: n %d used %zu", n,
          used);
    /* malformed is not over budget */
    const uint8_t bad[] = {(28 << 3 | 2) | 0x80, 1, 3, 0xff, 0xff, 0xff};
    f = request_decode(bad, sizeof bad, &over, &used);
    CHECK(f == NULL && !over, "malformed body: f %p over %d", (void *)f, over);
}

static void presence_ids_deduplicated(void) {
    uint64_t ids[] = {5, 7, 5, 5, 9, 7, 0, 0, 11};
    size_t n = presence_unique_ids(ids, sizeof ids / sizeof ids[0]);
    uint64_t want[] = {5, 7, 9, 0, 11};
    CHECK(n == 5 && memcmp(ids, want, sizeof want) == 0, "unique %zu: %llu %llu %llu %llu %llu", n,
          (unsigned long long)ids[0], (unsigned long long)ids[1], (unsigned long long)ids[2],
          (unsigned long long)ids[3], (unsigned long long)ids[4]);
}

int main(void) {
    RUN(peek_finds_request_id_and_body);
    RUN(peek_refuses_malformed);
    RUN(ack_read_in_place);
    RUN(only_sign_in_before_sign_in);
    RUN(size_limits_per_type);
    RUN(decode_budget_refuses_expansion);
    RUN(presence_ids_deduplicated);
    CHECK_EXIT();
}
