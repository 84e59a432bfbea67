/* writer_cache.h -- what a conversation writer remembers of the records it
 * alone writes, so that a send does not wait for a store round trip to
 * learn them again (on Cassandra each read is one, one at a time).
 *
 * The owner of a conversation is the only writer of its member records and
 * of the dedupe records of the sends it stores (writer_route.c), so a
 * write-through copy stays exact: filled on a read that found the record,
 * updated on every put into the owner's batch (in batch order, so the copy
 * is what the batch leaves), and dropped whole when a commit fails (it may
 * hold what did not commit). A restart starts empty: every first read goes
 * to the store, so a retry after kill -9 still finds its original seq.
 * Both tables are bounded (set-associative, least recently used evicted in
 * a set); allocated on first use; when that fails every lookup is a miss. */
#ifndef PARLEY_CHAT_WRITER_CACHE_H
#define PARLEY_CHAT_WRITER_CACHE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/storage.pb-c.h"

typedef struct writer_cache writer_cache;

enum {
    WCACHE_MEMBER_ENTRIES = 32768,   /* member records held per writer */
    WCACHE_DEDUPE_ENTRIES = 16384,   /* recent client_msg_ids held per writer */
    WCACHE_MSG_ID_MAX = 64,          /* = MAX_CLIENT_MSG_ID: longer ids are never held */
    WCACHE_WAYS = 4,                 /* entries a set: the least recently used of them goes */
};

void writer_cache_free(writer_cache *c);
/* forgets everything (a commit failed) */
void writer_cache_clear(writer_cache *c);

/* A copy of the record, freed by the caller as an unpacked one
 * (parley__store__member__free_unpacked; unknown fields not kept), or NULL
 * when not held */
Parley__Store__Member *writer_cache_member_get(writer_cache **c, uint64_t conv, uint64_t user);
void writer_cache_member_put(writer_cache **c, uint64_t conv, uint64_t user, const Parley__Store__Member *m);
/* The read marks of a held record, when a raise wrote only its marks
 * record (marks_cache.h): nothing when the record is not held. */
void writer_cache_member_marks(writer_cache **c, uint64_t conv, uint64_t user, uint64_t read_seq,
                               uint64_t delivered_seq);

/* A send's dedupe record: true with its conv and seq when held and newer
 * than retention_ms (0: no limit), as the store would answer. */
bool writer_cache_dedupe_get(writer_cache **c, uint64_t user, uint32_t device, const uint8_t *id, size_t len,
                             uint64_t now_ms, uint64_t retention_ms, uint64_t *conv, uint64_t *seq);
/* stored_ms: when the owner put the record in its batch. Records read from
 * the store are not held: when they were written (their expiry) is unknown. */
void writer_cache_dedupe_put(writer_cache **c, uint64_t user, uint32_t device, const uint8_t *id, size_t len,
                             uint64_t conv, uint64_t seq, uint64_t stored_ms);
/* the set of WCACHE_WAYS entries a dedupe record goes to (tests fill one) */
size_t writer_cache_dedupe_set_of(uint64_t user, uint32_t device, const uint8_t *id, size_t len);

#endif
