/* test_receipts_nodes.c -- receipts across nodes, and the chat node's
 * writer looking their receivers up in Redis in one round
 * (chat/push_batch.h), not one round trip per user: a chat node and a
 * gateway node on a real Redis Cluster and a real Cassandra node.
 *
 * A group of SENDERS members, every other one on the gateway node, and
 * rob (on the gateway node too). Each member sends one message while rob
 * is away; then
 *   - delivered_receipts_across_nodes: rob acks all of them in one Ack (a
 *     raw connection to the gateway node, so the range is exact): every
 *     member, on either node, gets DELIVERED about rob with the group's
 *     last seq; the chat node looked the SENDERS receivers up in a round
 *     (parley_cluster_session_lookups_prefetched_total grew by SENDERS or
 *     more) and its single lookups did not grow by SENDERS;
 *   - read_receipts_across_nodes: rob marks the group read up to the last
 *     seq: every member gets READ about rob with that seq; the same
 *     counters say one round, not a round trip per member;
 *   - device_list_across_nodes: rob links a second device on the chat
 *     node: every member is told his device list changed; the same
 *     counters again.
 * Every wait is on observable state (receipts, /metrics) with a generous
 * bound; nothing is timed.
 *
 * A figure, not a check: PARLEY_RECEIPTS_EXTRA=N (at most 1000) adds N
 * more members to the group who sign up and go offline (the chat node
 * looks them up all the same); each receipt case prints the chat node's
 * single lookups and prefetched users and rounds it caused.
 *
 * What each case guards (each broken in a scratch build, seen to FAIL):
 *   push_batch_lookup not calling node_sessions_prefetch ->
 *     delivered_receipts_across_nodes "single lookups grew by 9 on the
 *     chat node for 8 receivers", read_receipts_across_nodes "0 users
 *     looked up in prefetch rounds for 8 receivers" (the receipt cases);
 *   writer_device_list_changed (keys.c) without push_batch_lookup ->
 *     device_list_across_nodes "0 users looked up in prefetch rounds for
 *     8 contacts" (9 single lookups);
 *   push_to_user (chat/push.c) asking the local registry only -> both
 *     receipt cases: "not every member got the receipt" (m1, m3, m5, m7
 *     on the gateway node without it). */
#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "cassandra_node.h"
#include "harness.h"
#include "node_pair.h"
#include "redis_cluster_node.h"

#define NEED(x) CHECK((x), "%s", #x)

enum {
    WAIT_MS = 120000,
    SENDERS = 8,               /* an Ack names at most 8 senders per conversation (writer.c ACK_SENDERS) */
    EXTRA_MAX = 1000,          /* PARLEY_RECEIPTS_EXTRA: the group's cap is 1024 (--max-group-members) */
    RESPONSE_MAX_FRAMES = 10000,
};

static h_server chat, gw;
static int started;

static const char SINGLE[] = "parley_cluster_session_lookups_single_total";
static const char PREFETCHED[] = "parley_cluster_session_lookups_prefetched_total";
static const char ROUNDS[] = "parley_cluster_session_prefetches_total";

static void start_nodes(void) {
    CHECK(redis_cluster_start("receipts-nodes") == 0, "the Redis Cluster did not start");
    CHECK(cassandra_node_start("test-receipts-nodes") == 0, "no Cassandra");
    node_opts o = {.keyspace = "receipts_nodes", .node_ttl_ms = "30000", .session_ttl_ms = "30000"};
    CHECK(node_start(&chat, "chat-1", 0, &o) == 0, "the chat node did not start");
    CHECK(node_start(&gw, "gw-1", 1, &o) == 0, "the gateway node did not start");
    CHECK(node_chat_linked(&gw, WAIT_MS), "the gateway node never linked to the chat node");
    started = 1;
}

static h_dev *member[SENDERS], *rob;
static uint64_t group, last_seq;

static const h_server *home(int i) { return i % 2 ? &gw : &chat; }
static const char *home_name(int i) { return i % 2 ? "gateway" : "chat node"; }

/* the group, its members synced (receipts go to syncing devices), one
 * message from each while rob is away */
