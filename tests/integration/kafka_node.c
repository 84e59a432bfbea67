/* kafka_node.c -- see kafka_node.h. One broker per program, so its state
 * is file-static: the signal handlers need to reach it. */
#include "kafka_node.h"

#include "engine_node.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { MAX_PROPS = 32 };

static char dir[256];
static char brokers[64];
static long port;
static pid_t node_pid;
static int started;
static const char *props[MAX_PROPS + 1];

/* scripts/kafka.sh CMD --dir dir [--port port] [--set prop]...; its exit status */
static int run_script(const char *cmd) {
    char port_arg[16];
    snprintf(port_arg, sizeof port_arg, "%ld", port);
    const char *argv[8 + 2 * MAX_PROPS];
    size_t n = 0;
    argv[n++] = "sh";
    argv[n++] = PARLEY_SOURCE_DIR "/scripts/kafka.sh";
    argv[n++] = cmd;
    argv[n++] = "--dir";
    argv[n++] = dir;
    if (strcmp(cmd, "start") == 0) {
        if (port > 0) {
            argv[n++] = "--port";
            argv[n++] = port_arg;
        }
        for (size_t i = 0; props[i]; i++) {
            argv[n++] = "--set";
            argv[n++] = props[i];
        }
    }
    argv[n] = NULL;
    /* a shared 2-core machine has been seen to take 50 s: a generous bound
     * unless the caller chose one */
    setenv("KAFKA_START_TIMEOUT", "240", 0);
    /* the script prints "PID PORT" on stdout; the files say the same */
    return engine_run(argv, 1);
}

/* after a start: the port and PID the script wrote */
static int read_node(void) {
    long p = 0, pid = 0;
    if (engine_read_long(dir, "port", &p) != 0 || engine_read_long(dir, "kafka.pid", &pid) != 0) {
        fprintf(stderr, "  kafka.sh left no port or pid file in %s\n", dir);
        return -1;
    }
    port = p;
    node_pid = (pid_t)pid;
    snprintf(brokers, sizeof brokers, "127.0.0.1:%ld", port);
    return 0;
}

void kafka_node_stop(void) {
    if (!started) return;
    started = 0;
    if (node_pid > 0) kill(node_pid, SIGCONT);   /* in case a test left it stopped */
    if (run_script("stop") != 0) fprintf(stderr, "  kafka.sh stop failed\n");
    engine_remove_dir(dir);
}

int kafka_node_start(const char *tag, const char *const *extra) {
    size_t n = 0;
    for (; extra && extra[n]; n++) {
        if (n == MAX_PROPS) {
            fprintf(stderr, "  kafka_node_start: more than %d props\n", MAX_PROPS);
            return -1;
        }
        props[n] = extra[n];
    }
    props[n] = NULL;
    snprintf(dir, sizeof dir, "/tmp/parley-%s-XXXXXX", tag);
    if (engine_dir_and_cleanup(dir, kafka_node_stop) != 0) return -1;
    started = 1;   /* from here on, stop (and remove the directory) at exit */
    int rc = run_script("start");
    if (rc != 0) {
        fprintf(stderr, "  scripts/kafka.sh start failed (%d): Java 17, Maven and the jars are required (see %s/kafka.log)\n",
                rc, dir);
        return -1;
    }
    return read_node();
}

int kafka_node_restart(void) {
    if (node_pid > 0) kill(node_pid, SIGCONT);
    if (run_script("stop") != 0) return -1;
    if (run_script("start") != 0) return -1;
    return read_node();
}

int kafka_node_freeze(int timeout_ms) { return engine_freeze(node_pid, timeout_ms); }

int kafka_node_thaw(void) { return node_pid > 0 && kill(node_pid, SIGCONT) == 0 ? 0 : -1; }

const char *kafka_node_brokers(void) { return brokers; }
long kafka_node_port(void) { return port; }
pid_t kafka_node_pid(void) { return node_pid; }
const char *kafka_node_dir(void) { return dir; }
