/* kafka_log.h -- the cluster's log (DESIGN.md §6): a small C API over
 * librdkafka for what the scale-out mode needs, and nothing else.
 *
 *   - topics with a partition count fixed at creation (Admin API);
 *   - records keyed by a 64-bit id (conversation or user), sent as 8 bytes
 *     big-endian, partitioned by librdkafka's murmur2 (the Java client's
 *     default, so any tool reading the topics agrees on which partition
 *     holds a key);
 *   - an idempotent producer, optionally transactional: one per owner, its
 *     transactional.id stable across restarts of that owner (kafka_log_txn_id
 *     builds "owner/topic:p,p,...") so that a restarted owner's
 *     init_transactions fences its previous incarnation and aborts what it
 *     left open;
 *   - a consumer in a group with read_committed isolation and manual
 *     offsets (never auto-committed), whose assignment changes are handed to
 *     the owner so it can drop the state of a partition it lost;
 *   - the consume-transform-produce commit: the consumer's positions and
 *     group metadata (generation, member id: KIP-447) go into the producer's
 *     transaction, so a stale owner that the group has moved on from cannot
 *     commit, and its output is never visible to a read_committed reader.
 *
 * Threads: none of ours. librdkafka runs its own I/O threads; everything
 * the caller sees (delivery reports, rebalance callbacks, records) happens
 * on the caller's thread, inside kafka_producer_poll / kafka_consumer_poll
 * and the transaction calls. Each handle has an eventfd (kafka_*_fd) that
 * becomes readable when librdkafka queued something for that handle
 * (rd_kafka_queue_io_event_enable), so an owner's event loop waits on it
 * beside its other descriptors and then polls with timeout 0.
 *
 * Bounds: the producer holds at most max_queued records in memory
 * (queue.buffering.max.messages); beyond that kafka_produce returns
 * KAFKA_FULL and the caller polls (backpressure). The consumer pre-fetches
 * at most 1 MiB per partition (queued.max.messages.kbytes). Keys are 8 bytes;
 * a value is at most KAFKA_LOG_MAX_VALUE bytes, checked before it is sent;
 * a record read with a longer value or a key that is not 8 bytes is
 * reported as malformed, not trusted.
 *
 * One handle, one thread: none of these functions may be called on the
 * same handle from two threads at once. */
#ifndef PARLEY_QUEUE_KAFKA_LOG_H
#define PARLEY_QUEUE_KAFKA_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { KAFKA_LOG_MAX_VALUE = 1 << 20, KAFKA_LOG_ERRLEN = 256 };

typedef enum kafka_result {
    KAFKA_OK = 0,
    KAFKA_FULL,      /* the producer's bounded queue is full: poll, then try again */
    KAFKA_ABORTED,   /* an abortable error: the transaction was aborted and the
                      * consumer rewound to its committed offsets; the owner drops
                      * what it built since the transaction began and goes on */
    KAFKA_FENCED,    /* you lost ownership: stop. Another producer with this
                      * transactional.id (or the coordinator, after the
                      * transaction timed out) fenced this one; it can never
                      * commit again */
    KAFKA_ERROR      /* anything else (bad argument, timeout, fatal error) */
} kafka_result;

const char *kafka_result_name(kafka_result r);

/* ---- keys */
void kafka_key_encode(uint64_t id, uint8_t out[8]);
/* 0 and *id, or -1 when the key is not exactly 8 bytes */
int kafka_key_decode(const void *key, size_t len, uint64_t *id);

/* ---- admin */
/* Creates topic with exactly partitions partitions (replication factor
 * replication). An existing topic with the same partition count is fine;
 * one with another count is an error (counts are fixed: a key's partition
 * must never move). 0 or -1 with the reason in err. */
int kafka_create_topic(const char *brokers, const char *topic, int partitions, int replication,
                       int timeout_ms, char err[KAFKA_LOG_ERRLEN]);
/* The partition count of topic, or -1. */
int kafka_topic_partitions(const char *brokers, const char *topic, int timeout_ms,
                           char err[KAFKA_LOG_ERRLEN]);

/* "owner/topic:p1,p2,..." into out (partitions in the order given); 0, or -1
 * when it does not fit. The transactional.id of an owner of those partitions. */
int kafka_log_txn_id(char *out, size_t cap, const char *owner, const char *topic,
                     const int32_t *partitions, size_t n);

/* ---- producer */
typedef struct kafka_producer kafka_producer;
typedef struct kafka_consumer kafka_consumer;

typedef struct kafka_producer_config {
    const char *brokers;          /* "host:port[,host:port...]" */
    const char *transactional_id; /* NULL: idempotent, not transactional */
    size_t max_queued;            /* records held in memory; 0 = 100000 */
    int transaction_timeout_ms;   /* 0 = 60000; the coordinator aborts (and fences)
                                   * an open transaction older than this */
    int linger_ms;                /* 0 = 5 */
    /* non-transactional producers: called (on the caller's thread, inside
     * kafka_producer_poll/flush) once per record with its outcome */
    void (*on_delivery)(void *opaque, int ok, int32_t partition, int64_t offset);
    /* the same, with the tag given to kafka_produce_tagged (0 for
     * kafka_produce): which of the caller's records this is */
    void (*on_tagged)(void *opaque, uint64_t tag, int ok);
    void *opaque;
} kafka_producer_config;

/* Creates the producer; a transactional one also runs init_transactions
 * (fencing an earlier producer with the same id) within timeout_ms.
 * NULL with the reason in err. */
kafka_producer *kafka_producer_new(const kafka_producer_config *cfg, int timeout_ms,
                                   char err[KAFKA_LOG_ERRLEN]);
