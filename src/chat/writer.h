/* writer.h -- the write path: owner threads that make every mutation.
 *
 * Conversations fall into P partitions (chat/partition.h); each partition
 * is owned by one of N conversation writers (--writers), and requests that
 * are not about one conversation (registration, devices, keys, link tokens,
 * device messages, consent) by one accounts owner. writer_submit routes a
 * request to its owner (writer_route.c, which also says how a request that
 * touches two owners' data stays race-free). An owner validates (membership,
 * limits, client_msg_id dedupe), assigns ids and per-conversation seqs (it is
 * their single owner, so no locks), commits a batch to the store (group
 * commit: one fsync for every request that arrived while the previous one
 * ran), and only then answers (SENT for messages) and publishes to fan-out.
 *
 * Sends are batched. Any other mutation (register, groups, read marks)
 * commits what is pending first and then commits alone, so reads inside
 * an owner always see the store up to date for those. */
#ifndef PARLEY_CHAT_WRITER_H
#define PARLEY_CHAT_WRITER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/parley.pb-c.h"
#include "server.h"

typedef enum chat_op {
    CHAT_FRAME,   /* a request frame from a device */
    CHAT_ACK,     /* a device advanced its cursor over (ack_from, ack_to] */
    /* between the write path's own threads (writer_route.c), never from a device: */
    CHAT_DELIVERED,      /* raise a member's delivered seq (to the conversation's owner) */
    CHAT_CONSENT,        /* consent changes, then answers to post (to the accounts owner) */
    CHAT_DEVICE_REMOVED, /* a user removed a device (from the accounts owner to the others) */
} chat_op;

struct chat_forward;

typedef struct chat_request {
    chat_op op;
    uint64_t conn_id;
    uint64_t request_id;
    uint64_t user_id;        /* the signed-in device; 0 before sign-in */
    uint32_t device_id;
    Parley__V1__Frame *frame;/* CHAT_FRAME: owned by the request */
    bool frame_flat;         /* frame is one malloc block (gateway/send_read.h): free(), not free_unpacked */
    uint64_t ack_from, ack_to;
    struct quota *share;     /* counted in user_id's writer share: left when freed */
    size_t queued_bytes;     /* counted in g_metrics.writer_queued_bytes until freed */
    struct chat_forward *forward; /* the internal ops' payload (writer_internal.h) */
    /* --kafka: the 'sends' record r came in (cluster/chat_owner.c), by which
     * a CreateGroup run again finds the group its first run made
     * (chat/group_origin.h); from_log false for any other request */
    bool from_log;
    uint32_t log_partition;
    uint64_t log_offset;
} chat_request;

typedef struct writer writer;

/* Starts every owner; returns the handle requests enter by. */
writer *writer_start(server *srv);
/* Never blocks: -1 when the owner's queue is full (answer UNAVAILABLE).
 * Takes ownership of r on success. */
int writer_submit(writer *w, chat_request *r);
/* --kafka (cluster/chat_owner.c): this node was just given conversation
 * partitions another node may have written since this one last did: every
 * conversation writer, before the next request it takes, finishes its
 * commits in flight and reloads what it cached (seqs, conversation ids,
 * fan-out log offsets, dedupe and member records) from the store. Any
 * thread; requests submitted after this call see the reload. */
void writer_forget_cached(writer *w);
/* The conversation partition (chat/partition.h) whose writer owns request
 * r: the partition of the conversation it names, of the direct pair it
 * opens, or the one a CreateGroup is created in (the same on every node
 * for the same user and request id). false for requests of the accounts
 * owner (registration, devices, keys, blocks...) and for acks. --kafka
 * (server_submit) sends every request with a partition through the owner
 * of that partition, so one node at a time writes a partition. */
bool writer_request_partition(const chat_request *r, uint32_t partitions, uint32_t *p);
/* --kafka (cluster/chat_owner.c): a delivered record (cluster/
 * delivered_record.h) read from 'sends' partition partition, which this
 * node owns: user's raises, applied by the writer of that partition (only
 * upward) and answered OK to answer_conn once stored. 0 when taken, -1
 * when not (that writer's queue is full: read it again later), -2 when it
 * is not to be applied (n is 0 or too many, or a conversation is of
 * another partition). */
struct delivered_raise;
int writer_submit_delivered(writer *w, uint32_t partition, uint64_t answer_conn, uint64_t user,
                            const struct delivered_raise *raises, size_t n);
/* Finishes every queued request, then stops the threads. */
void writer_stop(writer *w);
void chat_request_free(chat_request *r);

#endif
