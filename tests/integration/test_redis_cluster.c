/* test_redis_cluster.c -- the Redis Cluster client (src/registry/redis_cluster.c)
 * against a real three-master Redis Cluster, started for the program by
 * scripts/redis-cluster.sh in a temporary directory and stopped by PID on
 * every exit path. Waits are on observable state (a completion count, a
 * client counter) with generous bounds; nothing asserts a duration. */
#include "../check.h"
#include "redis_cluster_node.h"
#include "registry/redis_cluster.h"
#include "registry/redis_cluster_parse.h"

#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define WAIT_MS 60000

static int cluster_up;

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* completions of a batch of async commands */
typedef struct batch {
    atomic_int done, ok, errors;
    const char *expect; /* a status or string reply every command should give; NULL: any non-error */
} batch;

static void batch_cb(void *ud, redisReply *r, const char *error) {
    batch *b = ud;
    int good = !error && r && r->type != REDIS_REPLY_ERROR;
    if (good && b->expect)
        good = (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING) && strcmp(r->str, b->expect) == 0;
    if (good)
        atomic_fetch_add(&b->ok, 1);
    else
        atomic_fetch_add(&b->errors, 1);
    if (r)
        freeReplyObject(r);
    atomic_fetch_add(&b->done, 1);
}

static int wait_done(batch *b, int n) {
    uint64_t until = now_ms() + WAIT_MS;
    while (atomic_load(&b->done) < n && now_ms() < until)
        sleep_ms(5);
    return atomic_load(&b->done) == n;
}

static rc_client *client(int timeout_ms, size_t max_in_flight) {
    rc_options o = {.seeds = redis_cluster_seeds(), .timeout_ms = timeout_ms, .max_in_flight_per_node = max_in_flight};
    char err[200];
    rc_client *c = rc_new(&o, err, sizeof err);
    if (!c)
        fprintf(stderr, "  rc_new: %s\n", err);
    else if (rc_wait_ready(c, WAIT_MS) != 0)
        fprintf(stderr, "  slot map never covered every slot\n");
    return c;
}

static int owner_of(int slot) {
    static int owners[RC_SLOTS];
    if (redis_cluster_owner_map(owners) != 0)
        return -1;
    return owners[slot];
}

static long long direct_int(int i, const char *command) {
    redisContext *d = redis_cluster_direct(i);
    redisReply *r = d ? redisCommand(d, command) : NULL;
    long long v = r && r->type == REDIS_REPLY_INTEGER ? r->integer : -1;
    if (r)
        freeReplyObject(r);
    if (d)
        redisFree(d);
    return v;
}

static void start_cluster(void) {
    uint64_t t0 = now_ms();
    CHECK(redis_cluster_start("redis-cluster") == 0, "cluster did not start");
    cluster_up = 1;
    check_note("redis cluster of 3 masters ready in %llu ms (seeds %s)", (unsigned long long)(now_ms() - t0),
               redis_cluster_seeds());
}

/* one key per slot, 16384 SETs pipelined: each lands on the master owning
 * its slot with no MOVED (the client's CRC16 and map agree with Redis), and
 * every master holds exactly the keys of its slots */
