/* test_node_directory.c -- `parley serve --node --internal-listen --redis`
 * on a real three-master Redis Cluster (redis_cluster_node.c): the node is
 * in the node directory under its name with "HOST:PORT/ROLES" once it
 * answers /healthz; the heartbeat keeps the entry alive past its TTL; its
 * internal address takes a node link connection; a clean stop (SIGTERM)
 * removes the entry at once; a node killed with SIGKILL leaves the
 * directory when its entry expires. With --redis the node's sessions follow
 * its connections: a device that starts sync is in the Redis session
 * registry under (node, connection), refreshed by the heartbeat, deleted
 * when it disconnects, written again by the heartbeat when it was lost
 * from Redis, and expired when its node is killed; /metrics
 * counts it (parley_cluster_sessions). Every wait is
 * on Redis's state with a generous bound; nothing is timed. Also prints
 * (NOTE) Redis's bytes for one user's key with one session. While every
 * Redis master is stopped (SIGSTOP) the node's /healthz answers 503
 * "waiting for redis" (its directory heartbeat fails), and 200 again once
 * they continue. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis/hiredis.h>

#include "../check.h"
#include "cluster/link.h"
#include "harness.h"
#include "redis_cluster_node.h"
#include "registry/redis_cluster.h"
#include "registry/registry_redis.h"

enum { WAIT_MS = 60000, NODE_TTL_MS = 3000 };

static rc_client *rc;
static registry_redis *reg;

static void start_redis(void) {
    CHECK(redis_cluster_start("node-directory") == 0, "the Redis Cluster did not start");
    rc_options o = {.seeds = redis_cluster_seeds(), .timeout_ms = 10000};
    char err[200];
    rc = rc_new(&o, err, sizeof err);
    CHECK(rc, "rc_new: %s", err);
    CHECK(rc_wait_ready(rc, WAIT_MS) == 0, "no slot map");
    reg = registry_redis_new(rc, &(rr_options){0});
    CHECK(reg, "registry");
}

typedef struct lookup {
    int done, has_addr, failed;
    char addr[RR_ADDR_MAX];
} lookup;

static void lookup_cb(void *ud, const char *addr, const char *error) {
    lookup *l = ud;
    if (addr) snprintf(l->addr, sizeof l->addr, "%s", addr);
    l->has_addr = addr != NULL;
    l->failed = error != NULL;
    __atomic_store_n(&l->done, 1, __ATOMIC_RELEASE);
}

/* 1: name is live in the directory (its address in addr), 0: absent or
 * expired, -1: Redis did not answer */
static int directory_has(const char *name, char *addr, size_t cap) {
    lookup l = {0};
    if (registry_redis_node_lookup(reg, name, lookup_cb, &l) != 0) return -1;
    for (int i = 0; i < WAIT_MS / 5 && !__atomic_load_n(&l.done, __ATOMIC_ACQUIRE); i++) h_sleep_ms(5);
    if (!__atomic_load_n(&l.done, __ATOMIC_ACQUIRE) || l.failed) return -1;
    if (addr) snprintf(addr, cap, "%s", l.addr);
    return l.has_addr;
}

/* The raw entry, "EXPIRES ADDRESS", in the name's directory shard: its
 * expiry (Redis clock), 0 if absent. */
static unsigned long long entry_expiry(const char *name) {
    const char *key = rr_node_shard_key(rr_node_shard(name));
    const char *argv[] = {"HGET", key, name};
    char err[128];
    redisReply *r = rc_command_sync(rc, key, strlen(key), 3, argv, NULL, err, sizeof err);
    unsigned long long expires = 0;
    if (r && r->type == REDIS_REPLY_STRING) expires = strtoull(r->str, NULL, 10);
    if (r) freeReplyObject(r);
    return expires;
}

static int start_node(h_server *s, const char *name, int internal_port) {
    char internal[64], ttl[16];
    snprintf(internal, sizeof internal, "127.0.0.1:%d", internal_port);
    snprintf(ttl, sizeof ttl, "%d", NODE_TTL_MS);
    const char *args[] = {"--node", name, "--internal-listen", internal, "--redis", redis_cluster_seeds(),
                          "--node-ttl-ms", ttl, NULL};
    return h_server_start(s, args);
}

