/* test_redis_cluster_frozen.c -- one master of a real three-master Redis
 * Cluster SIGSTOPped (alive, its TCP port open, never answering): the users
 * whose keys live on the two healthy masters keep working through the
 * session registry (src/registry/registry_redis.c on redis_cluster.c):
 * sessions registered and refreshed, lookups answered; the frozen master's
 * users get errors, each command completed (not left hanging); the client
 * reads the slot map from the healthy masters meanwhile; after SIGCONT the
 * frozen master's users work again by themselves.
 *
 * The cluster is the program's own (scripts/redis-cluster.sh, stopped by
 * PID at exit and on a fatal signal; its stop sends SIGCONT first). The
 * frozen master is sent SIGCONT on every path of the case. Waits are on
 * observable state (a completion, the cluster's own view of the frozen
 * node, a client counter) with generous bounds; nothing asserts a duration.
 * The masters run with cluster-require-full-coverage no (set here): with
 * Redis's default every master answers CLUSTERDOWN once the frozen one is
 * flagged failed (README, "Redis Cluster: a master that stops answering").
 *
 * What each check guards (each broken in a scratch build, seen to FAIL):
 *   a new client seeded with the frozen master first   the old start_refresh
 *       (one map read at a time, to the connected node) -> "8 of 8 commands
 *       for the healthy masters failed, the last: timeout"
 *   map reads asked while frozen are applied            rc_refresh a no-op ->
 *       "map read 2 asked while frozen never applied"
 *   the frozen master's commands complete               tick not timing out
 *       written commands -> "round 0: the heartbeat of 6000 sessions never
 *       completed"; on the node: "a lookup on the frozen master did not fail"
 *   a node warns of cluster-require-full-coverage yes   the call in
 *       cluster_node.c left out -> "the node logged 0 of 3
 *       'cluster-require-full-coverage yes' warnings (0 'no')"
 *   the healthy masters' users served                   the cluster left at
 *       cluster-require-full-coverage yes -> "round 1: heartbeat of user 3
 *       on healthy master 1: -1" (CLUSTERDOWN) */
#include "../check.h"
#include "harness.h"
#include "redis_cluster_node.h"
#include "registry/redis_cluster.h"
#include "registry/redis_cluster_parse.h"
#include "registry/registry_redis.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 60000
#define USERS_PER_MASTER 4
#define ROUNDS 3

static int cluster_up;
static rc_client *rc;
static registry_redis *reg;
static int victim = -1;   /* the master that is frozen */
static pid_t frozen_pid;  /* > 0 while it is SIGSTOPped */

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static uint64_t wall_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static void thaw(void) {
    if (frozen_pid > 0)
        kill(frozen_pid, SIGCONT);
    frozen_pid = 0;
}

/* ---- the registry's callbacks fill a result; the test waits on it ---- */

typedef struct result {
    atomic_int done;
    int applied;
    size_t n;
    size_t refreshed, gone, failed;
    char error[128];
} result;

static int wait_result(result *res) {
    uint64_t until = now_ms() + WAIT_MS;
    while (!atomic_load(&res->done) && now_ms() < until)
        sleep_ms(2);
    return atomic_load(&res->done);
}

static void done_cb(void *ud, int applied, const char *error) {
    result *res = ud;
    res->applied = applied;
    if (error)
        snprintf(res->error, sizeof res->error, "%s", error);
    atomic_store(&res->done, 1);
}

static void lookup_cb(void *ud, const rr_device *devs, size_t n, const char *error) {
    (void)devs;
    result *res = ud;
    res->n = n;
    if (error)
        snprintf(res->error, sizeof res->error, "%s", error);
    atomic_store(&res->done, 1);
}

static void batch_cb(void *ud, size_t refreshed, size_t gone, size_t failed) {
    result *res = ud;
    res->refreshed = refreshed;
    res->gone = gone;
    res->failed = failed;
    atomic_store(&res->done, 1);
}

