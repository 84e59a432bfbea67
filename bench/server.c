/* server.c -- the server under test when the bench starts it: build/parley
 * on a free loopback port with a temporary data directory, stopped by its
 * PID. Also reads a process's memory and thread count from /proc. */
#include <arpa/inet.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

static int free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
        getsockname(fd, (struct sockaddr *)&a, &len) == 0)
        port = ntohs(a.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

/* 1 when GET /healthz answers 200 */
static int healthy(int port) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    int ok = 0;
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) == 0) {
        const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
        char buf[256] = {0};
        struct timeval tv = {1, 0};
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (write(fd, req, sizeof req - 1) == (ssize_t)(sizeof req - 1) &&
            read(fd, buf, sizeof buf - 1) > 12)
            ok = strncmp(buf + 9, "200", 3) == 0;
    }
    if (fd >= 0) close(fd);
    return ok;
}

static int spawn(server_proc *s) {
    char listen[64], workers[16];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
    snprintf(workers, sizeof workers, "%d", s->workers);
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        /* its own process group, so a Ctrl-C on the bench reaches it once */
        setpgid(0, 0);
        char *argv[24];
        int i = 0;
        argv[i++] = (char *)g_opt.parley_bin;
        argv[i++] = "serve";
        argv[i++] = "--listen";
        argv[i++] = listen;
        argv[i++] = "--data";
        argv[i++] = s->data_dir;
        argv[i++] = "--fsync";
        argv[i++] = s->fsync;
        argv[i++] = "--log-level";
        argv[i++] = "warn";
        /* the bench measures capacity: lift the per-device send limit */
        argv[i++] = "--send-rate";
        argv[i++] = "1000000";
        /* ... and the other per-device and per-user write limits (quotas) */
        argv[i++] = "--write-rate";
        argv[i++] = "1000000";
        /* a sender keeps up to 4096 sends in flight (rate mode) */
        argv[i++] = "--user-writer-share";
        argv[i++] = "65536";
        if (s->workers > 0) {
            argv[i++] = "--workers";
            argv[i++] = workers;
        }
        argv[i] = NULL;
        execv(argv[0], argv);
        fprintf(stderr, "parley-bench: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    s->pid = pid;
    for (int i = 0; i < 200; i++) {   /* up to 10 s */
        if (healthy(s->port)) return 0;
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid) {
            s->pid = 0;
            return -1;
        }
        struct timespec ts = {0, 50000000};
        nanosleep(&ts, NULL);
    }
    return -1;
}

int server_start(server_proc *s, const char *data_dir) {
    if (data_dir) snprintf(s->data_dir, sizeof s->data_dir, "%s", data_dir);
    else {
        snprintf(s->data_dir, sizeof s->data_dir, "/tmp/parley-bench-XXXXXX");
        if (!mkdtemp(s->data_dir)) return -1;
    }
    s->port = free_port();
    if (s->port < 0) return -1;
    if (spawn(s)) {
        fprintf(stderr, "parley-bench: the server did not come up on port %d\n", s->port);
        return -1;
    }
    if (s->workers <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        s->workers = n > 0 ? (int)n : 1;
    }
    return 0;
}

int server_restart(server_proc *s) {
    return spawn(s);
}

void server_stop(server_proc *s, int sig) {
    if (s->pid <= 0) return;
    kill(s->pid, sig);
    for (int i = 0; i < 300; i++) {   /* up to 30 s, then at once */
        int st;
        if (waitpid(s->pid, &st, WNOHANG) == s->pid) {
            s->pid = 0;
            return;
        }
        struct timespec ts = {0, 100000000};
        nanosleep(&ts, NULL);
    }
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    s->pid = 0;
}

void server_cleanup(server_proc *s) {
    if (strncmp(s->data_dir, "/tmp/parley-bench-", 18) != 0) return;   /* ours only */
    char cmd[320];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", s->data_dir);
    if (system(cmd) != 0) fprintf(stderr, "parley-bench: could not remove %s\n", s->data_dir);
}

static long status_field(int pid, const char *key) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    size_t klen = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, klen) == 0 && line[klen] == ':') {
            v = strtol(line + klen + 1, NULL, 10);
            break;
        }
    fclose(f);
    return v;
}

long proc_rss_kb(int pid) { return status_field(pid, "VmRSS"); }
long proc_threads(int pid) { return status_field(pid, "Threads"); }
