/* blob.h -- an immutable, reference-counted byte string. A message fanned
 * out to many devices is encoded once and shared by every delivery. */
#ifndef PARLEY_CORE_BLOB_H
#define PARLEY_CORE_BLOB_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

typedef struct blob {
    atomic_uint refs;
    size_t len;
    uint8_t data[];
} blob;

static inline blob *blob_new(const void *data, size_t len) {
    blob *b = malloc(sizeof *b + len);
    if (!b) return NULL;
    atomic_init(&b->refs, 1);
    b->len = len;
    if (data) memcpy(b->data, data, len);
    return b;
}

static inline blob *blob_ref(blob *b) {
    atomic_fetch_add_explicit(&b->refs, 1, memory_order_relaxed);
    return b;
}

static inline void blob_unref(blob *b) {
    if (b && atomic_fetch_sub_explicit(&b->refs, 1, memory_order_acq_rel) == 1) free(b);
}

#endif
