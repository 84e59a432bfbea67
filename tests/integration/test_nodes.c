/* test_nodes.c -- gateway nodes in front of one chat node (DESIGN.md §6,
 * cluster/node_forward.h) on a real Redis Cluster (redis_cluster_node.c)
 * and a real Cassandra node (cassandra_node.c), all three nodes on one
 * keyspace: a chat node with every role and two `--roles gateway` nodes.
 *
 *   - a gateway node forwards requests: users sign up on each of them and
 *     on the chat node;
 *   - 1:1 and group messages between users on different nodes reach every
 *     member exactly once, in order, live (DELIVER frames routed through the
 *     Redis session registry), and the senders get their DELIVERED receipts
 *     (pushes routed the same way);
 *   - kill -9 of a gateway node while a sender keeps sending: its user
 *     reconnects to the other gateway and, after sync, has every
 *     acknowledged message exactly once, in order;
 *   - kill -9 of the chat node: a gateway node's /healthz answers 503
 *     "waiting for chat link" and a device's send there is answered
 *     UNAVAILABLE; once the chat node is back, /healthz answers 200 and the
 *     same device's send is stored and delivered.
 * Every wait is on observable state (events, receipts, /metrics) with a
 * generous bound; nothing is timed. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "cassandra_node.h"
#include "harness.h"
#include "node_pair.h"
#include "redis_cluster_node.h"

#define NEED(x) CHECK((x), "%s", #x)

enum { WAIT_MS = 120000, KEEP_SENDING = 30 };

static h_server chat, gw1, gw2;
static int started;

static int start_node(h_server *s, const char *name, int gateway) {
    node_opts o = {.keyspace = "nodes"};
    return node_start(s, name, gateway, &o);
}

/* the gateway node has a chat node linked both ways (its requests go out) */
static int chat_linked(h_server *s) { return node_chat_linked(s, WAIT_MS); }

static void start_nodes(void) {
    CHECK(redis_cluster_start("nodes") == 0, "the Redis Cluster did not start");
    CHECK(cassandra_node_start("test-nodes") == 0, "no Cassandra");
    CHECK(start_node(&chat, "chat-1", 0) == 0, "the chat node did not start");
    CHECK(start_node(&gw1, "gw-1", 1) == 0, "gateway 1 did not start");
    CHECK(start_node(&gw2, "gw-2", 1) == 0, "gateway 2 did not start");
    CHECK(chat_linked(&gw1), "gateway 1 never linked to the chat node");
    CHECK(chat_linked(&gw2), "gateway 2 never linked to the chat node");
    started = 1;
}

/* the highest DELIVERED receipt d got from user about conv (0: none) */
static uint64_t delivered_receipt(const h_dev *d, uint64_t conv, uint64_t user) {
    uint64_t seq = 0;
    for (size_t i = 0; i < d->n_rc; i++)
        if (d->rc[i].conversation_id == conv && d->rc[i].user_id == user &&
            d->rc[i].kind == PARLEY__V1__RECEIPT_KIND__DELIVERED && d->rc[i].seq > seq)
            seq = d->rc[i].seq;
    return seq;
}

typedef struct receipt_goal {
    const h_dev *sender;
    uint64_t conv, from_user, seq;
} receipt_goal;

static int has_receipt(void *ud) {
    const receipt_goal *g = ud;
    return delivered_receipt(g->sender, g->conv, g->from_user) >= g->seq;
}

static h_dev *ann, *bob, *cid;   /* on gateway 1, gateway 2, the chat node */

