/* harness.c -- see harness.h. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "harness.h"
#include "cassandra_node.h"
#include "store/cql/cql.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ utilities */

uint64_t h_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

void h_sleep_ms(int ms) {
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

int h_free_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    socklen_t len = sizeof a;
    if (getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

/* h_tcp_connect; rcvbuf > 0 sets SO_RCVBUF before connect, so the window
 * the server sees is small from the start. */
static int tcp_connect_rcvbuf(int port, int timeout_ms, int rcvbuf) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -1;
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    struct timeval tv = { timeout_ms / 1000, (timeout_ms % 1000) * 1000 };
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int h_tcp_connect(int port, int timeout_ms) { return tcp_connect_rcvbuf(port, timeout_ms, 0); }

/* --------------------------------------------- registry of live servers */

enum { H_MAX_SERVERS = 16 };
typedef struct h_slot {
    const h_server *owner;
    pid_t pid;
    char dir[256];
} h_slot;
static h_slot slots[H_MAX_SERVERS];
static int atexit_installed;

/* devices and h_calloc blocks still live at exit */
typedef struct h_ptrs {
    void **p;
    size_t n, cap;
} h_ptrs;
static h_ptrs live_devs, live_allocs;

static void ptrs_add(h_ptrs *s, void *p) {
    if (s->n == s->cap) {
        size_t nc = s->cap ? s->cap * 2 : 64;
        void **np = realloc(s->p, nc * sizeof *np);
        if (!np) return;
        s->p = np;
        s->cap = nc;
    }
    s->p[s->n++] = p;
}

static void ptrs_del(h_ptrs *s, void *p) {
    for (size_t i = s->n; i-- > 0;)
        if (s->p[i] == p) {
            s->p[i] = s->p[--s->n];
            return;
        }
}

static void reap_all(void);
static int store_args_add(h_server *s);   /* PARLEY_TEST_STORE, at the end */
static void keyspaces_drop(const char *only);
static int start_wait_ms(const h_server *s);
static void install_atexit(void) {
    if (!atexit_installed) {
        atexit(reap_all);
        atexit_installed = 1;
    }
}

void *h_calloc(size_t n, size_t size) {
    install_atexit();
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (p) ptrs_add(&live_allocs, p);
    return p;
}

void h_free(void *p) {
    if (!p) return;
    ptrs_del(&live_allocs, p);
    free(p);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw) {
    (void)sb; (void)flag; (void)ftw;
    remove(path);
    return 0;
}

static void rm_rf(const char *dir) {
    if (!dir[0]) return;
    if (getenv("PARLEY_KEEP_DATA")) {
        fprintf(stderr, "  (kept %s)\n", dir);
        return;
    }
    nftw(dir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

/* Failures the harness saw on its own since the last case ended (a server
 * that did not exit 0 when stopped gracefully); check.h asks after each
 * case through check_case_extra_failures. */
static int case_failures;

int check_case_extra_failures(void) {
    int n = case_failures;
    case_failures = 0;
    return n;
}

/* The stop every test gets unless it asks for kill -9: SIGTERM, then a
 * bounded wait for the exit, so the server runs its shutdown and, in the
 * sanitizer build, LeakSanitizer. Returns the waitpid status, or -1 when
 * it had to be killed (or could not be waited for). */
enum { STOP_WAIT_MS = 10000 };
static int stop_pid(pid_t pid) {
    kill(pid, SIGTERM);
    uint64_t deadline = h_now_ms() + STOP_WAIT_MS;
    int st = 0;
    while (h_now_ms() < deadline) {
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return st;
        if (r < 0 && errno != EINTR) return -1;
        h_sleep_ms(20);
    }
    fprintf(stderr, "  server %d did not exit within %d ms of SIGTERM; killing\n", (int)pid,
            STOP_WAIT_MS);
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

static int exited_zero(int st) { return st != -1 && WIFEXITED(st) && WEXITSTATUS(st) == 0; }

static void describe_status(int st, char *out, size_t cap) {
    if (st == -1) snprintf(out, cap, "needed SIGKILL");
    else if (WIFEXITED(st)) snprintf(out, cap, "exit status %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st)) snprintf(out, cap, "killed by signal %d", WTERMSIG(st));
    else snprintf(out, cap, "wait status 0x%x", st);
}

static void log_tail_of_dir(const char *dir, int lines) {
    h_server tmp;
    memset(&tmp, 0, sizeof tmp);
    snprintf(tmp.log, sizeof tmp.log, "%s/server.log", dir);
    h_server_log_tail(&tmp, lines);
}

static void reap_all(void) {
    /* devices first, while their server may still answer; a device that
     * never read its socket would make a graceful close drain it, so cut
     * the connection instead */
    while (live_devs.n) {
        h_dev *d = live_devs.p[live_devs.n - 1];
        if (d->c && pc_fd(d->c) >= 0) shutdown(pc_fd(d->c), SHUT_RDWR);
        h_dev_free(d);
    }
    free(live_devs.p);
    live_devs.p = NULL;
    live_devs.cap = 0;
    while (live_allocs.n) h_free(live_allocs.p[live_allocs.n - 1]);
    free(live_allocs.p);
    live_allocs.p = NULL;
    live_allocs.cap = 0;
    /* servers a test left running (a CHECK returned early): stopped like
     * any other, and one that does not exit 0 (a leak report, a crash in
     * the shutdown) is a failure of the program; its case has ended, so
     * it gets a FAIL line of its own */
    for (int i = 0; i < H_MAX_SERVERS; i++) {
        if (slots[i].pid > 0) {
            int st = stop_pid(slots[i].pid);
            slots[i].pid = 0;
            if (!exited_zero(st)) {
                char why[64];
                describe_status(st, why, sizeof why);
                log_tail_of_dir(slots[i].dir, 30);
                printf("FAIL server left running at exit (%s) stopped with SIGTERM: %s\n",
                       slots[i].dir, why);
                fflush(stdout);
            }
        }
        if (slots[i].owner) {
            rm_rf(slots[i].dir);
            slots[i].owner = NULL;
            slots[i].dir[0] = 0;
        }
    }    keyspaces_drop(NULL);   /* the ones of servers not destroyed by their test */
}

static h_slot *slot_for(const h_server *s, int create) {
    for (int i = 0; i < H_MAX_SERVERS; i++)
        if (slots[i].owner == s) return &slots[i];
    if (!create) return NULL;
    for (int i = 0; i < H_MAX_SERVERS; i++)
        if (!slots[i].owner) {
            slots[i].owner = s;
            slots[i].pid = 0;
            snprintf(slots[i].dir, sizeof slots[i].dir, "%s", s->dir);
            return &slots[i];
        }
    return NULL;
}

/* ------------------------------------------------------------------ HTTP */

int h_http_get(int port, const char *path, int *status, char *body, size_t cap) {
    int fd = h_tcp_connect(port, 3000);
    if (fd < 0) return -1;
    char req[512];
    int n = snprintf(req, sizeof req,
                     "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nConnection: close\r\n\r\n",
                     path, port);
    if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n) {
        close(fd);
        return -1;
    }
    size_t rcap = 1 << 20, len = 0;
    char *buf = malloc(rcap + 1);
    if (!buf) {
        close(fd);
        return -1;
    }
    uint64_t deadline = h_now_ms() + 5000;
    long content_length = -1;
    char *head_end = NULL;
    while (len < rcap && h_now_ms() < deadline) {
        ssize_t r = recv(fd, buf + len, rcap - len, 0);
        if (r == 0) break;
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        len += (size_t)r;
        buf[len] = 0;
        if (!head_end) {
            head_end = strstr(buf, "\r\n\r\n");
            if (head_end) {
                char *cl = strcasestr(buf, "\r\ncontent-length:");
                if (cl && cl < head_end) content_length = strtol(cl + 17, NULL, 10);
            }
        }
        if (head_end && content_length >= 0 &&
            len >= (size_t)(head_end + 4 - buf) + (size_t)content_length)
            break;
    }
    close(fd);
    buf[len] = 0;
    int st = 0;
    if (len < 12 || sscanf(buf, "HTTP/1.%*d %d", &st) != 1) {
        free(buf);
        return -1;
    }
    if (status) *status = st;
    if (body && cap) {
        body[0] = 0;
        head_end = strstr(buf, "\r\n\r\n");
        if (head_end) {
            const char *b = head_end + 4;
            size_t blen = len - (size_t)(b - buf);
            char *te = strcasestr(buf, "\r\ntransfer-encoding:");
            if (te && te < head_end && strcasestr(te, "chunked") &&
                strcasestr(te, "chunked") < head_end) {
                /* decode chunked */
                size_t out = 0;
                const char *p = b, *end = b + blen;
                while (p < end) {
                    char *ep;
                    unsigned long sz = strtoul(p, &ep, 16);
                    const char *nl = strstr(p, "\r\n");
                    if (!nl || sz == 0) break;
                    p = nl + 2;
                    if ((size_t)(end - p) < sz) sz = (unsigned long)(end - p);
                    size_t take = sz;
                    if (out + take > cap - 1) take = cap - 1 - out;
                    memcpy(body + out, p, take);
                    out += take;
                    p += sz + 2;
                }
                body[out] = 0;
            } else {
                if (blen > cap - 1) blen = cap - 1;
                memcpy(body, b, blen);
                body[blen] = 0;
            }
        }
    }
    free(buf);
    return 0;
}

int h_metric(const h_server *s, const char *name, double *out) { return h_metric_at(s->port, name, out); }

int h_metric_at(int port, const char *name, double *out) {
    size_t cap = 1 << 20;
    char *body = malloc(cap);
    if (!body) return -1;
    int st = 0;
    if (h_http_get(port, "/metrics", &st, body, cap) != 0 || st != 200) {
        free(body);
        return -1;
    }
    size_t nl = strlen(name);
    double sum = 0;
    int found = 0;
    for (char *line = body; line && *line;) {
        char *next = strchr(line, '\n');
        if (next) *next++ = 0;
        if (line[0] != '#' && strncmp(line, name, nl) == 0 &&
            (line[nl] == ' ' || line[nl] == '{' || line[nl] == '\t')) {
            char *v = line + nl;
            if (*v == '{') {
                v = strchr(v, '}');
                if (!v) v = line + nl;
                else v++;
            }
            sum += strtod(v, NULL);
            found = 1;
        }
        line = next;
    }
    free(body);
    if (!found) return -1;
    *out = sum;
    return 0;
}

long h_rss_kb(const h_server *s) {
    if (s->pid <= 0) return -1;
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/status", (int)s->pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    char line[256];
    long kb = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "VmRSS:", 6) == 0) {
            kb = strtol(line + 6, NULL, 10);
            break;
        }
    }
    fclose(f);
    return kb;
}

/* --------------------------------------------------------------- server */

void h_server_log_tail(const h_server *s, int lines) {
    FILE *f = fopen(s->log, "r");
    if (!f) {
        fprintf(stderr, "  (no server log at %s)\n", s->log);
        return;
    }
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    long from = size > 16384 ? size - 16384 : 0;
    fseek(f, from, SEEK_SET);
    char *buf = calloc(1, 16385);
    size_t n = buf ? fread(buf, 1, 16384, f) : 0;
    fclose(f);
    if (!buf) return;
    buf[n] = 0;
    int seen = 0;
    char *p = buf + n;
    while (p > buf) {
        p--;
        if (*p == '\n' && p != buf + n - 1 && ++seen >= lines) {
            p++;
            break;
        }
    }
    fprintf(stderr, "  ---- server log tail (%s) ----\n%s  ---- end of server log ----\n",
            s->log, p);
    free(buf);
}

int h_server_alive(h_server *s) {
    if (s->pid <= 0) return 0;
    int st;
    pid_t r = waitpid(s->pid, &st, WNOHANG);
    if (r == s->pid) {
        h_slot *sl = slot_for(s, 0);
        if (sl) sl->pid = 0;
        s->pid = 0;
        return 0;
    }
    return 1;
}

static void close_inherited_fds(void) {
#ifdef SYS_close_range
    if (syscall(SYS_close_range, 3u, ~0u, 0u) == 0) return;
#endif
    long max = sysconf(_SC_OPEN_MAX);
    if (max < 0 || max > 65536) max = 65536;
    for (int fd = 3; fd < max; fd++) close(fd);
}

#define H_DRAIN_WINDOW_MS "100"

static int spawn(h_server *s) {
    char *argv[H_MAX_EXTRA_ARGS + 16];
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", s->port);
    int a = 0;
    argv[a++] = s->bin;
    argv[a++] = "serve";
    argv[a++] = "--listen";
    argv[a++] = listen;
    argv[a++] = "--data";
    argv[a++] = s->data;
    /* a short drain keeps the graceful stop at the end of every test quick;
     * a test's own --drain-window comes later and wins */
    argv[a++] = "--drain-window";
    argv[a++] = H_DRAIN_WINDOW_MS;
    for (int i = 0; i < s->n_extra; i++) argv[a++] = s->extra[i];
    argv[a] = NULL;

    fflush(stdout);
    fflush(stderr);
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid < 0) return -1;
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        int fd = open(s->log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
            if (fd > 2) close(fd);
        }
        int nul = open("/dev/null", O_RDONLY);
        if (nul >= 0) {
            dup2(nul, 0);
            if (nul > 2) close(nul);
        }
        close_inherited_fds();
        signal(SIGPIPE, SIG_DFL);
        execv(argv[0], argv);
        fprintf(stderr, "execv %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    s->pid = pid;
    s->starts++;
    h_slot *sl = slot_for(s, 1);
    if (sl) sl->pid = pid;
    return 0;
}

static int wait_healthy(h_server *s) {
    uint64_t deadline = h_now_ms() + (uint64_t)start_wait_ms(s);
    while (h_now_ms() < deadline) {
        if (!h_server_alive(s)) {
            fprintf(stderr, "  server exited during start-up\n");
            h_server_log_tail(s, 30);
            return -1;
        }
        int st = 0;
        char body[64];
        if (h_http_get(s->port, "/healthz", &st, body, sizeof body) == 0 && st == 200)
            return 0;
        h_sleep_ms(30);
    }
    fprintf(stderr, "  server did not answer /healthz 200 within %d s\n", start_wait_ms(s) / 1000);
    h_server_log_tail(s, 30);
    h_server_kill9(s);
    return -1;
}

int h_server_start(h_server *s, const char *const *extra_args) {
    /* a case that failed before h_server_destroy left this h_server's
     * server running: stop it (only the slot is read; *s may be garbage) */
    h_slot *old = slot_for(s, 0);
    if (old) {
        if (old->pid > 0) {
            pid_t pid = old->pid;
            old->pid = 0;
            int st = stop_pid(pid);
            if (!exited_zero(st)) {
                char why[64];
                describe_status(st, why, sizeof why);
                log_tail_of_dir(old->dir, 30);
                fprintf(stderr, "  server left running by an earlier case stopped: %s\n", why);
                case_failures++;
            }
        }
        rm_rf(old->dir);
        old->owner = NULL;
        old->dir[0] = 0;
    }
    memset(s, 0, sizeof *s);
    signal(SIGPIPE, SIG_IGN);
    /* before install_atexit: a node this program starts is stopped after
     * its servers */
    if (store_args_add(s) != 0) return -1;
    install_atexit();
    const char *bin = getenv("PARLEY_BIN");
    snprintf(s->bin, sizeof s->bin, "%s", bin && *bin ? bin : "./build/parley");
    if (access(s->bin, X_OK) != 0) {
        fprintf(stderr, "  server binary %s not executable (set PARLEY_BIN)\n", s->bin);
        return -1;
    }
    snprintf(s->dir, sizeof s->dir, "/tmp/parley-it-XXXXXX");
    if (!mkdtemp(s->dir)) {
        fprintf(stderr, "  mkdtemp: %s\n", strerror(errno));
        return -1;
    }
    snprintf(s->data, sizeof s->data, "%s/data", s->dir);
    snprintf(s->log, sizeof s->log, "%s/server.log", s->dir);
    mkdir(s->data, 0755);
    if (!slot_for(s, 1)) {
        fprintf(stderr, "  too many servers\n");
        return -1;
    }
    for (int i = 0; extra_args && extra_args[i] && s->n_extra < H_MAX_EXTRA_ARGS; i++)
        s->extra[s->n_extra++] = strdup(extra_args[i]);
    const char *lvl = getenv("PARLEY_LOG_LEVEL");
    if (lvl && *lvl && s->n_extra + 2 <= H_MAX_EXTRA_ARGS) {
        s->extra[s->n_extra++] = strdup("--log-level");
        s->extra[s->n_extra++] = strdup(lvl);
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        s->port = h_free_port();
        if (s->port <= 0) return -1;
        snprintf(s->url, sizeof s->url, "ws://127.0.0.1:%d", s->port);
        if (spawn(s) != 0) return -1;
        if (wait_healthy(s) == 0) return 0;
        /* maybe the port was taken in between: try another one, unless
         * the server is simply broken (it exited) */
        if (attempt == 2) break;
        fprintf(stderr, "  retrying start on a new port\n");
    }
    return -1;
}

/* h_server_stop where the test is not about how the server stops: it must
 * exit 0 (a LeakSanitizer report, a crash in the shutdown or a stop that
 * needs SIGKILL fails the case that stopped it). */
static void stop_checked(h_server *s, const char *what) {
    if (s->pid <= 0) return;
    int st = h_server_stop(s);
    if (exited_zero(st)) return;
    char why[64];
    describe_status(st, why, sizeof why);
    h_server_log_tail(s, 30);
    fprintf(stderr, "  server stopped by %s with SIGTERM: %s (0 expected)\n", what, why);
    case_failures++;
}

int h_server_restart(h_server *s) {
    stop_checked(s, "h_server_restart");
    if (spawn(s) != 0) return -1;
    return wait_healthy(s);
}

int h_server_stop(h_server *s) {
    if (s->pid <= 0) return 0;
    int st = stop_pid(s->pid);
    h_slot *sl = slot_for(s, 0);
    if (sl) sl->pid = 0;
    s->pid = 0;
    return st;
}

void h_server_kill9(h_server *s) {
    if (s->pid <= 0) return;
    kill(s->pid, SIGKILL);
    waitpid(s->pid, NULL, 0);
    h_slot *sl = slot_for(s, 0);
    if (sl) sl->pid = 0;
    s->pid = 0;
}

void h_server_destroy(h_server *s) {
    stop_checked(s, "h_server_destroy");
    if (s->pid <= 0 && *h_server_keyspace(s)) keyspaces_drop(h_server_keyspace(s));
    h_slot *sl = slot_for(s, 0);
    if (sl) {
        rm_rf(sl->dir);
        sl->owner = NULL;
        sl->dir[0] = 0;
        sl->pid = 0;
    }
    for (int i = 0; i < s->n_extra; i++) {
        free(s->extra[i]);
        s->extra[i] = NULL;
    }
    s->n_extra = 0;
}

/* -------------------------------------------------------------- devices */

static void record_event(void *ud, uint64_t user_seq, const Parley__V1__Message *m) {
    h_dev *d = ud;
    if (d->n_ev == d->cap_ev) {
        size_t nc = d->cap_ev ? d->cap_ev * 2 : 64;
        h_event *ne = realloc(d->ev, nc * sizeof *ne);
        if (!ne) return;
        d->ev = ne;
        d->cap_ev = nc;
    }
    h_event *e = &d->ev[d->n_ev++];
    memset(e, 0, sizeof *e);
    e->user_seq = user_seq;
    if (!m) return;
    e->conversation_id = m->conversation_id;
    e->seq = m->seq;
    e->sender_user_id = m->sender_user_id;
    e->sender_device_id = m->sender_device_id;
    e->type = (int)m->type;
    e->body_len = m->body.len;
    size_t take = m->body.len < H_BODY_MAX ? m->body.len : H_BODY_MAX;
    if (take) {
        e->body = malloc(take);
        if (e->body) memcpy(e->body, m->body.data, take);
    }
    if (m->mime_type) snprintf(e->mime_type, sizeof e->mime_type, "%s", m->mime_type);
    e->size = m->size;
    e->ref_seq = m->ref_seq;
    if (m->membership) {
        e->membership_action = (int)m->membership->action;
        e->n_membership_users = m->membership->n_user_ids;
        for (size_t i = 0; i < m->membership->n_user_ids && i < 8; i++)
            e->membership_users[i] = m->membership->user_ids[i];
    }
}

static void record_receipt(void *ud, const Parley__V1__Receipt *r) {
    h_dev *d = ud;
    if (d->n_rc == d->cap_rc) {
        size_t nc = d->cap_rc ? d->cap_rc * 2 : 16;
        h_receipt *nr = realloc(d->rc, nc * sizeof *nr);
        if (!nr) return;
        d->rc = nr;
        d->cap_rc = nc;
    }
    h_receipt *x = &d->rc[d->n_rc++];
    x->conversation_id = r->conversation_id;
    x->user_id = r->user_id;
    x->kind = (int)r->kind;
    x->seq = r->seq;
}

void h_client_options(const h_server *s, pc_options *o) {
    memset(o, 0, sizeof *o);
    o->server_url = s->url;
    o->connect_timeout_ms = 5000;
    o->request_timeout_ms = 10000;
    o->reconnect_base_ms = 50;
    o->reconnect_cap_ms = 1000;
    o->max_reconnects = 30;
}

static pc_client *new_client(const h_server *s, h_dev *d) {
    pc_options o;
    h_client_options(s, &o);
    pc_client *c = pc_new(&o);
    if (!c) return NULL;
    pc_on_event(c, record_event, d);
    pc_on_receipt(c, record_receipt, d);
    if (pc_connect(c) != 0) {
        fprintf(stderr, "  pc_connect %s: %s\n", s->url, pc_error(c));
        pc_free(c);
        return NULL;
    }
    return c;
}

static unsigned name_counter;

static h_dev *dev_alloc(void) {
    install_atexit();
    h_dev *d = calloc(1, sizeof *d);
    if (d) ptrs_add(&live_devs, d);
    return d;
}

static void dev_release(h_dev *d) {
    ptrs_del(&live_devs, d);
    free(d);
}

h_dev *h_user_new(const h_server *s, const char *name) {
    h_dev *d = dev_alloc();
    if (!d) return NULL;
    if (name && *name)
        snprintf(d->name, sizeof d->name, "%s", name);
    else
        snprintf(d->name, sizeof d->name, "u%u_%u", (unsigned)getpid() % 100000u, ++name_counter);
    d->c = new_client(s, d);
    if (!d->c) {
        dev_release(d);
        return NULL;
    }
    pc_identity_generate(&d->id);
    if (pc_register_user(d->c, d->name, &d->id) != 0) {
        fprintf(stderr, "  pc_register_user %s: %s (status %d)\n", d->name, pc_error(d->c),
                pc_status(d->c));
        pc_free(d->c);
        dev_release(d);
        return NULL;
    }
    return d;
}

h_dev *h_device_link(const h_server *s, h_dev *owner) {
    char token[256];
    uint64_t exp = 0;
    if (pc_create_link_token(owner->c, token, sizeof token, &exp) != 0) {
        fprintf(stderr, "  pc_create_link_token: %s (status %d)\n", pc_error(owner->c),
                pc_status(owner->c));
        return NULL;
    }
    h_dev *d = dev_alloc();
    if (!d) return NULL;
    snprintf(d->name, sizeof d->name, "%.32s#2", owner->name);
    d->c = new_client(s, d);
    if (!d->c) {
        dev_release(d);
        return NULL;
    }
    pc_identity_generate(&d->id);
    if (pc_register_device(d->c, token, &d->id) != 0) {
        fprintf(stderr, "  pc_register_device: %s (status %d)\n", pc_error(d->c), pc_status(d->c));
        pc_free(d->c);
        dev_release(d);
        return NULL;
    }
    return d;
}

int h_dev_reconnect(const h_server *s, h_dev *d, uint64_t cursor) {
    if (d->c) h_dev_disconnect(d);
    d->c = new_client(s, d);
    if (!d->c) return -1;
    if (pc_sign_in(d->c, &d->id) != 0) {
        fprintf(stderr, "  pc_sign_in %s: %s (status %d)\n", d->name, pc_error(d->c),
                pc_status(d->c));
        pc_free(d->c);
        d->c = NULL;
        return -1;
    }
    pc_set_cursor(d->c, cursor);
    return 0;
}

h_dev *h_dev_for_identity(const h_server *s, const pc_identity *id, const char *name,
                          uint64_t cursor) {
    h_dev *d = dev_alloc();
    if (!d) return NULL;
    d->id = *id;
    snprintf(d->name, sizeof d->name, "%s", name ? name : "device");
    if (h_dev_reconnect(s, d, cursor) != 0) {
        h_dev_free(d);
        return NULL;
    }
    return d;
}

void h_dev_disconnect(h_dev *d) {
    if (!d->c) return;
    pc_close(d->c);
    pc_free(d->c);
    d->c = NULL;
}

void h_dev_clear(h_dev *d) {
    for (size_t i = 0; i < d->n_ev; i++) free(d->ev[i].body);
    d->n_ev = 0;
    d->n_rc = 0;
}

void h_dev_free(h_dev *d) {
    if (!d) return;
    if (d->c) {
        pc_close(d->c);
        pc_free(d->c);
    }
    h_dev_clear(d);
    free(d->ev);
    free(d->rc);
    ptrs_del(&live_devs, d);
    free(d);
}

size_t h_dev_conv_events(const h_dev *d, uint64_t conv, int no_membership,
                         const h_event **out, size_t cap) {
    size_t n = 0;
    for (size_t i = 0; i < d->n_ev; i++) {
        const h_event *e = &d->ev[i];
        if (e->conversation_id != conv) continue;
        if (no_membership && e->type == PARLEY__V1__MESSAGE_TYPE__MEMBERSHIP) continue;
        if (n < cap && out) out[n] = e;
        n++;
    }
    return n;
}

size_t h_dev_count(const h_dev *d, uint64_t conv) {
    return h_dev_conv_events(d, conv, 0, NULL, 0);
}

size_t h_dev_count_type(const h_dev *d, uint64_t conv, int type) {
    size_t n = 0;
    for (size_t i = 0; i < d->n_ev; i++)
        if (d->ev[i].conversation_id == conv && (type == 0 || d->ev[i].type == type)) n++;
    return n;
}

int h_dev_check_order(const h_dev *d, uint64_t conv, char *why, size_t why_cap) {
    uint64_t last = 0;
    for (size_t i = 0; i < d->n_ev; i++) {
        const h_event *e = &d->ev[i];
        if (e->conversation_id != conv) continue;
        if (e->seq <= last) {
            snprintf(why, why_cap, "%s: conv %llu seq %llu after seq %llu (event #%zu)", d->name,
                     (unsigned long long)conv, (unsigned long long)e->seq,
                     (unsigned long long)last, i);
            return -1;
        }
        last = e->seq;
    }
    return 0;
}

int h_dev_has(const h_dev *d, uint64_t conv, uint64_t seq) {
    int n = 0;
    for (size_t i = 0; i < d->n_ev; i++)
        if (d->ev[i].conversation_id == conv && d->ev[i].seq == seq) n++;
    return n;
}

int h_pump(h_dev *const *devs, size_t n, int (*pred)(void *ud), void *ud, int timeout_ms) {
    uint64_t deadline = h_now_ms() + (uint64_t)(timeout_ms > 0 ? timeout_ms : 0);
    unsigned char *dead = calloc(n ? n : 1, 1);
    struct pollfd *pfd = calloc(n ? n : 1, sizeof *pfd);
    int ok = 0;
    for (;;) {
        if (pred && pred(ud)) {
            ok = 1;
            break;
        }
        if (h_now_ms() >= deadline) break;
        int handled = 0;
        for (size_t i = 0; i < n; i++) {
            if (!devs[i] || !devs[i]->c || (dead && dead[i])) continue;
            int r = pc_poll(devs[i]->c, 0);
            if (r < 0) {
                fprintf(stderr, "  pc_poll(%s): %s\n", devs[i]->name, pc_error(devs[i]->c));
                if (dead) dead[i] = 1;
            } else {
                handled += r;
            }
        }
        if (handled == 0) {
            int np = 0;
            for (size_t i = 0; pfd && i < n; i++) {
                if (!devs[i] || !devs[i]->c || (dead && dead[i])) continue;
                int fd = pc_fd(devs[i]->c);
                if (fd < 0) continue;
                pfd[np].fd = fd;
                pfd[np].events = POLLIN;
                pfd[np].revents = 0;
                np++;
            }
            if (np)
                poll(pfd, (nfds_t)np, 5);
            else
                h_sleep_ms(5);
        }
    }
    free(dead);
    free(pfd);
    return ok;
}

int h_pred_count(void *ud) {
    const h_count_goal *g = ud;
    for (size_t i = 0; i < g->n; i++)
        if (h_dev_conv_events(g->devs[i], g->conv, g->no_membership, NULL, 0) < g->want) return 0;
    return 1;
}

int h_pred_sync_done(void *ud) {
    const h_count_goal *g = ud;
    for (size_t i = 0; i < g->n; i++)
        if (!g->devs[i]->c || !pc_sync_done(g->devs[i]->c)) return 0;
    return 1;
}

int h_dev_sync(h_dev *d, int timeout_ms) {
    if (pc_start_sync(d->c) != 0) {
        fprintf(stderr, "  pc_start_sync %s: %s (status %d)\n", d->name, pc_error(d->c),
                pc_status(d->c));
        return -1;
    }
    h_dev *one[1] = { d };
    h_count_goal g = { one, 1, 0, 0, 0 };
    if (!h_pump(one, 1, h_pred_sync_done, &g, timeout_ms)) {
        fprintf(stderr, "  %s: no SyncDone\n", d->name);
        return -1;
    }
    return 0;
}

uint64_t h_send(h_dev *d, uint64_t conv, const char *text) {
    uint64_t seq = 0;
    if (pc_send_text(d->c, conv, text, &seq) != 0) {
        fprintf(stderr, "  pc_send_text %s: %s (status %d)\n", d->name, pc_error(d->c),
                pc_status(d->c));
        return 0;
    }
    return seq;
}

/* ------------------------------------------------------ expectations */

int h_send_rec(h_dev *d, uint64_t conv, const char *text, h_sent *exp, size_t *n) {
    uint64_t seq = h_send(d, conv, text);
    if (!seq) return -1;
    exp[*n].seq = seq;
    exp[*n].sender = d->id.user_id;
    snprintf(exp[*n].text, sizeof exp[*n].text, "%s", text);
    (*n)++;
    return 0;
}

int h_event_body_is(const h_event *e, const char *text) {
    size_t l = strlen(text);
    return e->body_len == l && (l == 0 || (e->body && memcmp(e->body, text, l) == 0));
}

int h_expect_exact(const h_dev *d, uint64_t conv, const h_sent *exp, size_t n, char *why,
                   size_t cap) {
    size_t k = h_dev_conv_events(d, conv, 1, NULL, 0);
    const h_event **got = calloc(k ? k : 1, sizeof *got);
    if (!got) {
        snprintf(why, cap, "oom");
        return -1;
    }
    h_dev_conv_events(d, conv, 1, got, k);
    int rc = 0;
    if (k != n) {
        int off = snprintf(why, cap, "%s has %zu events in conv %llu, want %zu; got seqs:",
                           d->name, k, (unsigned long long)conv, n);
        for (size_t i = 0; i < k && off > 0 && (size_t)off + 24 < cap; i++)
            off += snprintf(why + off, cap - (size_t)off, " %llu", (unsigned long long)got[i]->seq);
        rc = -1;
    }
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (got[i]->seq != exp[i].seq || got[i]->sender_user_id != exp[i].sender ||
            !h_event_body_is(got[i], exp[i].text)) {
            snprintf(why, cap,
                     "%s event #%zu: seq %llu sender %llu (want seq %llu sender %llu text '%s')",
                     d->name, i, (unsigned long long)got[i]->seq,
                     (unsigned long long)got[i]->sender_user_id, (unsigned long long)exp[i].seq,
                     (unsigned long long)exp[i].sender, exp[i].text);
            rc = -1;
        }
    }
    free(got);
    if (rc == 0) rc = h_dev_check_order(d, conv, why, cap);
    return rc;
}

void h_events_free(h_event *ev, size_t n) {
    if (!ev) return;
    for (size_t i = 0; i < n; i++) free(ev[i].body);
    free(ev);
}

h_event *h_history_all(h_dev *d, uint64_t conv, size_t *n_out) {
    /* collect newest-first into a temporary device record, then reverse */
    h_dev tmp;
    memset(&tmp, 0, sizeof tmp);
    snprintf(tmp.name, sizeof tmp.name, "history");
    uint64_t before = 0;
    int more = 1;
    for (int pages = 0; more && pages < 1000; pages++) {
        Parley__V1__HistoryPage *p = NULL;
        if (pc_history(d->c, conv, before, 200, &p) != 0) {
            fprintf(stderr, "  pc_history(before %llu): %s (status %d)\n",
                    (unsigned long long)before, pc_error(d->c), pc_status(d->c));
            h_dev_clear(&tmp);
            free(tmp.ev);
            return NULL;
        }
        int bad = 0;
        for (size_t i = 0; i < p->n_messages; i++) {
            if (i && p->messages[i]->seq <= p->messages[i - 1]->seq) bad = 1;
            if (before && p->messages[i]->seq >= before) bad = 1;
        }
        if (bad) {
            fprintf(stderr, "  history page before %llu is not oldest-first below it\n",
                    (unsigned long long)before);
            parley__v1__history_page__free_unpacked(p, NULL);
            h_dev_clear(&tmp);
            free(tmp.ev);
            return NULL;
        }
        for (size_t i = p->n_messages; i-- > 0;) record_event(&tmp, 0, p->messages[i]);
        more = p->has_more && p->n_messages > 0;
        if (p->n_messages) before = p->messages[0]->seq;
        parley__v1__history_page__free_unpacked(p, NULL);
    }
    /* reverse to oldest first */
    for (size_t i = 0; i < tmp.n_ev / 2; i++) {
        h_event t = tmp.ev[i];
        tmp.ev[i] = tmp.ev[tmp.n_ev - 1 - i];
        tmp.ev[tmp.n_ev - 1 - i] = t;
    }
    *n_out = tmp.n_ev;
    if (!tmp.ev) tmp.ev = calloc(1, sizeof *tmp.ev);
    free(tmp.rc);
    return tmp.ev;
}

int h_server_restart_unhealthy(h_server *s) {
    if (s->pid > 0) h_server_stop(s);
    if (spawn(s) != 0) return -1;
    for (uint64_t deadline = h_now_ms() + 10000; h_now_ms() < deadline; h_sleep_ms(30)) {
        if (!h_server_alive(s)) break;
        int st = 0;
        char body[64];
        if (h_http_get(s->port, "/healthz", &st, body, sizeof body) == 0) return 0;
    }
    fprintf(stderr, "  server did not answer /healthz within 10 s\n");
    h_server_log_tail(s, 30);
    h_server_kill9(s);
    return -1;
}

/* ------------------------------------- servers a test started by itself */

int h_pid_stop_checked(pid_t pid, const char *log, const char *what) {
    if (pid <= 0) return 0;
    int st = stop_pid(pid);
    if (exited_zero(st)) return st;
    char why[64];
    describe_status(st, why, sizeof why);
    if (log) {
        h_server tmp;
        memset(&tmp, 0, sizeof tmp);
        snprintf(tmp.log, sizeof tmp.log, "%s", log);
        h_server_log_tail(&tmp, 30);
    }
    printf("FAIL %s: stopped with SIGTERM: %s (0 expected)\n", what, why);
    fflush(stdout);
    return st;
}

/* ------------------------------------------------------------- consent */

int h_accept(h_dev *d, uint64_t conv) {
    if (pc_accept_request(d->c, conv) == 0) return 0;
    fprintf(stderr, "  pc_accept_request %s: %s (status %d)\n", d->name, pc_error(d->c), pc_status(d->c));
    return -1;
}

int h_direct_pair(const h_server *s, h_dev **alice, h_dev **bob, uint64_t *conv) {
    *alice = h_user_new(s, "alice");
    *bob = h_user_new(s, "bob");
    if (!*alice || !*bob) return -1;
    if (pc_open_direct((*alice)->c, (*bob)->id.user_id, conv) != 0) {
        fprintf(stderr, "  pc_open_direct alice: %s\n", pc_error((*alice)->c));
        return -1;
    }
    return h_accept(*bob, *conv);
}

int h_accept_all(h_dev *d) {
    Parley__V1__ConversationList *l = NULL;
    if (pc_list_conversations(d->c, &l) != 0) {
        fprintf(stderr, "  pc_list_conversations %s: %s\n", d->name, pc_error(d->c));
        return -1;
    }
    int r = 0;
    for (size_t i = 0; i < l->n_conversations && r == 0; i++)
        if (l->conversations[i]->request) r = h_accept(d, l->conversations[i]->conversation_id);
    parley__v1__conversation_list__free_unpacked(l, NULL);
    return r;
}

/* ------------------------------------------------------ raw connections */

#include <sodium.h>

#include "net/http.h"
#include "net/ws.h"

enum { RAW_BUF = 1 << 20, RAW_IO_MS = 5000 };

void h_raw_close(h_raw *w) {
    /* a zeroed h_raw (calloc'd, never opened) holds nothing, not fd 0 */
    if (!w->buf && !w->reader && w->fd <= 0) return;
    if (w->fd >= 0) close(w->fd);
    w->fd = -1;
    if (w->reader) {
        ws_reader_free(w->reader);
        free(w->reader);
        w->reader = NULL;
    }
    free(w->buf);
    w->buf = NULL;
}

/* More bytes into w->buf; 0, or -1 at EOF/timeout (the socket's). */
static int raw_fill(h_raw *w) {
    if (w->off > 0) {
        memmove(w->buf, w->buf + w->off, w->len - w->off);
        w->len -= w->off;
        w->off = 0;
    }
    if (w->len == w->buf_cap) return -1;
    for (;;) {
        ssize_t n = recv(w->fd, w->buf + w->len, w->buf_cap - w->len, 0);
        if (n > 0) {
            w->len += (size_t)n;
            return 0;
        }
        if (n < 0 && errno == EINTR) continue;
        /* a reset (the server closed with our data unread) ends it too */
        if (n < 0 && errno == ECONNRESET) w->reset = 1;
        if (n == 0 || errno == ECONNRESET) w->eof = 1;
        return -1;
    }
}

/* Next WebSocket message: 1 (m valid until the next call), 0 EOF/timeout,
 * -1 malformed. */
static int raw_next(h_raw *w, ws_message *m) {
    uint64_t deadline = h_now_ms() + (uint64_t)w->io_ms;
    for (;;) {
        size_t used = 0;
        int r = ws_reader_feed(w->reader, w->buf + w->off, w->len - w->off, &used, m);
        w->off += used;
        if (r == WS_READY) return 1;
        if (r == WS_ERROR) return -1;
        if (h_now_ms() >= deadline || raw_fill(w) < 0) return 0;
    }
}

/* Keeps the code and reason of the server's Close in w. */
static void raw_keep_close(h_raw *w, const ws_message *m) {
    w->close_code = m->close_code;
    size_t n = m->len < sizeof w->close_reason - 1 ? m->len : sizeof w->close_reason - 1;
    if (n) memcpy(w->close_reason, m->data, n);
    w->close_reason[n] = 0;
}

/* Next protobuf frame (pings and pongs skipped); NULL on close (code in
 * *close_code), EOF (1006) or timeout (0). *size, if size: its length. */
static Parley__V1__Frame *raw_frame_sized(h_raw *w, int *close_code, size_t *size) {
    *close_code = 0;
    for (int i = 0; i < 64; i++) {
        ws_message m;
        int r = raw_next(w, &m);
        if (r != 1) {
            *close_code = w->eof ? 1006 : 0;
            return NULL;
        }
        if (m.kind == WS_MSG_CLOSE) {
            *close_code = m.close_code;
            raw_keep_close(w, &m);
            return NULL;
        }
        if (m.kind == WS_MSG_BINARY) {
            if (size) *size = m.len;
            return parley__v1__frame__unpack(NULL, m.len, m.data);
        }
    }
    return NULL;
}

static Parley__V1__Frame *raw_frame(h_raw *w, int *close_code) {
    return raw_frame_sized(w, close_code, NULL);
}

Parley__V1__Frame *h_raw_next_frame(h_raw *w, int *close_code) {
    int code;
    Parley__V1__Frame *f = raw_frame(w, &code);
    if (close_code) *close_code = code;
    return f;
}

int h_raw_send_binary(h_raw *w, const void *data, size_t len) {
    return h_raw_send_ws(w, WS_OP_BINARY, 1, data, len, 1);
}

static int raw_send_frame(h_raw *w, const Parley__V1__Frame *f) {
    size_t len = parley__v1__frame__get_packed_size(f);
    uint8_t *b = malloc(len ? len : 1);
    if (!b) return -1;
    parley__v1__frame__pack(f, b);
    int r = h_raw_send_binary(w, b, len);
    free(b);
    return r;
}

static int raw_open_port(int port, const h_raw_opts *o, h_raw *w);

int h_raw_open(const h_server *s, h_raw *w) { return raw_open_port(s->port, NULL, w); }

/* TCP to 127.0.0.1:port with w's buffers ready; no upgrade. 0 or -1. */
static int raw_connect_port(int port, const h_raw_opts *o, h_raw *w) {
    memset(w, 0, sizeof *w);
    w->next_request_id = 1;
    w->port = port;
    w->buf_cap = o && o->buf_size ? o->buf_size : RAW_BUF;
    w->io_ms = o && o->io_ms > 0 ? o->io_ms : RAW_IO_MS;
    snprintf(w->host, sizeof w->host, "127.0.0.1:%d", port);
    w->buf = calloc(1, w->buf_cap);
    w->reader = malloc(sizeof(ws_reader));
    w->fd = tcp_connect_rcvbuf(port, w->io_ms, o ? o->rcvbuf : 0);
    if (!w->buf || !w->reader || w->fd < 0) {
        if (w->reader) ws_reader_init(w->reader, false, w->buf_cap);
        h_raw_close(w);
        return -1;
    }
    ws_reader_init(w->reader, false, w->buf_cap);
    return 0;
}

/* Reads an HTTP response head (bounded by io_ms); w->off after it. Its
 * status, or -1. */
static int raw_read_head(h_raw *w, http_response *res) {
    uint64_t deadline = h_now_ms() + (uint64_t)w->io_ms;
    for (;;) {
        int r = http_parse_response((const char *)w->buf, w->len, res);
        if (r > 0) {
            w->off = (size_t)r;
            return res->status;
        }
        if (r < 0 || h_now_ms() >= deadline || raw_fill(w) < 0) return -1;
    }
}

/* Sends the upgrade (Sec-WebSocket-Protocol: protocol, none if NULL) and
 * reads the answer's head: its status, or -1. */
static int raw_upgrade(h_raw *w, const char *protocol) {
    char key[25];
    ws_make_client_key(key);
    char req[1024];
    int n = snprintf(req, sizeof req,
                     "GET / HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
                     w->host, key, protocol ? "Sec-WebSocket-Protocol: " : "", protocol ? protocol : "",
                     protocol ? "\r\n" : "");
    if (n < 0 || (size_t)n >= sizeof req || send(w->fd, req, (size_t)n, MSG_NOSIGNAL) != n) return -1;
    http_response res;
    int st = raw_read_head(w, &res);
    if (st < 0) return -1;
    char want[29];
    w->upgrade_accept_ok = ws_accept_key(key, want) == 0 && strcmp(want, res.ws_accept) == 0;
    snprintf(w->upgrade_protocol, sizeof w->upgrade_protocol, "%s", res.ws_protocol);
    return st;
}

static int raw_open_port(int port, const h_raw_opts *o, h_raw *w) {
    if (raw_connect_port(port, o, w) != 0) return -1;
    int st = raw_upgrade(w, "parley.v1");
    if (st != 101) {
        if (st > 0) fprintf(stderr, "  raw upgrade: status %d\n", st);
        goto fail;
    }
    int code;
    Parley__V1__Frame *f = raw_frame(w, &code);
    int ok = f && f->body_case == PARLEY__V1__FRAME__BODY_CHALLENGE && f->challenge->nonce.len == 32;
    if (ok) memcpy(w->nonce, f->challenge->nonce.data, 32);
    if (f) parley__v1__frame__free_unpacked(f, NULL);
    if (ok) return 0;
    fprintf(stderr, "  raw connection: no Challenge\n");
fail:
    h_raw_close(w);
    return -1;
}

/* Reads frames (at most max_frames) until the Response to request_id: its
 * status (*resp, if resp, the frame), or -1 (*close_code, if given: the
 * close code, 1006 at EOF, 0 on timeout or the bound). */
static int raw_await_response(h_raw *w, uint64_t request_id, int max_frames, Parley__V1__Frame **resp,
                              int *close_code) {
    if (resp) *resp = NULL;
    if (close_code) *close_code = 0;
    for (int i = 0; i < max_frames; i++) {
        int code;
        Parley__V1__Frame *r = raw_frame(w, &code);
        if (!r) {
            if (close_code) *close_code = code;
            return -1;
        }
        if (r->body_case == PARLEY__V1__FRAME__BODY_RESPONSE && r->request_id == request_id) {
            int st = r->response->status;
            if (resp)
                *resp = r;
            else
                parley__v1__frame__free_unpacked(r, NULL);
            return st;
        }
        parley__v1__frame__free_unpacked(r, NULL);
    }
    return -1;
}

int h_raw_request(h_raw *w, Parley__V1__Frame *f, Parley__V1__Frame **resp, int *close_code) {
    if (resp) *resp = NULL;
    if (close_code) *close_code = 0;
    f->request_id = w->next_request_id++;
    if (raw_send_frame(w, f) != 0) return -1;
    return raw_await_response(w, f->request_id, 256, resp, close_code);
}

/* The signature over "parley.v1 auth" || nonce || Host by sk. */
static void raw_sign_challenge(const h_raw *w, const uint8_t *sk, uint8_t sig[64]) {
    size_t host_len = strlen(w->host);
    uint8_t msg[14 + 32 + sizeof w->host];
    memcpy(msg, "parley.v1 auth", 14);
    memcpy(msg + 14, w->nonce, 32);
    memcpy(msg + 14 + 32, w->host, host_len);
    crypto_sign_detached(sig, NULL, msg, 14 + 32 + host_len, sk);
}

/* f: a SignIn for id signed over w's current nonce (si and sig hold its
 * parts; they must outlive f) */
static void raw_sign_in_frame(const h_raw *w, const pc_identity *id, uint8_t sig[64], Parley__V1__SignIn *si,
                              Parley__V1__Frame *f) {
    raw_sign_challenge(w, id->secret_key, sig);
    parley__v1__sign_in__init(si);
    si->user_id = id->user_id;
    si->device_id = id->device_id;
    si->signature.data = sig;
    si->signature.len = 64;
    parley__v1__frame__init(f);
    f->body_case = PARLEY__V1__FRAME__BODY_SIGN_IN;
    f->sign_in = si;
}

int h_raw_sign_in(h_raw *w, const pc_identity *id) {
    uint8_t sig[64];
    Parley__V1__SignIn si;
    Parley__V1__Frame f;
    raw_sign_in_frame(w, id, sig, &si, &f);
    int st = h_raw_request(w, &f, NULL, NULL);
    if (st != PARLEY__V1__STATUS__OK) fprintf(stderr, "  raw SignIn: status %d\n", st);
    return st == PARLEY__V1__STATUS__OK ? 0 : -1;
}

/* ------------------------------------------------------------------ TLS */

#include <openssl/ssl.h>

int h_make_cert(const char *dir, char *cert, char *key, size_t cap) {
    snprintf(cert, cap, "%s/cert.pem", dir);
    snprintf(key, cap, "%s/key.pem", dir);
    char cmd[1024];
    snprintf(cmd, sizeof cmd,
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes "
             "-keyout %s -out %s -days 2 -subj /CN=127.0.0.1 "
             "-addext subjectAltName=IP:127.0.0.1,DNS:localhost >/dev/null 2>&1",
             key, cert);
    if (system(cmd) != 0) {
        fprintf(stderr, "  openssl req failed (is the openssl command installed?)\n");
        return -1;
    }
    return 0;
}

int h_tls_get(int port, const char *ca_file, const char *path, int *status, char *body,
              size_t cap) {
    int fd = h_tcp_connect(port, 3000);
    if (fd < 0) return -1;
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    int rc = -1;
    if (ctx && SSL_CTX_load_verify_locations(ctx, ca_file, NULL) == 1) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
        ssl = SSL_new(ctx);
    }
    if (ssl && SSL_set_fd(ssl, fd) == 1 && SSL_connect(ssl) == 1) {
        char req[512];
        int n = snprintf(req, sizeof req,
                         "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", path);
        size_t len = 0;
        if (SSL_write(ssl, req, n) == n) {
            int r;
            while (len + 1 < cap && (r = SSL_read(ssl, body + len, (int)(cap - 1 - len))) > 0)
                len += (size_t)r;
        }
        body[len] = 0;
        if (sscanf(body, "HTTP/1.1 %d", status) == 1) {
            char *b = strstr(body, "\r\n\r\n");
            if (b) memmove(body, b + 4, strlen(b + 4) + 1);
            rc = 0;
        }
    }
    if (ssl) SSL_free(ssl);
    if (ctx) SSL_CTX_free(ctx);
    close(fd);
    return rc;
}

