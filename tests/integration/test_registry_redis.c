/* test_registry_redis.c -- the session registry on Redis Cluster
 * (src/registry/registry_redis.c) against a real three-master cluster,
 * started for the program by scripts/redis-cluster.sh and stopped by PID on
 * every exit path (one case SIGSTOPs a master, so tests/run.sh gives this
 * program its own cluster, never the shared one). Waits are on observable
 * state (a completion, a lookup's answer) with generous bounds; nothing
 * asserts a duration.
 *
 * The node directory's shards (src/registry/redis_node_shards.c):
 *   nodes_spread_over_the_directory_shards: 24 nodes, each entry in the
 *       key its name's FNV-1a shard names (HGET on that key), listed once
 *       each, 3 unregistered gone, short-lived ones expired.
 *   a_listing_survives_a_silent_master: the master that held the old one
 *       hash {nodes} SIGSTOPped (SIGCONT on every path): a listing still
 *       answers with every node of the shards on the two other masters and
 *       names the missing shards; after SIGCONT all 24 again.
 *       Seen failing: with the directory as it was (one hash {nodes}; only
 *       the callback's new argument added) the first case fails with
 *       "node-00 not in its shard key {nodes.0.114} (0 '')" and this one with
 *       "the listing while master 1 was frozen failed: timeout". */
#include "../check.h"
#include "redis_cluster_node.h"
#include "registry/redis_cluster_parse.h"
#include "registry/registry_redis.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 60000

static int cluster_up;
static rc_client *rc;
static registry_redis *reg; /* session TTL 60 s: nothing expires unless a case wants it */

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- synchronous wrappers: the callbacks fill a result, the test waits on it ---- */

typedef struct result {
    atomic_int done;
    int applied;
    char error[128];
    rr_device devs[RR_MAX_DEVICES];
    size_t n;
    int online;
    uint64_t last_seen;
    char addr[RR_ADDR_MAX];
    int has_addr;
    size_t refreshed, gone, failed;
    rr_node nodes[64]; /* a listing's, the first 64 */
    unsigned missing;  /* a listing's missing shards */
} result;

static int wait_result(result *res) {
    uint64_t until = now_ms() + WAIT_MS;
    while (!atomic_load(&res->done) && now_ms() < until)
        sleep_ms(2);
    return atomic_load(&res->done);
}

static void set_error(result *res, const char *error) {
    if (error)
        snprintf(res->error, sizeof res->error, "%s", error);
}

static void done_cb(void *ud, int applied, const char *error) {
    result *res = ud;
    res->applied = applied;
    set_error(res, error);
    atomic_store(&res->done, 1);
}

static void lookup_cb(void *ud, const rr_device *devs, size_t n, const char *error) {
    result *res = ud;
    res->n = n;
    memcpy(res->devs, devs, (n < RR_MAX_DEVICES ? n : RR_MAX_DEVICES) * sizeof *devs);
    set_error(res, error);
    atomic_store(&res->done, 1);
}

static void presence_cb(void *ud, int online, uint64_t last_seen, const char *error) {
    result *res = ud;
    res->online = online;
    res->last_seen = last_seen;
    set_error(res, error);
    atomic_store(&res->done, 1);
}

static void node_cb(void *ud, const char *addr, const char *error) {
    result *res = ud;
    res->has_addr = addr != NULL;
    if (addr)
        snprintf(res->addr, sizeof res->addr, "%s", addr);
    set_error(res, error);
    atomic_store(&res->done, 1);
}

static void nodes_cb(void *ud, const rr_node *nodes, size_t n, unsigned missing, const char *error) {
    result *res = ud;
    res->n = n;
    res->missing = missing;
    if (nodes)
        memcpy(res->nodes, nodes, (n < 64 ? n : 64) * sizeof *nodes);
    set_error(res, error);
    atomic_store(&res->done, 1);
}

static void batch_cb(void *ud, size_t refreshed, size_t gone, size_t failed) {
    result *res = ud;
    res->refreshed = refreshed;
    res->gone = gone;
    res->failed = failed;
    atomic_store(&res->done, 1);
}