static void chat_across_nodes(void) {
    NEED(started);
    ann = h_user_new(&gw1, "ann");
    bob = h_user_new(&gw2, "bob");
    cid = h_user_new(&chat, "cid");
    CHECK(ann && bob && cid, "sign-up through the nodes failed (ann %p, bob %p, cid %p)", (void *)ann,
          (void *)bob, (void *)cid);
    NEED(h_dev_sync(ann, WAIT_MS) == 0 && h_dev_sync(bob, WAIT_MS) == 0 && h_dev_sync(cid, WAIT_MS) == 0);
    h_dev *all[] = {ann, bob, cid};

    /* 1:1 across the two gateways */
    uint64_t direct = 0;
    NEED(pc_open_direct(ann->c, bob->id.user_id, &direct) == 0);
    NEED(h_accept(bob, direct) == 0);
    h_sent exp[16];
    size_t n = 0;
    CHECK(h_send_rec(ann, direct, "ann to bob 1", exp, &n) == 0, "send 1");
    CHECK(h_send_rec(bob, direct, "bob to ann 1", exp, &n) == 0, "send 2");
    CHECK(h_send_rec(ann, direct, "ann to bob 2", exp, &n) == 0, "send 3");
    h_count_goal g = {all, 2, direct, n, 1};
    CHECK(h_pump(all, 3, h_pred_count, &g, WAIT_MS), "the 1:1 messages did not all arrive");
    char why[256];
    CHECK(h_expect_exact(ann, direct, exp, n, why, sizeof why) == 0, "ann (1:1): %s", why);
    CHECK(h_expect_exact(bob, direct, exp, n, why, sizeof why) == 0, "bob (1:1): %s", why);
    receipt_goal rg = {ann, direct, bob->id.user_id, exp[2].seq};
    CHECK(h_pump(all, 3, has_receipt, &rg, WAIT_MS), "ann got no DELIVERED receipt from bob for seq %llu",
          (unsigned long long)exp[2].seq);

    /* a group over all three nodes */
    uint64_t members[] = {bob->id.user_id, cid->id.user_id}, group = 0;
    NEED(pc_create_group(ann->c, "three-nodes", members, 2, &group) == 0);
    NEED(h_accept(bob, group) == 0 && h_accept(cid, group) == 0);
    n = 0;
    CHECK(h_send_rec(ann, group, "from gateway 1", exp, &n) == 0, "group send 1");
    CHECK(h_send_rec(bob, group, "from gateway 2", exp, &n) == 0, "group send 2");
    CHECK(h_send_rec(cid, group, "from the chat node", exp, &n) == 0, "group send 3");
    h_count_goal gg = {all, 3, group, n, 1};
    CHECK(h_pump(all, 3, h_pred_count, &gg, WAIT_MS), "the group messages did not all arrive");
    for (int i = 0; i < 3; i++)
        CHECK(h_expect_exact(all[i], group, exp, n, why, sizeof why) == 0, "%s (group): %s", all[i]->name, why);
    receipt_goal rc = {cid, group, ann->id.user_id, exp[2].seq};
    CHECK(h_pump(all, 3, has_receipt, &rc, WAIT_MS), "cid got no DELIVERED receipt from ann (gateway 1)");

    double remote = 0;
    CHECK(h_metric(&chat, "parley_cluster_remote_deliveries_total", &remote) == 0 && remote > 0,
          "the chat node counted no DELIVER frames (%g)", remote);
}

/* cid (chat node) keeps sending to bob; bob's gateway is killed in the
 * middle; bob comes back on gateway 1 and syncs from the start. */