static void routes_a_key_of_every_slot_to_its_owner(void) {
    static char keys[RC_SLOTS][24];
    int have = 0;
    for (unsigned i = 0; have < RC_SLOTS && i < 10000000; i++) {
        char k[24];
        int n = snprintf(k, sizeof k, "k%u", i);
        uint16_t s = rc_key_slot(k, (size_t)n);
        if (keys[s][0] == '\0') {
            memcpy(keys[s], k, (size_t)n + 1);
            have++;
        }
    }
    CHECK(have == RC_SLOTS, "found keys for %d slots", have);
    rc_client *c = client(10000, 1024);
    CHECK(c, "client");
    batch b = {.expect = "OK"};
    for (int s = 0; s < RC_SLOTS; s++) {
        const char *argv[] = {"SET", keys[s], keys[s]};
        if (rc_command(c, keys[s], strlen(keys[s]), 3, argv, NULL, batch_cb, &b) != 0) {
            rc_free(c);
            CHECK(0, "rc_command refused slot %d", s);
        }
    }
    int all = wait_done(&b, RC_SLOTS);
    rc_stats st;
    rc_get_stats(c, &st);
    rc_free(c);
    CHECK(all, "only %d of %d completed", atomic_load(&b.done), RC_SLOTS);
    CHECK(atomic_load(&b.ok) == RC_SLOTS, "%d errors", atomic_load(&b.errors));
    CHECK(st.moved == 0 && st.ask == 0, "redirected: moved %llu ask %llu", (unsigned long long)st.moved,
          (unsigned long long)st.ask);
    static int owners[RC_SLOTS];
    CHECK(redis_cluster_owner_map(owners) == 0, "CLUSTER SLOTS");
    long long total = 0;
    for (int i = 0; i < REDIS_CLUSTER_MASTERS; i++) {
        long long keys_here = direct_int(i, "DBSIZE");
        int owned = 0;
        for (int s = 0; s < RC_SLOTS; s++)
            owned += owners[s] == i;
        CHECK(keys_here == owned, "node %d holds %lld keys for %d slots", i, keys_here, owned);
        total += keys_here;
    }
    CHECK(total == RC_SLOTS, "total %lld", total);
}

/* with the only master of a set of keys stopped (SIGSTOP), commands queue up
 * to the in-flight bound and no further; after SIGCONT every one completes */
static void pipelines_up_to_the_in_flight_bound(void) {
    enum { N = 600, BOUND = 128 };
    rc_client *c = client(60000, BOUND);
    CHECK(c, "client");
    int node = owner_of(rc_key_slot("{pipe}", 6));
    CHECK(node >= 0, "owner");
    /* connect first, so the commands are written rather than queued behind a connect */
    char err[128];
    const char *ping[] = {"SET", "{pipe}:0", "x"};
    redisReply *r = rc_command_sync(c, "{pipe}", 6, 3, ping, NULL, err, sizeof err);
    if (r)
        freeReplyObject(r);
    CHECK(r, "first command: %s", err);
    kill(redis_cluster_pid(node), SIGSTOP);
    batch b = {.expect = "OK"};
    for (int i = 0; i < N; i++) {
        char k[32];
        snprintf(k, sizeof k, "{pipe}:%d", i);
        const char *argv[] = {"SET", k, "v"};
        CHECK(rc_command(c, "{pipe}", 6, 3, argv, NULL, batch_cb, &b) == 0, "refused %d", i);
    }
    rc_stats st = {0};
    uint64_t until = now_ms() + WAIT_MS;
    while (now_ms() < until) {
        rc_get_stats(c, &st);
        if (st.peak_in_flight >= BOUND)
            break;
        sleep_ms(5);
    }
    int done_while_stopped = atomic_load(&b.done);
    kill(redis_cluster_pid(node), SIGCONT);
    int all = wait_done(&b, N);
    rc_stats after;
    rc_get_stats(c, &after);
    rc_free(c);
    CHECK(st.peak_in_flight == BOUND, "peak in flight %llu while stopped (bound %d)",
          (unsigned long long)st.peak_in_flight, BOUND);
    CHECK(done_while_stopped == 0, "%d answered by a stopped node", done_while_stopped);
    CHECK(all && atomic_load(&b.ok) == N, "%d ok %d errors of %d", atomic_load(&b.ok), atomic_load(&b.errors), N);
    CHECK(after.peak_in_flight == BOUND, "peak %llu", (unsigned long long)after.peak_in_flight);
}

static int node_id(int i, char *out, size_t len) {
    redisContext *d = redis_cluster_direct(i);
    redisReply *r = d ? redisCommand(d, "CLUSTER MYID") : NULL;
    int ok = r && r->type == REDIS_REPLY_STRING && r->len < len;
    if (ok)
        memcpy(out, r->str, r->len + 1);
    if (r)
        freeReplyObject(r);
    if (d)
        redisFree(d);
    return ok ? 0 : -1;
}

