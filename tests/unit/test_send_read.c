/* test_send_read.c -- gateway/send_read.c reads the plain SendMessage frame
 * in place: what it reads must be what protobuf-c's decoder makes of the
 * same bytes (values of every length, fields absent and present, in
 * protobuf-c's order and in reverse), and anything unusual (a field twice,
 * an unknown field, a padded varint, another body, a wire type the decoder
 * refuses) must be left to the decoder.
 *
 * Seen failing: left_to_decoder, with send_read.c changed to take a
 * SendMessage field given twice, and with the enum's INT32_MAX bound taken
 * out (each of those it would read as the decoder does, the last value
 * and the low 32 bits: but the reader is meant to take the plain frame
 * only, so that what it takes is easy to see right). fuzz_frame, with the
 * reader taking padded varints, aborts on a client_msg_id length in 7
 * bytes (12 80 80 80 80 80 00 as a SendMessage), which the decoder refuses. */
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "../send_read_same.h"
#include "gateway/send_read.h"

#define NEED(x) CHECK((x), "%s", #x)

enum { BODY_MAX = 65536 };

typedef struct send_case {
    uint64_t request_id, conversation_id, size, ref_seq;
    int type;
    size_t id_len, body_len;
    const char *mime;
} send_case;

static uint8_t pattern[BODY_MAX + 256];   /* bodies start at pattern + 3 */

static void fill_send(const send_case *k, Parley__V1__SendMessage *s) {
    parley__v1__send_message__init(s);
    s->conversation_id = k->conversation_id;
    s->client_msg_id.data = pattern;
    s->client_msg_id.len = k->id_len;
    s->type = (Parley__V1__MessageType)k->type;
    s->body.data = pattern + 3;
    s->body.len = k->body_len;
    s->mime_type = (char *)k->mime;
    s->size = k->size;
    s->ref_seq = k->ref_seq;
}

static size_t pack_frame(uint64_t request_id, Parley__V1__SendMessage *s, uint8_t *out) {
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = request_id;
    f.body_case = PARLEY__V1__FRAME__BODY_SEND_MESSAGE;
    f.send_message = s;
    return parley__v1__frame__pack(&f, out);
}

/* The same frame with its fields in reverse order: each field packed
 * alone (proto3 leaves out the others), written last to first; the
 * request_id after the SendMessage. Valid protobuf that protobuf-c never
 * writes, but another encoder may. */
static size_t pack_reversed(const send_case *k, uint8_t *out) {
    Parley__V1__SendMessage all, one;
    fill_send(k, &all);
    uint8_t inner[BODY_MAX + 512];
    size_t n = 0;
    for (int field = 7; field >= 1; field--) {
        parley__v1__send_message__init(&one);
        switch (field) {
        case 1: one.conversation_id = all.conversation_id; break;
        case 2: one.client_msg_id = all.client_msg_id; break;
        case 3: one.type = all.type; break;
        case 4: one.body = all.body; break;
        case 5: one.mime_type = all.mime_type; break;
        case 6: one.size = all.size; break;
        default: one.ref_seq = all.ref_seq; break;
        }
        n += parley__v1__send_message__pack(&one, inner + n);
    }
    size_t p = 0;
    out[p++] = (uint8_t)((PARLEY__V1__FRAME__BODY_SEND_MESSAGE << 3 | 2) | 0x80);
    out[p++] = (PARLEY__V1__FRAME__BODY_SEND_MESSAGE << 3 | 2) >> 7;
    for (size_t v = n; ; v >>= 7) {
        out[p++] = (uint8_t)(v >= 0x80 ? (v & 0x7f) | 0x80 : v);
        if (v < 0x80) break;
    }
    memcpy(out + p, inner, n);
    p += n;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = k->request_id;   /* packs the request_id alone: no body set */
    return p + parley__v1__frame__pack(&f, out + p);
}

/* 1 when send_frame_read takes b and reads what the decoder reads */
static int read_as_decoder(const uint8_t *b, size_t n) {
    size_t allocated = 0;
    Parley__V1__Frame *mine = send_frame_read(b, n, &allocated);
    Parley__V1__Frame *theirs = parley__v1__frame__unpack(NULL, n, b);
    int ok = mine && allocated >= sizeof *mine && send_read_same(mine, theirs);
    free(mine);
    if (theirs) parley__v1__frame__free_unpacked(theirs, NULL);
    return ok;
}

