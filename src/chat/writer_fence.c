/* writer_fence.c -- a conversation writer taking a conversation in from a
 * fenced store (store_last_seq_heads, src/store/store_cassandra_fence.c).
 *
 * Why: with several writers (a partition moved to this node, a restart,
 * or this writer's own commit refused with STORE_CONFLICT and its caches
 * dropped) the conversation's seqs are counted on from the store's head,
 * not from the last_seq hint, and the messages in (hint, head] are ones
 * whose writer stopped between storing them (its conditional batch won)
 * and writing their dedupe records (its logged batch). Their senders'
 * retries must be answered with those seqs, never stored a second time:
 * so their (sender, device, client_msg_id) go into this writer's dedupe
 * cache, and their dedupe records into its open batch (idempotent puts:
 * a later retry, on any node, finds them in the store).
 *
 * Their fan-out log entries were in that logged batch too, so no replay
 * would ever fan them out: each is given a log entry (the next offset of
 * its partition) in the open batch and published with it, as a silent
 * pending send (answered by no one), like a membership message. They take
 * room in the writer's sends: with less room than messages the load fails
 * (-1, nothing cached; the caller answers retry and the next turn starts
 * with an empty batch). A stalled writer that resumes also publishes them:
 * an inbox may then hold one twice (see test_drill_zombie).
 *
 * On a single-writer store hint and head are equal and this is the read
 * it always was. */
#include "chat/writer_internal.h"

#include <stdlib.h>
#include <string.h>

#include "chat/partition.h"
#include "core/log.h"
#include "core/metrics.h"
#include "store/store.h"

/* messages taken in at one cold load, at most (a stalled writer leaves at
 * most one commit: BATCH_MAX) */
enum { TAKE_IN_MAX = 4096 };

typedef struct take_in {
    writer *w;
    uint64_t conv;
    size_t n, published;
} take_in;

static int take_one(void *ud, uint64_t seq, const uint8_t *msg, size_t len) {
    take_in *t = ud;
    Parley__V1__Message *m = parley__v1__message__unpack(NULL, len, msg);
    if (!m) return 0;
    writer *w = t->w;
    if (w->n_sends < BATCH_MAX) {   /* room checked before the scan */
        uint32_t partition = conv_partition(t->conv, w->group->partitions);
        pending_send *p = &w->sends[w->n_sends++];
        memset(p, 0, sizeof *p);
        p->conv = t->conv;
        p->seq = seq;
        p->user_id = m->sender_user_id;
        p->ts = m->server_ts;
        p->silent = true;
        p->not_membership = m->type != PARLEY__V1__MESSAGE_TYPE__MEMBERSHIP;
        p->message = blob_new(msg, len);
        if (!p->message) abort();
        p->offset = writer_next_log_offset(w, partition);
        store_put_log(w->batch, partition, p->offset, t->conv, seq);
        t->published++;
    }
    if (m->client_msg_id.len > 0 && m->sender_user_id) {
        writer_cache_dedupe_put(&t->w->cache, m->sender_user_id, m->sender_device_id, m->client_msg_id.data,
                                m->client_msg_id.len, t->conv, seq, m->server_ts);
        store_put_client_msg(t->w->batch, m->sender_user_id, m->sender_device_id, m->client_msg_id.data,
                             m->client_msg_id.len, t->conv, seq, m->server_ts);
        t->n++;
    }
    parley__v1__message__free_unpacked(m, NULL);
    return 0;
}

int writer_fence_last_seq(writer *w, uint64_t conv, uint64_t *seq) {
    uint64_t hint = 0, head = 0;
    if (store_last_seq_heads(w->srv->store, conv, &hint, &head) < 0) return -1;
    *seq = head;
    if (head <= hint) return 0;
    uint64_t span = head - hint;
    /* one slot left over for the request that asked */
    if (span >= TAKE_IN_MAX || w->n_sends + span >= BATCH_MAX) {
        log_warn("writer: conversation %llu: %llu message(s) in (%llu, %llu] to take in, room for %zu: not now",
                 (unsigned long long)conv, (unsigned long long)span, (unsigned long long)hint,
                 (unsigned long long)head, (size_t)(BATCH_MAX - 1 - w->n_sends));
        return -1;
    }
    take_in t = {w, conv, 0, 0};
    if (store_scan_messages_back(w->srv->store, conv, head + 1, span > TAKE_IN_MAX ? TAKE_IN_MAX : (uint32_t)span,
                                 take_one, &t) < 0)
        return -1;
    writer_commit_touch(w, conv);
    log_info("writer: conversation %llu: %zu message(s) in (%llu, %llu] stored without their dedupe records: taken in, "
             "%zu published to fan-out", (unsigned long long)conv, t.n, (unsigned long long)hint,
             (unsigned long long)head, t.published);
    return 0;
}
