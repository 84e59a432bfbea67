/* send_log.c -- see send_log.h. */
#include "cluster/send_log.h"

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "chat/partition.h"
#include "chat/reply.h"
#include "cluster/send_record.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/u64map.h"
#include "gateway/request_limits.h"
#include "queue/kafka/kafka_log.h"

enum {
    TURN_MS = 100,              /* the thread looks at deadlines at least this often */
    TOPIC_TIMEOUT_MS = 20000,   /* creating or checking the topic at start */
    FLUSH_MS = 5000,            /* what is queued gets this long at the stop */
};

typedef enum pending_state { P_FREE, P_QUEUED, P_DURABLE } pending_state;

typedef struct pending {
    uint64_t tag;          /* 0: free */
    pending_state state;
    uint64_t conn_id, request_id;
    uint64_t durable_ms;   /* when Kafka acknowledged it */
    bool send;             /* a SendMessage: answered ACCEPTED when its answer is late */
} pending;

struct send_log {
    const outbox *local;
    char self[SEND_RECORD_NAME_MAX + 1];
    uint32_t partitions;   /* P: a conversation's record goes to partition conv mod P */
    kafka_producer *producer;
    pthread_mutex_t mu;    /* producer calls, ring, map */
    pending ring[SEND_LOG_PENDING];
    uint64_t next_tag;
    u64map by_request;     /* request_key(conn, request) -> tag */
    atomic_bool stop;
    pthread_t thread;
    bool running;
};

static uint64_t request_key(uint64_t conn_id, uint64_t request_id) {
    uint64_t k = conn_id * 0x9E3779B97F4A7C15ull ^ (request_id + 0x632BE59BD9B4E019ull);
    return k ? k : 1;   /* u64map keys are non-zero */
}

/* Under mu: forgets slot p. */
static void forget(send_log *sl, pending *p) {
    uint64_t *t = u64map_get(&sl->by_request, request_key(p->conn_id, p->request_id));
    if (t && *t == p->tag) u64map_remove(&sl->by_request, request_key(p->conn_id, p->request_id), NULL);
    p->tag = 0;
    p->state = P_FREE;
}

static void answer_status(send_log *sl, uint64_t conn_id, uint64_t request_id, Parley__V1__Status st,
                          const char *text) {
    outbound_send(sl->local, reply_error(conn_id, request_id, st, text));
}

/* Kafka's verdict on the record tagged tag (inside kafka_producer_poll). */
static void delivered(void *opaque, uint64_t tag, int ok) {
    send_log *sl = opaque;
    if (tag == 0) {   /* a delivered record (send_log_submit_delivered): nobody waits */
        if (!ok) METRIC_INC(kafka_delivered_raises_dropped_total);
        return;
    }
    pending *p = &sl->ring[tag % SEND_LOG_PENDING];
    if (p->tag != tag) return;   /* forgotten: answered, or overwritten */
    if (ok) {
        p->state = P_DURABLE;
        p->durable_ms = clock_mono_ms();
        return;
    }
    METRIC_INC(kafka_sends_failed_total);
    uint64_t conn = p->conn_id, req = p->request_id;
    forget(sl, p);
    answer_status(sl, conn, req, PARLEY__V1__STATUS__UNAVAILABLE, "cannot log the send now; retry");
}

/* Under mu: ACCEPTED for what has been durable and unanswered long enough. */
static void accept_due(send_log *sl, uint64_t now) {
    if (sl->by_request.count == 0) return;
    for (size_t i = 0; i < SEND_LOG_PENDING; i++) {
        pending *p = &sl->ring[i];
        if (p->tag == 0 || p->state != P_DURABLE || !p->send || now - p->durable_ms < SEND_LOG_ACCEPTED_MS) continue;
        uint64_t conn = p->conn_id, req = p->request_id;
        forget(sl, p);
        METRIC_INC(kafka_sends_accepted_total);
        answer_status(sl, conn, req, PARLEY__V1__STATUS__ACCEPTED, "durable in the log; SENT follows once stored");
    }
}

static void *send_log_main(void *arg) {
    send_log *sl = arg;
    uint64_t last_scan = 0;
    while (!atomic_load(&sl->stop)) {
        struct pollfd pfd = {.fd = kafka_producer_fd(sl->producer), .events = POLLIN};
        poll(&pfd, 1, TURN_MS);
        pthread_mutex_lock(&sl->mu);
        kafka_producer_poll(sl->producer, 0);
        uint64_t now = clock_mono_ms();
        if (now - last_scan >= TURN_MS) {
            accept_due(sl, now);
            last_scan = now;
        }
        pthread_mutex_unlock(&sl->mu);
    }
    return NULL;
}

bool send_log_takes(const send_log *sl, const chat_request *r) {
    uint32_t p;
    return writer_request_partition(r, sl->partitions, &p);
}

