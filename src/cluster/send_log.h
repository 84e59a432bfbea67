/* send_log.h -- the origin side of --kafka (DESIGN.md §6): a node's gateway
 * sessions hand every request a conversation writer owns (sends, read
 * marks, membership, renames, accept/decline, OpenDirect, CreateGroup:
 * chat/writer.h writer_request_partition) to the 'sends' topic instead of
 * to a writer. The topic has the store's P partitions and a request goes
 * to the Kafka partition of its store partition (conv mod P for a
 * conversation's, chat/partition.h): so the owner of a Kafka partition is
 * the only node that writes that store partition's seqs, member records,
 * conversation ids and fan-out log (before, requests other than sends were
 * stored by whichever chat node took them, and two nodes numbered one
 * partition's fan-out log from their own counters: an acknowledged
 * message could be skipped by fan-out or fanned out twice). The chat node that owns the
 * record's partition (chat_owner.h) stores it and answers over the node
 * link; this side only remembers, per request, whether it is durable in
 * Kafka and whether an answer came:
 *
 *   - the producer is idempotent (no duplicates from its own retries) and
 *     acks=all; a record Kafka refused is answered UNAVAILABLE "retry"
 *     (the device retries with the same client_msg_id);
 *   - a SendMessage durable in Kafka with no answer after SEND_LOG_ACCEPTED_MS
 *     (the owner is waiting for the store, or a failover is under way) is
 *     answered ACCEPTED: durable, not stored yet. The SENT (with its seq)
 *     that the owner sends once it stored it is a second answer to the same
 *     request id.
 *
 * Pending requests are remembered in a ring of SEND_LOG_PENDING slots; an
 * older one is forgotten (its ACCEPTED is not sent; its SENT still is).
 * One thread serves the producer's delivery reports and the ACCEPTED
 * deadlines. */
#ifndef PARLEY_CLUSTER_SEND_LOG_H
#define PARLEY_CLUSTER_SEND_LOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "chat/outbox.h"
#include "chat/writer.h"

enum {
    SEND_LOG_PENDING = 16384,       /* requests remembered for ACCEPTED */
    SEND_LOG_ACCEPTED_MS = 1500,    /* durable and unanswered this long: ACCEPTED */
};

#define SEND_LOG_TOPIC "sends"

typedef struct send_log send_log;

/* Makes the 'sends' topic with partitions partitions (or finds it with
 * exactly that many), starts the producer and its thread. local: this
 * node's connections (answers ACCEPTED and UNAVAILABLE go there). NULL
 * with the reason in err. */
send_log *send_log_start(const char *brokers, const char *self, uint32_t partitions, const outbox *local,
                         char *err, size_t errlen);
/* Whether r goes to Kafka: a request a conversation writer owns
 * (writer_request_partition), to the record partition of that partition. */
bool send_log_takes(const send_log *sl, const chat_request *r);
/* Queues r as a 'sends' record and frees it: 0. -1 when it cannot be queued
 * now (r is still the caller's: the device is told to retry). */
int send_log_submit(send_log *sl, chat_request *r);
/* --kafka: a delivered record (delivered_record.h) of store partition
 * partition, queued to its 'sends' partition; nobody is answered about it
 * (a raise is a hint: one Kafka refuses is counted in
 * kafka_delivered_raises_dropped_total, and the device's next ack raises
 * the mark). 0 when queued, -1 not. Any thread. */
int send_log_submit_delivered(send_log *sl, uint32_t partition, const uint8_t *value, size_t len);
/* An answer is going to this node's connection conn_id: no ACCEPTED for
 * that request from now on. Any thread. */
void send_log_answered(send_log *sl, uint64_t conn_id, const uint8_t *frame, size_t len);
/* Stops the thread and flushes what is queued (bounded), frees. NULL is fine. */
void send_log_free(send_log *sl);

#endif
