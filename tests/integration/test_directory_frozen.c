/* test_directory_frozen.c -- a gateway node keeps the chat node it knows
 * while the Redis master holding the chat node's node directory shard is
 * silent (SIGSTOP: alive, TCP open, answering nothing), on a real
 * three-master Redis Cluster (its own: it signals a master) and a real
 * Cassandra node (cassandra_node.h).
 *
 * A chat node (every role) and a `--roles gateway` node, named so their
 * directory shards (src/registry/redis_node_shards.c) are on different
 * masters; the chat node's shard's master is frozen. The gateway node's
 * listings then miss that shard (/metrics
 * parley_cluster_directory_shards_missing > 0) but still hear the others,
 * and the chat node it knew stays its chat node: a send through the
 * gateway is stored and SENT, not answered UNAVAILABLE. After SIGCONT the
 * listing is whole again and a send reaches the member on the chat node,
 * every message once, in order. The master is sent SIGCONT on every path
 * of the case (and by the cluster's stop). Every wait is on observable
 * state with a generous bound; nothing is timed.
 *
 * Seen failing: with discover_once (src/cluster/node_forward.c) marking
 * every known peer unlisted before each listing, as it did before the
 * directory had shards: "a send through the gateway while the chat
 * node's directory shard was frozen: rc -1, status 503" (the client:
 * "server busy; retry shortly"), the gateway having dropped its chat
 * node at the first listing that missed its shard. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "cassandra_node.h"
#include "harness.h"
#include "node_pair.h"
#include "redis_cluster_node.h"
#include "registry/redis_cluster_parse.h"
#include "registry/redis_node_shards.h"

#define NEED(x) CHECK((x), "%s", #x)

enum { WAIT_MS = 120000 };

static h_server chat, gw;
static int started;
static int owners[RC_SLOTS];
static pid_t frozen_pid; /* > 0 while a master is SIGSTOPped */
static char chat_name[32], gw_name[32];

static void thaw(void) {
    if (frozen_pid > 0) kill(frozen_pid, SIGCONT);
    frozen_pid = 0;
}

static int master_of_name(const char *name) {
    const char *key = rr_node_shard_key(rr_node_shard(name));
    return owners[rc_key_slot(key, strlen(key))];
}

/* The directory entries outlive the freeze (60 s): what the gateway keeps
 * is what it heard, not an entry that expired meanwhile. */
static int start_node(h_server *s, const char *name, int gateway) {
    node_opts o = {.keyspace = "directory_frozen", .node_ttl_ms = "60000"};
    return node_start(s, name, gateway, &o);
}

static void start_nodes(void) {
    CHECK(redis_cluster_start("directory-frozen") == 0, "the Redis Cluster did not start");
    CHECK(cassandra_node_start("test-directory-frozen") == 0, "no Cassandra");
    CHECK(redis_cluster_owner_map(owners) == 0, "owner map");
    /* chat-1, and the first gw-J whose shard is on another master (chat-J
     * and gw-J share a shard for every J: FNV-1a mod 8 sees only the low
     * three bits of each byte, and the two prefixes leave the same state) */
    snprintf(chat_name, sizeof chat_name, "chat-1");
    int chat_master = master_of_name(chat_name);
    for (int j = 1; j < 100 && !gw_name[0] && chat_master >= 0; j++) {
        snprintf(gw_name, sizeof gw_name, "gw-%d", j);
        if (master_of_name(gw_name) < 0 || master_of_name(gw_name) == chat_master) gw_name[0] = '\0';
    }
    CHECK(gw_name[0], "no gateway name with its shard on another master than %s's", chat_name);
    CHECK(start_node(&chat, chat_name, 0) == 0, "the chat node did not start");
    CHECK(start_node(&gw, gw_name, 1) == 0, "the gateway node did not start");
    CHECK(node_chat_linked(&gw, WAIT_MS), "the gateway node never linked to the chat node");
    started = 1;
}

/* gw's parley_cluster_directory_shards_missing becomes want (or more, when
 * at_least) within the bound: 1 or 0 */
static int shards_missing_becomes(double want, int at_least) {
    for (int i = 0; i < WAIT_MS / 100; i++) {
        double v = -1;
        if (h_metric(&gw, "parley_cluster_directory_shards_missing", &v) == 0 && (at_least ? v >= want : v == want))
            return 1;
        h_sleep_ms(100);
    }
    return 0;
}

static void a_gateway_keeps_its_chat_node_while_its_shard_is_silent(void) {
    NEED(started);
    h_dev *ann = h_user_new(&gw, "ann");
    h_dev *bob = h_user_new(&chat, "bob");
    CHECK(ann && bob, "sign-up failed (ann %p, bob %p)", (void *)ann, (void *)bob);
    NEED(h_dev_sync(ann, WAIT_MS) == 0 && h_dev_sync(bob, WAIT_MS) == 0);
    uint64_t direct = 0;
    NEED(pc_open_direct(ann->c, bob->id.user_id, &direct) == 0);
    NEED(h_accept(bob, direct) == 0);
    h_sent exp[3];
    size_t n = 0;
    CHECK(h_send_rec(ann, direct, "before the freeze", exp, &n) == 0, "the send before the freeze failed");

    int victim = master_of_name(chat_name);
    pid_t pid = redis_cluster_pid(victim);
    CHECK(pid > 0 && kill(pid, SIGSTOP) == 0, "SIGSTOP master %d", victim);
    frozen_pid = pid;
    /* a listing of the gateway's that missed the frozen shards has been
     * taken by its peers (the gauge is set after them) */
    int partial = shards_missing_becomes(1, 1);
    uint64_t seq = partial ? h_send(ann, direct, "while the chat node's shard is frozen") : 0;
    int status = seq ? 0 : pc_status(ann->c);
    thaw(); /* before any check */
    if (seq) {
        exp[n].seq = seq;
        exp[n].sender = ann->id.user_id;
        snprintf(exp[n].text, sizeof exp[n].text, "%s", "while the chat node's shard is frozen");
        n++;
    }
    CHECK(partial, "the gateway's listings never missed a shard while master %d was frozen", victim);
    CHECK(seq, "a send through the gateway while the chat node's directory shard was frozen: rc -1, status %d",
          status);

    CHECK(shards_missing_becomes(0, 0), "the gateway's listing never whole again after SIGCONT");
    CHECK(h_send_rec(ann, direct, "after the thaw", exp, &n) == 0, "the send after the thaw failed");
    h_dev *both[] = {ann, bob};
    h_count_goal g = {both, 2, direct, n, 1};
    CHECK(h_pump(both, 2, h_pred_count, &g, WAIT_MS), "bob has %zu of %zu", h_dev_count(bob, direct), n);
    char why[256];
    CHECK(h_expect_exact(bob, direct, exp, n, why, sizeof why) == 0, "bob: %s", why);
    CHECK(h_expect_exact(ann, direct, exp, n, why, sizeof why) == 0, "ann: %s", why);
    h_dev_free(ann);
    h_dev_free(bob);
}

int main(void) {
    RUN(start_nodes);
    RUN(a_gateway_keeps_its_chat_node_while_its_shard_is_silent);
    thaw();
    h_server_destroy(&gw);
    h_server_destroy(&chat);
    cassandra_node_stop();
    redis_cluster_stop();
    CHECK_EXIT();
}
