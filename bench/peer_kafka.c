/* peer_kafka.c -- the shapes of parley-bench direct, group and live against
 * Apache Kafka (one KRaft broker, scripts/kafka.sh), through librdkafka, all
 * on one thread of ours (librdkafka keeps its own I/O threads; its queues
 * wake our loop through one pipe, rd_kafka_queue_io_event_enable).
 *
 * Durability: one producer with acks=all and idempotence; "ack" is its
 * delivery report, sent by the broker once the message is appended to the
 * partition's log by every in-sync replica (one broker here: replication
 * factor 1; the log is in the OS page cache, Kafka leaves flushing to the OS
 * by default). Senders are logical clients sharing that producer.
 *
 * Deliveries are messages read back by consumers (assign, from the start of
 * a fresh topic, no group, no commits):
 *   direct: one topic for all pairs, read by one consumer that hands each
 *           message to its pair's receiver (one delivery per message);
 *   group:  one topic, one consumer per member (--size rd_kafka_t
 *           consumers), each skipping its own messages: size-1 deliveries
 *           per message, as in the other drivers.
 *
 *   bench-peer-kafka direct --port P --pairs N --window W|--rate R --seconds S
 *   bench-peer-kafka group  --port P --size 250 --senders K|all --window W|--rate R --seconds S
 *   bench-peer-kafka live   --port P --size 250 --rate 1000 --seconds S
 * Prints one JSON object on stdout. */
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "peer_common.h"

enum { MIN_BODY = 24, BATCH = 256, MAX_CONSUMERS = 1000 };

typedef struct client {
    uint32_t index, inflight;
} client;

typedef struct reader {
    rd_kafka_t *rk;
    rd_kafka_queue_t *q;
    long member;      /* group: the member it reads for (skips its own); direct: -1 */
} reader;

static peer_tally g_t;
static peer_args g_a;
static rd_kafka_t *g_prod;
static rd_kafka_topic_t *g_topic;
static char g_topic_name[64];
static reader *g_readers;
static long g_nreaders;
static int g_wake[2];               /* pipe: librdkafka writes when a queue gets events */
static uint64_t g_probes_acked, g_kerrors;
static bool g_group;

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk; (void)opaque;
    if (g_kerrors++ < 5) fprintf(stderr, "peer-kafka: %s: %s\n", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* delivery report: the broker's ack (acks=all) or the send failed */
static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk; (void)opaque;
    client *c = m->_private;
    if (!c) {   /* a probe that makes the topic exist */
        if (!m->err) g_probes_acked++;
        return;
    }
    if (c->inflight) c->inflight--;
    if (m->err) {
        if (g_t.errors++ < 5) fprintf(stderr, "peer-kafka: delivery failed: %s\n", rd_kafka_err2str(m->err));
        return;
    }
    uint64_t sent;
    memcpy(&sent, (const char *)m->payload + 16, 8);
    g_t.acked++;
    hist_record(&g_t.ack, peer_now_ns() - sent);
}

static void set_common(rd_kafka_conf_t *conf) {
    char port[16], err[256];
    snprintf(port, sizeof port, "127.0.0.1:%d", g_a.port);
    rd_kafka_conf_set(conf, "bootstrap.servers", port, err, sizeof err);
    rd_kafka_conf_set(conf, "client.id", "parley-bench", err, sizeof err);
    rd_kafka_conf_set_error_cb(conf, on_error);
}

static rd_kafka_t *make_producer(void) {
    char err[256];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set_common(conf);
    if (rd_kafka_conf_set(conf, "acks", "all", err, sizeof err) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", err, sizeof err) != RD_KAFKA_CONF_OK ||
        /* room for every window of a 1,000-pair run in flight */
        rd_kafka_conf_set(conf, "queue.buffering.max.messages", "1000000", err, sizeof err) != RD_KAFKA_CONF_OK) {
        fprintf(stderr, "peer-kafka: producer config: %s\n", err);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, sizeof err);
    if (!rk) fprintf(stderr, "peer-kafka: producer: %s\n", err);
    return rk;
}

