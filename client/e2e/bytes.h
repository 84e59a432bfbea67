/* bytes.h -- bounded reading and writing of the e2e byte formats: a reader
 * never reads past its end (it fails instead), a writer never past its cap. */
#ifndef PARLEY_E2E_BYTES_H
#define PARLEY_E2E_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "e2e_internal.h"

typedef struct e2e_reader {
    const uint8_t *p;
    size_t left;
    bool bad;                 /* a read went past the end */
} e2e_reader;

static inline void rd_bytes(e2e_reader *r, void *out, size_t n) {
    if (r->bad || r->left < n) {
        r->bad = true;
        memset(out, 0, n);
        return;
    }
    memcpy(out, r->p, n);
    r->p += n;
    r->left -= n;
}
static inline uint32_t rd_u32(e2e_reader *r) {
    uint8_t b[4];
    rd_bytes(r, b, 4);
    return e2e_get32(b);
}
static inline uint8_t rd_u8(e2e_reader *r) {
    uint8_t b;
    rd_bytes(r, &b, 1);
    return b;
}

typedef struct e2e_writer {
    uint8_t *p;               /* caller's buffer of cap bytes */
    size_t len, cap;
    bool bad;                 /* a write did not fit */
} e2e_writer;

static inline void wr_bytes(e2e_writer *w, const void *b, size_t n) {
    if (w->bad || w->cap - w->len < n) {
        w->bad = true;
        return;
    }
    memcpy(w->p + w->len, b, n);
    w->len += n;
}
static inline void wr_u32(e2e_writer *w, uint32_t v) {
    uint8_t b[4];
    e2e_put32(b, v);
    wr_bytes(w, b, 4);
}
static inline void wr_u8(e2e_writer *w, uint8_t v) { wr_bytes(w, &v, 1); }

#endif
