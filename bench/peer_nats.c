/* peer_nats.c -- the same shapes as parley-bench direct and group, against
 * nats-server (core NATS, no JetStream), driven through libnats (the NATS C
 * client) attached to one epoll loop of ours (natsOptions_SetEventLoop: no
 * read or flusher thread per connection; synchronous subscriptions drained
 * after each read).
 *
 * Each client is one NATS connection; one subject per 1:1 pair and one per
 * group. Core NATS has no publish acknowledgement, so "ack" here is the first
 * sign that the server routed the message:
 *   direct: the delivery to the other client of the pair (send->ack equals
 *           send->delivery; the window of 8 is 8 messages not yet delivered);
 *   group:  the sender's own copy coming back (every member, the sender too,
 *           subscribes to the group subject; NATS echoes by default).
 * Nothing is persisted and there are no cursors.
 *
 * With --jetstream 1 (nats-server run with -js) the same shapes go through
 * JetStream instead: one stream on file storage over the publish subjects
 * (made by peer_nats_js.c), each publish carries a reply subject and "ack"
 * is JetStream's PubAck (the message is stored in the stream's file), and
 * each receiving client gets its messages from a push consumer of its own
 * (pair or group subject, AckNone) on a deliver subject it subscribes to,
 * i.e. from the stream, not from the publish.
 *
 *   bench-peer-nats direct --port P --pairs N --window W|--rate R --seconds S
 *   bench-peer-nats group  --port P --size 250 --senders K|all --window W --seconds S
 *   bench-peer-nats idle   --port P --n N --pid NATS_SERVER_PID
 * Prints one JSON object on stdout (the shape of bench-peer-redis's). */
#include <errno.h>
#include <arpa/inet.h>
#include <nats/nats.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "peer_common.h"
#include "peer_nats_js.h"

enum { JS_RING = 8192 };   /* send times awaiting their PubAck, per client (in-flight stays below) */

typedef struct client {
    natsConnection *nc;
    natsSubscription *sub;
    int fd;
    uint32_t mask;          /* epoll events registered */
    bool added, in_on, want_out, out_armed, queued, dead, ready;
    uint32_t index, inflight;
    char subject[40];       /* publishes to */
    /* JetStream: PubAcks come back on ack_sub, in publish order */
    natsSubscription *ack_sub;
    char ack_subject[40];
    uint64_t *sent_ring;
    uint32_t ring_head, ring_len;
} client;

static int g_ep;
static peer_tally g_t;
static atomic_ullong g_async_errors;
static peer_args g_a;
static bool g_group;
static bool g_js;           /* --jetstream 1 */
static uint64_t g_js_errors;   /* PubAcks that carry an error */
static client *g_clients, *g_attaching;
static long g_nclients;
static client **g_wq;       /* clients whose libnats write buffer has bytes */
static long g_wq_len;

/* libnats has no option for the local address, and connect()'s automatic
 * port choice skips every port that some socket holds by bind() (the other
 * drivers' and parley-bench's, TIME_WAIT included), so 19,900 connections
 * from 127.0.0.1 can run out of ports. This connect(), which libnats calls
 * through the PLT, first binds each loopback socket to its own 127.x.y.z
 * source (as bench-peer-redis does), with the port chosen at connect time. */
static uint32_t g_src_next;
int connect(int fd, __CONST_SOCKADDR_ARG addr, socklen_t len) {
    const struct sockaddr *sa = addr.__sockaddr__;
    if (sa && sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;
        if ((ntohl(in->sin_addr.s_addr) >> 24) == 127) {
            struct sockaddr_in src = {.sin_family = AF_INET};
            src.sin_addr.s_addr = htonl(peer_src_ip(g_src_next++));
            int one = 1;
            setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
            (void)bind(fd, (const struct sockaddr *)&src, sizeof src);   /* best effort */
        }
    }
    return (int)syscall(SYS_connect, fd, sa, len);
}

static void set_events(client *c) {
    if (c->fd < 0) return;
    uint32_t mask = (c->in_on ? EPOLLIN : 0u) | (c->out_armed ? EPOLLOUT : 0u);
    if (c->added && mask == c->mask) return;
    struct epoll_event x = {.events = mask, .data.ptr = c};
    epoll_ctl(g_ep, c->added ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &x);
    c->added = true;
    c->mask = mask;
}

