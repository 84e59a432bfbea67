/* buf.h -- a growable byte buffer with a read position. Memory is released
 * when the buffer empties, so an idle connection holds no buffer at all:
 * only the one pointer of struct buf; the positions live in the
 * allocation's header while there are bytes. */
#ifndef PARLEY_CORE_BUF_H
#define PARLEY_CORE_BUF_H

#include <stddef.h>
#include <stdint.h>

typedef struct buf_mem {
    uint32_t start;     /* first unread byte */
    uint32_t end;       /* one past the last byte */
    uint32_t cap;
    uint8_t data[];
} buf_mem;

typedef struct buf {
    buf_mem *m;         /* NULL: empty, nothing allocated */
} buf;

enum { BUF_MAX = 0x7fffffff };   /* one buffer holds at most this many bytes */

static inline size_t buf_len(const buf *b) { return b->m ? (size_t)(b->m->end - b->m->start) : 0; }
static inline uint8_t *buf_head(const buf *b) { return b->m ? b->m->data + b->m->start : NULL; }
/* Bytes allocated (header included): 0 when the buffer holds nothing. */
static inline size_t buf_held(const buf *b) { return b->m ? sizeof *b->m + b->m->cap : 0; }

/* Makes room for n more bytes at the end; returns a pointer to it, or NULL
 * when memory runs out or the buffer would pass BUF_MAX. Compacts before
 * growing. The bytes count once buf_commit says how many were written. */
uint8_t *buf_reserve(buf *b, size_t n);
/* n bytes written at buf_reserve's pointer (n <= what was reserved). */
void buf_commit(buf *b, size_t n);
int buf_append(buf *b, const void *p, size_t n);
void buf_consume(buf *b, size_t n);   /* drops n bytes from the front */
/* Keeps the first len bytes (len <= buf_len), dropping the rest. */
void buf_truncate(buf *b, size_t len);
void buf_free(buf *b);

#endif
