/* sent_answer.c -- see sent_answer.h. */
#include "chat/sent_answer.h"

#include <string.h>

enum {
    FRAME_REQUEST_ID = 1,    /* Frame.request_id, varint */
    FRAME_RESPONSE = 40,     /* Frame.response, length-delimited */
    RESPONSE_SENT = 15,      /* Response.sent, length-delimited (status OK = 0: left out) */
    SENT_CONVERSATION_ID = 1,
    SENT_SEQ = 2,
    SENT_SERVER_TS = 3,
    SENT_DUPLICATE = 4,
    WIRE_VARINT = 0,
    WIRE_LEN = 2,
};

static uint8_t *put_varint(uint8_t *p, uint64_t v) {
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* a varint field, left out when 0 (proto3) */
static uint8_t *put_u64_field(uint8_t *p, uint32_t field, uint64_t v) {
    if (v == 0) return p;
    p = put_varint(p, (uint64_t)field << 3 | WIRE_VARINT);
    return put_varint(p, v);
}

size_t sent_answer_encode(const sent_answer *a, uint8_t out[SENT_ANSWER_MAX]) {
    /* Sent first, on the side, so its length is known before the headers
     * that go in front of it: 4 fields of at most 1 + 10 bytes */
    uint8_t sent[4 * 11];
    uint8_t *s = sent;
    s = put_u64_field(s, SENT_CONVERSATION_ID, a->conversation_id);
    s = put_u64_field(s, SENT_SEQ, a->seq);
    s = put_u64_field(s, SENT_SERVER_TS, a->server_ts);
    s = put_u64_field(s, SENT_DUPLICATE, a->duplicate ? 1 : 0);
    size_t sent_len = (size_t)(s - sent);
    /* Response{sent}: its tag, the length, the bytes (< 128: one length byte) */
    size_t response_len = 1 + 1 + sent_len;
    uint8_t *p = out;
    p = put_u64_field(p, FRAME_REQUEST_ID, a->request_id);
    p = put_varint(p, (uint64_t)FRAME_RESPONSE << 3 | WIRE_LEN);
    p = put_varint(p, response_len);
    p = put_varint(p, (uint64_t)RESPONSE_SENT << 3 | WIRE_LEN);
    p = put_varint(p, sent_len);
    memcpy(p, sent, sent_len);
    return (size_t)(p - out) + sent_len;
}
