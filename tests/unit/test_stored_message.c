/* test_stored_message.c -- chat/stored_message.c writes the stored Message
 * of a send by hand: its bytes must be the ones protobuf-c packs for the
 * same Message (zeros and empty strings left out, varints of every length,
 * bodies and ids across the one- to three-byte lengths, negative and
 * unknown enum values), and decode to the same fields.
 *
 * Seen failing: stored_message.c changed to write mime_type after size
 * (a_usual_message and every_combination fail), and changed to write a
 * negative type in 5 bytes (every_combination fails). */
#include <string.h>

#include "../check.h"
#include "chat/stored_message.h"
#include "proto/parley.pb-c.h"

enum { BODY_MAX = 65536 };

static uint8_t pattern[BODY_MAX + 256];

/* the Message as writer.c packed it before: through protobuf-c */
static Parley__V1__Message as_protobuf(const stored_message *s) {
    Parley__V1__Message m;
    parley__v1__message__init(&m);
    m.conversation_id = s->conversation_id;
    m.seq = s->seq;
    m.sender_user_id = s->sender_user_id;
    m.sender_device_id = s->sender_device_id;
    m.type = (Parley__V1__MessageType)s->type;
    m.body.data = (uint8_t *)s->body;
    m.body.len = s->body_len;
    m.mime_type = (char *)s->mime_type;
    m.size = s->size;
    m.ref_seq = s->ref_seq;
    m.server_ts = s->server_ts;
    m.client_msg_id.data = (uint8_t *)s->client_msg_id;
    m.client_msg_id.len = s->client_msg_id_len;
    return m;
}

static int bytes_equal(const ProtobufCBinaryData *d, const uint8_t *p, size_t n) {
    return d->len == n && (n == 0 || memcmp(d->data, p, n) == 0);
}

/* 1 when s's hand-written bytes equal protobuf-c's and decode back to s */
static int same_as_protobuf(const stored_message *s) {
    static uint8_t mine[BODY_MAX + 1024], theirs[BODY_MAX + 1024];
    Parley__V1__Message m = as_protobuf(s);
    size_t want = parley__v1__message__get_packed_size(&m);
    size_t size = stored_message_size(s);
    if (size != want || want > sizeof theirs) return 0;
    memset(mine, 0xee, size + 1);
    size_t n = stored_message_encode(s, mine), k = parley__v1__message__pack(&m, theirs);
    if (n != size || k != want || memcmp(mine, theirs, n) != 0 || mine[n] != 0xee) return 0;
    Parley__V1__Message *d = parley__v1__message__unpack(NULL, n, mine);
    const char *mime = s->mime_type ? s->mime_type : "";
    int ok = d && d->conversation_id == s->conversation_id && d->seq == s->seq &&
             d->sender_user_id == s->sender_user_id && d->sender_device_id == s->sender_device_id &&
             (int32_t)d->type == s->type && bytes_equal(&d->body, s->body, s->body_len) &&
             strcmp(d->mime_type, mime) == 0 && d->size == s->size && d->ref_seq == s->ref_seq &&
             d->server_ts == s->server_ts && bytes_equal(&d->client_msg_id, s->client_msg_id, s->client_msg_id_len) &&
             d->membership == NULL && d->base.n_unknown_fields == 0;
    if (d) parley__v1__message__free_unpacked(d, NULL);
    return ok;
}

static void a_usual_message(void) {
    for (size_t i = 0; i < sizeof pattern; i++) pattern[i] = (uint8_t)(i * 131 + 7);
    stored_message s = {
        .conversation_id = 1234567, .seq = 42, .sender_user_id = 77, .sender_device_id = 2,
        .type = PARLEY__V1__MESSAGE_TYPE__TEXT, .body = pattern, .body_len = 100, .mime_type = "",
        .server_ts = 1764672000123ull, .client_msg_id = pattern + 200, .client_msg_id_len = 16,
    };
    CHECK(same_as_protobuf(&s), "a text message");
    s.type = PARLEY__V1__MESSAGE_TYPE__MEDIA;
    s.mime_type = "image/png";
    s.size = 1 << 20;
    CHECK(same_as_protobuf(&s), "a media message");
    s.type = PARLEY__V1__MESSAGE_TYPE__REACTION;
    s.mime_type = "";
    s.size = 0;
    s.ref_seq = 41;
    CHECK(same_as_protobuf(&s), "a reaction");
}

