/* fuzz_frame.c -- the protobuf Frame decoder on arbitrary bytes, as a
 * WebSocket message from a client reaches it. A frame that decodes must
 * re-encode to the size it announces, and a re-encoding that decodes must
 * name the same request. (protobuf-c keeps unknown fields, at any depth,
 * including ones numbered 0 that it refuses on a second decode; the server
 * never re-decodes, so a failed second decode is not an error here.)
 * And an Ack the gateway reads in place (frame_read_ack) must be what the
 * decoder makes of the same bytes: an Ack with the same user_seq. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/request_limits.h"
#include "proto/parley.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Parley__V1__Frame *f = parley__v1__frame__unpack(NULL, size, data);
    uint64_t acked = 0;
    if (frame_read_ack(data, size, &acked) &&
        !(f && f->body_case == PARLEY__V1__FRAME__BODY_ACK && f->ack->user_seq == acked))
        abort();
    if (!f) return 0;
    size_t n = parley__v1__frame__get_packed_size(f);
    uint8_t *again = malloc(n ? n : 1);
    if (!again) abort();
    if (parley__v1__frame__pack(f, again) != n) abort();
    Parley__V1__Frame *g = parley__v1__frame__unpack(NULL, n, again);
    if (g && (g->body_case != f->body_case || g->request_id != f->request_id)) abort();
    if (g) parley__v1__frame__free_unpacked(g, NULL);
    parley__v1__frame__free_unpacked(f, NULL);
    free(again);
    return 0;
}
