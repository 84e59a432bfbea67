/* peer_redis_streams.c -- the shapes of parley-bench direct, group and live
 * against Redis Streams, the durable way to carry messages in Redis: run with
 * `appendonly yes` and `appendfsync always` (or `everysec`); the driver reads
 * both back with CONFIG GET and prints them as the run's durability.
 *
 * "Ack" is the XADD reply: with appendfsync always Redis writes and fsyncs
 * the append-only file before it answers (everysec: written, fsynced within
 * a second). Deliveries are entries read back by blocking XREADs, one reader
 * connection per receiving client, each from the start of a fresh stream:
 *   direct: one stream per pair, read by the pair's receiver;
 *   group:  one stream, read by every member, which skips its own entries.
 * Streams are capped (MAXLEN ~ 100000) so that a run's memory is bounded.
 *
 *   bench-peer-redis-streams direct --port P --pairs N --window W|--rate R --seconds S
 *   bench-peer-redis-streams group  --port P --size 250 --senders K|all --window W|--rate R --seconds S
 *   bench-peer-redis-streams live   --port P --size 250 --rate 1000 --seconds S
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

enum { MIN_BODY = 24, READ_COUNT = 1000 };

typedef struct client {
    redisAsyncContext *pub, *reader;   /* NULL once lost (or not used) */
    char stream[48];                   /* appends to */
    char read_stream[48];              /* reads from ("" = none) */
    char last_id[48];                  /* last entry read */
    uint32_t inflight, index;
} client;

static peer_tally g_t;
static peer_args g_a;
static bool g_group;
static char g_appendonly[16] = "?", g_appendfsync[16] = "?";
static int g_config_replies;

static void on_lost(void *owner) {
    client *c = owner;
    g_t.errors++;
    if (c) c->pub = c->reader = NULL;
}

static void on_read(redisAsyncContext *ac, void *r, void *priv);

static void read_next(client *c) {
    if (!c->reader) return;
    redisAsyncCommand(c->reader, on_read, c, "XREAD COUNT %d BLOCK 0 STREAMS %s %s", READ_COUNT, c->read_stream,
                      c->last_id);
}

/* [[stream, [[id, [field, value]], ...]]] */
static void on_read(redisAsyncContext *ac, void *r, void *priv) {
    (void)ac;
    client *c = priv;
    redisReply *rep = r;
    if (!rep) return;   /* connection gone: on_lost */
    if (rep->type == REDIS_REPLY_ARRAY && rep->elements == 1 && rep->element[0]->type == REDIS_REPLY_ARRAY &&
        rep->element[0]->elements == 2 && rep->element[0]->element[1]->type == REDIS_REPLY_ARRAY) {
        redisReply *entries = rep->element[0]->element[1];
        uint64_t now = peer_now_ns();
        for (size_t i = 0; i < entries->elements; i++) {
            redisReply *e = entries->element[i];
            if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 || e->element[0]->type != REDIS_REPLY_STRING) continue;
            snprintf(c->last_id, sizeof c->last_id, "%s", e->element[0]->str);
            redisReply *fv = e->element[1];
            if (fv->type != REDIS_REPLY_ARRAY || fv->elements != 2 || fv->element[1]->type != REDIS_REPLY_STRING ||
                fv->element[1]->len < MIN_BODY)
                continue;
            uint32_t sender;
            uint64_t ts;
            memcpy(&sender, fv->element[1]->str + 4, 4);
            memcpy(&ts, fv->element[1]->str + 8, 8);
            if (sender == c->index) continue;   /* own entry (group): not a delivery to another member */
            g_t.delivered++;
            if (now > ts) hist_record(&g_t.deliv, now - ts);
        }
    } else if (rep->type == REDIS_REPLY_ERROR) {
        if (g_t.errors++ < 5) fprintf(stderr, "peer-redis-streams: XREAD: %s\n", rep->str);
        return;
    }
    read_next(c);
}

typedef struct pending {
    client *c;
    uint64_t sent_at;
} pending;

static void on_added(redisAsyncContext *ac, void *r, void *priv) {
    (void)ac;
    pending *p = priv;
    redisReply *rep = r;
    if (p->c->inflight) p->c->inflight--;
    if (rep && rep->type == REDIS_REPLY_STRING) {   /* the new entry's id */
        g_t.acked++;
        hist_record(&g_t.ack, peer_now_ns() - p->sent_at);
    } else if (rep && g_t.errors++ < 5) {
        fprintf(stderr, "peer-redis-streams: XADD: %s\n", rep->type == REDIS_REPLY_ERROR ? rep->str : "unexpected reply");
    }
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
    if (redisAsyncCommand(c->pub, on_added, p, "XADD %s MAXLEN ~ 100000 * d %b", c->stream, body,
                          (size_t)g_a.body) != REDIS_OK) {
        free(p);
        g_t.errors++;
        return;
    }
    c->inflight++;
    g_t.sent++;
}

