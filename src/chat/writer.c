/* writer.c -- one owner's thread on the write path (a conversation writer
 * or the accounts owner; writer_route.c routes between them). See writer.h
 * for the contract.
 *
 * One turn of the loop: take every queued request (up to BATCH_MAX), handle
 * each into the open store batch, commit once, then send the answers and
 * publish the new messages to fan-out, in seq order. Each message's fan-out
 * log offset comes from its partition's range (chat/log_range.h), taken
 * anew at every load of the state. A request that is not a
 * send commits the open batch first and then its own (see writer.h).
 * Consent changes a conversation writer makes are applied by the accounts
 * owner, which also posts that batch's answers after its commit. */
#include "chat/writer.h"
#include "cluster/node_forward.h"
#include "chat/writer_internal.h"

#include <pthread.h>
#include <stdarg.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>

#include "chat/consent.h"
#include "chat/group_origin.h"
#include "chat/log_range.h"
#include "chat/membership.h"
#include "chat/partition.h"
#include "chat/push.h"
#include "chat/push_batch.h"
#include "chat/recent_inbox.h"
#include "chat/reply.h"
#include "chat/sent_answer.h"
#include "chat/stored_message.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/mpsc.h"
#include "core/quota.h"
#include "core/u64map.h"
#include "push/push_subscription.h"


void chat_request_free(chat_request *r) {
    if (!r) return;
    if (r->share) quota_writer_leave(r->share, r->user_id);
    if (r->queued_bytes) atomic_fetch_sub(&g_metrics.writer_queued_bytes, (long)r->queued_bytes);
    if (r->frame && r->frame_flat) free(r->frame);
    else if (r->frame) parley__v1__frame__free_unpacked(r->frame, NULL);
    chat_forward_free(r->forward);
    free(r);
}

static bool sync_commits(const writer *w) { return w->srv->cfg.fsync != FSYNC_OFF; }

/* ------------------------------------------------------------- state load */

static void conv_counter_name(char *out, size_t cap, uint32_t partition) {
    snprintf(out, cap, "conversation.%u", partition);
}

/* Partition p's fan-out log offsets: a new range (chat/log_range.h),
 * above every range the store shows for p and above the one this writer
 * had, claimed, its counter put in b. 0 or -1. */
static int take_log_range(writer *w, store_batch *b, uint32_t p) {
    uint32_t range = 0;
    if (log_range_load(w->srv->store, b, p, w->group->user_partitions, log_range_of(w->last_offset[p]), &range) < 0)
        return -1;
    w->last_offset[p] = log_range_base(range);   /* the next offset given is the range's first */
    return 0;
}

static int load_state(writer *w) {
    store *s = w->srv->store;
    const writer_group *g = w->group;
    if (store_get_counter(s, "user", &w->last_user_id) < 0) return -1;
    u64map_free(&w->conv_last_seq);
    if (w->accounts) return 0;
    /* ids up to the counter of a store from before partitions are taken */
    uint64_t legacy = 0;
    if (store_get_counter(s, "conversation", &legacy) < 0) return -1;
    store_batch *ranges = store_batch_new();   /* the log range counters, hints (log_range.h) */
    int rc = 0;
    for (uint32_t p = w->index; p < g->partitions && rc == 0; p += g->n) {
        char name[32];
        conv_counter_name(name, sizeof name, p);
        uint64_t last = 0;
        if (store_get_counter(s, name, &last) < 0) rc = -1;
        w->last_conv_id[p] = last > legacy ? last : legacy;   /* a floor: new ids are above it */
        if (rc == 0) rc = take_log_range(w, ranges, p);
    }
    /* not synced: a range nothing was written in may be taken again after a
     * crash; a commit that writes in it syncs this with it */
    if (store_batch_count(ranges) > 0 && store_commit(s, ranges, false) != 0)
        log_warn("%s: the log range counters were not stored (hints only: the claims stand)", w->name);
    store_batch_free(ranges);
    /* a partition left in its old range may have moved meanwhile: every
     * range is taken again between turns until that works */
    if (rc != 0) w->renew_log_ranges = w->log_ranges_stale = true;
    return rc;
}

/* Partitions whose range is far used up get a new one (log_range.h), and
 * every partition does after a load that failed. A store failure leaves
 * the old one in use: the next turn tries again (with 2^31 offsets still
 * to give, for a range used up). */
static void renew_log_ranges(writer *w) {
    if (!w->renew_log_ranges || w->accounts) return;
    const writer_group *g = w->group;
    store_batch *ranges = store_batch_new();
    int rc = 0;
    for (uint32_t p = w->index; p < g->partitions && rc == 0; p += g->n)
        if (w->log_ranges_stale || log_range_n(w->last_offset[p]) >= LOG_RANGE_RENEW_AT)
            rc = take_log_range(w, ranges, p);
    if (store_batch_count(ranges) > 0 && store_commit(w->srv->store, ranges, false) != 0)
        log_warn("%s: the log range counters were not stored (hints only: the claims stand)", w->name);
    store_batch_free(ranges);
    if (rc == 0) w->renew_log_ranges = w->log_ranges_stale = false;
}

uint64_t writer_next_log_offset(writer *w, uint32_t partition) {
    uint64_t offset = ++w->last_offset[partition];
    /* the new range is taken between turns, long before n could wrap */
    if (log_range_n(offset) == UINT32_MAX) abort();
    if (log_range_n(offset) >= LOG_RANGE_RENEW_AT) w->renew_log_ranges = true;
    return offset;
}

/* 1 with *seq, 0 when the conversation has no messages, -1 on error */
int conv_last_seq(writer *w, uint64_t conv, uint64_t *seq) {
    uint64_t *cached = u64map_get(&w->conv_last_seq, conv);
    if (cached) {
        *seq = *cached;
        return 1;
    }
    METRIC_INC(writer_last_seq_reads_total);
    if (writer_fence_last_seq(w, conv, seq) < 0) return -1;
    if (w->conv_last_seq.count >= CONV_CACHE_MAX) u64map_free(&w->conv_last_seq);
    u64map_put(&w->conv_last_seq, conv, *seq);
    return *seq ? 1 : 0;
}

/* ------------------------------------------------------------- committing */

void writer_reply_later(writer *w, outbound *m) {
    if (w->n_replies == BATCH_MAX) abort(); /* bounded by BATCH_MAX requests per batch */
    w->replies[w->n_replies++] = m;
}

enum {
    PUSHES_MAX = 1 << 20,        /* per batch; a bound on memory, far above real use */
    MAX_DEVICES_PER_PUSH = 64,   /* connections of one user told (as push.c) */
};

void writer_post_later(writer *w, outbound *m) {
    if (!m) return;
    if (w->n_pushes == w->cap_pushes) {
        size_t cap = w->cap_pushes ? w->cap_pushes * 2 : 64;
        outbound **grown = cap <= PUSHES_MAX ? realloc(w->pushes, cap * sizeof *grown) : NULL;
        if (!grown) {
            outbound_free(m);
            return;
        }
        w->pushes = grown;
        w->cap_pushes = cap;
    }
    w->pushes[w->n_pushes++] = m;
}

void writer_push_later(writer *w, uint64_t user, const Parley__V1__Frame *frame, uint64_t skip_conn) {
    registry_entry entries[MAX_DEVICES_PER_PUSH];
    size_t n = node_sessions_lookup(w->srv, user, entries, MAX_DEVICES_PER_PUSH);   /* this node's and others' */
    if (n > MAX_DEVICES_PER_PUSH) n = MAX_DEVICES_PER_PUSH;
    for (size_t i = 0; i < n; i++)
        if (entries[i].conn_id != skip_conn) writer_post_later(w, reply_pack(OUT_PUSH, entries[i].conn_id, frame));
}

static bool note_append(note_list *l, const delivered_note *n) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        delivered_note *grown = realloc(l->items, cap * sizeof *grown);
        if (!grown) return false;   /* a receipt is ephemeral: dropped when out of memory */
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->n++] = *n;
    return true;
}

static void notes_committed(writer *w, note_list *committed) {
    for (size_t i = 0; i < committed->n; i++) note_append(&w->notes_due, &committed->items[i]);
    committed->n = 0;
}

static int note_order(const void *x, const void *y) {
    const delivered_note *a = x, *b = y;
    if (a->conv != b->conv) return a->conv < b->conv ? -1 : 1;
    if (a->user != b->user) return a->user < b->user ? -1 : 1;
    return a->seq < b->seq ? -1 : a->seq > b->seq;
}

/* Sends the due DELIVERED receipts: per (conversation, member) the highest
 * seq, once to each sender noted since the last flush. */
static void flush_notes(writer *w, uint64_t now_ms) {
    note_list *l = &w->notes_due;
    w->notes_flushed_ms = now_ms;
    if (l->n == 0) return;
    qsort(l->items, l->n, sizeof *l->items, note_order);
    push_batch senders;   /* every sender's sessions in one Redis round (--redis) */
    push_batch_init(&senders, w->srv);
    for (size_t i = 0; i < l->n; i++)
        for (uint32_t s = 0; s < l->items[i].n_senders; s++) push_batch_add(&senders, l->items[i].senders[s]);
    push_batch_lookup(&senders);
    for (size_t i = 0; i < l->n;) {
        size_t j = i;
        while (j < l->n && l->items[j].conv == l->items[i].conv && l->items[j].user == l->items[i].user) j++;
        uint64_t seq = l->items[j - 1].seq;   /* sorted: the last is the highest */
        uint64_t told[4 * NOTE_SENDERS];
        size_t n_told = 0;
        for (size_t k = i; k < j; k++) {
            for (uint32_t s = 0; s < l->items[k].n_senders; s++) {
                uint64_t to = l->items[k].senders[s];
                bool seen = false;
                for (size_t t = 0; t < n_told && !seen; t++) seen = told[t] == to;
                if (seen || n_told == sizeof told / sizeof told[0]) continue;
                told[n_told++] = to;
                push_receipt(w->srv, to, l->items[i].conv, l->items[i].user, PARLEY__V1__RECEIPT_KIND__DELIVERED,
                             seq, 0);
            }
        }
        i = j;
    }
    push_batch_end(&senders);
    l->n = 0;
}

