/* peer_mosquitto.c -- the same shapes as parley-bench direct and group, against
 * mosquitto (MQTT 3.1.1), driven through libmosquitto at QoS 1 on one epoll
 * loop (libmosquitto's non-blocking interface: mosquitto_loop_read/_write on
 * our own epoll, no thread per connection).
 *
 * Each client is one MQTT connection that subscribes (QoS 1) to its topic and
 * publishes (QoS 1) to the topic of its pair or group: one topic per 1:1 pair,
 * one per group. "Ack" is the broker's PUBACK; deliveries are PUBLISHes that
 * reach another client (libmosquitto PUBACKs them to the broker). Nothing is
 * persisted (the script runs mosquitto with `persistence false`) and the
 * sessions are clean.
 *
 *   bench-peer-mosquitto direct --port P --pairs N --window W|--rate R --seconds S
 *   bench-peer-mosquitto group  --port P --size 250 --senders K|all --window W --seconds S
 *   bench-peer-mosquitto idle   --port P --n N --pid MOSQUITTO_PID
 * Prints one JSON object on stdout (the shape of bench-peer-redis's). */
#include <errno.h>
#include <mosquitto.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peer_common.h"
#include "peer_mosq.h"

enum { RING = 1024 };   /* send times by message id; in-flight is kept below this */

typedef struct client {
    mosq_conn mc;       /* first: the loop's part (peer_mosq.h) */
    char topic[24];     /* publishes to */
    char sub[24];       /* subscribes to ("" = none) */
    uint64_t *sent_at;  /* RING entries, senders only */
} client;

static peer_tally g_t;
static peer_args g_a;
static bool g_group;
/* every client, for the send loop's turn(): keepalives go out once a second
 * while it runs, or on a run longer than the 60 s keepalive the broker
 * would drop the clients that only receive */
static client *g_cs;
static long g_ncs;
static uint64_t g_next_misc;

static void on_connect(struct mosquitto *m, void *obj, int rc) {
    client *c = obj;
    if (rc != 0) {
        mosq_mark_dead(&c->mc, MOSQ_ERR_CONN_REFUSED, mosquitto_connack_string(rc));
        return;
    }
    if (c->sub[0]) mosquitto_subscribe(m, NULL, c->sub, 1);
    else {
        c->mc.ready = true;
        g_t.ready++;
    }
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted) {
    (void)m; (void)mid;
    client *c = obj;
    if (n < 1 || granted[0] > 2) {
        mosq_mark_dead(&c->mc, MOSQ_ERR_PROTOCOL, "subscribe refused");
        return;
    }
    if (!c->mc.ready) {
        c->mc.ready = true;
        g_t.ready++;
    }
}

static void on_message(struct mosquitto *m, void *obj, const struct mosquitto_message *msg) {
    (void)m;
    client *c = obj;
    if (msg->payloadlen < 16) return;
    uint32_t sender;
    uint64_t ts;
    memcpy(&sender, (const char *)msg->payload + 4, 4);
    memcpy(&ts, (const char *)msg->payload + 8, 8);
    if (sender == c->mc.index) return;   /* own message (group): not a delivery to another member */
    g_t.delivered++;
    uint64_t now = peer_now_ns();
    if (now > ts) hist_record(&g_t.deliv, now - ts);
}

static void on_publish(struct mosquitto *m, void *obj, int mid) {   /* PUBACK */
    (void)m;
    client *c = obj;
    g_t.acked++;
    if (c->sent_at) hist_record(&g_t.ack, peer_now_ns() - c->sent_at[(unsigned)mid % RING]);
    if (c->mc.inflight) c->mc.inflight--;
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc) {
    (void)m;
    client *c = obj;
    if (rc != 0) mosq_mark_dead(&c->mc, rc, "disconnected");
}

static struct mosquitto *new_client(client *c) {
    char id[48];
    snprintf(id, sizeof id, "pb-%d-%u", (int)getpid(), c->mc.index);
    return mosq_new_quiet(id, true, c);
}