static const char *tls_cert_of(const h_server *s) {
    for (int i = 0; i + 1 < s->n_extra; i++)
        if (strcmp(s->extra[i], "--tls-cert") == 0) return s->extra[i + 1];
    return NULL;
}

static int wait_healthy_tls(h_server *s) {
    const char *cert = tls_cert_of(s);
    uint64_t deadline = h_now_ms() + 10000;
    while (cert && h_now_ms() < deadline) {
        if (!h_server_alive(s)) {
            fprintf(stderr, "  TLS server exited during start-up\n");
            h_server_log_tail(s, 30);
            return -1;
        }
        int st = 0;
        char body[64];
        if (h_tls_get(s->port, cert, "/healthz", &st, body, sizeof body) == 0 && st == 200)
            return 0;
        h_sleep_ms(30);
    }
    fprintf(stderr, "  TLS server did not answer /healthz 200 within 10 s\n");
    h_server_log_tail(s, 30);
    h_server_kill9(s);
    return -1;
}

int h_server_start_tls(h_server *s, const char *const *extra_args) {
    memset(s, 0, sizeof *s);
    signal(SIGPIPE, SIG_IGN);
    install_atexit();
    const char *bin = getenv("PARLEY_BIN");
    snprintf(s->bin, sizeof s->bin, "%s", bin && *bin ? bin : "./build/parley");
    snprintf(s->dir, sizeof s->dir, "/tmp/parley-it-XXXXXX");
    if (access(s->bin, X_OK) != 0 || !mkdtemp(s->dir)) {
        fprintf(stderr, "  server binary %s or temp dir: %s\n", s->bin, strerror(errno));
        return -1;
    }
    snprintf(s->data, sizeof s->data, "%s/data", s->dir);
    snprintf(s->log, sizeof s->log, "%s/server.log", s->dir);
    mkdir(s->data, 0755);
    if (!slot_for(s, 1)) return -1;
    for (int i = 0; extra_args && extra_args[i] && s->n_extra < H_MAX_EXTRA_ARGS; i++)
        s->extra[s->n_extra++] = strdup(extra_args[i]);
    if (!tls_cert_of(s)) {
        fprintf(stderr, "  h_server_start_tls without --tls-cert\n");
        return -1;
    }
    s->port = h_free_port();
    if (s->port <= 0) return -1;
    snprintf(s->url, sizeof s->url, "wss://127.0.0.1:%d", s->port);
    if (spawn(s) != 0) return -1;
    return wait_healthy_tls(s);
}