static int admin_ok(int i, const char *fmt, ...) {
    redisContext *d = redis_cluster_direct(i);
    if (!d)
        return -1;
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(d, fmt, ap);
    va_end(ap);
    int ok = r && r->type == REDIS_REPLY_STATUS;
    if (!ok)
        fprintf(stderr, "  admin on node %d: %s\n", i, r && r->str ? r->str : "no reply");
    if (r)
        freeReplyObject(r);
    redisFree(d);
    return ok ? 0 : -1;
}

/* GETs of keys k0..n-1 (and "{mig}:new"), pipelined; how many matched */
static int get_all(rc_client *c, int n, int with_new) {
    batch b = {0};
    static char vals[128][32];
    for (int i = 0; i < n; i++)
        snprintf(vals[i], sizeof vals[i], "{mig}:%d", i);
    batch per[128];
    memset(per, 0, sizeof per);
    for (int i = 0; i < n; i++) {
        per[i].expect = vals[i];
        const char *argv[] = {"GET", vals[i]};
        if (rc_command(c, vals[i], strlen(vals[i]), 2, argv, NULL, batch_cb, &per[i]) != 0)
            return -1;
    }
    if (with_new) {
        b.expect = "fresh";
        const char *argv[] = {"GET", "{mig}:new"};
        if (rc_command(c, "{mig}", 5, 2, argv, NULL, batch_cb, &b) != 0)
            return -1;
        if (!wait_done(&b, 1))
            return -1;
    }
    int ok = atomic_load(&b.ok);
    for (int i = 0; i < n; i++)
        if (wait_done(&per[i], 1))
            ok += atomic_load(&per[i].ok);
    return ok;
}

/* a slot migrated under the client (SETSLOT IMPORTING/MIGRATING, MIGRATE
 * half, then the rest, then SETSLOT NODE): reads of moved keys and a write
 * of a new key follow ASK while it migrates, and MOVED after; none is lost */
