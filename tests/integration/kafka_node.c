/* kafka_node.c -- see kafka_node.h. One broker per program, so its state
 * is file-static: the signal handlers need to reach it. */
#include "kafka_node.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
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
    pid_t p = fork();
    if (p < 0) return -1;
    if (p == 0) {
        /* a shared 2-core machine has been seen to take 50 s: a generous
         * bound unless the caller chose one */
        setenv("KAFKA_START_TIMEOUT", "240", 0);
        /* the script prints "PID PORT" on stdout; the files say the same */
        if (!freopen("/dev/null", "w", stdout)) _exit(126);
        execv("/bin/sh", (char *const *)argv);
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
    long p = 0, pid = 0;
    if (read_file_long("port", &p) != 0 || read_file_long("kafka.pid", &pid) != 0) {
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
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", dir);
}

static void on_signal(int sig) {
    kafka_node_stop();
    signal(sig, SIG_DFL);
    raise(sig);
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
    if (!mkdtemp(dir)) {
        perror("  mkdtemp");
        return -1;
    }
    started = 1;   /* from here on, stop (and remove the directory) at exit */
    atexit(kafka_node_stop);
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    signal(SIGABRT, on_signal);
    signal(SIGSEGV, on_signal);
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

int kafka_node_freeze(int timeout_ms) {
    if (node_pid <= 0 || kill(node_pid, SIGSTOP) != 0) return -1;
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        int st = all_threads_stopped(node_pid);
        if (st != 0) return st == 1 ? 0 : -1;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return -1;
}

int kafka_node_thaw(void) { return node_pid > 0 && kill(node_pid, SIGCONT) == 0 ? 0 : -1; }

const char *kafka_node_brokers(void) { return brokers; }
long kafka_node_port(void) { return port; }
pid_t kafka_node_pid(void) { return node_pid; }
const char *kafka_node_dir(void) { return dir; }