static void group_on_two_nodes(void) {
    NEED(started);
    for (int i = 0; i < SENDERS; i++) {
        char name[32];
        snprintf(name, sizeof name, "m%d", i);
        member[i] = h_user_new(home(i), name);
        CHECK(member[i], "sign-up of %s on the %s", name, home_name(i));
    }
    rob = h_user_new(&gw, "rob");
    CHECK(rob, "sign-up of rob");
    const char *env = getenv("PARLEY_RECEIPTS_EXTRA");
    long extra = env ? strtol(env, NULL, 10) : 0;
    CHECK(extra >= 0 && extra <= EXTRA_MAX, "PARLEY_RECEIPTS_EXTRA=%s: 0 to %d", env, EXTRA_MAX);
    uint64_t *others = h_calloc(SENDERS + (size_t)extra, sizeof *others);
    NEED(others);
    for (int i = 1; i < SENDERS; i++) others[i - 1] = member[i]->id.user_id;
    others[SENDERS - 1] = rob->id.user_id;
    for (long i = 0; i < extra; i++) {   /* offline members, half of them signed up on each node */
        h_dev *x = h_user_new(home((int)i), NULL);
        if (x) others[SENDERS + i] = x->id.user_id;
        h_dev_free(x);
        if (!x) h_free(others);
        CHECK(x, "sign-up of extra member %ld", i);
    }
    int created = pc_create_group(member[0]->c, "receipts", others, SENDERS + (size_t)extra, &group);
    h_free(others);
    CHECK(created == 0, "create group: %s", pc_error(member[0]->c));
    for (int i = 1; i < SENDERS; i++) CHECK(h_accept(member[i], group) == 0, "m%d accepts", i);
    CHECK(h_accept(rob, group) == 0, "rob accepts");
    for (int i = 0; i < SENDERS; i++) CHECK(h_dev_sync(member[i], WAIT_MS) == 0, "m%d syncs", i);
    h_dev_disconnect(rob);   /* libparley would ack on its own */
    for (int i = 0; i < SENDERS; i++) {
        uint64_t seq = h_send(member[i], group, "hello");
        CHECK(seq != 0, "m%d's send", i);
        if (seq > last_seq) last_seq = seq;
    }
}

/* the highest receipt of kind d got from rob about the group (0: none) */
static uint64_t receipt_from_rob(const h_dev *d, int kind) {
    uint64_t seq = 0;
    for (size_t i = 0; i < d->n_rc; i++)
        if (d->rc[i].conversation_id == group && d->rc[i].user_id == rob->id.user_id && d->rc[i].kind == kind &&
            d->rc[i].seq > seq)
            seq = d->rc[i].seq;
    return seq;
}

static int kind_wanted;

static int all_members_told(void *ud) {
    (void)ud;
    for (int i = 0; i < SENDERS; i++)
        if (receipt_from_rob(member[i], kind_wanted) < last_seq) return 0;
    return 1;
}

typedef struct lookup_counts {
    double single, prefetched, rounds;
} lookup_counts;

static int read_counts(lookup_counts *c) {
    return h_metric(&chat, SINGLE, &c->single) == 0 && h_metric(&chat, PREFETCHED, &c->prefetched) == 0 &&
                   h_metric(&chat, ROUNDS, &c->rounds) == 0
               ? 0
               : -1;
}

/* every member got a receipt of kind about rob with exactly last_seq, and
 * the chat node looked the receivers up in rounds, not one by one */
static void expect_receipts(const lookup_counts *before, int receivers) {
    int got = h_pump(member, SENDERS, all_members_told, NULL, WAIT_MS);
    for (int i = 0; !got && i < SENDERS; i++)
        fprintf(stderr, "  m%d (%s): receipt %llu, want %llu\n", i, home_name(i),
                (unsigned long long)receipt_from_rob(member[i], kind_wanted), (unsigned long long)last_seq);
    CHECK(got, "not every member got the receipt within %d ms", WAIT_MS);
    for (int i = 0; i < SENDERS; i++)
        CHECK(receipt_from_rob(member[i], kind_wanted) == last_seq, "member %d (%s): receipt seq %llu, want %llu", i,
              home_name(i), (unsigned long long)receipt_from_rob(member[i], kind_wanted),
              (unsigned long long)last_seq);
    lookup_counts after;
    CHECK(read_counts(&after) == 0, "the chat node's /metrics has no session lookup counters");
    double single = after.single - before->single, prefetched = after.prefetched - before->prefetched;
    fprintf(stderr, "  chat node: %g single lookups, %g users in %g prefetch rounds\n", single, prefetched,
            after.rounds - before->rounds);
    CHECK(prefetched >= receivers, "%g users looked up in prefetch rounds for %d receivers", prefetched, receivers);
    CHECK(single < receivers, "single lookups grew by %g on the chat node for %d receivers", single, receivers);
}

/* rob acks every message in one Ack: each sender (either node) is told */
static void delivered_receipts_across_nodes(void) {
    NEED(rob && last_seq);
    lookup_counts before;
    CHECK(read_counts(&before) == 0, "the chat node's /metrics has no session lookup counters");
    h_raw *w = h_calloc(1, sizeof *w);
    NEED(w);
    const h_raw_opts o = {.io_ms = 30000};
    CHECK(h_raw_open_port(gw.port, &o, w) == 0 && h_raw_sign_in(w, &rob->id) == 0, "rob's raw sign-in");
    /* StartSync; the inbox entry of the last message is the head to ack */
    Parley__V1__StartSync ss = PARLEY__V1__START_SYNC__INIT;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = 2;
    f.body_case = PARLEY__V1__FRAME__BODY_START_SYNC;
    f.start_sync = &ss;
    CHECK(h_raw_send_frame(w, &f) == 0, "StartSync");
    uint64_t head = 0;
    int have_last = 0;
    for (int i = 0; i < RESPONSE_MAX_FRAMES && !have_last; i++) {
        Parley__V1__Frame *r = h_raw_next_frame(w, NULL);
        if (!r) break;
        if (r->body_case == PARLEY__V1__FRAME__BODY_EVENT) {
            if (r->event->user_seq > head) head = r->event->user_seq;
            have_last = r->event->message && r->event->message->conversation_id == group &&
                        r->event->message->seq == last_seq;
        }
        parley__v1__frame__free_unpacked(r, NULL);
    }
    if (!have_last) h_raw_close(w);
    CHECK(have_last, "rob's sync never brought seq %llu", (unsigned long long)last_seq);
    int acked = h_raw_ack_barrier(w, head, 100, RESPONSE_MAX_FRAMES);
    h_raw_close(w);
    h_free(w);
    CHECK(acked == 0, "rob's Ack of user_seq %llu", (unsigned long long)head);
    kind_wanted = PARLEY__V1__RECEIPT_KIND__DELIVERED;
    expect_receipts(&before, SENDERS);
}

