/* presence_bus.h -- presence and typing across nodes (DESIGN.md §6) over
 * Redis Cluster sharded pub/sub (SPUBLISH / SSUBSCRIBE, Redis 7).
 *
 * One channel per user, "{u:ID}e": its hash tag is the session hash's, so
 * the channel lives in the user's slot, on the master that holds the
 * user's sessions. Two kinds of message go on it:
 *   'P'            the user's presence may have changed (a device's session
 *                  was written or deleted on some node);
 *   'T' NODE TI    a typing indicator (parley.v1.TypingIndicator, packed)
 *                  for the user's devices, from node NODE.
 * A node subscribes to the channel of every user it has a reason to hear:
 * a local presence subscription watches the user (registry.h
 * presence_watch), or a device of the user has a session here (typing for
 * it). Per user, not per conversation: a node knows its users without a
 * store read, while the conversations of every connected device would
 * have to be read at connect; the price is one SPUBLISH per member of the
 * conversation for a typing indicator (rate-limited per device).
 *
 * Presence itself is not in the message: the state is the session hash
 * (registry_redis.h: online while a live entry exists, else last seen),
 * which the gateways' heartbeat keeps alive. A node that hears 'P' (or
 * whose subscription is confirmed, or every PRESENCE_SWEEP_MS for users
 * last told online, which catches a node that died without a word) reads
 * it with registry_redis_presence and tells its local subscribers when it
 * differs from what they were last told. The publish goes out right after
 * the session write, on the same pipelined connection to the same master,
 * so the read that follows the message sees the write.
 *
 * Bounds: at most max_channels users subscribed per node (a user beyond
 * it does not cross nodes: parley_cluster_bus_refused_total); a message of
 * at most BUS_MAX_PAYLOAD bytes is taken (longer ones are dropped); one
 * presence read in flight per user (a change meanwhile reads once more).
 *
 * Threads: the subscriber connections (one per master with channels) are
 * run by the bus's own thread; publishes and reads go through the node's
 * Redis client (redis_cluster.h); frames reach local connections with a
 * non-blocking post to their worker (dropped when its queue is full: it
 * is ephemeral). */
#ifndef PARLEY_CLUSTER_PRESENCE_BUS_H
#define PARLEY_CLUSTER_PRESENCE_BUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/parley.pb-c.h"
#include "registry/registry_redis.h"

struct server;
typedef struct presence_bus presence_bus;

enum { BUS_MAX_PAYLOAD = 512, BUS_DEFAULT_MAX_CHANNELS = 65536 };

typedef struct presence_bus_options {
    struct server *srv;     /* its registry and workers (posted to once they run) */
    rc_client *rc;          /* not owned; outlives the bus's use of it */
    registry_redis *rr;
    const char *node;       /* this node's name (copied) */
    size_t max_channels;    /* 0: BUS_DEFAULT_MAX_CHANNELS */
} presence_bus_options;

/* Starts the subscriber thread and sets itself as the registry's presence
 * watch. NULL out of memory. */
presence_bus *presence_bus_start(const presence_bus_options *o);
/* Clears the watch, stops the thread and closes its connections; callbacks
 * of the Redis client may still come (they do nothing after this). */
void presence_bus_stop(presence_bus *b);
/* After the Redis client completed every command (rc_free). */
void presence_bus_free(presence_bus *b);

/* A session of a device of user was written (up) or deleted (down) on
 * this node (session_registry.c, right after the write is queued): tells
 * the user's watchers on every node, and keeps the user's channel while a
 * device of theirs is here. Never blocks. */
void presence_bus_device_up(presence_bus *b, uint64_t user);
void presence_bus_device_down(presence_bus *b, uint64_t user);

/* What this node's subscribers of user were last told: false when it is
 * not known yet (they are told once the read is answered). */
bool presence_bus_state(presence_bus *b, uint64_t user, int *online, uint64_t *last_seen_ms);

/* Sends ti to member's devices on other nodes (this node's own were
 * reached by the caller). Never blocks. */
void presence_bus_typing(presence_bus *b, uint64_t member, const Parley__V1__TypingIndicator *ti);

#endif
