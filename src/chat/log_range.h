/* log_range.h -- the offsets of a partition's fan-out log, handed out in
 * ranges that one owner alone numbers in.
 *
 * Why: the write path numbers each conversation partition's fan-out log
 * (store_put_log) on from the last offset it loaded. With several chat
 * nodes a partition has one owner at a time, but a stalled one (a zombie:
 * stopped past its consumer group's session timeout, then resumed) keeps
 * writing a while after the partition moved. Counting on from the same
 * loaded offset, the zombie and the new owner would give the same next
 * offsets: their log entries would overwrite each other (one key
 * (partition, offset)), and fan-out's checkpoints (the highest offset read)
 * would skip or repeat entries.
 *
 * So an offset is range << 32 | n. Every time an owner loads a partition
 * (writer.c load_state: at start, after a failed commit, when partitions
 * moved) it takes a new range, strictly above every range the store shows
 * for that partition (of its last log offset, its checkpoints, and the
 * range counter below) and above the one it had, and claims it in the
 * store (store_claim_log_range: a lightweight transaction on a fenced
 * Cassandra store, always won on a store one process owns). A lost claim
 * means another owner took that range: the next one is tried. Within a
 * range, offsets count from 1. Offsets are compared as plain u64, so a new
 * owner's entries sort above a zombie's, and no two owners ever write the
 * same (partition, offset).
 *
 * The range counter ("log_range.P", store_put_counter) records the last
 * range taken, a hint only: a load that finds no entry written since
 * still starts above it, so reloads of an idle partition do not walk over
 * the same claimed ranges again and again. The claim decides; a counter
 * set back by a slower writer only costs a lost claim or two.
 *
 * Ranges stay below 2^31 (Cassandra's bigint is signed, and the log is
 * clustered by it); an owner that has given LOG_RANGE_RENEW_AT offsets of
 * one range takes a new one (writer_renew_log_ranges) long before n could
 * wrap. */
#ifndef PARLEY_CHAT_LOG_RANGE_H
#define PARLEY_CHAT_LOG_RANGE_H

#include <stdint.h>

#include "store/store.h"

#define LOG_RANGE_SHIFT 32
#define LOG_RANGE_MAX 0x7fffffffu        /* the highest range: offsets stay below 2^63 */
#define LOG_RANGE_RENEW_AT 0x80000000u   /* n from which an owner takes a new range */
#define LOG_RANGE_CLAIMS 64              /* claims one take tries, at most */

static inline uint32_t log_range_of(uint64_t offset) { return (uint32_t)(offset >> LOG_RANGE_SHIFT); }
/* the offset before the first one of range r: the first is this + 1 */
static inline uint64_t log_range_base(uint32_t r) { return (uint64_t)r << LOG_RANGE_SHIFT; }
/* how many offsets of its range come up to offset */
static inline uint32_t log_range_n(uint64_t offset) { return (uint32_t)offset; }

/* The highest range partition p has used as the store shows it: of its
 * last log offset, of its checkpoints (one per user partition: fan-out
 * deletes the log entries all of them have finished, the checkpoints
 * remember how far the log went) and of its range counter. 0 or -1. */
int log_range_seen(store *s, uint32_t partition, uint32_t user_partitions, uint32_t *range);

/* Takes a new range of partition p above `above`: claims above + 1, and
 * the next while another writer has it (LOG_RANGE_CLAIMS at most), and puts
 * the range counter in b (the caller commits it). 0 with *range, or -1 (a
 * store error, no range won, or none left). */
int log_range_take(store *s, store_batch *b, uint32_t partition, uint32_t above, uint32_t *range);

/* A load of partition p by an owner that had range `had` (0: none):
 * log_range_take above both log_range_seen and had. 0 with *range, or -1. */
int log_range_load(store *s, store_batch *b, uint32_t partition, uint32_t user_partitions, uint32_t had,
                   uint32_t *range);

#endif
