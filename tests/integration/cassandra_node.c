/* cassandra_node.c -- see cassandra_node.h. One node per program, so its
 * state is file-static: the signal handlers need to reach it. */
#include "cassandra_node.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/wait.h>
#include <time.h>
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
    pid_t p = fork();
    if (p < 0) return -1;
    if (p == 0) {
        const char *script = PARLEY_SOURCE_DIR "/scripts/cassandra.sh";
        if (cql_port > 0 && strcmp(cmd, "start") == 0)
            execl("/bin/sh", "sh", script, cmd, "--dir", dir, "--port", port, (char *)NULL);
        else
            execl("/bin/sh", "sh", script, cmd, "--dir", dir, (char *)NULL);
        _exit(127);
    }
    int st;
    while (waitpid(p, &st, 0) < 0) {
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int read_file_long(const char *name, long *out) {
    char path[300];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int ok = fscanf(f, "%ld", out) == 1;
    fclose(f);
    return ok ? 0 : -1;
}

/* after a start: the port and PID the script wrote */
static int read_node(void) {
    long port = 0, pid = 0;
    if (read_file_long("port", &port) != 0 || read_file_long("cassandra.pid", &pid) != 0) {
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
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", dir);
}

static void on_signal(int sig) {
    cassandra_node_stop();
    signal(sig, SIG_DFL);
    raise(sig);
}

int cassandra_node_start(const char *tag) {
    snprintf(dir, sizeof dir, "/tmp/parley-%s-XXXXXX", tag);
    if (!mkdtemp(dir)) {
        perror("  mkdtemp");
        return -1;
    }
    started = 1;   /* from here on, stop (and remove the directory) at exit */
    atexit(cassandra_node_stop);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGABRT, on_signal);
    signal(SIGSEGV, on_signal);
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

/* 1 when every thread of pid is stopped ('T' or 't'), 0 when one is not,
 * -1 when the process is gone */
static int all_threads_stopped(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d) return -1;
    int stopped = 1;
    struct dirent *e;
    while (stopped && (e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char stat_path[128], stat[512];
        snprintf(stat_path, sizeof stat_path, "/proc/%d/task/%.20s/stat", (int)pid, e->d_name);
        FILE *f = fopen(stat_path, "r");
        if (!f) continue;   /* the thread ended meanwhile */
        size_t n = fread(stat, 1, sizeof stat - 1, f);
        fclose(f);
        stat[n] = '\0';
        const char *paren = strrchr(stat, ')');
        if (paren && paren[1] == ' ' && paren[2] != 'T' && paren[2] != 't') stopped = 0;
    }
    closedir(d);
    return stopped;
}

int cassandra_node_freeze(int timeout_ms) {
    if (node_pid <= 0 || kill(node_pid, SIGSTOP) != 0) return -1;
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        int st = all_threads_stopped(node_pid);
        if (st != 0) return st == 1 ? 0 : -1;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return -1;
}

const char *cassandra_node_hosts(void) { return hosts; }
long cassandra_node_port(void) { return cql_port; }
pid_t cassandra_node_pid(void) { return node_pid; }
