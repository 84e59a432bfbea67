/* test_log_range_cassandra.c -- chat/log_range.c on a fenced Cassandra
 * store: two owners of one conversation partition (a new owner and a
 * stalled one that resumed, or two loading at once) on one keyspace.
 *
 *   two owners take distinct ranges  both load the partition from the
 *                                 same state (same log, checkpoints and
 *                                 range counter): the first claims the
 *                                 next range, the second loses that claim
 *                                 (parley_log_ranges_unclaimed_total) and
 *                                 takes the one after
 *   no (partition, offset) written twice  each writes log entries in its
 *                                 range: the log holds every one of them,
 *                                 the later owner's above the earlier's
 *   a reload after the other's entries  the first owner loads again: its
 *                                 new range is above both
 *
 * Cassandra: PARLEY_TEST_CASSANDRA when set, else a node of this program's
 * own (cassandra_node.h, stopped by PID on every exit path). Each case in a
 * fresh keyspace, dropped after it (fenced_store.h). */
#include "../check.h"
#include "cassandra_node.h"
#include "chat/log_range.h"
#include "core/metrics.h"
#include "fenced_store.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>

enum { U = 8, P = 5, PER_OWNER = 3 };

static store *A, *B;

/* what each owner reads at its load: the highest range used */
static uint32_t seen(store *s) {
    uint32_t r = 0;
    return log_range_seen(s, P, U, &r) == 0 ? r : UINT32_MAX;
}

static uint32_t take(store *s, uint32_t above) {
    store_batch *b = store_batch_new();
    uint32_t r = 0;
    int rc = log_range_take(s, b, P, above, &r);
    if (rc == 0 && store_commit(s, b, true) != 0) rc = -1;
    store_batch_free(b);
    return rc == 0 ? r : 0;
}

/* n log entries of s's range r, conv `conv`, seqs 1.. */
static int write_entries(store *s, uint32_t r, uint64_t conv) {
    store_batch *b = store_batch_new();
    for (uint64_t i = 1; i <= PER_OWNER; i++) store_put_log(b, P, log_range_base(r) + i, conv, i);
    int rc = store_commit(s, b, true);
    store_batch_free(b);
    return rc;
}

typedef struct log_seen {
    size_t n, of[2];
    uint64_t last;
    bool ordered;
} log_seen;

static int log_cb(void *ud, uint64_t offset, uint64_t conv, uint64_t seq) {
    (void)seq;
    log_seen *l = ud;
    if (offset <= l->last) l->ordered = false;
    l->last = offset;
    l->n++;
    if (conv == 1 || conv == 2) l->of[conv - 1]++;
    return 0;
}

static void two_owners(void) {
    CHECK(fenced_store_pair("lrange", &A, &B) == 0, "open two handles");
    /* the partition as the stalled owner left it: entries in range 4 */
    CHECK(write_entries(A, 4, 9) == 0, "the earlier entries");
    uint32_t seen_a = seen(A), seen_b = seen(B);
    CHECK(seen_a == 4 && seen_b == 4, "both read range %u and %u, want 4", seen_a, seen_b);
    unsigned long lost = atomic_load(&g_metrics.log_ranges_unclaimed_total);
    uint32_t ra = take(A, seen_a), rb = take(B, seen_b);
    CHECK(ra == 5 && rb == 6, "the owners took ranges %u and %u, want 5 and 6", ra, rb);
    CHECK(atomic_load(&g_metrics.log_ranges_unclaimed_total) == lost + 1, "one claim lost, counted");
    /* both write: nothing overwritten */
    CHECK(write_entries(A, ra, 1) == 0 && write_entries(B, rb, 2) == 0, "the owners' entries");
    log_seen l = {0, {0, 0}, 0, true};
    CHECK(store_scan_log(A, P, log_range_base(4) + PER_OWNER, log_cb, &l) == 0, "scan the log");
    CHECK(l.n == 2 * PER_OWNER && l.of[0] == PER_OWNER && l.of[1] == PER_OWNER && l.ordered,
          "the log past the earlier entries holds %zu (%zu of A, %zu of B), want %d of each, in order", l.n, l.of[0],
          l.of[1], PER_OWNER);
    /* A loads again: above B's range too */
    store_batch *b = store_batch_new();
    uint32_t r = 0;
    CHECK(log_range_load(A, b, P, U, ra, &r) == 0 && r == 7, "A's reload took %u, want 7", r);
    store_batch_free(b);
    fenced_store_pair_close(&A, &B);
}

/* the shared node (PARLEY_TEST_CASSANDRA), else one of this program's own */
static void start(void) {
    const char *shared = fenced_store_shared_hosts();
    CHECK(shared || cassandra_node_start("lrange") == 0, "no Cassandra");
    const char *hosts = shared ? shared : cassandra_node_hosts();
    CHECK(fenced_store_connect(hosts) == 0, "no CQL connection to %s", hosts);
}

int main(void) {
    RUN(start);
    if (check_failures_total == 0) RUN(two_owners);
    fenced_store_pair_close(&A, &B);
    fenced_store_disconnect();
    cassandra_node_stop();
    CHECK_EXIT();
}