/* 1 applied, 0 refused, -1 failed (error in res), -2 never completed */
static int do_connect(const rr_session *s, result *res) {
    memset(res, 0, sizeof *res);
    if (registry_redis_connect(reg, s, done_cb, res) != 0)
        return -1;
    return wait_result(res) ? res->applied : -2;
}

/* devices found, -1 failed (error in res), -2 never completed */
static int do_lookup(uint64_t user, result *res) {
    memset(res, 0, sizeof *res);
    if (registry_redis_lookup(reg, user, lookup_cb, res) != 0)
        return -1;
    if (!wait_result(res))
        return -2;
    return res->error[0] ? -1 : (int)res->n;
}

/* refreshed (1), gone (0), failed (-1), never completed (-2) */
static int do_heartbeat(const rr_session *s, result *res) {
    memset(res, 0, sizeof *res);
    if (registry_redis_heartbeat(reg, s, 1, batch_cb, res) != 0)
        return -1;
    if (!wait_result(res))
        return -2;
    return res->refreshed == 1 ? 1 : res->gone == 1 ? 0 : -1;
}

/* ---- the cluster as Redis sees it ---- */

/* 1 when healthy master i's CLUSTER NODES flags the master on port as
 * failed ("fail", agreed by the majority; not just "fail?") */
static int sees_failed(int i, int port) {
    redisContext *d = redis_cluster_direct(i);
    redisReply *r = d && !d->err ? redisCommand(d, "CLUSTER NODES") : NULL;
    int failed = 0;
    if (r && r->type == REDIS_REPLY_STRING) {
        char addr[32];
        snprintf(addr, sizeof addr, " 127.0.0.1:%d@", port);
        const char *line = strstr(r->str, addr);
        if (line) {
            const char *flags = line + strlen(addr);
            flags = strchr(flags, ' '); /* past the bus port */
            const char *end = flags ? strchr(flags + 1, ' ') : NULL;
            if (end) {
                char f[128];
                size_t len = (size_t)(end - flags - 1) < sizeof f - 1 ? (size_t)(end - flags - 1) : sizeof f - 1;
                memcpy(f, flags + 1, len);
                f[len] = '\0';
                /* comma-separated: "master,fail" */
                char *save = NULL;
                for (char *t = strtok_r(f, ",", &save); t; t = strtok_r(NULL, ",", &save))
                    failed |= strcmp(t, "fail") == 0;
            }
        }
    }
    if (r)
        freeReplyObject(r);
    if (d)
        redisFree(d);
    return failed;
}

/* CONFIG SET on every master; 0 or -1 */
static int config_set_all(const char *name, const char *value) {
    int rc = 0;
    for (int i = 0; i < REDIS_CLUSTER_MASTERS; i++) {
        redisContext *d = redis_cluster_direct(i);
        redisReply *r = d && !d->err ? redisCommand(d, "CONFIG SET %s %s", name, value) : NULL;
        if (!r || r->type != REDIS_REPLY_STATUS)
            rc = -1;
        if (r)
            freeReplyObject(r);
        if (d)
            redisFree(d);
    }
    return rc;
}

/* ---- users placed on masters ---- */

static uint64_t users[REDIS_CLUSTER_MASTERS][USERS_PER_MASTER];
static int owners[RC_SLOTS];

static int master_of_user(uint64_t u) {
    char key[32];
    int len = snprintf(key, sizeof key, "{u:%llu}", (unsigned long long)u);
    return owners[rc_key_slot(key, (size_t)len)];
}

static int place_users(void) {
    if (redis_cluster_owner_map(owners) != 0)
        return -1;
    int have[REDIS_CLUSTER_MASTERS] = {0};
    for (uint64_t u = 1; u < 100000; u++) {
        int at = master_of_user(u);
        if (at >= 0 && have[at] < USERS_PER_MASTER)
            users[at][have[at]++] = u;
        int all = 1;
        for (int j = 0; j < REDIS_CLUSTER_MASTERS; j++)
            all &= have[j] == USERS_PER_MASTER;
        if (all)
            return 0;
    }
    return -1;
}