static void follows_a_slot_migration_through_ask_and_moved(void) {
    enum { N = 100 };
    int slot = rc_key_slot("{mig}", 5);
    int from = owner_of(slot);
    CHECK(from >= 0, "owner");
    int to = (from + 1) % REDIS_CLUSTER_MASTERS;
    char id_from[64], id_to[64];
    CHECK(node_id(from, id_from, sizeof id_from) == 0 && node_id(to, id_to, sizeof id_to) == 0, "node ids");
    rc_client *c = client(10000, 1024);
    CHECK(c, "client");
    batch w = {.expect = "OK"};
    for (int i = 0; i < N; i++) {
        char k[32];
        snprintf(k, sizeof k, "{mig}:%d", i);
        const char *argv[] = {"SET", k, k};
        CHECK(rc_command(c, k, strlen(k), 3, argv, NULL, batch_cb, &w) == 0, "refused");
    }
    CHECK(wait_done(&w, N) && atomic_load(&w.ok) == N, "writes: %d ok", atomic_load(&w.ok));

    CHECK(admin_ok(to, "CLUSTER SETSLOT %d IMPORTING %s", slot, id_from) == 0, "importing");
    CHECK(admin_ok(from, "CLUSTER SETSLOT %d MIGRATING %s", slot, id_to) == 0, "migrating");
    for (int i = 0; i < N / 2; i++)
        CHECK(admin_ok(from, "MIGRATE 127.0.0.1 %d {mig}:%d 0 10000", redis_cluster_port(to), i) == 0, "migrate %d", i);
    rc_stats st0;
    rc_get_stats(c, &st0);
    /* a new key in a migrating slot is written on the target (ASK) */
    char err[128];
    const char *set_new[] = {"SET", "{mig}:new", "fresh"};
    redisReply *r = rc_command_sync(c, "{mig}", 5, 3, set_new, NULL, err, sizeof err);
    int set_ok = r && r->type == REDIS_REPLY_STATUS;
    if (r)
        freeReplyObject(r);
    CHECK(set_ok, "SET during migration: %s", r ? "error reply" : err);
    int got = get_all(c, N, 1);
    rc_stats st1;
    rc_get_stats(c, &st1);
    CHECK(got == N + 1, "during migration %d of %d read back", got, N + 1);
    /* keys 0..49 and the new key are on the target: each read asked there */
    CHECK(st1.ask - st0.ask >= (uint64_t)(N / 2 + 2), "ask redirects %llu", (unsigned long long)(st1.ask - st0.ask));
    CHECK(st1.moved == st0.moved, "moved %llu during migration", (unsigned long long)(st1.moved - st0.moved));

    /* a multi-key read split between source and target is TRYAGAIN: retried
     * with backoff max_retries (8) times, then handed back as the error */
    const char *mget[] = {"MGET", "{mig}:0", "{mig}:99"};
    r = rc_command_sync(c, "{mig}", 5, 3, mget, NULL, err, sizeof err);
    int tryagain = r && r->type == REDIS_REPLY_ERROR && strncmp(r->str, "TRYAGAIN", 8) == 0;
    if (r)
        freeReplyObject(r);
    rc_stats st_try;
    rc_get_stats(c, &st_try);
    CHECK(tryagain, "MGET across a migrating slot: %s", r ? "not TRYAGAIN" : err);
    CHECK(st_try.tryagain - st1.tryagain == 9, "TRYAGAIN seen %llu times (1 + 8 retries expected)",
          (unsigned long long)(st_try.tryagain - st1.tryagain));

    for (int i = N / 2; i < N; i++)
        CHECK(admin_ok(from, "MIGRATE 127.0.0.1 %d {mig}:%d 0 10000", redis_cluster_port(to), i) == 0, "migrate %d", i);
    /* and whatever else the slot holds (an earlier case wrote a key in every slot) */
    redisContext *d = redis_cluster_direct(from);
    redisReply *left = d ? redisCommand(d, "CLUSTER GETKEYSINSLOT %d 1000", slot) : NULL;
    int moved_rest = left && left->type == REDIS_REPLY_ARRAY;
    for (size_t i = 0; moved_rest && i < left->elements; i++)
        moved_rest = admin_ok(from, "MIGRATE 127.0.0.1 %d %b 0 10000", redis_cluster_port(to), left->element[i]->str,
                              left->element[i]->len) == 0;
    if (left)
        freeReplyObject(left);
    if (d)
        redisFree(d);
    CHECK(moved_rest, "migrating the slot's other keys");
    /* the target first, then the source, then the rest (as redis-cli does) */
    int order[REDIS_CLUSTER_MASTERS] = {to, from, 3 - to - from};
    for (int i = 0; i < REDIS_CLUSTER_MASTERS; i++)
        CHECK(admin_ok(order[i], "CLUSTER SETSLOT %d NODE %s", slot, id_to) == 0, "setslot node on %d", order[i]);
    got = get_all(c, N, 1);
    rc_stats st2;
    rc_get_stats(c, &st2);
    CHECK(got == N + 1, "after migration %d of %d read back", got, N + 1);
    CHECK(st2.moved > st1.moved, "no MOVED followed");
    /* the map now says `to`: another round is not redirected */
    got = get_all(c, N, 1);
    rc_stats st3;
    rc_get_stats(c, &st3);
    rc_free(c);
    CHECK(got == N + 1, "third round %d", got);
    CHECK(st3.moved == st2.moved && st3.ask == st2.ask, "redirected again: moved +%llu ask +%llu",
          (unsigned long long)(st3.moved - st2.moved), (unsigned long long)(st3.ask - st2.ask));
    CHECK(owner_of(slot) == to, "slot owner %d", owner_of(slot));
}

/* kill -9 of a master: commands for its slots complete with errors (not
 * hangs); after it is restarted on the same port the client reaches it again */
