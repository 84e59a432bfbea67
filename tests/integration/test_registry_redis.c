/* test_registry_redis.c -- the session registry on Redis Cluster
 * (src/registry/registry_redis.c) against a real three-master cluster,
 * started for the program by scripts/redis-cluster.sh and stopped by PID on
 * every exit path. Waits are on observable state (a completion, a lookup's
 * answer) with generous bounds; nothing asserts a duration. */
#include "../check.h"
#include "redis_cluster_node.h"
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

static void nodes_cb(void *ud, const rr_node *nodes, size_t n, const char *error) {
    (void)nodes;
    result *res = ud;
    res->n = n;
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
        RUN(evalsha_falls_back_to_eval_on_noscript);
    }
    registry_redis_free(reg);
    rc_free(rc);
    redis_cluster_stop();
    CHECK_EXIT();
}