static rr_session session_of(uint64_t user, uint32_t device) {
    rr_session s = {.user = user, .device = device, .conn_id = user * 100 + device, .since_ms = wall_ms(),
                    .node = "gw-frozen-test"};
    return s;
}

/* ---- cases ---- */

static void start_cluster(void) {
    CHECK(redis_cluster_start("redis-frozen") == 0, "cluster did not start");
    cluster_up = 1;
    /* as the product makes it (src/cluster/cluster_node.c): the defaults, 2 s per command */
    rc_options o = {.seeds = redis_cluster_seeds(), .timeout_ms = 2000};
    char err[200];
    rc = rc_new(&o, err, sizeof err);
    CHECK(rc, "rc_new: %s", err);
    CHECK(rc_wait_ready(rc, WAIT_MS) == 0, "slot map");
    rr_options ro = {.session_ttl_ms = 600000};
    reg = registry_redis_new(rc, &ro);
    CHECK(reg, "registry");
    CHECK(place_users() == 0, "no users found on every master");
    victim = 0;
    result res;
    for (int j = 0; j < REDIS_CLUSTER_MASTERS; j++)
        for (int k = 0; k < USERS_PER_MASTER; k++) {
            rr_session s = session_of(users[j][k], 1);
            CHECK(do_connect(&s, &res) == 1, "connect user %llu before the freeze: %s",
                  (unsigned long long)users[j][k], res.error);
        }
}

/* a gateway's heartbeat of BIG sessions of users on every master, as
 * session_registry.c sends it (pipelined, one batch): the sessions were
 * never registered, so a healthy master answers "gone" (an answer) and the
 * frozen one none ("failed") */
enum { BIG = 6000 };
static atomic_int big_result[BIG];

static void big_each(void *ud, size_t i, int result) {
    (void)ud;
    atomic_store(&big_result[i], result);
}

static void big_heartbeat(uint32_t round) {
    static rr_session s[BIG];
    for (size_t i = 0; i < BIG; i++) {
        s[i] = session_of(5000000 + round * BIG + i, 1);
        atomic_store(&big_result[i], -2);
    }
    result res = {0};
    CHECK(registry_redis_heartbeat_each(reg, s, BIG, big_each, batch_cb, &res) == 0, "heartbeat refused");
    CHECK(wait_result(&res), "round %u: the heartbeat of %d sessions never completed", round, BIG);
    size_t healthy = 0, healthy_answered = 0, frozen = 0, frozen_failed = 0;
    for (size_t i = 0; i < BIG; i++) {
        int at = master_of_user(s[i].user), r = atomic_load(&big_result[i]);
        if (at == victim) {
            frozen++;
            frozen_failed += r == -1;
        } else {
            healthy++;
            healthy_answered += r == 0 || r == 1;
        }
    }
    CHECK(healthy_answered == healthy, "round %u: %zu of %zu refreshes on the healthy masters answered", round,
          healthy_answered, healthy);
    CHECK(frozen > 0 && frozen_failed == frozen, "round %u: %zu of %zu refreshes on the frozen master failed", round,
          frozen_failed, frozen);
}

/* every healthy master's user: refreshed, looked up (its devices found), a
 * new device registered; every frozen master's user: the lookup completes
 * with an error. round names the device registered. */
