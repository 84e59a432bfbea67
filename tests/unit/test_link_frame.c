/* test_link_frame.c -- the node link's frame codec (src/cluster/link_frame.c):
 * every type round-trips with its fields, a batch splits into its frames
 * in order, and each bound is enforced: a length of 0 or past
 * LINK_PAYLOAD_MAX, a short fixed part, an unknown type, a body where the
 * type has none or none where it needs one, a bad HELLO name or version
 * are refused; encode refuses what decode would refuse and a short buffer. */
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "cluster/link_frame.h"

static const uint8_t BODY[] = {0x08, 0x2a, 0x12, 0x03, 'a', 'b', 'c'};

static link_frame sample(uint8_t type) {
    link_frame f;
    memset(&f, 0, sizeof f);
    f.type = type;
    switch (type) {
    case LINK_HELLO:
        f.version = LINK_VERSION;
        f.roles = 7;
        f.body = (const uint8_t *)"chat-1";
        f.body_len = 6;
        for (int i = 0; i < LINK_AUTH_FIELD; i++) f.auth[i] = (uint8_t)(i + 1);
        break;
    case LINK_REQUEST:
        f.conn_id = 0x0102030405060708ull, f.user_id = 42, f.device_id = 3, f.request_id = 99;
        f.body = BODY, f.body_len = sizeof BODY;
        break;
    case LINK_ACK:
        f.conn_id = 7, f.user_id = 42, f.device_id = 3, f.ack_from = 10, f.ack_to = 20;
        break;
    case LINK_ANSWER:
        f.conn_id = 7, f.user_id = 42, f.device_id = 2, f.body = BODY, f.body_len = sizeof BODY;
        break;
    case LINK_PUSH:
        f.conn_id = 7, f.body = BODY, f.body_len = sizeof BODY;
        break;
    case LINK_DELIVER:
        f.conn_id = 7, f.user_id = 42, f.user_seq = 1ull << 40, f.body = BODY, f.body_len = sizeof BODY;
        break;
    case LINK_CLOSE_DEVICE:
        f.user_id = 42, f.device_id = 3;
        break;
    case LINK_DROP_PRESENCE:
        f.user_id = 42, f.about_user = 43;
        break;
    case LINK_PROOF:
        for (int i = 0; i < LINK_AUTH_FIELD; i++) f.auth[i] = (uint8_t)(0xa0 + i);
        break;
    }
    return f;
}

static int same(const link_frame *a, const link_frame *b) {
    return a->type == b->type && a->version == b->version && a->roles == b->roles && a->conn_id == b->conn_id &&
           a->user_id == b->user_id && a->device_id == b->device_id && a->request_id == b->request_id &&
           a->user_seq == b->user_seq && a->ack_from == b->ack_from && a->ack_to == b->ack_to &&
           a->about_user == b->about_user && memcmp(a->auth, b->auth, sizeof a->auth) == 0 &&
           a->body_len == b->body_len &&
           (a->body_len == 0 || memcmp(a->body, b->body, a->body_len) == 0);
}

static void every_type_round_trips_in_one_batch(void) {
    uint8_t stream[1024];
    size_t len = 0;
    for (uint8_t t = LINK_HELLO; t <= LINK_PROOF; t++) {
        link_frame f = sample(t);
        size_t n = link_frame_encode(&f, stream + len, sizeof stream - len);
        CHECK(n > 0 && n == link_frame_size(&f), "type %u encoded %zu", t, n);
        len += n;
    }
    size_t off = 0;
    for (uint8_t t = LINK_HELLO; t <= LINK_PROOF; t++) {
        size_t payload = 0;
        CHECK(link_frame_split(stream + off, len - off, &payload) == 1, "frame %u not whole", t);
        link_frame got, want = sample(t);
        CHECK(link_frame_decode(stream + off + LINK_LENGTH_BYTES, payload, &got) == 0, "type %u refused", t);
        CHECK(same(&got, &want), "type %u decoded other fields", t);
        off += LINK_LENGTH_BYTES + payload;
    }
    CHECK(off == len, "the batch has %zu bytes left", len - off);
}

static void split_waits_for_whole_frames(void) {
    uint8_t buf[256];
    link_frame f = sample(LINK_DELIVER);
    size_t n = link_frame_encode(&f, buf, sizeof buf);
    size_t payload = 0;
    for (size_t cut = 0; cut < n; cut++)
        CHECK(link_frame_split(buf, cut, &payload) == 0, "a %zu-byte prefix of %zu was taken as whole", cut, n);
    CHECK(link_frame_split(buf, n, &payload) == 1 && payload == n - LINK_LENGTH_BYTES, "whole frame");
}