int h_server_restart_tls(h_server *s) {
    if (s->pid > 0) h_server_stop(s);
    if (spawn(s) != 0) return -1;
    return wait_healthy_tls(s);
}

int h_accounts_barrier(h_dev *d) {
    char token[128];
    uint64_t expires = 0;
    if (pc_create_link_token(d->c, token, sizeof token, &expires) == 0) return 0;
    fprintf(stderr, "  accounts barrier %s: %s (status %d)\n", d->name, pc_error(d->c), pc_status(d->c));
    return -1;
}

int h_server_survived(h_server *s) {
    if (h_server_alive(s)) return 1;
    h_server_log_tail(s, 40);
    printf("FAIL server_survived\n");
    return 0;
}

/* ----------------------------------------- raw connections: more control */

int h_raw_open_port(int port, const h_raw_opts *o, h_raw *w) { return raw_open_port(port, o, w); }

size_t h_raw_pack_frame(const Parley__V1__Frame *f, uint8_t *out, size_t cap) {
    size_t len = parley__v1__frame__get_packed_size(f);
    if (WS_MAX_HEADER + len > cap) return 0;
    uint8_t mask[4];
    randombytes_buf(mask, sizeof mask);
    size_t h = ws_write_header(out, WS_OP_BINARY, true, len, mask);
    parley__v1__frame__pack(f, out + h);
    ws_mask(out + h, len, mask, 0);
    return h + len;
}

