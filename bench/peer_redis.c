/* peer_redis.c -- the same shapes as parley-bench direct and group, against
 * Redis pub/sub, driven through hiredis's async API on one epoll loop.
 *
 * A subscribed Redis connection cannot publish, so each client is two
 * connections: one SUBSCRIBEd to its channel, one that PUBLISHes. "Ack" is
 * the PUBLISH reply (Redis has handed the message to its subscribers'
 * output buffers); nothing is persisted and there are no cursors.
 *
 *   bench-peer-redis direct --port P --pairs N --window W|--rate R --seconds S
 *   bench-peer-redis group  --port P --size 250 --senders K --window W --seconds S
 *   bench-peer-redis idle   --port P --n N --pid REDIS_PID
 * Prints one JSON object on stdout. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "hist.h"

typedef struct ev {
    int fd;
    uint32_t mask;
    redisAsyncContext *ac;
} ev;

static int g_ep;
static hist g_ack, g_deliv;
static uint64_t g_sent, g_acked, g_delivered, g_ready;
static int g_window = 8, g_body = 32;
static double g_rate;

static uint64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void ev_update(ev *e) {
    struct epoll_event x = {.events = e->mask, .data.ptr = e};
    epoll_ctl(g_ep, EPOLL_CTL_MOD, e->fd, &x);
}
static void add_read(void *p) { ev *e = p; e->mask |= EPOLLIN; ev_update(e); }
static void del_read(void *p) { ev *e = p; e->mask &= ~(uint32_t)EPOLLIN; ev_update(e); }
static void add_write(void *p) { ev *e = p; e->mask |= EPOLLOUT; ev_update(e); }
static void del_write(void *p) { ev *e = p; e->mask &= ~(uint32_t)EPOLLOUT; ev_update(e); }
static void cleanup(void *p) {
    ev *e = p;
    epoll_ctl(g_ep, EPOLL_CTL_DEL, e->fd, NULL);
    e->ac = NULL;
}

static redisAsyncContext *connect_one(int port, uint32_t index) {
    char src[32];
    uint32_t k = index;
    snprintf(src, sizeof src, "127.%u.%u.%u", 30 + (k >> 16) % 200, (k >> 8) & 255, (k & 255) | 1);
    redisAsyncContext *ac = redisAsyncConnectBind("127.0.0.1", port, src);
    if (!ac || ac->err) {
        fprintf(stderr, "peer-redis: connect: %s\n", ac ? ac->errstr : "oom");
        exit(1);
    }
    ev *e = calloc(1, sizeof *e);
    e->fd = ac->c.fd;
    e->ac = ac;
    e->mask = 0;
    struct epoll_event x = {.events = 0, .data.ptr = e};
    epoll_ctl(g_ep, EPOLL_CTL_ADD, e->fd, &x);
    ac->ev.data = e;
    ac->ev.addRead = add_read;
    ac->ev.delRead = del_read;
    ac->ev.addWrite = add_write;
    ac->ev.delWrite = del_write;
    ac->ev.cleanup = cleanup;
    return ac;
}

static void poll_once(int timeout_ms) {
    struct epoll_event evs[512];
    int n = epoll_wait(g_ep, evs, 512, timeout_ms);
    for (int i = 0; i < n; i++) {
        ev *e = evs[i].data.ptr;
        if (!e->ac) continue;
        if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) redisAsyncHandleRead(e->ac);
        if (e->ac && (evs[i].events & EPOLLOUT)) redisAsyncHandleWrite(e->ac);
    }
}

typedef struct client {
    redisAsyncContext *sub, *pub;
    char channel[32];          /* publishes to */
    uint32_t inflight;
    uint32_t index;
} client;