static void send_pushes(writer *w, outbound **pushes, size_t n, bool committed) {
    for (size_t i = 0; i < n; i++) {
        if (committed) outbound_send(w->srv->outbox, pushes[i]);
        else outbound_free(pushes[i]);
    }
}

static void post_pushes(writer *w, bool committed) {
    send_pushes(w, w->pushes, w->n_pushes, committed);
    w->n_pushes = 0;
}

/* the queue item of a committed message; the item takes its reference */
static queue_item *publish_item(writer *w, pending_send *p) {
    queue_item *item = calloc(1, sizeof *item);   /* replayed, deliveries: 0 */
    if (!item) abort();
    item->partition = conv_partition(p->conv, w->group->partitions);
    item->offset = p->offset;
    item->conversation_id = p->conv;
    item->seq = p->seq;
    item->sender_user_id = p->user_id;
    item->ts = p->ts;
    item->membership = p->silent && !p->not_membership;
    item->message = p->message;
    p->message = NULL;
    return item;
}

/* The SENT answer for p (chat/sent_answer.h: written by hand, not packed
 * through protobuf-c): through the port now, or held for the accounts
 * owner to post after the consent changes it waits for commit. */
static outbound *answer_sent(writer *w, const pending_send *p, bool hold) {
    sent_answer a = {p->request_id, p->conv, p->seq, p->ts, p->duplicate};
    uint8_t frame[SENT_ANSWER_MAX];
    size_t n = sent_answer_encode(&a, frame);
    if (!hold) {
        outbox_answer(w->srv->outbox, p->conn_id, frame, n, 0, 0);
        return NULL;
    }
    outbound *m = outbound_new(OUT_ANSWER, p->conn_id, n);
    memcpy(m->data, frame, n);
    return m;
}

/* Commits the open batch; then answers and publishes, or on failure answers
 * INTERNAL and forgets the in-memory state that assumed the commit. */
static void put_pending_members(writer *w) {
    for (size_t i = 0; i < w->n_members; i++) {
        pending_member *pm = &w->members[i];
        store_put_member_update(w->batch, pm->conv, pm->user, &pm->before, pm->record);
        writer_commit_touch(w, pm->conv);
        if (writer_owns_conv(w, pm->conv)) writer_cache_member_put(&w->cache, pm->conv, pm->user, pm->record);
        marks_cache_set(&w->marks, pm->conv, pm->user, pm->record->read_seq, pm->record->delivered_seq);
        parley__store__member__free_unpacked(pm->record, NULL);
    }
    w->n_members = 0;
}

static pending_member *find_pending(writer *w, uint64_t conv, uint64_t user) {
    for (size_t i = 0; i < w->n_members; i++)
        if (w->members[i].conv == conv && w->members[i].user == user) return &w->members[i];
    return NULL;
}

Parley__Store__Member *writer_member_for_update(writer *w, uint64_t conv, uint64_t user) {
    pending_member *pending = find_pending(w, conv, user);
    if (pending) return pending->record;
    Parley__Store__Member *m = NULL;
    int found = writer_read_member(w, conv, user, &m);
    w->member_read_failed = found < 0;
    if (found != 1) return NULL;
    /* marks raised in the open batch without a read (raise_delivered) are
     * not in the store yet (nor in a record the cache held before): the
     * record carries them from here on */
    marks_slot *known = marks_cache_find(&w->marks, conv, user);
    if (known) {
        m->read_seq = known->read_seq;
        m->delivered_seq = known->delivered_seq;
    }
    if (w->n_members == w->cap_members) {
        size_t cap = w->cap_members ? w->cap_members * 2 : 64;
        pending_member *grown = realloc(w->members, cap * sizeof *grown);
        if (!grown) abort();
        w->members = grown;
        w->cap_members = cap;
    }
    w->members[w->n_members++] = (pending_member){conv, user, m, *m};
    return m;
}

/* The open batch's writes that wait for the flush: hints to other owners
 * (they do not wait for this commit), folded device acks, member records. */
static void flush_prepare(writer *w) {
    writer_send_delivered(w);
    writer_put_device_acks(w);
    put_pending_members(w);
}

static bool open_batch_empty(const writer *w) {
    return store_batch_count(w->batch) == 0 && w->n_sends == 0 && w->n_replies == 0 && w->n_pushes == 0;
}

/* The open batch as a commit_parts; its lists are emptied by
 * writer_commit_finish (the caller resets the counts). */
static commit_parts open_parts(writer *w) {
    return (commit_parts){w->sends, w->n_sends, w->held, w->n_held, w->replies, w->n_replies,
                          w->pushes, w->n_pushes, &w->notes_open, w->consent_out.n > 0 || w->consent_dirty};
}

static void open_parts_done(writer *w, int rc) {
    if (rc != 0) {   /* the failed batch keeps its writes: start afresh */
        store_batch_free(w->batch);
        w->batch = store_batch_new();
    }
    w->n_sends = 0;
    w->n_replies = 0;
    w->n_pushes = 0;
    w->n_held = 0;
}

/* After a failed commit: forget the in-memory state that assumed it. With
 * commits in flight (writer_commit.c) the caller first waits for all of
 * them, so what is reloaded from the store is what they left. */
static void forget_after_failure(writer *w) {
    marks_cache_clear(&w->marks);   /* it remembered writes that did not happen */
    /* the seq counters first: load_state stops at its first failed read, and
     * a counter that kept a failed seq would leave a gap */
    u64map_free(&w->conv_last_seq);
    if (load_state(w)) log_error("writer: cannot reload state after a failed commit");
    writer_consent_cache_clear(w);
    writer_cache_clear(w->cache);   /* it may hold what did not commit */
    writer_prefetch_forget(w->prefetch);
}

/* A commit is over (rc 0: stored): answers and publishes it, or answers
 * INTERNAL and forgets the in-memory state that assumed it. Consumes c's
 * sends, held requests, replies, pushes and notes; not its batch. */
void writer_commit_finish(writer *w, const commit_parts *c, int rc) {
    if (rc == 0) {
        if (c->consent && w->consent_dirty) writer_consent_committed(w);   /* before any answer goes out */
        outbound *posts[2 * BATCH_MAX];     /* the answers that wait for consent changes */
        size_t n_posts = 0;
        queue_item *items[BATCH_MAX];        /* the new messages, in seq order */
        size_t n_items = 0;
        bool forward = c->consent && w->consent_out.n > 0;  /* answers wait for the accounts owner */
        outbound *held;
        for (size_t i = 0; i < c->n_sends; i++) {
            pending_send *p = &c->sends[i];
            if (!p->silent && (held = answer_sent(w, p, forward))) posts[n_posts++] = held;
            if (!p->duplicate) {
                METRIC_INC(messages_stored_total);
                items[n_items++] = publish_item(w, p);
            } else {
                METRIC_INC(messages_duplicate_total);
            }
        }
        /* one hand-off per commit: the fan-out queues are shared by every
         * writer, so their locks are taken once per batch, not per message */
        queue_publish_many(w->srv->queue, items, n_items);
        for (size_t i = 0; i < c->n_replies; i++) posts[n_posts++] = c->replies[i];
        /* consent changes commit on the accounts owner; answers that may
         * depend on them are posted by it after that commit */
        if (!(c->consent && writer_forward_consent(w, posts, n_posts)))
            for (size_t i = 0; i < n_posts; i++) outbound_send(w->srv->outbox, posts[i]);
        send_pushes(w, c->pushes, c->n_pushes, true);
        notes_committed(w, c->notes);
    } else {
        /* refused for space: the sender may retry once space returns */
        bool no_space = store_get_health(w->srv->store) == STORE_DISK_FULL;
        Parley__V1__Status fail_status = no_space ? PARLEY__V1__STATUS__INSUFFICIENT_STORAGE
                                                  : PARLEY__V1__STATUS__INTERNAL;
        const char *fail_text = no_space ? "insufficient storage: the server's disk is full, retry later"
                                         : "store write failed";
        send_pushes(w, c->pushes, c->n_pushes, false);
        c->notes->n = 0;   /* the raises they report did not happen */
        if (c->consent) w->consent_out.n = 0;  /* nor the accepts those actions implied */
        for (size_t i = 0; i < c->n_sends; i++) {
            if (!c->sends[i].silent)
                outbound_send(w->srv->outbox, reply_error(c->sends[i].conn_id, c->sends[i].request_id,
                                                          fail_status, fail_text));
            blob_unref(c->sends[i].message);
        }
        for (size_t i = 0; i < c->n_replies; i++) {
            outbound *m = c->replies[i];
            /* the reply said OK; the caller must learn it did not happen */
            Parley__V1__Frame *f = parley__v1__frame__unpack(NULL, m->len, m->data);
            uint64_t rid = f ? f->request_id : 0;
            if (f) parley__v1__frame__free_unpacked(f, NULL);
            outbound *err = reply_error(m->conn_id, rid, fail_status, fail_text);
            outbound_free(m);
            if (rid) outbound_send(w->srv->outbox, err);
            else outbound_free(err);
        }
        forget_after_failure(w);
    }
    for (size_t i = 0; i < c->n_held; i++) chat_request_free(c->held[i]);
}

/* Commits the open batch and returns once it is committed (handlers that
 * read what they wrote rely on it); then answers and publishes, or on
 * failure answers INTERNAL. Commits in flight (writer_commit.c) are
 * waited for first; if one of them failed, the open batch was built on
 * what it assumed, so it fails too without being sent. */
void writer_flush(writer *w) {
    bool in_flight_failed = writer_commit_drain(w);
    flush_prepare(w);
    writer_commit_open_done(w);   /* committed here, not in flight */
    if (open_batch_empty(w)) return;
    int rc = in_flight_failed ? -1 : 0;
    if (rc == 0 && store_batch_count(w->batch) > 0) rc = store_commit(w->srv->store, w->batch, sync_commits(w));
    accounts_names_settle(&w->claimed_names, w->srv->store, rc);   /* before the answers go out */
    commit_parts c = open_parts(w);
    writer_commit_finish(w, &c, rc);
    open_parts_done(w, rc);
}

