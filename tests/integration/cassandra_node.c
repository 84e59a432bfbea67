/* cassandra_node.c -- see cassandra_node.h. One node per program, so its
 * state is file-static: the signal handlers need to reach it. */
#include "cassandra_node.h"

#include "engine_node.h"

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

void cassandra_node_stop(void) {
    if (!started) return;
    started = 0;
    if (node_pid > 0) kill(node_pid, SIGCONT);   /* in case a test left it stopped */
    if (run_script("stop") != 0) fprintf(stderr, "  cassandra.sh stop failed\n");
    engine_remove_dir(dir);
}

int cassandra_node_start(const char *tag) {
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
    if (run_script("start") != 0) return -1;
    return read_node();
}

int cassandra_node_freeze(int timeout_ms) { return engine_freeze(node_pid, timeout_ms); }

const char *cassandra_node_hosts(void) { return hosts; }
long cassandra_node_port(void) { return cql_port; }
pid_t cassandra_node_pid(void) { return node_pid; }
