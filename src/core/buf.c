#include "core/buf.h"

#include <stdlib.h>
#include <string.h>

uint8_t *buf_reserve(buf *b, size_t n) {
    if (b->cap - b->end >= n) return b->data + b->end;
    size_t len = buf_len(b);
    if (b->start > 0 && b->cap - len >= n) {
        memmove(b->data, b->data + b->start, len);
        b->start = 0;
        b->end = len;
        return b->data + b->end;
    }
    size_t cap = b->cap ? b->cap : 512;
    while (cap - len < n) cap *= 2;
    uint8_t *d = malloc(cap);
    if (!d) return NULL;
    if (len) memcpy(d, b->data + b->start, len);
    free(b->data);
    b->data = d;
    b->start = 0;
    b->end = len;
    b->cap = cap;
    return b->data + b->end;
}

int buf_append(buf *b, const void *p, size_t n) {
    uint8_t *dst = buf_reserve(b, n);
    if (!dst) return -1;
    memcpy(dst, p, n);
    b->end += n;
    return 0;
}

void buf_consume(buf *b, size_t n) {
    b->start += n;
    if (b->start >= b->end) {
        /* empty: give the memory back so idle connections cost nothing */
        buf_free(b);
    }
}

void buf_free(buf *b) {
    free(b->data);
    b->data = NULL;
    b->start = b->end = b->cap = 0;
}