static void connect_one(client *c, int port, uint32_t k) {
    c->mc.fd = -1;
    c->mc.m = new_client(c);
    if (!c->mc.m) {
        fprintf(stderr, "peer-mosquitto: mosquitto_new failed\n");
        exit(1);
    }
    mosquitto_int_option(c->mc.m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_max_inflight_messages_set(c->mc.m, 0);   /* our window governs, not the library's queue */
    mosquitto_connect_callback_set(c->mc.m, on_connect);
    mosquitto_subscribe_callback_set(c->mc.m, on_subscribe);
    mosquitto_message_callback_set(c->mc.m, on_message);
    mosquitto_publish_callback_set(c->mc.m, on_publish);
    mosquitto_disconnect_callback_set(c->mc.m, on_disconnect);
    mosq_connect_from(&c->mc, port, k);
}

static void publish(client *c, uint64_t ts) {
    char body[4096];
    memset(body, 'x', (size_t)g_a.body);
    memcpy(body + 4, &c->mc.index, 4);
    memcpy(body + 8, &ts, 8);
    int mid = 0;
    uint64_t t = peer_now_ns();
    int rc = mosquitto_publish(c->mc.m, &mid, c->topic, g_a.body, body, 1, false);
    if (rc != MOSQ_ERR_SUCCESS) {
        mosq_mark_dead(&c->mc, rc, "publish");
        return;
    }
    c->sent_at[(unsigned)mid % RING] = t;
    c->mc.inflight++;
    g_t.sent++;
    /* mosquitto_publish already tried to write it (non-threaded client, not in
     * a callback); arm EPOLLOUT if that hit a full socket */
    mosq_set_out(&c->mc, mosquitto_want_write(c->mc.m));
}

static void print_json(const char *shape, double secs, long n_senders) {
    printf("{\"system\": \"mosquitto\", \"scenario\": \"%s\", \"qos\": 1, \"durability\": \"none (persistence false; QoS 1 state in memory)\", \"seconds\": %.3f, \"senders\": %ld, ",
           shape, secs, n_senders);
    peer_print_rates(&g_t, secs, true);
    printf(", \"errors\": %llu}\n", (unsigned long long)g_t.errors);
}

/* the send loop's hooks (peer_send_for) */
static bool room(void *p, uint32_t cap) {
    client *c = p;
    return !c->mc.dead && c->mc.inflight < cap;
}
static void send_one(void *p, uint64_t due) { publish(p, due); }
static void turn(uint64_t now, int timeout_ms) {
    mosq_poll_once(timeout_ms);
    if (now > g_next_misc) {
        mosq_misc_all(g_cs, g_ncs, sizeof *g_cs);
        g_next_misc = now + 1000000000ull;
    }
}

/* connect every client, at most `burst` handshakes outstanding; bounded by 60 s */
static void connect_all(client *cs, long n, int port, uint32_t stride) {
    uint64_t end = peer_now_ns() + 60000000000ull;
    long next = 0;
    while ((g_t.ready + g_t.errors < (uint64_t)n) && peer_now_ns() < end) {
        while (next < n && mosq_loop_pending() - g_t.ready - g_t.errors < 256) {
            connect_one(&cs[next], port, (uint32_t)next * stride);
            next++;
        }
        mosq_poll_once(10);
    }
}

int main(int argc, char **argv) {
    if (!peer_parse_args(&g_a, argc, argv, "bench-peer-mosquitto", 1883, 16)) return 2;
    peer_clamp_counts(&g_a);
    if (g_a.window > RING - 24) g_a.window = RING - 24;
    const char *shape = g_a.shape;
    long n = g_a.n;
    peer_raise_nofile("peer-mosquitto", n);
    peer_tally_init(&g_t);
    mosq_loop_init("peer-mosquitto", &g_t);

    if (!strcmp(shape, "idle")) {   /* N idle subscribed connections: broker memory per connection */
        long before = g_a.pid ? peer_status_kb(g_a.pid, "VmRSS") : -1;
        client *cs = calloc((size_t)n, sizeof *cs);
        for (long i = 0; i < n; i++) {
            cs[i].mc.index = (uint32_t)i;
            snprintf(cs[i].sub, sizeof cs[i].sub, "i%ld", i);
        }
        uint64_t t0 = peer_now_ns();
        connect_all(cs, n, g_a.port, 1);
        double connect_s = (double)(peer_now_ns() - t0) / 1e9;
        uint64_t settle = peer_now_ns() + 3000000000ull;
        while (peer_now_ns() < settle) mosq_poll_once(100);
        mosq_misc_all(cs, n, sizeof *cs);
        long after = g_a.pid ? peer_status_kb(g_a.pid, "VmRSS") : -1;
        peer_print_held("mosquitto", g_t.ready, connect_s, before, after, g_t.errors);
        fflush(stdout);
        mosq_reset_all(cs, n, sizeof *cs);
        return 0;
    }

    g_group = !strcmp(shape, "group");
    g_t.receivers = g_group ? (uint64_t)g_a.size - 1 : 1;   /* every other member; the pair's receiver */
    long nclients = g_group ? g_a.size : g_a.pairs * 2;
    client *cs = calloc((size_t)nclients, sizeof *cs);
    for (long i = 0; i < nclients; i++) {
        client *c = &cs[i];
        c->mc.index = (uint32_t)i;
        if (g_group) {
            snprintf(c->topic, sizeof c->topic, "g0");
            snprintf(c->sub, sizeof c->sub, "g0");
        } else {
            snprintf(c->topic, sizeof c->topic, "p%ld", i / 2);
            if (i % 2 == 1) snprintf(c->sub, sizeof c->sub, "p%ld", i / 2);   /* even sends, odd receives */
        }
    }
    connect_all(cs, nclients, g_a.port, 1);
    if (g_t.ready < (uint64_t)nclients)
        fprintf(stderr, "peer-mosquitto: only %llu of %ld clients ready\n", (unsigned long long)g_t.ready, nclients);
    long nsend = 0;
    void **sendv = calloc((size_t)nclients, sizeof *sendv);
    for (long i = 0; i < nclients; i++) {
        bool s = g_group ? (g_a.senders < 0 || i < g_a.senders) : i % 2 == 0;
        if (s && !cs[i].mc.dead) {
            sendv[nsend++] = &cs[i];
            cs[i].sent_at = calloc(RING, sizeof(uint64_t));
        }
    }
    if (nsend == 0) {
        fprintf(stderr, "peer-mosquitto: no sender connected\n");
        return 1;
    }
    g_cs = cs;
    g_ncs = nclients;
    g_next_misc = peer_now_ns() + 1000000000ull;
    double secs = peer_send_for(sendv, nsend, &g_a, RING - 24, &(peer_sender){room, send_one, turn});
    peer_drain(&g_t, mosq_poll_once);   /* let the acks in flight land, bounded */
    print_json(g_group ? "group" : "direct", secs, nsend);
    fflush(stdout);
    mosq_reset_all(cs, nclients, sizeof *cs);
    return 0;
}
