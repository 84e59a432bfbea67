/* kafka_producer.c -- the idempotent (optionally transactional) producer of
 * kafka_log.h and the consume-transform-produce commit. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "queue/kafka/kafka_internal.h"

struct kafka_producer {
    rd_kafka_t *rk;
    rd_kafka_queue_t *main_q;     /* delivery reports and errors wait here */
    int fd;
    bool transactional, txn_open, fenced;
    uint64_t revocations_at_begin;   /* the input consumer's count when the transaction began */
    kafka_consumer *txn_input;       /* the consumer named at begin, or NULL */
    void (*on_delivery)(void *opaque, int ok, int32_t partition, int64_t offset);
    void (*on_tagged)(void *opaque, uint64_t tag, int ok);
    void *opaque;
};

/* the fatal error codes that mean another owner (or the coordinator) fenced us */
static bool is_fence(rd_kafka_resp_err_t e) {
    return e == RD_KAFKA_RESP_ERR__FENCED || e == RD_KAFKA_RESP_ERR_PRODUCER_FENCED ||
           e == RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH || e == RD_KAFKA_RESP_ERR_FENCED_INSTANCE_ID;
}

static void on_dr(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque) {
    (void)rk;
    kafka_producer *p = opaque;
    int ok = m->err == RD_KAFKA_RESP_ERR_NO_ERROR;
    if (p->on_delivery) p->on_delivery(p->opaque, ok, m->partition, m->offset);
    if (p->on_tagged) p->on_tagged(p->opaque, (uint64_t)(uintptr_t)m->_private, ok);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    kafka_producer *p = opaque;
    if (err == RD_KAFKA_RESP_ERR__FATAL) {
        char why[KAFKA_LOG_ERRLEN];
        rd_kafka_resp_err_t e = rd_kafka_fatal_error(rk, why, sizeof why);
        if (is_fence(e)) p->fenced = true;
        fprintf(stderr, "kafka producer: fatal %s: %s\n", rd_kafka_err2name(e), why);
    } else if (err != RD_KAFKA_RESP_ERR__TRANSPORT && err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN) {
        /* broker disconnects are retried by librdkafka and expected in failovers */
        fprintf(stderr, "kafka producer: %s: %s\n", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
    }
}

kafka_producer *kafka_producer_new(const kafka_producer_config *cfg, int timeout_ms,
                                   char err[KAFKA_LOG_ERRLEN]) {
    kafka_producer *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, KAFKA_LOG_ERRLEN, "out of memory");
        return NULL;
    }
    p->fd = -1;
    p->transactional = cfg->transactional_id != NULL;
    p->on_delivery = cfg->on_delivery;
    p->on_tagged = cfg->on_tagged;
    p->opaque = cfg->opaque;
    char queued[24], txn_timeout[24], linger[24];
    snprintf(queued, sizeof queued, "%zu", cfg->max_queued ? cfg->max_queued : 100000);
    snprintf(txn_timeout, sizeof txn_timeout, "%d", cfg->transaction_timeout_ms ? cfg->transaction_timeout_ms : 60000);
    snprintf(linger, sizeof linger, "%d", cfg->linger_ms ? cfg->linger_ms : 5);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *pairs[] = {
        "bootstrap.servers", cfg->brokers,
        "enable.idempotence", "true",   /* acks=all, no duplicates or reordering on retries */
        "acks", "all",
        "partitioner", "murmur2_random",   /* the Java client's: same key, same partition */
        "queue.buffering.max.messages", queued,
        "linger.ms", linger,
        "log_level", "3",
        NULL};
    if (kafka_conf_set_all(conf, pairs, err) != 0 ||
        (p->transactional &&
         (rd_kafka_conf_set(conf, "transactional.id", cfg->transactional_id, err, KAFKA_LOG_ERRLEN) != RD_KAFKA_CONF_OK ||
          rd_kafka_conf_set(conf, "transaction.timeout.ms", txn_timeout, err, KAFKA_LOG_ERRLEN) != RD_KAFKA_CONF_OK))) {
        rd_kafka_conf_destroy(conf);
        free(p);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, on_dr);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_opaque(conf, p);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, KAFKA_LOG_ERRLEN);
    if (!p->rk) {
        rd_kafka_conf_destroy(conf);
        free(p);
        return NULL;
    }
    p->main_q = rd_kafka_queue_get_main(p->rk);
    p->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (p->fd < 0) {
        snprintf(err, KAFKA_LOG_ERRLEN, "eventfd: %s", strerror(errno));
        kafka_producer_free(p, 0);
        return NULL;
    }
    static const uint64_t one = 1;
    rd_kafka_queue_io_event_enable(p->main_q, p->fd, &one, sizeof one);
    if (p->transactional) {
        rd_kafka_error_t *e = rd_kafka_init_transactions(p->rk, timeout_ms);
        if (e) {
            snprintf(err, KAFKA_LOG_ERRLEN, "init_transactions: %s", rd_kafka_error_string(e));
            rd_kafka_error_destroy(e);
            kafka_producer_free(p, 0);
            return NULL;
        }
    }
    return p;
}

