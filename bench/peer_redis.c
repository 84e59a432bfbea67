/* peer_redis.c -- the same shapes as parley-bench direct and group, against
 * Redis pub/sub, driven through hiredis's async API on one epoll loop
 * (peer_redis_ev.c).
 *
 * A subscribed Redis connection cannot publish, so each client is two
 * connections: one SUBSCRIBEd to its channel, one that PUBLISHes. "Ack" is
 * the PUBLISH reply (Redis has handed the message to its subscribers'
 * output buffers); nothing is persisted and there are no cursors. A PUBLISH
 * that reached fewer subscribers than the shape has, an error reply, or a
 * lost connection makes the run invalid: it prints no figure then.
 *
 *   bench-peer-redis direct --port P --pairs N --window W|--rate R --seconds S
 *   bench-peer-redis group  --port P --size 250 --senders K|all --window W|--rate R --seconds S
 *   bench-peer-redis idle   --port P --n N --pid REDIS_PID
 * Prints one JSON object on stdout. */
#include <hiredis/async.h>
#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "peer_common.h"
#include "peer_redis_ev.h"

enum { MIN_BODY = 16 };   /* body: 4 bytes pad, sender index, send timestamp */

typedef struct client {
    redisAsyncContext *sub, *pub;   /* NULL once lost */
    char channel[32];               /* publishes to */
    uint32_t inflight, index;
    bool subscribed;
} client;

static peer_tally g_t;
static peer_args g_a;
static uint64_t g_short_publish;    /* PUBLISH replies that reached too few subscribers */

/* hiredis frees a lost context; forget it so nothing writes to it again */
static void on_lost(void *owner) {
    client *c = owner;
    g_t.errors++;
    if (c) c->sub = c->pub = NULL;   /* the client is out of the run either way */
}

static void on_message(redisAsyncContext *ac, void *r, void *priv) {
    (void)ac;
    client *c = priv;
    redisReply *rep = r;
    if (!rep) return;   /* the connection went; on_lost counts it */
    if (rep->type != REDIS_REPLY_ARRAY || rep->elements < 3 || rep->element[0]->type != REDIS_REPLY_STRING) {
        g_t.errors++;
        return;
    }
    if (strcmp(rep->element[0]->str, "subscribe") == 0) {
        if (!c->subscribed) {
            c->subscribed = true;
            g_t.ready++;
        }
        return;
    }
    redisReply *p = rep->element[2];
    if (p->type != REDIS_REPLY_STRING || p->len < MIN_BODY) return;
    uint32_t sender;
    uint64_t ts;
    memcpy(&sender, p->str + 4, 4);
    memcpy(&ts, p->str + 8, 8);
    if (sender == c->index) return;   /* own message (group): not a delivery to another member */
    g_t.delivered++;
    uint64_t now = peer_now_ns();
    if (now > ts) hist_record(&g_t.deliv, now - ts);
}

typedef struct pending {
    client *c;
    uint64_t sent_at;
} pending;

