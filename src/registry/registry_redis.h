/* registry_redis.h -- the scale-out session registry (DESIGN.md §6) on a
 * Redis Cluster (redis_cluster.h): who is connected where, presence, and
 * the node directory. Not wired into the server yet.
 *
 * Layout: one hash per user, {u:ID} (the hash tag puts all of a user's
 * entries in one slot, so every call is one round trip):
 *   field DEVICE -> "SINCE EXPIRES CONN NODE" (decimal ms, the connection
 *                   id, the node name)
 *   field "l"    -> last seen (ms): written by a disconnect and when an
 *                   expired entry is dropped, not by a connect (a live
 *                   entry means online), so a user with one session has
 *                   a one-field hash
 * and the key's TTL is last_seen_ttl, pushed forward by every write.
 * Redis 7.0 has no per-field expiry (HPEXPIRE is 7.4), so an entry's expiry
 * is in its value: scripts compare it with the server's TIME and treat an
 * expired entry as absent; the scripts that meet one delete it and fold its
 * last refresh (EXPIRES - session_ttl) into "l". One clock decides expiry:
 * Redis's. SINCE is the gateway's connect time (wall clock, ms) and orders
 * two connects of the same device. Last seen shares the session key rather
 * than having its own: a second key per user cost ~130 bytes of Redis
 * memory per user (measured), and a heartbeat need not write it (a live
 * entry means online; an expired one says when it was last refreshed).
 * The node directory is RR_NODE_SHARDS hashes (redis_node_shards.h:
 * {nodes.I.K}, their slots spread over the masters): name -> "EXPIRES
 * ADDRESS", each name's entry in the shard of fmix32(FNV-1a(name))'s top bits, so
 * register, lookup and unregister are one command on one key; a listing
 * asks every shard and returns what the ones that answered hold. (It was
 * the one hash {nodes}, on one master: no deployed cluster has entries
 * there, so nothing reads or moves them.)
 *
 * Writes are Lua scripts (EVALSHA; EVAL when the node answers NOSCRIPT):
 *   connect     replaces the device's entry only when that entry is expired
 *               or older (SINCE, then node and connection id as tie-break):
 *               a reconnect racing the old gateway's cleanup wins;
 *   disconnect  deletes the entry only when it is still this connection's:
 *               the old gateway's disconnect of a newer entry is a no-op;
 *   refresh     (heartbeat) extends the entry only when it is this
 *               connection's and not expired; else reports it gone.
 *
 * Callbacks run on the Redis client's I/O thread (see redis_cluster.h) and
 * must hand results to their owner's queue. Every call returns 0, or -1
 * when the command could not be queued (callback not called). */
#ifndef PARLEY_REGISTRY_REDIS_H
#define PARLEY_REGISTRY_REDIS_H

#include "registry/redis_cluster.h"
#include "registry/redis_node_shards.h"

#include <stddef.h>
#include <stdint.h>

#define RR_NODE_MAX 64   /* node name, with its NUL */
#define RR_ADDR_MAX 128  /* internal address "HOST:PORT", with its NUL */
#define RR_MAX_DEVICES 64 /* devices returned by one lookup */

typedef struct registry_redis registry_redis;

typedef struct rr_options {
    uint32_t session_ttl_ms;   /* default 45000 */
    uint32_t last_seen_ttl_s;  /* default 30 days */
    uint32_t node_ttl_ms;      /* default 30000 */
} rr_options;

/* rc is not owned and must outlive the registry. NULL out of memory. */
registry_redis *registry_redis_new(rc_client *rc, const rr_options *o);
void registry_redis_free(registry_redis *r);

typedef struct rr_session {
    uint64_t user;
    uint32_t device;
    uint64_t conn_id;   /* unique within the node */
    uint64_t since_ms;  /* the gateway's connect time */
    const char *node;   /* this node's name, < RR_NODE_MAX, no spaces */
} rr_session;

/* applied: 1 done, 0 refused (an older connect, someone else's entry,
 * gone); error non-NULL when Redis could not be asked (then applied -1) */
typedef void (*rr_done_fn)(void *ud, int applied, const char *error);