int h_raw_send_bytes(h_raw *w, const void *data, size_t n) {
    const uint8_t *p = data;
    uint64_t deadline = h_now_ms() + 3 * (uint64_t)w->io_ms;
    while (n > 0) {
        ssize_t k = send(w->fd, p, n, MSG_NOSIGNAL);
        /* EAGAIN: the socket's send timeout; a busy server reads later */
        if (k < 0 && (errno == EINTR || errno == EAGAIN) && h_now_ms() < deadline) continue;
        if (k <= 0) return -1;
        p += k;
        n -= (size_t)k;
    }
    return 0;
}

int h_raw_send_frame(h_raw *w, const Parley__V1__Frame *f) {
    size_t cap = WS_MAX_HEADER + parley__v1__frame__get_packed_size(f);
    uint8_t *b = malloc(cap);
    if (!b) return -1;
    size_t n = h_raw_pack_frame(f, b, cap);
    int r = n ? h_raw_send_bytes(w, b, n) : -1;
    free(b);
    return r;
}

int h_raw_await_response(h_raw *w, uint64_t request_id, int max_frames, Parley__V1__Frame **resp) {
    return raw_await_response(w, request_id, max_frames, resp, NULL);
}

int h_raw_worker_answers(h_raw *w, uint64_t request_id) {
    Parley__V1__PushGetKey gk = PARLEY__V1__PUSH_GET_KEY__INIT;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_PUSH_GET_KEY;
    f.push_get_key = &gk;
    f.request_id = request_id;
    if (h_raw_send_frame(w, &f) != 0) return 0;
    Parley__V1__Frame *resp = NULL;
    int st = h_raw_await_response(w, request_id, 16, &resp);
    if (resp) parley__v1__frame__free_unpacked(resp, NULL);
    return st >= 0;
}

