/* marks_cache.h -- a conversation writer's memory of the read marks
 * (read_seq, delivered_seq) of the member records it last read or wrote,
 * so that a delivered raise (one per acked conversation per Ack) writes the
 * 16-byte marks record without first reading the member record back (an
 * iterator over every level: ~15,000 instructions).
 *
 * Only the conversation's owner writes its member records, so what it
 * remembers is what the store holds, as long as every write of a member
 * record by this writer either goes through the cache or clears it: the
 * writer sets an entry for each record its batch writes, and clears the
 * whole cache before any request that writes member records another way
 * (and after a failed commit). Direct-mapped and fixed in size: a collision
 * only forgets an entry, which costs one read next time. */
#ifndef PARLEY_CHAT_MARKS_CACHE_H
#define PARLEY_CHAT_MARKS_CACHE_H

#include <stdint.h>

enum { MARKS_CACHE_SLOTS = 16384 };   /* 32 B each: 512 KiB per conversation writer */

typedef struct marks_slot {
    uint64_t conv, user;
    uint64_t read_seq, delivered_seq;
    uint64_t generation;              /* valid only when equal to the cache's */
} marks_slot;

typedef struct marks_cache {
    marks_slot *slots;                /* allocated at the first set */
    uint64_t generation;              /* starts at 1; a clear moves it on */
} marks_cache;

/* the entry of (conv, user), or NULL */
marks_slot *marks_cache_find(marks_cache *c, uint64_t conv, uint64_t user);
/* remembers (or replaces) the marks of (conv, user); forgets nothing else
 * but the slot's previous entry. Nothing remembered when out of memory. */
void marks_cache_set(marks_cache *c, uint64_t conv, uint64_t user, uint64_t read_seq, uint64_t delivered_seq);
void marks_cache_clear(marks_cache *c);
void marks_cache_free(marks_cache *c);

#endif
