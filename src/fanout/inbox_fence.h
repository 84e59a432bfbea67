/* inbox_fence.h -- fan-out's side of the fenced store (store.h
 * STORE_CONFLICT, src/store/store_cassandra_fence.c): when an inbox
 * append loses its condition, or a user is touched cold and the store's
 * head is past its hint, the entries about to be appended are checked
 * against what the inboxes already hold and renumbered after the heads.
 * See inbox_fence.c. */
#ifndef PARLEY_FANOUT_INBOX_FENCE_H
#define PARLEY_FANOUT_INBOX_FENCE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/u64map.h"
#include "store/store.h"

/* one entry to append: user_seq as numbered; present once found there */
typedef struct inbox_claim {
    uint64_t user, user_seq, conv, seq;
    bool deep;      /* may be present before the hint too: a replayed or stale entry (below) */
    bool present;   /* (conv, seq) already in the inbox, at user_seq: not written again */
} inbox_claim;

/* A stale entry (inbox_fence_stale) is checked deep too: the fan-out of a
 * chat node that stalled past the consumer group's session timeout
 * (OWNER_SESSION_MS, heartbeats every third of it: chat_owner.h) and
 * resumed still holds entries of the partitions it lost, and their new
 * owner's hand-over replay may have appended them already. Their message
 * was numbered (its server_ts) while this node still owned its partition,
 * so at least session - heartbeat (6.7 s) before the new owner was
 * given it and could append anything; an entry younger than
 * INBOX_FENCE_STALE_MS when its user's head is already believed cannot be
 * in the inbox below that belief, and whatever is appended after the
 * belief makes the commit's condition fail (STORE_CONFLICT), whose
 * renumbering reads everything past the belief. An entry this old or
 * older is looked for among the user's last INBOX_FENCE_DEEP entries
 * before it is appended. */
enum { INBOX_FENCE_STALE_MS = 5000 };
/* true when an entry whose message was numbered at numbered_ms (wall
 * clock, its server_ts) is stale at now_ms (read after its user's head was
 * believed) */
bool inbox_fence_stale(uint64_t numbered_ms, uint64_t now_ms);

/* c: n entries sorted by (user, user_seq). For each user: reads the hint
 * and head (store_inbox_heads) and the entries in (min(hint, first - 1),
 * head], or the last INBOX_FENCE_DEEP entries when one of the user's
 * entries is deep: an entry the fan-out log was read again for (a hand-over
 * or a restart). Its first fan-out may have appended it and died before
 * its checkpoint was committed, and another node's appends since carried
 * the hint past it; an entry that far back is looked for this far only
 * (past it, the inbox would hold it twice and the clients drop the second
 * by (conversation, seq)). An entry whose (conv, seq) is there takes that user_seq and is
 * marked present; the others are numbered after the head, in order.
 * heads (user -> last user_seq given) is set to what was given. 0, or -1
 * on a store error (nothing may be numbered on a guess: the caller tries
 * again). */
enum { INBOX_FENCE_DEEP = 4096 };
int inbox_fence_renumber(store *s, inbox_claim *c, size_t n, u64map *heads);

#endif
