/* partition.c -- see partition.h. */
#include "chat/partition.h"

#include "core/log.h"

static int load_one(store *s, const char *name, uint64_t max, uint64_t *value) {
    if (store_get_counter(s, name, value) < 0) return -1;
    if (*value > max) {
        log_error("store records %llu %s (at most %llu): refusing to guess", (unsigned long long)*value, name,
                  (unsigned long long)max);
        return -1;
    }
    return 0;
}

int partitions_load(store *s, uint32_t *p, uint32_t *u) {
    uint64_t convs = 0, users = 0;
    if (load_one(s, "partitions", PARTITIONS_MAX, &convs) || load_one(s, "user_partitions", USER_PARTITIONS_MAX, &users))
        return -1;
    if (convs == 0 || users == 0) {
        /* a new store, or one from before partitions: record P and U once,
         * synced, before anything is written that depends on them. The old
         * single checkpoint (log 0, every user) is checkpoint_id(0, 0); it
         * becomes every user partition's for log 0. */
        uint64_t old = 0;
        if (store_get_checkpoint(s, 0, &old) < 0) return -1;
        if (!convs) convs = PARTITIONS_NEW_STORE;
        if (!users) users = USER_PARTITIONS_NEW_STORE;
        store_batch *b = store_batch_new();
        if (!b) return -1;
        for (uint32_t i = 1; old && i < users; i++) store_put_checkpoint(b, checkpoint_id(0, i, (uint32_t)users), old);
        store_put_counter(b, "partitions", convs);
        store_put_counter(b, "user_partitions", users);
        int rc = store_commit(s, b, true);
        store_batch_free(b);
        if (rc) return -1;
    }
    *p = (uint32_t)convs;
    *u = (uint32_t)users;
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

uint32_t user_partition(uint64_t user, uint32_t user_partitions) {
    return (uint32_t)(mix64(user ^ 0x5bd1e9955bd1e995ull) % user_partitions);
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
