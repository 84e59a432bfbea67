/* stored_message.c -- see stored_message.h. */
#include "chat/stored_message.h"

#include <string.h>

enum {
    MESSAGE_CONVERSATION_ID = 1,
    MESSAGE_SEQ = 2,
    MESSAGE_SENDER_USER_ID = 3,
    MESSAGE_SENDER_DEVICE_ID = 4,
    MESSAGE_TYPE = 5,
    MESSAGE_BODY = 6,
    MESSAGE_MIME_TYPE = 7,
    MESSAGE_SIZE = 8,
    MESSAGE_REF_SEQ = 9,
    MESSAGE_SERVER_TS = 10,
    MESSAGE_CLIENT_MSG_ID = 11,
    WIRE_VARINT = 0,
    WIRE_LEN = 2,
};

static size_t varint_size(uint64_t v) {
    size_t n = 1;
    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

static uint8_t *put_varint(uint8_t *p, uint64_t v) {
    while (v >= 0x80) {
        *p++ = (uint8_t)(v | 0x80);
        v >>= 7;
    }
    *p++ = (uint8_t)v;
    return p;
}

/* an enum is an int32: a negative one goes out sign-extended to 64 bits (10 bytes) */
static uint64_t enum_wire(int32_t v) { return (uint64_t)(int64_t)v; }

static size_t mime_len(const stored_message *m) { return m->mime_type ? strlen(m->mime_type) : 0; }

/* the size of a field whose key is one byte (field numbers up to 15), left out when 0 */
static size_t u64_field_size(uint64_t v) { return v ? 1 + varint_size(v) : 0; }
static size_t len_field_size(size_t len) { return len ? 1 + varint_size(len) + len : 0; }

size_t stored_message_size(const stored_message *m) {
    return u64_field_size(m->conversation_id) + u64_field_size(m->seq) + u64_field_size(m->sender_user_id) +
           u64_field_size(m->sender_device_id) + u64_field_size(enum_wire(m->type)) + len_field_size(m->body_len) +
           len_field_size(mime_len(m)) + u64_field_size(m->size) + u64_field_size(m->ref_seq) +
           u64_field_size(m->server_ts) + len_field_size(m->client_msg_id_len);
}

static uint8_t *put_u64_field(uint8_t *p, uint32_t field, uint64_t v) {
    if (v == 0) return p;
    *p++ = (uint8_t)(field << 3 | WIRE_VARINT);
    return put_varint(p, v);
}

static uint8_t *put_len_field(uint8_t *p, uint32_t field, const void *data, size_t len) {
    if (len == 0) return p;
    *p++ = (uint8_t)(field << 3 | WIRE_LEN);
    p = put_varint(p, len);
    memcpy(p, data, len);
    return p + len;
}

size_t stored_message_encode(const stored_message *m, uint8_t *out) {
    uint8_t *p = out;
    p = put_u64_field(p, MESSAGE_CONVERSATION_ID, m->conversation_id);
    p = put_u64_field(p, MESSAGE_SEQ, m->seq);
    p = put_u64_field(p, MESSAGE_SENDER_USER_ID, m->sender_user_id);
    p = put_u64_field(p, MESSAGE_SENDER_DEVICE_ID, m->sender_device_id);
    p = put_u64_field(p, MESSAGE_TYPE, enum_wire(m->type));
    p = put_len_field(p, MESSAGE_BODY, m->body, m->body_len);
    p = put_len_field(p, MESSAGE_MIME_TYPE, m->mime_type, mime_len(m));
    p = put_u64_field(p, MESSAGE_SIZE, m->size);
    p = put_u64_field(p, MESSAGE_REF_SEQ, m->ref_seq);
    p = put_u64_field(p, MESSAGE_SERVER_TS, m->server_ts);
    p = put_len_field(p, MESSAGE_CLIENT_MSG_ID, m->client_msg_id, m->client_msg_id_len);
    return (size_t)(p - out);
}
