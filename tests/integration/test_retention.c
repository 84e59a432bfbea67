/* test_retention.c -- messages older than the retention (--retention 2s)
 * vanish from history and from sync at once, the sweeper
 * (--retention-sweep 200) removes them from disk
 * (parley_retention_removed_total), seqs and user_seqs are never reused
 * (not even after a restart that finds a conversation with nothing left),
 * and a device that was away while its messages expired catches up with
 * no gap complaint and no duplicate.
 *
 * Only expired messages are waited for (history says they are gone);
 * every message that must arrive is sent to devices already caught up, so
 * it goes out live from the fan-out and never races the 2 s retention. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "harness.h"

enum {
    WAIT_MS = 15000,
    EXPIRE_WAIT_MS = 30000,     /* liveness bound: retention is 2 s */
};

static h_server S;

/* 1 when conv's history, as d sees it, has no message at or below seq */
typedef struct gone_goal {
    h_dev *d;
    uint64_t conv, seq;
    int failed;
} gone_goal;

static int history_gone(gone_goal *g) {
    Parley__V1__HistoryPage *p = NULL;
    if (pc_history(g->d->c, g->conv, 0, 200, &p) != 0) {
        fprintf(stderr, "  pc_history: %s\n", pc_error(g->d->c));
        g->failed = 1;
        return 1;
    }
    int gone = 1;
    for (size_t i = 0; i < p->n_messages; i++)
        if (p->messages[i]->seq <= g->seq) gone = 0;
    parley__v1__history_page__free_unpacked(p, NULL);
    return gone;
}

/* polls (bounded) until history_gone; 1 when it happened */
static int wait_expired(gone_goal *g) {
    for (uint64_t until = h_now_ms() + EXPIRE_WAIT_MS; h_now_ms() < until; h_sleep_ms(100))
        if (history_gone(g)) return !g->failed;
    return 0;
}

static uint64_t max_user_seq(const h_dev *d) {
    uint64_t m = 0;
    for (size_t i = 0; i < d->n_ev; i++)
        if (d->ev[i].user_seq > m) m = d->ev[i].user_seq;
    return m;
}

static const h_event *event_of(const h_dev *d, uint64_t conv, uint64_t seq) {
    for (size_t i = 0; i < d->n_ev; i++)
        if (d->ev[i].conversation_id == conv && d->ev[i].seq == seq) return &d->ev[i];
    return NULL;
}

