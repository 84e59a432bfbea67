/* test_zombie_inbox_fence.c -- drill 4's inbox double, narrowed to the
 * store: the fan-out of a chat node that stalled past the consumer group's
 * session timeout and resumed (the zombie) commits inbox entries the new
 * owner's hand-over replay appended already. Two fenced store handles on
 * one keyspace of a real Cassandra node stand for the two nodes; the
 * zombie's commit is made the way fanout.c makes it (commit_open: stale
 * entries marked deep, inbox_fence_renumber, the entries not present and
 * the head in one batch, STORE_CONFLICT renumbered and tried again).
 *
 *   a stale entry the new owner appended  the new owner appended (c, 2)
 *                                 and three more entries; the zombie,
 *                                 whose head of that inbox is read cold
 *                                 after all that (so its condition
 *                                 holds), commits (c, 2) numbered 6 s
 *                                 ago: it is found at user_seq 2, not
 *                                 written, and the inbox holds it once
 *   a young entry appended after the belief  the zombie read the head
 *                                 (5), then the new owner appended
 *                                 (c, 3) at 6; the zombie's (c, 3),
 *                                 numbered now, is not stale: its commit
 *                                 at 6 is refused (STORE_CONFLICT), the
 *                                 renumbering finds it at 6, and the
 *                                 inbox holds it once
 *
 * Cassandra: PARLEY_TEST_CASSANDRA when set, else a node of this program's
 * own (cassandra_node.h, stopped by PID on every exit path). Each case in a
 * fresh keyspace, dropped after it. */
#include "../check.h"
#include "cassandra_node.h"
#include "core/clock.h"
#include "core/u64map.h"
#include "fanout/inbox_fence.h"
#include "fenced_store.h"
#include "store/cql/cql.h"
#include "store/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { CONFLICT_ROUNDS = 5 };

static store *owner, *zombie;   /* the new owner, the resumed stalled node */

static void close_pair(void) { fenced_store_pair_close(&owner, &zombie); }

static int open_pair(void) { return fenced_store_pair("zfence", &owner, &zombie); }

/* one user's entries appended as fan-out appends them: (conv, seq[i]) at
 * user_seq first + i, the head with them */
static int append(store *s, uint64_t user, uint64_t first, uint64_t conv, const uint64_t *seqs, size_t n) {
    store_batch *b = store_batch_new();
    for (size_t i = 0; i < n; i++) store_put_inbox(b, user, first + i, conv, seqs[i], 100, 1);
    store_put_inbox_head(b, user, first + n - 1);
    int rc = store_commit(s, b, true);
    store_batch_free(b);
    return rc;
}

/* The zombie's commit of one entry (conv, seq) of user, numbered on its
 * belief of the head, the way fanout.c commits: deep when stale at the
 * commit (mark_stale), checked first then (inbox_fence_renumber), the entry
 * written unless present, a conflict renumbered and tried again. *c is
 * the claim as it ended. */
static int zombie_commit(uint64_t user, uint64_t belief, uint64_t conv, uint64_t seq, uint64_t numbered_ms,
                         inbox_claim *c) {
    *c = (inbox_claim){user, belief + 1, conv, seq, false, false};
    c->deep = inbox_fence_stale(numbered_ms, clock_wall_ms());
    u64map heads;
    memset(&heads, 0, sizeof heads);
    int rc = c->deep && inbox_fence_renumber(zombie, c, 1, &heads) != 0 ? -1 : STORE_CONFLICT;
    for (int round = 0; rc == STORE_CONFLICT && round < CONFLICT_ROUNDS; round++) {
        if (round > 0 && inbox_fence_renumber(zombie, c, 1, &heads) != 0) {
            rc = -1;
            break;
        }
        store_batch *b = store_batch_new();
        if (!c->present) store_put_inbox(b, user, c->user_seq, conv, seq, 100, numbered_ms);
        store_put_inbox_head(b, user, c->user_seq);
        rc = store_commit(zombie, b, true);
        store_batch_free(b);
    }
    u64map_free(&heads);
    return rc;
}

typedef struct tally {
    uint64_t conv, seq;
    size_t entries, copies;
} tally;