static void on_config(redisAsyncContext *ac, void *r, void *priv) {
    (void)ac;
    redisReply *rep = r;
    if (rep && rep->type == REDIS_REPLY_ARRAY && rep->elements == 2 && rep->element[1]->type == REDIS_REPLY_STRING)
        snprintf(priv, 16, "%s", rep->element[1]->str);
    g_config_replies++;
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

static void fail(const char *why) {
    printf("{\"system\": \"redis-streams\", \"scenario\": \"%s\", \"valid\": false, \"error\": \"%s\"}\n", g_a.shape, why);
    fflush(stdout);
    _exit(1);
}

int main(int argc, char **argv) {
    if (!peer_parse_args(&g_a, argc, argv, "bench-peer-redis-streams", 6379, MIN_BODY)) return 2;
    peer_clamp_counts(&g_a);
    g_group = !strcmp(g_a.shape, "group");
    if (!g_group && strcmp(g_a.shape, "direct")) {
        fprintf(stderr, "bench-peer-redis-streams: shape %s does not apply (direct, group, live)\n", g_a.shape);
        return 2;
    }
    long nclients = g_group ? g_a.size : g_a.pairs * 2;
    peer_raise_nofile("peer-redis-streams", 2 * nclients);
    rev_init(on_lost);
    peer_tally_init(&g_t);
    g_t.receivers = g_group ? (uint64_t)g_a.size - 1 : 1;
    client *cs = calloc((size_t)nclients, sizeof *cs);
    void **sendv = calloc((size_t)nclients, sizeof *sendv);
    if (!cs || !sendv) return 1;
    /* fresh stream names per run: readers start from 0-0, so none misses an
     * entry added before its first XREAD reached Redis */
    unsigned run = (unsigned)getpid();
    long conns = 0, nsend = 0;
    for (long i = 0; i < nclients; i++) {
        client *c = &cs[i];
        c->index = (uint32_t)i;
        bool sender = g_group ? (g_a.senders < 0 || i < g_a.senders) : i % 2 == 0;
        bool reader = g_group || i % 2 == 1;
        if (g_group) snprintf(c->stream, sizeof c->stream, "pb:%u:g0", run);
        else snprintf(c->stream, sizeof c->stream, "pb:%u:p%ld", run, i / 2);
        if (sender) {
            if (!(c->pub = rev_connect(g_a.port, (uint32_t)(2 * i), c))) fail("connect");
            sendv[nsend++] = c;
            conns++;
        }
        if (reader) {
            snprintf(c->read_stream, sizeof c->read_stream, "%s", c->stream);
            snprintf(c->last_id, sizeof c->last_id, "0-0");
            if (!(c->reader = rev_connect(g_a.port, (uint32_t)(2 * i + 1), c))) fail("connect");
            conns++;
        }
        if (i % 128 == 127) rev_poll(0);
    }
    uint64_t end = peer_now_ns() + 60000000000ull;
    while (rev_connected() < (uint64_t)conns && rev_lost() == 0 && peer_now_ns() < end) rev_poll(50);
    if (rev_connected() < (uint64_t)conns || rev_lost()) fail("not every connection came up");
    /* the durability this server actually runs with */
    if (nsend == 0) fail("no sender");
    redisAsyncContext *first = ((client *)sendv[0])->pub;
    redisAsyncCommand(first, on_config, g_appendonly, "CONFIG GET appendonly");
    redisAsyncCommand(first, on_config, g_appendfsync, "CONFIG GET appendfsync");
    while (g_config_replies < 2 && peer_now_ns() < end) rev_poll(50);
    for (long i = 0; i < nclients; i++)
        if (cs[i].reader) read_next(&cs[i]);
    double secs = peer_send_for(sendv, nsend, &g_a, 4096, &(peer_sender){room, send_one, turn});
    peer_drain(&g_t, rev_poll);
    bool ok = rev_lost() == 0;
    printf("{\"system\": \"redis-streams\", \"scenario\": \"%s\", \"ack\": \"XADD reply\", "
           "\"durability\": \"Redis Streams, appendonly %s, appendfsync %s\", \"seconds\": %.3f, \"senders\": %ld, ",
           g_a.shape, g_appendonly, g_appendfsync, secs, nsend);
    peer_print_rates(&g_t, secs, ok);
    printf(", \"errors\": %llu}\n", (unsigned long long)g_t.errors);
    fflush(stdout);
    _exit(ok && peer_run_valid(&g_t) ? 0 : 1);
}