/* The end of a loop turn: on a network store a conversation writer sends
 * the open batch without waiting for it (writer_commit.c); otherwise, and
 * when the batch carries consent changes, writer_flush. */
static void writer_flush_turn(writer *w) {
    if (!w->pipe) {
        writer_flush(w);
        return;
    }
    flush_prepare(w);
    if (open_batch_empty(w)) return;
    if (w->consent_out.n > 0 || w->consent_dirty) {
        writer_flush(w);
        return;
    }
    int rc = writer_commit_submit(w);
    if (rc == 1) return;   /* handed over: the open batch is empty again */
    /* finished here: no writes to wait for (0), or a commit in flight failed (-1) */
    commit_parts c = open_parts(w);
    writer_commit_finish(w, &c, rc);
    open_parts_done(w, rc);
}

/* ------------------------------------------------------------- responses */

void writer_fail(writer *w, const chat_request *r, Parley__V1__Status status, const char *fmt, ...) {
    char text[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    /* errors change nothing, so they need not wait for a commit */
    outbound_send(w->srv->outbox, reply_error(r->conn_id, r->request_id, status, text));
}

void writer_answer(writer *w, const chat_request *r, Parley__V1__Response *resp) {
    Parley__V1__Frame f;
    parley__v1__frame__init(&f);
    f.request_id = r->request_id;
    f.body_case = PARLEY__V1__FRAME__BODY_RESPONSE;
    f.response = resp;
    writer_reply_later(w, reply_pack(OUT_ANSWER, r->conn_id, &f));
}

void writer_answer_ok(writer *w, const chat_request *r) {
    Parley__V1__Response resp;
    parley__v1__response__init(&resp);
    writer_answer(w, r, &resp);
}

static void answer_conversation(writer *w, const chat_request *r, uint64_t conv) {
    Parley__V1__Response resp;
    Parley__V1__ConversationId cid;
    parley__v1__response__init(&resp);
    parley__v1__conversation_id__init(&cid);
    cid.conversation_id = conv;
    resp.result_case = PARLEY__V1__RESPONSE__RESULT_CONVERSATION;
    resp.conversation = &cid;
    writer_answer(w, r, &resp);
}

/* answers Registered and signs the connection in as (user, device) */
static void answer_registered(writer *w, const chat_request *r, uint64_t user, uint32_t device) {
    Parley__V1__Frame f;
    Parley__V1__Response resp;
    Parley__V1__Registered reg;
    reply_init(&f, &resp, r->request_id, PARLEY__V1__STATUS__OK, NULL);
    parley__v1__registered__init(&reg);
    reg.user_id = user;
    reg.device_id = device;
    resp.result_case = PARLEY__V1__RESPONSE__RESULT_REGISTERED;
    resp.registered = &reg;
    outbound *m = reply_pack(OUT_ANSWER, r->conn_id, &f);
    m->user_id = user;
    m->device_id = device;
    writer_reply_later(w, m);
}

/* ------------------------------------------------------------- identity */

static bool valid_user_name(const char *name) {
    size_t n = strlen(name);
    if (n < 1 || n > MAX_NAME) return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-'))
            return false;
    }
    return true;
}

static void put_device(writer *w, uint64_t user, uint32_t device, const ProtobufCBinaryData *pk,
                       const char *name) {
    Parley__Store__Device d;
    parley__store__device__init(&d);
    d.public_key = *pk;
    d.name = (char *)(strlen(name) <= MAX_DEVICE_NAME ? name : "");
    d.created_ts = clock_wall_ms();
    store_put_device(w->batch, user, device, &d);
}

/* signatures were checked by the worker, which holds the challenge */
static void handle_register_user(writer *w, chat_request *r) {
    Parley__V1__RegisterUser *q = r->frame->register_user;
    if (!valid_user_name(q->name)) {
        writer_fail(w, r, PARLEY__V1__STATUS__BAD_REQUEST, "user name must be 1-%d of a-z 0-9 _ . -", MAX_NAME);
        return;
    }
    uint64_t existing;
    int found = store_get_user_id(w->srv->store, q->name, &existing);
    /* a name that names no user is an orphaned claim: the claim below decides */
    if (found > 0 && writer_user_exists(w, existing) == 0) found = 0;
    if (found != 0) {
        if (found > 0) writer_fail(w, r, PARLEY__V1__STATUS__CONFLICT, "user name '%s' is taken", q->name);
        else writer_fail(w, r, PARLEY__V1__STATUS__INTERNAL, "store read failed");
        return;
    }
    /* Random 63-bit ids, not a counter: an id says nothing about how many
     * users there are or which id is next. (Conversation ids stay a counter:
     * every access to a conversation checks membership first.) */
    uint64_t user = 0;
    for (int attempt = 0; attempt < 8 && user == 0; attempt++) {
        uint64_t candidate;
        randombytes_buf(&candidate, sizeof candidate);
        candidate &= INT64_MAX;
        if (candidate != 0 && writer_user_exists(w, candidate) == 0) user = candidate;
    }
    if (user == 0) {
        writer_fail(w, r, PARLEY__V1__STATUS__INTERNAL, "could not pick a user id");
        return;
    }
    /* the read above spares the common conflict a round trip; the claim
     * decides a race (a compare-and-set: a lightweight transaction on
     * Cassandra), before the batch */
    int claimed = store_claim_user_name(w->srv->store, q->name, user);
    if (claimed != 1) {
        if (claimed == 0) writer_fail(w, r, PARLEY__V1__STATUS__CONFLICT, "user name '%s' is taken", q->name);
        else writer_fail(w, r, PARLEY__V1__STATUS__INTERNAL, "store claim failed");
        return;
    }
    accounts_names_claimed(&w->claimed_names, q->name, user);   /* given back if the batch fails */
    Parley__Store__User u;
    parley__store__user__init(&u);
    u.name = q->name;
    u.next_device_id = 2;
    u.created_ts = clock_wall_ms();
    store_put_user(w->batch, user, &u);
    store_put_user_name(w->batch, q->name, user);
    put_device(w, user, 1, &q->device_public_key, q->device_name);
    answer_registered(w, r, user, 1);
}

static void handle_register_device(writer *w, chat_request *r) {
    Parley__V1__RegisterDevice *q = r->frame->register_device;
    Parley__Store__LinkToken *t = NULL;
    int found = store_get_link_token(w->srv->store, q->token, &t);
    if (found <= 0 || t->expires_ts < clock_wall_ms()) {
        writer_fail(w, r, PARLEY__V1__STATUS__UNAUTHENTICATED, "link token is unknown, used or expired");
        if (t) parley__store__link_token__free_unpacked(t, NULL);
        return;
    }
    uint64_t user = t->user_id;
    /* revoked when the device that issued it was removed (device ids are
     * never reused); tokens from before this field name no device */
    Parley__Store__Device *issuer = NULL;
    int issuer_found = t->device_id ? store_get_device(w->srv->store, user, t->device_id, &issuer) : 1;
    if (issuer) parley__store__device__free_unpacked(issuer, NULL);
    parley__store__link_token__free_unpacked(t, NULL);
    if (issuer_found != 1) {
        store_delete_link_token(w->batch, q->token);
        writer_fail(w, r, PARLEY__V1__STATUS__UNAUTHENTICATED, "link token revoked: its device was removed");
        return;
    }
    /* used once however many race for it: a compare-and-set before the batch */
    int claimed = store_claim_link_token(w->srv->store, q->token);
    if (claimed != 1) {
        if (claimed == 0)
            writer_fail(w, r, PARLEY__V1__STATUS__UNAUTHENTICATED, "link token is unknown, used or expired");
        else writer_fail(w, r, PARLEY__V1__STATUS__INTERNAL, "store claim failed");
        return;
    }
    Parley__Store__User *u = NULL;
    if (store_get_user(w->srv->store, user, &u) <= 0) {
        writer_fail(w, r, PARLEY__V1__STATUS__INTERNAL, "user of the token is missing");
        return;
    }
    uint32_t device = u->next_device_id;
    u->next_device_id++;
    writer_device_list_changed(w, user, u);   /* stores u */
    parley__store__user__free_unpacked(u, NULL);
    put_device(w, user, device, &q->device_public_key, q->device_name);
    store_delete_link_token(w->batch, q->token);
    answer_registered(w, r, user, device);
}

/* Link tokens: a token is the user's id in hex, then 128 random bits, so a
 * user's outstanding tokens are one range of keys. Expired ones are deleted
 * when their user makes a new one and by a sweep (link_tokens_sweep); past
 * --link-tokens-per-user outstanding, the oldest go. */
enum {
    LINK_TOKEN_CHARS = 16 + 32,
    LINK_SCAN_MAX = 1000,        /* tokens looked at per user or per sweep */
    LINK_SWEEP_MAX_MS = 60000,   /* a sweep at least this often (more often for short TTLs) */
};

typedef struct user_tokens {
    writer *w;
    uint64_t now;
    size_t seen;
    size_t n;                      /* live ones, in tokens[] */
    struct { char token[LINK_TOKEN_CHARS + 1]; uint64_t expires_ts; } tokens[LINK_SCAN_MAX];
} user_tokens;

static int delete_if_expired(writer *w, const char *token, const Parley__Store__LinkToken *t, uint64_t now) {
    if (t->expires_ts >= now) return 0;
    store_delete_link_token(w->batch, token);
    METRIC_INC(link_tokens_expired_total);
    return 1;
}

static int collect_user_token(void *ud, const char *token, const Parley__Store__LinkToken *t) {
    user_tokens *u = ud;
    if (u->seen++ == LINK_SCAN_MAX) return 1;
    if (delete_if_expired(u->w, token, t, u->now)) return 0;
    if (strlen(token) != LINK_TOKEN_CHARS) return 0;
    snprintf(u->tokens[u->n].token, sizeof u->tokens[u->n].token, "%s", token);
    u->tokens[u->n].expires_ts = t->expires_ts;
    u->n++;
    return 0;
}

/* Makes room for one more token of the user whose tokens start with
 * prefix: expired ones deleted, then the oldest until fewer than the cap
 * are left. */