int kafka_producer_fd(kafka_producer *p) { return p->fd; }

int kafka_producer_poll(kafka_producer *p, int timeout_ms) {
    uint64_t drain;
    if (read(p->fd, &drain, sizeof drain) < 0 && errno != EAGAIN) { /* nothing else to do */ }
    return rd_kafka_poll(p->rk, timeout_ms);
}

static kafka_result produce(kafka_producer *p, const char *topic, int32_t partition, uint64_t key,
                            const void *value, size_t len, uint64_t tag) {
    if (p->fenced) return KAFKA_FENCED;
    if (len > KAFKA_LOG_MAX_VALUE || (p->transactional && !p->txn_open)) return KAFKA_ERROR;
    uint8_t k[8];
    kafka_key_encode(key, k);
    rd_kafka_resp_err_t e = rd_kafka_producev(p->rk, RD_KAFKA_V_TOPIC(topic), RD_KAFKA_V_KEY(k, sizeof k),
                                              RD_KAFKA_V_VALUE((void *)value, len),
                                              RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                              RD_KAFKA_V_OPAQUE((void *)(uintptr_t)tag),
                                              RD_KAFKA_V_PARTITION(partition < 0 ? RD_KAFKA_PARTITION_UA : partition),
                                              RD_KAFKA_V_END);
    if (e == RD_KAFKA_RESP_ERR_NO_ERROR) return KAFKA_OK;
    if (e == RD_KAFKA_RESP_ERR__QUEUE_FULL) return KAFKA_FULL;
    if (is_fence(e) || (e == RD_KAFKA_RESP_ERR__FATAL && p->fenced)) {
        p->fenced = true;
        return KAFKA_FENCED;
    }
    return KAFKA_ERROR;
}

kafka_result kafka_produce(kafka_producer *p, const char *topic, uint64_t key, const void *value, size_t len) {
    return produce(p, topic, -1, key, value, len, 0);
}

kafka_result kafka_produce_tagged(kafka_producer *p, const char *topic, int32_t partition, uint64_t key,
                                  const void *value, size_t len, uint64_t tag) {
    return produce(p, topic, partition, key, value, len, tag);
}

int kafka_producer_flush(kafka_producer *p, int timeout_ms) {
    return rd_kafka_flush(p->rk, timeout_ms) == RD_KAFKA_RESP_ERR_NO_ERROR ? 0 : -1;
}

/* a fenced producer's transaction is gone with it: nothing left to abort */
bool kafka_txn_open(const kafka_producer *p) { return p->txn_open && !p->fenced; }

kafka_result kafka_txn_begin(kafka_producer *p, kafka_consumer *input) {
    if (!p->transactional || p->txn_open) return KAFKA_ERROR;
    if (p->fenced) return KAFKA_FENCED;
    rd_kafka_error_t *e = rd_kafka_begin_transaction(p->rk);
    if (e) {
        kafka_result r = rd_kafka_error_is_fatal(e) && is_fence(rd_kafka_error_code(e)) ? KAFKA_FENCED : KAFKA_ERROR;
        if (r == KAFKA_FENCED) p->fenced = true;
        fprintf(stderr, "kafka producer: begin_transaction: %s\n", rd_kafka_error_string(e));
        rd_kafka_error_destroy(e);
        return r;
    }
    p->txn_open = true;
    p->txn_input = input;
    p->revocations_at_begin = input ? input->revocations : 0;
    return KAFKA_OK;
}

/* What an error from a transaction call means for the owner. Abortable:
 * abort (the caller rewinds). Fatal: a fence, or an error. Retriable
 * errors are retried by the callers before they get here. */
static kafka_result classify(kafka_producer *p, rd_kafka_error_t *e, const char *what) {
    fprintf(stderr, "kafka producer: %s: %s%s\n", what, rd_kafka_error_string(e),
            rd_kafka_error_is_fatal(e) ? " (fatal)" : rd_kafka_error_txn_requires_abort(e) ? " (abortable)" : "");
    if (rd_kafka_error_is_fatal(e)) {
        char why[KAFKA_LOG_ERRLEN];
        rd_kafka_resp_err_t code = rd_kafka_fatal_error(p->rk, why, sizeof why);
        if (is_fence(rd_kafka_error_code(e)) || is_fence(code)) {
            p->fenced = true;
            return KAFKA_FENCED;
        }
        return KAFKA_ERROR;
    }
    if (rd_kafka_error_txn_requires_abort(e)) return KAFKA_ABORTED;
    return KAFKA_ERROR;
}