static void on_published(redisAsyncContext *ac, void *r, void *priv) {
    (void)ac;
    pending *p = priv;
    redisReply *rep = r;
    if (rep && rep->type == REDIS_REPLY_INTEGER) {
        g_t.acked++;
        hist_record(&g_t.ack, peer_now_ns() - p->sent_at);
        if ((uint64_t)rep->integer < g_t.receivers + (g_a.shape[0] == 'g')) g_short_publish++;
    } else if (rep) {
        if (g_t.errors++ < 5) fprintf(stderr, "peer-redis: PUBLISH: %s\n", rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
    }
    if (p->c->inflight) p->c->inflight--;
    free(p);
}

static void publish(client *c, uint64_t ts) {
    if (!c->pub) return;
    char body[4096];
    memset(body, 'x', (size_t)g_a.body);
    memcpy(body + 4, &c->index, 4);
    memcpy(body + 8, &ts, 8);
    pending *p = malloc(sizeof *p);
    if (!p) return;
    *p = (pending){c, peer_now_ns()};
    if (redisAsyncCommand(c->pub, on_published, p, "PUBLISH %s %b", c->channel, body, (size_t)g_a.body) != REDIS_OK) {
        free(p);
        g_t.errors++;
        return;
    }
    c->inflight++;
    g_t.sent++;
}

/* the send loop's hooks (peer_send_for) */
static bool room(void *p, uint32_t cap) {
    client *c = p;
    return c->pub && c->inflight < cap;
}
static void send_one(void *p, uint64_t due) { publish(p, due); }
static void turn(uint64_t now, int timeout_ms) {
    (void)now;
    rev_poll(timeout_ms);
}

/* the channel a client publishes to: its group's, or its pair's */
static bool g_group;
static char g_pubname[32];
static const char *pub_channel(long i) {
    if (g_group) return "g0";
    snprintf(g_pubname, sizeof g_pubname, "p%ld", i / 2);
    return g_pubname;
}

static char g_subname[32];
static const char *sub_idle(long i) { snprintf(g_subname, sizeof g_subname, "i%ld", i); return g_subname; }
static const char *sub_group(long i) { (void)i; return "g0"; }
static const char *sub_direct(long i) {   /* even sends, odd receives */
    if (i % 2 == 0) return NULL;
    snprintf(g_subname, sizeof g_subname, "p%ld", i / 2);
    return g_subname;
}

/* connects and subscribes every client (sub may be NULL: no subscription),
 * then waits, bounded, until all are ready or some are lost */
static bool bring_up(client *cs, long n, bool pubs, const char *(*sub_of)(long i)) {
    for (long i = 0; i < n; i++) {
        client *c = &cs[i];
        c->index = (uint32_t)i;
        const char *sub = sub_of(i);
        if (pubs) snprintf(c->channel, sizeof c->channel, "%s", pub_channel(i));
        c->sub = sub ? rev_connect(g_a.port, (uint32_t)(2 * i), c) : NULL;
        c->pub = pubs ? rev_connect(g_a.port, (uint32_t)(2 * i + 1), c) : NULL;
        if ((sub && !c->sub) || (pubs && !c->pub)) return false;
        if (sub) redisAsyncCommand(c->sub, on_message, c, "SUBSCRIBE %s", sub);
        else g_t.ready++;
        if (i % 128 == 127) rev_poll(0);
    }
    uint64_t end = peer_now_ns() + 60000000000ull;
    while (g_t.ready < (uint64_t)n && rev_lost() == 0 && peer_now_ns() < end) rev_poll(50);
    if (g_t.ready < (uint64_t)n || rev_lost()) {
        fprintf(stderr, "peer-redis: %llu of %ld clients ready, %llu connections lost\n",
                (unsigned long long)g_t.ready, n, (unsigned long long)rev_lost());
        return false;
    }
    return true;
}

int main(int argc, char **argv) {
    if (!peer_parse_args(&g_a, argc, argv, "bench-peer-redis", 6379, MIN_BODY)) return 2;
    peer_clamp_counts(&g_a);
    const char *shape = g_a.shape;
    bool idle = !strcmp(shape, "idle"), group = !strcmp(shape, "group");
    g_group = group;
    if (!idle && !group && strcmp(shape, "direct")) {
        fprintf(stderr, "bench-peer-redis: unknown shape %s\n", shape);
        return 2;
    }
    long nclients = idle ? g_a.n : group ? g_a.size : g_a.pairs * 2;
    peer_raise_nofile("peer-redis", idle ? nclients : 2 * nclients);
    rev_init(on_lost);
    peer_tally_init(&g_t);
    g_t.receivers = group ? (uint64_t)g_a.size - 1 : 1;
    client *cs = calloc((size_t)nclients, sizeof *cs);
    if (!cs) return 1;

    if (idle) {   /* N idle subscribed connections: Redis memory per connection */
        long before = g_a.pid ? peer_status_kb(g_a.pid, "VmRSS") : -1;
        uint64_t t0 = peer_now_ns();
        bool ok = bring_up(cs, nclients, false, sub_idle);
        double connect_s = (double)(peer_now_ns() - t0) / 1e9;
        uint64_t settle = peer_now_ns() + 3000000000ull;
        while (ok && peer_now_ns() < settle) rev_poll(100);
        long after = g_a.pid ? peer_status_kb(g_a.pid, "VmRSS") : -1;
        peer_print_held("redis", g_t.ready, connect_s, before, after, g_t.errors);
        fflush(stdout);
        _exit(ok ? 0 : 1);   /* skip closing 19,900 connections one by one */
    }

    if (!bring_up(cs, nclients, true, group ? sub_group : sub_direct)) {
        printf("{\"system\": \"redis\", \"scenario\": \"%s\", \"valid\": false, \"error\": \"not every client connected\"}\n", shape);
        fflush(stdout);
        _exit(1);
    }
    long nsend = 0;
    void **sendv = calloc((size_t)nclients, sizeof *sendv);
    if (!sendv) return 1;
    for (long i = 0; i < nclients; i++) {
        bool s = group ? (g_a.senders < 0 || i < g_a.senders) : i % 2 == 0;
        if (s) sendv[nsend++] = &cs[i];
    }
    double secs = peer_send_for(sendv, nsend, &g_a, 4096, &(peer_sender){room, send_one, turn});
    peer_drain(&g_t, rev_poll);
    bool valid = rev_lost() == 0 && g_short_publish == 0;
    printf("{\"system\": \"redis\", \"scenario\": \"%s\", \"ack\": \"PUBLISH reply\", \"durability\": \"none (pub/sub)\", "
           "\"seconds\": %.3f, \"senders\": %ld, ", shape, secs, nsend);
    peer_print_rates(&g_t, secs, valid);
    printf(", \"short_publishes\": %llu, \"errors\": %llu}\n", (unsigned long long)g_short_publish,
           (unsigned long long)g_t.errors);
    fflush(stdout);
    _exit(valid && peer_run_valid(&g_t) ? 0 : 1);
}