/* -1 when the call failed or did not complete */
static int do_connect(registry_redis *r, const rr_session *s) {
    result res = {0};
    if (registry_redis_connect(r, s, done_cb, &res) != 0 || !wait_result(&res))
        return -1;
    if (res.applied < 0)
        fprintf(stderr, "  connect: %s\n", res.error);
    return res.applied;
}

static int do_disconnect(registry_redis *r, const rr_session *s) {
    result res = {0};
    if (registry_redis_disconnect(r, s, done_cb, &res) != 0 || !wait_result(&res))
        return -1;
    return res.applied;
}

static int do_lookup(uint64_t user, result *res) {
    memset(res, 0, sizeof *res);
    if (registry_redis_lookup(reg, user, lookup_cb, res) != 0 || !wait_result(res) || res->error[0])
        return -1;
    return (int)res->n;
}

static int do_presence(uint64_t user, result *res) {
    memset(res, 0, sizeof *res);
    if (registry_redis_presence(reg, user, presence_cb, res) != 0 || !wait_result(res) || res->error[0])
        return -1;
    return 0;
}

static const rr_device *find_device(const result *res, uint32_t device) {
    for (size_t i = 0; i < res->n && i < RR_MAX_DEVICES; i++)
        if (res->devs[i].device == device)
            return &res->devs[i];
    return NULL;
}

static uint64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* ---- cases ---- */

static void start_cluster(void) {
    CHECK(redis_cluster_start("registry-redis") == 0, "cluster did not start");
    cluster_up = 1;
    rc_options o = {.seeds = redis_cluster_seeds(), .timeout_ms = 10000};
    char err[200];
    rc = rc_new(&o, err, sizeof err);
    CHECK(rc, "rc_new: %s", err);
    CHECK(rc_wait_ready(rc, WAIT_MS) == 0, "slot map");
    rr_options ro = {.session_ttl_ms = 60000};
    reg = registry_redis_new(rc, &ro);
    CHECK(reg, "registry");
}

/* two devices of one user on two nodes: one lookup returns both with their
 * node and connection; presence online; after both disconnect, offline with
 * a last-seen */
static void connect_lookup_presence_disconnect(void) {
    uint64_t t = wall_ms();
    rr_session a = {.user = 1001, .device = 1, .conn_id = 11, .since_ms = t, .node = "gw-a"};
    rr_session b = {.user = 1001, .device = 2, .conn_id = 22, .since_ms = t, .node = "gw-b"};
    CHECK(do_connect(reg, &a) == 1, "connect a");
    CHECK(do_connect(reg, &b) == 1, "connect b");
    result res;
    CHECK(do_lookup(1001, &res) == 2, "lookup %zu (%s)", res.n, res.error);
    const rr_device *da = find_device(&res, 1), *db = find_device(&res, 2);
    CHECK(da && db, "both devices");
    CHECK(da->conn_id == 11 && strcmp(da->node, "gw-a") == 0 && da->since_ms == t, "device 1 entry");
    CHECK(db->conn_id == 22 && strcmp(db->node, "gw-b") == 0, "device 2 entry");
    CHECK(do_presence(1001, &res) == 0 && res.online == 1, "online");
    CHECK(do_disconnect(reg, &a) == 1, "disconnect a");
    CHECK(do_lookup(1001, &res) == 1 && res.devs[0].device == 2, "one left");
    CHECK(do_presence(1001, &res) == 0 && res.online == 1, "still online");
    CHECK(do_disconnect(reg, &b) == 1, "disconnect b");
    CHECK(do_lookup(1001, &res) == 0, "none left");
    CHECK(do_presence(1001, &res) == 0 && res.online == 0, "offline");
    CHECK(res.last_seen > 0, "last seen kept");
    CHECK(do_presence(999999, &res) == 0 && res.online == 0 && res.last_seen == 0, "never seen");
}

/* the reconnect race: the device reconnects to gateway B while gateway A
 * still has to clean up its old connection; A's disconnect (and a late
 * connect of A's older session) must leave B's entry */
