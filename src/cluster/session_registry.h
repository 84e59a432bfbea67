/* session_registry.h -- this node's sessions in the scale-out session
 * registry (registry_redis.h on the Redis Cluster): every connection that
 * starts sync on this node is written there as (user, device) -> (this
 * node, connection id, since), so another node can find the socket; the
 * local registry stays the fast path for this node's own deliveries.
 *
 * It follows the local registry (registry.h registry_mirror): an add is a
 * compare-and-set connect (a reconnect elsewhere that is newer wins), a
 * remove a disconnect that only deletes this connection's own entry. A
 * heartbeat refreshes every live entry, pipelined, every third of the
 * session TTL, so the entries of a node that dies expire; a refresh that
 * finds entries gone (expired while Redis was unreachable, or deleted)
 * connects the batch's open sessions again (compare-and-set, so a newer
 * connect of the device elsewhere is left alone). Nothing here
 * waits on Redis: a write that could not be queued or failed is counted;
 * the next heartbeat reports it gone. */
#ifndef PARLEY_CLUSTER_SESSION_REGISTRY_H
#define PARLEY_CLUSTER_SESSION_REGISTRY_H

#include <stdint.h>

#include "registry/registry.h"
#include "registry/registry_redis.h"

typedef struct session_registry session_registry;

/* node: this node's name (copied). rr must outlive the session registry.
 * NULL out of memory. */
session_registry *session_registry_start(registry_redis *rr, const char *node, uint32_t session_ttl_ms);
/* Stops the heartbeat (detach it from the local registry first). Entries
 * left in Redis expire; a clean stop removed them as its connections
 * closed. */
void session_registry_stop(session_registry *s);
/* Frees it: after the Redis client completed every command (rc_free),
 * since their callbacks count here. */
void session_registry_free(session_registry *s);
/* Fills m to follow a local registry with (registry_set_mirror). */
void session_registry_mirror(session_registry *s, registry_mirror *m);

/* Tells bus (presence_bus.h) of every session written or deleted: set
 * before the workers start (the pointer is not locked). */
struct presence_bus;
void session_registry_set_bus(session_registry *s, struct presence_bus *bus);

/* The connect race: a device's sync reads its inbox, then its entry is
 * written to Redis; an event whose lookup ran between the two found no
 * entry and was not sent live. So once Redis answers a connect as applied
 * (the first one, or one the heartbeat wrote again), live(ud, conn_id) is
 * called (on the Redis client's thread; it must not block) and the
 * connection reads its inbox past what it has sent: anything a lookup
 * missed was stored before that lookup, hence before this answer. Set
 * before the workers start. */
typedef void (*session_live_fn)(void *ud, uint64_t conn_id);
void session_registry_set_live(session_registry *s, session_live_fn live, void *ud);

typedef struct session_registry_stats {
    uint64_t live;             /* sessions of this node in the table */
    uint64_t write_failures;   /* connects/disconnects not queued or not answered */
    uint64_t refused;          /* connects refused: a newer entry of the device exists */
    uint64_t heartbeat_gone;   /* refreshes that found the entry expired or replaced */
    uint64_t heartbeats;       /* heartbeat rounds done */
    uint64_t rewritten;        /* open sessions connected again after a refresh found them gone */
} session_registry_stats;
session_registry_stats session_registry_get_stats(session_registry *s);

#endif