static void on_message(redisAsyncContext *ac, void *r, void *priv) {
    (void)ac;
    client *c = priv;
    redisReply *rep = r;
    if (!rep || rep->type != REDIS_REPLY_ARRAY || rep->elements < 3) return;
    if (strcmp(rep->element[0]->str, "subscribe") == 0) {
        g_ready++;
        return;
    }
    redisReply *p = rep->element[2];
    if (p->type != REDIS_REPLY_STRING || p->len < 16) return;
    uint32_t sender;
    uint64_t ts;
    memcpy(&sender, p->str + 4, 4);
    memcpy(&ts, p->str + 8, 8);
    if (sender == c->index) return;   /* own message (group): not a delivery to another member */
    g_delivered++;
    uint64_t now = now_ns();
    if (now > ts) hist_record(&g_deliv, now - ts);
}

static void on_published(redisAsyncContext *ac, void *r, void *priv);

static void publish(client *c, uint64_t ts) {
    char body[4096];
    memset(body, 'x', (size_t)g_body);
    memcpy(body + 4, &c->index, 4);
    memcpy(body + 8, &ts, 8);
    uint64_t *sent_at = malloc(sizeof *sent_at);
    *sent_at = now_ns();
    c->inflight++;
    g_sent++;
    redisAsyncCommand(c->pub, on_published, sent_at, "PUBLISH %s %b", c->channel, body, (size_t)g_body);
}

static client *g_clients;
static void on_published(redisAsyncContext *ac, void *r, void *priv) {
    uint64_t *sent_at = priv;
    client *c = ac->data;
    if (r) {
        g_acked++;
        uint64_t now = now_ns();
        hist_record(&g_ack, now - *sent_at);
    }
    free(sent_at);
    if (c->inflight) c->inflight--;
}

static void print_json(const char *shape, double secs, long n_senders) {
    printf("{\"system\": \"redis\", \"scenario\": \"%s\", \"seconds\": %.3f, \"senders\": %ld, "
           "\"acked_per_s\": %.1f, \"deliveries_per_s\": %.1f, "
           "\"send_ack_p50_ms\": %.3f, \"send_ack_p99_ms\": %.3f, "
           "\"send_delivery_p50_ms\": %.3f, \"send_delivery_p90_ms\": %.3f, \"send_delivery_p99_ms\": %.3f, "
           "\"send_delivery_p99_9_ms\": %.3f, \"send_delivery_max_ms\": %.3f}\n",
           shape, secs, n_senders, g_acked / secs, g_delivered / secs,
           hist_quantile(&g_ack, 0.5) / 1e6, hist_quantile(&g_ack, 0.99) / 1e6,
           hist_quantile(&g_deliv, 0.5) / 1e6, hist_quantile(&g_deliv, 0.9) / 1e6,
           hist_quantile(&g_deliv, 0.99) / 1e6, hist_quantile(&g_deliv, 0.999) / 1e6,
           hist_quantile(&g_deliv, 1.0) / 1e6);
}

