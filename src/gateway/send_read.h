/* send_read.h -- the plain SendMessage frame read in place.
 *
 * A SendMessage is what a device sends most, and decoding it through
 * protobuf-c cost ~4,400 instructions (unpack, which walks Frame's ~45
 * fields, and free_unpacked, which walks them again) and four
 * allocations. The plain frame clients send (request_id at most once,
 * then one SendMessage holding each of its fields at most once, every
 * varint in its shortest form, no unknown field) is read here into one
 * allocation; anything else is left to the decoder (request_decode),
 * so what this accepts the decoder reads as the same fields
 * (tests/fuzz/fuzz_frame checks it on every input). */
#ifndef PARLEY_GATEWAY_SEND_READ_H
#define PARLEY_GATEWAY_SEND_READ_H

#include <stddef.h>
#include <stdint.h>

#include "proto/parley.pb-c.h"

/* The Frame, its SendMessage and copies of client_msg_id, body and
 * mime_type (NUL-terminated; "" when absent), in one block of malloc:
 * free it with free(), never parley__v1__frame__free_unpacked
 * (chat_request.frame_flat says which). *allocated: the block's size.
 * NULL when data is not the plain frame (or malloc failed): decode it. */
Parley__V1__Frame *send_frame_read(const uint8_t *data, size_t len, size_t *allocated);

#endif
