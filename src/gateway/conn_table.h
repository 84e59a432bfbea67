/* conn_table.h -- a worker's connections by slot, stored in place.
 *
 * The conn structs live in pages of CONN_TABLE_PAGE, so a connection costs
 * sizeof(conn) and nothing more: no malloc chunk header, and no per-slot
 * arrays of pointers, generations or free slots. A free slot keeps its id
 * (whose generation field says whether it is live) and chains the free
 * list through next_dirty; both are the first fields of struct conn, and
 * an AddressSanitizer build poisons the rest of a free slot, so a freed
 * connection is still caught when touched.
 *
 * Conn ids: worker index (8 bits) | generation (32) | slot (24). The
 * generation is odd while the slot is live and even while it is free, and
 * moves on at both, so a stale id never names a later connection (until
 * the generation wraps after 2^31 reuses of one slot). */
#ifndef PARLEY_GATEWAY_CONN_TABLE_H
#define PARLEY_GATEWAY_CONN_TABLE_H

#include <stdint.h>

struct conn;

enum {
    CONN_TABLE_PAGE = 256,          /* conns per page */
    CONN_TABLE_MAX = 1 << 24,       /* slots: 24 bits of the id */
};

typedef struct conn_table {
    struct conn **pages;    /* n_pages pages of CONN_TABLE_PAGE conns; never freed before the table */
    uint32_t n_pages, cap_pages;
    uint32_t n_slots;       /* slots handed out at least once: [0, n_slots) */
    struct conn *free_list; /* free slots (chained through next_dirty), latest first */
} conn_table;

/* A zeroed connection in a free slot (a new page when none is free), with
 * slot and id set (worker index in the id's top byte). NULL when the table
 * is full or memory runs out. */
struct conn *conn_table_alloc(conn_table *t, uint32_t worker_index);
/* c's slot becomes free; c must not be used after this. */
void conn_table_release(conn_table *t, struct conn *c);
/* The live connection in slot, or NULL. */
struct conn *conn_table_at(const conn_table *t, uint32_t slot);
/* The live connection with this id, or NULL (also for a stale id). */
struct conn *conn_table_by_id(const conn_table *t, uint64_t id);
/* Frees the pages (release the connections first). */
void conn_table_free(conn_table *t);

#endif