static bool make_reader(reader *r, long member) {
    char err[256], group[64];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    set_common(conf);
    snprintf(group, sizeof group, "pb-%d-%ld", (int)getpid(), member);
    rd_kafka_conf_set(conf, "group.id", group, err, sizeof err);   /* never joined: assign() only */
    rd_kafka_conf_set(conf, "enable.auto.commit", "false", err, sizeof err);
    /* 250 consumers: keep each one's prefetch small (default 64 MB) */
    rd_kafka_conf_set(conf, "queued.max.messages.kbytes", "2048", err, sizeof err);
    rd_kafka_conf_set(conf, "fetch.wait.max.ms", "100", err, sizeof err);
    r->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (!r->rk) {
        fprintf(stderr, "peer-kafka: consumer: %s\n", err);
        return false;
    }
    rd_kafka_poll_set_consumer(r->rk);
    r->member = member;
    rd_kafka_topic_partition_list_t *parts = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(parts, g_topic_name, 0)->offset = RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_resp_err_t e = rd_kafka_assign(r->rk, parts);
    rd_kafka_topic_partition_list_destroy(parts);
    if (e) {
        fprintf(stderr, "peer-kafka: assign: %s\n", rd_kafka_err2str(e));
        return false;
    }
    r->q = rd_kafka_queue_get_consumer(r->rk);
    rd_kafka_queue_io_event_enable(r->q, g_wake[1], "r", 1);
    return true;
}

static void on_record(reader *r, const rd_kafka_message_t *m) {
    if (m->err) {
        if (m->err != RD_KAFKA_RESP_ERR__PARTITION_EOF && g_t.errors++ < 5)
            fprintf(stderr, "peer-kafka: consume: %s\n", rd_kafka_message_errstr(m));
        return;
    }
    if (m->len < MIN_BODY) return;   /* probe */
    uint32_t sender;
    uint64_t ts;
    memcpy(&sender, (const char *)m->payload + 4, 4);
    memcpy(&ts, (const char *)m->payload + 8, 8);
    if (r->member >= 0 && sender == (uint32_t)r->member) return;   /* own message: not a delivery */
    g_t.delivered++;
    uint64_t now = peer_now_ns();
    if (now > ts) hist_record(&g_t.deliv, now - ts);
}

static void poll_once(int timeout_ms) {
    struct pollfd p = {.fd = g_wake[0], .events = POLLIN};
    if (poll(&p, 1, timeout_ms) > 0) {
        char buf[4096];
        while (read(g_wake[0], buf, sizeof buf) > 0) {}
    }
    rd_kafka_poll(g_prod, 0);   /* delivery reports */
    rd_kafka_message_t *ms[BATCH];
    for (long i = 0; i < g_nreaders; i++) {
        ssize_t n;
        while ((n = rd_kafka_consume_batch_queue(g_readers[i].q, 0, ms, BATCH)) > 0)
            for (ssize_t k = 0; k < n; k++) {
                on_record(&g_readers[i], ms[k]);
                rd_kafka_message_destroy(ms[k]);
            }
    }
}

static void publish(client *c, uint64_t ts) {
    char body[4096];
    memset(body, 'x', (size_t)g_a.body);
    uint64_t sent = peer_now_ns();
    memcpy(body + 4, &c->index, 4);
    memcpy(body + 8, &ts, 8);
    memcpy(body + 16, &sent, 8);
    if (rd_kafka_produce(g_topic, 0, RD_KAFKA_MSG_F_COPY, body, (size_t)g_a.body, NULL, 0, c) != 0) {
        if (g_t.errors++ < 5) fprintf(stderr, "peer-kafka: produce: %s\n", rd_kafka_err2str(rd_kafka_last_error()));
        return;
    }
    c->inflight++;
    g_t.sent++;
}

/* the send loop's hooks (peer_send_for) */
static bool room(void *p, uint32_t cap) { return ((client *)p)->inflight < cap; }
static void send_one(void *p, uint64_t due) { publish(p, due); }
static void turn(uint64_t now, int timeout_ms) {
    (void)now;
    poll_once(timeout_ms);
}