static void read_like_decoder(void) {
    for (size_t i = 0; i < sizeof pattern; i++) pattern[i] = (uint8_t)(i * 131 + 7);
    const uint64_t u64s[] = {0, 1, 127, 128, 1ull << 40, UINT64_MAX};
    const int types[] = {0, 1, 2, 3, 4, 127, 128, 1000, INT32_MAX};
    const size_t id_lens[] = {0, 1, 16, 64, 200};
    const size_t body_lens[] = {0, 1, 127, 128, 16383, 16384, BODY_MAX};
    const char *mimes[] = {"", "i", "image/png"};
    static uint8_t b[BODY_MAX + 1024];
    /* every value of each dimension, against the others in turn: each
     * u64 field goes through all of u64s, the rest cycle with it */
    for (size_t i = 0; i < 6 * 9 * 5 * 7 * 3; i++) {
        send_case k = {
            .request_id = u64s[i % 6],
            .conversation_id = u64s[(i / 6) % 6],
            .size = u64s[(i / 2) % 6],
            .ref_seq = u64s[(i / 3) % 6],
            .type = types[(i / 6) % 9],
            .id_len = id_lens[(i / 54) % 5],
            .body_len = body_lens[(i / 270) % 7],
            .mime = mimes[(i / 7) % 3],
        };
        Parley__V1__SendMessage s;
        fill_send(&k, &s);
        size_t n = pack_frame(k.request_id, &s, b);
        CHECK(read_as_decoder(b, n), "case %zu (protobuf-c's order): request_id %llu conv %llu type %d id %zu body %zu mime '%s'",
              i, (unsigned long long)k.request_id, (unsigned long long)k.conversation_id, k.type, k.id_len,
              k.body_len, k.mime);
        n = pack_reversed(&k, b);
        CHECK(read_as_decoder(b, n), "case %zu (reversed): request_id %llu conv %llu type %d id %zu body %zu", i,
              (unsigned long long)k.request_id, (unsigned long long)k.conversation_id, k.type, k.id_len, k.body_len);
    }
    /* the frame parley-bench and the clients send: the fields are where the writer looks */
    send_case k = {.request_id = 42, .conversation_id = 9, .type = 1, .id_len = 16, .body_len = 100, .mime = ""};
    Parley__V1__SendMessage s;
    fill_send(&k, &s);
    size_t n = pack_frame(k.request_id, &s, b), allocated = 0;
    Parley__V1__Frame *f = send_frame_read(b, n, &allocated);
    NEED(f);
    const Parley__V1__SendMessage *q = f->send_message;
    int ok = f->request_id == 42 && f->body_case == PARLEY__V1__FRAME__BODY_SEND_MESSAGE && q->conversation_id == 9 &&
             q->type == PARLEY__V1__MESSAGE_TYPE__TEXT && q->client_msg_id.len == 16 &&
             memcmp(q->client_msg_id.data, pattern, 16) == 0 && q->body.len == 100 &&
             memcmp(q->body.data, pattern + 3, 100) == 0 && strcmp(q->mime_type, "") == 0 && q->size == 0 &&
             q->ref_seq == 0 && allocated < n + 256;
    free(f);
    CHECK(ok, "the plain send read wrong (or its block of %zu bytes for %zu in)", allocated, n);
}

/* 1 when send_frame_read leaves b to the decoder; *decodes: whether the decoder reads it */
static int left(const uint8_t *b, size_t n, int *decodes) {
    size_t allocated = 0;
    Parley__V1__Frame *mine = send_frame_read(b, n, &allocated);
    Parley__V1__Frame *theirs = parley__v1__frame__unpack(NULL, n, b);
    *decodes = theirs != NULL;
    if (theirs) parley__v1__frame__free_unpacked(theirs, NULL);
    free(mine);
    return mine == NULL;
}

#define LEFT(bytes, decoder_reads, why) do { \
    int decodes_; \
    CHECK(left(bytes, sizeof bytes, &decodes_), "taken in place: %s", why); \
    CHECK(decodes_ == (decoder_reads), "the decoder %s it: %s", decodes_ ? "reads" : "refuses", why); \
} while (0)

