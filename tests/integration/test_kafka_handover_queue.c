/* test_kafka_handover_queue.c -- a chat node whose partitions are revoked
 * and given back while its fan-out still holds what it stored appends
 * each message to each inbox once (--kafka: cluster/chat_owner.c, the
 * hand-over replay; fanout/fanout.c read_items), on a real Kafka broker,
 * Redis Cluster and Cassandra node.
 *
 *   - replay_behind_held_fanout: chat nodes A and B split the 64 'sends'
 *     partitions; A runs with its fan-out readers held
 *     (PARLEY_TEST_HOLD_FANOUT). PAIRS direct conversations get SENDS
 *     messages each: acknowledged; those of A's partitions are stored by A
 *     and wait, unread, in A's fan-out queue. B stops (SIGTERM): the group
 *     takes every partition from A (its revoke waits for fan-out at most
 *     HANDOFF_WAIT_MS, then gives up) and gives A all 64; A's hand-over
 *     replay publishes the entries past their checkpoints, among them those
 *     its queue already holds. The readers are let go: each reads both
 *     copies, likely in one run. Then every user's inbox, synced from zero
 *     on a fresh device, holds each of its conversation's messages exactly
 *     once, in seq order (the device drops nothing), and A counted the
 *     copies it read twice (parley_fanout_read_twice_total > 0: the case
 *     happened). (A third node would not do: a node's start-up replay fans
 *     out every partition past its checkpoints, the held entries too.)
 * Every wait is on observable state with a generous bound; nothing is timed.
 *
 * Seen failing without the reader's check (fanout.c read_items, which
 * then appends both copies of a run): "pair 0: hq0x-fresh dropped 4
 * event(s) seen twice or out of order". The same double is what
 * test_kafka_nodes chat_node_killed_mid_traffic hit once in CI (session
 * 12): after B's kill -9 the group revoked A's own partitions and gave
 * them back with B's, and A's replay published again entries a writer had
 * answered but not yet handed to fan-out when the revoke looked. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "cassandra_node.h"
#include "harness.h"
#include "hold_file.h"
#include "kafka_node.h"
#include "node_pair.h"
#include "redis_cluster_node.h"

#define NEED(x) CHECK((x), "%s", #x)

enum {
    WAIT_MS = 240000,
    PARTITIONS = 64,   /* a new store's conversation partitions (chat/partition.h) */
    PAIRS = 12,        /* A keeps 32 of 64 partitions: some pair's is almost surely one of them */
    SENDS = 4,         /* per pair, while A's fan-out is held */
};

static h_server chat_a, chat_b;

static int start_node(h_server *s, const char *name) {
    node_opts o = {.keyspace = "handoverqueue", .kafka = kafka_node_brokers()};
    return node_start(s, name, 0, &o);
}

/* s owns `want` of the partitions (/metrics) within WAIT_MS */
static int owns(const h_server *s, double want) {
    for (int i = 0; i < WAIT_MS / 200; i++) {
        if (node_metric_or_zero(s, "parley_kafka_owner_partitions") == want) return 1;
        h_sleep_ms(200);
    }
    return 0;
}

/* A replayed the partitions it was given back (the counter moved) within WAIT_MS */
static int replayed(const h_server *s) {
    for (int i = 0; i < WAIT_MS / 200; i++) {
        if (node_metric_or_zero(s, "parley_kafka_handover_replayed_total") > 0) return 1;
        h_sleep_ms(200);
    }
    return 0;
}

/* d, a fresh device synced from zero: SENDS messages of conv, no double */
static int inbox_once(h_dev *d, uint64_t conv, char *why, size_t cap) {
    if (h_dev_sync(d, WAIT_MS) != 0) {
        snprintf(why, cap, "%s could not sync", d->name);
        return -1;
    }
    h_dev *one[] = {d};
    h_count_goal g = {one, 1, conv, SENDS, 1};
    if (!h_pump(one, 1, h_pred_count, &g, WAIT_MS)) {
        snprintf(why, cap, "%s has %zu messages of conv %llu, want %d", d->name, h_dev_conv_events(d, conv, 1, NULL, 0),
                 (unsigned long long)conv, SENDS);
        return -1;
    }
    pc_stats st;
    pc_get_stats(d->c, &st);
    if (st.duplicates_dropped != 0) {
        snprintf(why, cap, "%s dropped %llu event(s) seen twice or out of order", d->name,
                 (unsigned long long)st.duplicates_dropped);
        return -1;
    }
    return node_record_unique(d, 1, why, cap);
}

