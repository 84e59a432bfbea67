/* fanout.h -- from a stored message to every device of every member.
 *
 * For each message, in queue order: find who was a member at its seq,
 * append one entry to each member's inbox (their user_seq), commit the
 * entries together with the queue checkpoint, then hand each entry to the
 * worker of every online device of that member (the sender's other devices
 * included). Devices that are offline get it from their inbox at sync.
 *
 * Resumable: the checkpoint is committed with the inbox entries, and an
 * inbox append is skipped when (user, conversation, seq) is already there,
 * so replaying the log after a crash shows no device a message twice. */
#ifndef PARLEY_FANOUT_H
#define PARLEY_FANOUT_H

#include "server.h"

typedef struct fanout fanout;

/* Fans out, synchronously, everything in the store's log past the
 * checkpoint: what was acknowledged before a crash but not yet fanned out.
 * Run before the writer and the workers start. 0 or -1. */
int fanout_replay(server *srv);
fanout *fanout_start(server *srv);
/* Stops once the queue is closed and drained. */
void fanout_stop(fanout *f);

#endif
