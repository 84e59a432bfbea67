/* kafka_common.c -- keys, names, transactional ids and the Admin API part
 * of kafka_log.h. */
#include <stdio.h>
#include <string.h>

#include "queue/kafka/kafka_internal.h"

const char *kafka_result_name(kafka_result r) {
    switch (r) {
    case KAFKA_OK: return "ok";
    case KAFKA_FULL: return "full";
    case KAFKA_ABORTED: return "aborted";
    case KAFKA_FENCED: return "fenced";
    case KAFKA_ERROR: return "error";
    }
    return "?";
}

void kafka_key_encode(uint64_t id, uint8_t out[8]) {
    for (int i = 7; i >= 0; i--) {
        out[i] = (uint8_t)(id & 0xff);
        id >>= 8;
    }
}

int kafka_key_decode(const void *key, size_t len, uint64_t *id) {
    if (!key || len != 8) return -1;
    const uint8_t *b = key;
    uint64_t v = 0;
    for (int i = 0; i < 8; i++) v = (v << 8) | b[i];
    *id = v;
    return 0;
}

int kafka_log_txn_id(char *out, size_t cap, const char *owner, const char *topic,
                     const int32_t *partitions, size_t n) {
    int w = snprintf(out, cap, "%s/%s:", owner, topic);
    if (w < 0 || (size_t)w >= cap) return -1;
    size_t used = (size_t)w;
    for (size_t i = 0; i < n; i++) {
        w = snprintf(out + used, cap - used, i ? ",%d" : "%d", (int)partitions[i]);
        if (w < 0 || (size_t)w >= cap - used) return -1;
        used += (size_t)w;
    }
    return 0;
}

int kafka_conf_set_all(rd_kafka_conf_t *conf, const char *const *pairs, char err[KAFKA_LOG_ERRLEN]) {
    for (size_t i = 0; pairs[i]; i += 2) {
        if (rd_kafka_conf_set(conf, pairs[i], pairs[i + 1], err, KAFKA_LOG_ERRLEN) != RD_KAFKA_CONF_OK)
            return -1;
    }
    return 0;
}

/* a short-lived producer handle for admin and metadata requests */
static rd_kafka_t *admin_handle(const char *brokers, char err[KAFKA_LOG_ERRLEN]) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *pairs[] = {"bootstrap.servers", brokers, "log_level", "3", NULL};
    if (kafka_conf_set_all(conf, pairs, err) != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, err, KAFKA_LOG_ERRLEN);
    if (!rk) rd_kafka_conf_destroy(conf);
    return rk;
}

static int partitions_of(rd_kafka_t *rk, const char *topic, int timeout_ms, char err[KAFKA_LOG_ERRLEN]) {
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    if (!t) {
        snprintf(err, KAFKA_LOG_ERRLEN, "topic handle: %s", rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, timeout_ms);
    int n = -1;
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, KAFKA_LOG_ERRLEN, "metadata: %s", rd_kafka_err2str(e));
    } else if (md->topic_cnt != 1 || md->topics[0].err) {
        snprintf(err, KAFKA_LOG_ERRLEN, "metadata of %s: %s", topic,
                 md->topic_cnt ? rd_kafka_err2str(md->topics[0].err) : "none");
    } else {
        n = md->topics[0].partition_cnt;
    }
    if (md) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(t);
    return n;
}

int kafka_topic_partitions(const char *brokers, const char *topic, int timeout_ms,
                           char err[KAFKA_LOG_ERRLEN]) {
    rd_kafka_t *rk = admin_handle(brokers, err);
    if (!rk) return -1;
    int n = partitions_of(rk, topic, timeout_ms, err);
    rd_kafka_destroy(rk);
    return n;
}

int kafka_create_topic(const char *brokers, const char *topic, int partitions, int replication,
                       int timeout_ms, char err[KAFKA_LOG_ERRLEN]) {
    rd_kafka_t *rk = admin_handle(brokers, err);
    if (!rk) return -1;
    int rc = -1;
    rd_kafka_NewTopic_t *nt = rd_kafka_NewTopic_new(topic, partitions, replication, err, KAFKA_LOG_ERRLEN);
    rd_kafka_queue_t *q = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *opt = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_AdminOptions_set_operation_timeout(opt, timeout_ms, NULL, 0);
    rd_kafka_AdminOptions_set_request_timeout(opt, timeout_ms, NULL, 0);
    if (nt) {
        rd_kafka_CreateTopics(rk, &nt, 1, opt, q);
        rd_kafka_event_t *ev = rd_kafka_queue_poll(q, timeout_ms + 1000);
        const rd_kafka_CreateTopics_result_t *res = ev ? rd_kafka_event_CreateTopics_result(ev) : NULL;
        if (!ev) {
            snprintf(err, KAFKA_LOG_ERRLEN, "create %s: no answer in %d ms", topic, timeout_ms);
        } else if (rd_kafka_event_error(ev)) {
            snprintf(err, KAFKA_LOG_ERRLEN, "create %s: %s", topic, rd_kafka_event_error_string(ev));
        } else if (res) {
            size_t n = 0;
            const rd_kafka_topic_result_t **tr = rd_kafka_CreateTopics_result_topics(res, &n);
            rd_kafka_resp_err_t e = n == 1 ? rd_kafka_topic_result_error(tr[0]) : RD_KAFKA_RESP_ERR__FAIL;
            if (e == RD_KAFKA_RESP_ERR_NO_ERROR) {
                rc = 0;
            } else if (e == RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
                int have = partitions_of(rk, topic, timeout_ms, err);
                if (have == partitions) rc = 0;
                else if (have >= 0)
                    snprintf(err, KAFKA_LOG_ERRLEN, "%s exists with %d partitions, not %d", topic, have, partitions);
            } else {
                snprintf(err, KAFKA_LOG_ERRLEN, "create %s: %s", topic,
                         n == 1 ? rd_kafka_topic_result_error_string(tr[0]) : "no result");
            }
        }
        if (ev) rd_kafka_event_destroy(ev);
        rd_kafka_NewTopic_destroy(nt);
    }
    rd_kafka_AdminOptions_destroy(opt);
    rd_kafka_queue_destroy(q);
    rd_kafka_destroy(rk);
    return rc;
}
