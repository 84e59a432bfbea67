/* ops_http.c -- see ops_http.h. */
#include "gateway/ops_http.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "fanout/fanout.h"
#include "net/http.h"
#include "push/push_gateway.h"

/* what the node waits for besides its store (ops_http.h); registered at
 * start, read by every /healthz, so a lock is cheap enough */
static struct {
    char name[OPS_HEALTH_NAME_MAX];
    bool (*waiting)(void *ctx);
    void *ctx;
} health_waits[OPS_HEALTH_WAITS];
static int n_health_waits;
static pthread_mutex_t health_lock = PTHREAD_MUTEX_INITIALIZER;

int ops_health_wait_on(const char *name, bool (*waiting)(void *ctx), void *ctx) {
    size_t len = strnlen(name, OPS_HEALTH_NAME_MAX);
    if (len == 0 || len >= OPS_HEALTH_NAME_MAX || !waiting) return -1;
    pthread_mutex_lock(&health_lock);
    int rc = -1;
    if (n_health_waits < OPS_HEALTH_WAITS) {
        memcpy(health_waits[n_health_waits].name, name, len + 1);
        health_waits[n_health_waits].waiting = waiting;
        health_waits[n_health_waits].ctx = ctx;
        n_health_waits++;
        rc = 0;
    }
    pthread_mutex_unlock(&health_lock);
    return rc;
}

void ops_health_wait_off(void *ctx) {
    pthread_mutex_lock(&health_lock);
    int kept = 0;
    for (int i = 0; i < n_health_waits; i++)
        if (health_waits[i].ctx != ctx) health_waits[kept++] = health_waits[i];
    n_health_waits = kept;
    pthread_mutex_unlock(&health_lock);
}

const char *ops_health(server *srv, int *http_status) {
    static _Thread_local char text[OPS_HEALTH_TEXT_MAX];
    store_health h = srv->store ? store_get_health(srv->store) : STORE_HEALTHY;
    /* "store failing; waiting for redis, chat link" (names are bounded, so
     * all of them fit: 8 x 24 + the store's name) */
    size_t n = 0;
    if (h != STORE_HEALTHY) n = (size_t)snprintf(text, sizeof text, "%s", store_health_name(h));
    int waiting = 0;
    pthread_mutex_lock(&health_lock);
    for (int i = 0; i < n_health_waits && n < sizeof text; i++) {
        if (!health_waits[i].waiting(health_waits[i].ctx)) continue;
        const char *sep = waiting ? ", " : n ? "; waiting for " : "waiting for ";
        n += (size_t)snprintf(text + n, sizeof text - n, "%s%s", sep, health_waits[i].name);
        waiting++;
    }
    pthread_mutex_unlock(&health_lock);
    *http_status = h == STORE_HEALTHY && !waiting ? 200 : 503;
    return *http_status == 200 ? "ok" : text;
}

size_t ops_metrics_text(server *srv, char *out, size_t cap) {
    size_t n = metrics_render(out, cap);
    if (srv->store && n < cap) n += store_metrics_render(srv->store, out + n, cap - n);
    if (n < cap) n += fanout_metrics_render(out + n, cap - n);
    if (n < cap) n += push_metrics_render(out + n, cap - n);
    return n;
}

/* ------------------------------------------------- the separate listener */

enum {
    OPS_REQUEST_MAX = 8192,       /* a scraper's GET is a few hundred bytes */
    OPS_IO_TIMEOUT_MS = 2000,     /* per connection: a stalled peer is dropped */
    OPS_POLL_MS = 200,            /* how soon a stop is noticed */
    OPS_TEXT_MAX = 65536,
};

struct ops_listener {
    server *srv;
    int fd;
    pthread_t thread;
    atomic_bool stopping;
};

static void write_all(int fd, const char *p, size_t n) {
    uint64_t deadline = clock_mono_ms() + OPS_IO_TIMEOUT_MS;
    while (n > 0 && clock_mono_ms() < deadline) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        p += w;
        n -= (size_t)w;
    }
}

static void answer(int fd, const char *status, const char *type, const char *body, size_t len) {
    char head[256];
    int n = snprintf(head, sizeof head,
                     "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
                     status, type, len);
    write_all(fd, head, (size_t)n);
    write_all(fd, body, len);
}

static void serve_one(ops_listener *l, int fd, char *text) {
    struct timeval tv = {OPS_IO_TIMEOUT_MS / 1000, (OPS_IO_TIMEOUT_MS % 1000) * 1000};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    char in[OPS_REQUEST_MAX];
    size_t len = 0;
    http_request req;
    int r = HTTP_NEED_MORE;
    uint64_t deadline = clock_mono_ms() + OPS_IO_TIMEOUT_MS;
    while (r == HTTP_NEED_MORE && len < sizeof in && clock_mono_ms() < deadline) {
        ssize_t got = recv(fd, in + len, sizeof in - len, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return;
        len += (size_t)got;
        r = http_parse_request(in, len, &req);
    }
    if (r < 0 || r == HTTP_NEED_MORE) {
        answer(fd, "400 Bad Request", "text/plain", "bad request\n", 12);
        return;
    }
    char *q = strchr(req.path, '?');
    if (q) *q = 0;
    if (strcmp(req.path, "/metrics") == 0) {
        size_t n = ops_metrics_text(l->srv, text, OPS_TEXT_MAX);
        answer(fd, "200 OK", "text/plain; version=0.0.4", text, n);
    } else if (strcmp(req.path, "/healthz") == 0) {
        int code;
        const char *h = ops_health(l->srv, &code);
        char body[OPS_HEALTH_TEXT_MAX + 1];
        int n = snprintf(body, sizeof body, "%s\n", h);
        answer(fd, code == 200 ? "200 OK" : "503 Service Unavailable", "text/plain", body, (size_t)n);
    } else {
        answer(fd, "404 Not Found", "text/plain", "not found\n", 10);
    }
}

static void *ops_main(void *arg) {
    ops_listener *l = arg;
    pthread_setname_np(pthread_self(), "parley-ops");
    char *text = malloc(OPS_TEXT_MAX);
    if (!text) return NULL;
    while (!atomic_load(&l->stopping)) {
        struct pollfd p = {.fd = l->fd, .events = POLLIN};
        if (poll(&p, 1, OPS_POLL_MS) <= 0) continue;
        int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) continue;
        serve_one(l, fd, text);
        close(fd);
    }
    free(text);
    return NULL;
}

ops_listener *ops_listener_start(server *srv, const char *host, int port) {
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &addr.sin_addr) != 1) {
        if (strcmp(host, "localhost") != 0) {
            log_error("metrics-listen: '%s' is not an IPv4 address", host);
            return NULL;
        }
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (fd >= 0) setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (fd < 0 || bind(fd, (struct sockaddr *)&addr, sizeof addr) || listen(fd, 64)) {
        log_error("metrics-listen on %s:%d: %s", host, port, strerror(errno));
        if (fd >= 0) close(fd);
        return NULL;
    }
    ops_listener *l = calloc(1, sizeof *l);
    if (!l) {
        close(fd);
        return NULL;
    }
    l->srv = srv;
    l->fd = fd;
    if (pthread_create(&l->thread, NULL, ops_main, l)) {
        close(fd);
        free(l);
        return NULL;
    }
    log_info("metrics and healthz on http://%s:%d", host, port);
    return l;
}

void ops_listener_stop(ops_listener *l) {
    if (!l) return;
    atomic_store(&l->stopping, true);
    pthread_join(l->thread, NULL);
    close(l->fd);
    free(l);
}