int h_raw_connect(int port, const h_raw_opts *o, h_raw *w) { return raw_connect_port(port, o, w); }

int h_raw_upgrade(h_raw *w, const char *protocol) { return raw_upgrade(w, protocol); }

int h_raw_next_message(h_raw *w, struct ws_message *m) { return raw_next(w, m); }

Parley__V1__Frame *h_raw_next_frame_sized(h_raw *w, size_t *size, int *close_code) {
    int code;
    Parley__V1__Frame *f = raw_frame_sized(w, &code, size);
    if (close_code) *close_code = code;
    return f;
}

int h_raw_send_ws(h_raw *w, uint8_t opcode, int fin, const void *payload, size_t len, int masked) {
    uint8_t *out = malloc(WS_MAX_HEADER + len);
    if (!out) return -1;
    uint8_t mask[4];
    randombytes_buf(mask, sizeof mask);
    size_t h = ws_write_header(out, opcode, fin != 0, len, masked ? mask : NULL);
    if (len) memcpy(out + h, payload, len);
    if (masked && len) ws_mask(out + h, len, mask, 0);
    size_t sent = 0;
    while (sent < h + len) {
        ssize_t n = send(w->fd, out + sent, h + len - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        sent += (size_t)n;
    }
    free(out);
    return sent == h + len ? 0 : -1;
}

int h_raw_expect_close(h_raw *w, int max_messages) {
    for (int i = 0; i < max_messages; i++) {
        ws_message m;
        int r = raw_next(w, &m);
        if (r == 1 && m.kind == WS_MSG_CLOSE) {
            raw_keep_close(w, &m);
            return m.close_code;
        }
        if (r == 1) continue;
        if (r == -1) return -2;   /* the server's own frames were malformed */
        return w->eof ? 1006 : 0;
    }
    return 0;
}

int h_raw_wait_eof(h_raw *w) {
    uint64_t deadline = h_now_ms() + (uint64_t)w->io_ms;
    while (!w->eof && h_now_ms() < deadline) {
        ws_message m;
        if (raw_next(w, &m) != 1 && !w->eof) break;
    }
    return w->eof;
}

int h_raw_read_head(h_raw *w) {
    http_response res;
    return raw_read_head(w, &res);
}

int h_raw_send_register(h_raw *w, const char *name, uint64_t request_id) {
    uint8_t pk[32], sk[64], sig[64];
    crypto_sign_keypair(pk, sk);
    raw_sign_challenge(w, sk, sig);
    Parley__V1__RegisterUser ru = PARLEY__V1__REGISTER_USER__INIT;
    ru.name = (char *)name;
    ru.device_public_key.data = pk;
    ru.device_public_key.len = sizeof pk;
    ru.device_name = "raw";
    ru.signature.data = sig;
    ru.signature.len = sizeof sig;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.request_id = request_id;
    f.body_case = PARLEY__V1__FRAME__BODY_REGISTER_USER;
    f.register_user = &ru;
    return h_raw_send_frame(w, &f);
}

/* ------------------------------------------------------ test key sets */

void h_test_keys(uint8_t tag, uint8_t ik[32], uint8_t spk[32], uint8_t sig[64]) {
    uint8_t seed[crypto_sign_SEEDBYTES], sk[crypto_sign_SECRETKEYBYTES];
    for (size_t i = 0; i < sizeof seed; i++) seed[i] = (uint8_t)(tag * 31 + i);
    crypto_sign_seed_keypair(ik, sk, seed);
    for (size_t i = 0; i < 32; i++) spk[i] = (uint8_t)((tag + 1) * 31 + i);
    crypto_sign_detached(sig, NULL, spk, 32, sk);
    sodium_memzero(sk, sizeof sk);
}

/* ------------------------------------------------- the store under test
 *
 * PARLEY_TEST_STORE=cassandra runs every server h_server_start starts on
 * Cassandra: --store cassandra --cassandra HOSTS --keyspace K, with one
 * fresh keyspace per h_server. The flags are kept in s->extra, so a restart
 * (h_server_restart, after h_server_kill9 too) comes back on the same
 * keyspace: that is what "the same data dir" means on Cassandra. HOSTS is
 * PARLEY_TEST_CASSANDRA when set (tests/run.sh starts one node for the
 * whole pass); otherwise this program starts its own node
 * (cassandra_node.c) at its first server and stops it by PID at exit. */

static int test_store_is_cassandra(void) {
    const char *v = getenv("PARLEY_TEST_STORE");
    return v && strcmp(v, "cassandra") == 0;
}

const char *h_test_store(void) { return test_store_is_cassandra() ? "cassandra" : "rocksdb"; }

static int start_wait_ms(const h_server *s) {
    /* a server on Cassandra (by PARLEY_TEST_STORE or its own flags)
     * creates its keyspace and tables at its first start: schema changes
     * take a while on a shared machine */
    for (int i = 0; i + 1 < s->n_extra; i++)
        if (strcmp(s->extra[i], "--store") == 0 && strcmp(s->extra[i + 1], "cassandra") == 0) return 90000;
    return 10000;
}

static const char *cassandra_hosts(void) {
    const char *env = getenv("PARLEY_TEST_CASSANDRA");
    if (env && *env) return env;
    static int started;
    if (!started) {
        if (cassandra_node_start("it-cass") != 0) return NULL;
        started = 1;
        /* atexit runs last-registered first: stop this program's servers
         * (and their devices) before the node under them */
        atexit(reap_all);
    }
    return cassandra_node_hosts();
}

/* Keyspaces this program made on a node that outlives it (run.sh's), so
 * they are dropped when their server is destroyed, or at exit: a node with
 * hundreds of tables runs out of heap. Bounded; past the bound a keyspace
 * is only left behind (the node is removed after the pass anyway). */
enum { H_MAX_KEYSPACES = 64 };
static struct {
    char hosts[128];
    char name[48];
} keyspaces[H_MAX_KEYSPACES];

static void keyspace_note(const char *hosts, const char *name) {
    const char *env = getenv("PARLEY_TEST_CASSANDRA");
    if (!env || !*env) return;   /* a node of our own goes with its directory */
    for (int i = 0; i < H_MAX_KEYSPACES; i++)
        if (!keyspaces[i].name[0]) {
            snprintf(keyspaces[i].hosts, sizeof keyspaces[i].hosts, "%s", hosts);
            snprintf(keyspaces[i].name, sizeof keyspaces[i].name, "%s", name);
            return;
        }
}

/* DROP KEYSPACE for the one named only (NULL: every noted one) */
static void keyspaces_drop(const char *only) {
    for (int i = 0; i < H_MAX_KEYSPACES; i++) {
        if (!keyspaces[i].name[0] || (only && strcmp(only, keyspaces[i].name) != 0)) continue;
        if (h_cassandra_drop_keyspace(keyspaces[i].hosts, keyspaces[i].name) != 0)
            fprintf(stderr, "  could not drop keyspace %s (left on the node)\n", keyspaces[i].name);
        keyspaces[i].name[0] = 0;
    }
}

int h_cassandra_drop_keyspace(const char *hosts, const char *keyspace) {
    char q[128];
    snprintf(q, sizeof q, "DROP KEYSPACE IF EXISTS %s", keyspace);
    cql_options o = {.hosts = hosts, .request_timeout_ms = 60000};
    cql_client *c = cql_connect(&o);
    if (!c) return -1;
    int rc = -1;
    if (cql_wait_ready(c, 30000) == 0) {
        cql_result *r = cql_query_sync(c, q, CQL_ONE);
        rc = r && cql_result_status(r) == CQL_OK ? 0 : -1;
        if (rc != 0) fprintf(stderr, "  %s: %s\n", q, r ? cql_result_message(r) : "no result");
        cql_result_free(r);
    }
    cql_close(c);
    return rc;
}

static int store_args_add(h_server *s) {
    const char *v = getenv("PARLEY_TEST_STORE");
    if (!v || !*v || strcmp(v, "rocksdb") == 0) return 0;
    if (!test_store_is_cassandra()) {
        fprintf(stderr, "  PARLEY_TEST_STORE=%s: expected rocksdb or cassandra\n", v);
        return -1;
    }
    const char *hosts = cassandra_hosts();
    if (!hosts) return -1;
    /* unique per server across the programs of a pass sharing one node:
     * time, PID and a count; keyspace names are [a-z0-9_], at most 48 */
    static unsigned n_keyspaces;
    char keyspace[48];
    snprintf(keyspace, sizeof keyspace, "it_%08lx_%d_%u", (unsigned long)time(NULL), (int)getpid(),
             n_keyspaces++);
    keyspace_note(hosts, keyspace);
    const char *args[] = {"--store", "cassandra", "--cassandra", hosts, "--keyspace", keyspace};
    for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
        if (s->n_extra >= H_MAX_EXTRA_ARGS) return -1;
        s->extra[s->n_extra++] = strdup(args[i]);
    }
    return 0;
}

