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

enum { RING = 1024 };   /* send times by message id; in-flight is kept below this */

typedef struct client {
    struct mosquitto *m;
    int fd;
    bool out_armed, dead, ready;
    uint32_t index, inflight;
    char topic[24];     /* publishes to */
    char sub[24];       /* subscribes to ("" = none) */
    uint64_t *sent_at;  /* RING entries, senders only */
} client;

static int g_ep;
static peer_tally g_t;
static uint64_t g_pending;   /* connects begun */
static peer_args g_a;
static bool g_group;
/* every client, for the send loop's turn(): keepalives go out once a second
 * while it runs, or on a run longer than the 60 s keepalive the broker
 * would drop the clients that only receive */
static client *g_cs;
static long g_ncs;
static uint64_t g_next_misc;

static void set_out(client *c, bool want) {
    if (c->dead || c->fd < 0 || want == c->out_armed) return;
    c->out_armed = want;
    struct epoll_event x = {.events = EPOLLIN | (want ? EPOLLOUT : 0u), .data.ptr = c};
    epoll_ctl(g_ep, EPOLL_CTL_MOD, c->fd, &x);
}

static void mark_dead(client *c, int rc, const char *where) {
    if (c->dead) return;
    c->dead = true;
    g_t.errors++;
    if (g_t.errors <= 5)
        fprintf(stderr, "peer-mosquitto: client %u: %s: %s\n", c->index, where, mosquitto_strerror(rc));
}

/* write what libmosquitto has queued; arm EPOLLOUT only if the socket is full */
static void flush(client *c) {
    if (c->dead) return;
    if (mosquitto_want_write(c->m)) {
        int rc = mosquitto_loop_write(c->m, 1);
        if (rc != MOSQ_ERR_SUCCESS) {
            mark_dead(c, rc, "write");
            return;
        }
    }
    set_out(c, mosquitto_want_write(c->m));
}

static void on_connect(struct mosquitto *m, void *obj, int rc) {
    client *c = obj;
    if (rc != 0) {
        mark_dead(c, MOSQ_ERR_CONN_REFUSED, mosquitto_connack_string(rc));
        return;
    }
    if (c->sub[0]) mosquitto_subscribe(m, NULL, c->sub, 1);
    else {
        c->ready = true;
        g_t.ready++;
    }
}

