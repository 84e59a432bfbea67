#include "gateway/send_read.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/pb_read.h"

/* the block send_frame_read returns: the frame first, so free(frame) frees all */
typedef struct flat_send {
    Parley__V1__Frame frame;
    Parley__V1__SendMessage send;
    uint8_t bytes[];   /* client_msg_id, body, mime_type and its NUL */
} flat_send;

/* where SendMessage's fields are in the input, before anything is copied */
typedef struct send_fields {
    uint64_t conversation_id, size, ref_seq;
    int32_t type;
    const uint8_t *id, *body, *mime;
    size_t id_len, body_len, mime_len;
} send_fields;

enum { VARINT = 0, LEN = 2 };

/* A SendMessage's bytes: fields 1-7, each at most once, in their wire
 * types (the decoder refuses a field in another wire type, and of one
 * given twice keeps the last: both left to it). */
static bool read_send_fields(const uint8_t *p, size_t len, send_fields *out) {
    memset(out, 0, sizeof *out);
    unsigned seen = 0;
    size_t pos = 0;
    while (pos < len) {
        uint64_t key, v;
        if (pb_read_canonical_varint(p, len, &pos, &key)) return false;
        uint64_t field = key >> 3;
        if (field < 1 || field > 7 || (seen & (1u << field))) return false;
        seen |= 1u << field;
        bool bytes_field = field == 2 || field == 4 || field == 5;
        if ((key & 7) != (bytes_field ? LEN : VARINT)) return false;
        if (pb_read_canonical_varint(p, len, &pos, &v)) return false;
        if (bytes_field) {
            if (v > len - pos) return false;
            const uint8_t *at = p + pos;
            pos += (size_t)v;
            if (field == 2) out->id = at, out->id_len = (size_t)v;
            else if (field == 4) out->body = at, out->body_len = (size_t)v;
            else out->mime = at, out->mime_len = (size_t)v;
            continue;
        }
        switch (field) {
        case 1: out->conversation_id = v; break;
        case 3:
            /* the decoder keeps an enum's low 32 bits as an int32: the
             * values it reads unchanged are those up to INT32_MAX */
            if (v > INT32_MAX) return false;
            out->type = (int32_t)v;
            break;
        case 6: out->size = v; break;
        default: out->ref_seq = v; break;
        }
    }
    return true;
}

/* copies n bytes to *at and returns where they went; NULL for none, as the decoder leaves an empty bytes field */
static uint8_t *place(uint8_t **at, const uint8_t *src, size_t n) {
    if (n == 0) return NULL;
    uint8_t *dst = *at;
    memcpy(dst, src, n);
    *at += n;
    return dst;
}

Parley__V1__Frame *send_frame_read(const uint8_t *data, size_t len, size_t *allocated) {
    const uint64_t request_id_key = 1u << 3 | VARINT,
                   send_key = (uint64_t)PARLEY__V1__FRAME__BODY_SEND_MESSAGE << 3 | LEN;
    uint64_t request_id = 0;
    bool have_id = false, have_send = false;
    send_fields s;
    size_t pos = 0;
    while (pos < len) {
        uint64_t key, v;
        if (pb_read_canonical_varint(data, len, &pos, &key)) return NULL;
        if (key == request_id_key && !have_id) {
            if (pb_read_canonical_varint(data, len, &pos, &request_id)) return NULL;
            have_id = true;
        } else if (key == send_key && !have_send) {
            if (pb_read_canonical_varint(data, len, &pos, &v) || v > len - pos) return NULL;
            if (!read_send_fields(data + pos, (size_t)v, &s)) return NULL;
            pos += (size_t)v;
            have_send = true;
        } else {
            return NULL;   /* another field, or one again (the decoder merges or keeps the last) */
        }
    }
    if (!have_send) return NULL;
    size_t size = sizeof(flat_send) + s.id_len + s.body_len + s.mime_len + 1;
    flat_send *b = malloc(size);
    if (!b) return NULL;
    parley__v1__frame__init(&b->frame);
    parley__v1__send_message__init(&b->send);
    b->frame.request_id = request_id;
    b->frame.body_case = PARLEY__V1__FRAME__BODY_SEND_MESSAGE;
    b->frame.send_message = &b->send;
    Parley__V1__SendMessage *q = &b->send;
    q->conversation_id = s.conversation_id;
    q->type = (Parley__V1__MessageType)s.type;
    q->size = s.size;
    q->ref_seq = s.ref_seq;
    uint8_t *at = b->bytes;
    q->client_msg_id.data = place(&at, s.id, s.id_len);
    q->client_msg_id.len = s.id_len;
    q->body.data = place(&at, s.body, s.body_len);
    q->body.len = s.body_len;
    q->mime_type = (char *)at;
    if (s.mime_len) memcpy(at, s.mime, s.mime_len);
    at[s.mime_len] = '\0';
    *allocated = size;
    return &b->frame;
}
