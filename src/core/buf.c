#include "core/buf.h"

#include <stdlib.h>
#include <string.h>

enum { BUF_MIN_CAP = 512 };

uint8_t *buf_reserve(buf *b, size_t n) {
    buf_mem *m = b->m;
    size_t len = buf_len(b);
    if (n > BUF_MAX - len) return NULL;
    if (m && m->cap - m->end >= n) return m->data + m->end;
    if (m && m->start > 0 && m->cap - len >= n) {
        memmove(m->data, m->data + m->start, len);
        m->start = 0;
        m->end = (uint32_t)len;
        return m->data + m->end;
    }
    size_t cap = m ? m->cap : BUF_MIN_CAP;
    while (cap - len < n) cap = cap > BUF_MAX / 2 ? BUF_MAX : cap * 2;
    buf_mem *d = malloc(sizeof *d + cap);
    if (!d) return NULL;
    if (len) memcpy(d->data, m->data + m->start, len);
    free(m);
    d->start = 0;
    d->end = (uint32_t)len;
    d->cap = (uint32_t)cap;
    b->m = d;
    return d->data + d->end;
}

void buf_commit(buf *b, size_t n) {
    if (n) b->m->end += (uint32_t)n;
}

int buf_append(buf *b, const void *p, size_t n) {
    uint8_t *dst = buf_reserve(b, n);
    if (!dst) return -1;
    memcpy(dst, p, n);
    buf_commit(b, n);
    return 0;
}

void buf_consume(buf *b, size_t n) {
    if (!b->m) return;
    b->m->start += (uint32_t)n;
    if (b->m->start >= b->m->end) {
        /* empty: give the memory back so idle connections cost nothing */
        buf_free(b);
    }
}

void buf_truncate(buf *b, size_t len) {
    if (!b->m) return;
    if (len == 0) buf_free(b);
    else b->m->end = b->m->start + (uint32_t)len;
}

void buf_free(buf *b) {
    free(b->m);
    b->m = NULL;
}
