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
#include <unistd.h>

#include "peer_common.h"

typedef struct ev {
    int fd;
    uint32_t mask;
    redisAsyncContext *ac;
} ev;

static int g_ep;
static peer_tally g_t;
static peer_args g_a;

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
    peer_src_str(src, sizeof src, index);
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
        g_t.ready++;
        return;
    }
    redisReply *p = rep->element[2];
    if (p->type != REDIS_REPLY_STRING || p->len < 16) return;
    uint32_t sender;
    uint64_t ts;
    memcpy(&sender, p->str + 4, 4);
    memcpy(&ts, p->str + 8, 8);
    if (sender == c->index) return;   /* own message (group): not a delivery to another member */
    g_t.delivered++;
    uint64_t now = peer_now_ns();
    if (now > ts) hist_record(&g_t.deliv, now - ts);
}

static void on_published(redisAsyncContext *ac, void *r, void *priv);

static void publish(client *c, uint64_t ts) {
    char body[4096];
    memset(body, 'x', (size_t)g_a.body);
    memcpy(body + 4, &c->index, 4);
    memcpy(body + 8, &ts, 8);
    uint64_t *sent_at = malloc(sizeof *sent_at);
    *sent_at = peer_now_ns();
    c->inflight++;
    g_t.sent++;
    redisAsyncCommand(c->pub, on_published, sent_at, "PUBLISH %s %b", c->channel, body, (size_t)g_a.body);
}

static client *g_clients;
static void on_published(redisAsyncContext *ac, void *r, void *priv) {
    uint64_t *sent_at = priv;
    client *c = ac->data;
    if (r) {
        g_t.acked++;
        uint64_t now = peer_now_ns();
        hist_record(&g_t.ack, now - *sent_at);
    }
    free(sent_at);
    if (c->inflight) c->inflight--;
}

static void print_json(const char *shape, double secs, long n_senders) {
    printf("{\"system\": \"redis\", \"scenario\": \"%s\", \"seconds\": %.3f, \"senders\": %ld, ",
           shape, secs, n_senders);
    peer_print_rates(&g_t, secs);
    printf("}\n");
}

/* the send loop's hooks (peer_send_for) */
static bool room(void *p, uint32_t cap) {
    client *c = p;
    return c->inflight < cap;
}
static void send_one(void *p, uint64_t due) { publish(p, due); }
static void turn(uint64_t now, int timeout_ms) {
    (void)now;
    poll_once(timeout_ms);
}

int main(int argc, char **argv) {
    if (!peer_parse_args(&g_a, argc, argv, "bench-peer-redis", 6379, 16)) return 2;
    const char *shape = g_a.shape;
    int port = g_a.port;
    long n = g_a.n;
    peer_raise_nofile(NULL, 0);
    g_ep = epoll_create1(0);
    peer_tally_init(&g_t);

    if (!strcmp(shape, "idle")) {   /* N idle subscribed connections: Redis memory per connection */
        long before = g_a.pid ? peer_status_kb(g_a.pid, "VmRSS") : -1;
        client *cs = calloc((size_t)n, sizeof *cs);
        for (long i = 0; i < n; i++) {
            cs[i].index = (uint32_t)i;
            cs[i].sub = connect_one(port, (uint32_t)i);
            snprintf(cs[i].channel, sizeof cs[i].channel, "i%ld", i);
            redisAsyncCommand(cs[i].sub, on_message, &cs[i], "SUBSCRIBE %s", cs[i].channel);
            if (i % 256 == 255) poll_once(0);
        }
        uint64_t end = peer_now_ns() + 60000000000ull;
        while (g_t.ready < (uint64_t)n && peer_now_ns() < end) poll_once(100);
        uint64_t settle = peer_now_ns() + 3000000000ull;
        while (peer_now_ns() < settle) poll_once(100);
        long after = g_a.pid ? peer_status_kb(g_a.pid, "VmRSS") : -1;
        printf("{\"system\": \"redis\", \"scenario\": \"connections\", \"held\": %llu, "
               "\"server_bytes_per_conn\": %.1f}\n", (unsigned long long)g_t.ready,
               g_t.ready ? (double)(after - before) * 1024 / (double)g_t.ready : 0);
        return 0;
    }

    bool group = !strcmp(shape, "group");
    long nclients = group ? g_a.size : g_a.pairs * 2;
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
        else g_t.ready++;
        if (i % 128 == 127) poll_once(0);
    }
    uint64_t end = peer_now_ns() + 60000000000ull;
    while (g_t.ready < (uint64_t)nclients && peer_now_ns() < end) poll_once(50);
    long nsend = 0;
    void **sendv = calloc((size_t)nclients, sizeof *sendv);
    for (long i = 0; i < nclients; i++) {
        bool s = group ? (g_a.senders < 0 || i < g_a.senders) : i % 2 == 0;
        if (s) sendv[nsend++] = &g_clients[i];
    }
    double secs = peer_send_for(sendv, nsend, &g_a, 4096, &(peer_sender){room, send_one, turn});
    peer_drain(&g_t, poll_once);
    print_json(group ? "group" : "direct", secs, nsend);
    return 0;
}