kafka_result kafka_txn_abort(kafka_producer *p, kafka_consumer *input, int timeout_ms) {
    if (!p->transactional) return KAFKA_ERROR;
    if (p->fenced) return KAFKA_FENCED;
    kafka_result r = KAFKA_OK;
    if (p->txn_open) {
        rd_kafka_error_t *e = NULL;
        for (int attempt = 0; attempt < 3; attempt++) {
            if (e) rd_kafka_error_destroy(e);
            e = rd_kafka_abort_transaction(p->rk, timeout_ms);
            if (!e || !rd_kafka_error_is_retriable(e)) break;
        }
        if (e) {
            r = classify(p, e, "abort_transaction");
            if (r == KAFKA_ABORTED) r = KAFKA_ERROR;   /* an abort that needs an abort: give up */
            rd_kafka_error_destroy(e);
        }
        if (r == KAFKA_OK) p->txn_open = false;
    }
    if (r == KAFKA_OK && input && kafka_consumer_rewind(input, timeout_ms) != 0) r = KAFKA_ERROR;
    return r;
}

/* input's positions on its assigned partitions (those it has consumed
 * from), or NULL when there are none */
static rd_kafka_topic_partition_list_t *positions(kafka_consumer *c) {
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(c->rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR) return NULL;
    if (rd_kafka_position(c->rk, parts) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        rd_kafka_topic_partition_list_destroy(parts);
        return NULL;
    }
    rd_kafka_topic_partition_list_t *out = rd_kafka_topic_partition_list_new(parts->cnt);
    for (int i = 0; i < parts->cnt; i++) {
        if (parts->elems[i].offset < 0) continue;   /* nothing consumed there yet */
        rd_kafka_topic_partition_list_add(out, parts->elems[i].topic, parts->elems[i].partition)->offset =
            parts->elems[i].offset;
    }
    rd_kafka_topic_partition_list_destroy(parts);
    return out;
}

kafka_result kafka_txn_commit(kafka_producer *p, kafka_consumer *input, int timeout_ms) {
    if (!p->transactional || !p->txn_open) return KAFKA_ERROR;
    if (p->fenced) return KAFKA_FENCED;
    if (input != p->txn_input) return KAFKA_ERROR;
    /* a revocation since begin: those positions are no longer ours to commit */
    if (input && input->revocations != p->revocations_at_begin) {
        fprintf(stderr, "kafka producer: input partitions revoked during the transaction; aborting\n");
        kafka_result r = kafka_txn_abort(p, input, timeout_ms);
        return r == KAFKA_OK ? KAFKA_ABORTED : r;
    }
    rd_kafka_error_t *e = NULL;
    if (input && input->grouped) {
        rd_kafka_topic_partition_list_t *offsets = positions(input);
        rd_kafka_consumer_group_metadata_t *meta = rd_kafka_consumer_group_metadata(input->rk);
        if (!offsets || !meta) {
            if (offsets) rd_kafka_topic_partition_list_destroy(offsets);
            if (meta) rd_kafka_consumer_group_metadata_destroy(meta);
            return KAFKA_ERROR;
        }
        if (offsets->cnt > 0) {
            for (int attempt = 0; attempt < 3; attempt++) {
                if (e) rd_kafka_error_destroy(e);
                e = rd_kafka_send_offsets_to_transaction(p->rk, offsets, meta, timeout_ms);
                if (!e || !rd_kafka_error_is_retriable(e)) break;
            }
        }
        rd_kafka_topic_partition_list_destroy(offsets);
        rd_kafka_consumer_group_metadata_destroy(meta);
        if (e) {
            kafka_result r = classify(p, e, "send_offsets_to_transaction");
            rd_kafka_error_destroy(e);
            if (r == KAFKA_ABORTED) {
                kafka_result a = kafka_txn_abort(p, input, timeout_ms);
                return a == KAFKA_OK ? KAFKA_ABORTED : a;
            }
            return r;
        }
    }
    for (int attempt = 0; attempt < 3; attempt++) {
        if (e) rd_kafka_error_destroy(e);
        e = rd_kafka_commit_transaction(p->rk, timeout_ms);
        if (!e || !rd_kafka_error_is_retriable(e)) break;
    }
    if (!e) {
        p->txn_open = false;
        return KAFKA_OK;
    }
    kafka_result r = classify(p, e, "commit_transaction");
    rd_kafka_error_destroy(e);
    if (r == KAFKA_ABORTED) {
        kafka_result a = kafka_txn_abort(p, input, timeout_ms);
        return a == KAFKA_OK ? KAFKA_ABORTED : a;
    }
    return r;
}

void kafka_producer_free(kafka_producer *p, int timeout_ms) {
    if (!p) return;
    if (p->rk) {
        if (p->txn_open && !p->fenced) {
            rd_kafka_error_t *e = rd_kafka_abort_transaction(p->rk, timeout_ms);
            if (e) rd_kafka_error_destroy(e);
        }
        rd_kafka_flush(p->rk, timeout_ms);
        if (p->main_q) rd_kafka_queue_destroy(p->main_q);
        rd_kafka_destroy(p->rk);
    }
    if (p->fd >= 0) close(p->fd);
    free(p);
}
