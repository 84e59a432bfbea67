/* test_member_cache.c -- the conversation writer's member records
 * (src/chat/writer_cache.c) with the spans of a re-added member
 * (storage.proto, Member.earlier):
 *
 *   - a record put with spans comes back with the same spans, as a copy the
 *     caller frees as an unpacked record (the ASan pass sees a double free
 *     or a leak if the cache and the copy share memory);
 *   - a put without spans over it leaves none behind, a put with more
 *     replaces them, and neither clear nor free leaks them;
 *   - a record that went through the cache packs to the same bytes as the
 *     one put, so what a writer stores after a hit is what it was given. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "chat/writer_cache.h"

enum { CONV = 9, USER = 4 };

/* a member record with n spans [10i+1, 10i+5], joined after them */
typedef struct spanned {
    Parley__Store__Member m;
    Parley__Store__MemberSpan spans[8], *ptrs[8];
} spanned;

static void make(spanned *s, size_t n) {
    parley__store__member__init(&s->m);
    for (size_t i = 0; i < n; i++) {
        parley__store__member_span__init(&s->spans[i]);
        s->spans[i].joined_seq = 10 * i + 1;
        s->spans[i].left_seq = 10 * i + 5;
        s->ptrs[i] = &s->spans[i];
    }
    s->m.earlier = n ? s->ptrs : NULL;
    s->m.n_earlier = n;
    s->m.joined_seq = 10 * n + 1;
    s->m.read_seq = 10 * n + 1;
    s->m.admin = true;
}

static bool same_bytes(const Parley__Store__Member *x, const Parley__Store__Member *y) {
    uint8_t a[512], b[512];
    size_t na = parley__store__member__get_packed_size(x), nb = parley__store__member__get_packed_size(y);
    if (na != nb || na > sizeof a) return false;
    parley__store__member__pack(x, a);
    parley__store__member__pack(y, b);
    return memcmp(a, b, na) == 0;
}

static void spans_come_back_as_put(void) {
    writer_cache *c = NULL;
    spanned three, none, five;
    make(&three, 3);
    make(&none, 0);
    make(&five, 5);
    writer_cache_member_put(&c, CONV, USER, &three.m);
    Parley__Store__Member *got = writer_cache_member_get(&c, CONV, USER);
    bool first = got && got->n_earlier == 3 && same_bytes(got, &three.m);
    if (got) parley__store__member__free_unpacked(got, NULL);
    /* a second copy of the same entry: the first one's free left it whole */
    got = writer_cache_member_get(&c, CONV, USER);
    bool second = got && same_bytes(got, &three.m);
    if (got) parley__store__member__free_unpacked(got, NULL);

    writer_cache_member_put(&c, CONV, USER, &none.m);
    got = writer_cache_member_get(&c, CONV, USER);
    bool dropped = got && got->n_earlier == 0 && got->earlier == NULL && same_bytes(got, &none.m);
    if (got) parley__store__member__free_unpacked(got, NULL);

    writer_cache_member_put(&c, CONV, USER, &three.m);
    writer_cache_member_put(&c, CONV, USER, &five.m);
    got = writer_cache_member_get(&c, CONV, USER);
    bool replaced = got && got->n_earlier == 5 && same_bytes(got, &five.m);
    if (got) parley__store__member__free_unpacked(got, NULL);

    writer_cache_clear(c);
    got = writer_cache_member_get(&c, CONV, USER);
    bool cleared = got == NULL;
    if (got) parley__store__member__free_unpacked(got, NULL);
    writer_cache_member_put(&c, CONV, USER, &three.m);   /* held at the free below */
    writer_cache_free(c);

    CHECK(first, "the record read back differs from the one put (3 spans)");
    CHECK(second, "a second read of the same entry differs");
    CHECK(dropped, "a record put without spans came back with some");
    CHECK(replaced, "a record with 5 spans put over one with 3 came back otherwise");
    CHECK(cleared, "a cleared cache still held the record");
}

int main(void) {
    RUN(spans_come_back_as_put);
    CHECK_EXIT();
}
