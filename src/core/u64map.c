#include "core/u64map.h"

#include <stdlib.h>

static size_t slot_of(uint64_t key, size_t cap) {
    /* a multiplicative mix: ids are sequential, so spread them */
    key ^= key >> 33;
    key *= 0xff51afd7ed558ccdULL;
    key ^= key >> 33;
    return (size_t)key & (cap - 1);
}

uint64_t *u64map_get(const u64map *m, uint64_t key) {
    if (!m->cap || !key) return NULL;
    for (size_t i = slot_of(key, m->cap);; i = (i + 1) & (m->cap - 1)) {
        if (m->slots[i].key == key) return &m->slots[i].value;
        if (m->slots[i].key == 0) return NULL;
    }
}

static int grow(u64map *m) {
    size_t cap = m->cap ? m->cap * 2 : 16;
    u64map_slot *slots = calloc(cap, sizeof *slots);
    if (!slots) return -1;
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->slots[i].key) continue;
        size_t j = slot_of(m->slots[i].key, cap);
        while (slots[j].key) j = (j + 1) & (cap - 1);
        slots[j] = m->slots[i];
    }
    free(m->slots);
    m->slots = slots;
    m->cap = cap;
    return 0;
}

int u64map_put(u64map *m, uint64_t key, uint64_t value) {
    if (!key) return -1;
    if ((m->count + 1) * 10 > m->cap * 7 && grow(m)) return -1;
    size_t i = slot_of(key, m->cap);
    while (m->slots[i].key && m->slots[i].key != key) i = (i + 1) & (m->cap - 1);
    if (!m->slots[i].key) m->count++;
    m->slots[i].key = key;
    m->slots[i].value = value;
    return 0;
}

bool u64map_remove(u64map *m, uint64_t key, uint64_t *old_value) {
    if (!m->cap || !key) return false;
    size_t i = slot_of(key, m->cap);
    while (m->slots[i].key != key) {
        if (!m->slots[i].key) return false;
        i = (i + 1) & (m->cap - 1);
    }
    if (old_value) *old_value = m->slots[i].value;
    /* backward shift: move later members of the probe run into the hole */
    size_t hole = i;
    for (size_t j = (i + 1) & (m->cap - 1); m->slots[j].key; j = (j + 1) & (m->cap - 1)) {
        size_t home = slot_of(m->slots[j].key, m->cap);
        /* can slot j move to hole? only if its home is not in (hole, j] cyclically */
        bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
        if (!stays) {
            m->slots[hole] = m->slots[j];
            hole = j;
        }
    }
    m->slots[hole].key = 0;
    m->slots[hole].value = 0;
    m->count--;
    return true;
}

void u64map_free(u64map *m) {
    free(m->slots);
    m->slots = NULL;
    m->cap = m->count = 0;
}