const char *h_server_keyspace(const h_server *s) {
    for (int i = 0; i + 1 < s->n_extra; i++)
        if (strcmp(s->extra[i], "--keyspace") == 0) return s->extra[i + 1];
    return "";
}

int h_member_marks(h_dev *viewer, uint64_t conv, uint64_t user, uint64_t *delivered, uint64_t *read) {
    *delivered = *read = 0;
    Parley__V1__ReceiptList *l = NULL;
    if (pc_get_receipts(viewer->c, conv, &l) != 0) {
        fprintf(stderr, "  GetReceipts: %s (status %d)\n", pc_error(viewer->c), pc_status(viewer->c));
        return -1;
    }
    int rc = 1;
    for (size_t i = 0; i < l->n_members; i++) {
        if (l->members[i]->user_id != user) continue;
        *delivered = l->members[i]->delivered_seq;
        *read = l->members[i]->read_seq;
        rc = 0;
    }
    parley__v1__receipt_list__free_unpacked(l, NULL);
    return rc;
}

int h_raw_barrier(h_raw *w, uint64_t request_id, int max_frames) {
    Parley__V1__LookupUser lu = PARLEY__V1__LOOKUP_USER__INIT;
    lu.name = "nobody-by-this-name";
    Parley__V1__Frame q = PARLEY__V1__FRAME__INIT;
    q.request_id = request_id;
    q.body_case = PARLEY__V1__FRAME__BODY_LOOKUP_USER;
    q.lookup_user = &lu;
    if (h_raw_send_frame(w, &q) != 0) return -1;
    return h_raw_await_response(w, request_id, max_frames, NULL) >= 0 ? 0 : -1;
}

