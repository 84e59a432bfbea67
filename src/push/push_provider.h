/* push_provider.h -- a push service as the push gateway sees it: it takes
 * one notification for one device's subscription and later says how it
 * went. Web Push is the first (webpush_provider.c); APNs or FCM would be
 * another struct like this one, chosen by the subscription's kind, with
 * nothing above push_gateway.c changed.
 *
 * Threads: every call is made on the push thread, and completions run on
 * it too (from poll), except wakeup, which any thread may call. */
#ifndef PARLEY_PUSH_PROVIDER_H
#define PARLEY_PUSH_PROVIDER_H

#include <stddef.h>
#include <stdint.h>

#include "proto/storage.pb-c.h"

typedef struct push_device {
    uint64_t user;
    uint32_t device;
} push_device;

typedef enum push_urgency {
    PUSH_URGENCY_VERY_LOW,
    PUSH_URGENCY_LOW,
    PUSH_URGENCY_NORMAL,
    PUSH_URGENCY_HIGH,
} push_urgency;

typedef enum push_outcome {
    PUSH_DELIVERED,   /* the push service took it (2xx) */
    PUSH_GONE,        /* the subscription is gone (404, 410): forget it */
    PUSH_RETRY,       /* 429, 5xx or no answer: try again later (retry_after_ms if it said) */
    PUSH_FAILED,      /* refused for good (another 4xx) */
} push_outcome;

/* status: the HTTP status, 0 without one; retry_after_ms: from Retry-After, 0 without one */
typedef void (*push_done_fn)(void *ud, push_outcome outcome, int status, uint64_t retry_after_ms);

typedef struct push_provider {
    const char *name;
    void *impl;
    /* Starts sending payload (the plaintext; the provider encrypts it as its
     * service requires) to sub. topic: a name under which a newer
     * notification replaces an undelivered older one ([A-Za-z0-9_-], at most
     * 32). 0: done is called exactly once, later, from poll; -1: refused at
     * once (a malformed subscription), done is not called. */
    int (*send)(void *impl, const push_device *device, const Parley__Store__PushSubscription *sub,
                const uint8_t *payload, size_t len, uint32_t ttl_s, push_urgency urgency, const char *topic,
                push_done_fn done, void *ud);
    /* Moves what is in flight along for at most timeout_ms, running completions. */
    void (*poll)(void *impl, int timeout_ms);
    /* Any thread: makes a poll in progress return soon. */
    void (*wakeup)(void *impl);
    /* Requests in flight now. */
    size_t (*in_flight)(void *impl);
    /* Abandons what is in flight (no completions) and frees. */
    void (*free)(void *impl);
} push_provider;

#endif
