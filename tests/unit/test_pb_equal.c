/* test_pb_equal.c -- core/pb_equal.c: two messages of scalar fields and
 * sub-messages of such fields (repeated or not) are compared in place,
 * field by field as the descriptor lists them; a message it cannot compare
 * that way says so (-1) instead of guessing.
 *
 * Seen failing: spans_compared_in_place fails at 5e0c3a9 (before
 * sub-messages were compared: Member.earlier made every comparison -1). */
#include <string.h>

#include "../check.h"
#include "core/pb_equal.h"
#include "proto/storage.pb-c.h"

static Parley__Store__Member member(void) {
    Parley__Store__Member m = PARLEY__STORE__MEMBER__INIT;
    m.joined_seq = 3;
    m.read_seq = 9;
    m.delivered_seq = 11;
    m.added_by = 42;
    m.direct_peer = 7;
    m.request_sent = 2;
    return m;
}

/* equal members are equal; a difference in any one field, the first, a
 * bool in the middle and the last one listed, makes them unequal */
static void every_scalar_field_counts(void) {
    Parley__Store__Member a = member(), b = member();
    CHECK(pb_fields_equal(&a.base, &b.base) == 1, "equal members compared unequal");
    b.joined_seq = 4;
    CHECK(pb_fields_equal(&a.base, &b.base) == 0, "joined_seq differs");
    b = member();
    b.admin = 1;
    CHECK(pb_fields_equal(&a.base, &b.base) == 0, "admin differs");
    b = member();
    b.request_sent = 3;
    CHECK(pb_fields_equal(&a.base, &b.base) == 0, "request_sent differs");
    b = member();
    b.hidden = 1;
    CHECK(pb_fields_equal(&a.base, &b.base) == 0, "hidden (the last field) differs");
}

/* a message with a string field, messages of two types, and a message
 * carrying unknown fields are left to the caller's encoded comparison */
static void what_it_cannot_compare_it_says(void) {
    Parley__Store__User u1 = PARLEY__STORE__USER__INIT, u2 = PARLEY__STORE__USER__INIT;
    CHECK(pb_fields_equal(&u1.base, &u2.base) == -1, "a message with a string compared in place");
    Parley__Store__Member m = member();
    CHECK(pb_fields_equal(&m.base, &u1.base) == -1, "messages of two types compared");
    Parley__Store__Member a = member(), b = member();
    ProtobufCMessageUnknownField unknown = {0};
    b.base.n_unknown_fields = 1;
    b.base.unknown_fields = &unknown;
    CHECK(pb_fields_equal(&a.base, &b.base) == -1, "unknown fields ignored");
}

/* what the caller's fallback would answer: the encodings compared */
static int encoded_equal(const ProtobufCMessage *a, const ProtobufCMessage *b) {
    uint8_t x[512], y[512];
    size_t nx = protobuf_c_message_get_packed_size(a), ny = protobuf_c_message_get_packed_size(b);
    if (nx != ny || nx > sizeof x) return 0;
    protobuf_c_message_pack(a, x);
    protobuf_c_message_pack(b, y);
    return memcmp(x, y, nx) == 0;
}

/* a member re-added keeps its earlier spans (Member.earlier): equal spans,
 * in separate arrays or the same one, are equal; another count, or a span
 * that differs in either field, is not; each answer is the one the
 * encodings give */
static void spans_compared_in_place(void) {
    Parley__Store__MemberSpan sa[2] = {PARLEY__STORE__MEMBER_SPAN__INIT, PARLEY__STORE__MEMBER_SPAN__INIT};
    Parley__Store__MemberSpan sb[2] = {PARLEY__STORE__MEMBER_SPAN__INIT, PARLEY__STORE__MEMBER_SPAN__INIT};
    for (int i = 0; i < 2; i++) {
        sa[i].joined_seq = sb[i].joined_seq = 10 * (uint64_t)i + 1;
        sa[i].left_seq = sb[i].left_seq = 10 * (uint64_t)i + 5;
    }
    Parley__Store__MemberSpan *pa[2] = {&sa[0], &sa[1]}, *pb[2] = {&sb[0], &sb[1]};
    Parley__Store__Member a = member(), b = member();
    a.earlier = pa;
    b.earlier = pb;
    a.n_earlier = b.n_earlier = 2;
    CHECK(pb_fields_equal(&a.base, &b.base) == 1, "equal spans in two arrays compared %d",
          pb_fields_equal(&a.base, &b.base));
    CHECK(encoded_equal(&a.base, &b.base) == 1, "the encodings of equal spans differ");
    Parley__Store__Member shallow = a;   /* a copy sharing the array */
    CHECK(pb_fields_equal(&a.base, &shallow.base) == 1, "a record and its shallow copy");
    b.n_earlier = 1;
    CHECK(pb_fields_equal(&a.base, &b.base) == 0 && !encoded_equal(&a.base, &b.base), "one span fewer");
    b.n_earlier = 2;
    sb[1].left_seq = 16;
    CHECK(pb_fields_equal(&a.base, &b.base) == 0 && !encoded_equal(&a.base, &b.base), "the last span's left_seq differs");
    sb[1].left_seq = sa[1].left_seq;
    sb[0].joined_seq = 2;
    CHECK(pb_fields_equal(&a.base, &b.base) == 0 && !encoded_equal(&a.base, &b.base), "the first span's joined_seq differs");
    sb[0].joined_seq = sa[0].joined_seq;
    b.joined_seq = 4;   /* a field listed before the spans differs, the spans agree */
    CHECK(pb_fields_equal(&a.base, &b.base) == 0, "joined_seq differs beside equal spans");
    b.joined_seq = a.joined_seq;
    CHECK(pb_fields_equal(&a.base, &b.base) == 1, "equal again");
    ProtobufCMessageUnknownField unknown = {0};
    sb[1].base.n_unknown_fields = 1;
    sb[1].base.unknown_fields = &unknown;
    CHECK(pb_fields_equal(&a.base, &b.base) == -1, "unknown fields in a span ignored");
}

int main(void) {
    RUN(every_scalar_field_counts);
    RUN(spans_compared_in_place);
    RUN(what_it_cannot_compare_it_says);
    CHECK_EXIT();
}
