/* redis_cluster_node.c -- see redis_cluster_node.h. One cluster per
 * program, so its state is file-static: the signal handlers need to reach it. */
#include "redis_cluster_node.h"

#include "engine_node.h"

#include <hiredis/hiredis.h>

#include "registry/redis_cluster_parse.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static char dir[256];
static char seeds[128];
static int ports[REDIS_CLUSTER_MASTERS];
static pid_t pids[REDIS_CLUSTER_MASTERS];
static int started;
/* on the cluster of PARLEY_TEST_REDIS_CLUSTER, emptied at start and stop */
static int shared;

/* scripts/redis-cluster.sh CMD --dir dir [--node N | --masters 3]; its
 * exit status (its stdout, the ports, is read from DIR/ports, not here) */
static int run_script(const char *cmd, int node) {
    char n[16];
    snprintf(n, sizeof n, "%d", node);
    const char *argv[] = {"sh", PARLEY_SOURCE_DIR "/scripts/redis-cluster.sh", cmd, "--dir", dir,
                          node > 0 ? "--node" : "--masters", node > 0 ? n : "3", NULL};
    return engine_run(argv, 1);
}

static int read_node(int i) {
    char name[32];
    long port = 0, pid = 0;
    snprintf(name, sizeof name, "redis-%d.port", i + 1);
    if (engine_read_long(dir, name, &port) != 0)
        return -1;
    snprintf(name, sizeof name, "redis-%d.pid", i + 1);
    if (engine_read_long(dir, name, &pid) != 0)
        return -1;
    ports[i] = (int)port;
    pids[i] = (pid_t)pid;
    return 0;
}

/* the end of node i's log on stderr (the directory goes at exit) */
static void show_log(int i) {
    char cmd[400];
    snprintf(cmd, sizeof cmd, "tail -n 20 '%s/redis-%d.log' >&2", dir, i + 1);
    if (system(cmd) != 0)
        fprintf(stderr, "  (no log)\n");
}

/* FLUSHALL on every master of the shared cluster: the program finds it
 * empty and leaves it so. 0, or -1 with the reason on stderr. */
static int flush_shared(void) {
    int rc = 0;
    for (int i = 0; i < REDIS_CLUSTER_MASTERS; i++) {
        struct timeval tv = {10, 0};
        redisContext *c = redisConnectWithTimeout("127.0.0.1", ports[i], tv);
        redisReply *r = NULL;
        if (c && !c->err && redisSetTimeout(c, tv) == REDIS_OK)
            r = redisCommand(c, "FLUSHALL");
        if (!r || r->type == REDIS_REPLY_ERROR) {
            fprintf(stderr, "  FLUSHALL on 127.0.0.1:%d of PARLEY_TEST_REDIS_CLUSTER failed: %s\n", ports[i],
                    r ? r->str : c && c->err ? c->errstr : "no reply");
            rc = -1;
        }
        if (r)
            freeReplyObject(r);
        if (c)
            redisFree(c);
    }
    return rc;
}

/* "127.0.0.1:P1,127.0.0.1:P2,127.0.0.1:P3" of PARLEY_TEST_REDIS_CLUSTER
 * instead of a cluster of our own */
static int start_shared(const char *env) {
    const char *p = env;
    for (int i = 0; i < REDIS_CLUSTER_MASTERS; i++) {
        char *end;
        if (strncmp(p, "127.0.0.1:", 10) != 0)
            break;
        long port = strtol(p + 10, &end, 10);
        if (port <= 0 || port > 65535 || *end != (i + 1 < REDIS_CLUSTER_MASTERS ? ',' : '\0'))
            break;
        ports[i] = (int)port;
        pids[i] = 0;
        p = end + 1;
        if (i + 1 == REDIS_CLUSTER_MASTERS) {
            snprintf(seeds, sizeof seeds, "%s", env);
            if (engine_cleanup(redis_cluster_stop) != 0 || flush_shared() != 0)
                return -1;
            shared = started = 1;
            return 0;
        }
    }
    fprintf(stderr, "  PARLEY_TEST_REDIS_CLUSTER=%s: expected 127.0.0.1:PORT,127.0.0.1:PORT,127.0.0.1:PORT\n", env);
    return -1;
}

/* a test that kills or signals a node must have a cluster of its own:
 * tests/run.sh gives PARLEY_TEST_REDIS_CLUSTER only to the tests that do not */
