/* test_marks_cache.c -- the conversation writer's memory of read marks
 * (src/chat/marks_cache.c): an entry is found only for its own
 * (conversation, user), a set replaces it, a clear forgets every entry, a
 * slot shared by two keys remembers only the later one, and a key never
 * set is never found. */
#include <stdio.h>

#include "../check.h"
#include "chat/marks_cache.h"

static void finds_only_what_was_set(void) {
    marks_cache c = {0};
    CHECK(marks_cache_find(&c, 1, 2) == NULL, "empty cache finds nothing");
    marks_cache_set(&c, 1, 2, 5, 7);
    marks_slot *s = marks_cache_find(&c, 1, 2);
    CHECK(s && s->read_seq == 5 && s->delivered_seq == 7, "(1, 2) remembered");
    CHECK(marks_cache_find(&c, 2, 1) == NULL, "(2, 1) is another key");
    CHECK(marks_cache_find(&c, 1, 3) == NULL, "(1, 3) is another key");
    marks_cache_set(&c, 1, 2, 6, 9);
    s = marks_cache_find(&c, 1, 2);
    CHECK(s && s->read_seq == 6 && s->delivered_seq == 9, "a set replaces");
    marks_cache_free(&c);
}

static void clear_forgets_everything(void) {
    marks_cache c = {0};
    for (uint64_t i = 1; i <= 100; i++) marks_cache_set(&c, i, i + 1, i, i);
    marks_cache_clear(&c);
    for (uint64_t i = 1; i <= 100; i++) CHECK(marks_cache_find(&c, i, i + 1) == NULL, "entry %llu after clear",
                                              (unsigned long long)i);
    marks_cache_set(&c, 3, 4, 1, 1);
    CHECK(marks_cache_find(&c, 3, 4) != NULL, "usable after a clear");
    marks_cache_free(&c);
}

/* more keys than slots: every key found carries its own marks, and the
 * cache never says more than it was told */
static void collisions_forget_never_mix(void) {
    marks_cache c = {0};
    enum { KEYS = 3 * MARKS_CACHE_SLOTS };
    for (uint64_t i = 1; i <= KEYS; i++) marks_cache_set(&c, i, 1000 + i % 7, i * 2, i * 3);
    size_t found = 0;
    for (uint64_t i = 1; i <= KEYS; i++) {
        marks_slot *s = marks_cache_find(&c, i, 1000 + i % 7);
        if (!s) continue;
        found++;
        CHECK(s->conv == i && s->read_seq == i * 2 && s->delivered_seq == i * 3, "key %llu has its own marks",
              (unsigned long long)i);
    }
    CHECK(found > 0 && found <= MARKS_CACHE_SLOTS, "%zu of %d keys remembered in %d slots", found, KEYS,
          MARKS_CACHE_SLOTS);
    marks_cache_free(&c);
}

/* keys never set are not found, even where a key with the same
 * conversation (or the same user) fills their slot */
static void a_slot_answers_only_for_its_key(void) {
    marks_cache c = {0};
    for (uint64_t u = 1; u <= MARKS_CACHE_SLOTS; u++) marks_cache_set(&c, 7, u, u, u);
    for (uint64_t v = 1; v <= MARKS_CACHE_SLOTS; v++) marks_cache_set(&c, 100000 + v, 9, v, v);
    for (uint64_t u = MARKS_CACHE_SLOTS + 1; u <= 2 * MARKS_CACHE_SLOTS; u++)
        CHECK(marks_cache_find(&c, 7, u) == NULL, "(7, %llu) was never set", (unsigned long long)u);
    for (uint64_t v = MARKS_CACHE_SLOTS + 1; v <= 2 * MARKS_CACHE_SLOTS; v++)
        CHECK(marks_cache_find(&c, 100000 + v, 9) == NULL, "(%llu, 9) was never set", (unsigned long long)(100000 + v));
    marks_cache_free(&c);
}

int main(void) {
    RUN(finds_only_what_was_set);
    RUN(clear_forgets_everything);
    RUN(collisions_forget_never_mix);
    RUN(a_slot_answers_only_for_its_key);
    CHECK_EXIT();
}
