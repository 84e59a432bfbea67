/* kafka_consumer.c -- the consumer of kafka_log.h: in a group (manual
 * offsets, read_committed, assignment changes handed to the owner) or
 * group-less (every partition of its topics from the beginning). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "queue/kafka/kafka_internal.h"

enum { MAX_NOTIFY = 1024 };   /* partitions handed to the owner per callback */

/* tells the owner about parts (at most MAX_NOTIFY at a time) */
static void notify(kafka_consumer *c, kafka_rebalance what, const rd_kafka_topic_partition_list_t *parts) {
    if (!c->on_rebalance || parts->cnt == 0) return;
    kafka_partition list[64];
    int done = 0;
    while (done < parts->cnt) {
        size_t n = 0;
        while (done < parts->cnt && n < sizeof list / sizeof list[0]) {
            list[n].topic = parts->elems[done].topic;
            list[n].partition = parts->elems[done].partition;
            n++;
            done++;
        }
        c->on_rebalance(c->owner, what, list, n);
    }
}

/* records that partition is at its end (or, with at_end false, no longer) */
static void mark_eof(kafka_consumer *c, const void *topic, int32_t partition, bool at_end) {
    for (size_t i = 0; i < c->eof_n; i++) {
        if (c->eof[i].topic == topic && c->eof[i].partition == partition) {
            if (!at_end) c->eof[i] = c->eof[--c->eof_n];
            return;
        }
    }
    if (!at_end || c->eof_n >= c->assigned) return;
    if (c->eof_n == c->eof_cap) {
        size_t cap = c->eof_cap ? c->eof_cap * 2 : 16;
        if (cap > c->assigned) cap = c->assigned;
        struct kafka_eof_mark *e = realloc(c->eof, cap * sizeof *e);
        if (!e) return;
        c->eof = e;
        c->eof_cap = cap;
    }
    c->eof[c->eof_n++] = (struct kafka_eof_mark){topic, partition};
}

/* eager (range) assignment: everything is revoked, then assigned anew */
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t *parts, void *opaque) {
    kafka_consumer *c = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        rd_kafka_assign(rk, parts);
        c->assigned = (size_t)parts->cnt;
        c->eof_n = 0;
        notify(c, KAFKA_ASSIGNED, parts);
        return;
    }
    /* the owner hears first, while its generation is still current, so an
     * orderly revoke lets it commit; a lost one must not */
    notify(c, rd_kafka_assignment_lost(rk) ? KAFKA_LOST : KAFKA_REVOKED, parts);
    c->revocations++;
    rd_kafka_assign(rk, NULL);
    c->assigned = 0;
    c->eof_n = 0;
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk;
    (void)opaque;
    if (err != RD_KAFKA_RESP_ERR__TRANSPORT && err != RD_KAFKA_RESP_ERR__ALL_BROKERS_DOWN)
        fprintf(stderr, "kafka consumer: %s: %s\n", rd_kafka_err2name((rd_kafka_resp_err_t)err), reason);
}

/* group-less: every partition of every topic, from the beginning */
static int assign_all(kafka_consumer *c, const kafka_consumer_config *cfg, char err[KAFKA_LOG_ERRLEN]) {
    rd_kafka_topic_partition_list_t *all = rd_kafka_topic_partition_list_new(16);
    int rc = 0;
    for (size_t i = 0; i < cfg->ntopics && rc == 0; i++) {
        rd_kafka_topic_t *t = rd_kafka_topic_new(c->rk, cfg->topics[i], NULL);
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t e = t ? rd_kafka_metadata(c->rk, 0, t, &md, 10000) : rd_kafka_last_error();
        if (e || md->topic_cnt != 1 || md->topics[0].err) {
            snprintf(err, KAFKA_LOG_ERRLEN, "metadata of %s: %s", cfg->topics[i],
                     rd_kafka_err2str(e ? e : md->topic_cnt ? md->topics[0].err : RD_KAFKA_RESP_ERR__FAIL));
            rc = -1;
        } else {
            for (int p = 0; p < md->topics[0].partition_cnt; p++)
                rd_kafka_topic_partition_list_add(all, cfg->topics[i], p)->offset = RD_KAFKA_OFFSET_BEGINNING;
        }
        if (md) rd_kafka_metadata_destroy(md);
        if (t) rd_kafka_topic_destroy(t);
    }
    if (rc == 0 && rd_kafka_assign(c->rk, all) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        snprintf(err, KAFKA_LOG_ERRLEN, "assign failed");
        rc = -1;
    }
    if (rc == 0) c->assigned = (size_t)all->cnt;
    rd_kafka_topic_partition_list_destroy(all);
    return rc;
}

