/* partition.c -- see partition.h. */
#include "chat/partition.h"

#include "core/log.h"

int partitions_load(store *s, uint32_t *p) {
    uint64_t recorded = 0;
    if (store_get_counter(s, "partitions", &recorded) < 0) return -1;
    if (recorded > PARTITIONS_MAX) {
        log_error("store records %llu partitions (at most %d): refusing to guess",
                  (unsigned long long)recorded, PARTITIONS_MAX);
        return -1;
    }
    if (recorded == 0) {
        /* a new store, or one from before partitions: record P once, synced,
         * before anything is written that depends on it */
        store_batch *b = store_batch_new();
        if (!b) return -1;
        store_put_counter(b, "partitions", PARTITIONS_NEW_STORE);
        int rc = store_commit(s, b, true);
        store_batch_free(b);
        if (rc) return -1;
        recorded = PARTITIONS_NEW_STORE;
    }
    *p = (uint32_t)recorded;
    return 0;
}

/* splitmix64's finaliser: every input bit moves every output bit */
static uint64_t mix64(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    x ^= x >> 31;
    return x;
}

uint32_t hash_partition(uint64_t key, uint32_t partitions) {
    return (uint32_t)(mix64(key) % partitions);
}

uint32_t pair_partition(uint64_t a, uint64_t b, uint32_t partitions) {
    uint64_t lo = a < b ? a : b, hi = a < b ? b : a;
    return (uint32_t)(mix64(mix64(lo) ^ hi) % partitions);
}

uint64_t partition_next_conv_id(uint64_t floor, uint32_t p, uint32_t partitions) {
    uint64_t base = floor - floor % partitions;   /* the first id of floor's round */
    uint64_t id = base + p;
    if (id <= floor) id += partitions;
    if (id == 0) id = partitions;                 /* partition 0's first id */
    return id;
}
