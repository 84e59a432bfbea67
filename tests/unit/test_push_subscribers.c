/* test_push_subscribers.c -- the push gateway's set of subscribed users
 * (src/push/push_subscribers.c): a user is in it while any of its devices
 * has a subscription, removing one device keeps the others, a pair added
 * twice is one, users never added are not in it, and it stays exact past
 * many table growths. */
#include <stdio.h>

#include "../check.h"
#include "push/push_subscribers.h"

static void a_user_is_in_while_any_device_is(void) {
    push_subscribers *s = push_subscribers_new();
    CHECK(s, "new");
    CHECK(!push_subscribers_any(s, 7), "empty: nobody");
    push_subscribers_add(s, 7, 1);
    push_subscribers_add(s, 7, 2);
    push_subscribers_add(s, 7, 2);   /* a new subscription replaces: still one pair */
    CHECK(push_subscribers_count(s) == 2, "two pairs: %zu", push_subscribers_count(s));
    CHECK(push_subscribers_any(s, 7), "user 7 in");
    CHECK(!push_subscribers_any(s, 8), "user 8 not");
    push_subscribers_remove(s, 7, 1);
    CHECK(push_subscribers_any(s, 7), "device 2 keeps user 7 in");
    push_subscribers_remove(s, 7, 3);   /* never added: nothing changes */
    CHECK(push_subscribers_count(s) == 1, "one pair: %zu", push_subscribers_count(s));
    push_subscribers_remove(s, 7, 2);
    CHECK(!push_subscribers_any(s, 7), "no device left: out");
    CHECK(push_subscribers_count(s) == 0, "empty: %zu", push_subscribers_count(s));
    push_subscribers_free(s);
}

/* 200,000 users (the shards' tables double many times): the even ones
 * added, then every fourth removed; each answer exact (ids below 2^20 share
 * no counter, push_subscribers.c) */
static void exact_past_many_growths(void) {
    enum { USERS = 200000 };
    push_subscribers *s = push_subscribers_new();
    CHECK(s, "new");
    for (uint64_t u = 2; u <= USERS; u += 2) push_subscribers_add(s, u, (uint32_t)(u % 5));
    for (uint64_t u = 4; u <= USERS; u += 4) push_subscribers_remove(s, u, (uint32_t)(u % 5));
    size_t wrong = 0;
    for (uint64_t u = 1; u <= USERS; u++) {
        bool want = u % 2 == 0 && u % 4 != 0;
        if (push_subscribers_any(s, u) != want) wrong++;
    }
    CHECK(wrong == 0, "%zu wrong answers", wrong);
    CHECK(push_subscribers_count(s) == USERS / 4, "%zu pairs, want %d", push_subscribers_count(s), USERS / 4);
    push_subscribers_free(s);
}

int main(void) {
    RUN(a_user_is_in_while_any_device_is);
    RUN(exact_past_many_growths);
    CHECK_EXIT();
}
