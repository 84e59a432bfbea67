/* cassandra_node.c -- see cassandra_node.h. One node per program, so its
 * state is file-static: the signal handlers need to reach it. */
#include "cassandra_node.h"

#include "engine_node.h"
#include "store/cql/cql.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256];
static char hosts[64];
static long cql_port;
static pid_t node_pid;
static int started;
/* on the node of PARLEY_TEST_CASSANDRA: the keyspaces it had when this
 * program came, so that the program's own are dropped when it goes */
static int shared;
enum { MAX_KEYSPACES = 512, KEYSPACE_NAME = 49 };   /* Cassandra: names of at most 48 */
static char (*found)[KEYSPACE_NAME];
static size_t n_found;

/* scripts/cassandra.sh CMD --dir dir [--port cql_port]; its exit status */
static int run_script(const char *cmd) {
    char port[16];
    snprintf(port, sizeof port, "%ld", cql_port);
    const char *argv[] = {"sh", PARLEY_SOURCE_DIR "/scripts/cassandra.sh", cmd, "--dir", dir, "--port", port, NULL};
    if (!(cql_port > 0 && strcmp(cmd, "start") == 0)) argv[5] = NULL;
    return engine_run(argv, 0);
}

/* after a start: the port and PID the script wrote */
static int read_node(void) {
    long port = 0, pid = 0;
    if (engine_read_long(dir, "port", &port) != 0 || engine_read_long(dir, "cassandra.pid", &pid) != 0) {
        fprintf(stderr, "  cassandra.sh left no port or pid file in %s\n", dir);
        return -1;
    }
    cql_port = port;
    node_pid = (pid_t)pid;
    snprintf(hosts, sizeof hosts, "127.0.0.1:%ld", cql_port);
    return 0;
}

/* The non-system keyspaces on the shared node, into names (at most
 * MAX_KEYSPACES). Their count, or -1 with the reason on stderr. */
static long list_keyspaces(cql_client *c, char (*names)[KEYSPACE_NAME]) {
    cql_result *r = cql_query_sync(c, "SELECT keyspace_name FROM system_schema.keyspaces", CQL_ONE);
    long n = -1;
    if (r && cql_result_status(r) == CQL_OK && cql_result_rows(r) <= MAX_KEYSPACES) {
        n = 0;
        for (size_t i = 0; i < cql_result_rows(r); i++) {
            const uint8_t *p;
            size_t len;
            if (cql_get_bytes(r, i, 0, &p, &len) != 0 || len == 0 || len >= KEYSPACE_NAME) continue;
            if (len >= 6 && memcmp(p, "system", 6) == 0) continue;
            memcpy(names[n], p, len);
            names[n++][len] = '\0';
        }
    } else {
        fprintf(stderr, "  listing the keyspaces of %s: %s\n", hosts,
                r ? (cql_result_rows(r) > MAX_KEYSPACES ? "too many" : cql_result_message(r)) : "no result");
    }
    cql_result_free(r);
    return n;
}

static cql_client *shared_connect(void) {
    cql_options o = {.hosts = hosts, .request_timeout_ms = 60000};
    cql_client *c = cql_connect(&o);
    if (c && cql_wait_ready(c, 30000) == 0) return c;
    fprintf(stderr, "  no connection to the Cassandra node of PARLEY_TEST_CASSANDRA (%s)\n", hosts);
    if (c) cql_close(c);
    return NULL;
}

/* DROP KEYSPACE for each one the node has now and did not have at start:
 * the next program on the node finds it as this one did */
static void drop_own_keyspaces(void) {
    char (*now)[KEYSPACE_NAME] = calloc(MAX_KEYSPACES, sizeof *now);
    cql_client *c = now ? shared_connect() : NULL;
    long n = c ? list_keyspaces(c, now) : -1;
    for (long i = 0; i < n; i++) {
        size_t j = 0;
        while (j < n_found && strcmp(found[j], now[i]) != 0) j++;
        if (j < n_found) continue;
        char q[96];
        snprintf(q, sizeof q, "DROP KEYSPACE IF EXISTS \"%s\"", now[i]);
        cql_result *r = cql_query_sync(c, q, CQL_ONE);
        if (!r || cql_result_status(r) != CQL_OK)
            fprintf(stderr, "  %s: %s (left on the shared node)\n", q, r ? cql_result_message(r) : "no result");
        cql_result_free(r);
    }
    if (c) cql_close(c);
    free(now);
}

/* the node of PARLEY_TEST_CASSANDRA instead of one of our own */
static int start_shared(const char *env) {
    snprintf(hosts, sizeof hosts, "%s", env);
    const char *colon = strrchr(hosts, ':');
    cql_port = colon ? strtol(colon + 1, NULL, 10) : 0;
    node_pid = 0;
    found = calloc(MAX_KEYSPACES, sizeof *found);
    if (!found || engine_cleanup(cassandra_node_stop) != 0) return -1;
    cql_client *c = shared_connect();
    long n = c ? list_keyspaces(c, found) : -1;
    if (c) cql_close(c);
    if (n < 0) return -1;
    n_found = (size_t)n;
    shared = started = 1;
    return 0;
}

/* a test that stops, restarts or signals its node must have one of its own:
 * tests/run.sh gives PARLEY_TEST_CASSANDRA only to the tests that do not */
static void refuse_shared(const char *what) {
    fprintf(stderr, "  %s: the node is shared (PARLEY_TEST_CASSANDRA=%s); a test that stops or signals its node "
                    "starts its own (tests/run.sh)\n", what, hosts);
}

void cassandra_node_stop(void) {
    if (!started) return;
    started = 0;
    if (shared) {
        if (!engine_stopping_on_signal()) drop_own_keyspaces();
        free(found);
        found = NULL;
        return;
    }
    if (node_pid > 0) kill(node_pid, SIGCONT);   /* in case a test left it stopped */
    if (run_script("stop") != 0) fprintf(stderr, "  cassandra.sh stop failed\n");
    engine_remove_dir(dir);
}

int cassandra_node_start(const char *tag) {
    int bad;
    const char *env = engine_shared("PARLEY_TEST_CASSANDRA", sizeof hosts, &bad);
    if (bad) return -1;
    if (env) return start_shared(env);
    snprintf(dir, sizeof dir, "/tmp/parley-%s-XXXXXX", tag);
    if (engine_dir_and_cleanup(dir, cassandra_node_stop) != 0) return -1;
    started = 1;   /* from here on, stop (and remove the directory) at exit */
    int rc = run_script("start");
    if (rc != 0) {
        fprintf(stderr, "  scripts/cassandra.sh start failed (%d): Java 17, Maven and the jars are required\n", rc);
        return -1;
    }
    return read_node();
}

int cassandra_node_restart(void) {
    if (shared) {
        refuse_shared("cassandra_node_restart");
        return -1;
    }
    if (run_script("start") != 0) return -1;
    return read_node();
}

int cassandra_node_freeze(int timeout_ms) {
    if (shared) {
        refuse_shared("cassandra_node_freeze");
        return -1;
    }
    return engine_freeze(node_pid, timeout_ms);
}

const char *cassandra_node_hosts(void) { return hosts; }
long cassandra_node_port(void) { return cql_port; }
pid_t cassandra_node_pid(void) {
    if (shared) {   /* no PID to give: kill(0, ...) would signal our own group */
        refuse_shared("cassandra_node_pid");
        abort();
    }
    return node_pid;
}