/* ---- libnats event-loop callbacks (all on our one thread) ---- */
static natsStatus ev_attach(void **user, void *loop, natsConnection *nc, natsSock sock) {
    (void)loop; (void)nc;
    client *c = *user ? *user : g_attaching;
    if (!c) return NATS_ERR;
    c->fd = sock;
    c->added = false;
    c->in_on = true;
    set_events(c);
    *user = c;
    return NATS_OK;
}
static natsStatus ev_read(void *user, bool add) {
    client *c = user;
    c->in_on = add;
    set_events(c);
    return NATS_OK;
}
static natsStatus ev_write(void *user, bool add) {
    client *c = user;
    c->want_out = add;
    if (add && !c->queued) {   /* written at the end of this loop turn, EPOLLOUT only if the socket is full */
        c->queued = true;
        g_wq[g_wq_len++] = c;
    } else if (!add && c->out_armed) {
        c->out_armed = false;
        set_events(c);
    }
    return NATS_OK;
}
static natsStatus ev_detach(void *user) {
    client *c = user;
    if (c->added) epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, NULL);
    c->added = false;
    c->fd = -1;
    if (!c->dead) {
        c->dead = true;
        g_t.errors++;
    }
    return NATS_OK;
}

static void on_async_error(natsConnection *nc, natsSubscription *sub, natsStatus err, void *closure) {
    (void)nc; (void)sub; (void)closure;
    if (atomic_fetch_add(&g_async_errors, 1) < 5)
        fprintf(stderr, "peer-nats: async error: %s\n", natsStatus_GetText(err));
}

static void flush_writes(void) {
    for (long i = 0; i < g_wq_len; i++) {   /* g_wq may grow while this runs */
        client *c = g_wq[i];
        c->queued = false;
        if (c->dead || !c->want_out) continue;
        natsConnection_ProcessWriteEvent(c->nc);
        if (c->want_out && !c->out_armed) {
            c->out_armed = true;
            set_events(c);
        }
    }
    g_wq_len = 0;
}

static void on_msg(client *c, natsMsg *m) {
    const char *d = natsMsg_GetData(m);
    int len = natsMsg_GetDataLength(m);
    if (len < 16) {   /* readiness probe: our SUB is registered */
        if (!c->ready) {
            c->ready = true;
            g_t.ready++;
        }
        return;
    }
    uint32_t sender;
    uint64_t ts, sent;
    memcpy(&sender, d + 4, 4);
    memcpy(&ts, d + 8, 8);
    memcpy(&sent, d + 16, 8);
    uint64_t now = peer_now_ns();
    client *s = sender < (uint32_t)g_nclients ? &g_clients[sender] : NULL;
    if (g_js && sender == c->index) return;   /* own copy from the stream: not a delivery, not the ack */
    if (sender == c->index) {   /* own copy (group): the server routed it */
        g_t.acked++;
        hist_record(&g_t.ack, now - sent);
        if (c->inflight) c->inflight--;
        return;
    }
    g_t.delivered++;
    if (now > ts) hist_record(&g_t.deliv, now - ts);
    if (!g_group && !g_js && s) {   /* direct: the delivery is the ack */
        g_t.acked++;
        hist_record(&g_t.ack, now - sent);
        if (s->inflight) s->inflight--;
    }
}

/* JetStream's PubAck: {"stream":..,"seq":..} or {"error":..}; the send it
 * answers is the oldest in the client's ring */
static void on_puback(client *c, natsMsg *m) {
    const char *d = natsMsg_GetData(m);
    int len = natsMsg_GetDataLength(m);
    if (len < 16) {   /* readiness probe */
        if (!c->ready) {
            c->ready = true;
            g_t.ready++;
        }
        return;
    }
    if (c->ring_len == 0) return;
    uint64_t sent = c->sent_ring[c->ring_head];
    c->ring_head = (c->ring_head + 1) % JS_RING;
    c->ring_len--;
    if (c->inflight) c->inflight--;
    if (memmem(d, (size_t)len, "\"error\"", 7)) {
        if (g_js_errors++ < 5) fprintf(stderr, "peer-nats: PubAck: %.*s\n", len, d);
        return;
    }
    g_t.acked++;
    hist_record(&g_t.ack, peer_now_ns() - sent);
}