static void a_reconnect_beats_the_old_gateways_cleanup(void) {
    uint64_t t = wall_ms();
    rr_session old = {.user = 2002, .device = 7, .conn_id = 500, .since_ms = t, .node = "gw-a"};
    rr_session neu = {.user = 2002, .device = 7, .conn_id = 3, .since_ms = t + 1, .node = "gw-b"};
    CHECK(do_connect(reg, &old) == 1, "old connect");
    CHECK(do_connect(reg, &neu) == 1, "new connect replaces the older entry");
    CHECK(do_disconnect(reg, &old) == 0, "old disconnect of a newer entry must be a no-op");
    CHECK(do_connect(reg, &old) == 0, "a late connect of the older session must lose");
    result res;
    CHECK(do_lookup(2002, &res) == 1, "lookup %zu", res.n);
    CHECK(res.devs[0].conn_id == 3 && strcmp(res.devs[0].node, "gw-b") == 0, "entry is the new one (%llu %s)",
          (unsigned long long)res.devs[0].conn_id, res.devs[0].node);
    /* a connect with the same since from another node: one deterministic winner */
    rr_session tie = {.user = 2002, .device = 7, .conn_id = 1, .since_ms = t + 1, .node = "gw-a"};
    CHECK(do_connect(reg, &tie) == 0, "tie: gw-a < gw-b loses");
    CHECK(do_disconnect(reg, &neu) == 1, "the new gateway's own disconnect applies");
    CHECK(do_lookup(2002, &res) == 0, "gone");
}

/* an entry that is not refreshed expires (by Redis's clock) and lookup and
 * presence stop seeing it; an entry of the same user with a longer TTL
 * stays; a heartbeat for the expired one reports it gone */
static void an_entry_not_refreshed_expires(void) {
    rr_options shortlived = {.session_ttl_ms = 1000};
    registry_redis *fast = registry_redis_new(rc, &shortlived);
    CHECK(fast, "registry");
    uint64_t t = wall_ms();
    rr_session s = {.user = 3003, .device = 1, .conn_id = 9, .since_ms = t, .node = "gw-a"};
    rr_session keep = {.user = 3003, .device = 2, .conn_id = 10, .since_ms = t, .node = "gw-a"};
    int c1 = do_connect(fast, &s), c2 = do_connect(reg, &keep);
    result res;
    int n = -1;
    uint64_t until = now_ms() + WAIT_MS;
    while (c1 == 1 && now_ms() < until) {
        n = do_lookup(3003, &res);
        if (n == 1 && !find_device(&res, 1))
            break;
        sleep_ms(100);
    }
    result hb = {0};
    int hb_rc = registry_redis_heartbeat(fast, &s, 1, batch_cb, &hb);
    int hb_done = hb_rc == 0 && wait_result(&hb);
    registry_redis_free(fast);
    CHECK(c1 == 1 && c2 == 1, "connects");
    CHECK(n == 1 && find_device(&res, 2) && !find_device(&res, 1), "device 1 never expired (lookup %d)", n);
    CHECK(hb_done && hb.gone == 1 && hb.refreshed == 0, "heartbeat of an expired entry: refreshed %zu gone %zu",
          hb.refreshed, hb.gone);
    CHECK(do_disconnect(reg, &keep) == 1, "disconnect the other");
    CHECK(do_presence(3003, &res) == 0 && res.online == 0 && res.last_seen > 0, "offline, last seen");
}

/* INFO memory used_memory summed over the masters; -1 on failure */
static long long used_memory(void) {
    long long sum = 0;
    for (int i = 0; i < REDIS_CLUSTER_MASTERS; i++) {
        struct timeval tv = {10, 0};
        redisContext *d = redisConnectWithTimeout("127.0.0.1", redis_cluster_port(i), tv);
        redisReply *r = d && !d->err ? redisCommand(d, "INFO memory") : NULL;
        const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "used_memory:") : NULL;
        long long v = p ? atoll(p + strlen("used_memory:")) : -1;
        if (r)
            freeReplyObject(r);
        if (d)
            redisFree(d);
        if (v < 0)
            return -1;
        sum += v;
    }
    return sum;
}

/* a gateway's heartbeat: 10,000 sessions refreshed in one pipelined batch;
 * after half of them disconnect, the next heartbeat reports those gone */