static void a_killed_master_gives_errors_then_recovers(void) {
    enum { N = 200 };
    int slot = rc_key_slot("{kill}", 6);
    int victim = owner_of(slot);
    CHECK(victim >= 0, "owner");
    rc_client *c = client(2000, 1024);
    CHECK(c, "client");
    char err[128];
    const char *set[] = {"SET", "{kill}", "before"};
    redisReply *r = rc_command_sync(c, "{kill}", 6, 3, set, NULL, err, sizeof err);
    if (r)
        freeReplyObject(r);
    CHECK(r, "before: %s", err);
    rc_stats st0;
    rc_get_stats(c, &st0);

    CHECK(redis_cluster_kill(victim) == 0, "kill -9");
    batch b = {0};
    for (int i = 0; i < N; i++) {
        const char *get[] = {"GET", "{kill}"};
        CHECK(rc_command(c, "{kill}", 6, 2, get, NULL, batch_cb, &b) == 0, "refused");
    }
    int all = wait_done(&b, N);
    CHECK(all, "%d of %d completed while the master was down (hang)", atomic_load(&b.done), N);
    CHECK(atomic_load(&b.errors) == N, "%d of %d succeeded on a dead master", atomic_load(&b.ok), N);

    CHECK(redis_cluster_restart(victim) == 0, "restart");
    /* the restarted master (no persistence) is empty; a write through the
     * client must get there once the client reconnects */
    int ok = 0;
    uint64_t until = now_ms() + WAIT_MS;
    const char *set2[] = {"SET", "{kill}", "after"};
    while (!ok && now_ms() < until) {
        r = rc_command_sync(c, "{kill}", 6, 3, set2, NULL, err, sizeof err);
        ok = r && r->type == REDIS_REPLY_STATUS;
        if (r)
            freeReplyObject(r);
        if (!ok)
            sleep_ms(100);
    }
    CHECK(ok, "no successful write after the restart: %s", err);
    const char *get[] = {"GET", "{kill}"};
    r = rc_command_sync(c, "{kill}", 6, 2, get, NULL, err, sizeof err);
    int same = r && r->type == REDIS_REPLY_STRING && strcmp(r->str, "after") == 0;
    if (r)
        freeReplyObject(r);
    rc_stats st1;
    rc_get_stats(c, &st1);
    rc_free(c);
    CHECK(same, "read back after restart");
    CHECK(st1.conn_failures > st0.conn_failures && st1.connects > st0.connects, "reconnected (connects %llu -> %llu)",
          (unsigned long long)st0.connects, (unsigned long long)st1.connects);
    check_note("kill -9: %d commands failed; client recovered after %llu connection failures",
               N, (unsigned long long)(st1.conn_failures - st0.conn_failures));
}

static void bounds_refuse_oversized_commands_and_replies(void) {
    rc_options o = {.seeds = redis_cluster_seeds(), .max_command_bytes = 1000, .max_queued = 4};
    char err[200];
    rc_client *c = rc_new(&o, err, sizeof err);
    CHECK(c, "rc_new: %s", err);
    static char big[2000];
    memset(big, 'x', sizeof big - 1);
    const char *argv[] = {"SET", "big", big};
    int refused = rc_command(c, "big", 3, 3, argv, NULL, batch_cb, NULL) != 0;
    rc_free(c);
    CHECK(refused, "a 2000-byte command was accepted with max_command_bytes 1000");
    /* a reply over max_reply_bytes fails its command (and closes that
     * connection); the client reconnects for the next one */
    rc_options small = {.seeds = redis_cluster_seeds(), .max_reply_bytes = 1000, .timeout_ms = 10000};
    c = rc_new(&small, err, sizeof err);
    CHECK(c && rc_wait_ready(c, WAIT_MS) == 0, "client");
    const char *set[] = {"SET", "{big}", big};
    redisReply *r = rc_command_sync(c, "{big}", 5, 3, set, NULL, err, sizeof err);
    int set_ok = r && r->type == REDIS_REPLY_STATUS;
    if (r)
        freeReplyObject(r);
    const char *get[] = {"GET", "{big}"};
    r = rc_command_sync(c, "{big}", 5, 2, get, NULL, err, sizeof err);
    int refused_big = r == NULL && strcmp(err, "reply too large") == 0;
    if (r)
        freeReplyObject(r);
    const char *strlen_cmd[] = {"STRLEN", "{big}"};
    r = rc_command_sync(c, "{big}", 5, 2, strlen_cmd, NULL, err, sizeof err);
    int small_ok = r && r->type == REDIS_REPLY_INTEGER && r->integer == (long long)sizeof big - 1;
    if (r)
        freeReplyObject(r);
    rc_free(c);
    CHECK(set_ok, "SET of a 1999-byte value");
    CHECK(refused_big, "a 1999-byte reply passed max_reply_bytes 1000");
    CHECK(small_ok, "a small reply after the oversized one");
    rc_options bad = {.seeds = "localhost:1"};
    c = rc_new(&bad, err, sizeof err);
    CHECK(!c, "a host name seed was accepted");
    rc_options bad2 = {.seeds = "127.0.0.1"};
    c = rc_new(&bad2, err, sizeof err);
    CHECK(!c, "a seed without a port was accepted");
}

