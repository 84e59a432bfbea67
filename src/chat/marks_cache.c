/* marks_cache.c -- see marks_cache.h. */
#include "chat/marks_cache.h"

#include <stdlib.h>

static marks_slot *slot_of(const marks_cache *c, uint64_t conv, uint64_t user) {
    uint64_t h = (conv * 0x9E3779B97F4A7C15ull) ^ (user * 0xC2B2AE3D27D4EB4Full);
    h ^= h >> 29;
    return &c->slots[h % MARKS_CACHE_SLOTS];
}

marks_slot *marks_cache_find(marks_cache *c, uint64_t conv, uint64_t user) {
    if (!c->slots) return NULL;
    marks_slot *s = slot_of(c, conv, user);
    return s->generation == c->generation && s->conv == conv && s->user == user ? s : NULL;
}

void marks_cache_set(marks_cache *c, uint64_t conv, uint64_t user, uint64_t read_seq, uint64_t delivered_seq) {
    if (!c->slots) {
        c->slots = calloc(MARKS_CACHE_SLOTS, sizeof *c->slots);
        if (!c->slots) return;
        if (c->generation == 0) c->generation = 1;   /* calloc'd slots hold generation 0: empty */
    }
    marks_slot *s = slot_of(c, conv, user);
    *s = (marks_slot){conv, user, read_seq, delivered_seq, c->generation};
}

void marks_cache_clear(marks_cache *c) {
    if (c->slots) c->generation++;
}

void marks_cache_free(marks_cache *c) {
    free(c->slots);
    c->slots = NULL;
}
