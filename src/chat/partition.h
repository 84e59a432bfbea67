/* partition.h -- which thread owns what on the write path.
 *
 * Conversations fall into P partitions: partition = conversation id mod P.
 * P is fixed when a store is created and recorded in it ("partitions"
 * counter); a store from before partitions gets P recorded the first time
 * it is opened. Conversation ids are allocated per partition (the owner of
 * partition p gives p, p+P, p+2P, ...), so a new conversation's id already
 * names its partition and no counter is shared between owners; the ids of
 * older stores (1, 2, 3, ...) spread evenly over the partitions.
 *
 * Each partition has exactly one owner: conversation writer (p mod N) of
 * the N started with --writers. It alone validates, dedupes, assigns seq,
 * writes the partition's fan-out log and group-commits for the
 * conversations of its partitions.
 *
 * Users fall into U user partitions the same way (U fixed and recorded
 * like P, "user_partitions"): each is owned by one fan-out thread, which
 * alone appends to the inboxes of its users (user_seq). Fan-out's progress
 * is a checkpoint per (conversation partition, user partition): how far
 * that partition's log has reached those users' inboxes. */
#ifndef PARLEY_CHAT_PARTITION_H
#define PARLEY_CHAT_PARTITION_H

#include <stdint.h>

#include "store/store.h"

enum {
    PARTITIONS_NEW_STORE = 64,   /* P of a store created now */
    PARTITIONS_MAX = 4096,       /* a recorded P above this is refused as corrupt */
    USER_PARTITIONS_NEW_STORE = 8,
    USER_PARTITIONS_MAX = 64,
};

/* P and U of the store, recorded (synced) when the store has none yet; a
 * store from before partitions has one fan-out checkpoint (log 0, every
 * user), which then becomes that of (0, u) for every u. 0 with *p and *u,
 * or -1 (store error or a corrupt value). */
int partitions_load(store *s, uint32_t *p, uint32_t *u);

/* the fan-out checkpoint record of (conversation partition p, user partition u) */
static inline uint32_t checkpoint_id(uint32_t p, uint32_t u, uint32_t user_partitions) {
    return p * user_partitions + u;
}

static inline uint32_t conv_partition(uint64_t conv, uint32_t partitions) {
    return (uint32_t)(conv % partitions);
}

/* The partition that decides about the pair {a, b}: where their direct
 * conversation is looked up and created, so two OpenDirect for one pair
 * are serialised by one owner whichever of the two asks. */
uint32_t pair_partition(uint64_t a, uint64_t b, uint32_t partitions);

uint32_t user_partition(uint64_t user, uint32_t user_partitions);

/* Any 64-bit value to a partition (a group creation picks its partition
 * this way: it has no conversation yet). */
uint32_t hash_partition(uint64_t key, uint32_t partitions);

/* The next conversation id in partition p after every id <= floor: the
 * smallest id > floor with id mod P == p (never 0). */
uint64_t partition_next_conv_id(uint64_t floor, uint32_t p, uint32_t partitions);

#endif
