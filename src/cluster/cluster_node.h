/* cluster_node.h -- what makes this process a node among others
 * (DESIGN.md §6), started by `parley serve` when --internal-listen or
 * --redis is given:
 *   - the node link's listener on --internal-listen (link.h), so peers
 *     can reach this node;
 *   - with --redis, the session registry (session_registry.h) and the
 *     node directory entry in the Redis Cluster
 *     (registry_redis.h, the name's shard): NAME -> "HOST:PORT/ROLES" ("-" for the
 *     address when there is no --internal-listen), written at start,
 *     refreshed every third of --node-ttl-ms by a heartbeat so a node that
 *     dies leaves the directory by expiry, and removed on a clean stop.
 * The start waits (bounded) for the cluster's slot map and the first
 * registration, so a node that says it is up is in the directory. */
#ifndef PARLEY_CLUSTER_NODE_H
#define PARLEY_CLUSTER_NODE_H

#include <stddef.h>

#include "cluster/cluster_config.h"
#include "cluster/link.h"
#include "cluster/session_registry.h"

typedef struct cluster_node cluster_node;

/* NULL with the reason in err: the listener could not be opened, Redis
 * did not answer within its timeout, or the registration failed. */
cluster_node *cluster_node_start(const cluster_config *c, char *err, size_t errlen);
/* The same, with the link's frames handed to on_frame(ud, ...) on the
 * link thread (node_forward.h). */
cluster_node *cluster_node_start_receiving(const cluster_config *c, link_receive_fn on_frame, void *ud, char *err,
                                           size_t errlen);
/* Unregisters (bounded wait), stops the heartbeat, the link and Redis. */
void cluster_node_stop(cluster_node *n);
/* The link, NULL without --internal-listen. */
node_link *cluster_node_link(cluster_node *n);
/* The sessions written to Redis, NULL without --redis (server.c makes it
 * follow the local registry). */
session_registry *cluster_node_sessions(cluster_node *n);
/* The Redis registry (sessions, node directory), NULL without --redis. */
registry_redis *cluster_node_redis(cluster_node *n);
/* The Redis Cluster client, NULL without --redis. */
rc_client *cluster_node_rc(cluster_node *n);
/* The directory entry's value: "HOST:PORT/ROLES". */
const char *cluster_node_entry(const cluster_node *n);

/* Heartbeats that failed (no answer from Redis) since start; /metrics. */
unsigned long cluster_node_heartbeat_failures(const cluster_node *n);

#endif