static void one_round(uint32_t round) {
    result res;
    for (int j = 0; j < REDIS_CLUSTER_MASTERS; j++) {
        if (j == victim)
            continue;
        for (int k = 0; k < USERS_PER_MASTER; k++) {
            uint64_t u = users[j][k];
            rr_session s1 = session_of(u, 1);
            int hb = do_heartbeat(&s1, &res);
            CHECK(hb == 1, "round %u: heartbeat of user %llu on healthy master %d: %d (failed %zu)", round,
                  (unsigned long long)u, j, hb, res.failed);
            rr_session s = session_of(u, 100 + round);
            int applied = do_connect(&s, &res);
            CHECK(applied == 1, "round %u: connect of user %llu on healthy master %d: %d %s", round,
                  (unsigned long long)u, j, applied, res.error);
            int n = do_lookup(u, &res);
            CHECK(n == 2 + (int)round, "round %u: lookup of user %llu on healthy master %d: %d devices, %s", round,
                  (unsigned long long)u, j, n, res.error);
        }
    }
    big_heartbeat(round);
    if (check_case_failed)
        return;
    for (int k = 0; k < USERS_PER_MASTER; k++) {
        uint64_t u = users[victim][k];
        int n = do_lookup(u, &res);
        CHECK(n != -2, "round %u: lookup of user %llu on the frozen master never completed", round,
              (unsigned long long)u);
        CHECK(n == -1, "round %u: lookup of user %llu on the frozen master answered %d devices", round,
              (unsigned long long)u, n);
    }
}

/* async completions of plain commands */
typedef struct batch {
    atomic_int done, ok;
    char error[128];
} batch;

static void batch_done(void *ud, redisReply *r, const char *error) {
    batch *b = ud;
    if (!error && r && r->type != REDIS_REPLY_ERROR)
        atomic_fetch_add(&b->ok, 1);
    else if (error)
        snprintf(b->error, sizeof b->error, "%s", error);
    else if (r && r->type == REDIS_REPLY_ERROR)
        snprintf(b->error, sizeof b->error, "%s", r->str);
    if (r)
        freeReplyObject(r);
    atomic_fetch_add(&b->done, 1);
}

/* A client started while the master named first among its seeds is frozen
 * (a parley node starting or restarting now): its commands for the healthy
 * masters' users, sent at once, are answered within their timeout (10 s,
 * far above a slot map read from a healthy master); the map is read from
 * one of the others rather than waited for from the frozen one. */
static void a_new_client_reads_the_map_past_the_frozen_seed(void) {
    char seeds[128];
    int h1 = (victim + 1) % REDIS_CLUSTER_MASTERS, h2 = (victim + 2) % REDIS_CLUSTER_MASTERS;
    snprintf(seeds, sizeof seeds, "127.0.0.1:%d,127.0.0.1:%d,127.0.0.1:%d", redis_cluster_port(victim),
             redis_cluster_port(h1), redis_cluster_port(h2));
    rc_options o = {.seeds = seeds, .timeout_ms = 10000};
    char err[200];
    uint64_t t0 = now_ms();
    rc_client *c = rc_new(&o, err, sizeof err);
    CHECK(c, "rc_new: %s", err);
    batch b = {0};
    int sent = 0;
    for (int j = 0; j < REDIS_CLUSTER_MASTERS; j++) {
        if (j == victim)
            continue;
        for (int k = 0; k < USERS_PER_MASTER; k++) {
            char key[32];
            int len = snprintf(key, sizeof key, "{u:%llu}", (unsigned long long)users[j][k]);
            const char *argv[] = {"HLEN", key};
            if (rc_command(c, key, (size_t)len, 2, argv, NULL, batch_done, &b) == 0)
                sent++;
        }
    }
    int ready = rc_wait_ready(c, WAIT_MS) == 0;
    uint64_t ready_ms = now_ms() - t0;
    uint64_t until = now_ms() + WAIT_MS;
    while (atomic_load(&b.done) < sent && now_ms() < until)
        sleep_ms(5);
    int done = atomic_load(&b.done), ok = atomic_load(&b.ok);
    rc_free(c);
    if (ready) /* a figure, not a check */
        check_note("a client seeded with the frozen master first had its slot map after %llu ms (timeout 10000)",
                   (unsigned long long)ready_ms);
    CHECK(sent == 2 * USERS_PER_MASTER, "%d of %d commands refused", 2 * USERS_PER_MASTER - sent,
          2 * USERS_PER_MASTER);
    CHECK(done == sent, "%d of %d commands never completed", sent - done, sent);
    CHECK(ok == sent, "%d of %d commands for the healthy masters failed, the last: %s", sent - ok, sent, b.error);
}