/* completions of a batch that must all run on one thread */
typedef struct on_thread {
    batch b;
    pthread_t expect;
    atomic_int elsewhere;
} on_thread;

static void on_thread_cb(void *ud, redisReply *r, const char *error) {
    on_thread *t = ud;
    if (!pthread_equal(pthread_self(), t->expect))
        atomic_fetch_add(&t->elsewhere, 1);
    batch_cb(&t->b, r, error);
}

/* external_loop: no thread of the client's own; the test's epoll loop runs
 * it through rc_loop_fd / rc_loop_run, and every completion runs there */
static void runs_on_the_callers_epoll_loop(void) {
    enum { N = 3000 };
    rc_options o = {.seeds = redis_cluster_seeds(), .timeout_ms = 10000, .external_loop = 1};
    char err[200];
    rc_client *c = rc_new(&o, err, sizeof err);
    CHECK(c, "rc_new: %s", err);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    int added = ep >= 0 && rc_loop_fd(c) >= 0 && epoll_ctl(ep, EPOLL_CTL_ADD, rc_loop_fd(c), &ev) == 0;
    on_thread t = {.b = {.expect = "OK"}, .expect = pthread_self()};
    int submitted = 0;
    uint64_t until = now_ms() + WAIT_MS;
    int wait = 0;
    while (added && atomic_load(&t.b.done) < N && now_ms() < until) {
        struct epoll_event got;
        epoll_wait(ep, &got, 1, wait);
        wait = rc_loop_run(c);
        /* submit once the map is known, from this same thread */
        if (!submitted && rc_wait_ready(c, 0) == 0) {
            for (int i = 0; i < N; i++) {
                char k[32];
                snprintf(k, sizeof k, "loop:%d", i);
                const char *argv[] = {"SET", k, "v"};
                if (rc_command(c, k, strlen(k), 3, argv, NULL, on_thread_cb, &t) != 0)
                    break;
                submitted++;
            }
        }
    }
    rc_free(c);
    if (ep >= 0)
        close(ep);
    CHECK(added, "rc_loop_fd not added to the caller's epoll set");
    CHECK(submitted == N, "submitted %d", submitted);
    CHECK(atomic_load(&t.b.ok) == N, "%d ok, %d errors of %d", atomic_load(&t.b.ok), atomic_load(&t.b.errors), N);
    CHECK(atomic_load(&t.elsewhere) == 0, "%d completions on another thread", atomic_load(&t.elsewhere));
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    RUN(start_cluster);
    if (cluster_up) {
        RUN(routes_a_key_of_every_slot_to_its_owner);
        RUN(pipelines_up_to_the_in_flight_bound);
        RUN(follows_a_slot_migration_through_ask_and_moved);
        RUN(bounds_refuse_oversized_commands_and_replies);
        RUN(runs_on_the_callers_epoll_loop);
        RUN(a_killed_master_gives_errors_then_recovers);
    }
    redis_cluster_stop();
    CHECK_EXIT();
}
