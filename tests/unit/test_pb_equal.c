/* test_pb_equal.c -- core/pb_equal.c: two messages of plain scalar fields
 * (and repeated sub-messages of them) are compared in place, field by field
 * as the descriptor lists them; a
 * message it cannot compare that way says so (-1) instead of guessing. */
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
    CHECK(pb_scalars_equal(&a.base, &b.base) == 1, "equal members compared unequal");
    b.joined_seq = 4;
    CHECK(pb_scalars_equal(&a.base, &b.base) == 0, "joined_seq differs");
    b = member();
    b.admin = 1;
    CHECK(pb_scalars_equal(&a.base, &b.base) == 0, "admin differs");
    b = member();
    b.request_sent = 3;
    CHECK(pb_scalars_equal(&a.base, &b.base) == 0, "request_sent differs");
    b = member();
    b.hidden = 1;
    CHECK(pb_scalars_equal(&a.base, &b.base) == 0, "hidden (the last field) differs");
}

/* a message with a string field, messages of two types, and a message
 * carrying unknown fields are left to the caller's encoded comparison */
static void what_it_cannot_compare_it_says(void) {
    Parley__Store__User u1 = PARLEY__STORE__USER__INIT, u2 = PARLEY__STORE__USER__INIT;
    CHECK(pb_scalars_equal(&u1.base, &u2.base) == -1, "a message with a string compared in place");
    Parley__Store__Member m = member();
    CHECK(pb_scalars_equal(&m.base, &u1.base) == -1, "messages of two types compared");
    Parley__Store__Member a = member(), b = member();
    ProtobufCMessageUnknownField unknown = {0};
    b.base.n_unknown_fields = 1;
    b.base.unknown_fields = &unknown;
    CHECK(pb_scalars_equal(&a.base, &b.base) == -1, "unknown fields ignored");
}

/* a re-added member's earlier spans (a repeated sub-message of scalars):
 * compared in place too, count and every field of every span */
static void spans_count(void) {
    Parley__Store__MemberSpan s[3], t[3], *ps[3], *pt[3];
    for (int i = 0; i < 3; i++) {
        parley__store__member_span__init(&s[i]);
        s[i].joined_seq = 10 * (uint64_t)i + 1;
        s[i].left_seq = 10 * (uint64_t)i + 5;
        t[i] = s[i];
        ps[i] = &s[i];
        pt[i] = &t[i];
    }
    Parley__Store__Member a = member(), b = member();
    a.earlier = ps;
    a.n_earlier = 3;
    b.earlier = pt;
    b.n_earlier = 3;
    CHECK(pb_scalars_equal(&a.base, &b.base) == 1, "members with equal spans compared %d",
          pb_scalars_equal(&a.base, &b.base));
    t[2].left_seq = 26;
    CHECK(pb_scalars_equal(&a.base, &b.base) == 0, "the last span's left_seq differs");
    t[2] = s[2];
    b.n_earlier = 2;
    CHECK(pb_scalars_equal(&a.base, &b.base) == 0, "two spans against three");
    b.n_earlier = 3;
    b.read_seq = 10;
    CHECK(pb_scalars_equal(&a.base, &b.base) == 0, "read_seq differs beside equal spans");
}

int main(void) {
    RUN(every_scalar_field_counts);
    RUN(spans_count);
    RUN(what_it_cannot_compare_it_says);
    CHECK_EXIT();
}