kafka_consumer *kafka_consumer_new(const kafka_consumer_config *cfg, char err[KAFKA_LOG_ERRLEN]) {
    if (cfg->ntopics == 0) {
        snprintf(err, KAFKA_LOG_ERRLEN, "no topics");
        return NULL;
    }
    kafka_consumer *c = calloc(1, sizeof *c);
    if (!c) {
        snprintf(err, KAFKA_LOG_ERRLEN, "out of memory");
        return NULL;
    }
    c->fd = -1;
    c->grouped = cfg->group != NULL;
    c->on_rebalance = cfg->on_rebalance;
    c->owner = cfg->owner;
    char session[24], poll_interval[24];
    snprintf(session, sizeof session, "%d", cfg->session_timeout_ms ? cfg->session_timeout_ms : 45000);
    snprintf(poll_interval, sizeof poll_interval, "%d", cfg->max_poll_interval_ms ? cfg->max_poll_interval_ms : 300000);
    /* heartbeats a third of the session, as Kafka advises */
    char heartbeat[24];
    snprintf(heartbeat, sizeof heartbeat, "%d", (cfg->session_timeout_ms ? cfg->session_timeout_ms : 45000) / 3);
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *pairs[] = {
        "bootstrap.servers", cfg->brokers,
        "group.id", cfg->group ? cfg->group : "parley-reader",   /* required by librdkafka even when unused */
        "isolation.level", "read_committed",
        "enable.auto.commit", "false",           /* offsets move only inside transactions */
        "enable.auto.offset.store", "false",
        "auto.offset.reset", "earliest",
        "enable.partition.eof", "true",
        "partition.assignment.strategy", "range",   /* eager: revoke all, then assign */
        "session.timeout.ms", session,
        "heartbeat.interval.ms", heartbeat,
        "max.poll.interval.ms", poll_interval,
        "queued.max.messages.kbytes", "1024",
        "log_level", "3",
        NULL};
    if (kafka_conf_set_all(conf, pairs, err) != 0) {
        rd_kafka_conf_destroy(conf);
        free(c);
        return NULL;
    }
    if (c->grouped) rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
    rd_kafka_conf_set_error_cb(conf, on_error);
    rd_kafka_conf_set_opaque(conf, c);
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, KAFKA_LOG_ERRLEN);
    if (!c->rk) {
        rd_kafka_conf_destroy(conf);
        free(c);
        return NULL;
    }
    /* rebalances, errors and records all on one queue, served on the caller's thread */
    rd_kafka_poll_set_consumer(c->rk);
    c->queue = rd_kafka_queue_get_consumer(c->rk);
    c->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (!c->queue || c->fd < 0) {
        snprintf(err, KAFKA_LOG_ERRLEN, "consumer queue or eventfd: %s", strerror(errno));
        kafka_consumer_free(c);
        return NULL;
    }
    static const uint64_t one = 1;
    rd_kafka_queue_io_event_enable(c->queue, c->fd, &one, sizeof one);
    if (c->grouped) {
        rd_kafka_topic_partition_list_t *subs = rd_kafka_topic_partition_list_new((int)cfg->ntopics);
        for (size_t i = 0; i < cfg->ntopics; i++)
            rd_kafka_topic_partition_list_add(subs, cfg->topics[i], RD_KAFKA_PARTITION_UA);
        rd_kafka_resp_err_t e = rd_kafka_subscribe(c->rk, subs);
        rd_kafka_topic_partition_list_destroy(subs);
        if (e) {
            snprintf(err, KAFKA_LOG_ERRLEN, "subscribe: %s", rd_kafka_err2str(e));
            kafka_consumer_free(c);
            return NULL;
        }
    } else if (assign_all(c, cfg, err) != 0) {
        kafka_consumer_free(c);
        return NULL;
    }
    return c;
}

