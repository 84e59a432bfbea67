/* push_gateway.h -- notifications to devices that have no live session.
 *
 * The fan-out hands over (user, conversation) once per commit for the
 * messages it appends to a user's inbox (push_gateway_hint: a bounded
 * queue, never blocks; nothing for a user with no subscription). The push thread then, for each device of that user that is
 * not online (the registry, asked again right before sending) and has a
 * subscription: sends at most one notification per --push-coalesce-ms
 * (the rest are counted as coalesced: a woken device syncs everything),
 * within --push-device-per-hour and the global --push-rate; retries 429,
 * 5xx and transport failures with backoff and Retry-After, at most
 * --push-attempts tries; forgets the subscription on 404/410. The payload
 * names only the conversation and a count. Counters: push_metrics_render. */
#ifndef PARLEY_PUSH_GATEWAY_H
#define PARLEY_PUSH_GATEWAY_H

#include <stddef.h>
#include <stdint.h>

#include "server.h"

typedef struct push_gateway push_gateway;

/* Loads or makes the VAPID key in the data directory and starts the push
 * thread. NULL after logging why. */
push_gateway *push_gateway_start(server *srv);
/* Stops the thread (what is in flight is abandoned) and frees. */
void push_gateway_stop(push_gateway *g);

/* Any thread (the fan-out): messages (one or more, of one fan-out commit)
 * for user in conversation: one hint, one look at the user's devices.
 * Dropped at once (parley_push_hints_unsubscribed_total) when the user has
 * no subscription (push_subscribers.h). */
void push_gateway_hint(push_gateway *g, uint64_t user, uint64_t conversation, uint32_t messages);
/* The write path registered (before its commit) or removed (after the
 * request) a device's subscription. g may be NULL (push off). */
void push_gateway_subscribed(push_gateway *g, uint64_t user, uint32_t device);
void push_gateway_unsubscribed(push_gateway *g, uint64_t user, uint32_t device);

/* The VAPID public key: 65 bytes, and in base64url. */
const uint8_t *push_gateway_vapid_key(const push_gateway *g);
const char *push_gateway_vapid_key_b64(const push_gateway *g);

/* Prometheus text of the push counters into out; bytes written (0 if it
 * does not fit). */
size_t push_metrics_render(char *out, size_t cap);

#endif
