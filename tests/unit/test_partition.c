/* test_partition.c -- chat/partition.c: conversation ids allocated per
 * partition, the pair and hash maps, and P and U recorded in a store (a
 * store from before partitions keeps its fan-out progress). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"
#include "chat/partition.h"
#include "store/store.h"

static char dir[64];

static store *open_fresh(void) {
    snprintf(dir, sizeof dir, "/tmp/parley-partition-XXXXXX");
    if (!mkdtemp(dir)) return NULL;
    char *err = NULL;
    store *s = store_open(dir, 0, 0, &err);
    free(err);
    return s;
}

static void remove_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", dir);
}

/* the next id of partition p after floor: in p, above floor, the least such */
static void next_conv_id_is_the_least_above_floor(void) {
    const uint32_t sizes[] = {1, 7, 64, 256};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        uint32_t P = sizes[k];
        for (uint64_t floor = 0; floor < 3 * P + 5; floor++)
            for (uint32_t p = 0; p < P; p++) {
                uint64_t id = partition_next_conv_id(floor, p, P);
                uint64_t want = floor + 1;
                while (want % P != p || want == 0) want++;
                CHECK(id == want, "P %u floor %llu partition %u: %llu, want %llu", P, (unsigned long long)floor, p,
                      (unsigned long long)id, (unsigned long long)want);
            }
    }
}

static void pair_partition_is_symmetric_and_spread(void) {
    enum { P = 64 };
    int seen[P] = {0};
    for (uint64_t a = 1; a < 200; a++)
        for (uint64_t b = a + 1; b < a + 20; b++) {
            uint32_t p = pair_partition(a, b, P);
            CHECK(p < P && p == pair_partition(b, a, P), "pair %llu,%llu", (unsigned long long)a,
                  (unsigned long long)b);
            seen[p]++;
        }
    for (int p = 0; p < P; p++) CHECK(seen[p] > 0, "no pair in partition %d", p);
    int users[8] = {0};
    for (uint64_t u = 1; u < 1000; u++) users[user_partition(u, 8)]++;
    for (int u = 0; u < 8; u++) CHECK(users[u] > 0, "no user in user partition %d", u);
}

/* A store written before partitions: one checkpoint (log 0, every user).
 * Recording P and U gives every user partition that checkpoint for log 0,
 * once; later loads change nothing. */
static void old_store_keeps_its_fanout_progress(void) {
    store *s = open_fresh();
    CHECK(s, "store");
    store_batch *b = store_batch_new();
    store_put_counter(b, "conversation", 41);
    store_put_checkpoint(b, 0, 100);
    CHECK(store_commit(s, b, true) == 0, "commit");
    store_batch_free(b);

    uint32_t p = 0, u = 0;
    CHECK(partitions_load(s, &p, &u) == 0, "load");
    CHECK(p == PARTITIONS_NEW_STORE && u == USER_PARTITIONS_NEW_STORE, "P %u U %u", p, u);
    for (uint32_t i = 0; i < u; i++) {
        uint64_t c = 0;
        CHECK(store_get_checkpoint(s, checkpoint_id(0, i, u), &c) >= 0 && c == 100,
              "user partition %u of log 0: checkpoint %llu, want 100", i, (unsigned long long)c);
    }
    for (uint32_t q = 1; q < p; q++) {
        uint64_t c = 1;
        CHECK(store_get_checkpoint(s, checkpoint_id(q, 0, u), &c) >= 0 && c == 0, "log %u: checkpoint %llu", q,
              (unsigned long long)c);
    }
    /* progress made after that is kept by the next load */
    b = store_batch_new();
    store_put_checkpoint(b, checkpoint_id(0, 3, u), 150);
    CHECK(store_commit(s, b, true) == 0, "commit");
    store_batch_free(b);
    uint32_t p2 = 0, u2 = 0;
    CHECK(partitions_load(s, &p2, &u2) == 0 && p2 == p && u2 == u, "second load");
    uint64_t c = 0;
    CHECK(store_get_checkpoint(s, checkpoint_id(0, 3, u), &c) >= 0 && c == 150, "checkpoint %llu after a reload",
          (unsigned long long)c);
    store_close(s);
    remove_dir();
}

int main(void) {
    RUN(next_conv_id_is_the_least_above_floor);
    RUN(pair_partition_is_symmetric_and_spread);
    RUN(old_store_keeps_its_fanout_progress);
    CHECK_EXIT();
}