static void node_is_in_the_directory_and_refreshed(void) {
    h_server s = {0};
    int port = h_free_port();
    CHECK(start_node(&s, "chat-1", port) == 0, "the node did not start");
    char addr[RR_ADDR_MAX], want[RR_ADDR_MAX];
    int has = directory_has("chat-1", addr, sizeof addr);
    snprintf(want, sizeof want, "127.0.0.1:%d/gateway,chat,fanout", port);
    /* the heartbeat moves the expiry forward (a third of the TTL) */
    unsigned long long first = entry_expiry("chat-1"), later = first;
    for (int i = 0; i < WAIT_MS / 50 && later <= first; i++) {
        h_sleep_ms(50);
        later = entry_expiry("chat-1");
    }
    /* its internal address takes a node link connection */
    char err[128];
    link_options lo = {.name = "probe", .roles = 1};
    node_link *probe = link_start(&lo, err, sizeof err);
    char internal[64];
    snprintf(internal, sizeof internal, "127.0.0.1:%d", port);
    bool up = false;
    if (probe) {
        link_connect(probe, internal);
        for (int i = 0; i < WAIT_MS / 10 && !(up = link_peer_up(probe, internal)); i++) h_sleep_ms(10);
        link_stop(probe);
    }
    int stopped = h_server_stop(&s);
    int after_stop = directory_has("chat-1", NULL, 0);
    h_server_destroy(&s);
    CHECK(has == 1, "chat-1 not in the directory (%d)", has);
    CHECK(strcmp(addr, want) == 0, "chat-1 -> '%s', expected '%s'", addr, want);
    CHECK(later > first, "the entry's expiry never moved (%llu)", first);
    CHECK(up, "no node link connection to %s", internal);
    CHECK(stopped == 0, "the node did not stop cleanly (%d)", stopped);
    CHECK(after_stop == 0, "chat-1 is still in the directory after a clean stop (%d)", after_stop);
}

static void killed_node_expires(void) {
    h_server s = {0};
    CHECK(start_node(&s, "gw-killed", h_free_port()) == 0, "the node did not start");
    int has = directory_has("gw-killed", NULL, 0);
    h_server_kill9(&s);
    int gone = -1;
    for (int i = 0; i < WAIT_MS / 100 && (gone = directory_has("gw-killed", NULL, 0)) != 0; i++) h_sleep_ms(100);
    h_server_destroy(&s);
    CHECK(has == 1, "gw-killed not in the directory before the kill (%d)", has);
    CHECK(gone == 0, "gw-killed still in the directory %d ms after SIGKILL (TTL %d ms)", WAIT_MS, NODE_TTL_MS);
}

/* s's /healthz answers want_status with want_text in its body (bounded) */
static int health_becomes(h_server *s, int want_status, const char *want_text, char *body, size_t cap) {
    for (int i = 0; i < WAIT_MS / 100; i++) {
        int status = 0;
        if (h_http_get(s->port, "/healthz", &status, body, cap) == 0 && status == want_status &&
            strstr(body, want_text))
            return 1;
        h_sleep_ms(100);
    }
    return 0;
}

static void healthz_waits_for_redis(void) {
    h_server s = {0};
    CHECK(start_node(&s, "chat-h", h_free_port()) == 0, "the node did not start");
    char before[256] = "", during[256] = "", after[256] = "";
    int ok_before = health_becomes(&s, 200, "ok", before, sizeof before);
    for (int i = 0; i < REDIS_CLUSTER_MASTERS; i++) kill(redis_cluster_pid(i), SIGSTOP);
    int waited = health_becomes(&s, 503, "waiting for redis", during, sizeof during);
    /* continued on every path, before any check */
    for (int i = 0; i < REDIS_CLUSTER_MASTERS; i++) kill(redis_cluster_pid(i), SIGCONT);
    int ok_after = health_becomes(&s, 200, "ok", after, sizeof after);
    h_server_destroy(&s);
    CHECK(ok_before, "not healthy before: '%s'", before);
    CHECK(waited, "/healthz never said it waits for redis while Redis was stopped: '%s'", during);
    CHECK(ok_after, "not healthy again after Redis continued: '%s'", after);
}

static void unreachable_redis_fails_the_start(void) {
    h_server s = {0};
    char seeds[64];
    snprintf(seeds, sizeof seeds, "127.0.0.1:%d", h_free_port());   /* nothing listens */
    const char *args[] = {"--redis", seeds, NULL};
    int started = h_server_start(&s, args);
    h_server_destroy(&s);
    CHECK(started == -1, "a node whose Redis is unreachable reported healthy");
}

typedef struct devices {
    int done, failed;
    size_t n;
    rr_device d[RR_MAX_DEVICES];
} devices;

