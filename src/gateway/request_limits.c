#include "gateway/request_limits.h"

#include "gateway/pb_read.h"

#include <stdlib.h>

enum {
    SMALL_REQUEST_BYTES = 4096,     /* sign-in, reads, receipts, typing, ... */
    KEYS_REQUEST_BYTES = 65536,     /* UploadKeys: 200 pre-keys of <= 64 bytes fit */
    BODY_REQUEST_BYTES = 65536 + 4096, /* a body of at most 64 KiB (writer's limit) and its envelope */
    PRESENCE_REQUEST_BYTES = 16384, /* SubscribePresence: 1024 ids */
    DECODE_BUDGET_BASE = 65536,
    DECODE_BUDGET_FACTOR = 2,
};

int frame_peek_parse(const uint8_t *data, size_t len, frame_peek *out) {
    out->request_id = 0;
    out->body = 0;
    size_t pos = 0;
    while (pos < len) {
        uint64_t key, v;
        if (pb_read_varint(data, len, &pos, &key)) return -1;
        uint64_t field = key >> 3;
        if (field == 0 || field > 0x1fffffff) return -1;
        switch (key & 7) {
        case 0:
            if (pb_read_varint(data, len, &pos, &v)) return -1;
            if (field == 1) out->request_id = v;
            break;
        case 1:
            if (len - pos < 8) return -1;
            pos += 8;
            break;
        case 2:
            if (pb_read_varint(data, len, &pos, &v) || v > len - pos) return -1;
            pos += (size_t)v;
            /* the oneof: like the decoder, the last body field wins */
            if (field >= 10 && field <= 49) out->body = (uint32_t)field;
            break;
        case 5:
            if (len - pos < 4) return -1;
            pos += 4;
            break;
        default:
            return -1;   /* groups (3, 4) and 6, 7 are not in this protocol */
        }
    }
    return 0;
}

/* Ack's bytes: user_seq (field 1, varint) at most once, nothing else */
static int read_ack_body(const uint8_t *p, size_t len, uint64_t *user_seq) {
    size_t pos = 0;
    bool seen = false;
    *user_seq = 0;
    while (pos < len) {
        uint64_t key;
        if (pb_read_canonical_varint(p, len, &pos, &key) || key != (1u << 3 | 0) || seen) return 0;
        if (pb_read_canonical_varint(p, len, &pos, user_seq)) return 0;
        seen = true;
    }
    return 1;
}

int frame_read_ack(const uint8_t *data, size_t len, uint64_t *user_seq) {
    const uint64_t request_id_key = 1u << 3 | 0, ack_key = (uint64_t)PARLEY__V1__FRAME__BODY_ACK << 3 | 2;
    size_t pos = 0;
    bool seen = false;
    while (pos < len) {
        uint64_t key, v;
        if (pb_read_canonical_varint(data, len, &pos, &key)) return 0;
        if (key == request_id_key) {
            if (pb_read_canonical_varint(data, len, &pos, &v)) return 0;
        } else if (key == ack_key && !seen) {
            if (pb_read_canonical_varint(data, len, &pos, &v) || v > len - pos) return 0;
            if (!read_ack_body(data + pos, (size_t)v, user_seq)) return 0;
            pos += (size_t)v;
            seen = true;
        } else {
            return 0;   /* another field, or a second Ack (the decoder merges them) */
        }
    }
    return seen;
}

bool request_allowed_before_sign_in(uint32_t body) {
    return body == PARLEY__V1__FRAME__BODY_REGISTER_USER || body == PARLEY__V1__FRAME__BODY_SIGN_IN ||
           body == PARLEY__V1__FRAME__BODY_REGISTER_DEVICE;
}

size_t request_size_limit(const config *cfg, uint32_t body) {
    switch (body) {
    case PARLEY__V1__FRAME__BODY_SEND_MESSAGE:
    case PARLEY__V1__FRAME__BODY_SEND_DEVICE_MESSAGE:
        /* a larger body is refused by the writer anyway: not worth decoding */
        return cfg->max_message_bytes < BODY_REQUEST_BYTES ? cfg->max_message_bytes : BODY_REQUEST_BYTES;
    case PARLEY__V1__FRAME__BODY_UPLOAD_KEYS:
        return KEYS_REQUEST_BYTES;
    case PARLEY__V1__FRAME__BODY_SUBSCRIBE_PRESENCE:
        return PRESENCE_REQUEST_BYTES;
    case PARLEY__V1__FRAME__BODY_CREATE_GROUP:
    case PARLEY__V1__FRAME__BODY_ADD_MEMBERS:
        /* every member id as a varint (<= 10 bytes) plus a name */
        return SMALL_REQUEST_BYTES + 11 * (size_t)cfg->max_group_members;
    default:
        return SMALL_REQUEST_BYTES;
    }
}

size_t request_decode_budget(size_t len) { return DECODE_BUDGET_BASE + DECODE_BUDGET_FACTOR * len; }

typedef struct decode_budget {
    size_t left, used;
    bool refused;
} decode_budget;

/* malloc underneath, so what it returns is freed with the default allocator */
static void *budget_alloc(void *ud, size_t size) {
    decode_budget *b = ud;
    if (size > b->left) {
        b->refused = true;
        return NULL;
    }
    void *p = malloc(size);
    if (p) {
        b->left -= size;
        b->used += size;
    }
    return p;
}

static void budget_free(void *ud, void *p) {
    (void)ud;
    free(p);
}

Parley__V1__Frame *request_decode(const uint8_t *data, size_t len, bool *over_budget,
                                  size_t *allocated) {
    decode_budget b = {request_decode_budget(len), 0, false};
    ProtobufCAllocator a = {budget_alloc, budget_free, &b};
    Parley__V1__Frame *f = parley__v1__frame__unpack(&a, len, data);
    *over_budget = b.refused;
    *allocated = b.used;
    return f;
}
