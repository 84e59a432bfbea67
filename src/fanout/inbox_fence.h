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
    bool deep;      /* may be present before the hint too: a replayed entry (below) */
    bool present;   /* (conv, seq) already in the inbox, at user_seq: not written again */
} inbox_claim;

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
