/* recent_inbox.h -- the last inbox entries of users with a device online,
 * in memory, so that a device's Ack finds which conversations its range
 * (ack_from, ack_to] covers without reading the inbox back from the store
 * (store_scan_inbox: an iterator over every level of the LSM tree, most of
 * the cost of an Ack).
 *
 * Written by the fan-out owners (each user's entries by the one thread that
 * numbers them, after their commit, before they are routed to devices), read
 * by the conversation writers that handle Acks: two sides, so each user's
 * record has a lock (one slot lock per user per note or lookup, never held
 * across anything but a copy).
 *
 * What makes it safe: a user's record holds a contiguous run of committed
 * user_seqs, exactly as stored (an entry that does not follow the last one
 * starts a new run). A lookup answers only when every user_seq of the range
 * is in the run; anything else (after a restart, a user not online when the
 * entries were made, a range longer than the run, a slot taken by another
 * user) says "not covered" and the caller reads the store as before.
 *
 * Bounds: SLOTS users (direct-mapped: a collision forgets the other user's
 * run); a run grows from RUN_MIN to RUN_MAX entries only while its oldest
 * entry is not yet acknowledged (a device that acks promptly keeps a short
 * run), and all runs together hold at most ENTRIES_MAX entries. */
#ifndef PARLEY_CHAT_RECENT_INBOX_H
#define PARLEY_CHAT_RECENT_INBOX_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

enum {
    RECENT_INBOX_SLOTS = 4096,
    RECENT_INBOX_RUN_MIN = 16,
    RECENT_INBOX_RUN_MAX = 1024,
    RECENT_INBOX_ENTRIES_MAX = 1 << 19,   /* 24 B each: 12 MiB at most */
};

typedef struct recent_inbox recent_inbox;

recent_inbox *recent_inbox_new(void);
void recent_inbox_free(recent_inbox *r);

/* user's entry user_seq is committed: (conv, seq) from sender. Called by the
 * user's fan-out owner, in user_seq order. Out of memory: nothing kept. */
void recent_inbox_note(recent_inbox *r, uint64_t user, uint64_t user_seq, uint64_t conv, uint64_t seq,
                       uint64_t sender);

/* When every entry of user with after < user_seq <= through is held: calls
 * fn for each, in user_seq order (fn's return is ignored, as a whole range
 * is always read), and returns 1. Otherwise calls nothing and returns 0.
 * Either way through counts as acknowledged (the run may drop what is at
 * or below it when full). */
int recent_inbox_scan(recent_inbox *r, uint64_t user, uint64_t after, uint64_t through, store_inbox_fn fn,
                      void *ud);

/* lookups answered from memory and sent to the store (Prometheus text) */
size_t recent_inbox_metrics_render(char *out, size_t cap);

#endif