/* The map as the client holds it (what the presence bus subscribes by,
 * cluster/presence_bus.c): every slot, the frozen master's included, with
 * the master Redis names; and map reads asked for (rc_refresh) are applied
 * one after another, read from the healthy masters. */
static void the_map_is_read_from_the_healthy_masters(void) {
    rc_slot_range map[64];
    int n = rc_slot_map(rc, map, 64);
    CHECK(n > 0 && n <= 64, "rc_slot_map: %d ranges", n);
    int covered = 0, wrong = 0;
    for (int i = 0; i < n; i++)
        for (int s = map[i].start; s <= map[i].end; s++) {
            covered++;
            wrong += owners[s] < 0 || redis_cluster_port(owners[s]) != map[i].port;
        }
    CHECK(covered == RC_SLOTS && wrong == 0, "rc_slot_map: %d slots covered, %d with another master", covered, wrong);
    for (int i = 0; i < 6; i++) {
        rc_stats before, after;
        rc_get_stats(rc, &before);
        rc_refresh(rc);
        uint64_t until = now_ms() + WAIT_MS;
        do {
            sleep_ms(10);
            rc_get_stats(rc, &after);
        } while (after.slot_refreshes <= before.slot_refreshes && now_ms() < until);
        CHECK(after.slot_refreshes > before.slot_refreshes, "map read %d asked while frozen never applied", i + 1);
    }
}

static void while_frozen(void) {
    rc_stats st0, st1;
    rc_get_stats(rc, &st0);
    pid_t pid = redis_cluster_pid(victim);
    CHECK(pid > 0 && kill(pid, SIGSTOP) == 0, "SIGSTOP master %d", victim);
    frozen_pid = pid;
    int port = redis_cluster_port(victim);

    /* at once: the healthy masters still count the frozen one as up */
    one_round(0);
    if (check_case_failed)
        return;

    /* then: the healthy masters agree it has failed (cluster-node-timeout) */
    int h1 = (victim + 1) % REDIS_CLUSTER_MASTERS, h2 = (victim + 2) % REDIS_CLUSTER_MASTERS;
    uint64_t until = now_ms() + WAIT_MS;
    int seen = 0;
    while (!seen && now_ms() < until) {
        seen = sees_failed(h1, port) && sees_failed(h2, port);
        if (!seen)
            sleep_ms(200);
    }
    CHECK(seen, "the healthy masters never flagged the frozen master as failed");
    for (uint32_t round = 1; round < ROUNDS; round++) {
        one_round(round);
        if (check_case_failed)
            return;
    }
    a_new_client_reads_the_map_past_the_frozen_seed();
    if (check_case_failed)
        return;
    the_map_is_read_from_the_healthy_masters();
    if (check_case_failed)
        return;

    /* the client read the map meanwhile, from a healthy master (the frozen
     * one answers nothing, so every refresh applied came from another) */
    until = now_ms() + WAIT_MS;
    rc_get_stats(rc, &st1);
    while (st1.slot_refreshes <= st0.slot_refreshes && now_ms() < until) {
        sleep_ms(50);
        rc_get_stats(rc, &st1);
    }
    CHECK(st1.slot_refreshes > st0.slot_refreshes, "no slot map read while frozen (%llu)",
          (unsigned long long)st1.slot_refreshes);
    CHECK(st1.timeouts > st0.timeouts || st1.conn_failures > st0.conn_failures,
          "the frozen master's commands failed without a timeout or a lost connection");
    check_note("while frozen: %llu slot map reads applied, %llu command timeouts, %llu connection failures, "
               "%llu CLUSTERDOWN",
               (unsigned long long)(st1.slot_refreshes - st0.slot_refreshes),
               (unsigned long long)(st1.timeouts - st0.timeouts),
               (unsigned long long)(st1.conn_failures - st0.conn_failures),
               (unsigned long long)(st1.clusterdown - st0.clusterdown));
}

