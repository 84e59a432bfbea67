/* chat_owner.h -- the consumer side of --kafka (DESIGN.md §6): a chat node
 * in the consumer group 'parley-chat' on the 'sends' topic. Kafka gives
 * each partition (= the store's conversation partition, send_log.h) one
 * owner at a time; the owner feeds each record into its local writers as
 * node_forward's REQUEST path does (node_forward_submit_owned), and the
 * writer's answer goes back to the origin node over the link (or to a local
 * worker).
 *
 * One thread, one batch at a time (at most OWNER_BATCH records):
 *   poll -> submit each record -> wait until the writer answered every one
 *   (an answer means its store commit is over) -> begin a transaction and
 *   commit the input offsets with the group metadata in it.
 * A record answered UNAVAILABLE, INTERNAL or INSUFFICIENT_STORAGE (the
 * store failed or the writer was busy) is not answered to its origin: the
 * consumer is rewound to the committed offsets and the batch read again after a back-off; meanwhile /healthz says "waiting
 * for the store" and the origin answers ACCEPTED (send_log.h).
 *
 * Why a retried or reprocessed record never takes a second seq: the writer
 * stores a send together with its dedupe record (user, device,
 * client_msg_id) -> first seq in one store batch, and looks the dedupe up
 * before giving a seq. A record is reprocessed only when its offset was not
 * committed, which happens only after its store commit was answered; so a
 * reprocessed record either finds its dedupe record (the same seq, the same
 * SENT) or its first attempt never stored anything. A device's retry (same
 * client_msg_id) is a new record with the same key, in the same partition
 * after the first: the same argument. A CreateGroup likewise: the group
 * it creates is stored with a record of the 'sends' record that asked
 * (chat/group_origin.h), which its run again finds and answers. A node
 * given partitions reloads its
 * writers' cached seqs, ids and dedupe records first (writer_forget_cached):
 * another node may have written them since.
 *
 * What stays open for a zombie (an owner SIGSTOPped with a batch inside its
 * writers, resumed after the group gave its partitions to another node): its
 * Kafka commit fails (stale generation, or the coordinator aborted the
 * timed-out transaction), but the store commit its writer already sent may
 * land after the new owner stored the next sends of that conversation with
 * the same seq -- the Cassandra message rows are plain writes, last write
 * wins. Closing it needs the store commit itself to be conditional on the
 * owner's epoch (an LWT on a per-partition owner row, IF epoch = mine, in the
 * same batch), or the owner to check its group generation right before each
 * store commit (which narrows the window but cannot close it: the stall can
 * come between the check and the write). Not built: see README.
 *
 * Test hook (tests/integration/test_kafka_group_rerun.c): with the
 * environment variable PARLEY_TEST_HOLD_OFFSET_COMMIT=create_group, the
 * owner thread stops before committing the input offsets of the first
 * batch that held a CreateGroup (stored and answered): it commits nothing
 * more and takes no more records until the node stops or is killed. So a
 * test can kill -9 the node exactly between the store commit and the
 * Kafka commit; the next owner runs the CreateGroup again. Logged at
 * start; unset, nothing changes. */
#ifndef PARLEY_CLUSTER_CHAT_OWNER_H
#define PARLEY_CLUSTER_CHAT_OWNER_H

#include <stddef.h>
#include <stdint.h>

#include "server.h"

enum {
    OWNER_BATCH = 256,              /* records in the writers at once */
    OWNER_SESSION_MS = 10000,       /* the group's session timeout: a dead node's partitions move after it */
    OWNER_ANSWER_WAIT_MS = 60000,   /* a batch's answers; past it the batch is read again */
};
/* conn ids of owned records (remote ids with this bit too: node_forward.c) */
#define CHAT_OWNER_ID_BITS ((1ull << 63) | (1ull << 61))

typedef struct chat_owner chat_owner;

/* Joins the group and starts the thread (after the writer and the node
 * link started). NULL with the reason in err. */
chat_owner *chat_owner_start(server *srv, const char *brokers, char *err, size_t errlen);
/* The writer answered an owned record (conn_id has CHAT_OWNER_ID_BITS):
 * notes it and hands the answer to its origin unless it is to be retried. */
void chat_owner_answered(chat_owner *co, uint64_t conn_id, const uint8_t *frame, size_t len, uint64_t user,
                         uint32_t device);
/* Leaves the group (its partitions go to the other chat nodes) and stops
 * the thread; answers still coming are dropped. Before the writer stops. */
void chat_owner_stop(chat_owner *co);
/* After the writer stopped. NULL is fine. */
void chat_owner_free(chat_owner *co);

#endif
