/* store_batch_ops.c -- see store_batch_ops.h. */
#include "store/store_batch_ops.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "store/store_backend.h"

typedef struct batch_op {
    uint32_t key_off, key_len;
    uint32_t val_off, val_len;   /* a range delete: its end key */
    uint8_t kind;
} batch_op;

struct store_batch {
    batch_op *ops;
    size_t n, cap;
    uint8_t *arena;              /* keys and values, back to back */
    size_t used, size;
};

/* Offsets are 32-bit; a batch this large is a bug upstream, and a batch we
 * cannot build is a write we cannot acknowledge. */
enum { ARENA_MAX = 1u << 30, OPS_MAX = 1u << 24 };
/* what a batch keeps allocated between commits */
enum { ARENA_KEEP = 4u << 20 };

store_batch *store_batch_new(void) { return calloc(1, sizeof(store_batch)); }

void store_batch_free(store_batch *b) {
    if (!b) return;
    free(b->ops);
    free(b->arena);
    free(b);
}

size_t store_batch_count(const store_batch *b) { return b->n; }

void store_batch_each(const store_batch *b, store_write_fn fn, void *ud) {
    static const enum store_write_kind kinds[] = {
        [BATCH_PUT] = STORE_WRITE_PUT,
        [BATCH_DELETE] = STORE_WRITE_DELETE,
        [BATCH_DELETE_RANGE] = STORE_WRITE_DELETE_RANGE,
    };
    for (size_t i = 0; i < b->n; i++) {
        const batch_op *op = &b->ops[i];
        if (fn(ud, kinds[op->kind], b->arena + op->key_off, op->key_len, b->arena + op->val_off, op->val_len))
            return;
    }
}

void batch_ops_clear(store_batch *b) {
    b->n = 0;
    b->used = 0;
    if (b->size > ARENA_KEEP) {
        free(b->arena);
        b->arena = NULL;
        b->size = 0;
    }
}

static uint32_t arena_add(store_batch *b, const void *p, size_t len) {
    if (len > ARENA_MAX - b->used) abort();
    if (b->used + len > b->size) {
        size_t size = b->size ? b->size : 4096;
        while (size < b->used + len) size *= 2;
        uint8_t *grown = realloc(b->arena, size);
        if (!grown) abort();
        b->arena = grown;
        b->size = size;
    }
    if (len) memcpy(b->arena + b->used, p, len);
    uint32_t off = (uint32_t)b->used;
    b->used += len;
    return off;
}

static void add(store_batch *b, uint8_t kind, const uint8_t *k, size_t klen, const void *v, size_t vlen) {
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        if (cap > OPS_MAX) abort();
        batch_op *grown = realloc(b->ops, cap * sizeof *grown);
        if (!grown) abort();
        b->ops = grown;
        b->cap = cap;
    }
    batch_op *op = &b->ops[b->n++];
    op->kind = kind;
    op->key_len = (uint32_t)klen;
    op->key_off = arena_add(b, k, klen);
    op->val_len = (uint32_t)vlen;
    op->val_off = arena_add(b, v, vlen);
}

void batch_ops_put(store_batch *b, const uint8_t *k, size_t klen, const void *v, size_t vlen) {
    add(b, BATCH_PUT, k, klen, v, vlen);
}

void batch_ops_delete(store_batch *b, const uint8_t *k, size_t klen) { add(b, BATCH_DELETE, k, klen, NULL, 0); }

void batch_ops_delete_range(store_batch *b, const uint8_t *from, size_t from_len, const uint8_t *to,
                            size_t to_len) {
    add(b, BATCH_DELETE_RANGE, from, from_len, to, to_len);
}

typedef struct sorted {
    const uint8_t *key;
    uint32_t len;
    uint32_t index;   /* position in the batch: among equal keys the last call wins */
} sorted;

static int sorted_order(const void *x, const void *y) {
    const sorted *a = x, *b = y;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = n ? memcmp(a->key, b->key, n) : 0;
    if (c) return c;
    if (a->len != b->len) return a->len < b->len ? -1 : 1;
    return a->index < b->index ? -1 : a->index > b->index;
}

