/* request_limits.h -- what a request may cost before it is decoded.
 *
 * A Frame is looked at without decoding it (frame_peek: the top-level
 * fields only, no allocation) to learn its request id and which request it
 * is. That is enough to refuse, before any allocation: a request other than
 * sign-in or registration from a connection not yet signed in, and a
 * request larger than its type's limit. What passes is decoded with an
 * allocator that refuses past a budget proportional to the frame's size, so
 * a small frame that expands (many empty repeated elements) cannot make the
 * decoder allocate many times its size. */
#ifndef PARLEY_GATEWAY_REQUEST_LIMITS_H
#define PARLEY_GATEWAY_REQUEST_LIMITS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/config.h"
#include "proto/parley.pb-c.h"

typedef struct frame_peek {
    uint64_t request_id;
    uint32_t body;          /* field number of the request (Frame.body), 0: none */
} frame_peek;

/* 0 and *out filled, or -1 when the top level is not well-formed protobuf. */
int frame_peek_parse(const uint8_t *data, size_t len, frame_peek *out);

/* An Ack read in place, without decoding: 1 and *user_seq when data is
 * the plain Ack frame clients send (request_id at most, then one Ack
 * holding user_seq at most once; every varint in its shortest form), 0 for
 * anything else, which is then decoded the ordinary way. An Ack is most of
 * what a device sends at low rates (about one per message delivered), and
 * decoding one cost ~2,300 instructions (unpack and free of a Frame and
 * its Ack); what this accepts the decoder reads as the same user_seq. */
int frame_read_ack(const uint8_t *data, size_t len, uint64_t *user_seq);

/* RegisterUser, RegisterDevice, SignIn: the only requests before sign-in. */
bool request_allowed_before_sign_in(uint32_t body);

/* Largest frame, in bytes, a request of this type may be. */
size_t request_size_limit(const config *cfg, uint32_t body);

/* Memory the decoder may allocate for a frame of len bytes. */
size_t request_decode_budget(size_t len);

/* Decodes with a budget of request_decode_budget(len). NULL on failure;
 * *over_budget tells a refusal of the budget from malformed input. The
 * frame is malloc-backed: free it with parley__v1__frame__free_unpacked(f,
 * NULL). *allocated: the bytes the decoder took (its share of memory). */
Parley__V1__Frame *request_decode(const uint8_t *data, size_t len, bool *over_budget,
                                  size_t *allocated);

#endif