int h_raw_ack_barrier(h_raw *w, uint64_t user_seq, uint64_t request_id, int max_frames) {
    Parley__V1__Ack ack = PARLEY__V1__ACK__INIT;
    ack.user_seq = user_seq;
    Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
    f.body_case = PARLEY__V1__FRAME__BODY_ACK;
    f.ack = &ack;
    if (h_raw_send_frame(w, &f) != 0) return -1;
    return h_raw_barrier(w, request_id, max_frames);
}

/* ------------------------------------------------------- bursts of frames */

int h_raw_send_frames(h_raw *w, size_t n, h_frame_maker make, void *ud) {
    size_t cap = 0, len = 0;
    uint8_t *b = NULL;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        Parley__V1__Frame f = PARLEY__V1__FRAME__INIT;
        if (make(ud, i, &f) != 0) {
            rc = -1;
            break;
        }
        size_t need = WS_MAX_HEADER + parley__v1__frame__get_packed_size(&f);
        if (cap - len < need) {
            size_t grown_cap = (cap + need) * 2;
            uint8_t *grown = realloc(b, grown_cap);
            if (!grown) {
                rc = -1;
                break;
            }
            b = grown;
            cap = grown_cap;
        }
        size_t k = h_raw_pack_frame(&f, b + len, cap - len);
        if (k == 0) rc = -1;
        len += k;
    }
    if (rc == 0 && len > 0) rc = h_raw_send_bytes(w, b, len);
    free(b);
    return rc;
}