int registry_redis_connect(registry_redis *r, const rr_session *s, rr_done_fn cb, void *ud);
int registry_redis_disconnect(registry_redis *r, const rr_session *s, rr_done_fn cb, void *ud);

/* Heartbeat: refreshes s[0..n) pipelined; cb once with how many were
 * refreshed, how many are gone (expired or replaced: the gateway should
 * register them again or close them) and how many failed (no answer). cb
 * runs on the I/O thread, or on the calling thread when the last answer
 * arrived before this returned. s is copied. 0, or -1 (n == 0 or no memory). */
typedef void (*rr_batch_fn)(void *ud, size_t refreshed, size_t gone, size_t failed);
int registry_redis_heartbeat(registry_redis *r, const rr_session *s, size_t n, rr_batch_fn cb, void *ud);
/* The same, with each(ud, i, result) for s[i] as its answer comes (1
 * refreshed, 0 gone, -1 failed; on the I/O thread), before cb. */
typedef void (*rr_each_fn)(void *ud, size_t i, int result);
int registry_redis_heartbeat_each(registry_redis *r, const rr_session *s, size_t n, rr_each_fn each, rr_batch_fn cb,
                                  void *ud);

typedef struct rr_device {
    uint32_t device;
    uint64_t conn_id;
    uint64_t since_ms;
    uint64_t expires_ms; /* Redis clock */
    char node[RR_NODE_MAX];
} rr_device;

/* The user's live devices, one round trip; n may exceed RR_MAX_DEVICES
 * (only that many are in devs). error non-NULL: the lookup failed. */
typedef void (*rr_lookup_fn)(void *ud, const rr_device *devs, size_t n, const char *error);
int registry_redis_lookup(registry_redis *r, uint64_t user, rr_lookup_fn cb, void *ud);

/* online while a live entry exists (last_seen then is Redis's now); else
 * the latest disconnect or last refresh of an expired entry (0:
 * never, or longer ago than last_seen_ttl) */
typedef void (*rr_presence_fn)(void *ud, int online, uint64_t last_seen_ms, const char *error);
int registry_redis_presence(registry_redis *r, uint64_t user, rr_presence_fn cb, void *ud);

/* The node directory: register (and refresh: call it every node_ttl / 3)
 * name -> internal address; look one up; list the live ones. Register,
 * unregister and lookup go to the name's shard only. */
int registry_redis_node_register(registry_redis *r, const char *name, const char *addr, rr_done_fn cb, void *ud);
int registry_redis_node_unregister(registry_redis *r, const char *name, rr_done_fn cb, void *ud);
/* addr NULL: not registered or expired */
typedef void (*rr_node_fn)(void *ud, const char *addr, const char *error);
int registry_redis_node_lookup(registry_redis *r, const char *name, rr_node_fn cb, void *ud);
typedef struct rr_node {
    char name[RR_NODE_MAX];
    char addr[RR_ADDR_MAX];
} rr_node;
#define RR_MAX_NODES 1024 /* nodes returned by one listing */
/* A listing: the live nodes of every shard that answered, gathered into
 * one call of cb (once every shard answered or failed: each within the
 * client's timeout). missing has bit i set for each shard i that did not
 * answer (timeout or lost connection to a silent master, an error reply):
 * its nodes are not in nodes, whether they live or not, so a caller keeps
 * what it knew of the nodes whose rr_node_shard is missing; how many
 * shards were missing is missing's popcount. error is non-NULL only when
 * no shard answered (then n 0, every bit of missing set); nodes may be
 * NULL whenever n is 0. n may exceed RR_MAX_NODES (only that many are in
 * nodes). cb runs on the I/O thread, or on the calling thread when the
 * last answer came before registry_redis_nodes returned. -1 (cb not
 * called) only when no shard's command could be queued. */
typedef void (*rr_nodes_fn)(void *ud, const rr_node *nodes, size_t n, unsigned missing, const char *error);
#define RR_ALL_SHARDS ((1u << RR_NODE_SHARDS) - 1)
int registry_redis_nodes(registry_redis *r, rr_nodes_fn cb, void *ud);

/* How many EVALSHA were answered NOSCRIPT and resent as EVAL (tests). */
uint64_t registry_redis_script_loads(registry_redis *r);

#endif
