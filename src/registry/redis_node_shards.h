/* redis_node_shards.h -- where the node directory (registry_redis.h) keeps
 * a node's entry: one of RR_NODE_SHARDS hashes whose hash tags put them in
 * slots spread over the 16384-slot space, so the directory's refreshes and
 * listings are spread over the cluster's masters and one silent master
 * hides only the nodes of its shards. A node's shard is the top bits of
 * fmix32(FNV-1a(name)): every process finds the same key for a name without
 * asking anyone. Pure (no I/O), so unit tests reach it. */
#ifndef PARLEY_REGISTRY_REDIS_NODE_SHARDS_H
#define PARLEY_REGISTRY_REDIS_NODE_SHARDS_H

#define RR_NODE_SHARDS 8
/* the longest shard key's length, without its NUL */
#define RR_NODE_SHARD_KEY_MAX 16

/* The shard of a node's entry: h = MurmurHash3's fmix32 of the 32-bit
 * FNV-1a of name's bytes, then h * RR_NODE_SHARDS >> 32 (its top bits). */
unsigned rr_node_shard(const char *name);
/* The key of shard i (< RR_NODE_SHARDS): a static string. */
const char *rr_node_shard_key(unsigned i);

#endif