static void heartbeat_refreshes_10000_sessions_in_one_batch(void) {
    enum { N = 10000 };
    static rr_session s[N];
    uint64_t t = wall_ms();
    for (int i = 0; i < N; i++)
        s[i] = (rr_session){.user = 500000 + (uint64_t)i, .device = 1, .conn_id = (uint64_t)i + 1, .since_ms = t,
                            .node = "gw-hb"};
    static result conns[N];
    memset(conns, 0, sizeof conns);
    long long mem0 = used_memory();
    for (int i = 0; i < N; i++)
        CHECK(registry_redis_connect(reg, &s[i], done_cb, &conns[i]) == 0, "connect %d refused", i);
    int applied = 0;
    for (int i = 0; i < N; i++)
        applied += wait_result(&conns[i]) && conns[i].applied == 1;
    CHECK(applied == N, "%d of %d connected", applied, N);

    long long mem1 = used_memory();
    check_note("%d users with one session each: %lld bytes of Redis used_memory per user (all 3 masters)", N, mem0 >= 0 && mem1 > mem0 ? (mem1 - mem0) / N : -1LL);
    rc_stats st0;
    rc_get_stats(rc, &st0);
    uint64_t loads0 = registry_redis_script_loads(reg);
    uint64_t t0 = now_ms();
    result hb = {0};
    CHECK(registry_redis_heartbeat(reg, s, N, batch_cb, &hb) == 0, "heartbeat");
    CHECK(wait_result(&hb), "heartbeat never completed");
    uint64_t took = now_ms() - t0;
    rc_stats st1;
    rc_get_stats(rc, &st1);
    CHECK(hb.refreshed == N && hb.gone == 0 && hb.failed == 0, "refreshed %zu gone %zu failed %zu", hb.refreshed,
          hb.gone, hb.failed);
    /* one command per session, plus one EVAL resend per EVALSHA that met a
     * master before the script did (NOSCRIPT) */
    uint64_t resent = registry_redis_script_loads(reg) - loads0;
    CHECK(st1.commands - st0.commands == N + resent, "%llu commands for %d sessions (%llu resent as EVAL)",
          (unsigned long long)(st1.commands - st0.commands), N, (unsigned long long)resent);
    check_note("heartbeat of %d sessions: %llu ms, peak in flight on one node %llu (engines and tests share 2 cores)",
               N, (unsigned long long)took, (unsigned long long)st1.peak_in_flight);

    static result dis[N / 2];
    memset(dis, 0, sizeof dis);
    for (int i = 0; i < N / 2; i++)
        CHECK(registry_redis_disconnect(reg, &s[i], done_cb, &dis[i]) == 0, "disconnect %d", i);
    int gone = 0;
    for (int i = 0; i < N / 2; i++)
        gone += wait_result(&dis[i]) && dis[i].applied == 1;
    CHECK(gone == N / 2, "%d disconnected", gone);
    memset(&hb, 0, sizeof hb);
    CHECK(registry_redis_heartbeat(reg, s, N, batch_cb, &hb) == 0, "heartbeat 2");
    CHECK(wait_result(&hb), "heartbeat 2 never completed");
    CHECK(hb.refreshed == N / 2 && hb.gone == N / 2 && hb.failed == 0, "refreshed %zu gone %zu failed %zu",
          hb.refreshed, hb.gone, hb.failed);
}

static long long memory_usage(const char *key) {
    char err[128];
    const char *argv[] = {"MEMORY", "USAGE", key, "SAMPLES", "0"};
    redisReply *r = rc_command_sync(rc, key, strlen(key), 5, argv, NULL, err, sizeof err);
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r)
        freeReplyObject(r);
    return v;
}

/* the bytes Redis spends per session entry (MEMORY USAGE): printed, and
 * checked only to be measured */
static void measures_bytes_per_session_entry(void) {
    uint64_t t = wall_ms();
    rr_session s = {.user = 4004, .device = 1, .conn_id = 123456, .since_ms = t, .node = "gw-07"};
    CHECK(do_connect(reg, &s) == 1, "connect");
    long long one = memory_usage("{u:4004}");
    s.device = 2;
    s.conn_id = 123457;
    CHECK(do_connect(reg, &s) == 1, "connect 2");
    long long two = memory_usage("{u:4004}");
    CHECK(one > 0 && two > one, "MEMORY USAGE %lld %lld", one, two);
    check_note("MEMORY USAGE {u:ID} (sessions and last seen of a user): %lld bytes with 1 device, %lld with 2 "
               "(+%lld per further device)",
               one, two, two - one);
}

