/* push_subscribers.h -- which users have at least one Web Push
 * subscription, in memory, so a hint for anyone else (most users, most of
 * the time) is dropped where it is made instead of costing the push thread
 * a registry lookup and a scan of the user's devices per message.
 *
 * Holds (user, device) pairs: loaded from the store at start, added by
 * PushRegister, removed by PushUnregister, RemoveDevice and the push
 * service's 404/410. An add is made before its commit (the set may name a
 * user with no subscription: a hint the push thread then finds nothing
 * for), a removal when its request is handled (a commit that fails after
 * it leaves a subscription out until the next start). Past its bound, or when the store cannot list the
 * subscriptions, it answers "maybe" for everyone (hints as before).
 *
 * The fan-out's read is one relaxed load of a counter (no lock, no write:
 * fan-out threads never wait on anyone); the pairs behind it are sharded
 * by user, each shard under a lock that only the rare writers (the
 * accounts owner, the push thread) take. */
#ifndef PARLEY_PUSH_SUBSCRIBERS_H
#define PARLEY_PUSH_SUBSCRIBERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

enum { PUSH_SUBSCRIBERS_MAX = 1 << 22 };   /* pairs held; past it every user counts as subscribed */

typedef struct push_subscribers push_subscribers;

push_subscribers *push_subscribers_new(void);
void push_subscribers_free(push_subscribers *s);
/* Every subscription in the store. 0, or -1 (logged): the set then says
 * "maybe" for everyone. */
int push_subscribers_load(push_subscribers *s, store *st);
void push_subscribers_add(push_subscribers *s, uint64_t user, uint32_t device);
void push_subscribers_remove(push_subscribers *s, uint64_t user, uint32_t device);
/* Any thread: false only if user has no subscription. */
bool push_subscribers_any(push_subscribers *s, uint64_t user);
/* The pairs held (the gauge parley_push_subscribers). */
size_t push_subscribers_count(push_subscribers *s);

#endif