static void trim_user_tokens(writer *w, const char *prefix) {
    user_tokens *u = calloc(1, sizeof *u);
    if (!u) abort();
    u->w = w;
    u->now = clock_wall_ms();
    store_scan_link_tokens(w->srv->store, prefix, NULL, collect_user_token, u);
    uint32_t cap = w->srv->cfg.link_tokens_per_user;
    while (u->n >= cap) {
        size_t oldest = 0;
        for (size_t i = 1; i < u->n; i++)
            if (u->tokens[i].expires_ts < u->tokens[oldest].expires_ts) oldest = i;
        store_delete_link_token(w->batch, u->tokens[oldest].token);
        METRIC_INC(link_tokens_replaced_total);
        u->tokens[oldest] = u->tokens[--u->n];
    }
    free(u);
}

typedef struct token_sweep {
    writer *w;
    uint64_t now;
    size_t seen;
} token_sweep;

static int sweep_token(void *ud, const char *token, const Parley__Store__LinkToken *t) {
    token_sweep *sw = ud;
    if (sw->seen++ == LINK_SCAN_MAX) return 1;
    delete_if_expired(sw->w, token, t, sw->now);
    snprintf(sw->w->link_sweep_after, sizeof sw->w->link_sweep_after, "%s", token);
    return 0;
}

/* Deletes expired link tokens of every user, LINK_SCAN_MAX at a time,
 * resuming where the last sweep stopped, so a user who never makes another
 * token does not keep them forever. */
static void link_tokens_sweep(writer *w, uint64_t now_mono) {
    uint64_t every = w->srv->cfg.link_token_ttl_ms < LINK_SWEEP_MAX_MS ? w->srv->cfg.link_token_ttl_ms
                                                                      : LINK_SWEEP_MAX_MS;
    if (now_mono - w->link_sweep_ms < every) return;
    w->link_sweep_ms = now_mono;
    token_sweep sw = {w, clock_wall_ms(), 0};
    char after[sizeof w->link_sweep_after];
    memcpy(after, w->link_sweep_after, sizeof after);
    store_scan_link_tokens(w->srv->store, "", after, sweep_token, &sw);
    if (sw.seen <= LINK_SCAN_MAX) w->link_sweep_after[0] = 0;   /* reached the end: start over */
    writer_flush(w);
}

static void handle_create_link_token(writer *w, chat_request *r) {
    uint8_t raw[16];
    char random_hex[33], token[LINK_TOKEN_CHARS + 1], prefix[17];
    snprintf(prefix, sizeof prefix, "%016llx", (unsigned long long)r->user_id);
    trim_user_tokens(w, prefix);
    randombytes_buf(raw, sizeof raw);
    sodium_bin2hex(random_hex, sizeof random_hex, raw, sizeof raw);
    snprintf(token, sizeof token, "%s%s", prefix, random_hex);
    Parley__Store__LinkToken t;
    parley__store__link_token__init(&t);
    t.user_id = r->user_id;
    t.device_id = r->device_id;
    /* strictly increasing, so "oldest" (trim_user_tokens) is never a tie
     * between tokens made in the same millisecond */
    t.expires_ts = clock_wall_ms() + w->srv->cfg.link_token_ttl_ms;
    if (t.expires_ts <= w->last_link_expiry) t.expires_ts = w->last_link_expiry + 1;
    w->last_link_expiry = t.expires_ts;
    store_put_link_token(w->batch, token, &t);

    Parley__V1__Response resp;
    Parley__V1__LinkToken lt;
    parley__v1__response__init(&resp);
    parley__v1__link_token__init(&lt);
    lt.token = token;
    lt.expires_ts = t.expires_ts;
    resp.result_case = PARLEY__V1__RESPONSE__RESULT_LINK_TOKEN;
    resp.link_token = &lt;
    writer_answer(w, r, &resp);
}

/* ---------------------------------------------------------- conversations */

/* Stores a server-written MEMBERSHIP message at the conversation's next seq
 * and queues it for fan-out. Returns the seq. */
static uint64_t append_membership(writer *w, uint64_t conv, uint64_t actor_user, uint32_t actor_device,
                                  Parley__V1__Membership__Action action, const uint64_t *users,
                                  size_t n_users, Parley__V1__ConversationKind kind, const char *name) {
    uint64_t last = 0;
    conv_last_seq(w, conv, &last);   /* known: new_conversation set it, group_for_change read it */
    uint64_t seq = last + 1;
    u64map_put(&w->conv_last_seq, conv, seq);

    Parley__V1__Membership mb;
    parley__v1__membership__init(&mb);
    mb.action = action;
    mb.user_ids = (uint64_t *)users;
    mb.n_user_ids = n_users;
    mb.kind = kind;
    mb.name = (char *)(name ? name : "");
    Parley__V1__Message m;
    parley__v1__message__init(&m);
    m.conversation_id = conv;
    m.seq = seq;
    m.sender_user_id = actor_user;
    m.sender_device_id = actor_device;
    m.type = PARLEY__V1__MESSAGE_TYPE__MEMBERSHIP;
    m.server_ts = clock_wall_ms();
    m.membership = &mb;

    blob *b = blob_new(NULL, parley__v1__message__get_packed_size(&m));
    if (!b) abort();
    parley__v1__message__pack(&m, b->data);
    store_put_message(w->batch, conv, seq, b->data, b->len);
    uint32_t partition = conv_partition(conv, w->group->partitions);
    uint64_t offset = writer_next_log_offset(w, partition);
    store_put_log(w->batch, partition, offset, conv, seq);
    /* membership changes are answered after their own commit (flush), which
     * publishes pending sends; this one is published the same way */
    if (w->n_sends == BATCH_MAX) abort();
    pending_send *p = &w->sends[w->n_sends++];
    memset(p, 0, sizeof *p);
    p->conv = conv;
    p->seq = seq;
    p->message = b;
    p->offset = offset;
    p->user_id = actor_user;
    p->ts = m.server_ts;
    p->silent = true;
    return seq;
}

/* Spans of earlier memberships a re-added member's record keeps. Fan-out
 * needs one only while it is behind it, so a few are plenty: losing one
 * takes a member removed and added again this many times while fan-out
 * lags. */
enum { MEMBER_SPANS_KEPT = 8 };

/* A new member record: joined at seq (history starts there), read up to it.
 * before: the record of a member who left (re-added), or NULL; its spans
 * are kept (storage.proto, Member.earlier). */
static void put_member(writer *w, uint64_t conv, uint64_t user, uint64_t joined, uint64_t added_by,
                       bool admin, uint64_t direct_peer, const Parley__Store__Member *before) {
    Parley__Store__Member m;
    parley__store__member__init(&m);
    m.joined_seq = joined;
    m.read_seq = joined;
    m.added_by = added_by;
    m.admin = admin;
    m.direct_peer = direct_peer;
    Parley__Store__MemberSpan spans[MEMBER_SPANS_KEPT], *span_ptrs[MEMBER_SPANS_KEPT];
    if (before && before->joined_seq && before->left_seq) {
        size_t had = before->n_earlier, keep = had < MEMBER_SPANS_KEPT - 1 ? had : MEMBER_SPANS_KEPT - 1;
        for (size_t i = 0; i < keep; i++) spans[i] = *before->earlier[had - keep + i];
        parley__store__member_span__init(&spans[keep]);
        spans[keep].joined_seq = before->joined_seq;
        spans[keep].left_seq = before->left_seq;
        for (size_t i = 0; i <= keep; i++) span_ptrs[i] = &spans[i];
        m.earlier = span_ptrs;
        m.n_earlier = keep + 1;
    }
    writer_put_member(w, conv, user, &m);
}

/* 1 active member (record in *out if asked), 0 not, -1 error */
int writer_active_member(writer *w, uint64_t conv, uint64_t user, Parley__Store__Member **out) {
    Parley__Store__Member *m = NULL;
    int found = writer_read_member(w, conv, user, &m);
    if (found != 1) return found;
    int active = m->joined_seq > 0 && m->left_seq == 0;   /* as membership_current */
    if (out && active) *out = m;
    else parley__store__member__free_unpacked(m, NULL);
    return active;
}

int writer_user_exists(writer *w, uint64_t user) {
    Parley__Store__User *u = NULL;
    int found = store_get_user(w->srv->store, user, &u);
    if (u) parley__store__user__free_unpacked(u, NULL);
    return found;
}

/* ids of one partition tried for one new conversation, at most: each one
 * lost was created by another writer, and the floor is read again after
 * each loss, so more than a few means a store that keeps refusing */
enum { CONV_ID_CLAIMS_MAX = 16 };

/* The next id of partition that is this writer's alone: with several
 * writers (fenced chat nodes: a stalled owner resumed, a hand-over) two
 * floors can name the same next id, and the second creation would lose
 * its seq 1 (STORE_CONFLICT, answered INTERNAL). So the id is claimed
 * first (store_claim_conversation_id; free on one writer's store); a lost
 * claim reads the partition's counter again and goes on above it. 0 when
 * none could be claimed (a store error). */
static uint64_t claim_conv_id(writer *w, uint32_t partition, const char *counter) {
    for (int attempt = 0; attempt < CONV_ID_CLAIMS_MAX; attempt++) {
        uint64_t conv = partition_next_conv_id(w->last_conv_id[partition], partition, w->group->partitions);
        w->last_conv_id[partition] = conv;   /* never offered again, won or lost */
        int rc = store_claim_conversation_id(w->srv->store, conv);
        if (rc == 1) return conv;
        if (rc < 0) return 0;
        uint64_t stored = 0;
        if (store_get_counter(w->srv->store, counter, &stored) < 0) return 0;
        if (stored > w->last_conv_id[partition]) w->last_conv_id[partition] = stored;
        log_info("%s: conversation id %llu was claimed by another writer: the next", w->name,
                 (unsigned long long)conv);
    }
    return 0;
}

/* A new conversation in partition (one this writer owns: the request was
 * routed here by that partition), with the next id of that partition; 0
 * when no id could be claimed (nothing was put in the batch). */
