/* test_delivered_record.c -- the delivered-raise record of the 'sends'
 * topic (cluster/delivered_record.h): what is encoded parses back exactly
 * (senders past the cap left out), a 'sends' request record is never taken
 * for one nor one for it, and every malformed value (cut short, trailing
 * bytes, no raise, too many raises or senders) is refused rather than read
 * past.
 *
 * Seen failing on scratch edits of delivered_record_parse: without the
 * check that nothing trails the last raise -> malformed_refused "a
 * trailing byte parsed"; without the sender cap -> malformed_refused "a
 * raise of 9 senders, bytes and all, parsed". */
#include <string.h>

#include "../check.h"
#include "cluster/delivered_record.h"
#include "cluster/send_record.h"

static uint8_t value[DELIVERED_RECORD_MAX];
static delivered_raise in[DELIVERED_RECORD_RAISES_MAX], out[DELIVERED_RECORD_RAISES_MAX];

static void fill(size_t n) {
    memset(in, 0, sizeof in);
    for (size_t i = 0; i < n; i++) {
        in[i].conv = 0x0102030405060708ull + i;
        in[i].seq = 1000 + i;
        in[i].n_senders = (uint32_t)(i % (DELIVERED_RECORD_SENDERS + 1));
        for (uint32_t j = 0; j < in[i].n_senders; j++) in[i].senders[j] = 0xfedcba9876543210ull ^ (i << 8 | j);
    }
}

static void round_trip(void) {
    for (size_t n = 1; n <= DELIVERED_RECORD_RAISES_MAX; n = n * 3 + 1) {
        fill(n);
        size_t len = delivered_record_encode(77, in, n, value);
        CHECK(len > 0 && len <= DELIVERED_RECORD_MAX, "%zu raises: length %zu", n, len);
        CHECK(delivered_record_is(value, len), "%zu raises: not taken for a delivered record", n);
        uint64_t user = 0;
        size_t got = 0;
        CHECK(delivered_record_parse(value, len, &user, out, &got) == 0, "%zu raises did not parse", n);
        CHECK(user == 77 && got == n, "user %llu, %zu raises", (unsigned long long)user, got);
        for (size_t i = 0; i < n; i++) {
            CHECK(out[i].conv == in[i].conv && out[i].seq == in[i].seq && out[i].n_senders == in[i].n_senders,
                  "raise %zu changed", i);
            CHECK(memcmp(out[i].senders, in[i].senders, in[i].n_senders * sizeof in[i].senders[0]) == 0,
                  "raise %zu: senders changed", i);
        }
    }
    /* the most raises, each with the most senders: fits DELIVERED_RECORD_MAX exactly */
    fill(DELIVERED_RECORD_RAISES_MAX);
    for (size_t i = 0; i < DELIVERED_RECORD_RAISES_MAX; i++) in[i].n_senders = DELIVERED_RECORD_SENDERS;
    CHECK(delivered_record_encode(1, in, DELIVERED_RECORD_RAISES_MAX, value) == DELIVERED_RECORD_MAX,
          "the largest record is not DELIVERED_RECORD_MAX bytes");
}

static void bounds_kept(void) {
    fill(2);
    in[0].n_senders = DELIVERED_RECORD_SENDERS + 5;   /* more than a record carries: the first ones go */
    size_t len = delivered_record_encode(5, in, 2, value);
    uint64_t user;
    size_t got;
    CHECK(len && delivered_record_parse(value, len, &user, out, &got) == 0, "capped senders did not parse");
    CHECK(out[0].n_senders == DELIVERED_RECORD_SENDERS, "%u senders", out[0].n_senders);
    CHECK(delivered_record_encode(5, in, 0, value) == 0, "a record of no raise was written");
    CHECK(delivered_record_encode(5, in, DELIVERED_RECORD_RAISES_MAX + 1, value) == 0, "too many raises were written");
}

static void malformed_refused(void) {
    fill(3);
    size_t len = delivered_record_encode(9, in, 3, value);
    uint64_t user;
    size_t got;
    for (size_t cut = 0; cut < len; cut++)   /* every truncation */
        CHECK(delivered_record_parse(value, cut, &user, out, &got) == -1, "a value cut to %zu bytes parsed", cut);
    value[len] = 0;
    CHECK(delivered_record_parse(value, len + 1, &user, out, &got) == -1, "a trailing byte parsed");
    value[9] = 0, value[10] = 0;   /* no raise */
    CHECK(delivered_record_parse(value, len, &user, out, &got) == -1, "a count of 0 parsed");
    value[9] = (DELIVERED_RECORD_RAISES_MAX + 1) >> 8, value[10] = (DELIVERED_RECORD_RAISES_MAX + 1) & 0xff;
    CHECK(delivered_record_parse(value, len, &user, out, &got) == -1, "a count over the cap parsed");
    len = delivered_record_encode(9, in, 3, value);
    value[11 + 16] = DELIVERED_RECORD_SENDERS + 1;   /* the first raise's sender count */
    CHECK(delivered_record_parse(value, len, &user, out, &got) == -1, "too many senders parsed");
    /* one raise claiming one sender too many, with the bytes for all of them */
    uint8_t over[1 + 8 + 2 + 17 + 8 * (DELIVERED_RECORD_SENDERS + 1)] = {DELIVERED_RECORD_KIND};
    over[10] = 1;
    over[11 + 16] = DELIVERED_RECORD_SENDERS + 1;
    CHECK(delivered_record_parse(over, sizeof over, &user, out, &got) == -1,
          "a raise of %d senders, bytes and all, parsed", DELIVERED_RECORD_SENDERS + 1);
}

static void kinds_apart(void) {
    /* a request record of the 'sends' topic is not a delivered record, and back */
    send_record r = {.conn_id = 1, .request_id = 2, .user_id = 3, .device_id = 4};
    snprintf(r.origin, sizeof r.origin, "chat-a");
    uint8_t v[SEND_RECORD_HEAD_MAX + 1];
    size_t head = send_record_head(&r, v);
    v[head] = 'F';
    CHECK(!delivered_record_is(v, head + 1), "a request record was taken for a delivered record");
    fill(1);
    size_t len = delivered_record_encode(9, in, 1, value);
    send_record back;
    CHECK(send_record_parse(value, len, &back) == -1, "a delivered record parsed as a request record");
}

int main(void) {
    RUN(round_trip);
    RUN(bounds_kept);
    RUN(malformed_refused);
    RUN(kinds_apart);
    CHECK_EXIT();
}
