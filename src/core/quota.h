/* quota.h -- per-device and per-user token buckets, and each user's share
 * of the writer queue.
 *
 * A device may hold several connections, on different worker threads; its
 * limits are the device's, not a connection's, so the buckets live here,
 * shared by every thread: a table sharded by user, a mutex per shard. A
 * user's entry and its devices' entries are in the same shard, so one lock
 * covers a request's check of both.
 *
 * Bounded memory: an entry exists only for a device (or user) that made a
 * request lately. An entry whose buckets have refilled and that has nothing
 * in the writer queue is the same as no entry, so it is dropped (a sweep of
 * the shard every few seconds). */
#ifndef PARLEY_CORE_QUOTA_H
#define PARLEY_CORE_QUOTA_H

#include <stdbool.h>
#include <stdint.h>

#include "core/config.h"

typedef enum quota_kind {
    QUOTA_SEND,    /* SendMessage */
    QUOTA_WRITE,   /* every other request that changes state */
    QUOTA_KINDS,
} quota_kind;

typedef struct quota_limits {
    /* tokens per second; a bucket holds twice its rate (the burst) */
    uint32_t device_rate[QUOTA_KINDS];
    uint32_t user_rate[QUOTA_KINDS];
    uint32_t user_writer_share;   /* requests of one user in the writer queue at once */
} quota_limits;

typedef struct quota quota;

quota *quota_new(const quota_limits *limits);
/* The quotas the server's configuration names (--send-rate, --write-rate,
 * their per-user rates and --user-writer-share). */
quota *quota_new_for_config(const config *cfg);
void quota_free(quota *q);

/* One token from the device's bucket and one from its user's of that kind,
 * or none when either is empty: then false and *retry_after_ms says when
 * both will hold one. now_ms: a monotonic clock. */
bool quota_take(quota *q, quota_kind kind, uint64_t user, uint32_t device, uint64_t now_ms,
                uint64_t *retry_after_ms);

/* Counts one request of user into the writer queue; false (nothing
 * counted) when the user already has its share there. Every true is
 * matched by one quota_writer_leave when the writer is done with it. */
bool quota_writer_enter(quota *q, uint64_t user, uint64_t now_ms);
void quota_writer_leave(quota *q, uint64_t user);

/* Entries held (for tests and /metrics). */
uint64_t quota_entries(quota *q);

#endif