static uint64_t new_conversation(writer *w, chat_request *r, uint32_t partition, Parley__V1__ConversationKind kind,
                                 const char *name, const uint64_t *members, size_t n) {
    char counter[32];
    conv_counter_name(counter, sizeof counter, partition);
    uint64_t conv = claim_conv_id(w, partition, counter);
    if (!conv) return 0;
    store_put_counter(w->batch, counter, conv);
    Parley__Store__Conversation c;
    parley__store__conversation__init(&c);
    c.kind = kind;
    c.name = (char *)(name ? name : "");
    c.created_ts = clock_wall_ms();
    c.created_by = r->user_id;
    store_put_conversation(w->batch, conv, &c);
    u64map_put(&w->conv_last_seq, conv, 0);
    uint64_t seq = append_membership(w, conv, r->user_id, r->device_id,
                                     PARLEY__V1__MEMBERSHIP__ACTION__CREATED, members, n, kind, name);
    /* the creation itself is not an unread message; the creator is the
     * group's first admin */
    bool direct = kind == PARLEY__V1__CONVERSATION_KIND__DIRECT;
    for (size_t i = 0; i < n; i++) {
        uint64_t peer = direct ? members[1 - i] : 0;
        put_member(w, conv, members[i], seq, r->user_id, !direct && members[i] == r->user_id, peer, NULL);
    }
    consent_accept_added(w, r->user_id, members, n);
    return conv;
}

static void handle_open_direct(writer *w, chat_request *r) {
    uint64_t peer = r->frame->open_direct->peer_user_id;
    if (peer == r->user_id) {
        writer_fail(w, r, PARLEY__V1__STATUS__BAD_REQUEST, "a direct conversation needs another user");
        return;
    }
    uint64_t conv;
    int found = store_get_direct(w->srv->store, r->user_id, peer, &conv);
    if (found < 0 || (found == 0 && writer_user_exists(w, peer) <= 0)) {
        writer_fail(w, r, found < 0 ? PARLEY__V1__STATUS__INTERNAL : PARLEY__V1__STATUS__NOT_FOUND,
             "no user %llu", (unsigned long long)peer);
        return;
    }
    if (found == 0) {
        uint64_t members[2] = {r->user_id < peer ? r->user_id : peer, r->user_id < peer ? peer : r->user_id};
        conv = new_conversation(w, r, pair_partition(r->user_id, peer, w->group->partitions),
                                PARLEY__V1__CONVERSATION_KIND__DIRECT, "", members, 2);
        if (!conv) {
            writer_fail(w, r, PARLEY__V1__STATUS__UNAVAILABLE, "no conversation id could be claimed: retry");
            return;
        }
        store_put_direct(w->batch, r->user_id, peer, conv);
    } else {
        consent_accept_added(w, r->user_id, &peer, 1);   /* opening it accepts the peer */
    }
    answer_conversation(w, r, conv);
}

static int cmp_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* sorts and dedupes ids in place; returns the new count */
static size_t unique_ids(uint64_t *ids, size_t n) {
    qsort(ids, n, sizeof *ids, cmp_u64);
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (ids[i] && (k == 0 || ids[k - 1] != ids[i])) ids[k++] = ids[i];
    return k;
}

static void handle_create_group(writer *w, chat_request *r) {
    Parley__V1__CreateGroup *q = r->frame->create_group;
    uint32_t max = w->srv->cfg.max_group_members;
    if (strlen(q->name) > MAX_GROUP_NAME) {
        writer_fail(w, r, PARLEY__V1__STATUS__BAD_REQUEST, "group name over %d bytes", MAX_GROUP_NAME);
        return;
    }
    if (q->n_member_user_ids + 1 > max) {
        writer_fail(w, r, PARLEY__V1__STATUS__TOO_LARGE, "a group has at most %u members", max);
        return;
    }
    size_t n = q->n_member_user_ids + 1;
    uint64_t *ids = malloc(n * sizeof *ids);
    if (!ids) abort();
    /* no members: member_user_ids is NULL, which memcpy must not get */
    if (q->n_member_user_ids) memcpy(ids, q->member_user_ids, q->n_member_user_ids * sizeof *ids);
    ids[n - 1] = r->user_id;
    n = unique_ids(ids, n);
    uint64_t first;   /* a 'sends' record run again: its first run's group, nothing made twice */
    int again = group_origin_find(w, r, &first);
    if (again != 0) {
        if (again == 1) consent_accept_added(w, r->user_id, ids, n);   /* as the first run did (idempotent) */
        free(ids);
        if (again == 1) answer_conversation(w, r, first);
        else writer_fail(w, r, PARLEY__V1__STATUS__INTERNAL, "store read failed");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        if (writer_user_exists(w, ids[i]) <= 0) {
            writer_fail(w, r, PARLEY__V1__STATUS__NOT_FOUND, "no user %llu", (unsigned long long)ids[i]);
            free(ids);
            return;
        }
        if (writer_consent_state(w, ids[i], r->user_id) == CONSENT_BLOCKED) {
            METRIC_INC(blocked_refused_total);
            writer_fail(w, r, PARLEY__V1__STATUS__FORBIDDEN, "user %llu does not accept adds from you",
                        (unsigned long long)ids[i]);
            free(ids);
            return;
        }
    }
    uint64_t conv = new_conversation(w, r, writer_group_partition(r, w->group->partitions),
                                     PARLEY__V1__CONVERSATION_KIND__GROUP, q->name, ids, n);
    free(ids);
    if (!conv) {
        writer_fail(w, r, PARLEY__V1__STATUS__UNAVAILABLE, "no conversation id could be claimed: retry");
        return;
    }
    group_origin_put(w, r, conv);
    answer_conversation(w, r, conv);
}

/* the conversation if it is a group the caller belongs to (as an admin when
 * need_admin), else answers */
static int group_for_change(writer *w, chat_request *r, uint64_t conv, bool need_admin,
                            Parley__Store__Conversation **out) {
    Parley__Store__Member *me = NULL;
    int member = writer_active_member(w, conv, r->user_id, &me);
    bool admin = me && me->admin;
    if (me) parley__store__member__free_unpacked(me, NULL);
    if (member == 1 && need_admin && !admin) {
        METRIC_INC(group_role_refused_total);
        writer_fail(w, r, PARLEY__V1__STATUS__FORBIDDEN, "only an admin of the group may do that");
        return -1;
    }
    if (member <= 0) {
        writer_fail(w, r, member < 0 ? PARLEY__V1__STATUS__INTERNAL : PARLEY__V1__STATUS__FORBIDDEN,
             "not a member of conversation %llu", (unsigned long long)conv);
        return -1;
    }
    if (store_get_conversation(w->srv->store, conv, out) <= 0) {
        writer_fail(w, r, PARLEY__V1__STATUS__INTERNAL, "conversation record missing");
        return -1;
    }
    if ((*out)->kind != PARLEY__V1__CONVERSATION_KIND__GROUP) {
        writer_fail(w, r, PARLEY__V1__STATUS__BAD_REQUEST, "members of a direct conversation cannot change");
        parley__store__conversation__free_unpacked(*out, NULL);
        return -1;
    }
    /* the change is a MEMBERSHIP message at the next seq: the head is read
     * now, before anything is put, so append_membership numbers on a known
     * head (a failed read there would have numbered it 1) */
    uint64_t head = 0;
    if (conv_last_seq(w, conv, &head) < 0) {
        writer_fail(w, r, PARLEY__V1__STATUS__UNAVAILABLE, "the store is unavailable: not stored, retry");
        parley__store__conversation__free_unpacked(*out, NULL);
        return -1;
    }
    return 0;
}

struct count_ud { uint64_t n; };
static int count_active(void *ud, uint64_t user, const Parley__Store__Member *m) {
    (void)user;
    if (m->joined_seq > 0 && m->left_seq == 0) ((struct count_ud *)ud)->n++;
    return 0;
}

static void handle_add_members(writer *w, chat_request *r) {
    Parley__V1__AddMembers *q = r->frame->add_members;
    Parley__Store__Conversation *c;
    if (group_for_change(w, r, q->conversation_id, true, &c)) return;
    size_t n = q->n_user_ids;
    uint64_t *ids = malloc((n ? n : 1) * sizeof *ids);
    if (!ids) abort();
    if (n) memcpy(ids, q->user_ids, n * sizeof *ids);   /* n 0: user_ids is NULL */
    n = unique_ids(ids, n);
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        if (writer_user_exists(w, ids[i]) <= 0) {
            writer_fail(w, r, PARLEY__V1__STATUS__NOT_FOUND, "no user %llu", (unsigned long long)ids[i]);
            goto out;
        }
        if (writer_consent_state(w, ids[i], r->user_id) == CONSENT_BLOCKED) {
            METRIC_INC(blocked_refused_total);
            writer_fail(w, r, PARLEY__V1__STATUS__FORBIDDEN, "user %llu does not accept adds from you",
                        (unsigned long long)ids[i]);
            goto out;
        }
        if (writer_active_member(w, q->conversation_id, ids[i], NULL) == 0) ids[k++] = ids[i];
    }
    struct count_ud count = {0};
    store_scan_members(w->srv->store, q->conversation_id, count_active, &count);
    if (count.n + k > w->srv->cfg.max_group_members) {
        writer_fail(w, r, PARLEY__V1__STATUS__TOO_LARGE, "a group has at most %u members",
             w->srv->cfg.max_group_members);
        goto out;
    }
    if (k > 0) {
        uint64_t seq = append_membership(w, q->conversation_id, r->user_id, r->device_id,
                                         PARLEY__V1__MEMBERSHIP__ACTION__ADDED, ids, k,
                                         PARLEY__V1__CONVERSATION_KIND__GROUP, c->name);
        for (size_t i = 0; i < k; i++) {
            Parley__Store__Member *before = NULL;
            writer_read_member(w, q->conversation_id, ids[i], &before);   /* a member who left, or none */
            put_member(w, q->conversation_id, ids[i], seq, r->user_id, false, 0, before);
            if (before) parley__store__member__free_unpacked(before, NULL);
        }
        consent_accept_added(w, r->user_id, ids, k);
    }
    writer_answer_ok(w, r);
out:
    free(ids);
    parley__store__conversation__free_unpacked(c, NULL);
}