static void lengths_out_of_bounds_are_refused(void) {
    uint8_t zero[5] = {0, 0, 0, 0, LINK_PUSH};
    size_t payload = 0;
    CHECK(link_frame_split(zero, sizeof zero, &payload) == -1, "length 0 accepted");
    uint32_t over = LINK_PAYLOAD_MAX + 1;
    uint8_t big[4] = {(uint8_t)(over >> 24), (uint8_t)(over >> 16), (uint8_t)(over >> 8), (uint8_t)over};
    /* refused from the prefix alone: nothing waits for 8 MiB that will never be taken */
    CHECK(link_frame_split(big, sizeof big, &payload) == -1, "length past LINK_PAYLOAD_MAX accepted");
    uint8_t max[4] = {(uint8_t)(LINK_PAYLOAD_MAX >> 24), (uint8_t)(LINK_PAYLOAD_MAX >> 16),
                      (uint8_t)(LINK_PAYLOAD_MAX >> 8), (uint8_t)LINK_PAYLOAD_MAX};
    CHECK(link_frame_split(max, sizeof max, &payload) == 0, "LINK_PAYLOAD_MAX itself must wait for its bytes");
}

static void malformed_payloads_are_refused(void) {
    link_frame f;
    uint8_t buf[256];
    /* unknown types */
    uint8_t t0[1] = {0}, t9[1] = {LINK_PROOF + 1};
    CHECK(link_frame_decode(t0, 1, &f) == -1 && link_frame_decode(t9, 1, &f) == -1, "unknown type accepted");
    CHECK(link_frame_decode(buf, 0, &f) == -1, "empty payload accepted");
    /* every prefix of each type's fixed part is short */
    for (uint8_t t = LINK_HELLO; t <= LINK_PROOF; t++) {
        link_frame s = sample(t);
        size_t n = link_frame_encode(&s, buf, sizeof buf);
        size_t fixed = n - LINK_LENGTH_BYTES - s.body_len;
        for (size_t cut = 1; cut < fixed; cut++)
            CHECK(link_frame_decode(buf + LINK_LENGTH_BYTES, cut, &f) == -1, "type %u cut at %zu accepted", t, cut);
        /* a body-less type with a trailing byte; a body type without its body */
        if (s.body_len == 0) {
            buf[n] = 0;
            CHECK(link_frame_decode(buf + LINK_LENGTH_BYTES, n - LINK_LENGTH_BYTES + 1, &f) == -1,
                  "type %u with a body accepted", t);
        } else {
            CHECK(link_frame_decode(buf + LINK_LENGTH_BYTES, fixed, &f) == -1, "type %u without body accepted", t);
        }
    }
    /* HELLO: the name is a token of at most LINK_NAME_MAX bytes; the version ours */
    link_frame h = sample(LINK_HELLO);
    h.body = (const uint8_t *)"a b";
    h.body_len = 3;
    CHECK(link_frame_size(&h) == 0, "a name with a space encodes");
    uint8_t name[LINK_NAME_MAX + 1];
    memset(name, 'n', sizeof name);
    h.body = name;
    h.body_len = LINK_NAME_MAX;
    size_t n = link_frame_encode(&h, buf, sizeof buf);
    CHECK(n > 0 && link_frame_decode(buf + LINK_LENGTH_BYTES, n - LINK_LENGTH_BYTES, &f) == 0, "63-byte name");
    h.body_len = LINK_NAME_MAX + 1;
    CHECK(link_frame_size(&h) == 0, "a 64-byte name encodes");
    buf[LINK_LENGTH_BYTES] = LINK_HELLO;
    buf[LINK_LENGTH_BYTES + 1] = LINK_VERSION + 1;
    CHECK(link_frame_decode(buf + LINK_LENGTH_BYTES, n - LINK_LENGTH_BYTES, &f) == -1, "another version accepted");
}

static void bodies_are_bounded(void) {
    uint8_t *big = calloc(1, LINK_BODY_MAX + 1);
    CHECK(big, "out of memory");
    link_frame f = sample(LINK_DELIVER);
    f.body = big;
    f.body_len = LINK_BODY_MAX;
    size_t n = link_frame_size(&f);
    int at_max_ok = n == LINK_LENGTH_BYTES + (1 + 8 * 3) + (size_t)LINK_BODY_MAX && n - LINK_LENGTH_BYTES <= LINK_PAYLOAD_MAX;
    f.body_len = LINK_BODY_MAX + 1;
    int over_refused = link_frame_size(&f) == 0;
    free(big);
    CHECK(at_max_ok, "a body of LINK_BODY_MAX does not fit its frame (%zu)", n);
    CHECK(over_refused, "a body past LINK_BODY_MAX encodes");
    link_frame s = sample(LINK_REQUEST);
    uint8_t small[16];
    CHECK(link_frame_encode(&s, small, sizeof small) == 0, "encode past the buffer");
}

int main(void) {
    RUN(every_type_round_trips_in_one_batch);
    RUN(split_waits_for_whole_frames);
    RUN(lengths_out_of_bounds_are_refused);
    RUN(malformed_payloads_are_refused);
    RUN(bodies_are_bounded);
    CHECK_EXIT();
}
