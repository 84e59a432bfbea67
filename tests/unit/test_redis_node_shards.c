/* test_redis_node_shards.c -- the node directory's shards
 * (src/registry/redis_node_shards.c): each shard key's slot is where its
 * comment says, within 32 of 1024 + 2048 * i (spread over the slot space,
 * so three masters splitting it evenly hold 3, 2 and 3 shards); a name's
 * shard is the top three bits of fmix32 of 32-bit FNV-1a (published FNV
 * test vectors through MurmurHash3's finalizer);
 * names spread over every shard, and names that differ in a byte's high
 * bits or in their prefix alone do not keep to one shard (FNV-1a mod 8, the
 * rule before, put "gw-1" and "gw-9" together, and "chat-N" with "gw-N" for
 * every N: both checks below fail with it, 100 of 100). */
#include "../check.h"
#include "registry/redis_cluster_parse.h"
#include "registry/redis_node_shards.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void shard_keys_sit_in_spread_slots(void) {
    int per_third[3] = {0}; /* redis-cli --cluster create's split for 3 masters */
    for (unsigned i = 0; i < RR_NODE_SHARDS; i++) {
        const char *k = rr_node_shard_key(i);
        CHECK(k && strlen(k) <= RR_NODE_SHARD_KEY_MAX, "shard %u key", i);
        int slot = rc_key_slot(k, strlen(k)), want = 1024 + 2048 * (int)i;
        CHECK(abs(slot - want) <= 32, "%s: slot %d, not within 32 of %d", k, slot, want);
        per_third[slot <= 5460 ? 0 : slot <= 10922 ? 1 : 2]++;
    }
    CHECK(rr_node_shard_key(RR_NODE_SHARDS) == NULL, "a key past the last shard");
    CHECK(per_third[0] == 3 && per_third[1] == 2 && per_third[2] == 3, "masters hold %d/%d/%d shards", per_third[0],
          per_third[1], per_third[2]);
}

/* FNV-1a 32: "" 0x811c9dc5, "a" 0xe40c292c, "foobar" 0xbf9cf968 (the
 * reference's test vectors) */
/* FNV-1a "" 0x811c9dc5, "a" 0xe40c292c, "foobar" 0xbf9cf968 (the
 * reference's vectors); fmix32 of those: 0xab3e7c0b, 0x1a80b1b3, 0x0c0da6dc */
static void a_names_shard_is_fnv1a_mixed(void) {
    CHECK(rr_node_shard("") == 0xab3e7c0bu >> 29, "'' -> %u", rr_node_shard(""));
    CHECK(rr_node_shard("a") == 0x1a80b1b3u >> 29, "'a' -> %u", rr_node_shard("a"));
    CHECK(rr_node_shard("foobar") == 0x0c0da6dcu >> 29, "'foobar' -> %u", rr_node_shard("foobar"));
}

/* two name families side by side share a shard about one time in 8 */
static void prefixes_and_high_bits_do_not_decide(void) {
    int same_prefix = 0, same_digit = 0;
    for (int i = 0; i < 100; i++) {
        char chat[32], gw[32], low[32], high[32];
        snprintf(chat, sizeof chat, "chat-%d", i);
        snprintf(gw, sizeof gw, "gw-%d", i);
        same_prefix += rr_node_shard(chat) == rr_node_shard(gw);
        snprintf(low, sizeof low, "gw-%d1", i);    /* '1' and '9' differ in bit 3 alone */
        snprintf(high, sizeof high, "gw-%d9", i);
        same_digit += rr_node_shard(low) == rr_node_shard(high);
    }
    CHECK(same_prefix < 40, "chat-N and gw-N share a shard for %d of 100 N", same_prefix);
    CHECK(same_digit < 40, "gw-N1 and gw-N9 share a shard for %d of 100 N", same_digit);
}

static void names_spread_over_every_shard(void) {
    int count[RR_NODE_SHARDS] = {0};
    for (int i = 0; i < 800; i++) {
        char name[32];
        snprintf(name, sizeof name, "gw-%d", i);
        unsigned s = rr_node_shard(name);
        CHECK(s < RR_NODE_SHARDS, "%s -> %u", name, s);
        count[s]++;
    }
    for (int s = 0; s < RR_NODE_SHARDS; s++)
        CHECK(count[s] >= 50 && count[s] <= 150, "shard %d holds %d of 800 names", s, count[s]);
}

int main(void) {
    RUN(shard_keys_sit_in_spread_slots);
    RUN(a_names_shard_is_fnv1a_mixed);
    RUN(prefixes_and_high_bits_do_not_decide);
    RUN(names_spread_over_every_shard);
    CHECK_EXIT();
}