/* the node directory: register, look up, list, unregister, and expiry of
 * a node that stops refreshing */
static void node_directory(void) {
    result res = {0};
    CHECK(registry_redis_node_register(reg, "n1", "127.0.0.1:7001", done_cb, &res) == 0 && wait_result(&res) &&
              res.applied == 1,
          "register n1");
    memset(&res, 0, sizeof res);
    CHECK(registry_redis_node_register(reg, "n2", "127.0.0.1:7002", done_cb, &res) == 0 && wait_result(&res) &&
              res.applied == 1,
          "register n2");
    memset(&res, 0, sizeof res);
    CHECK(registry_redis_node_lookup(reg, "n1", node_cb, &res) == 0 && wait_result(&res), "lookup n1");
    CHECK(res.has_addr && strcmp(res.addr, "127.0.0.1:7001") == 0, "n1 -> %s", res.addr);
    memset(&res, 0, sizeof res);
    CHECK(registry_redis_nodes(reg, nodes_cb, &res) == 0 && wait_result(&res) && res.n == 2, "list %zu", res.n);
    memset(&res, 0, sizeof res);
    CHECK(registry_redis_node_unregister(reg, "n2", done_cb, &res) == 0 && wait_result(&res) && res.applied == 1,
          "unregister");
    memset(&res, 0, sizeof res);
    CHECK(registry_redis_nodes(reg, nodes_cb, &res) == 0 && wait_result(&res) && res.n == 1, "list %zu", res.n);
    CHECK(registry_redis_node_register(reg, "bad name", "x", done_cb, &res) == -1, "a name with a space accepted");

    rr_options shortlived = {.node_ttl_ms = 1000};
    registry_redis *fast = registry_redis_new(rc, &shortlived);
    CHECK(fast, "registry");
    memset(&res, 0, sizeof res);
    int reg_ok = registry_redis_node_register(fast, "n3", "127.0.0.1:7003", done_cb, &res) == 0 && wait_result(&res);
    registry_redis_free(fast);
    CHECK(reg_ok && res.applied == 1, "register n3");
    int expired = 0;
    uint64_t until = now_ms() + WAIT_MS;
    while (!expired && now_ms() < until) {
        memset(&res, 0, sizeof res);
        if (registry_redis_node_lookup(reg, "n3", node_cb, &res) == 0 && wait_result(&res) && !res.error[0])
            expired = !res.has_addr;
        if (!expired)
            sleep_ms(100);
    }
    CHECK(expired, "n3 never expired");
}

/* ---- the node directory's shards ---- */

enum { DIR_NODES = 24 };
static int owners[RC_SLOTS]; /* the master of each slot (node index) */

static void dir_name(char *out, size_t cap, const char *prefix, int i) { snprintf(out, cap, "%s-%02d", prefix, i); }

static int shard_master(unsigned shard) {
    const char *k = rr_node_shard_key(shard);
    return owners[rc_key_slot(k, strlen(k))];
}

/* The raw entry of name in key (HGET, not through the scripts): 1 with its
 * address in addr, 0 absent, -1 Redis did not answer. */
static int raw_entry(const char *key, const char *name, char *addr, size_t cap) {
    const char *argv[] = {"HGET", key, name};
    char err[128];
    redisReply *r = rc_command_sync(rc, key, strlen(key), 3, argv, NULL, err, sizeof err);
    int got = !r ? -1 : r->type == REDIS_REPLY_STRING ? 1 : r->type == REDIS_REPLY_NIL ? 0 : -1;
    if (got == 1 && addr) {
        const char *sp = strchr(r->str, ' ');
        snprintf(addr, cap, "%s", sp ? sp + 1 : "");
    }
    if (r)
        freeReplyObject(r);
    return got;
}

/* every shard key deleted: the case starts from an empty directory; 0 or -1 */
static int clear_directory(void) {
    for (unsigned i = 0; i < RR_NODE_SHARDS; i++) {
        const char *k = rr_node_shard_key(i);
        const char *argv[] = {"DEL", k};
        char err[128];
        redisReply *r = rc_command_sync(rc, k, strlen(k), 2, argv, NULL, err, sizeof err);
        int ok = r && r->type == REDIS_REPLY_INTEGER;
        if (r)
            freeReplyObject(r);
        if (!ok)
            return -1;
    }
    return 0;
}