static void emit(const store_batch *b, const batch_op *op, rocksdb_writebatch_t *wb, batch_cf_fn cf, void *ud) {
    const char *k = (const char *)b->arena + op->key_off;
    const char *v = (const char *)b->arena + op->val_off;
    rocksdb_column_family_handle_t *h = cf(ud, op->key_len ? (uint8_t)k[0] : 0);
    switch (op->kind) {
    case BATCH_PUT: rocksdb_writebatch_put_cf(wb, h, k, op->key_len, v, op->val_len); break;
    case BATCH_DELETE: rocksdb_writebatch_delete_cf(wb, h, k, op->key_len); break;
    default: rocksdb_writebatch_delete_range_cf(wb, h, k, op->key_len, v, op->val_len); break;
    }
}

/* The writes of a run are sorted here rather than by qsort: glibc's qsort
 * is a merge sort calling the comparison through a pointer, and a group
 * commit of 25 writes on average went through it (callgrind: ~4 % of the
 * server's instructions per message). Blocks of up to INSERTION_RUN writes
 * are insertion-sorted, then merged pairwise, with the comparison inlined.
 * Both steps are stable, and the index tie-break makes the order total
 * anyway, so the order is the one qsort gave. tmp holds n entries. */
enum { INSERTION_RUN = 16, ORDER_ON_STACK = 64 };

static void insertion_sort(sorted *order, size_t n) {
    for (size_t i = 1; i < n; i++) {
        sorted x = order[i];
        size_t j = i;
        for (; j > 0 && sorted_order(&order[j - 1], &x) > 0; j--) order[j] = order[j - 1];
        order[j] = x;
    }
}

static void sort_run(sorted *order, sorted *tmp, size_t n) {
    for (size_t i = 0; i < n; i += INSERTION_RUN)
        insertion_sort(order + i, n - i < INSERTION_RUN ? n - i : INSERTION_RUN);
    sorted *from = order, *to = tmp;
    for (size_t width = INSERTION_RUN; width < n; width *= 2) {
        for (size_t lo = 0; lo < n; lo += 2 * width) {
            size_t mid = lo + width < n ? lo + width : n, hi = lo + 2 * width < n ? lo + 2 * width : n;
            size_t a = lo, b = mid, k = lo;
            while (a < mid && b < hi) to[k++] = sorted_order(&from[b], &from[a]) < 0 ? from[b++] : from[a++];
            while (a < mid) to[k++] = from[a++];
            while (b < hi) to[k++] = from[b++];
        }
        sorted *t = from;
        from = to;
        to = t;
    }
    if (from != order) memcpy(order, from, n * sizeof *order);
}

size_t batch_ops_build(const store_batch *b, rocksdb_writebatch_t *wb, batch_cf_fn cf, void *ud) {
    rocksdb_writebatch_clear(wb);
    if (b->n == 0) return 0;
    sorted on_stack[2 * ORDER_ON_STACK];   /* the order, then sort_run's tmp */
    sorted *order = b->n <= ORDER_ON_STACK ? on_stack : malloc(2 * b->n * sizeof *order);
    if (!order) abort();
    size_t superseded = 0;
    for (size_t i = 0; i < b->n;) {
        /* a run of point writes up to the next range delete */
        size_t j = i, n = 0;
        for (; j < b->n && b->ops[j].kind != BATCH_DELETE_RANGE; j++)
            order[n++] = (sorted){b->arena + b->ops[j].key_off, b->ops[j].key_len, (uint32_t)j};
        sort_run(order, order + b->n, n);
        for (size_t k = 0; k < n; k++) {
            bool later = k + 1 < n && order[k + 1].len == order[k].len &&
                         memcmp(order[k + 1].key, order[k].key, order[k].len) == 0;
            if (later) superseded++;
            else emit(b, &b->ops[order[k].index], wb, cf, ud);
        }
        if (j < b->n) emit(b, &b->ops[j], wb, cf, ud);
        i = j + 1;
    }
    if (order != on_stack) free(order);
    return superseded;
}