void h_frame_send_text(Parley__V1__Frame *f, Parley__V1__SendMessage *sm, uint64_t request_id, uint64_t conv,
                       const char *client_msg_id, const char *text) {
    parley__v1__send_message__init(sm);
    sm->conversation_id = conv;
    sm->client_msg_id.data = (uint8_t *)client_msg_id;
    sm->client_msg_id.len = strlen(client_msg_id);
    sm->type = PARLEY__V1__MESSAGE_TYPE__TEXT;
    sm->body.data = (uint8_t *)text;
    sm->body.len = strlen(text);
    parley__v1__frame__init(f);
    f->request_id = request_id;
    f->body_case = PARLEY__V1__FRAME__BODY_SEND_MESSAGE;
    f->send_message = sm;
}

pid_t h_spawn_logged(const char *prog, const char *const *args, const char *log) {
    pid_t pid = fork();
    if (pid != 0) return pid;   /* the parent: the child's pid, or -1 */
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0600);
    if (fd >= 0) {
        dup2(fd, 1);
        dup2(fd, 2);
    }
    const char *argv[H_SPAWN_ARGS_MAX + 2];
    int n = 0;
    argv[n++] = prog;
    for (int i = 0; args[i] && i < H_SPAWN_ARGS_MAX; i++) argv[n++] = args[i];
    argv[n] = NULL;
    execv(prog, (char *const *)argv);
    _exit(127);
}

int h_raw_send_sign_in(h_raw *w, const pc_identity *id, uint64_t request_id) {
    uint8_t sig[64];
    Parley__V1__SignIn si;
    Parley__V1__Frame f;
    raw_sign_in_frame(w, id, sig, &si, &f);
    f.request_id = request_id;
    return h_raw_send_frame(w, &f);
}
