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

/* Fans out, synchronously, everything in the store's log past the
 * checkpoint: what was acknowledged before a crash but not yet fanned out.
 * Run before the writer and the workers start. 0 or -1. */
int fanout_replay(server *srv);
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