static void devices_cb(void *ud, const rr_device *devs, size_t n, const char *error) {
    devices *x = ud;
    x->n = n;
    memcpy(x->d, devs, (n < RR_MAX_DEVICES ? n : RR_MAX_DEVICES) * sizeof *devs);
    x->failed = error != NULL;
    __atomic_store_n(&x->done, 1, __ATOMIC_RELEASE);
}

/* The user's live sessions into *x; 0, or -1 when Redis did not answer. */
static int sessions_of(uint64_t user, devices *x) {
    memset(x, 0, sizeof *x);
    if (registry_redis_lookup(reg, user, devices_cb, x) != 0) return -1;
    for (int i = 0; i < WAIT_MS / 5 && !__atomic_load_n(&x->done, __ATOMIC_ACQUIRE); i++) h_sleep_ms(5);
    return __atomic_load_n(&x->done, __ATOMIC_ACQUIRE) && !x->failed ? 0 : -1;
}

/* Polls until the user has `want` live sessions; the last count seen. */
static size_t wait_sessions(uint64_t user, size_t want, devices *x) {
    for (int i = 0; i < WAIT_MS / 50; i++) {
        if (sessions_of(user, x) == 0 && x->n == want) return want;
        h_sleep_ms(50);
    }
    return x->n;
}

static long long key_bytes(const char *key) {
    const char *argv[] = {"MEMORY", "USAGE", key};
    char err[128];
    redisReply *r = rc_command_sync(rc, key, strlen(key), 3, argv, NULL, err, sizeof err);
    long long n = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r) freeReplyObject(r);
    return n;
}

static void put_cb(void *ud, int applied, const char *error) {
    (void)applied;
    (void)error;
    __atomic_store_n((int *)ud, 1, __ATOMIC_RELEASE);
}

static void sessions_follow_connections(void) {
    h_server s = {0};
    char internal[64];
    snprintf(internal, sizeof internal, "127.0.0.1:%d", h_free_port());
    const char *args[] = {"--node", "gw-s", "--internal-listen", internal, "--redis", redis_cluster_seeds(),
                          "--session-ttl-ms", "3000", NULL};
    CHECK(h_server_start(&s, args) == 0, "the node did not start");
    h_dev *d = h_user_new(&s, NULL);
    CHECK(d && h_dev_sync(d, WAIT_MS) == 0, "the device did not sign in and sync");
    uint64_t user = d->id.user_id;
    devices x;
    size_t live = wait_sessions(user, 1, &x);
    int right_node = live == 1 && strcmp(x.d[0].node, "gw-s") == 0 && x.d[0].device == d->id.device_id;
    uint64_t first_expiry = live == 1 ? x.d[0].expires_ms : 0, later = first_expiry;
    for (int i = 0; i < WAIT_MS / 50 && later <= first_expiry; i++) {
        h_sleep_ms(50);
        if (sessions_of(user, &x) == 0 && x.n == 1) later = x.d[0].expires_ms;
    }
    /* the entry is lost from Redis (as when it expired during an outage):
     * the next heartbeat finds it gone and writes it again */
    char field[16];
    snprintf(field, sizeof field, "%u", d->id.device_id);
    char ukey[40];
    snprintf(ukey, sizeof ukey, "{u:%llu}", (unsigned long long)user);
    const char *hdel[] = {"HDEL", ukey, field};
    char herr[128];
    redisReply *hr = rc_command_sync(rc, ukey, strlen(ukey), 3, hdel, NULL, herr, sizeof herr);
    int deleted = hr && hr->type == REDIS_REPLY_INTEGER && hr->integer == 1;
    if (hr) freeReplyObject(hr);
    size_t restored = deleted ? wait_sessions(user, 1, &x) : 0;
    double gauge = -1;
    h_metric(&s, "parley_cluster_sessions", &gauge);
    /* Redis's memory for this user's key: one session entry and last-seen */
    char key[40];
    snprintf(key, sizeof key, "{u:%llu}", (unsigned long long)user);
    long long one = key_bytes(key);
    /* and with a second device's entry (written directly, as another node would) */
    rr_session other = {.user = user, .device = d->id.device_id + 1, .conn_id = 77, .since_ms = 1,
                        .node = "gw-other"};
    int put = 0;
    registry_redis_connect(reg, &other, put_cb, &put);
    for (int i = 0; i < WAIT_MS / 5 && !__atomic_load_n(&put, __ATOMIC_ACQUIRE); i++) h_sleep_ms(5);
    long long two = key_bytes(key);
    int removed = 0;
    registry_redis_disconnect(reg, &other, put_cb, &removed);
    for (int i = 0; i < WAIT_MS / 5 && !__atomic_load_n(&removed, __ATOMIC_ACQUIRE); i++) h_sleep_ms(5);
    if (one > 0 && two > 0)
        check_note("Redis session registry: MEMORY USAGE of a user's key with one device %lld bytes, "
                   "with two %lld (+%lld per further device entry)", one, two, two - one);
    h_dev_disconnect(d);
    size_t after_close = wait_sessions(user, 0, &x);
    /* again, and the node dies: the entry expires (--session-ttl-ms 3000) */
    int again = h_dev_reconnect(&s, d, 0) == 0 && h_dev_sync(d, WAIT_MS) == 0;
    size_t live_again = again ? wait_sessions(user, 1, &x) : 0;
    h_server_kill9(&s);
    size_t after_kill = wait_sessions(user, 0, &x);
    h_dev_free(d);
    h_server_destroy(&s);
    CHECK(live == 1 && right_node, "sessions %zu, node '%s'", live, live ? x.d[0].node : "");
    CHECK(deleted && restored == 1, "the deleted entry was not written again by the heartbeat (%d, %zu)", deleted,
          restored);
    CHECK(gauge == 1, "/metrics parley_cluster_sessions %.0f while one device was connected", gauge);
    CHECK(later > first_expiry, "the session's expiry never moved (%llu)", (unsigned long long)first_expiry);
    CHECK(after_close == 0, "%zu sessions left after the device closed", after_close);
    CHECK(again && live_again == 1, "the reconnected device is not in the registry (%zu)", live_again);
    CHECK(after_kill == 0, "%zu sessions left %d ms after the node was killed", after_kill, WAIT_MS);
}

