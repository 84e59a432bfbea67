/* test_nodes_realtime.c -- what is ephemeral crosses nodes too
 * (cluster/presence_bus.h): a chat node and two gateway nodes on a real
 * Redis Cluster (sharded pub/sub) and a real Cassandra node.
 *
 *   - presence: ann on gateway 1 subscribes to bob on gateway 2: she is
 *     told he is online, then offline (with a last seen) when he leaves,
 *     then online when he comes back;
 *   - typing: ann types in a group with bob (gateway 2) and cid (the chat
 *     node): both get the indicator, ann (the typist) does not;
 *   - the connect race: bob signs in on gateway 2 and syncs while every
 *     Redis master is stopped (his session entry cannot be written); cid
 *     sends to him and the chat node's lookup fails (no entry: not sent
 *     live); once Redis continues and bob's entry is written, he gets the
 *     message without syncing again (cluster/session_registry.h
 *     session_registry_set_live).
 * Every wait is on observable state (frames, /metrics) with a generous
 * bound; nothing is timed. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "cassandra_node.h"
#include "harness.h"
#include "redis_cluster_node.h"

#define NEED(x) CHECK((x), "%s", #x)

enum { WAIT_MS = 120000, MAX_SEEN = 256 };

static h_server chat, gw1, gw2;
static int started;

static int start_node(h_server *s, const char *name, int gateway) {
    char internal[64];
    snprintf(internal, sizeof internal, "127.0.0.1:%d", h_free_port());
    const char *args[] = {"--store", "cassandra", "--cassandra", cassandra_node_hosts(), "--keyspace", "nodes_rt",
                          "--node", name, "--internal-listen", internal, "--redis", redis_cluster_seeds(),
                          "--node-ttl-ms", "30000", "--session-ttl-ms", "6000",
                          gateway ? "--roles" : NULL, "gateway", NULL};
    return h_server_start(s, args);
}

static int chat_linked(h_server *s) {
    double up = 0;
    for (int i = 0; i < WAIT_MS / 100; i++) {
        if (h_metric(s, "parley_cluster_chat_link_up", &up) == 0 && up == 1) return 1;
        h_sleep_ms(100);
    }
    return 0;
}

static void start_nodes(void) {
    CHECK(redis_cluster_start("nodes-rt") == 0, "the Redis Cluster did not start");
    CHECK(cassandra_node_start("test-nodes-rt") == 0, "no Cassandra");
    CHECK(start_node(&chat, "chat-1", 0) == 0, "the chat node did not start");
    CHECK(start_node(&gw1, "gw-1", 1) == 0, "gateway 1 did not start");
    CHECK(start_node(&gw2, "gw-2", 1) == 0, "gateway 2 did not start");
    CHECK(chat_linked(&gw1), "gateway 1 never linked to the chat node");
    CHECK(chat_linked(&gw2), "gateway 2 never linked to the chat node");
    started = 1;
}

/* ---------------------------------------------------- what a device saw */

typedef struct seen {
    uint64_t pres_user[MAX_SEEN], pres_last_seen[MAX_SEEN];
    int pres_online[MAX_SEEN];
    size_t n_pres;
    uint64_t typing_conv[MAX_SEEN], typing_user[MAX_SEEN];
    size_t n_typing;
} seen;

static void on_presence(void *ud, const Parley__V1__Presence *p) {
    seen *s = ud;
    if (s->n_pres == MAX_SEEN) return;
    s->pres_user[s->n_pres] = p->user_id;
    s->pres_online[s->n_pres] = p->online;
    s->pres_last_seen[s->n_pres] = p->last_seen_ts;
    s->n_pres++;
}

static void on_typing(void *ud, const Parley__V1__TypingIndicator *t) {
    seen *s = ud;
    if (s->n_typing == MAX_SEEN) return;
    s->typing_conv[s->n_typing] = t->conversation_id;
    s->typing_user[s->n_typing] = t->user_id;
    s->n_typing++;
}