static void on_subscribe(struct mosquitto *m, void *obj, int mid, int n, const int *granted) {
    (void)m; (void)mid;
    client *c = obj;
    if (n < 1 || granted[0] > 2) {
        mark_dead(c, MOSQ_ERR_PROTOCOL, "subscribe refused");
        return;
    }
    if (!c->ready) {
        c->ready = true;
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
    if (sender == c->index) return;   /* own message (group): not a delivery to another member */
    g_t.delivered++;
    uint64_t now = peer_now_ns();
    if (now > ts) hist_record(&g_t.deliv, now - ts);
}

static void on_publish(struct mosquitto *m, void *obj, int mid) {   /* PUBACK */
    (void)m;
    client *c = obj;
    g_t.acked++;
    if (c->sent_at) hist_record(&g_t.ack, peer_now_ns() - c->sent_at[(unsigned)mid % RING]);
    if (c->inflight) c->inflight--;
}

static void on_disconnect(struct mosquitto *m, void *obj, int rc) {
    (void)m;
    client *c = obj;
    if (rc != 0) mark_dead(c, rc, "disconnected");
}

/* libmosquitto opens a socketpair per client (to wake its own select loop);
 * we never use that loop, and 19,900 clients x 3 descriptors would not fit in
 * the 20,000 open-file limit. Creating the client while no descriptor can be
 * opened makes libmosquitto go without it (it only warns). */
static struct mosquitto *new_client(client *c) {
    struct rlimit rl, zero;
    getrlimit(RLIMIT_NOFILE, &rl);
    zero = rl;
    zero.rlim_cur = 0;
    setrlimit(RLIMIT_NOFILE, &zero);
    char id[48];
    snprintf(id, sizeof id, "pb-%d-%u", (int)getpid(), c->index);
    struct mosquitto *m = mosquitto_new(id, true, c);
    setrlimit(RLIMIT_NOFILE, &rl);
    return m;
}

static void connect_one(client *c, int port, uint32_t k) {
    char src[32];
    peer_src_str(src, sizeof src, k);
    c->fd = -1;
    c->m = new_client(c);
    if (!c->m) {
        fprintf(stderr, "peer-mosquitto: mosquitto_new failed\n");
        exit(1);
    }
    mosquitto_int_option(c->m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_max_inflight_messages_set(c->m, 0);   /* our window governs, not the library's queue */
    mosquitto_connect_callback_set(c->m, on_connect);
    mosquitto_subscribe_callback_set(c->m, on_subscribe);
    mosquitto_message_callback_set(c->m, on_message);
    mosquitto_publish_callback_set(c->m, on_publish);
    mosquitto_disconnect_callback_set(c->m, on_disconnect);
    int rc = mosquitto_connect_bind_async(c->m, "127.0.0.1", port, 60, src);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "peer-mosquitto: connect from %s: %s (%s)\n", src, mosquitto_strerror(rc), strerror(errno));
        exit(1);
    }
    c->fd = mosquitto_socket(c->m);
    c->out_armed = true;   /* until the TCP connect completes and CONNECT is written */
    struct epoll_event x = {.events = EPOLLIN | EPOLLOUT, .data.ptr = c};
    epoll_ctl(g_ep, EPOLL_CTL_ADD, c->fd, &x);
    g_pending++;
}

/* libmosquitto's loop_read reads at most as many packets as the client has
 * QoS 1 messages in flight (at least one), so a client that only receives
 * got one packet per epoll turn however many the server had queued for it:
 * its deliveries fell behind the senders' acks. Read on while the socket
 * has bytes waiting, at most READS_PER_TURN times (one busy client does not
 * hold the loop). */
enum { READS_PER_TURN = 64 };
static int read_waiting(client *c) {
    int rc = MOSQ_ERR_SUCCESS;
    for (int i = 0; i < READS_PER_TURN; i++) {
        rc = mosquitto_loop_read(c->m, 1);
        int waiting = 0;
        if (rc != MOSQ_ERR_SUCCESS || ioctl(c->fd, FIONREAD, &waiting) != 0 || waiting <= 0) break;
    }
    return rc;
}

static void poll_once(int timeout_ms) {
    struct epoll_event evs[512];
    int n = epoll_wait(g_ep, evs, 512, timeout_ms);
    for (int i = 0; i < n; i++) {
        client *c = evs[i].data.ptr;
        if (c->dead) continue;
        if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
            int rc = read_waiting(c);
            if (rc != MOSQ_ERR_SUCCESS) {
                mark_dead(c, rc, "read");
                continue;
            }
        }
        flush(c);   /* what the callbacks queued (SUBSCRIBE, PUBACKs), or EPOLLOUT */
    }
}

static void misc_all(client *cs, long n) {   /* keepalive pings */
    for (long i = 0; i < n; i++)
        if (!cs[i].dead && cs[i].m) {
            mosquitto_loop_misc(cs[i].m);
            flush(&cs[i]);
        }
}

static void publish(client *c, uint64_t ts) {
    char body[4096];
    memset(body, 'x', (size_t)g_a.body);
    memcpy(body + 4, &c->index, 4);
    memcpy(body + 8, &ts, 8);
    int mid = 0;
    uint64_t t = peer_now_ns();
    int rc = mosquitto_publish(c->m, &mid, c->topic, g_a.body, body, 1, false);
    if (rc != MOSQ_ERR_SUCCESS) {
        mark_dead(c, rc, "publish");
        return;
    }
    c->sent_at[(unsigned)mid % RING] = t;
    c->inflight++;
    g_t.sent++;
    /* mosquitto_publish already tried to write it (non-threaded client, not in
     * a callback); arm EPOLLOUT if that hit a full socket */
    set_out(c, mosquitto_want_write(c->m));
}