/* Readable when delivery reports or errors wait: then kafka_producer_poll(p, 0). */
int kafka_producer_fd(kafka_producer *p);
/* Serves what waits (delivery reports), waiting at most timeout_ms; the count served. */
int kafka_producer_poll(kafka_producer *p, int timeout_ms);
/* Queues value (len <= KAFKA_LOG_MAX_VALUE) keyed by key on topic, to the
 * key's partition; the value is copied. KAFKA_OK, KAFKA_FULL, KAFKA_FENCED
 * (a fatal fence was seen earlier) or KAFKA_ERROR. */
kafka_result kafka_produce(kafka_producer *p, const char *topic, uint64_t key,
                           const void *value, size_t len);
/* kafka_produce to partition (-1: the key's, murmur2), and on_tagged will
 * name this record by tag (it must fit a pointer: uintptr_t). A caller that
 * picks the partition must pick the same one for a key every time. */
kafka_result kafka_produce_tagged(kafka_producer *p, const char *topic, int32_t partition, uint64_t key,
                                  const void *value, size_t len, uint64_t tag);
/* Waits until every queued record is delivered or failed: 0, or -1 on timeout. */
int kafka_producer_flush(kafka_producer *p, int timeout_ms);

/* Transactions (transactional producers only). Between begin and commit the
 * owner produces its output. */
/* input: the consumer whose positions the commit will carry (NULL: none);
 * its revocation count is noted, see kafka_txn_commit. */
kafka_result kafka_txn_begin(kafka_producer *p, kafka_consumer *input);
/* Commits the transaction: the output produced since begin and, when input
 * is given, input's current positions (the offset after the last record
 * kafka_consumer_poll returned, per assigned partition) together with
 * input's group metadata (input must be the consumer given to begin). If
 * input's partitions were revoked or lost since begin (a rebalance this
 * owner saw in kafka_consumer_poll), nothing is committed: the transaction
 * is aborted (KAFKA_ABORTED). A rebalance it has not seen yet (it was
 * stalled) is the broker's to catch: the group generation in the metadata
 * is stale, or the coordinator aborted the timed-out transaction and bumped
 * the epoch.
 * KAFKA_OK; KAFKA_ABORTED (aborted and input rewound: redo from the
 * committed offsets); KAFKA_FENCED (stop); KAFKA_ERROR. */
kafka_result kafka_txn_commit(kafka_producer *p, kafka_consumer *input, int timeout_ms);
/* Aborts the open transaction and, when input is given, rewinds it to its
 * committed offsets. KAFKA_OK, KAFKA_FENCED or KAFKA_ERROR. */
kafka_result kafka_txn_abort(kafka_producer *p, kafka_consumer *input, int timeout_ms);
bool kafka_txn_open(const kafka_producer *p);
/* Aborts an open transaction (best effort), flushes, destroys. NULL is fine. */
void kafka_producer_free(kafka_producer *p, int timeout_ms);

/* ---- consumer */
typedef enum kafka_rebalance {
    KAFKA_ASSIGNED,  /* these partitions are now the owner's */
    KAFKA_REVOKED,   /* taken away in an orderly rebalance: the owner may still
                      * commit or abort its open transaction now, inside the
                      * callback, then drops the partitions' state */
    KAFKA_LOST       /* taken away without the owner (its session expired, it
                      * was stalled): it must not commit; abort and drop */
} kafka_rebalance;

typedef struct kafka_partition {
    const char *topic;
    int32_t partition;
} kafka_partition;

typedef struct kafka_consumer_config {
    const char *brokers;
    const char *group;            /* consumer group; NULL: no group, read every
                                   * partition of topics from the beginning
                                   * (readers that check a topic's contents) */
    const char *const *topics;
    size_t ntopics;
    int session_timeout_ms;       /* 0 = 45000 */
    int max_poll_interval_ms;     /* 0 = 300000; the owner must poll more often */
    /* called on the caller's thread inside kafka_consumer_poll (and close) */
    void (*on_rebalance)(void *owner, kafka_rebalance what, const kafka_partition *parts, size_t n);
    void *owner;
} kafka_consumer_config;

typedef struct kafka_record {
    const char *topic;
    int32_t partition;
    int64_t offset;
    uint64_t key;
    const void *value;
    size_t len;
    void *msg_;                   /* the rd_kafka_message_t holding it */
} kafka_record;

kafka_consumer *kafka_consumer_new(const kafka_consumer_config *cfg, char err[KAFKA_LOG_ERRLEN]);
/* Readable when records or events wait: then kafka_consumer_poll(c, ..., 0). */
int kafka_consumer_fd(kafka_consumer *c);
/* Serves rebalance events and returns up to max records (0 .. max), waiting
 * at most timeout_ms for the first. Records stay valid until
 * kafka_records_release. Malformed records (key not 8 bytes, value longer
 * than KAFKA_LOG_MAX_VALUE) are skipped and counted; a skipped record still
 * advances the position. -1 on a fatal consumer error. */
int kafka_consumer_poll(kafka_consumer *c, kafka_record *out, size_t max, int timeout_ms);
void kafka_records_release(kafka_record *recs, size_t n);
/* Seeks every assigned partition back to its committed offset (the
 * beginning where none is committed). 0 or -1. */
int kafka_consumer_rewind(kafka_consumer *c, int timeout_ms);
/* Partitions at end of log (read_committed: the last stable offset) since
 * they were last assigned; a group-less reader has read everything
 * committed when this equals its partition count. */
size_t kafka_consumer_eof_count(const kafka_consumer *c);
size_t kafka_consumer_assigned_count(const kafka_consumer *c);
uint64_t kafka_consumer_malformed(const kafka_consumer *c);
/* Leaves the group (the owner's callback sees its partitions REVOKED) and
 * destroys. NULL is fine. */
void kafka_consumer_free(kafka_consumer *c);

#endif
