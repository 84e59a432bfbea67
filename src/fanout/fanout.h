/* fanout.h -- from a stored message to every device of every member.
 *
 * For each message, in queue order: find who was a member at its seq,
 * append one entry to each member's inbox (their user_seq), commit the
 * entries together with the queue checkpoint, then hand each entry, through
 * the write path's port (chat/outbox.h), to every online device of that
 * member (the sender's other devices included). Devices that are offline get it from their inbox at sync.
 *
 * Resumable: the checkpoints (how far each conversation partition's log
 * was fanned out to each user partition's inboxes) are committed in the
 * same atomic batch as the inbox entries they cover, so after a crash the
 * replay starts exactly where each user partition's last commit ended:
 * nothing is appended twice and nothing acknowledged is skipped. (A queue whose offsets are not
 * committed with the store, such as Kafka, needs an idempotency index per
 * (user, conversation, seq) instead; the embedded one does not.) */
#ifndef PARLEY_FANOUT_H
#define PARLEY_FANOUT_H

#include <stddef.h>
#include <stdint.h>

#include "server.h"

typedef struct fanout fanout;

/* Fans out what the store's log of the conversation partitions
 * parts[0..n) (every partition when parts is NULL) holds past their
 * checkpoints: acknowledged, not yet fanned out (a crash, or another chat
 * node that stored and died or stalled before fanning out).
 * - Before fanout_start (process start, srv->fanout NULL): synchronously,
 *   by one private thread that routes nothing; before the writer and the
 *   workers start.
 * - With fan-out running (--kafka: partitions handed over by the group,
 *   cluster/chat_owner.c): the running threads' checkpoints of those
 *   partitions are first raised to the store's, their cached inbox heads
 *   and members dropped; then the entries are published to the queue, so
 *   the running threads fan them out (and route them) behind what the
 *   queue holds and ahead of anything the writers publish after this
 *   returns. Blocks while the queue is full.
 * *replayed (may be NULL): the entries read. 0 or -1 (the store failed). */
int fanout_replay(server *srv, const uint32_t *parts, size_t n, uint64_t *replayed);
/* How many fan-out threads fanout_start runs (--fanouts, at most the
 * store's user partitions): the number of consumers the queue needs. */
uint32_t fanout_threads(server *srv);
fanout *fanout_start(server *srv);
/* Stops once the queue is closed and drained. */
void fanout_stop(fanout *f);

/* A commit that fails is retried after this long: 100 ms doubling per
 * consecutive failure, capped at 5 s (attempt counts from 1). */
uint32_t fanout_retry_delay_ms(uint32_t attempt);
/* fan-out's commit-failure counters (Prometheus text); returns the length */
size_t fanout_metrics_render(char *out, size_t cap);

#endif