int kafka_consumer_fd(kafka_consumer *c) { return c->fd; }

int kafka_consumer_poll(kafka_consumer *c, kafka_record *out, size_t max, int timeout_ms) {
    uint64_t drain;
    if (read(c->fd, &drain, sizeof drain) < 0 && errno != EAGAIN) { /* nothing else to do */ }
    size_t n = 0;
    int wait = timeout_ms;
    while (n < max) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(c->rk, wait);
        if (!m) break;
        wait = 0;   /* only the first record is waited for */
        if (m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
            mark_eof(c, m->rkt, m->partition, true);
            rd_kafka_message_destroy(m);
            continue;
        }
        if (m->err) {
            fprintf(stderr, "kafka consumer: %s\n", rd_kafka_message_errstr(m));
            bool fatal = m->err == RD_KAFKA_RESP_ERR__FATAL;
            rd_kafka_message_destroy(m);
            if (fatal) {
                kafka_records_release(out, n);
                return -1;
            }
            continue;
        }
        mark_eof(c, m->rkt, m->partition, false);
        uint64_t key;
        if (kafka_key_decode(m->key, m->key_len, &key) != 0 || m->len > KAFKA_LOG_MAX_VALUE) {
            c->malformed++;
            rd_kafka_message_destroy(m);
            continue;
        }
        out[n] = (kafka_record){.topic = rd_kafka_topic_name(m->rkt), .partition = m->partition,
                                .offset = m->offset, .key = key, .value = m->payload, .len = m->len, .msg_ = m};
        n++;
    }
    return (int)n;
}

void kafka_records_release(kafka_record *recs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (recs[i].msg_) rd_kafka_message_destroy(recs[i].msg_);
        recs[i].msg_ = NULL;
    }
}

int kafka_consumer_rewind(kafka_consumer *c, int timeout_ms) {
    rd_kafka_topic_partition_list_t *parts = NULL;
    if (rd_kafka_assignment(c->rk, &parts) != RD_KAFKA_RESP_ERR_NO_ERROR) return -1;
    int rc = 0;
    if (parts->cnt > 0) {
        if (rd_kafka_committed(c->rk, parts, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR) rc = -1;
        for (int i = 0; rc == 0 && i < parts->cnt; i++)
            if (parts->elems[i].offset < 0) parts->elems[i].offset = RD_KAFKA_OFFSET_BEGINNING;
        if (rc == 0) {
            rd_kafka_error_t *e = rd_kafka_seek_partitions(c->rk, parts, timeout_ms);
            if (e) {
                fprintf(stderr, "kafka consumer: seek: %s\n", rd_kafka_error_string(e));
                rd_kafka_error_destroy(e);
                rc = -1;
            }
            for (int i = 0; rc == 0 && i < parts->cnt; i++)
                if (parts->elems[i].err) rc = -1;
        }
    }
    rd_kafka_topic_partition_list_destroy(parts);
    c->eof_n = 0;
    return rc;
}

size_t kafka_consumer_eof_count(const kafka_consumer *c) { return c->eof_n; }
size_t kafka_consumer_assigned_count(const kafka_consumer *c) { return c->assigned; }
uint64_t kafka_consumer_malformed(const kafka_consumer *c) { return c->malformed; }

void kafka_consumer_free(kafka_consumer *c) {
    if (!c) return;
    if (c->rk) {
        rd_kafka_consumer_close(c->rk);   /* leaves the group; the revoke reaches the owner */
        if (c->queue) rd_kafka_queue_destroy(c->queue);
        rd_kafka_destroy(c->rk);
    }
    if (c->fd >= 0) close(c->fd);
    free(c->eof);
    free(c);
}
