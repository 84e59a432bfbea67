/* buf.h -- a growable byte buffer with a read position. Memory is released
 * when the buffer empties past a small size, so an idle connection holds no
 * buffer at all. */
#ifndef PARLEY_CORE_BUF_H
#define PARLEY_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct buf {
    uint8_t *data;
    size_t start;   /* first unread byte */
    size_t end;     /* one past the last byte */
    size_t cap;
} buf;

static inline size_t buf_len(const buf *b) { return b->end - b->start; }
static inline uint8_t *buf_head(const buf *b) { return b->data + b->start; }

/* Makes room for n more bytes at the end; returns a pointer to it, or NULL
 * when memory runs out. Compacts before growing. */
uint8_t *buf_reserve(buf *b, size_t n);
int buf_append(buf *b, const void *p, size_t n);
void buf_consume(buf *b, size_t n);   /* drops n bytes from the front */
void buf_free(buf *b);

#endif
