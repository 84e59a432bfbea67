/* test_send_record.c -- the 'sends' record codec (cluster/send_record.h):
 * what the head writes parses back exactly, and every malformed value (short,
 * another version, a name empty, too long or with a NUL, no request bytes)
 * is refused rather than read past. */
#include <string.h>

#include "../check.h"
#include "cluster/send_record.h"

static size_t build(uint8_t *out, const char *origin, const char *frame) {
    send_record r = {.conn_id = 0x0102030405060708ull, .request_id = 42, .user_id = 0xfedcba9876543210ull,
                     .device_id = 7};
    snprintf(r.origin, sizeof r.origin, "%s", origin);
    size_t head = send_record_head(&r, out);
    if (!head) return 0;
    memcpy(out + head, frame, strlen(frame));
    return head + strlen(frame);
}

static void round_trip(void) {
    uint8_t v[256];
    size_t len = build(v, "chat-a", "FRAME");
    CHECK(len > 0, "head refused a good origin");
    send_record r;
    CHECK(send_record_parse(v, len, &r) == 0, "a good value did not parse");
    CHECK(strcmp(r.origin, "chat-a") == 0, "origin '%s'", r.origin);
    CHECK(r.conn_id == 0x0102030405060708ull && r.request_id == 42 && r.user_id == 0xfedcba9876543210ull &&
              r.device_id == 7, "fixed fields changed");
    CHECK(r.frame_len == 5 && memcmp(r.frame, "FRAME", 5) == 0, "frame bytes changed");
}

static void malformed_refused(void) {
    uint8_t v[256];
    size_t len = build(v, "gw-1", "F");
    send_record r;
    for (size_t cut = 0; cut < len; cut++)   /* every truncation, including no frame byte */
        CHECK(send_record_parse(v, cut, &r) == -1, "a value cut to %zu bytes parsed", cut);
    v[0] = 2;
    CHECK(send_record_parse(v, len, &r) == -1, "another version parsed");
    v[0] = SEND_RECORD_VERSION;
    v[1] = 0;
    CHECK(send_record_parse(v, len, &r) == -1, "an empty origin parsed");
    v[1] = 4;
    v[3] = 0;   /* a NUL inside the name */
    CHECK(send_record_parse(v, len, &r) == -1, "a name with a NUL parsed");
    v[3] = 'w';
    v[1] = SEND_RECORD_NAME_MAX + 1;
    CHECK(send_record_parse(v, sizeof v, &r) == -1, "a name over %d bytes parsed", SEND_RECORD_NAME_MAX);
    char longname[SEND_RECORD_NAME_MAX + 2];
    memset(longname, 'n', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    send_record big = {0};
    memcpy(big.origin, longname, SEND_RECORD_NAME_MAX);   /* the longest that fits */
    CHECK(send_record_head(&big, v) == 2 + SEND_RECORD_NAME_MAX + 28, "the longest name was refused");
    send_record none = {0};
    CHECK(send_record_head(&none, v) == 0, "an empty origin was written");
}

int main(void) {
    RUN(round_trip);
    RUN(malformed_refused);
    CHECK_EXIT();
}