struct first_member { uint64_t user, joined; bool has_admin; };
static int find_successor(void *ud, uint64_t user, const Parley__Store__Member *m) {
    struct first_member *f = ud;
    if (m->joined_seq == 0 || m->left_seq != 0) return 0;
    if (m->admin) f->has_admin = true;
    if (!f->user || m->joined_seq < f->joined) *f = (struct first_member){user, m->joined_seq, f->has_admin};
    return 0;
}

/* A group is never left without an admin: when the last one leaves, the
 * member who joined first becomes one. */
static void keep_an_admin(writer *w, uint64_t conv) {
    struct first_member f = {0, 0, false};
    store_scan_members(w->srv->store, conv, find_successor, &f);
    if (f.has_admin || !f.user) return;
    Parley__Store__Member *m = writer_member_for_update(w, conv, f.user);
    if (m) m->admin = true;
}

/* Ends user's membership of group conv (r: who asks; leaving when the same) */
static void end_membership(writer *w, chat_request *r, uint64_t conv, uint64_t user, const char *name) {
    Parley__Store__Member *m = NULL;
    int active = writer_active_member(w, conv, user, &m);
    if (active <= 0) {
        writer_fail(w, r, PARLEY__V1__STATUS__NOT_FOUND, "user %llu is not a member", (unsigned long long)user);
        if (m) parley__store__member__free_unpacked(m, NULL);
        return;
    }
    bool leaving = user == r->user_id;
    uint64_t seq = append_membership(
        w, conv, r->user_id, r->device_id,
        leaving ? PARLEY__V1__MEMBERSHIP__ACTION__LEFT : PARLEY__V1__MEMBERSHIP__ACTION__REMOVED,
        &user, 1, PARLEY__V1__CONVERSATION_KIND__GROUP, name);
    m->left_seq = seq;
    bool was_admin = m->admin;
    m->admin = false;
    writer_put_member(w, conv, user, m);
    parley__store__member__free_unpacked(m, NULL);
    if (was_admin) {
        writer_flush(w);   /* the scan must see the member gone */
        keep_an_admin(w, conv);
    }
    writer_answer_ok(w, r);
}

static void leave_group(writer *w, chat_request *r, uint64_t conv, const char *name) {
    end_membership(w, r, conv, r->user_id, name);
}

static void handle_remove_member(writer *w, chat_request *r) {
    Parley__V1__RemoveMember *q = r->frame->remove_member;
    Parley__Store__Conversation *c;
    if (group_for_change(w, r, q->conversation_id, q->user_id != r->user_id, &c)) return;
    end_membership(w, r, q->conversation_id, q->user_id, c->name);
    parley__store__conversation__free_unpacked(c, NULL);
}

/* A group is left; a direct conversation is hidden until its owner writes
 * in it or accepts it. */
static void handle_decline_request(writer *w, chat_request *r) {
    uint64_t conv = r->frame->decline_request->conversation_id;
    Parley__Store__Member *m = NULL;
    int active = writer_active_member(w, conv, r->user_id, &m);
    if (active <= 0) {
        writer_fail(w, r, active < 0 ? PARLEY__V1__STATUS__INTERNAL : PARLEY__V1__STATUS__FORBIDDEN,
                    "not a member of conversation %llu", (unsigned long long)conv);
        return;
    }
    if (consent_direct_peer(w, conv, r->user_id, m)) {
        m->hidden = true;
        writer_put_member(w, conv, r->user_id, m);
        writer_answer_ok(w, r);
        parley__store__member__free_unpacked(m, NULL);
        return;
    }
    parley__store__member__free_unpacked(m, NULL);
    Parley__Store__Conversation *c;
    if (group_for_change(w, r, conv, false, &c)) return;
    leave_group(w, r, conv, c->name);
    parley__store__conversation__free_unpacked(c, NULL);
}

static void handle_rename_group(writer *w, chat_request *r) {
    Parley__V1__RenameGroup *q = r->frame->rename_group;
    if (strlen(q->name) > MAX_GROUP_NAME) {
        writer_fail(w, r, PARLEY__V1__STATUS__BAD_REQUEST, "group name over %d bytes", MAX_GROUP_NAME);
        return;
    }
    Parley__Store__Conversation *c;
    if (group_for_change(w, r, q->conversation_id, true, &c)) return;
    char *old = c->name;
    c->name = q->name;
    store_put_conversation(w->batch, q->conversation_id, c);
    c->name = old;
    append_membership(w, q->conversation_id, r->user_id, r->device_id, PARLEY__V1__MEMBERSHIP__ACTION__RENAMED,
                      NULL, 0, PARLEY__V1__CONVERSATION_KIND__GROUP, q->name);
    writer_answer_ok(w, r);
    parley__store__conversation__free_unpacked(c, NULL);
}

/* -------------------------------------------------------------- messages */

static pending_send *find_pending_send(writer *w, uint64_t user, uint32_t device,
                                       const ProtobufCBinaryData *id) {
    for (size_t i = 0; i < w->n_sends; i++) {
        pending_send *p = &w->sends[i];
        if (p->user_id == user && p->device_id == device && p->client_msg_id_len == id->len &&
            memcmp(p->client_msg_id, id->data, id->len) == 0)
            return p;
    }
    return NULL;
}

/* returns true when r is held by the batch (its frame must live until flush) */
static bool handle_send(writer *w, chat_request *r) {
    Parley__V1__SendMessage *q = r->frame->send_message;
    if (q->client_msg_id.len < 1 || q->client_msg_id.len > MAX_CLIENT_MSG_ID) {
        writer_fail(w, r, PARLEY__V1__STATUS__BAD_REQUEST, "client_msg_id must be 1-%d bytes", MAX_CLIENT_MSG_ID);
        return false;
    }
    if (q->body.len > MAX_BODY) {
        writer_fail(w, r, PARLEY__V1__STATUS__TOO_LARGE, "message body over %d bytes", MAX_BODY);
        return false;
    }
    if (q->type != PARLEY__V1__MESSAGE_TYPE__TEXT && q->type != PARLEY__V1__MESSAGE_TYPE__MEDIA &&
        q->type != PARLEY__V1__MESSAGE_TYPE__REACTION) {
        writer_fail(w, r, PARLEY__V1__STATUS__BAD_REQUEST, "message type must be text, media or reaction");
        return false;
    }
    if (strlen(q->mime_type) > 255) {
        writer_fail(w, r, PARLEY__V1__STATUS__BAD_REQUEST, "mime type over 255 bytes");
        return false;
    }
    if (w->n_sends == BATCH_MAX) writer_flush_turn(w);
    w->member_read_failed = false;
    Parley__Store__Member *member = writer_member_for_update(w, q->conversation_id, r->user_id);
    if (!member && w->member_read_failed) {
        /* not "not a member": the store did not answer; nothing was stored */
        writer_fail(w, r, PARLEY__V1__STATUS__UNAVAILABLE, "the store is unavailable: not stored, retry");
        return false;
    }
    if (!member || member->joined_seq == 0 || member->left_seq != 0) {
        writer_fail(w, r, PARLEY__V1__STATUS__FORBIDDEN, "not a member of conversation %llu",
                    (unsigned long long)q->conversation_id);
        return false;
    }
    pending_send *p;
    uint64_t conv, seq;
    /* a retry: the first attempt may be committed, or in this very batch */
    pending_send *twin = find_pending_send(w, r->user_id, r->device_id, &q->client_msg_id);
    int found = twin ? 1 : writer_read_client_msg(w, r->user_id, r->device_id,
                                                  q->client_msg_id.data, q->client_msg_id.len, &conv, &seq);
    if (found < 0) {
        writer_fail(w, r, PARLEY__V1__STATUS__INTERNAL, "store read failed");
        return false;
    }
    /* not found, and the conversation cold here: its head is loaded first,
     * which takes the rows in (hint, head] (stored by a writer that stopped
     * before their dedupe records) into the dedupe cache; then look again,
     * or this retry of one of them would be stored a second time
     * (writer_fence.c) */
    if (!found && !u64map_get(&w->conv_last_seq, q->conversation_id)) {
        uint64_t head = 0;
        if (conv_last_seq(w, q->conversation_id, &head) < 0) {
            writer_fail(w, r, PARLEY__V1__STATUS__UNAVAILABLE, "the store is unavailable: not stored, retry");
            return false;
        }
        found = writer_cache_dedupe_get(&w->cache, r->user_id, r->device_id, q->client_msg_id.data,
                                        q->client_msg_id.len, clock_wall_ms(), w->srv->cfg.retention_ms, &conv,
                                        &seq)
                    ? 1
                    : 0;
    }
    p = &w->sends[w->n_sends++];
    memset(p, 0, sizeof *p);
    p->conn_id = r->conn_id;
    p->request_id = r->request_id;
    p->user_id = r->user_id;
    p->device_id = r->device_id;
    p->client_msg_id = q->client_msg_id.data;
    p->client_msg_id_len = q->client_msg_id.len;
    if (found) {
        p->duplicate = true;
        p->conv = twin ? twin->conv : conv;
        p->seq = twin ? twin->seq : seq;
        p->ts = twin ? twin->ts : 0;
        return true;
    }
    uint64_t last = 0;
    if (conv_last_seq(w, q->conversation_id, &last) < 0) {
        /* a network store away (the counter is read again after a failed
         * commit): nothing was stored */
        w->n_sends--;
        writer_fail(w, r, PARLEY__V1__STATUS__UNAVAILABLE, "the store is unavailable: not stored, retry");
        return false;
    }
    if (q->type == PARLEY__V1__MESSAGE_TYPE__REACTION && (q->ref_seq == 0 || q->ref_seq > last)) {
        w->n_sends--;
        writer_fail(w, r, PARLEY__V1__STATUS__BAD_REQUEST, "a reaction must refer to an existing seq");
        return false;
    }
    if (member->direct_peer) {   /* a direct conversation: message requests are bounded */
        const char *why = NULL;
        Parley__V1__Status st = consent_direct_send(w, r->user_id, member->direct_peer, member, &why);
        if (st != PARLEY__V1__STATUS__OK) {
            w->n_sends--;
            writer_fail(w, r, st, "%s", why);
            return false;
        }
    }
    p->conv = q->conversation_id;
    p->seq = last + 1;
    p->ts = clock_wall_ms();
    u64map_put(&w->conv_last_seq, p->conv, p->seq);

    stored_message m = {
        .conversation_id = p->conv,
        .seq = p->seq,
        .sender_user_id = r->user_id,
        .sender_device_id = r->device_id,
        .type = (int32_t)q->type,
        .body = q->body.data,
        .body_len = q->body.len,
        .mime_type = q->mime_type,
        .size = q->size,
        .ref_seq = q->ref_seq,
        .server_ts = p->ts,
        .client_msg_id = q->client_msg_id.data,
        .client_msg_id_len = q->client_msg_id.len,
    };
    p->message = blob_new(NULL, stored_message_size(&m));
    if (!p->message) abort();
    stored_message_encode(&m, p->message->data);   /* protobuf-c's bytes, without its descriptor walk */

    store_put_message(w->batch, p->conv, p->seq, p->message->data, p->message->len);
    store_put_client_msg(w->batch, r->user_id, r->device_id, q->client_msg_id.data,
                         q->client_msg_id.len, p->conv, p->seq, p->ts);
    writer_cache_dedupe_put(&w->cache, r->user_id, r->device_id, q->client_msg_id.data, q->client_msg_id.len,
                            p->conv, p->seq, p->ts);
    uint32_t partition = conv_partition(p->conv, w->group->partitions);
    p->offset = writer_next_log_offset(w, partition);
    store_put_log(w->batch, partition, p->offset, p->conv, p->seq);
    /* replying marks the conversation read up to one's own message (what the
     * sender saw on screen). Not delivered: messages just before it may not
     * have reached this user's devices yet; only their acks say so. */
    member->read_seq = p->seq;
    return true;
}