/* at exit: reset instead of FIN, so that the 19,900 ports bound to 127.x.y.z
 * sources do not sit in TIME_WAIT for a minute (a bound port in TIME_WAIT is
 * skipped by every other process's automatic port choice) */
static void reset_all(client *cs, long n) {
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    for (long i = 0; i < n; i++)
        if (cs[i].m && mosquitto_socket(cs[i].m) >= 0)
            setsockopt(mosquitto_socket(cs[i].m), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
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
    return !c->dead && c->inflight < cap;
}
static void send_one(void *p, uint64_t due) { publish(p, due); }
static void turn(uint64_t now, int timeout_ms) {
    poll_once(timeout_ms);
    if (now > g_next_misc) {
        misc_all(g_cs, g_ncs);
        g_next_misc = now + 1000000000ull;
    }
}

/* connect every client, at most `burst` handshakes outstanding; bounded by 60 s */
static void connect_all(client *cs, long n, int port, uint32_t stride) {
    uint64_t end = peer_now_ns() + 60000000000ull;
    long next = 0;
    while ((g_t.ready + g_t.errors < (uint64_t)n) && peer_now_ns() < end) {
        while (next < n && g_pending - g_t.ready - g_t.errors < 256) {
            connect_one(&cs[next], port, (uint32_t)next * stride);
            next++;
        }
        poll_once(10);
    }
}

int main(int argc, char **argv) {
    if (!peer_parse_args(&g_a, argc, argv, "bench-peer-mosquitto", 1883, 16)) return 2;
    peer_clamp_counts(&g_a);
    if (g_a.window > RING - 24) g_a.window = RING - 24;
    const char *shape = g_a.shape;
    long n = g_a.n;
    peer_raise_nofile("peer-mosquitto", n);
    mosquitto_lib_init();
    g_ep = epoll_create1(0);
    peer_tally_init(&g_t);

    if (!strcmp(shape, "idle")) {   /* N idle subscribed connections: broker memory per connection */
        long before = g_a.pid ? peer_status_kb(g_a.pid, "VmRSS") : -1;
        client *cs = calloc((size_t)n, sizeof *cs);
        for (long i = 0; i < n; i++) {
            cs[i].index = (uint32_t)i;
            snprintf(cs[i].sub, sizeof cs[i].sub, "i%ld", i);
        }
        uint64_t t0 = peer_now_ns();
        connect_all(cs, n, g_a.port, 1);
        double connect_s = (double)(peer_now_ns() - t0) / 1e9;
        uint64_t settle = peer_now_ns() + 3000000000ull;
        while (peer_now_ns() < settle) poll_once(100);
        misc_all(cs, n);
        long after = g_a.pid ? peer_status_kb(g_a.pid, "VmRSS") : -1;
        peer_print_held("mosquitto", g_t.ready, connect_s, before, after, g_t.errors);
        fflush(stdout);
        reset_all(cs, n);
        return 0;
    }

    g_group = !strcmp(shape, "group");
    g_t.receivers = g_group ? (uint64_t)g_a.size - 1 : 1;   /* every other member; the pair's receiver */
    long nclients = g_group ? g_a.size : g_a.pairs * 2;
    client *cs = calloc((size_t)nclients, sizeof *cs);
    for (long i = 0; i < nclients; i++) {
        client *c = &cs[i];
        c->index = (uint32_t)i;
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
        if (s && !cs[i].dead) {
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
    peer_drain(&g_t, poll_once);   /* let the acks in flight land, bounded */
    print_json(g_group ? "group" : "direct", secs, nsend);
    fflush(stdout);
    reset_all(cs, nclients);
    return 0;
}