/* used_memory summed over the masters */
static long long cluster_used_memory(void) {
    long long sum = 0;
    for (int i = 0; i < REDIS_CLUSTER_MASTERS; i++) {
        struct timeval tv = {10, 0};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", redis_cluster_port(i), tv);
        redisReply *r = c && !c->err ? redisCommand(c, "INFO memory") : NULL;
        const char *at = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "used_memory:") : NULL;
        if (!at) sum = -1;
        else if (sum >= 0) sum += strtoll(at + strlen("used_memory:"), NULL, 10);
        if (r) freeReplyObject(r);
        if (c) redisFree(c);
    }
    return sum;
}

typedef struct counter {
    int done, applied;
} counter;

static void count_cb(void *ud, int applied, const char *error) {
    counter *c = ud;
    if (!error && applied == 1) __atomic_add_fetch(&c->applied, 1, __ATOMIC_RELAXED);
    __atomic_add_fetch(&c->done, 1, __ATOMIC_RELEASE);
}

/* A figure, not an assertion beyond "the writes were applied": Redis's
 * memory per session entry, over many users with one device each, as
 * gateways write them (a 6-character node name, 7-digit connection ids). */
static void session_entry_bytes(void) {
    enum { USERS = 10000 };
    long long before = cluster_used_memory();
    counter c = {0};
    uint64_t base = 9000000000000000000ull;
    for (int i = 0; i < USERS; i++) {
        rr_session s = {.user = base + (uint64_t)i, .device = 1, .conn_id = 1000000 + (uint64_t)i,
                        .since_ms = 1796000000000ull + (uint64_t)i, .node = "gw-001"};
        CHECK(registry_redis_connect(reg, &s, count_cb, &c) == 0, "connect %d not queued", i);
    }
    for (int i = 0; i < WAIT_MS / 10 && __atomic_load_n(&c.done, __ATOMIC_ACQUIRE) < USERS; i++) h_sleep_ms(10);
    long long after = cluster_used_memory();
    CHECK(c.applied == USERS, "%d of %d session writes applied", c.applied, USERS);
    CHECK(before > 0 && after > 0, "INFO memory unreadable");
    check_note("Redis session registry: %lld bytes of used_memory per user with one session entry "
               "(%d users, three masters)", (after - before) / USERS, USERS);
}

int main(void) {
    RUN(start_redis);
    RUN(node_is_in_the_directory_and_refreshed);
    RUN(killed_node_expires);
    RUN(sessions_follow_connections);
    RUN(session_entry_bytes);
    RUN(healthz_waits_for_redis);
    RUN(unreachable_redis_fails_the_start);
    if (reg) registry_redis_free(reg);
    if (rc) rc_free(rc);
    redis_cluster_stop();
    CHECK_EXIT();
}
