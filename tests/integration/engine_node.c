/* engine_node.c -- see engine_node.h. */
#include "engine_node.h"

#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int engine_run(const char *const argv[], int quiet) {
    pid_t p = fork();
    if (p < 0) return -1;
    if (p == 0) {
        if (quiet && !freopen("/dev/null", "w", stdout)) _exit(126);
        execv("/bin/sh", (char *const *)argv);
        _exit(127);
    }
    int st;
    while (waitpid(p, &st, 0) < 0) {
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int engine_read_long(const char *dir, const char *name, long *out) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    int ok = fscanf(f, "%ld", out) == 1;
    fclose(f);
    return ok ? 0 : -1;
}

enum { MAX_ENGINES = 4 };
static void (*stops[MAX_ENGINES])(void);
static int n_stops;

static void stop_all(void) {
    for (int i = n_stops - 1; i >= 0; i--) stops[i]();
}

static volatile sig_atomic_t on_signal_now;

int engine_stopping_on_signal(void) { return on_signal_now; }

static void on_signal(int sig) {
    on_signal_now = 1;
    stop_all();
    signal(sig, SIG_DFL);
    raise(sig);
}

int engine_dir_and_cleanup(char *dir, void (*stop)(void)) {
    if (!mkdtemp(dir)) {
        perror("  mkdtemp");
        return -1;
    }
    return engine_cleanup(stop);
}

int engine_cleanup(void (*stop)(void)) {
    if (n_stops == MAX_ENGINES) return -1;
    if (n_stops == 0) {
        atexit(stop_all);
        signal(SIGINT, on_signal);
        signal(SIGTERM, on_signal);
        signal(SIGABRT, on_signal);
        signal(SIGSEGV, on_signal);
    }
    for (int i = 0; i < n_stops; i++)
        if (stops[i] == stop) return 0;   /* a second start of the same engine */
    stops[n_stops++] = stop;
    return 0;
}

const char *engine_shared(const char *name, size_t max, int *bad) {
    const char *v = getenv(name);
    *bad = 0;
    if (!v || !*v) return NULL;
    if (strlen(v) >= max) {
        fprintf(stderr, "  %s is longer than %zu bytes\n", name, max - 1);
        *bad = 1;
        return NULL;
    }
    return v;
}

void engine_remove_dir(const char *dir) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", dir);
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

int engine_freeze(pid_t pid, int timeout_ms) {
    if (pid <= 0 || kill(pid, SIGSTOP) != 0) return -1;
    for (int waited = 0; waited <= timeout_ms; waited += 10) {
        int st = all_threads_stopped(pid);
        if (st != 0) return st == 1 ? 0 : -1;
        struct timespec ts = {0, 10 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return -1;
}