static void hook(h_dev *d, seen *s) {
    pc_on_presence(d->c, on_presence, s);
    pc_on_typing(d->c, on_typing, s);
}

typedef struct presence_goal {
    const seen *s;
    uint64_t user;
    int online;
    size_t after;   /* only pushes from this index on count */
} presence_goal;

/* the latest presence of user from index after on says online */
static int pred_presence(void *ud) {
    const presence_goal *g = ud;
    for (size_t i = g->s->n_pres; i > g->after; i--)
        if (g->s->pres_user[i - 1] == g->user) return g->s->pres_online[i - 1] == g->online;
    return 0;
}

static h_dev *ann, *bob, *cid;   /* on gateway 1, gateway 2, the chat node */
static seen ann_seen, bob_seen, cid_seen;

static void users(void) {
    NEED(started);
    ann = h_user_new(&gw1, "ann");
    bob = h_user_new(&gw2, "bob");
    cid = h_user_new(&chat, "cid");
    CHECK(ann && bob && cid, "sign-up through the nodes failed");
    hook(ann, &ann_seen);
    hook(bob, &bob_seen);
    hook(cid, &cid_seen);
    NEED(h_dev_sync(ann, WAIT_MS) == 0 && h_dev_sync(bob, WAIT_MS) == 0 && h_dev_sync(cid, WAIT_MS) == 0);
}

/* ann (gateway 1) watches bob (gateway 2) go online, offline, online */
static void presence_across_nodes(void) {
    NEED(ann && bob);
    uint64_t direct = 0;
    NEED(pc_open_direct(ann->c, bob->id.user_id, &direct) == 0);
    NEED(h_accept(bob, direct) == 0);   /* presence only of those who accepted you */
    uint64_t bob_id = bob->id.user_id;
    CHECK(pc_subscribe_presence(ann->c, &bob_id, 1) == 0, "subscribe: %s", pc_error(ann->c));
    h_dev *one[] = {ann};
    presence_goal online = {&ann_seen, bob_id, 1, 0};
    CHECK(h_pump(one, 1, pred_presence, &online, WAIT_MS), "ann was never told bob (gateway 2) is online (%zu pushes)",
          ann_seen.n_pres);

    size_t before = ann_seen.n_pres;
    h_dev_disconnect(bob);
    presence_goal offline = {&ann_seen, bob_id, 0, before};
    CHECK(h_pump(one, 1, pred_presence, &offline, WAIT_MS), "ann was never told bob left gateway 2");
    CHECK(ann_seen.pres_last_seen[ann_seen.n_pres - 1] > 0, "the offline presence has no last seen");

    before = ann_seen.n_pres;
    CHECK(h_dev_reconnect(&gw2, bob, 0) == 0, "bob could not sign in again on gateway 2");
    hook(bob, &bob_seen);
    NEED(h_dev_sync(bob, WAIT_MS) == 0);
    presence_goal back = {&ann_seen, bob_id, 1, before};
    CHECK(h_pump(one, 1, pred_presence, &back, WAIT_MS), "ann was never told bob is back on gateway 2");

    double published = 0, received = 0;
    CHECK(h_metric(&gw2, "parley_cluster_bus_published_total", &published) == 0 && published > 0,
          "gateway 2 published nothing (%g)", published);
    CHECK(h_metric(&gw1, "parley_cluster_bus_received_total", &received) == 0 && received > 0,
          "gateway 1 received nothing (%g)", received);
}

typedef struct typing_goal {
    const seen *const *who;
    size_t n;
    uint64_t conv, user;
} typing_goal;

static size_t typing_count(const seen *s, uint64_t conv, uint64_t user) {
    size_t k = 0;
    for (size_t i = 0; i < s->n_typing; i++) k += s->typing_conv[i] == conv && s->typing_user[i] == user;
    return k;
}