/* ------------------------------------------------------------- receipts */

struct read_notice {
    server *srv;
    const chat_request *reader;
    uint64_t conv, seq;
    bool only_own;           /* the reader's own devices only (a request) */
    push_batch members;      /* --redis: told after the scan, looked up in one round */
};

static void push_read(const struct read_notice *n, uint64_t user) {
    push_receipt(n->srv, user, n->conv, n->reader->user_id, PARLEY__V1__RECEIPT_KIND__READ, n->seq,
                 n->reader->conn_id);
}

static int notify_read(void *ud, uint64_t user, const Parley__Store__Member *m) {
    struct read_notice *n = ud;
    if (m->left_seq != 0) return 0;
    if (n->only_own && user != n->reader->user_id) return 0;
    if (!push_batch_add(&n->members, user)) push_read(n, user);
    return 0;
}

static void handle_mark_read(writer *w, chat_request *r) {
    Parley__V1__MarkRead *q = r->frame->mark_read;
    Parley__Store__Member *m = NULL;
    int active = writer_active_member(w, q->conversation_id, r->user_id, &m);
    if (active <= 0) {
        writer_fail(w, r, active < 0 ? PARLEY__V1__STATUS__INTERNAL : PARLEY__V1__STATUS__FORBIDDEN,
             "not a member of conversation %llu", (unsigned long long)q->conversation_id);
        return;
    }
    uint64_t last = 0;
    conv_last_seq(w, q->conversation_id, &last);
    uint64_t seq = q->seq > last ? last : q->seq;
    bool advanced = seq > m->read_seq;
    if (advanced) {
        m->read_seq = seq;
        writer_put_member(w, q->conversation_id, r->user_id, m);
    }
    /* a reader who has not accepted the conversation tells only its own
     * devices: the sender of a request does not learn it was read */
    bool only_own = consent_is_request(w->srv->store, r->user_id, m);
    parley__store__member__free_unpacked(m, NULL);
    writer_answer_ok(w, r);
    writer_flush(w);
    if (!advanced) return;
    /* tell the other members, and the reader's other devices */
    struct read_notice notice = {w->srv, r, q->conversation_id, seq, only_own, {0}};
    push_batch_init(&notice.members, w->srv);
    store_scan_members(w->srv->store, q->conversation_id, notify_read, &notice);
    push_batch_lookup(&notice.members);
    for (size_t i = 0; i < notice.members.n; i++) push_read(&notice, notice.members.users[i]);
    push_batch_end(&notice.members);
}

/* A device acknowledged inbox entries (ack_from, ack_to]: store its cursor,
 * raise the user's delivered seq in each conversation those entries were in,
 * and tell the senders of those messages (not every member: in a large
 * group that would be a receipt per member per message; READ receipts go to
 * everyone). */
enum { ACK_CONVS = 256, ACK_SENDERS = 8 };

typedef struct acked_conv {
    uint64_t conv, seq;
    uint64_t senders[ACK_SENDERS];
    size_t n_senders;
} acked_conv;

typedef struct ack_scan {
    uint64_t user;
    acked_conv convs[ACK_CONVS];
    size_t n;
    delivered_note logged[ACK_CONVS];   /* --kafka: the raises for the owners (delivered_log.c) */
    size_t n_logged;
} ack_scan;

static int collect_acked(void *ud, uint64_t user_seq, uint64_t conv, uint64_t seq, uint64_t sender) {
    (void)user_seq;
    ack_scan *a = ud;
    acked_conv *c = NULL;
    for (size_t i = 0; i < a->n && !c; i++)
        if (a->convs[i].conv == conv) c = &a->convs[i];
    if (!c) {
        if (a->n == ACK_CONVS) return 0;   /* the rest is stored at the next ack */
        c = &a->convs[a->n++];
        c->conv = conv;
        c->seq = 0;
        c->n_senders = 0;
    }
    if (seq > c->seq) c->seq = seq;
    if (sender == a->user || sender == 0) return 0;
    for (size_t i = 0; i < c->n_senders; i++)
        if (c->senders[i] == sender) return 0;
    if (c->n_senders < ACK_SENDERS) c->senders[c->n_senders++] = sender;
    return 0;
}


/* A member's devices received the conversation up to note->seq: on the
 * conversation's owner, the only writer of its member records. */
static void raise_delivered(writer *w, const delivered_note *note) {
    if (writer_commit_defer_raise(w, note)) return;   /* its conversation has a commit in flight */
    marks_slot *known = find_pending(w, note->conv, note->user) ? NULL
                                                                 : marks_cache_find(&w->marks, note->conv, note->user);
    if (known) {   /* the marks are known: write them without reading the record */
        if (known->delivered_seq >= note->seq) return;
        Parley__Store__Member before = PARLEY__STORE__MEMBER__INIT, after = PARLEY__STORE__MEMBER__INIT;
        before.read_seq = after.read_seq = known->read_seq;
        before.delivered_seq = known->delivered_seq;
        after.delivered_seq = note->seq;
        store_put_member_update(w->batch, note->conv, note->user, &before, &after);   /* the marks record only */
        writer_commit_touch(w, note->conv);
        known->delivered_seq = note->seq;
        /* the member record cache (writer_cache.h) must not keep the old
         * marks: a later send would write them back */
        writer_cache_member_marks(&w->cache, note->conv, note->user, known->read_seq, known->delivered_seq);
        if (note->n_senders) note_append(&w->notes_open, note);
        return;
    }
    Parley__Store__Member *m = writer_member_for_update(w, note->conv, note->user);
    if (!m || m->delivered_seq >= note->seq) return;   /* another device got there first */
    m->delivered_seq = note->seq;
    if (note->n_senders) note_append(&w->notes_open, note);
}

static void handle_ack(writer *w, chat_request *r) {
    store_put_cursor(w->batch, r->user_id, r->device_id, r->ack_to);
    ack_scan *scan = malloc(sizeof *scan);
    if (!scan) abort();
    scan->user = r->user_id;
    scan->n = scan->n_logged = 0;
    uint64_t from = r->ack_from;
    if (r->ack_to - from > ACK_SCAN_MAX) from = r->ack_to - ACK_SCAN_MAX;
    /* fan-out's memory of the entries it just routed, else the store (after
     * a restart, or a range it no longer holds): the same entries either way */
    if (!w->srv->recent_inbox ||
        !recent_inbox_scan(w->srv->recent_inbox, r->user_id, from, r->ack_to, collect_acked, scan))
        store_scan_inbox(w->srv->store, r->user_id, from, r->ack_to, ACK_SCAN_MAX, collect_acked, scan);
    for (size_t i = 0; i < scan->n; i++) {
        acked_conv *c = &scan->convs[i];
        delivered_note note = {.conv = c->conv, .user = r->user_id, .seq = c->seq};
        for (size_t j = 0; j < c->n_senders && j < NOTE_SENDERS; j++) note.senders[note.n_senders++] = c->senders[j];
        /* the member record belongs to the conversation's owner */
        if (writer_logs_delivered(w)) scan->logged[scan->n_logged++] = note;   /* the owner node's */
        else if (writer_owns_conv(w, c->conv)) raise_delivered(w, &note);
        else writer_forward_delivered(w, &note);
    }
    writer_log_delivered(w, r->user_id, scan->logged, scan->n_logged);
    free(scan);
}

/* ------------------------------------------------------------- the loop */