static void gateway_killed_while_sending(void) {
    NEED(started && ann && bob && cid);
    uint64_t direct = 0;
    NEED(pc_open_direct(cid->c, bob->id.user_id, &direct) == 0);
    NEED(h_accept(bob, direct) == 0);
    h_sent *exp = h_calloc(KEEP_SENDING + 1, sizeof *exp);   /* and one after the move */
    NEED(exp);
    size_t n = 0;
    h_dev *both[] = {bob, cid};
    for (int i = 0; i < KEEP_SENDING; i++) {
        char text[32];
        snprintf(text, sizeof text, "keep sending %d", i);
        CHECK(h_send_rec(cid, direct, text, exp, &n) == 0, "send %d failed", i);
        if (i == KEEP_SENDING / 3) {
            /* bob has seen something live before the kill */
            h_count_goal g = {both, 1, direct, 1, 1};
            CHECK(h_pump(both, 2, h_pred_count, &g, WAIT_MS), "bob got nothing live before the kill");
            h_server_kill9(&gw2);
        }
    }
    h_dev_clear(bob);
    CHECK(h_dev_reconnect(&gw1, bob, 0) == 0, "bob could not sign in on gateway 1");
    NEED(h_dev_sync(bob, WAIT_MS) == 0);
    h_dev *one[] = {bob};
    h_count_goal g = {one, 1, direct, n, 1};
    CHECK(h_pump(one, 1, h_pred_count, &g, WAIT_MS), "bob has %zu of %zu after sync", h_dev_count(bob, direct), n);
    char why[256];
    CHECK(h_expect_exact(bob, direct, exp, n, why, sizeof why) == 0, "bob after the kill: %s", why);
    /* and new messages reach him live on the gateway he moved to */
    CHECK(h_send_rec(cid, direct, "after the move", exp, &n) == 0, "send after the move");
    g.want = n;
    CHECK(h_pump(both, 2, h_pred_count, &g, WAIT_MS), "bob got nothing live on gateway 1");
    CHECK(h_expect_exact(bob, direct, exp, n, why, sizeof why) == 0, "bob after the move: %s", why);
}

typedef struct has_seq_goal {
    h_dev *const *devs;
    size_t n;
    uint64_t conv, seq;
} has_seq_goal;

static int both_have_seq(void *ud) {
    const has_seq_goal *g = ud;
    for (size_t i = 0; i < g->n; i++)
        if (!h_dev_has(g->devs[i], g->conv, g->seq)) return 0;
    return 1;
}

/* gw's /healthz answers want_status with want_text in its body (bounded) */
static int health_becomes(h_server *gw, int want_status, const char *want_text, char *body, size_t cap) {
    for (int i = 0; i < WAIT_MS / 100; i++) {
        int status = 0;
        if (h_http_get(gw->port, "/healthz", &status, body, cap) == 0 && status == want_status &&
            strstr(body, want_text))
            return 1;
        h_sleep_ms(100);
    }
    return 0;
}

/* ann and bob are on gateway 1 now (gateway 2 was killed) */
static void chat_node_killed_then_back(void) {
    NEED(started && ann && bob);
    char body[512];
    CHECK(health_becomes(&gw1, 200, "ok", body, sizeof body), "gateway 1 not healthy before: '%s'", body);
    uint64_t direct = 0;
    NEED(pc_open_direct(ann->c, bob->id.user_id, &direct) == 0);
    h_server_kill9(&chat);
    CHECK(health_becomes(&gw1, 503, "waiting for chat link", body, sizeof body),
          "gateway 1's /healthz never said it waits for the chat link: '%s'", body);
    uint64_t seq = 0;
    int rc = pc_send_text(ann->c, direct, "while the chat node is away", &seq);
    int status = pc_status(ann->c);
    CHECK(rc != 0 && status == PARLEY__V1__STATUS__UNAVAILABLE, "a send without a chat node: rc %d, status %d", rc,
          status);
    CHECK(h_server_restart(&chat) == 0, "the chat node did not come back");
    CHECK(health_becomes(&gw1, 200, "ok", body, sizeof body), "gateway 1 did not recover: '%s'", body);
    CHECK(chat_linked(&gw1), "gateway 1 never linked to the chat node again");
    h_sent exp[2];
    size_t n = 0;
    CHECK(h_send_rec(ann, direct, "after the chat node is back", exp, &n) == 0, "the send after recovery failed");
    h_dev *both[] = {ann, bob};
    has_seq_goal g = {both, 2, direct, exp[0].seq};
    CHECK(h_pump(both, 2, both_have_seq, &g, WAIT_MS), "seq %llu after recovery did not reach both",
          (unsigned long long)exp[0].seq);
}

int main(void) {
    RUN(start_nodes);
    RUN(chat_across_nodes);
    RUN(gateway_killed_while_sending);
    RUN(chat_node_killed_then_back);
    h_server_destroy(&gw1);
    h_server_destroy(&gw2);   /* killed: only its directory goes */
    h_server_destroy(&chat);
    cassandra_node_stop();
    redis_cluster_stop();
    CHECK_EXIT();
}
