/* test_quota.c -- core/quota.c with a clock the test drives: buckets per
 * device and per user, the writer share, and idle entries dropped. */
#include <stdint.h>

#include "../check.h"
#include "core/quota.h"

static const quota_limits LIMITS = {
    .device_rate = {[QUOTA_SEND] = 5, [QUOTA_WRITE] = 2},
    .user_rate = {[QUOTA_SEND] = 8, [QUOTA_WRITE] = 100},
    .user_writer_share = 3,
};

static int takes(quota *q, quota_kind k, uint64_t user, uint32_t device, uint64_t now, int tries) {
    int ok = 0;
    uint64_t wait;
    for (int i = 0; i < tries; i++) ok += quota_take(q, k, user, device, now, &wait);
    return ok;
}

static void device_bucket_holds_twice_its_rate_and_refills(void) {
    quota *q = quota_new(&LIMITS);
    CHECK(q, "quota_new");
    CHECK(takes(q, QUOTA_WRITE, 7, 1, 1000, 10) == 4, "burst of a 2/s bucket is 4");
    uint64_t wait = 0;
    CHECK(!quota_take(q, QUOTA_WRITE, 7, 1, 1000, &wait), "empty bucket refuses");
    CHECK(wait == 501, "retry after the time one token takes (500 ms, +1): %llu", (unsigned long long)wait);
    CHECK(takes(q, QUOTA_WRITE, 7, 1, 1500, 10) == 1, "one token back after 500 ms");
    /* kinds are separate buckets */
    CHECK(takes(q, QUOTA_SEND, 7, 1, 1500, 100) == 10, "send burst untouched by writes");
    quota_free(q);
}

static void user_bucket_spans_devices(void) {
    quota *q = quota_new(&LIMITS);
    CHECK(q, "quota_new");
    /* device send burst 10 each, user burst 16: two devices together get 16 */
    int a = takes(q, QUOTA_SEND, 9, 1, 0, 20);
    int b = takes(q, QUOTA_SEND, 9, 2, 0, 20);
    CHECK(a == 10 && b == 6, "devices got %d + %d, want 10 + 6", a, b);
    /* another user is not affected */
    CHECK(takes(q, QUOTA_SEND, 10, 1, 0, 20) == 10, "other user's device");
    quota_free(q);
}

static void refused_take_costs_nothing(void) {
    quota *q = quota_new(&LIMITS);
    CHECK(q, "quota_new");
    /* device 1 empties the user's send bucket down to 6; device 2's refusals
     * (user bucket empty) must not drain device 2's own bucket */
    CHECK(takes(q, QUOTA_SEND, 11, 1, 0, 10) == 10, "device 1 burst");
    CHECK(takes(q, QUOTA_SEND, 11, 2, 0, 6) == 6, "device 2 takes the user's rest");
    CHECK(takes(q, QUOTA_SEND, 11, 2, 0, 50) == 0, "user empty: refused");
    /* after 2 s the user bucket is full (16) again; device 2 had 4 left and refills to 10 */
    CHECK(takes(q, QUOTA_SEND, 11, 2, 2000, 20) == 10, "device 2 full burst after refill");
    quota_free(q);
}

static void writer_share_per_user(void) {
    quota *q = quota_new(&LIMITS);
    CHECK(q, "quota_new");
    for (int i = 0; i < 3; i++) CHECK(quota_writer_enter(q, 5, 0), "enter %d", i);
    CHECK(!quota_writer_enter(q, 5, 0), "fourth is past the share of 3");
    CHECK(quota_writer_enter(q, 6, 0), "another user has its own share");
    quota_writer_leave(q, 5);
    CHECK(quota_writer_enter(q, 5, 0), "room again after one left");
    quota_free(q);
}

static void touch_users(quota *q, uint64_t from, uint64_t to, uint64_t now) {
    for (uint64_t u = from; u <= to; u++) {
        quota_writer_enter(q, u, now);
        quota_writer_leave(q, u);
    }
}

static void idle_entries_are_dropped(void) {
    quota *q = quota_new(&LIMITS);
    CHECK(q, "quota_new");
    for (uint64_t u = 1; u <= 1000; u++) takes(q, QUOTA_SEND, u, 1, 0, 1);
    CHECK(quota_entries(q) == 2000, "a device and a user entry each: %llu", (unsigned long long)quota_entries(q));
    CHECK(quota_writer_enter(q, 1, 0), "user 1 has a request in the writer");
    /* a minute later every bucket is full again: the first touch of each
     * shard sweeps it, and only user 1 (a request in the writer) stays,
     * beside the 1000 users touched now */
    touch_users(q, 2001, 3000, 60000);
    CHECK(quota_entries(q) == 1001, "idle entries not dropped: %llu", (unsigned long long)quota_entries(q));
    quota_writer_leave(q, 1);
    touch_users(q, 2001, 3000, 120000);
    CHECK(quota_entries(q) == 1000, "user 1 idle and out of the writer, still held: %llu",
          (unsigned long long)quota_entries(q));
    CHECK(takes(q, QUOTA_SEND, 1, 1, 120000, 20) == 10, "a dropped entry starts full");
    quota_free(q);
}

int main(void) {
    RUN(device_bucket_holds_twice_its_rate_and_refills);
    RUN(user_bucket_spans_devices);
    RUN(refused_take_costs_nothing);
    RUN(writer_share_per_user);
    RUN(idle_entries_are_dropped);
    CHECK_EXIT();
}