/* returns true when the batch holds on to r until the next flush */
static bool handle(writer *w, chat_request *r) {
    if (writer_refuse_removed_device(w, r)) return false;
    if (r->op == CHAT_ACK) {
        handle_ack(w, r);
        return false;
    }
    if (r->op == CHAT_DELIVERED) {
        for (size_t i = 0; i < r->forward->n_notes; i++) raise_delivered(w, &r->forward->notes[i]);
        if (r->forward->answer) writer_answer_ok(w, r);   /* --kafka: its offset is committed after */
        return false;
    }
    if (r->op == CHAT_DEVICE_REMOVED) {
        u64map_put(&w->removed_device_users, r->forward->about_user, 1);
        return false;
    }
    if (r->op == CHAT_CONSENT) {   /* commits alone: the answers it carries wait for it */
        writer_flush(w);
        handle_consent_forward(w, r);
        return false;
    }
    /* A load that could not take new fan-out log ranges (load_state) left
     * each partition in the range it had. The partition may have moved
     * meanwhile: another owner's entries sort above that range, and
     * fan-out, whose checkpoints are the highest offset read, would pass
     * over entries numbered in it (stored, acknowledged, in no inbox). So
     * nothing is stored until the new ranges are taken (renew_log_ranges,
     * every turn); the store is failing anyway. */
    if (w->log_ranges_stale) {
        writer_fail(w, r, PARLEY__V1__STATUS__UNAVAILABLE, "the store is unavailable: not stored, retry");
        return false;
    }
    Parley__V1__Frame *f = r->frame;
    if (f->body_case == PARLEY__V1__FRAME__BODY_SEND_MESSAGE) return handle_send(w, r);
    /* batched like sends: acks of one device in a batch become one delete */
    if (f->body_case == PARLEY__V1__FRAME__BODY_ACK_DEVICE_MESSAGES) {
        handle_ack_device_messages(w, r);
        return false;
    }
    /* everything else commits alone, after what is pending; it may write
     * member records without the marks cache, so the cache starts afresh */
    writer_flush(w);
    marks_cache_clear(&w->marks);
    switch (f->body_case) {
    case PARLEY__V1__FRAME__BODY_REGISTER_USER: handle_register_user(w, r); break;
    case PARLEY__V1__FRAME__BODY_REGISTER_DEVICE: handle_register_device(w, r); break;
    case PARLEY__V1__FRAME__BODY_CREATE_LINK_TOKEN: handle_create_link_token(w, r); break;
    case PARLEY__V1__FRAME__BODY_OPEN_DIRECT: handle_open_direct(w, r); break;
    case PARLEY__V1__FRAME__BODY_CREATE_GROUP: handle_create_group(w, r); break;
    case PARLEY__V1__FRAME__BODY_ADD_MEMBERS: handle_add_members(w, r); break;
    case PARLEY__V1__FRAME__BODY_REMOVE_MEMBER: handle_remove_member(w, r); break;
    case PARLEY__V1__FRAME__BODY_RENAME_GROUP: handle_rename_group(w, r); break;
    case PARLEY__V1__FRAME__BODY_ACCEPT_REQUEST: handle_accept_request(w, r); break;
    case PARLEY__V1__FRAME__BODY_DECLINE_REQUEST: handle_decline_request(w, r); break;
    case PARLEY__V1__FRAME__BODY_BLOCK_USER: handle_block_user(w, r); break;
    case PARLEY__V1__FRAME__BODY_MARK_READ: handle_mark_read(w, r); break;
    case PARLEY__V1__FRAME__BODY_UPLOAD_KEYS: handle_upload_keys(w, r); break;
    case PARLEY__V1__FRAME__BODY_FETCH_KEYS: handle_fetch_keys(w, r); break;
    case PARLEY__V1__FRAME__BODY_REMOVE_DEVICE: handle_remove_device(w, r); break;
    case PARLEY__V1__FRAME__BODY_SEND_DEVICE_MESSAGE: handle_send_device_message(w, r); break;
    case PARLEY__V1__FRAME__BODY_PUSH_REGISTER: handle_push_register(w, r); break;
    case PARLEY__V1__FRAME__BODY_PUSH_UNREGISTER: handle_push_unregister(w, r); break;
    default: writer_fail(w, r, PARLEY__V1__STATUS__BAD_REQUEST, "not a write request"); break;
    }
    writer_flush(w);
    marks_cache_clear(&w->marks);
    return false;
}

static void handle_one(writer *w, chat_request *r) {
    if (handle(w, r)) w->held[w->n_held++] = r;
    else chat_request_free(r);
    /* fsync=always: one commit, and one fsync, per request */
    if (w->srv->cfg.fsync == FSYNC_ALWAYS) writer_flush_turn(w);
}

/* A request other than a send (or a device ack) must not overtake sends
 * held back (writer_commit.c): they are committed first, in order. */
static void handle_held_back_first(writer *w, const chat_request *r) {
    if (writer_commit_parked(w) == 0 || r->op != CHAT_FRAME ||
        r->frame->body_case == PARLEY__V1__FRAME__BODY_SEND_MESSAGE ||
        r->frame->body_case == PARLEY__V1__FRAME__BODY_ACK_DEVICE_MESSAGES)
        return;
    writer_flush(w);   /* nothing in flight after it: every held-back send may go */
    chat_request *free_now[PARKED_MAX];
    size_t n = writer_commit_unpark(w, free_now, PARKED_MAX);
    for (size_t i = 0; i < n; i++) handle_one(w, free_now[i]);
}

/* Takes the queued requests. With fsync=batch on a local store (group
 * commit on this thread), a short queue found while busy is first given
 * GATHER_US to grow (mpsc_pop_gather; not after the writer went idle): at a
 * steady rate one commit and one fsync then carry several requests, at the
 * cost of at most GATHER_US of ack latency. Not on
 * a network store (its commits are in flight, writer_commit.c) nor with
 * fsync=always (a commit per request anyway) or off (no fsync to share). */
static size_t writer_pop(writer *w, chat_request **out, size_t max) {
    if (w->pipe || w->srv->cfg.fsync != FSYNC_BATCH) return mpsc_pop_many(&w->requests, (void **)out, max);
    bool waited = false;
    size_t n = mpsc_pop_gather(&w->requests, (void **)out, max, GATHER_WANT, GATHER_US, &waited);
    if (waited) METRIC_INC(writer_gathers_total);
    return n;
}

/* --kafka: partitions came from another node (writer_forget_cached) */
static void forget_if_asked(writer *w) {
    uint64_t forget = atomic_load(&w->group->forget_epoch);
    if (forget == w->forget_seen || w->accounts) return;
    writer_commit_drain(w);
    forget_after_failure(w);
    w->forget_seen = forget;
}

static void *writer_main(void *arg) {
    writer *w = arg;
    pthread_setname_np(pthread_self(), w->name);   /* seen in top -H, perf */
    chat_request *batch[BATCH_MAX];
    for (;;) {
        forget_if_asked(w);
        renew_log_ranges(w);
        writer_commit_reap(w);   /* commits that completed since: answered and published */
        writer_commit_replay_raises(w, raise_delivered);
        uint64_t now = clock_mono_ms();
        if (now - w->notes_flushed_ms >= RECEIPT_COALESCE_MS || w->notes_due.n >= NOTES_MAX)
            flush_notes(w, now);
        if (w->accounts) link_tokens_sweep(w, now);   /* link tokens are the accounts owner's */
        /* sends held back whose conversation's commit is over go first, in order */
        size_t unparked = writer_commit_unpark(w, batch, BATCH_MAX);
        size_t n = unparked;
        if (writer_commit_room(w)) n += writer_pop(w, batch + n, BATCH_MAX - n);
        /* again: a request just taken may have been submitted right after
         * writer_forget_cached, and must see the reload */
        forget_if_asked(w);
        writer_prefetch_dedupe(w, batch, n);   /* the sends' dedupe reads, all in flight at once */
        writer_note_depth(w, mpsc_depth(&w->requests) + writer_commit_parked(w));
        if (n == 0) {
            writer_flush_turn(w);   /* raises replayed above */
            if (!writer_commit_room(w)) {   /* every held-back send waits for a commit in flight */
                writer_commit_wait(w);
                continue;
            }
            if (w->requests.closed) {
                if (!writer_commit_busy(w)) break;
                writer_commit_drain(w);   /* then what was held back goes */
                continue;
            }
            mpsc_wait(&w->requests, RECEIPT_COALESCE_MS);
            continue;
        }
        for (size_t i = 0; i < n; i++) {
            if (i >= unparked && writer_commit_park(w, batch[i])) continue;   /* its conversation is in flight */
            handle_held_back_first(w, batch[i]);
            handle_one(w, batch[i]);
        }
        writer_flush_turn(w);
        /* after the flush: it handed on their raises; sends held back were
         * counted done in the turn that popped them */
        writer_turn_done(w, n - unparked);
    }
    writer_commit_drain(w);   /* what is in flight is answered before the thread ends */
    flush_notes(w, clock_mono_ms());
    return NULL;
}

/* One owner: the accounts owner, or conversation writer index. Its state
 * is loaded here; its thread starts in writer_run. */
writer *writer_new_owner(server *srv, writer_group *g, bool accounts, uint32_t index) {
    writer *w = calloc(1, sizeof *w);
    if (!w) return NULL;
    w->srv = srv;
    w->group = g;
    w->accounts = accounts;
    w->index = index;
    if (accounts) snprintf(w->name, sizeof w->name, "parley-accounts");
    else snprintf(w->name, sizeof w->name, "parley-writer%u", index % 100);   /* a thread name: 15 bytes */
    w->batch = store_batch_new();
    w->last_conv_id = calloc(g->partitions, sizeof *w->last_conv_id);
    w->last_offset = calloc(g->partitions, sizeof *w->last_offset);
    w->delivered_out = calloc(g->n, sizeof *w->delivered_out);
    if (!w->batch || !w->last_conv_id || !w->last_offset || !w->delivered_out ||
        mpsc_init(&w->requests, QUEUE_CAP)) {
        store_batch_free(w->batch);
        free(w->last_conv_id);
        free(w->last_offset);
        free(w->delivered_out);
        free(w);
        return NULL;
    }
    if (load_state(w)) {
        log_error("%s: cannot load its state", w->name);
        writer_free_owner(w);
        return NULL;
    }
    if (writer_pipeline_init(w)) {
        writer_free_owner(w);
        return NULL;
    }
    return w;
}

int writer_run(writer *w) {
    return pthread_create(&w->thread, NULL, writer_main, w) ? -1 : 0;
}

/* after its thread has stopped (or never started) */
void writer_free_owner(writer *w) {
    if (!w) return;
    mpsc_destroy(&w->requests);
    store_batch_free(w->batch);
    u64map_free(&w->conv_last_seq);
    u64map_free(&w->removed_device_users);
    free(w->consent_cache);
    writer_cache_free(w->cache);
    writer_prefetch_free(w->prefetch);
    writer_pipeline_free(w->pipe);
    free(w->consent_out.items);
    free(w->members);
    marks_cache_free(&w->marks);
    post_pushes(w, false);
    free(w->pushes);
    free(w->notes_open.items);
    free(w->notes_due.items);
    free(w->last_conv_id);
    free(w->last_offset);
    for (uint32_t i = 0; w->delivered_out && i < w->group->n; i++) chat_request_free(w->delivered_out[i]);
    free(w->delivered_out);
    free(w);
}
