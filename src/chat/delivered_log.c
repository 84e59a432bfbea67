/* delivered_log.c -- delivered raises through the 'sends' topic (--kafka).
 *
 * A device's Ack is handled by the writers of the node that holds its
 * socket, but the member records of a conversation belong to the owner of
 * its 'sends' partition (cluster/chat_owner.h): a raise written anywhere
 * else would write the marks that node remembers (marks_cache.h), which
 * may be older than the owner's -- a read mark the owner stored since
 * would go back, a higher delivered mark would come down. So in the Kafka
 * mode every raise an Ack makes goes to the partition's owner as a record
 * of the 'sends' topic (cluster/delivered_record.h), one record per Ack
 * and partition, and the owner applies it with raise_delivered against its
 * own marks: only upward, so a record read twice changes nothing. That
 * holds for the conversations this node owns too: which node owns a
 * partition can change between the Ack and the write, the record's
 * partition cannot. The embedded mode and a cluster without Kafka keep
 * handing raises between local writers (writer_forward_delivered).
 *
 * A raise is a hint, as between local writers: one Kafka refuses, or one
 * from an Ack handled before the log started, is dropped and counted
 * (kafka_delivered_raises_dropped_total); the device's next ack in that
 * conversation raises the mark. The owner answers a record once the open
 * batch with its raises is committed, and commits the record's offset only
 * after; a raise held back behind a commit in flight of its conversation
 * (writer_commit_defer_raise) is stored in the batch after, so a kill -9
 * between the two loses that one raise. */
#include "chat/partition.h"
#include "chat/writer.h"
#include "chat/writer_internal.h"

#include <stdlib.h>

#include "cluster/delivered_record.h"
#include "cluster/send_log.h"
#include "core/metrics.h"

bool writer_logs_delivered(const writer *w) { return w->srv->cfg.cluster.kafka_brokers[0] != 0; }

void writer_log_delivered(writer *w, uint64_t user, const delivered_note *notes, size_t n) {
    if (n == 0) return;
    /* set once after the writers started (server.c), freed only after they
     * stopped: NULL means an Ack came before the log was up */
    send_log *sl = __atomic_load_n(&w->srv->send_log, __ATOMIC_ACQUIRE);
    uint8_t *value = sl ? malloc(DELIVERED_RECORD_MAX) : NULL;
    delivered_raise *raises = value ? malloc(DELIVERED_RECORD_RAISES_MAX * sizeof *raises) : NULL;
    if (!raises) {   /* a hint: the device's next ack raises the marks */
        METRIC_ADD(kafka_delivered_raises_dropped_total, n);
        free(value);
        return;
    }
    uint32_t partitions = w->group->partitions;
    bool taken[DELIVERED_RECORD_RAISES_MAX] = {false};
    if (n > DELIVERED_RECORD_RAISES_MAX) {   /* an Ack collects at most ACK_CONVS */
        METRIC_ADD(kafka_delivered_raises_dropped_total, n - DELIVERED_RECORD_RAISES_MAX);
        n = DELIVERED_RECORD_RAISES_MAX;
    }
    /* one record per partition: the raises of the first one not taken yet,
     * then of the next (n is at most 256: quadratic is fine) */
    for (size_t first = 0; first < n; first++) {
        if (taken[first]) continue;
        uint32_t p = conv_partition(notes[first].conv, partitions);
        size_t k = 0;
        for (size_t i = first; i < n; i++) {
            if (taken[i] || conv_partition(notes[i].conv, partitions) != p) continue;
            taken[i] = true;
            delivered_raise *r = &raises[k++];
            r->conv = notes[i].conv;
            r->seq = notes[i].seq;
            r->n_senders = 0;
            for (uint32_t j = 0; j < notes[i].n_senders && j < DELIVERED_RECORD_SENDERS; j++)
                r->senders[r->n_senders++] = notes[i].senders[j];
        }
        size_t len = delivered_record_encode(user, raises, k, value);
        if (!len || send_log_submit_delivered(sl, p, value, len)) METRIC_ADD(kafka_delivered_raises_dropped_total, k);
    }
    free(raises);
    free(value);
}

int writer_submit_delivered(writer *w, uint32_t partition, uint64_t answer_conn, uint64_t user,
                            const delivered_raise *raises, size_t n) {
    if (n == 0 || n > DELIVERED_RECORD_RAISES_MAX) return -2;
    /* the owner of partition writes only that partition's member records */
    for (size_t i = 0; i < n; i++)
        if (conv_partition(raises[i].conv, w->group->partitions) != partition) return -2;
    chat_request *r = calloc(1, sizeof *r);
    chat_forward *f = r ? calloc(1, sizeof *f) : NULL;
    delivered_note *notes = f ? calloc(n, sizeof *notes) : NULL;
    if (!notes) {
        free(f);
        free(r);
        return -1;
    }
    for (size_t i = 0; i < n; i++) {
        delivered_note *note = &notes[i];
        note->conv = raises[i].conv;
        note->user = user;
        note->seq = raises[i].seq;
        for (uint32_t j = 0; j < raises[i].n_senders && j < NOTE_SENDERS; j++)
            note->senders[note->n_senders++] = raises[i].senders[j];
    }
    r->op = CHAT_DELIVERED;
    r->conn_id = answer_conn;   /* user_id stays 0: not a device's request */
    r->forward = f;
    f->notes = notes;
    f->n_notes = f->cap_notes = n;
    f->answer = true;
    if (writer_submit(w, r) == 0) return 0;
    chat_request_free(r);
    return -1;
}
