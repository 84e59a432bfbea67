/* redis_node_shards.c -- see redis_node_shards.h. */
#include "registry/redis_node_shards.h"

#include <stddef.h>
#include <stdint.h>

/* Shard i's key is "{nodes.I.K}" with K the smallest non-negative integer
 * whose tag's slot (CRC16 XMODEM of "nodes.I.K" mod 16384) lies within 32
 * of 1024 + 2048 * I: the eight slots sit near the middles of eight equal
 * eighths of the slot space (slots in the comments), so masters that split
 * the space evenly each hold some (three masters: 3, 2 and 3 shards).
 * Found by a search over K; tests/unit/test_redis_node_shards.c recomputes
 * the slots. Changing a key moves that shard's nodes (their next refresh
 * writes the new key; the old one's entries expire unread), so keep them.
 * The directory used to be the one hash "{nodes}"; no cluster with entries
 * there is deployed, so nothing reads or moves them. */
static const char *const shard_keys[RR_NODE_SHARDS] = {
    "{nodes.0.114}", /* slot 1003 */
    "{nodes.1.59}",  /* slot 3098 */
    "{nodes.2.106}", /* slot 5147 */
    "{nodes.3.38}",  /* slot 7157 */
    "{nodes.4.61}",  /* slot 9220 */
    "{nodes.5.17}",  /* slot 11233 */
    "{nodes.6.302}", /* slot 13305 */
    "{nodes.7.76}",  /* slot 15374 */
};

/* FNV-1a mod 8 is the low three bits of the hash, and those depend only on
 * the low three bits of each byte: names that differ only in a byte's
 * higher bits ('1' and '9') share a shard, and two prefixes that leave the
 * same state put "chat-N" and "gw-N" in one shard for every N. Numbered
 * names still spread evenly (10,000 of "gw-%d", "node-%04d", "10.0.%d.%d":
 * 1248 to 1252 a shard, measured); the rule stays the plain one so anyone
 * can compute a name's key. */
unsigned rr_node_shard(const char *name) {
    uint32_t h = 2166136261u; /* FNV-1a, 32 bits: offset basis and prime */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    return h % RR_NODE_SHARDS;
}

const char *rr_node_shard_key(unsigned i) { return i < RR_NODE_SHARDS ? shard_keys[i] : NULL; }
