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
 * On a single-writer store hint and head are equal and this is the read
 * it always was. Not done here: publishing those messages to fan-out (the
 * partition hand-over replay re-reads them from the log). */
#include "chat/writer_internal.h"

#include <stdlib.h>

#include "core/log.h"
#include "core/metrics.h"
#include "store/store.h"

/* messages taken in at one cold load, at most (a stalled writer leaves at
 * most one commit: BATCH_MAX) */
enum { TAKE_IN_MAX = 4096 };

typedef struct take_in {
    writer *w;
    uint64_t conv;
    size_t n;
} take_in;

static int take_one(void *ud, uint64_t seq, const uint8_t *msg, size_t len) {
    take_in *t = ud;
    Parley__V1__Message *m = parley__v1__message__unpack(NULL, len, msg);
    if (!m) return 0;
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
    take_in t = {w, conv, 0};
    if (store_scan_messages_back(w->srv->store, conv, head + 1, span > TAKE_IN_MAX ? TAKE_IN_MAX : (uint32_t)span,
                                 take_one, &t) < 0)
        return -1;
    writer_commit_touch(w, conv);
    log_info("writer: conversation %llu: %zu message(s) in (%llu, %llu] stored without their dedupe records: taken in",
             (unsigned long long)conv, t.n, (unsigned long long)hint, (unsigned long long)head);
    return 0;
}
