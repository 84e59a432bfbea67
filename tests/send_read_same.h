/* send_read_same.h -- whether a SendMessage frame read in place
 * (gateway/send_read.h) holds what protobuf-c's decoder made of the same
 * bytes: every field of Frame and SendMessage that the server reads. Used
 * by tests/unit/test_send_read.c and tests/fuzz/fuzz_frame.c. */
#ifndef PARLEY_TESTS_SEND_READ_SAME_H
#define PARLEY_TESTS_SEND_READ_SAME_H

#include <stdbool.h>
#include <string.h>

#include "proto/parley.pb-c.h"

static inline bool send_bytes_same(const ProtobufCBinaryData *a, const ProtobufCBinaryData *b) {
    /* the decoder leaves an empty bytes field NULL: so does the reader */
    return a->len == b->len && (a->data == NULL) == (b->data == NULL) &&
           (a->len == 0 || memcmp(a->data, b->data, a->len) == 0);
}

static inline bool send_read_same(const Parley__V1__Frame *mine, const Parley__V1__Frame *decoded) {
    if (!mine || !decoded || mine->request_id != decoded->request_id ||
        mine->body_case != PARLEY__V1__FRAME__BODY_SEND_MESSAGE || decoded->body_case != mine->body_case ||
        mine->base.n_unknown_fields != 0 || decoded->base.n_unknown_fields != 0)
        return false;
    const Parley__V1__SendMessage *a = mine->send_message, *b = decoded->send_message;
    return a && b && a->base.descriptor == b->base.descriptor && a->base.n_unknown_fields == 0 &&
           b->base.n_unknown_fields == 0 && a->conversation_id == b->conversation_id &&
           send_bytes_same(&a->client_msg_id, &b->client_msg_id) && a->type == b->type &&
           send_bytes_same(&a->body, &b->body) && a->mime_type && b->mime_type &&
           strcmp(a->mime_type, b->mime_type) == 0 && a->size == b->size && a->ref_seq == b->ref_seq;
}

#endif
