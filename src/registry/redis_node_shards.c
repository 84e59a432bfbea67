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

/* FNV-1a, then MurmurHash3's 32-bit finalizer (fmix32), then its top bits.
 * FNV-1a alone mixes too little: the low three bits of a product depend
 * only on the low three bits of its factors, so FNV-1a mod 8 depended only
 * on the low three bits of each byte ("gw-1" and "gw-9" shared a shard,
 * and "chat-N" and "gw-N" one for every N), and its top bits barely move
 * with a last byte's bit 3 (gw-N1 and gw-N9 together for 77 N in 100).
 * After fmix32 every input bit reaches every output bit. */
unsigned rr_node_shard(const char *name) {
    uint32_t h = 2166136261u; /* FNV-1a, 32 bits: offset basis and prime */
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) {
        h ^= *p;
        h *= 16777619u;
    }
    h ^= h >> 16; /* fmix32 */
    h *= 0x85ebca6bu;
    h ^= h >> 13;
    h *= 0xc2b2ae35u;
    h ^= h >> 16;
    return (unsigned)(((uint64_t)h * RR_NODE_SHARDS) >> 32);
}

const char *rr_node_shard_key(unsigned i) { return i < RR_NODE_SHARDS ? shard_keys[i] : NULL; }