static void refuse_shared(const char *what) {
    fprintf(stderr, "  %s: the cluster is shared (PARLEY_TEST_REDIS_CLUSTER=%s); a test that stops or signals a "
                    "node starts its own (tests/run.sh)\n", what, seeds);
}

void redis_cluster_stop(void) {
    if (!started)
        return;
    started = 0;
    if (shared) {
        if (!engine_stopping_on_signal())
            flush_shared();
        return;
    }
    if (run_script("stop", 0) != 0)
        fprintf(stderr, "  redis-cluster.sh stop failed\n");
    engine_remove_dir(dir);
}

int redis_cluster_start(const char *tag) {
    int bad;
    const char *env = engine_shared("PARLEY_TEST_REDIS_CLUSTER", sizeof seeds, &bad);
    if (bad)
        return -1;
    if (env)
        return start_shared(env);
    snprintf(dir, sizeof dir, "/tmp/parley-%s-XXXXXX", tag);
    if (engine_dir_and_cleanup(dir, redis_cluster_stop) != 0)
        return -1;
    started = 1; /* from here on, stop (and remove the directory) at exit */
    int rc = run_script("start", 0);
    if (rc != 0) {
        for (int i = 0; i < REDIS_CLUSTER_MASTERS; i++)
            show_log(i);
        fprintf(stderr, "  scripts/redis-cluster.sh start failed (%d): redis-server and redis-cli are required\n", rc);
        return -1;
    }
    size_t off = 0;
    for (int i = 0; i < REDIS_CLUSTER_MASTERS; i++) {
        if (read_node(i) != 0) {
            fprintf(stderr, "  redis-cluster.sh left no port or pid file for node %d in %s\n", i + 1, dir);
            return -1;
        }
        off += (size_t)snprintf(seeds + off, sizeof seeds - off, "%s127.0.0.1:%d", i ? "," : "", ports[i]);
    }
    return 0;
}

/* 1 while pid exists and is not a zombie */
static int alive(pid_t pid) {
    char path[64], stat[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    size_t n = fread(stat, 1, sizeof stat - 1, f);
    fclose(f);
    stat[n] = '\0';
    const char *paren = strrchr(stat, ')');
    return !(paren && paren[1] == ' ' && (paren[2] == 'Z' || paren[2] == 'X'));
}

int redis_cluster_kill(int i) {
    if (shared) {
        refuse_shared("redis_cluster_kill");
        return -1;
    }
    if (i < 0 || i >= REDIS_CLUSTER_MASTERS || pids[i] <= 0 || kill(pids[i], SIGKILL) != 0)
        return -1;
    for (int waited = 0; waited < 10000; waited += 10) {
        if (!alive(pids[i]))
            return 0;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return -1;
}

int redis_cluster_restart(int i) {
    if (shared) {
        refuse_shared("redis_cluster_restart");
        return -1;
    }
    if (i < 0 || i >= REDIS_CLUSTER_MASTERS)
        return -1;
    if (run_script("start-node", i + 1) != 0) {
        show_log(i);
        return -1;
    }
    return read_node(i);
}

const char *redis_cluster_seeds(void) { return seeds; }
int redis_cluster_port(int i) { return ports[i]; }
pid_t redis_cluster_pid(int i) {
    if (shared) { /* no PID to give: kill(0, ...) would signal our own group */
        refuse_shared("redis_cluster_pid");
        abort();
    }
    return pids[i];
}

redisContext *redis_cluster_direct(int i) {
    struct timeval tv = {10, 0};
    redisContext *d = redisConnectWithTimeout("127.0.0.1", redis_cluster_port(i), tv);
    if (d && !d->err) redisSetTimeout(d, tv);
    return d;
}

int redis_cluster_owner_map(int owners[RC_SLOTS]) {
    for (int s = 0; s < RC_SLOTS; s++) owners[s] = -1;
    redisContext *d = redis_cluster_direct(0);
    redisReply *r = d && !d->err ? redisCommand(d, "CLUSTER SLOTS") : NULL;
    rc_slot_range rg[64];
    int n = r ? rc_parse_slots(r, "127.0.0.1", rg, 64) : -1;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < REDIS_CLUSTER_MASTERS; j++)
            if (redis_cluster_port(j) == rg[i].port)
                for (int s = rg[i].start; s <= rg[i].end; s++) owners[s] = j;
    if (r) freeReplyObject(r);
    if (d) redisFree(d);
    return n < 0 ? -1 : 0;
}
