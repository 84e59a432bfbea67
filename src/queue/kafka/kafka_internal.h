/* kafka_internal.h -- what kafka_producer.c and kafka_consumer.c share:
 * the consumer's handle (the producer puts its positions and group
 * metadata into a transaction) and the librdkafka configuration helper. */
#ifndef PARLEY_QUEUE_KAFKA_INTERNAL_H
#define PARLEY_QUEUE_KAFKA_INTERNAL_H

#include <librdkafka/rdkafka.h>

#include "queue/kafka/kafka_log.h"

struct kafka_consumer {
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;      /* the consumer queue; the main queue is forwarded to it */
    int fd;                       /* eventfd librdkafka writes when queue gets events */
    bool grouped;
    /* bumped on every revocation or loss: a transaction begun before it
     * must not commit this consumer's positions */
    uint64_t revocations;
    size_t assigned;
    /* partitions at end of log: one entry each, cleared when a record of
     * that partition arrives; at most as many as are assigned */
    struct kafka_eof_mark { const void *topic; int32_t partition; } *eof;
    size_t eof_n, eof_cap;
    uint64_t malformed;
    void (*on_rebalance)(void *owner, kafka_rebalance what, const kafka_partition *parts, size_t n);
    void *owner;
};

/* rd_kafka_conf_set(conf, name, value) for each pair of a NULL-ended list;
 * 0, or -1 with the reason in err */
int kafka_conf_set_all(rd_kafka_conf_t *conf, const char *const *pairs, char err[KAFKA_LOG_ERRLEN]);

#endif
