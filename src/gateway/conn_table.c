#include "gateway/conn_table.h"

#include "gateway/conn.h"

#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CONN_TABLE_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define CONN_TABLE_ASAN 1
#endif

#ifdef CONN_TABLE_ASAN
#include <sanitizer/asan_interface.h>
#define POISON(p, n) ASAN_POISON_MEMORY_REGION(p, n)
#define UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define POISON(p, n) ((void)(p), (void)(n))
#define UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* what a free slot keeps: its id and the free-list link */
#define KEPT offsetof(conn, user_id)
_Static_assert(offsetof(conn, id) == 0 && offsetof(conn, next_dirty) == sizeof(uint64_t),
               "a free slot keeps id and next_dirty, the first fields of struct conn");

static uint32_t generation(uint64_t id) { return (uint32_t)(id >> 24); }
static bool live(const conn *c) { return generation(c->id) & 1; }

static conn *slot_ptr(const conn_table *t, uint32_t slot) {
    return &t->pages[slot / CONN_TABLE_PAGE][slot % CONN_TABLE_PAGE];
}

static int add_page(conn_table *t) {
    if ((uint64_t)(t->n_pages + 1) * CONN_TABLE_PAGE > CONN_TABLE_MAX) return -1;
    if (t->n_pages == t->cap_pages) {
        uint32_t cap = t->cap_pages ? t->cap_pages * 2 : 16;
        conn **pages = realloc(t->pages, cap * sizeof *pages);
        if (!pages) return -1;
        t->pages = pages;
        t->cap_pages = cap;
    }
    conn *page = calloc(CONN_TABLE_PAGE, sizeof *page);
    if (!page) return -1;
    POISON((char *)page, CONN_TABLE_PAGE * sizeof *page);
    t->pages[t->n_pages++] = page;
    return 0;
}

conn *conn_table_alloc(conn_table *t, uint32_t worker_index) {
    conn *c = t->free_list;
    uint64_t old_id;
    uint32_t slot;
    if (c) {
        t->free_list = c->next_dirty;
        old_id = c->id;
        slot = (uint32_t)(old_id & 0xffffff);
    } else {
        if (t->n_slots == (uint32_t)t->n_pages * CONN_TABLE_PAGE && add_page(t)) return NULL;
        slot = t->n_slots++;
        c = slot_ptr(t, slot);
        old_id = 0;   /* generation 0: free, never used */
    }
    UNPOISON((char *)c, sizeof *c);
    memset(c, 0, sizeof *c);
    c->id = ((uint64_t)worker_index << 56) | ((uint64_t)(generation(old_id) + 1) << 24) | slot;
    return c;
}

void conn_table_release(conn_table *t, conn *c) {
    /* the next generation (even: free); the worker index stays */
    c->id = (c->id & ~(0xffffffffull << 24)) | ((uint64_t)(generation(c->id) + 1) << 24);
    c->next_dirty = t->free_list;
    t->free_list = c;
    POISON((char *)c + KEPT, sizeof *c - KEPT);
}

conn *conn_table_at(const conn_table *t, uint32_t slot) {
    if (slot >= t->n_slots) return NULL;
    conn *c = slot_ptr(t, slot);
    return live(c) ? c : NULL;
}

conn *conn_table_by_id(const conn_table *t, uint64_t id) {
    conn *c = conn_table_at(t, (uint32_t)(id & 0xffffff));
    return c && c->id == id ? c : NULL;
}

void conn_table_free(conn_table *t) {
    for (uint32_t i = 0; i < t->n_pages; i++) {
        UNPOISON((char *)t->pages[i], CONN_TABLE_PAGE * sizeof(conn));
        free(t->pages[i]);
    }
    free(t->pages);
    memset(t, 0, sizeof *t);
}