/* the frozen master's users, and after SIGCONT the same users again */
static void after_thaw(void) {
    result res;
    for (int k = 0; k < USERS_PER_MASTER; k++) {
        uint64_t u = users[victim][k];
        uint64_t until = now_ms() + WAIT_MS;
        int n = -1;
        while (n < 0 && now_ms() < until) {
            n = do_lookup(u, &res);
            if (n < 0)
                sleep_ms(100);
        }
        CHECK(n == 1, "user %llu of the thawed master: lookup %d %s", (unsigned long long)u, n, res.error);
        rr_session s = session_of(u, 2);
        int applied = do_connect(&s, &res);
        CHECK(applied == 1, "user %llu of the thawed master: connect %d %s", (unsigned long long)u, applied,
              res.error);
    }
    for (int j = 0; j < REDIS_CLUSTER_MASTERS; j++)
        for (int k = 0; k < USERS_PER_MASTER; k++) {
            int n = do_lookup(users[j][k], &res);
            CHECK(n > 0, "user %llu on master %d after the thaw: %d %s", (unsigned long long)users[j][k], j, n,
                  res.error);
        }
}

/* ---- a parley node (serve --node --redis) with one master frozen ---- */

typedef struct sessions {
    atomic_int done;
    int failed;
    size_t n;
    uint64_t expires; /* the first entry's, Redis clock */
} sessions;

static void sessions_cb(void *ud, const rr_device *devs, size_t n, const char *error) {
    sessions *x = ud;
    x->n = n;
    x->expires = n > 0 ? devs[0].expires_ms : 0;
    x->failed = error != NULL;
    atomic_store(&x->done, 1);
}

/* the user's live sessions in Redis (through the test's own client): 0, or
 * -1 when Redis did not answer */
static int sessions_of(uint64_t user, sessions *x) {
    memset(x, 0, sizeof *x);
    if (registry_redis_lookup(reg, user, sessions_cb, x) != 0)
        return -1;
    for (int i = 0; i < WAIT_MS / 5 && !atomic_load(&x->done); i++)
        sleep_ms(5);
    return atomic_load(&x->done) && !x->failed ? 0 : -1;
}

/* polls until the user has one live session whose expiry is past after
 * (0: any); 1 when seen */
static int session_refreshed_past(uint64_t user, uint64_t after, sessions *x) {
    for (int i = 0; i < WAIT_MS / 100; i++) {
        if (sessions_of(user, x) == 0 && x->n == 1 && x->expires > after)
            return 1;
        sleep_ms(100);
    }
    return 0;
}

enum { NODE_USERS_MAX = 48 };

/* A node started on the cluster: users sign in and sync until each master
 * holds at least one (user ids are the server's); one master (not the one
 * holding this node's directory shard: a node whose own entry cannot be
 * refreshed says so on /healthz, see the README) is then frozen. The healthy masters' users'
 * sessions keep being refreshed by the node's heartbeat (--session-ttl-ms
 * 6000: every 2 s) and a user signing in meanwhile on a healthy master is
 * registered; the node stays healthy. After SIGCONT the frozen master's
 * users have a live session again (the heartbeat writes what expired). */
