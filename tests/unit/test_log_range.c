/* test_log_range.c -- chat/log_range.c on a RocksDB store (one process:
 * every claim is won): each load of a partition takes a range above every
 * range used before, so the offsets of a reload, or of a restart, sort
 * above all earlier ones and none is given twice.
 *
 *   reloads give increasing ranges  loads with nothing written between
 *                                 them (the range counter) and with log
 *                                 entries and checkpoints written by hand
 *                                 in higher ranges
 *   a restart                     the store closed and opened again: the
 *                                 next range is above the last one taken
 *   order kept                    an offset of a later range is above
 *                                 every offset of an earlier one */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../check.h"
#include "chat/log_range.h"
#include "chat/partition.h"
#include "store/store.h"

enum { U = 8 };

static char dir[64];
static store *S;

static store *open_dir(void) {
    char *err = NULL;
    store *s = store_open(dir, 0, 0, &err);
    if (!s) fprintf(stderr, "  open %s: %s\n", dir, err ? err : "?");
    free(err);
    return s;
}

static void remove_dir(void) {
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", dir);
}

/* a load of partition p as the writer makes it: the range, its counter committed */
static uint32_t load(uint32_t p, uint32_t had) {
    store_batch *b = store_batch_new();
    uint32_t r = 0;
    int rc = log_range_load(S, b, p, U, had, &r);
    if (rc == 0 && store_commit(S, b, true) != 0) rc = -1;
    store_batch_free(b);
    return rc == 0 ? r : 0;
}

static void reloads_give_increasing_ranges(void) {
    snprintf(dir, sizeof dir, "/tmp/parley-log-range-XXXXXX");
    CHECK(mkdtemp(dir) && (S = open_dir()), "a fresh store");
    uint32_t r1 = load(3, 0), r2 = load(3, 0), r3 = load(3, r2);
    CHECK(r1 == 1 && r2 == 2 && r3 == 3, "idle reloads took %u, %u, %u; want 1, 2, 3", r1, r2, r3);
    CHECK(load(4, 0) == 1, "another partition's ranges are its own");
    /* entries and a checkpoint in ranges above the counter (another owner's) */
    store_batch *b = store_batch_new();
    store_put_log(b, 3, log_range_base(9) + 5, 100, 1);
    CHECK(store_commit(S, b, true) == 0, "log entry");
    uint32_t r = load(3, 0);
    CHECK(r == 10, "above the last log entry's range 9: took %u", r);
    store_put_checkpoint(b, checkpoint_id(3, U - 1, U), log_range_base(20) + 1);
    store_delete_log_through(b, 3, log_range_base(20));   /* fan-out trimmed what all have finished */
    CHECK(store_commit(S, b, true) == 0, "checkpoint");
    store_batch_free(b);
    r = load(3, 0);
    CHECK(r == 21, "above the checkpoint's range 20 (the log trimmed): took %u", r);
}

static void a_restart(void) {
    CHECK(S, "the store of the case before");
    store_close(S);
    S = open_dir();
    CHECK(S, "reopened");
    uint32_t r = load(3, 0);
    CHECK(r == 22, "after a restart: took %u, want 22", r);
    store_close(S);
    S = NULL;
    remove_dir();
}

static void order_kept(void) {
    uint64_t last_of_1 = log_range_base(1) + (UINT32_MAX - 1), first_of_2 = log_range_base(2) + 1;
    CHECK(first_of_2 > last_of_1 && log_range_of(first_of_2) == 2 && log_range_n(first_of_2) == 1,
          "range 2's first offset %llu, range 1's last %llu", (unsigned long long)first_of_2,
          (unsigned long long)last_of_1);
    CHECK(log_range_base(LOG_RANGE_MAX) + UINT32_MAX <= (uint64_t)INT64_MAX, "offsets stay below 2^63");
}

int main(void) {
    RUN(reloads_give_increasing_ranges);
    RUN(a_restart);
    RUN(order_kept);
    if (S) store_close(S);
    CHECK_EXIT();
}
