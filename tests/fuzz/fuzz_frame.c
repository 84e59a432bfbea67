/* fuzz_frame.c -- the protobuf Frame decoder on arbitrary bytes, as a
 * WebSocket message from a client reaches it. A frame that decodes must
 * re-encode to the size it announces, and a re-encoding that decodes must
 * name the same request. (protobuf-c keeps unknown fields, at any depth,
 * including ones numbered 0 that it refuses on a second decode; the server
 * never re-decodes, so a failed second decode is not an error here.)
 * And an Ack the gateway reads in place (frame_read_ack) must be what the
 * decoder makes of the same bytes: an Ack with the same user_seq; a
 * SendMessage it reads in place (send_frame_read), a SendMessage with the
 * same fields (tests/send_read_same.h), which packs to the same bytes.
 * Each input is tried as a frame and as the bytes of a SendMessage. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../send_read_same.h"
#include "gateway/request_limits.h"
#include "gateway/send_read.h"
#include "proto/parley.pb-c.h"

static void check_frame(const uint8_t *data, size_t size) {
    Parley__V1__Frame *f = parley__v1__frame__unpack(NULL, size, data);
    uint64_t acked = 0;
    if (frame_read_ack(data, size, &acked) &&
        !(f && f->body_case == PARLEY__V1__FRAME__BODY_ACK && f->ack->user_seq == acked))
        abort();
    size_t allocated = 0;
    Parley__V1__Frame *sent = send_frame_read(data, size, &allocated);
    if (sent && !send_read_same(sent, f)) abort();
    if (!f) {
        free(sent);
        return;
    }
    size_t n = parley__v1__frame__get_packed_size(f);
    uint8_t *again = malloc(n ? n : 1);
    if (!again) abort();
    if (parley__v1__frame__pack(f, again) != n) abort();
    if (sent) {   /* --kafka and node forwarding pack the request's frame again */
        uint8_t *mine = malloc(n ? n : 1);
        if (!mine) abort();
        if (parley__v1__frame__get_packed_size(sent) != n || parley__v1__frame__pack(sent, mine) != n ||
            memcmp(mine, again, n) != 0)
            abort();
        free(mine);
        free(sent);
    }
    Parley__V1__Frame *g = parley__v1__frame__unpack(NULL, n, again);
    if (g && (g->body_case != f->body_case || g->request_id != f->request_id)) abort();
    if (g) parley__v1__frame__free_unpacked(g, NULL);
    parley__v1__frame__free_unpacked(f, NULL);
    free(again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    check_frame(data, size);
    /* and the input as the bytes of a SendMessage, so that mutations reach
     * its fields without having to keep its length right */
    if (size > 1 << 20) return 0;
    uint8_t *wrapped = malloc(size + 6);
    if (!wrapped) abort();
    size_t n = 0;
    wrapped[n++] = (uint8_t)((PARLEY__V1__FRAME__BODY_SEND_MESSAGE << 3 | 2) | 0x80);
    wrapped[n++] = (PARLEY__V1__FRAME__BODY_SEND_MESSAGE << 3 | 2) >> 7;
    for (size_t v = size; ; v >>= 7) {
        wrapped[n++] = (uint8_t)(v >= 0x80 ? (v & 0x7f) | 0x80 : v);
        if (v < 0x80) break;
    }
    if (size) memcpy(wrapped + n, data, size);
    check_frame(wrapped, n + size);
    free(wrapped);
    return 0;
}