/* rob marks the group read: every other member (either node) is told */
static void read_receipts_across_nodes(void) {
    NEED(rob && last_seq);
    CHECK(h_dev_reconnect(&gw, rob, 0) == 0 && h_dev_sync(rob, WAIT_MS) == 0, "rob's reconnect on the gateway");
    lookup_counts before;
    CHECK(read_counts(&before) == 0, "the chat node's /metrics has no session lookup counters");
    CHECK(pc_mark_read(rob->c, group, last_seq) == 0, "rob's MarkRead: %s", pc_error(rob->c));
    kind_wanted = PARLEY__V1__RECEIPT_KIND__READ;
    expect_receipts(&before, SENDERS);
}

/* DeviceListChanged about rob, per member: the highest change counter */
static uint64_t rob_devices_changed[SENDERS];

static void on_device_list(void *ud, uint64_t user, uint64_t counter) {
    uint64_t *seen = ud;
    if (rob && user == rob->id.user_id && counter > *seen) *seen = counter;
}

static int all_members_saw_link(void *ud) {
    (void)ud;
    for (int i = 0; i < SENDERS; i++)
        if (!rob_devices_changed[i]) return 0;
    return 1;
}

/* rob links a second device (on the chat node): every member, on either
 * node, is told his device list changed, all looked up in one round */
static void device_list_across_nodes(void) {
    NEED(rob && rob->c);
    for (int i = 0; i < SENDERS; i++) {
        NEED(member[i] && member[i]->c);
        pc_on_device_list_changed(member[i]->c, on_device_list, &rob_devices_changed[i]);
    }
    lookup_counts before;
    CHECK(read_counts(&before) == 0, "the chat node's /metrics has no session lookup counters");
    h_dev *second = h_device_link(&chat, rob);
    CHECK(second, "rob's second device (linked on the chat node)");
    int got = h_pump(member, SENDERS, all_members_saw_link, NULL, WAIT_MS);
    h_dev_free(second);
    for (int i = 0; !got && i < SENDERS; i++)
        fprintf(stderr, "  m%d (%s): change counter %llu\n", i, home_name(i),
                (unsigned long long)rob_devices_changed[i]);
    CHECK(got, "not every member was told rob's device list changed within %d ms", WAIT_MS);
    lookup_counts after;
    CHECK(read_counts(&after) == 0, "the chat node's /metrics has no session lookup counters");
    double single = after.single - before.single, prefetched = after.prefetched - before.prefetched;
    fprintf(stderr, "  chat node: %g single lookups, %g users in %g prefetch rounds\n", single, prefetched,
            after.rounds - before.rounds);
    CHECK(prefetched >= SENDERS, "%g users looked up in prefetch rounds for %d contacts", prefetched, SENDERS);
    CHECK(single < SENDERS, "single lookups grew by %g on the chat node for %d contacts", single, SENDERS);
}

/* both nodes stop on SIGTERM and exit 0 (an ASan build's report would not) */
static void nodes_exit_cleanly(void) {
    NEED(started);
    for (int i = 0; i < SENDERS; i++) h_dev_free(member[i]);
    h_dev_free(rob);
    memset(member, 0, sizeof member);
    rob = NULL;
    int gw_status = h_server_stop(&gw), chat_status = h_server_stop(&chat);
    if (gw_status) h_server_log_tail(&gw, 40);
    if (chat_status) h_server_log_tail(&chat, 40);
    CHECK(gw_status == 0 && chat_status == 0, "exit status: gateway %d, chat node %d", gw_status, chat_status);
}

int main(void) {
    if (sodium_init() < 0) return 1;
    signal(SIGPIPE, SIG_IGN);
    RUN(start_nodes);
    RUN(group_on_two_nodes);
    RUN(delivered_receipts_across_nodes);
    RUN(read_receipts_across_nodes);
    RUN(device_list_across_nodes);
    RUN(nodes_exit_cleanly);
    for (int i = 0; i < SENDERS; i++) h_dev_free(member[i]);
    h_dev_free(rob);
    h_server_destroy(&gw);
    h_server_destroy(&chat);
    cassandra_node_stop();
    redis_cluster_stop();
    CHECK_EXIT();
}