static void drain_one(client *c, natsSubscription *sub, void (*fn)(client *, natsMsg *)) {
    if (!sub || c->dead) return;
    int msgs = 0, bytes = 0;
    if (natsSubscription_GetPending(sub, &msgs, &bytes) != NATS_OK) return;
    for (int i = 0; i < msgs; i++) {
        natsMsg *m = NULL;
        if (natsSubscription_NextMsg(&m, sub, 0) != NATS_OK) break;
        fn(c, m);
        natsMsg_Destroy(m);
    }
}

static void drain_sub(client *c) {
    drain_one(c, c->sub, on_msg);
    drain_one(c, c->ack_sub, on_puback);
}

static void poll_once(int timeout_ms) {
    flush_writes();
    struct epoll_event evs[512];
    int n = epoll_wait(g_ep, evs, 512, timeout_ms);
    for (int i = 0; i < n; i++) {
        client *c = evs[i].data.ptr;
        if (c->dead) continue;
        if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
            natsConnection_ProcessReadEvent(c->nc);
            drain_sub(c);
        }
        if (!c->dead && (evs[i].events & EPOLLOUT)) natsConnection_ProcessWriteEvent(c->nc);
    }
    flush_writes();
}

static natsOptions *make_opts(int port, int iobuf) {
    natsOptions *o = NULL;
    char url[64];
    snprintf(url, sizeof url, "nats://127.0.0.1:%d", port);
    if (natsOptions_Create(&o) != NATS_OK) return NULL;
    natsOptions_SetURL(o, url);
    natsOptions_SetEventLoop(o, &g_ep, ev_attach, ev_read, ev_write, ev_detach);
    natsOptions_SetSendAsap(o, true);   /* no flusher thread; our loop writes */
    natsOptions_SetAllowReconnect(o, false);
    natsOptions_SetTimeout(o, 10000);
    /* no ping timer: libnats keeps its timers in one sorted list, so 19,900
     * of them make each connect O(n); the runs last seconds, the default
     * interval is 2 minutes, so no ping would be sent anyway */
    natsOptions_SetPingInterval(o, 0);
    natsOptions_SetMaxPendingMsgs(o, 1000000);
    natsOptions_SetErrorHandler(o, on_async_error, NULL);
    if (iobuf) natsOptions_SetIOBufSize(o, iobuf);
    return o;
}

/* connect (libnats does the handshake synchronously), subscribe, and send a
 * probe to our own subject: it comes back once the server has our SUB */
static void connect_one(client *c, natsOptions *o, const char *sub_subject) {
    c->fd = -1;
    g_attaching = c;
    natsStatus s = natsConnection_Connect(&c->nc, o);
    g_attaching = NULL;
    if (s != NATS_OK) {
        if (g_t.errors++ < 5) fprintf(stderr, "peer-nats: connect %u: %s\n", c->index, nats_GetLastError(NULL));
        c->dead = true;
        return;
    }
    if (c->ack_subject[0]) {   /* JetStream sender: its PubAcks come here */
        s = natsConnection_SubscribeSync(&c->ack_sub, c->nc, c->ack_subject);
        if (s == NATS_OK) s = natsSubscription_SetPendingLimits(c->ack_sub, -1, -1);
        c->sent_ring = calloc(JS_RING, sizeof *c->sent_ring);
        if (s != NATS_OK || !c->sent_ring) {
            if (g_t.errors++ < 5) fprintf(stderr, "peer-nats: subscribe %u: %s\n", c->index, nats_GetLastError(NULL));
            c->dead = true;
            return;
        }
        if (!sub_subject) {   /* the probe comes back on the ack subscription */
            if (natsConnection_Publish(c->nc, c->ack_subject, "probe", 5) != NATS_OK) c->dead = true;
            return;
        }
    }
    if (!sub_subject) {
        c->ready = true;
        g_t.ready++;
        return;
    }
    s = natsConnection_SubscribeSync(&c->sub, c->nc, sub_subject);
    if (s == NATS_OK) s = natsSubscription_SetPendingLimits(c->sub, -1, -1);
    if (s == NATS_OK) s = natsConnection_Publish(c->nc, sub_subject, "probe", 5);
    if (s != NATS_OK) {
        if (g_t.errors++ < 5) fprintf(stderr, "peer-nats: subscribe %u: %s\n", c->index, nats_GetLastError(NULL));
        c->dead = true;
    }
}