static int do_node_register(registry_redis *r, const char *name, const char *addr) {
    result res = {0};
    if (registry_redis_node_register(r, name, addr, done_cb, &res) != 0 || !wait_result(&res))
        return -1;
    return res.applied;
}

/* a listing into res: 0, or -1 when it was refused or never completed */
static int do_list(result *res) {
    memset(res, 0, sizeof *res);
    return registry_redis_nodes(reg, nodes_cb, res) == 0 && wait_result(res) ? 0 : -1;
}

/* how many times name is in the listing res (its address checked) */
static int times_listed(const result *res, const char *name, const char *addr) {
    int seen = 0;
    for (size_t i = 0; i < res->n && i < 64; i++)
        if (strcmp(res->nodes[i].name, name) == 0)
            seen += addr == NULL || strcmp(res->nodes[i].addr, addr) == 0 ? 1 : 100;
    return seen;
}

/* 24 nodes: each entry in its name's shard key and in no other; shards on
 * all three masters; one listing names each once; unregistering 3 removes
 * exactly those; entries that are not refreshed expire (Redis's clock) and
 * leave the listing and their key */
static void nodes_spread_over_the_directory_shards(void) {
    CHECK(redis_cluster_owner_map(owners) == 0, "owner map");
    CHECK(clear_directory() == 0, "clear the directory");
    char name[32], addr[RR_ADDR_MAX], got[RR_ADDR_MAX];
    int masters_used[REDIS_CLUSTER_MASTERS] = {0};
    for (int i = 0; i < DIR_NODES; i++) {
        dir_name(name, sizeof name, "node", i);
        snprintf(addr, sizeof addr, "127.0.0.1:%d/gateway", 7100 + i);
        CHECK(do_node_register(reg, name, addr) == 1, "register %s", name);
        unsigned shard = rr_node_shard(name);
        for (unsigned k = 0; k < RR_NODE_SHARDS; k++) {
            int has = raw_entry(rr_node_shard_key(k), name, got, sizeof got);
            if (k == shard)
                CHECK(has == 1 && strcmp(got, addr) == 0, "%s not in its shard key %s (%d '%s')", name,
                      rr_node_shard_key(k), has, got);
            else
                CHECK(has == 0, "%s (shard %u) also in %s (%d)", name, shard, rr_node_shard_key(k), has);
        }
        int m = shard_master(shard);
        CHECK(m >= 0, "no master for %s", rr_node_shard_key(shard));
        masters_used[m]++;
    }
    CHECK(masters_used[0] && masters_used[1] && masters_used[2], "entries on masters %d/%d/%d", masters_used[0],
          masters_used[1], masters_used[2]);

    result res;
    CHECK(do_list(&res) == 0 && !res.error[0], "list: %s", res.error);
    CHECK(res.n == DIR_NODES && res.missing == 0, "listed %zu, missing shards 0x%x", res.n, res.missing);
    for (int i = 0; i < DIR_NODES; i++) {
        dir_name(name, sizeof name, "node", i);
        snprintf(addr, sizeof addr, "127.0.0.1:%d/gateway", 7100 + i);
        CHECK(times_listed(&res, name, addr) == 1, "%s listed %d times", name, times_listed(&res, name, addr));
    }

    const int gone[] = {3, 11, 17};
    for (int g = 0; g < 3; g++) {
        dir_name(name, sizeof name, "node", gone[g]);
        memset(&res, 0, sizeof res);
        CHECK(registry_redis_node_unregister(reg, name, done_cb, &res) == 0 && wait_result(&res) && res.applied == 1,
              "unregister %s: %d %s", name, res.applied, res.error);
        CHECK(raw_entry(rr_node_shard_key(rr_node_shard(name)), name, NULL, 0) == 0, "%s still in its key", name);
    }
    CHECK(do_list(&res) == 0 && !res.error[0] && res.missing == 0, "list: %s", res.error);
    CHECK(res.n == DIR_NODES - 3, "listed %zu after 3 unregistered", res.n);
    for (int i = 0; i < DIR_NODES; i++) {
        dir_name(name, sizeof name, "node", i);
        int want = i == gone[0] || i == gone[1] || i == gone[2] ? 0 : 1;
        CHECK(times_listed(&res, name, NULL) == want, "%s listed %d times, want %d", name,
              times_listed(&res, name, NULL), want);
    }

    /* short-lived entries (1 s) in several shards: they expire and the
     * listing drops them (and deletes them from their keys) */
    rr_options shortlived = {.node_ttl_ms = 1000};
    registry_redis *fast = registry_redis_new(rc, &shortlived);
    CHECK(fast, "registry");
    int registered = 0;
    for (int i = 0; i < 8; i++) {
        dir_name(name, sizeof name, "brief", i);
        registered += do_node_register(fast, name, "127.0.0.1:7200/chat") == 1;
    }
    registry_redis_free(fast);
    CHECK(registered == 8, "%d of 8 short-lived nodes registered", registered);
    int expired = 0;
    uint64_t until = now_ms() + WAIT_MS;
    while (!expired && now_ms() < until) {
        if (do_list(&res) == 0 && !res.error[0] && res.missing == 0 && res.n == DIR_NODES - 3)
            expired = 1;
        else
            sleep_ms(100);
    }
    CHECK(expired, "short-lived nodes never left the listing (%zu listed)", res.n);
    for (int i = 0; i < 8; i++) {
        dir_name(name, sizeof name, "brief", i);
        CHECK(times_listed(&res, name, NULL) == 0, "%s still listed", name);
        CHECK(raw_entry(rr_node_shard_key(rr_node_shard(name)), name, NULL, 0) == 0, "expired %s still in its key",
              name);
    }
}