static long status_kb(int pid, const char *key) {
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    if (!f) return -1;
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, strlen(key)) == 0) v = strtol(line + strlen(key) + 1, NULL, 10);
    fclose(f);
    return v;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: bench-peer-redis direct|group|idle --port P [...]\n");
        return 2;
    }
    const char *shape = argv[1];
    int port = 6379, pid = 0;
    long pairs = 1000, size = 250, senders = -1, n = 1000;
    double seconds = 8;
    for (int i = 2; i + 1 < argc; i += 2) {
        const char *a = argv[i], *v = argv[i + 1];
        if (!strcmp(a, "--port")) port = atoi(v);
        else if (!strcmp(a, "--pairs")) pairs = atol(v);
        else if (!strcmp(a, "--size")) size = atol(v);
        else if (!strcmp(a, "--senders")) senders = strcmp(v, "all") ? atol(v) : -1;
        else if (!strcmp(a, "--window")) g_window = atoi(v);
        else if (!strcmp(a, "--rate")) g_rate = strcmp(v, "max") ? atof(v) : 0;
        else if (!strcmp(a, "--seconds")) seconds = atof(v);
        else if (!strcmp(a, "--n")) n = atol(v);
        else if (!strcmp(a, "--pid")) pid = atoi(v);
        else if (!strcmp(a, "--body")) g_body = atoi(v);
    }
    if (g_body < 16) g_body = 16;
    if (g_body > 4096) g_body = 4096;
    if (seconds <= 0 || seconds > 600) seconds = 8;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    g_ep = epoll_create1(0);
    hist_init(&g_ack);
    hist_init(&g_deliv);

    if (!strcmp(shape, "idle")) {   /* N idle subscribed connections: Redis memory per connection */
        long before = pid ? status_kb(pid, "VmRSS") : -1;
        client *cs = calloc((size_t)n, sizeof *cs);
        for (long i = 0; i < n; i++) {
            cs[i].index = (uint32_t)i;
            cs[i].sub = connect_one(port, (uint32_t)i);
            snprintf(cs[i].channel, sizeof cs[i].channel, "i%ld", i);
            redisAsyncCommand(cs[i].sub, on_message, &cs[i], "SUBSCRIBE %s", cs[i].channel);
            if (i % 256 == 255) poll_once(0);
        }
        uint64_t end = now_ns() + 60000000000ull;
        while (g_ready < (uint64_t)n && now_ns() < end) poll_once(100);
        uint64_t settle = now_ns() + 3000000000ull;
        while (now_ns() < settle) poll_once(100);
        long after = pid ? status_kb(pid, "VmRSS") : -1;
        printf("{\"system\": \"redis\", \"scenario\": \"connections\", \"held\": %llu, "
               "\"server_bytes_per_conn\": %.1f}\n", (unsigned long long)g_ready,
               g_ready ? (double)(after - before) * 1024 / (double)g_ready : 0);
        return 0;
    }

    bool group = !strcmp(shape, "group");
    long nclients = group ? size : pairs * 2;
    g_clients = calloc((size_t)nclients, sizeof *g_clients);
    for (long i = 0; i < nclients; i++) {
        client *c = &g_clients[i];
        c->index = (uint32_t)i;
        c->sub = connect_one(port, (uint32_t)(2 * i));
        c->pub = connect_one(port, (uint32_t)(2 * i + 1));
        c->pub->data = c;
        char mine[32];
        if (group) {
            snprintf(mine, sizeof mine, "g0");
            snprintf(c->channel, sizeof c->channel, "g0");
        } else {
            snprintf(mine, sizeof mine, "p%ld", i / 2);
            snprintf(c->channel, sizeof c->channel, "p%ld", i / 2);
        }
        if (group || i % 2 == 1) redisAsyncCommand(c->sub, on_message, c, "SUBSCRIBE %s", mine);
        else g_ready++;
        if (i % 128 == 127) poll_once(0);
    }
    uint64_t end = now_ns() + 60000000000ull;
    while (g_ready < (uint64_t)nclients && now_ns() < end) poll_once(50);
    long nsend = 0;
    client **sendv = calloc((size_t)nclients, sizeof *sendv);
    for (long i = 0; i < nclients; i++) {
        bool s = group ? (senders < 0 || i < senders) : i % 2 == 0;
        if (s) sendv[nsend++] = &g_clients[i];
    }
    uint64_t t0 = now_ns(), stop = t0 + (uint64_t)(seconds * 1e9), seq = 0;
    uint64_t interval = g_rate > 0 ? (uint64_t)(1e9 / g_rate) : 0;
    while (now_ns() < stop) {
        uint64_t now = now_ns();
        if (interval) {
            while (t0 + seq * interval <= now) {
                client *c = sendv[seq % (uint64_t)nsend];
                uint64_t due = t0 + seq * interval;
                seq++;
                if (c->inflight < 4096) publish(c, due);
            }
        } else {
            for (long i = 0; i < nsend; i++)
                while (sendv[i]->inflight < (uint32_t)g_window) publish(sendv[i], now_ns());
        }
        poll_once(interval ? 0 : 1);
    }
    double secs = (double)(now_ns() - t0) / 1e9;
    uint64_t acked = g_acked, deliv = g_delivered;
    uint64_t drain = now_ns() + 5000000000ull;
    while (now_ns() < drain && g_acked < g_sent) poll_once(10);
    g_acked = acked;
    g_delivered = deliv;
    print_json(group ? "group" : "direct", secs, nsend);
    return 0;
}