static void left_to_decoder(void) {
    const uint8_t s0 = (20 << 3 | 2) | 0x80, s1 = 0x01;   /* SendMessage's key: two bytes */
    const uint8_t empty_send[] = {s0, s1, 0x00};
    int decodes;
    CHECK(!left(empty_send, sizeof empty_send, &decodes) && decodes, "an empty SendMessage is read");
    CHECK(read_as_decoder(empty_send, sizeof empty_send), "an empty SendMessage");

    /* valid protobuf the decoder reads, but not the plain frame */
    const uint8_t conv_twice[] = {s0, s1, 0x04, 0x08, 0x05, 0x08, 0x06};
    LEFT(conv_twice, 1, "conversation_id twice (the decoder keeps the last)");
    const uint8_t id_twice[] = {s0, s1, 0x06, 0x12, 0x01, 'a', 0x12, 0x01, 'b'};
    LEFT(id_twice, 1, "client_msg_id twice");
    const uint8_t type_twice[] = {s0, s1, 0x04, 0x18, 0x01, 0x18, 0x02};
    LEFT(type_twice, 1, "type twice");
    const uint8_t two_sends[] = {s0, s1, 0x02, 0x08, 0x05, s0, s1, 0x02, 0x08, 0x06};
    LEFT(two_sends, 1, "two SendMessages (the decoder merges them)");
    const uint8_t rid_twice[] = {0x08, 0x01, 0x08, 0x02, s0, s1, 0x00};
    LEFT(rid_twice, 1, "request_id twice");
    const uint8_t unknown_in_send[] = {s0, s1, 0x04, 0x08, 0x05, 0x40, 0x01};
    LEFT(unknown_in_send, 1, "an unknown field (8) in the SendMessage");
    const uint8_t unknown_in_frame[] = {0x10, 0x01, s0, s1, 0x00};
    LEFT(unknown_in_frame, 1, "an unknown field (2) in the Frame");
    const uint8_t then_history[] = {s0, s1, 0x02, 0x08, 0x05, (21 << 3 | 2) | 0x80, 0x01, 0x02, 0x08, 0x01};
    LEFT(then_history, 1, "a SendMessage, then another body (the last wins)");
    const uint8_t history_then[] = {(21 << 3 | 2) | 0x80, 0x01, 0x02, 0x08, 0x01, s0, s1, 0x02, 0x08, 0x05};
    LEFT(history_then, 1, "another body, then a SendMessage");
    const uint8_t padded_conv[] = {s0, s1, 0x03, 0x08, 0x85, 0x00};
    LEFT(padded_conv, 1, "conversation_id padded to 2 bytes");
    const uint8_t padded_len[] = {s0, s1, 0x82, 0x00, 0x08, 0x05};
    LEFT(padded_len, 1, "the SendMessage's length padded to 2 bytes");
    const uint8_t padded_key[] = {s0 , s1 | 0x80, 0x00, 0x02, 0x08, 0x05};
    LEFT(padded_key, 1, "the SendMessage's key padded to 3 bytes");
    const uint8_t padded_id_len[] = {s0, s1, 0x04, 0x12, 0x81, 0x00, 'a'};
    LEFT(padded_id_len, 1, "client_msg_id's length padded to 2 bytes");
    /* an enum of -1: ten bytes; the decoder keeps its low 32 bits */
    const uint8_t negative_type[] = {s0, s1, 0x0b, 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
    LEFT(negative_type, 1, "type -1");
    const uint8_t type_2_31[] = {s0, s1, 0x06, 0x18, 0x80, 0x80, 0x80, 0x80, 0x08};
    LEFT(type_2_31, 1, "type 2^31 (the decoder makes it negative)");

    /* what the decoder refuses */
    const uint8_t conv_as_bytes[] = {s0, s1, 0x03, 0x0a, 0x01, 0x05};
    LEFT(conv_as_bytes, 0, "conversation_id as length-delimited");
    const uint8_t id_as_varint[] = {s0, s1, 0x02, 0x10, 0x05};
    LEFT(id_as_varint, 0, "client_msg_id as a varint");
    const uint8_t send_past_end[] = {s0, s1, 0x05, 0x08, 0x05};
    LEFT(send_past_end, 0, "the SendMessage's length past the end");
    const uint8_t body_past_end[] = {s0, s1, 0x04, 0x22, 0x05, 'a', 'b'};
    LEFT(body_past_end, 0, "the body's length past the SendMessage");
    const uint8_t unterminated[] = {s0, s1, 0x02, 0x08, 0x85};
    LEFT(unterminated, 0, "conversation_id unterminated");
    const uint8_t field_zero[] = {s0, s1, 0x02, 0x00, 0x05};
    LEFT(field_zero, 0, "field number 0 in the SendMessage");

    const uint8_t rid_alone[] = {0x08, 0x05};
    LEFT(rid_alone, 1, "a request_id alone");
    CHECK(send_frame_read(rid_alone, 0, &(size_t){0}) == NULL, "an empty frame");
}

/* SendMessage's fields as send_read.c knows them (1-7). A field added to
 * the schema would be left to the decoder (an unknown field), so every
 * send would take the slow path unnoticed: this fails first. */
static void schema_unchanged(void) {
    CHECK(parley__v1__send_message__descriptor.n_fields == 7,
          "SendMessage has %u fields, send_read.c reads 7: teach it the new one",
          parley__v1__send_message__descriptor.n_fields);
}

int main(void) {
    check_run("schema_unchanged", schema_unchanged);
    check_run("read_like_decoder", read_like_decoder);
    check_run("left_to_decoder", left_to_decoder);
    CHECK_EXIT();
}