static pid_t frozen_pid; /* > 0 while a master is SIGSTOPped */

static void thaw(void) {
    if (frozen_pid > 0)
        kill(frozen_pid, SIGCONT);
    frozen_pid = 0;
}

/* One master SIGSTOPped (alive, TCP open, silent): the one that held the
 * directory when it was the one hash {nodes}, where a listing used to fail
 * as a whole. A listing still completes (within the client's timeout),
 * with every node whose shard is on the two other masters, none of the
 * frozen master's, and its shards named missing; after SIGCONT a listing
 * has all 24 again. */
static void a_listing_survives_a_silent_master(void) {
    CHECK(redis_cluster_owner_map(owners) == 0, "owner map");
    CHECK(clear_directory() == 0, "clear the directory");
    int victim = owners[rc_key_slot("{nodes}", 7)];
    CHECK(victim >= 0, "no master for {nodes}");
    unsigned frozen_shards = 0;
    for (unsigned k = 0; k < RR_NODE_SHARDS; k++)
        if (shard_master(k) == victim)
            frozen_shards |= 1u << k;
    /* entries that outlive the case (10 min): only the freeze removes any */
    rr_options longlived = {.node_ttl_ms = 600000};
    registry_redis *dir = registry_redis_new(rc, &longlived);
    CHECK(dir, "registry");
    char name[32];
    int on_victim = 0, registered = 0;
    for (int i = 0; i < DIR_NODES; i++) {
        dir_name(name, sizeof name, "peer", i);
        registered += do_node_register(dir, name, "127.0.0.1:7300/gateway,chat,fanout") == 1;
        on_victim += (frozen_shards >> rr_node_shard(name)) & 1;
    }
    registry_redis_free(dir);
    CHECK(registered == DIR_NODES, "%d of %d registered", registered, DIR_NODES);
    CHECK(frozen_shards && on_victim > 0 && on_victim < DIR_NODES, "master %d holds shards 0x%x, %d of the nodes",
          victim, frozen_shards, on_victim);

    pid_t pid = redis_cluster_pid(victim);
    CHECK(pid > 0 && kill(pid, SIGSTOP) == 0, "SIGSTOP master %d", victim);
    frozen_pid = pid;
    result during;
    uint64_t t0 = now_ms();
    int listed = do_list(&during);
    uint64_t took = now_ms() - t0;
    thaw(); /* before any check */

    CHECK(listed == 0, "the listing while master %d was frozen never completed", victim);
    CHECK(!during.error[0], "the listing while master %d was frozen failed: %s", victim, during.error);
    CHECK(during.missing == frozen_shards, "missing shards 0x%x, the frozen master's are 0x%x", during.missing,
          frozen_shards);
    CHECK(during.n == (size_t)(DIR_NODES - on_victim), "listed %zu while frozen, want %d", during.n,
          DIR_NODES - on_victim);
    for (int i = 0; i < DIR_NODES; i++) {
        dir_name(name, sizeof name, "peer", i);
        int want = (frozen_shards >> rr_node_shard(name)) & 1 ? 0 : 1;
        CHECK(times_listed(&during, name, NULL) == want, "%s (shard %u) listed %d times while frozen, want %d", name,
              rr_node_shard(name), times_listed(&during, name, NULL), want);
    }
    /* a figure, not a check: the frozen shards' commands end at the client's timeout */
    check_note("a listing with master %d (%d of %d shards) frozen: %zu of %d nodes, missing shards 0x%x, answered "
               "after %llu ms (client timeout 10000)",
               victim, __builtin_popcount(frozen_shards), RR_NODE_SHARDS, during.n, DIR_NODES, during.missing,
               (unsigned long long)took);

    /* after SIGCONT: the client reconnects by itself (bounded) */
    result after;
    int whole = 0;
    uint64_t until = now_ms() + WAIT_MS;
    while (!whole && now_ms() < until) {
        whole = do_list(&after) == 0 && !after.error[0] && after.missing == 0;
        if (!whole)
            sleep_ms(100);
    }
    CHECK(whole, "no whole listing after SIGCONT (missing 0x%x, %s)", after.missing, after.error);
    CHECK(after.n == DIR_NODES, "listed %zu after SIGCONT", after.n);
    for (int i = 0; i < DIR_NODES; i++) {
        dir_name(name, sizeof name, "peer", i);
        CHECK(times_listed(&after, name, NULL) == 1, "%s listed %d times after SIGCONT", name,
              times_listed(&after, name, NULL));
    }
}

