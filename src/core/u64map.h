/* u64map.h -- an open-addressing hash map from a non-zero uint64 key to a
 * uint64 value (or a pointer stored in it). Linear probing, backward-shift
 * deletion, grows at 70 % load. One owner thread; no locking inside. */
#ifndef PARLEY_CORE_U64MAP_H
#define PARLEY_CORE_U64MAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct u64map_slot {
    uint64_t key;    /* 0 = empty */
    uint64_t value;
} u64map_slot;

typedef struct u64map {
    u64map_slot *slots;
    size_t cap;      /* power of two, or 0 */
    size_t count;
} u64map;

/* Pointer to the value for key, or NULL. */
uint64_t *u64map_get(const u64map *m, uint64_t key);
/* Inserts or overwrites; -1 when memory runs out. */
int u64map_put(u64map *m, uint64_t key, uint64_t value);
bool u64map_remove(u64map *m, uint64_t key, uint64_t *old_value);
void u64map_free(u64map *m);

/* Iteration: for (size_t i = 0; i < m->cap; i++) if (m->slots[i].key) ... */

#endif
