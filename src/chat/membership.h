/* membership.h -- membership questions answered from the store, for the
 * writer and the workers alike. */
#ifndef PARLEY_CHAT_MEMBERSHIP_H
#define PARLEY_CHAT_MEMBERSHIP_H

#include <stdint.h>

#include "store/store.h"

/* 1 when user is a current member of conv (its record in *out if asked:
 * the caller frees it), 0 when not, -1 on a store error. */
int membership_current(store *s, uint64_t conv, uint64_t user, Parley__Store__Member **out);

/* 1 when a and b are both current members of some conversation (or a == b),
 * else 0. However many conversations either is in: memory is bounded
 * (4096 ids held), and past that each conversation is checked in place. */
int membership_shared(store *s, uint64_t a, uint64_t b);

#endif
