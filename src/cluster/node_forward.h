/* node_forward.h -- requests and deliveries across nodes (DESIGN.md §6):
 * gateway nodes (--roles gateway) in front of one chat node (all roles),
 * on a shared Cassandra store that gateway nodes read directly. Only what
 * goes to the write path, and what comes out of it, crosses the link:
 *
 *   gateway node: every chat_request its sessions would hand to the writer
 *     goes to a chat node as a REQUEST (or ACK) frame (node_forward_submit);
 *     with no link to a chat node it is refused, and the device is answered
 *     UNAVAILABLE "retry" (it retries with the same client_msg_id; dedupe
 *     makes it once). ANSWER, PUSH, DELIVER, CLOSE_DEVICE and DROP_PRESENCE
 *     frames from the chat node go to this node's workers (outbox_local).
 *   chat node: REQUEST/ACK frames become chat_requests whose conn_id is a
 *     remote id (top bit set) remembered with its origin node; the write
 *     path's outbox (chat/outbox.h) is wrapped so a remote id goes back over
 *     the link and a local one to the workers. Lookups of a user's sessions
 *     (node_sessions_lookup: fan-out, receipts, pushes) add the devices the
 *     Redis session registry holds on other nodes, also as remote ids.
 *
 * Remote ids live in two rings of REMOTE_IDS each (requests; session
 * lookups): an id is good until that many newer ones were taken, far past
 * any request in flight or lookup being delivered; an older one is dropped
 * like any frame to a node that is gone. The link is lossy by design: a
 * lost request is retried by the device, a lost delivery is caught up by
 * sync (the device's inbox and cursor in the store are the truth).
 *
 * Peers are found in the node directory (eight shard hashes in Redis,
 * registry_redis.h), listed every second (and at once when an unknown node
 * says HELLO). A listing that misses shards (a silent master) adds the
 * peers the other shards hold and keeps the peers of the missing ones as
 * they were; /metrics parley_cluster_directory_shards_missing. */
#ifndef PARLEY_CLUSTER_NODE_FORWARD_H
#define PARLEY_CLUSTER_NODE_FORWARD_H

#include <stddef.h>
#include <stdint.h>

#include "chat/writer.h"
#include "cluster/cluster_node.h"
#include "server.h"

typedef struct node_forward node_forward;

/* Before the writer starts: on a node with the chat role srv->outbox is
 * wrapped (the previous one takes the local connections). NULL out of
 * memory. */
node_forward *node_forward_new(server *srv);
/* The link's frame handler (cluster_node_start_receiving, ud = the
 * node_forward). */
void node_forward_receive(void *ud, const char *peer, const link_frame *f);
/* After the cluster node started: starts finding peers. 0, or -1. */
int node_forward_start(node_forward *nf, cluster_node *cn);
/* Stops finding peers and lets go of the link and Redis (before
 * cluster_node_stop); frames for other nodes are dropped from now on. */
void node_forward_stop(node_forward *nf);
/* After the writer and fan-out stopped: puts srv->outbox back, frees. */
void node_forward_free(node_forward *nf);

/* Gateway node: sends r (CHAT_FRAME or CHAT_ACK) to a chat node and frees
 * it: 0. -1 when there is no link to a chat node now (r is still the
 * caller's). */
int node_forward_submit(node_forward *nf, chat_request *r);

/* --kafka chat node (cluster/chat_owner.c): feeds one 'sends' record's
 * request (an encoded Frame) into the writers as a REQUEST frame from
 * another node is fed, under id (CHAT_OWNER_ID_BITS set: its answer goes to
 * chat_owner_answered), with the record's partition and offset
 * (chat_request.from_log). 0 when the writer took it; -1 when it did not
 * (malformed, over the queued-bytes bound, queue full). */
int node_forward_submit_owned(node_forward *nf, uint64_t id, uint64_t request_id, uint64_t user, uint32_t device,
                              const uint8_t *body, size_t len, uint32_t log_partition, uint64_t log_offset);
/* Hands an answer to connection conn_id of node origin: a local worker
 * when origin is this node, else an ANSWER frame over the link (dropped
 * and counted when that node is unknown or unreachable: the device retries). */
void node_forward_answer_origin(node_forward *nf, const char *origin, uint64_t conn_id, const uint8_t *frame,
                                size_t len, uint64_t user, uint32_t device);

/* The user's sessions: this node's (registry_lookup) and, on a chat node
 * with --redis, the ones on other nodes (remote ids). Copies up to max into
 * out; returns how many there are. Waits for Redis (its client's timeout
 * bounds it). */
size_t node_sessions_lookup(server *srv, uint64_t user, registry_entry *out, size_t max);

/* Fan-out, push, the writer's receipts (chat/push_batch.h): looks the
 * users first_user[0], first_user[stride bytes on],
 * ... (n of them, in any order, each once) up in Redis at once, pipelined
 * (one wait for all rather than one round trip each); node_sessions_lookup
 * on this thread answers from that until node_sessions_prefetch_end. Only
 * the first PREFETCH_MAX users (4096) are taken; the rest are looked up one
 * by one. /metrics: parley_cluster_session_prefetches_total (rounds),
 * parley_cluster_session_lookups_prefetched_total (users in them),
 * parley_cluster_session_lookups_single_total (round trips of one user). */
void node_sessions_prefetch(server *srv, const uint64_t *first_user, size_t n, size_t stride);
void node_sessions_prefetch_end(void);

#endif