static void publish(client *c, uint64_t ts) {
    char body[4096];
    memset(body, 'x', (size_t)g_a.body);
    uint64_t sent = peer_now_ns();
    memcpy(body + 4, &c->index, 4);
    memcpy(body + 8, &ts, 8);
    memcpy(body + 16, &sent, 8);
    natsStatus s = g_js ? natsConnection_PublishRequest(c->nc, c->subject, c->ack_subject, body, g_a.body)
                        : natsConnection_Publish(c->nc, c->subject, body, g_a.body);
    if (s != NATS_OK) {
        if (!c->dead) {
            c->dead = true;
            g_t.errors++;
        }
        return;
    }
    if (g_js) {
        c->sent_ring[(c->ring_head + c->ring_len) % JS_RING] = sent;
        c->ring_len++;
    }
    c->inflight++;
    g_t.sent++;
}

static void print_json(const char *shape, double secs, long n_senders) {
    printf("{\"system\": \"%s\", \"scenario\": \"%s\", \"ack\": \"%s\", \"durability\": \"%s\", "
           "\"seconds\": %.3f, \"senders\": %ld, ", g_js ? "nats-jetstream" : "nats", shape,
           g_js ? "JetStream PubAck" : g_group ? "own copy back" : "delivery to the peer",
           g_js ? "JetStream, file storage, 1 replica: the PubAck follows the write to the stream's file "
                  "(not fsynced: nats-server syncs file-store data every sync_interval, default 2 min)"
                : "none (core NATS)",
           secs, n_senders);
    peer_print_rates(&g_t, secs, g_js_errors == 0);
    printf(", \"errors\": %llu, \"puback_errors\": %llu}\n", (unsigned long long)(g_t.errors + atomic_load(&g_async_errors)),
           (unsigned long long)g_js_errors);
}

/* the send loop's hooks (peer_send_for) */
static bool room(void *p, uint32_t cap) {
    client *c = p;
    return !c->dead && c->inflight < cap;
}
static void send_one(void *p, uint64_t due) { publish(p, due); }
static void turn(uint64_t now, int timeout_ms) {
    (void)now;
    poll_once(timeout_ms);
}