static void replay_behind_held_fanout(void) {
    CHECK(redis_cluster_start("handover-queue") == 0, "the Redis Cluster did not start");
    CHECK(cassandra_node_start("test-handover-queue") == 0, "no Cassandra");
    CHECK(kafka_node_start("handover-queue", NULL) == 0, "no Kafka broker");
    hold_file hold;
    NEED(hold_file_init(&hold, "PARLEY_TEST_HOLD_FANOUT") == 0);   /* A's process alone has the hook */
    int a_started = start_node(&chat_a, "chat-a") == 0;
    unsetenv("PARLEY_TEST_HOLD_FANOUT");
    CHECK(a_started, "chat node A did not start");
    CHECK(start_node(&chat_b, "chat-b") == 0, "chat node B did not start");
    CHECK(owns(&chat_a, PARTITIONS / 2) && owns(&chat_b, PARTITIONS / 2),
          "the partitions were not split between A and B (A %g, B %g)",
          node_metric_or_zero(&chat_a, "parley_kafka_owner_partitions"),
          node_metric_or_zero(&chat_b, "parley_kafka_owner_partitions"));

    h_dev *dev[PAIRS][2];
    uint64_t conv[PAIRS];
    for (int j = 0; j < PAIRS; j++) {
        for (int e = 0; e < 2; e++) {
            char name[16];
            snprintf(name, sizeof name, "hq%d%c", j, "xy"[e]);
            dev[j][e] = h_user_new(&chat_a, name);
            CHECK(dev[j][e], "sign-up of %s failed", name);
        }
        NEED(pc_open_direct(dev[j][0]->c, dev[j][1]->id.user_id, &conv[j]) == 0);
        NEED(h_accept(dev[j][1], conv[j]) == 0);
    }
    CHECK(node_fanout_idle(&chat_a, WAIT_MS), "chat node A's fan-out did not finish the set-up");

    /* acknowledged; A's share stored and left in its fan-out queue */
    NEED(hold_file_make(&hold) == 0);
    for (int j = 0; j < PAIRS; j++)
        for (int s = 0; s < SENDS; s++) {
            char text[32];
            snprintf(text, sizeof text, "held %d.%d", j, s);
            CHECK(h_send(dev[j][s % 2], conv[j], text) != 0, "send '%s' failed", text);
        }

    CHECK(h_server_stop(&chat_b) == 0, "chat node B did not stop cleanly");
    CHECK(owns(&chat_a, PARTITIONS), "chat node A was not given every partition (%g)",
          node_metric_or_zero(&chat_a, "parley_kafka_owner_partitions"));
    CHECK(replayed(&chat_a), "chat node A did not replay the partitions it was given");
    hold_file_release(&hold);
    CHECK(node_fanout_idle(&chat_a, WAIT_MS), "A's fan-out did not finish after its readers were let go");

    char why[512];
    for (int j = 0; j < PAIRS; j++)
        for (int e = 0; e < 2; e++) {
            char name[24];
            snprintf(name, sizeof name, "hq%d%c-fresh", j, "xy"[e]);
            h_dev *fresh = h_dev_for_identity(&chat_a, &dev[j][e]->id, name, 0);
            CHECK(fresh, "%s could not sign in", name);
            CHECK(inbox_once(fresh, conv[j], why, sizeof why) == 0, "pair %d: %s", j, why);
            h_dev_free(fresh);
        }
    double twice = node_metric_or_zero(&chat_a, "parley_fanout_read_twice_total");
    CHECK(twice > 0, "chat node A read no entry twice: none of the %d pairs' partitions came back to it", PAIRS);
    for (int j = 0; j < PAIRS; j++)
        for (int e = 0; e < 2; e++) h_dev_free(dev[j][e]);
    hold_file_destroy(&hold);
}

int main(void) {
    RUN(replay_behind_held_fanout);
    h_server_destroy(&chat_b);
    h_server_destroy(&chat_a);
    kafka_node_stop();
    cassandra_node_stop();
    redis_cluster_stop();
    CHECK_EXIT();
}