static int count_entry(void *ud, uint64_t user_seq, uint64_t conv, uint64_t seq, uint64_t sender) {
    (void)user_seq;
    (void)sender;
    tally *t = ud;
    t->entries++;
    if (conv == t->conv && seq == t->seq) t->copies++;
    return 0;
}

static void a_stale_entry_the_new_owner_appended(void) {
    CHECK(open_pair() == 0, "open two handles");
    const uint64_t user = 77, conv = 5, other = 6;
    const uint64_t mine[] = {1, 2}, since[] = {1, 2, 3};
    /* the new owner's hand-over replay: (conv, 1..2); then its own traffic */
    CHECK(append(owner, user, 1, conv, mine, 2) == 0, "the new owner's replay was not stored");
    CHECK(append(owner, user, 3, other, since, 3) == 0, "the new owner's traffic was not stored");
    /* the zombie resumes and reads the head cold: it is right about it */
    uint64_t hint = 0, head = 0;
    CHECK(store_inbox_heads(zombie, user, &hint, &head) == 0 && head == 5, "the zombie reads head %llu, want 5",
          (unsigned long long)head);
    inbox_claim c;
    uint64_t numbered = clock_wall_ms() - INBOX_FENCE_STALE_MS - 1000;   /* before the stall */
    CHECK(zombie_commit(user, head, conv, 2, numbered, &c) == 0, "the zombie's commit failed");
    CHECK(c.present && c.user_seq == 2, "the zombie's (conv, 2) %s at user_seq %llu, want found at 2",
          c.present ? "found" : "appended", (unsigned long long)c.user_seq);
    tally t = {conv, 2, 0, 0};
    CHECK(store_scan_inbox(owner, user, 0, 0, 100, count_entry, &t) == 0, "the inbox cannot be read");
    CHECK(t.copies == 1 && t.entries == 5, "the inbox holds (conv, 2) %zu time(s) among %zu entries, want 1 among 5",
          t.copies, t.entries);
    close_pair();
}

static void a_young_entry_appended_after_the_belief(void) {
    CHECK(open_pair() == 0, "open two handles");
    const uint64_t user = 78, conv = 5;
    const uint64_t before[] = {1, 2, 3, 4, 5}, three[] = {3};
    CHECK(append(owner, user, 1, conv + 1, before, 5) == 0, "the inbox's first entries were not stored");
    uint64_t hint = 0, head = 0;
    CHECK(store_inbox_heads(zombie, user, &hint, &head) == 0 && head == 5, "the zombie reads head %llu, want 5",
          (unsigned long long)head);
    /* the zombie stops here; the new owner appends (conv, 3) meanwhile */
    CHECK(append(owner, user, 6, conv, three, 1) == 0, "the new owner's append was not stored");
    inbox_claim c;
    uint64_t numbered = clock_wall_ms();
    CHECK(!inbox_fence_stale(numbered, clock_wall_ms()), "an entry numbered now is stale");
    CHECK(zombie_commit(user, head, conv, 3, numbered, &c) == 0, "the zombie's commit failed");
    CHECK(c.present && c.user_seq == 6, "the zombie's (conv, 3) %s at user_seq %llu, want found at 6",
          c.present ? "found" : "appended", (unsigned long long)c.user_seq);
    tally t = {conv, 3, 0, 0};
    CHECK(store_scan_inbox(owner, user, 0, 0, 100, count_entry, &t) == 0, "the inbox cannot be read");
    CHECK(t.copies == 1 && t.entries == 6, "the inbox holds (conv, 3) %zu time(s) among %zu entries, want 1 among 6",
          t.copies, t.entries);
    close_pair();
}

/* the shared node (PARLEY_TEST_CASSANDRA), else one of this program's own */
static void start(void) {
    const char *shared = fenced_store_shared_hosts();
    CHECK(shared || cassandra_node_start("zfence") == 0, "no Cassandra");
    const char *hosts = shared ? shared : cassandra_node_hosts();
    CHECK(fenced_store_connect(hosts) == 0, "no CQL connection to %s", hosts);
}

int main(void) {
    RUN(start);
    if (check_failures_total == 0) {
        RUN(a_stale_entry_the_new_owner_appended);
        RUN(a_young_entry_appended_after_the_belief);
    }
    close_pair();
    fenced_store_disconnect();
    cassandra_node_stop();
    CHECK_EXIT();
}