int send_log_submit(send_log *sl, chat_request *r) {
    uint32_t partition;
    if (!writer_request_partition(r, sl->partitions, &partition)) return -1;
    send_record rec = {.conn_id = r->conn_id, .request_id = r->request_id, .user_id = r->user_id,
                       .device_id = r->device_id};
    snprintf(rec.origin, sizeof rec.origin, "%s", sl->self);
    uint8_t head[SEND_RECORD_HEAD_MAX];
    size_t head_len = send_record_head(&rec, head);
    size_t frame_len = parley__v1__frame__get_packed_size(r->frame);
    if (!head_len || frame_len == 0 || head_len + frame_len > KAFKA_LOG_MAX_VALUE) return -1;
    uint8_t *value = malloc(head_len + frame_len);
    if (!value) return -1;
    memcpy(value, head, head_len);
    parley__v1__frame__pack(r->frame, value + head_len);
    bool send = r->frame->body_case == PARLEY__V1__FRAME__BODY_SEND_MESSAGE;

    pthread_mutex_lock(&sl->mu);
    uint64_t tag = ++sl->next_tag;
    pending *p = &sl->ring[tag % SEND_LOG_PENDING];
    if (p->tag) forget(sl, p);   /* the oldest: no ACCEPTED for it */
    kafka_result kr = kafka_produce_tagged(sl->producer, SEND_LOG_TOPIC, (int32_t)partition, partition, value,
                                           head_len + frame_len, tag);
    if (kr == KAFKA_OK) {
        *p = (pending){.tag = tag, .state = P_QUEUED, .conn_id = r->conn_id, .request_id = r->request_id,
                       .send = send};
        u64map_put(&sl->by_request, request_key(r->conn_id, r->request_id), tag);
    }
    pthread_mutex_unlock(&sl->mu);
    free(value);
    if (kr != KAFKA_OK) {
        METRIC_INC(kafka_sends_failed_total);
        return -1;
    }
    METRIC_INC(kafka_sends_logged_total);
    chat_request_free(r);
    return 0;
}

int send_log_submit_delivered(send_log *sl, uint32_t partition, const uint8_t *value, size_t len) {
    if (partition >= sl->partitions || len == 0 || len > KAFKA_LOG_MAX_VALUE) return -1;
    pthread_mutex_lock(&sl->mu);
    /* tag 0: not in the ring of requests waiting for answers */
    kafka_result kr = kafka_produce_tagged(sl->producer, SEND_LOG_TOPIC, (int32_t)partition, partition, value, len, 0);
    pthread_mutex_unlock(&sl->mu);
    if (kr != KAFKA_OK) return -1;
    METRIC_INC(kafka_delivered_records_logged_total);
    return 0;
}

void send_log_answered(send_log *sl, uint64_t conn_id, const uint8_t *frame, size_t len) {
    frame_peek pk;
    if (!sl || frame_peek_parse(frame, len, &pk) || pk.request_id == 0) return;
    pthread_mutex_lock(&sl->mu);
    uint64_t *t = sl->by_request.count ? u64map_get(&sl->by_request, request_key(conn_id, pk.request_id)) : NULL;
    if (t) {
        pending *p = &sl->ring[*t % SEND_LOG_PENDING];
        if (p->tag == *t && p->conn_id == conn_id && p->request_id == pk.request_id) forget(sl, p);
    }
    pthread_mutex_unlock(&sl->mu);
}

send_log *send_log_start(const char *brokers, const char *self, uint32_t partitions, const outbox *local,
                         char *err, size_t errlen) {
    char why[KAFKA_LOG_ERRLEN] = "";
    if (kafka_create_topic(brokers, SEND_LOG_TOPIC, (int)partitions, 1, TOPIC_TIMEOUT_MS, why)) {
        snprintf(err, errlen, "kafka topic %s (%u partitions): %s", SEND_LOG_TOPIC, partitions, why);
        return NULL;
    }
    send_log *sl = calloc(1, sizeof *sl);
    if (!sl) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    sl->local = local;
    sl->partitions = partitions;
    snprintf(sl->self, sizeof sl->self, "%s", self);
    pthread_mutex_init(&sl->mu, NULL);
    kafka_producer_config pc = {.brokers = brokers, .max_queued = SEND_LOG_PENDING, .linger_ms = 1,
                                .on_tagged = delivered, .opaque = sl};
    sl->producer = kafka_producer_new(&pc, TOPIC_TIMEOUT_MS, why);
    if (!sl->producer) {
        snprintf(err, errlen, "kafka producer: %s", why);
        send_log_free(sl);
        return NULL;
    }
    if (pthread_create(&sl->thread, NULL, send_log_main, sl) != 0) {
        snprintf(err, errlen, "cannot start the send log thread");
        send_log_free(sl);
        return NULL;
    }
    sl->running = true;
    return sl;
}

void send_log_free(send_log *sl) {
    if (!sl) return;
    if (sl->running) {
        atomic_store(&sl->stop, true);
        pthread_join(sl->thread, NULL);
    }
    if (sl->producer) {
        pthread_mutex_lock(&sl->mu);
        kafka_producer_flush(sl->producer, FLUSH_MS);
        pthread_mutex_unlock(&sl->mu);
        kafka_producer_free(sl->producer, FLUSH_MS);
    }
    u64map_free(&sl->by_request);
    pthread_mutex_destroy(&sl->mu);
    free(sl);
}