/* the topic exists once a probe to it is acked (the broker creates it) */
static bool make_topic(void) {
    snprintf(g_topic_name, sizeof g_topic_name, "pb-%s-%d-%llu", g_a.shape, (int)getpid(),
             (unsigned long long)(peer_now_ns() % 1000000));
    g_topic = rd_kafka_topic_new(g_prod, g_topic_name, NULL);
    if (!g_topic) return false;
    uint64_t end = peer_now_ns() + 60000000000ull;
    while (g_probes_acked == 0 && peer_now_ns() < end) {
        if (rd_kafka_produce(g_topic, 0, RD_KAFKA_MSG_F_COPY, "probe", 5, NULL, 0, NULL) != 0) return false;
        uint64_t wait = peer_now_ns() + 2000000000ull;
        while (g_probes_acked == 0 && peer_now_ns() < wait) rd_kafka_poll(g_prod, 50);
    }
    return g_probes_acked > 0;
}

static void fail(const char *why) {
    printf("{\"system\": \"kafka\", \"scenario\": \"%s\", \"valid\": false, \"error\": \"%s\"}\n", g_a.shape, why);
    fflush(stdout);
    _exit(1);
}

int main(int argc, char **argv) {
    if (!peer_parse_args(&g_a, argc, argv, "bench-peer-kafka", 9092, MIN_BODY)) return 2;
    peer_clamp_counts(&g_a);
    g_group = !strcmp(g_a.shape, "group");
    if (!g_group && strcmp(g_a.shape, "direct")) {
        fprintf(stderr, "bench-peer-kafka: shape %s does not apply (direct, group, live)\n", g_a.shape);
        return 2;
    }
    peer_tally_init(&g_t);
    g_t.receivers = g_group ? (uint64_t)g_a.size - 1 : 1;
    long nclients = g_group ? g_a.size : g_a.pairs * 2;
    g_nreaders = g_group ? g_a.size : 1;
    if (g_nreaders > MAX_CONSUMERS) fail("group too large for one consumer per member");
    if (pipe2(g_wake, O_NONBLOCK | O_CLOEXEC)) return 1;
    if (!(g_prod = make_producer())) fail("no producer");
    if (!make_topic()) fail("topic not created (broker not ready?)");
    g_readers = calloc((size_t)g_nreaders, sizeof *g_readers);
    client *cs = calloc((size_t)nclients, sizeof *cs);
    void **sendv = calloc((size_t)nclients, sizeof *sendv);
    if (!g_readers || !cs || !sendv) return 1;
    for (long i = 0; i < g_nreaders; i++)
        if (!make_reader(&g_readers[i], g_group ? i : -1)) fail("consumer not created");
    /* the consumers have fetched up to the probe: they are reading */
    uint64_t end = peer_now_ns() + 60000000000ull;
    for (long i = 0; i < g_nreaders && peer_now_ns() < end; i++) {
        rd_kafka_topic_partition_list_t *pos = NULL;
        for (;;) {
            poll_once(10);
            if (rd_kafka_assignment(g_readers[i].rk, &pos) == 0 && pos && pos->cnt == 1) {
                rd_kafka_position(g_readers[i].rk, pos);
                bool at = pos->elems[0].offset >= 1;
                rd_kafka_topic_partition_list_destroy(pos);
                pos = NULL;
                if (at) break;
            } else if (pos) {
                rd_kafka_topic_partition_list_destroy(pos);
                pos = NULL;
            }
            if (peer_now_ns() >= end) fail("consumers did not start reading in 60 s");
        }
    }
    long nsend = 0;
    for (long i = 0; i < nclients; i++) {
        cs[i].index = (uint32_t)i;
        bool s = g_group ? (g_a.senders < 0 || i < g_a.senders) : i % 2 == 0;
        if (s) sendv[nsend++] = &cs[i];
    }
    double secs = peer_send_for(sendv, nsend, &g_a, 4096, &(peer_sender){room, send_one, turn});
    peer_drain(&g_t, poll_once);
    printf("{\"system\": \"kafka\", \"scenario\": \"%s\", \"ack\": \"producer delivery report\", "
           "\"durability\": \"acks=all, idempotent producer, 1 KRaft broker (replication factor 1), "
           "appended to the log (flush left to the OS)\", \"consumers\": %ld, \"seconds\": %.3f, \"senders\": %ld, ",
           g_a.shape, g_nreaders, secs, nsend);
    peer_print_rates(&g_t, secs, true);
    printf(", \"errors\": %llu, \"client_errors\": %llu}\n", (unsigned long long)g_t.errors,
           (unsigned long long)g_kerrors);
    fflush(stdout);
    _exit(peer_run_valid(&g_t) ? 0 : 1);   /* skip tearing down 250 consumers one by one */
}