int main(int argc, char **argv) {
    if (!peer_parse_args(&g_a, argc, argv, "bench-peer-nats", 4222, 24)) return 2;
    peer_clamp_counts(&g_a);
    const char *shape = g_a.shape;
    for (int i = 2; i + 1 < argc; i += 2)
        if (!strcmp(argv[i], "--jetstream")) g_js = atoi(argv[i + 1]) != 0;
    peer_raise_nofile("peer-nats", g_a.n);
    if (nats_Open(-1) != NATS_OK) {
        fprintf(stderr, "peer-nats: nats_Open failed\n");
        return 1;
    }
    g_ep = epoll_create1(0);
    peer_tally_init(&g_t);
    bool idle = !strcmp(shape, "idle");
    g_group = !strcmp(shape, "group");
    g_t.receivers = g_group ? (uint64_t)g_a.size - 1 : 1;   /* every other member; the pair's receiver */
    g_nclients = idle ? g_a.n : g_group ? g_a.size : g_a.pairs * 2;
    g_clients = calloc((size_t)g_nclients, sizeof *g_clients);
    g_wq = calloc((size_t)g_nclients + 1, sizeof *g_wq);
    natsOptions *o = make_opts(g_a.port, idle ? 4096 : 0);
    if (!o) return 1;
    g_js = g_js && !idle;
    unsigned run = (unsigned)getpid();
    char stream[32], wildcard[40];
    snprintf(stream, sizeof stream, "PB%u", run);
    snprintf(wildcard, sizeof wildcard, "pbjs.%u.>", run);
    /* bounded: the oldest go once a run has stored 2 million */
    if (g_js && !pjs_open(g_a.port, stream, wildcard, 2000000)) {
        printf("{\"system\": \"nats-jetstream\", \"scenario\": \"%s\", \"valid\": false, \"error\": \"no stream\"}\n", shape);
        fflush(stdout);
        _exit(1);
    }

    long before = idle && g_a.pid ? peer_status_kb(g_a.pid, "VmRSS") : -1;
    uint64_t t0 = peer_now_ns(), end = t0 + 60000000000ull;
    for (long i = 0; i < g_nclients && peer_now_ns() < end; i++) {
        client *c = &g_clients[i];
        c->index = (uint32_t)i;
        char sub[40];
        const char *subj = sub;
        if (idle) snprintf(sub, sizeof sub, "i%ld", i);
        else if (g_js) {   /* publish to the stream; receive from a push consumer's deliver subject */
            bool sender = g_group ? (g_a.senders < 0 || i < g_a.senders) : i % 2 == 0;
            bool receiver = g_group || i % 2 == 1;
            if (g_group) snprintf(c->subject, sizeof c->subject, "pbjs.%u.g0", run);
            else snprintf(c->subject, sizeof c->subject, "pbjs.%u.p%ld", run, i / 2);
            if (sender) snprintf(c->ack_subject, sizeof c->ack_subject, "pba.%u.%ld", run, i);
            snprintf(sub, sizeof sub, "pbd.%u.%ld", run, i);
            if (!receiver) subj = NULL;
        } else if (g_group) {
            snprintf(c->subject, sizeof c->subject, "g0");
            snprintf(sub, sizeof sub, "g0");
        } else {
            snprintf(c->subject, sizeof c->subject, "p%ld", i / 2);
            snprintf(sub, sizeof sub, "p%ld", i / 2);
            if (i % 2 == 0) subj = NULL;   /* even sends, odd receives */
        }
        connect_one(c, o, subj);
        if (i % 64 == 63) poll_once(0);
    }
    while (g_t.ready + g_t.errors < (uint64_t)g_nclients && peer_now_ns() < end) poll_once(10);
    double connect_s = (double)(peer_now_ns() - t0) / 1e9;

    if (idle) {   /* N idle subscribed connections: server memory per connection */
        uint64_t settle = peer_now_ns() + 3000000000ull;
        while (peer_now_ns() < settle) poll_once(100);
        long after = g_a.pid ? peer_status_kb(g_a.pid, "VmRSS") : -1;
        peer_print_held("nats", g_t.ready, connect_s, before, after, g_t.errors + atomic_load(&g_async_errors));
        fflush(stdout);
        _exit(0);   /* skip closing 19,900 connections one by one */
    }

    if (g_t.ready < (uint64_t)g_nclients)
        fprintf(stderr, "peer-nats: only %llu of %ld clients ready\n", (unsigned long long)g_t.ready, g_nclients);
    if (g_js) {   /* every receiver subscribes to its deliver subject: now its consumer can push */
        for (long i = 0; i < g_nclients; i++) {
            client *c = &g_clients[i];
            if (!(g_group || i % 2 == 1) || c->dead) continue;
            char deliver[40];
            snprintf(deliver, sizeof deliver, "pbd.%u.%ld", run, i);
            if (!pjs_add_push_consumer(c->subject, deliver)) {
                printf("{\"system\": \"nats-jetstream\", \"scenario\": \"%s\", \"valid\": false, \"error\": \"no consumer\"}\n", shape);
                fflush(stdout);
                _exit(1);
            }
            if (i % 64 == 63) poll_once(0);
        }
    }
    long nsend = 0;
    void **sendv = calloc((size_t)g_nclients, sizeof *sendv);
    for (long i = 0; i < g_nclients; i++) {
        bool s = g_group ? (g_a.senders < 0 || i < g_a.senders) : i % 2 == 0;
        if (s && !g_clients[i].dead) sendv[nsend++] = &g_clients[i];
    }
    if (nsend == 0) {
        fprintf(stderr, "peer-nats: no sender connected\n");
        return 1;
    }
    double secs = peer_send_for(sendv, nsend, &g_a, 4096, &(peer_sender){room, send_one, turn});
    peer_drain(&g_t, poll_once);   /* let what is in flight land, bounded */
    print_json(g_group ? "group" : "direct", secs, nsend);
    fflush(stdout);
    pjs_close();
    _exit(0);
}