/* a node that lost its scripts (SCRIPT FLUSH, as after a restart) answers
 * EVALSHA with NOSCRIPT: the registry resends the script and succeeds */
static void evalsha_falls_back_to_eval_on_noscript(void) {
    for (int i = 0; i < REDIS_CLUSTER_MASTERS; i++) {
        struct timeval tv = {10, 0};
        redisContext *d = redisConnectWithTimeout("127.0.0.1", redis_cluster_port(i), tv);
        CHECK(d && !d->err, "connect node %d", i);
        redisReply *r = redisCommand(d, "SCRIPT FLUSH");
        int ok = r && r->type == REDIS_REPLY_STATUS;
        if (r)
            freeReplyObject(r);
        redisFree(d);
        CHECK(ok, "SCRIPT FLUSH on node %d", i);
    }
    uint64_t loads = registry_redis_script_loads(reg);
    rr_session s = {.user = 6006, .device = 1, .conn_id = 1, .since_ms = wall_ms(), .node = "gw-a"};
    CHECK(do_connect(reg, &s) == 1, "connect after SCRIPT FLUSH");
    CHECK(registry_redis_script_loads(reg) == loads + 1, "no EVAL fallback seen");
    CHECK(do_connect(reg, &s) == 1, "connect again (idempotent)");
    CHECK(registry_redis_script_loads(reg) == loads + 1, "the script was not cached by the EVAL");
    CHECK(do_disconnect(reg, &s) == 1, "disconnect");
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    RUN(start_cluster);
    if (cluster_up && reg) {
        RUN(connect_lookup_presence_disconnect);
        RUN(a_reconnect_beats_the_old_gateways_cleanup);
        RUN(an_entry_not_refreshed_expires);
        RUN(heartbeat_refreshes_10000_sessions_in_one_batch);
        RUN(measures_bytes_per_session_entry);
        RUN(node_directory);
        RUN(nodes_spread_over_the_directory_shards);
        RUN(a_listing_survives_a_silent_master);
        RUN(evalsha_falls_back_to_eval_on_noscript);
    }
    registry_redis_free(reg);
    rc_free(rc);
    redis_cluster_stop();
    CHECK_EXIT();
}