/* proto3: a field at 0, an empty body or id, an empty or absent mime_type
 * is not written */
static void zeros_left_out(void) {
    stored_message zero = {0};
    CHECK(same_as_protobuf(&zero), "every field 0, mime_type NULL");
    zero.mime_type = "";
    CHECK(same_as_protobuf(&zero), "every field 0, mime_type \"\"");
    CHECK(stored_message_size(&zero) == 0, "an empty Message is %zu bytes", stored_message_size(&zero));
    stored_message s = {.seq = 1, .body = pattern, .body_len = 0, .client_msg_id = pattern, .client_msg_id_len = 0};
    CHECK(same_as_protobuf(&s), "empty body and id with their pointers set");
}

/* every field through values of every varint length and its neighbours,
 * against bodies, ids and mime types of the lengths where the length's
 * varint grows, and enum values the writer refuses (negative, unknown) */
static void every_combination(void) {
    const uint64_t u64s[] = {0, 1, 127, 128, 16383, 16384, 1ull << 32, (1ull << 35) - 1, 1ull << 56,
                             UINT64_MAX};
    const uint32_t u32s[] = {0, 1, 127, 128, 1u << 21, UINT32_MAX};
    const int32_t types[] = {0, 1, 2, 3, 4, 127, 128, INT32_MAX, -1, INT32_MIN};
    const size_t body_lens[] = {0, 1, 127, 128, 16383, 16384, BODY_MAX};
    const size_t id_lens[] = {0, 1, 64, 127, 128, 200};
    static char long_mime[300];
    memset(long_mime, 'x', sizeof long_mime - 1);
    const char *mimes[] = {NULL, "", "i", "image/png", long_mime};
    size_t n = 0;
    for (size_t i = 0; i < 10 * 6 * 10 * 7 * 6 * 5; i += 7, n++) {
        stored_message s = {
            .conversation_id = u64s[i % 10],
            .seq = u64s[(i / 3) % 10],
            .sender_user_id = u64s[(i / 7) % 10],
            .sender_device_id = u32s[(i / 10) % 6],
            .type = types[(i / 60) % 10],
            .body = pattern,
            .body_len = body_lens[(i / 600) % 7],
            .mime_type = mimes[(i / 4200) % 5],
            .size = u64s[(i / 11) % 10],
            .ref_seq = u64s[(i / 13) % 10],
            .server_ts = u64s[(i / 17) % 10],
            .client_msg_id = pattern + 5,
            .client_msg_id_len = id_lens[(i / 21000) % 6],
        };
        CHECK(same_as_protobuf(&s),
              "case %zu: conv %llu seq %llu device %u type %d body %zu mime %s id %zu", i,
              (unsigned long long)s.conversation_id, (unsigned long long)s.seq, s.sender_device_id, s.type,
              s.body_len, s.mime_type ? (strlen(s.mime_type) > 20 ? "(300 bytes)" : s.mime_type) : "NULL",
              s.client_msg_id_len);
    }
    CHECK(n > 10000, "only %zu combinations", n);
}

/* Message's fields as stored_message.c knows them: 11 it writes and the
 * membership (packed by protobuf-c). A field added to the schema fails
 * here until the hand-written encoder is taught it. */
static void schema_unchanged(void) {
    CHECK(parley__v1__message__descriptor.n_fields == 12,
          "Message has %u fields, stored_message.c knows 12: write the new one there",
          parley__v1__message__descriptor.n_fields);
}

int main(void) {
    check_run("schema_unchanged", schema_unchanged);
    check_run("a_usual_message", a_usual_message);
    check_run("zeros_left_out", zeros_left_out);
    check_run("every_combination", every_combination);
    CHECK_EXIT();
}