static int pred_typing(void *ud) {
    const typing_goal *g = ud;
    for (size_t i = 0; i < g->n; i++)
        if (typing_count(g->who[i], g->conv, g->user) == 0) return 0;
    return 1;
}

/* ann types in a group over the three nodes: bob and cid see it */
static void typing_across_nodes(void) {
    NEED(ann && bob && cid);
    uint64_t members[] = {bob->id.user_id, cid->id.user_id}, group = 0;
    NEED(pc_create_group(ann->c, "typing-rt", members, 2, &group) == 0);
    NEED(h_accept(bob, group) == 0 && h_accept(cid, group) == 0);
    h_dev *all[] = {ann, bob, cid};
    const seen *others[] = {&bob_seen, &cid_seen};
    typing_goal g = {others, 2, group, ann->id.user_id};
    CHECK(pc_typing(ann->c, group, 1) == 0, "typing: %s", pc_error(ann->c));
    int ok = h_pump(all, 3, pred_typing, &g, WAIT_MS);
    CHECK(ok, "typing did not reach the other nodes (bob %zu, cid %zu)",
          typing_count(&bob_seen, group, ann->id.user_id), typing_count(&cid_seen, group, ann->id.user_id));
    CHECK(typing_count(&ann_seen, group, ann->id.user_id) == 0, "the typist got her own indicator");
}

static void redis_signal(int sig) {
    for (int i = 0; i < 3; i++)
        if (redis_cluster_pid(i) > 0) kill(redis_cluster_pid(i), sig);
}

static int lookup_failed_since(h_server *s, double before) {
    double now = 0;
    for (int i = 0; i < WAIT_MS / 100; i++) {
        if (h_metric(s, "parley_cluster_lookup_failures_total", &now) == 0 && now > before) return 1;
        h_sleep_ms(100);
    }
    return 0;
}

typedef struct has_goal {
    h_dev *d;
    uint64_t conv, seq;
} has_goal;

static int pred_has(void *ud) {
    const has_goal *g = ud;
    return h_dev_has(g->d, g->conv, g->seq);
}

static void connect_race(void) {
    NEED(bob && cid);
    uint64_t direct = 0;
    NEED(pc_open_direct(cid->c, bob->id.user_id, &direct) == 0);
    NEED(h_accept(bob, direct) == 0);
    h_dev_disconnect(bob);
    h_dev_clear(bob);
    double failures = 0;
    NEED(h_metric(&chat, "parley_cluster_lookup_failures_total", &failures) == 0);
    redis_signal(SIGSTOP);
    int ok = h_dev_reconnect(&gw2, bob, 0) == 0 && h_dev_sync(bob, WAIT_MS) == 0;
    h_sent exp[2];
    size_t n = 0;
    ok = ok && h_send_rec(cid, direct, "while bob's entry is not written", exp, &n) == 0;
    /* the chat node looked bob up and found no entry (Redis does not answer) */
    int missed = ok && lookup_failed_since(&chat, failures);
    redis_signal(SIGCONT);
    CHECK(ok, "bob's sign-in and sync on gateway 2, or cid's send, failed while Redis was stopped");
    CHECK(missed, "the chat node's lookup of bob never failed while Redis was stopped");
    h_dev *both[] = {bob, cid};
    has_goal g = {bob, direct, exp[0].seq};
    CHECK(h_pump(both, 2, pred_has, &g, WAIT_MS), "bob never got seq %llu once his entry was written",
          (unsigned long long)exp[0].seq);
    char why[256];
    CHECK(h_expect_exact(bob, direct, exp, n, why, sizeof why) == 0, "bob: %s", why);
}

int main(void) {
    RUN(start_nodes);
    RUN(users);
    RUN(presence_across_nodes);
    RUN(typing_across_nodes);
    RUN(connect_race);
    h_server_destroy(&gw1);
    h_server_destroy(&gw2);
    h_server_destroy(&chat);
    cassandra_node_stop();
    redis_cluster_stop();
    CHECK_EXIT();
}
