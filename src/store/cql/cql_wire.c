/* cql_wire.c -- primitives, frame header and request bodies of CQL v4. */
#include "store/cql/cql_wire.h"

#include <stdlib.h>
#include <string.h>

void cql_buf_free(cql_buf *b) {
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

static int reserve(cql_buf *b, size_t n) {
    if (b->oom)
        return -1;
    if (n > SIZE_MAX / 2 - b->len) {
        b->oom = 1;
        return -1;
    }
    if (b->len + n <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + n)
        cap *= 2;
    uint8_t *d = realloc(b->data, cap);
    if (!d) {
        b->oom = 1;
        return -1;
    }
    b->data = d;
    b->cap = cap;
    return 0;
}

void cql_put_raw(cql_buf *b, const void *p, size_t n) {
    if (n == 0 || reserve(b, n) != 0)
        return;
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

void cql_put_u8(cql_buf *b, uint8_t v) { cql_put_raw(b, &v, 1); }

void cql_put_u16(cql_buf *b, uint16_t v) {
    uint8_t x[2] = {(uint8_t)(v >> 8), (uint8_t)v};
    cql_put_raw(b, x, 2);
}

void cql_put_i32(cql_buf *b, int32_t v) {
    uint32_t u = (uint32_t)v;
    uint8_t x[4] = {(uint8_t)(u >> 24), (uint8_t)(u >> 16), (uint8_t)(u >> 8), (uint8_t)u};
    cql_put_raw(b, x, 4);
}

void cql_put_i64(cql_buf *b, int64_t v) {
    uint64_t u = (uint64_t)v;
    uint8_t x[8];
    for (int i = 0; i < 8; i++)
        x[i] = (uint8_t)(u >> (56 - 8 * i));
    cql_put_raw(b, x, 8);
}

void cql_put_string(cql_buf *b, const char *s, size_t n) {
    if (n > 0xFFFF) {
        b->oom = 1;
        return;
    }
    cql_put_u16(b, (uint16_t)n);
    cql_put_raw(b, s, n);
}

void cql_put_long_string(cql_buf *b, const char *s, size_t n) {
    if (n > INT32_MAX) {
        b->oom = 1;
        return;
    }
    cql_put_i32(b, (int32_t)n);
    cql_put_raw(b, s, n);
}

void cql_put_short_bytes(cql_buf *b, const uint8_t *p, size_t n) {
    cql_put_string(b, (const char *)p, n);
}

void cql_put_bytes(cql_buf *b, const uint8_t *p, int32_t n) {
    cql_put_i32(b, n < 0 ? -1 : n);
    if (n > 0)
        cql_put_raw(b, p, (size_t)n);
}

int cql_header_parse(const uint8_t *p, size_t len, size_t max_body, cql_header *h) {
    if (len < CQL_HEADER_LEN)
        return -1;
    h->version = p[0];
    h->flags = p[1];
    h->stream = (int16_t)(uint16_t)((p[2] << 8) | p[3]);
    h->opcode = p[4];
    h->length = ((uint32_t)p[5] << 24) | ((uint32_t)p[6] << 16) | ((uint32_t)p[7] << 8) | p[8];
    if (h->version != CQL_VERSION_RESPONSE)
        return -1;
    if (h->length > max_body)
        return -1;
    return 0;
}

int cql_frame_next(const uint8_t *p, size_t len, size_t max_body, cql_header *h,
                   const uint8_t **body) {
    if (len < CQL_HEADER_LEN)
        return 0;
    if (cql_header_parse(p, len, max_body, h) != 0)
        return -1;
    if (len - CQL_HEADER_LEN < h->length)
        return 0;
    *body = p + CQL_HEADER_LEN;
    return 1;
}

size_t cql_frame_begin(cql_buf *b, int16_t stream, uint8_t opcode) {
    size_t start = b->len;
    uint8_t h[CQL_HEADER_LEN] = {CQL_VERSION_REQUEST, 0, (uint8_t)((uint16_t)stream >> 8),
                                 (uint8_t)stream, opcode, 0, 0, 0, 0};
    cql_put_raw(b, h, sizeof h);
    return start;
}

void cql_frame_end(cql_buf *b, size_t start) {
    if (b->oom || b->len < start + CQL_HEADER_LEN)
        return;
    uint32_t n = (uint32_t)(b->len - start - CQL_HEADER_LEN);
    uint8_t *h = b->data + start;
    h[5] = (uint8_t)(n >> 24);
    h[6] = (uint8_t)(n >> 16);
    h[7] = (uint8_t)(n >> 8);
    h[8] = (uint8_t)n;
}

void cql_body_startup(cql_buf *b) {
    cql_put_u16(b, 1); /* [string map] of one entry */
    cql_put_string(b, "CQL_VERSION", 11);
    cql_put_string(b, "3.0.0", 5);
}

enum { /* query flags */
    QF_VALUES = 0x01, QF_PAGE_SIZE = 0x04, QF_PAGING_STATE = 0x08, QF_SERIAL = 0x10,
};

void cql_body_params(cql_buf *b, cql_consistency cl, const cql_values *values,
                     int32_t page_size, const uint8_t *paging_state, size_t paging_len) {
    cql_body_params_serial(b, cl, 0, values, page_size, paging_state, paging_len);
}

void cql_body_params_serial(cql_buf *b, cql_consistency cl, cql_consistency serial,
                            const cql_values *values, int32_t page_size,
                            const uint8_t *paging_state, size_t paging_len) {
    uint8_t flags = 0;
    if (serial == CQL_SERIAL || serial == CQL_LOCAL_SERIAL)
        flags |= QF_SERIAL;
    if (values && values->count > 0)
        flags |= QF_VALUES;
    if (page_size > 0)
        flags |= QF_PAGE_SIZE;
    if (paging_state && paging_len > 0)
        flags |= QF_PAGING_STATE;
    cql_put_u16(b, (uint16_t)cl);
    cql_put_u8(b, flags);
    if (flags & QF_VALUES) {
        cql_put_u16(b, values->count);
        cql_put_raw(b, values->data, values->len);
    }
    if (flags & QF_PAGE_SIZE)
        cql_put_i32(b, page_size);
    if (flags & QF_PAGING_STATE) {
        if (paging_len > INT32_MAX) {
            b->oom = 1;
            return;
        }
        cql_put_bytes(b, paging_state, (int32_t)paging_len);
    }
    if (flags & QF_SERIAL)
        cql_put_u16(b, (uint16_t)serial);
}