static void a_node_serves_the_healthy_masters_users(void) {
    const char *dir_key = rr_node_shard_key(rr_node_shard("gw-frozen"));
    int dir_master = owners[rc_key_slot(dir_key, strlen(dir_key))];
    int nv = -1;
    for (int j = 0; j < REDIS_CLUSTER_MASTERS && nv < 0; j++)
        if (j != dir_master)
            nv = j;
    CHECK(dir_master >= 0 && nv >= 0, "no master to freeze apart from %s's", dir_key);
    h_server srv = {0};
    char internal[64];
    snprintf(internal, sizeof internal, "127.0.0.1:%d", h_free_port());
    const char *args[] = {"--node", "gw-frozen", "--internal-listen", internal, "--redis", redis_cluster_seeds(),
                          "--session-ttl-ms", "6000", NULL};
    CHECK(h_server_start(&srv, args) == 0, "the node did not start");
    h_dev *devs[NODE_USERS_MAX] = {0};
    int master[NODE_USERS_MAX], n = 0, per[REDIS_CLUSTER_MASTERS] = {0};
    int all = 0;
    while (!all && n < NODE_USERS_MAX) {
        devs[n] = h_user_new(&srv, NULL);
        if (!devs[n] || h_dev_sync(devs[n], WAIT_MS) != 0)
            break;
        master[n] = master_of_user(devs[n]->id.user_id);
        if (master[n] >= 0)
            per[master[n]]++;
        n++;
        all = per[0] > 0 && per[1] > 0 && per[2] > 0;
    }
    /* every user's session written before the freeze */
    int before = all;
    sessions x;
    for (int i = 0; i < n && before; i++)
        before = session_refreshed_past(devs[i]->id.user_id, 0, &x);

    pid_t pid = before ? redis_cluster_pid(nv) : 0;
    if (pid > 0 && kill(pid, SIGSTOP) == 0)
        frozen_pid = pid;
    int healthy_refreshed = frozen_pid > 0, frozen_failed = frozen_pid > 0, newcomer = 0;
    /* a healthy master's user: its expiry moves on while the other is frozen */
    for (int i = 0; i < n && healthy_refreshed; i++) {
        if (master[i] == nv)
            continue;
        uint64_t u = devs[i]->id.user_id;
        healthy_refreshed = sessions_of(u, &x) == 0 && x.n == 1 && session_refreshed_past(u, x.expires, &x);
        if (!healthy_refreshed)
            fprintf(stderr, "  user %llu (master %d) not refreshed while master %d was frozen\n",
                    (unsigned long long)u, master[i], nv);
    }
    /* the frozen master's users cannot be read: an error, not a hang */
    for (int i = 0; i < n && frozen_failed; i++)
        if (master[i] == nv)
            frozen_failed = sessions_of(devs[i]->id.user_id, &x) == -1 && atomic_load(&x.done);
    /* a user who signs in now, on a healthy master, is registered */
    h_dev *late[8] = {0};
    for (int i = 0; i < 8 && frozen_pid > 0 && !newcomer; i++) {
        late[i] = h_user_new(&srv, NULL);
        if (!late[i] || h_dev_sync(late[i], WAIT_MS) != 0)
            break;
        uint64_t u = late[i]->id.user_id;
        if (master_of_user(u) != nv)
            newcomer = session_refreshed_past(u, 0, &x);
    }
    int status = 0;
    char body[256] = "";
    int healthz = frozen_pid > 0 && h_http_get(srv.port, "/healthz", &status, body, sizeof body) == 0;
    int was_frozen = frozen_pid > 0;
    thaw(); /* before any check */
    int recovered = was_frozen;
    for (int i = 0; i < n && recovered; i++)
        if (master[i] == nv)
            recovered = session_refreshed_past(devs[i]->id.user_id, 0, &x);
    for (int i = 0; i < 8; i++)
        if (late[i])
            h_dev_free(late[i]);
    for (int i = 0; i < n; i++)
        h_dev_free(devs[i]);
    int stopped = h_server_stop(&srv);
    h_server_destroy(&srv);
    CHECK(all, "%d users signed in, masters %d/%d/%d", n, per[0], per[1], per[2]);
    CHECK(before, "a session was not in Redis before the freeze");
    CHECK(was_frozen, "SIGSTOP master %d", nv);
    CHECK(healthy_refreshed, "a healthy master's user was not refreshed while master %d was frozen", nv);
    CHECK(frozen_failed, "a lookup on the frozen master did not fail");
    CHECK(newcomer, "no user signing in on a healthy master while frozen was registered");
    CHECK(healthz && status == 200, "/healthz %d '%s' while a master (not its directory shard's) was frozen", status, body);
    CHECK(recovered, "the frozen master's users had no live session after SIGCONT");
    CHECK(stopped == 0, "the node did not stop cleanly");
}