static void expired_messages_vanish(void) {
    h_dev *alice = h_user_new(&S, NULL);
    h_dev *bob = h_user_new(&S, NULL);
    CHECK(alice && bob, "users");
    uint64_t conv;
    CHECK(pc_open_direct(alice->c, bob->id.user_id, &conv) == 0, "open_direct: %s", pc_error(alice->c));
    CHECK(h_dev_sync(bob, WAIT_MS) == 0, "bob sync");

    /* three while bob is online, two while he is away */
    uint64_t seq[8] = {0};
    const char *texts[] = {"m1", "m2", "m3", "m4", "m5"};
    for (int i = 0; i < 3; i++) CHECK((seq[i] = h_send(alice, conv, texts[i])) != 0, "send %d", i);
    h_dev *b1[1] = {bob};
    h_count_goal g3 = {b1, 1, conv, 3, 1};
    CHECK(h_pump(b1, 1, h_pred_count, &g3, WAIT_MS), "bob did not get m1..m3 live");
    CHECK(pc_flush_acks(bob->c) == 0, "ack: %s", pc_error(bob->c));
    uint64_t bob_cursor = pc_cursor(bob->c);
    uint64_t old_user_seq = max_user_seq(bob);
    h_dev_disconnect(bob);
    for (int i = 3; i < 5; i++) CHECK((seq[i] = h_send(alice, conv, texts[i])) != 0, "send %d", i);
    uint64_t last_old = seq[4];

    /* wait until all five are older than the retention: history drops them */
    gone_goal gone = {alice, conv, last_old, 0};
    CHECK(wait_expired(&gone), "history still shows seqs <= %llu", (unsigned long long)last_old);
    size_t n_hist = 0;
    h_event *hist = h_history_all(alice, conv, &n_hist);
    CHECK(hist, "history");
    h_events_free(hist, n_hist);
    CHECK(n_hist == 0, "%zu messages in history after expiry", n_hist);

    /* a fresh device of bob syncs the whole inbox: nothing of them */
    h_dev *fresh = h_dev_for_identity(&S, &bob->id, "bob-fresh", 0);
    CHECK(fresh, "fresh device");
    CHECK(h_dev_sync(fresh, WAIT_MS) == 0, "fresh sync");
    CHECK(h_dev_count(fresh, conv) == 0, "fresh sync shows %zu expired events", h_dev_count(fresh, conv));

    /* bob's first device comes back from its cursor: m4 and m5 expired while
     * it was away; its catch-up ends (SyncDone) with nothing of them */
    CHECK(h_dev_reconnect(&S, bob, bob_cursor) == 0, "bob reconnects");
    CHECK(h_dev_sync(bob, WAIT_MS) == 0, "bob's catch-up did not finish");
    CHECK(h_dev_conv_events(bob, conv, 1, NULL, 0) == 3, "bob after catch-up: %zu messages, want m1..m3",
          h_dev_conv_events(bob, conv, 1, NULL, 0));

    /* the conversation goes on from where it was: no seq is given twice */
    uint64_t m6 = h_send(alice, conv, "m6");
    CHECK(m6 > last_old, "new seq %llu after expired %llu", (unsigned long long)m6, (unsigned long long)last_old);
    h_count_goal g1 = {&fresh, 1, conv, 1, 1};
    CHECK(h_pump(&fresh, 1, h_pred_count, &g1, WAIT_MS), "fresh device did not get m6 live");
    CHECK(h_dev_count(fresh, conv) == 1 && h_dev_has(fresh, conv, m6) == 1, "fresh device: %zu events",
          h_dev_count(fresh, conv));
    CHECK(event_of(fresh, conv, m6)->user_seq > old_user_seq, "m6 has user_seq %llu, not above %llu",
          (unsigned long long)event_of(fresh, conv, m6)->user_seq, (unsigned long long)old_user_seq);

    /* and bob gets m6 live, once */
    h_count_goal g4 = {b1, 1, conv, 4, 1};
    CHECK(h_pump(b1, 1, h_pred_count, &g4, WAIT_MS), "bob has %zu events, want m1..m3 and m6",
          h_dev_conv_events(bob, conv, 1, NULL, 0));
    char why[256];
    CHECK(h_dev_check_order(bob, conv, why, sizeof why) == 0, "%s", why);
    for (int i = 0; i < 3; i++) CHECK(h_dev_has(bob, conv, seq[i]) == 1, "m%d seen %d times", i + 1, h_dev_has(bob, conv, seq[i]));
    CHECK(h_dev_has(bob, conv, seq[3]) == 0 && h_dev_has(bob, conv, seq[4]) == 0, "expired m4/m5 delivered");
    CHECK(h_dev_has(bob, conv, m6) == 1, "m6 seen %d times", h_dev_has(bob, conv, m6));
    pc_stats st;
    pc_get_stats(bob->c, &st);
    CHECK(st.duplicates_dropped == 0, "%llu duplicates dropped", (unsigned long long)st.duplicates_dropped);
    CHECK(h_dev_conv_events(bob, conv, 1, NULL, 0) == 4, "bob: %zu messages, want 4",
          h_dev_conv_events(bob, conv, 1, NULL, 0));

    /* and from disk: the sweeper's compactions drop the records (RocksDB's
     * sweeper; on Cassandra the rows carry a TTL and its own compaction
     * removes them, which this test does not see) */
    if (strcmp(h_test_store(), "rocksdb") == 0) {
        double removed = 0;
        for (uint64_t until = h_now_ms() + EXPIRE_WAIT_MS; h_now_ms() < until && removed <= 0; h_sleep_ms(100))
            if (h_metric(&S, "parley_retention_removed_total", &removed) != 0) removed = 0;
        CHECK(removed > 0, "parley_retention_removed_total stayed 0");
    } else {
        check_note("test_retention on %s: removal from disk not checked (TTL and the store's own compaction)",
                   h_test_store());
    }

    /* let m6 expire too, so nothing of the conversation is left, and restart:
     * the next seq and user_seq still go up */
    uint64_t m6_user_seq = event_of(bob, conv, m6)->user_seq;
    uint64_t bob_cursor2 = pc_cursor(bob->c);
    gone_goal gone6 = {alice, conv, m6, 0};
    CHECK(wait_expired(&gone6), "m6 did not expire");
    h_dev_disconnect(alice);
    h_dev_disconnect(bob);
    h_dev_disconnect(fresh);
    CHECK(h_server_restart(&S) == 0, "restart");
    CHECK(h_dev_reconnect(&S, alice, 0) == 0, "alice reconnects");
    CHECK(h_dev_reconnect(&S, bob, bob_cursor2) == 0, "bob reconnects");
    CHECK(h_dev_sync(bob, WAIT_MS) == 0, "bob sync after restart");
    uint64_t m7 = h_send(alice, conv, "m7");
    CHECK(m7 > m6, "after restart: seq %llu, m6 was %llu", (unsigned long long)m7, (unsigned long long)m6);
    h_count_goal g5 = {b1, 1, conv, 5, 1};
    CHECK(h_pump(b1, 1, h_pred_count, &g5, WAIT_MS), "bob did not get m7");
    const h_event *e7 = event_of(bob, conv, m7);
    CHECK(e7 && e7->user_seq > m6_user_seq, "m7 user_seq %llu, m6 had %llu", e7 ? (unsigned long long)e7->user_seq : 0ull,
          (unsigned long long)m6_user_seq);
    CHECK(h_dev_check_order(bob, conv, why, sizeof why) == 0, "%s", why);
    h_dev_free(fresh);
    h_dev_free(alice);
    h_dev_free(bob);
}

int main(void) {
    const char *flags[] = {"--retention", "2s", "--retention-sweep", "200", NULL};
    if (h_server_start(&S, flags) != 0) {
        printf("FAIL server_starts\n");
        return 1;
    }
    RUN(expired_messages_vanish);
    if (!h_server_alive(&S)) {
        h_server_log_tail(&S, 40);
        printf("FAIL server_survived\n");
        check_failures_total++;
    }
    h_server_destroy(&S);
    CHECK_EXIT();
}