/* lines of the file at path that contain needle; -1 when unreadable */
static int lines_with(const char *path, const char *needle) {
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    char line[1024];
    int n = 0;
    for (int i = 0; i < 1000000 && fgets(line, sizeof line, f); i++)
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

/* A node started on the cluster logs, per master, its
 * cluster-require-full-coverage: want is "yes" (a warning) or "no". 1
 * when each master's line came and none with the other value. */
static int node_logs_coverage(const char *want, int *seen, int *other) {
    h_server srv = {0};
    char internal[64];
    snprintf(internal, sizeof internal, "127.0.0.1:%d", h_free_port());
    char name[32]; /* one name per start: the other start's directory entry is no concern */
    snprintf(name, sizeof name, "gw-coverage-%s", want);
    const char *args[] = {"--node", name, "--internal-listen", internal, "--redis", redis_cluster_seeds(), NULL};
    *seen = *other = -1;
    if (h_server_start(&srv, args) != 0)
        return 0;
    char line[80], not[80];
    snprintf(line, sizeof line, "cluster-require-full-coverage %s", want);
    snprintf(not, sizeof not, "cluster-require-full-coverage %s", strcmp(want, "yes") == 0 ? "no" : "yes");
    for (int i = 0; i < WAIT_MS / 100 && (*seen = lines_with(srv.log, line)) < REDIS_CLUSTER_MASTERS; i++)
        sleep_ms(100);
    *other = lines_with(srv.log, not);
    int stopped = h_server_stop(&srv);
    h_server_destroy(&srv);
    return stopped == 0 && *seen == REDIS_CLUSTER_MASTERS && *other == 0;
}

/* Redis's own rule first: with cluster-require-full-coverage yes (its
 * default) every master answers CLUSTERDOWN to every key once one master is
 * flagged failed, whatever the client does. A node says so at its start
 * (cluster/redis_coverage.c): a warning per master. */
static void a_node_warns_while_full_coverage_is_required(void) {
    /* scripts/redis-cluster.sh starts its masters with "no": Redis's
     * default set back here */
    CHECK(config_set_all("cluster-require-full-coverage", "yes") == 0, "CONFIG SET cluster-require-full-coverage yes");
    int seen, other;
    int ok = node_logs_coverage("yes", &seen, &other);
    CHECK(ok, "the node logged %d of %d 'cluster-require-full-coverage yes' warnings (%d 'no')", seen,
          REDIS_CLUSTER_MASTERS, other);
}

/* A chat system wants the healthy masters' users served, so its cluster
 * runs with "no" (README, "Redis Cluster: a master that stops answering"):
 * set here for the cases that follow, and a node then logs "no" for each. */
static void masters_set_to_serve_their_slots_alone(void) {
    CHECK(config_set_all("cluster-require-full-coverage", "no") == 0, "CONFIG SET cluster-require-full-coverage no");
    int seen, other;
    int ok = node_logs_coverage("no", &seen, &other);
    CHECK(ok, "the node logged %d of %d 'cluster-require-full-coverage no' (%d 'yes')", seen, REDIS_CLUSTER_MASTERS,
          other);
}

static void healthy_masters_serve_while_one_is_frozen(void) {
    while_frozen();
    thaw(); /* on every path: the case may have returned early */
}

static void the_frozen_masters_users_recover_after_sigcont(void) {
    thaw();
    after_thaw();
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    RUN(start_cluster);
    if (cluster_up && reg) {
        RUN(a_node_warns_while_full_coverage_is_required);
        RUN(masters_set_to_serve_their_slots_alone);
        RUN(healthy_masters_serve_while_one_is_frozen);
        RUN(the_frozen_masters_users_recover_after_sigcont);
        RUN(a_node_serves_the_healthy_masters_users);
    }
    thaw();
    if (reg)
        registry_redis_free(reg);
    if (rc)
        rc_free(rc);
    redis_cluster_stop();
    CHECK_EXIT();
}
