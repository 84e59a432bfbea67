/* writer_commit.c -- a conversation writer's commits on a network store
 * (Cassandra): up to COMMITS_IN_FLIGHT in flight at once, instead of one
 * round trip at a time per writer thread. RocksDB keeps writer_flush (its
 * group commit and fsync), and so does the accounts owner.
 *
 * The rule that keeps the guarantees of writer_flush: a conversation has at
 * most one commit in flight. A send whose conversation has a commit in
 * flight (or sends of it already held back) is held back ("parked") and
 * handled, in arrival order, in the first loop turn after that commit is
 * over; a delivered raise likewise. So the open batch writes only
 * conversations with nothing in flight and is sent at the end of the turn
 * without waiting (a write that slipped through, e.g. a raise past
 * RAISES_HELD_MAX, makes the submit wait for that commit instead). Then:
 * - a conversation's batches commit one after the other, in seq order;
 * - a commit fails: the writer waits for every other commit in flight,
 *   answers the failed one's senders INTERNAL, reloads its counters and
 *   drops its caches (writer_commit_finish), and fails the open batch
 *   without sending it (it may have been built on what the failed one
 *   assumed). Nothing later in the failed commit's conversations was sent,
 *   so their seqs are given again and no gap is left;
 * - answers and the hand-off to fan-out happen on the writer's thread when
 *   a commit is finished, in the order the commits were sent (a
 *   partition's fan-out log offsets must reach fan-out in increasing
 *   order: its checkpoints are the highest offset read), so in commit
 *   order per conversation;
 * - a retry of a client_msg_id whose first send is in flight is held back
 *   with its conversation, then finds the first in the dedupe cache
 *   (written when the first was handled, dropped if it failed): answered
 *   after the first, with its seq, or, if the first failed, stored anew.
 * Completions come on the CQL client's I/O thread: the callback only marks
 * its slot done under the pipeline's lock and wakes the writer (its
 * queue's eventfd, and a condition variable when it waits for a slot); the
 * writer's state is only ever touched by the writer.
 *
 * Requests that are not sends or acks (membership, mark-read, keys...)
 * still commit with writer_flush, which first finishes every commit in
 * flight (they read what they write, and are rare next to sends); the
 * sends held back are handled before them, so none is overtaken. */
#include "chat/writer_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/metrics.h"
#include "core/mpsc.h"
#include "core/u64map.h"
#include "store/store.h"

typedef struct commit_slot {
    struct writer_pipeline *pipe;
    store_batch *batch;               /* in flight: lent to the store; else an empty spare */
    pending_send sends[BATCH_MAX];
    size_t n_sends;
    chat_request *held[BATCH_MAX];
    size_t n_held;
    outbound *replies[BATCH_MAX];
    size_t n_replies;
    outbound **pushes;
    size_t n_pushes, cap_pushes;
    note_list notes;
    uint64_t *convs;                  /* the conversations it writes */
    size_t n_convs, cap_convs;
    bool done;                        /* under pipe->mu */
    int result;                       /* under pipe->mu, once done */
} commit_slot;

struct writer_pipeline {
    mpsc *wake;                       /* the writer's queue: its eventfd wakes the loop */
    pthread_mutex_t mu;
    pthread_cond_t cond;              /* a slot became done */
    commit_slot slots[COMMITS_IN_FLIGHT];
    size_t head, count;               /* in flight, oldest first (a ring) */
    u64map in_flight;                 /* conversation -> 1 while its commit is in flight */
    u64map open;                      /* conversations the open batch writes */
    chat_request **parked;            /* [PARKED_MAX] sends held back, in arrival order */
    size_t n_parked;
    u64map parked_convs;              /* conversation -> its parked sends */
    delivered_note *raises;           /* delivered raises held back, in arrival order */
    size_t n_raises, cap_raises;
};

static bool network_store(const writer *w) {
    store_kind kind = STORE_KIND_ROCKSDB;
    return store_kind_parse(w->srv->cfg.store, &kind) == 0 && kind != STORE_KIND_ROCKSDB;
}

int writer_pipeline_init(writer *w) {
    w->pipe = NULL;
    if (w->accounts || !network_store(w)) return 0;
    struct writer_pipeline *p = calloc(1, sizeof *p);
    if (!p) return -1;
    p->wake = &w->requests;
    if (!(p->parked = calloc(PARKED_MAX, sizeof *p->parked))) {
        free(p);
        return -1;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cond, NULL);
    for (size_t i = 0; i < COMMITS_IN_FLIGHT; i++) {
        p->slots[i].pipe = p;
        if (!(p->slots[i].batch = store_batch_new())) {
            writer_pipeline_free(p);
            return -1;
        }
    }
    w->pipe = p;
    return 0;
}

void writer_pipeline_free(struct writer_pipeline *p) {
    if (!p) return;
    /* a callback that marked its slot done may still hold the lock */
    pthread_mutex_lock(&p->mu);
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cond);
    for (size_t i = 0; i < COMMITS_IN_FLIGHT; i++) {
        commit_slot *s = &p->slots[i];
        store_batch_free(s->batch);
        free(s->pushes);
        free(s->notes.items);
        free(s->convs);
    }
    u64map_free(&p->in_flight);
    u64map_free(&p->open);
    for (size_t i = 0; i < p->n_parked; i++) chat_request_free(p->parked[i]);
    free(p->parked);
    u64map_free(&p->parked_convs);
    free(p->raises);
    free(p);
}

static void map_clear(u64map *m) {
    if (m->slots) memset(m->slots, 0, m->cap * sizeof *m->slots);
    m->count = 0;
}

void writer_commit_open_done(writer *w) {
    if (w->pipe) map_clear(&w->pipe->open);
}

void writer_commit_touch(writer *w, uint64_t conv) {
    if (!w->pipe || conv == 0) return;
    if (u64map_put(&w->pipe->open, conv, 1)) abort();   /* bounded by the batch's writes */
}

/* on the CQL client's I/O thread: hand the result to the writer, nothing more */
static void commit_done(void *ud, int result) {
    commit_slot *s = ud;
    struct writer_pipeline *p = s->pipe;
    pthread_mutex_lock(&p->mu);
    s->result = result;
    s->done = true;
    pthread_cond_broadcast(&p->cond);
    mpsc_wake(p->wake);   /* under the lock: the writer frees nothing before taking it */
    pthread_mutex_unlock(&p->mu);
}

/* true when s completed; with wait, waits for it (the CQL client fails
 * every request at its deadline, so the callback comes) */
static bool slot_done(struct writer_pipeline *p, commit_slot *s, bool wait) {
    pthread_mutex_lock(&p->mu);
    while (wait && !s->done) pthread_cond_wait(&p->cond, &p->mu);
    bool done = s->done;
    pthread_mutex_unlock(&p->mu);
    return done;
}

static void note_in_flight(long delta) {
    long now = atomic_fetch_add(&g_metrics.writer_commits_in_flight, delta) + delta;
    long peak = atomic_load(&g_metrics.writer_commits_in_flight_peak);
    while (now > peak && !atomic_compare_exchange_weak(&g_metrics.writer_commits_in_flight_peak, &peak, now)) {}
}

/* Finishes the oldest commit in flight if it completed (or, with wait,
 * once it does); false when it has not. A failed one is finished only when
 * nothing else is in flight: what is reloaded must be what the others left. */
static bool finish_oldest(writer *w, bool wait, bool *failed) {
    struct writer_pipeline *p = w->pipe;
    commit_slot *s = &p->slots[p->head];
    if (!slot_done(p, s, wait)) return false;
    if (s->result != 0) {
        for (size_t i = 1; i < p->count; i++) slot_done(p, &p->slots[(p->head + i) % COMMITS_IN_FLIGHT], true);
        *failed = true;
    }
    for (size_t i = 0; i < s->n_convs; i++) u64map_remove(&p->in_flight, s->convs[i], NULL);
    commit_parts c = {s->sends, s->n_sends, s->held, s->n_held, s->replies, s->n_replies,
                      s->pushes, s->n_pushes, &s->notes, false};
    writer_commit_finish(w, &c, s->result);
    if (s->result != 0) {   /* a failed batch keeps its writes: a fresh spare */
        store_batch_free(s->batch);
        if (!(s->batch = store_batch_new())) abort();
    }
    s->n_sends = s->n_held = s->n_replies = s->n_pushes = s->n_convs = 0;
    p->head = (p->head + 1) % COMMITS_IN_FLIGHT;
    p->count--;
    note_in_flight(-1);
    return true;
}

bool writer_commit_reap(writer *w) {
    bool failed = false;
    while (w->pipe && w->pipe->count > 0 && finish_oldest(w, false, &failed)) {}
    return failed;
}

bool writer_commit_drain(writer *w) {
    bool failed = false;
    while (w->pipe && w->pipe->count > 0) finish_oldest(w, true, &failed);
    return failed;
}

/* a conversation the open batch writes has a commit in flight */
static bool open_conflicts(const struct writer_pipeline *p) {
    if (p->in_flight.count == 0) return false;
    for (size_t i = 0; i < p->open.cap; i++)
        if (p->open.slots[i].key && u64map_get(&p->in_flight, p->open.slots[i].key)) return true;
    return false;
}

static void take_convs(struct writer_pipeline *p, commit_slot *s) {
    if (p->open.count > s->cap_convs) {
        uint64_t *grown = realloc(s->convs, p->open.count * sizeof *grown);
        if (!grown) abort();
        s->convs = grown;
        s->cap_convs = p->open.count;
    }
    s->n_convs = 0;
    for (size_t i = 0; i < p->open.cap; i++) {
        uint64_t conv = p->open.slots[i].key;
        if (!conv) continue;
        s->convs[s->n_convs++] = conv;
        if (u64map_put(&p->in_flight, conv, 1)) abort();
    }
    map_clear(&p->open);
}

int writer_commit_submit(writer *w) {
    struct writer_pipeline *p = w->pipe;
    for (size_t i = 0; i < w->n_sends; i++) writer_commit_touch(w, w->sends[i].conv);
    bool failed = false, waited = false;
    while (p->count > 0 && (p->count == COMMITS_IN_FLIGHT || open_conflicts(p))) {
        if (!waited && p->count < COMMITS_IN_FLIGHT) METRIC_INC(writer_commit_waits_total);
        waited = true;
        finish_oldest(w, true, &failed);
    }
    if (failed || store_batch_count(w->batch) == 0) {
        map_clear(&p->open);
        return failed ? -1 : 0;
    }
    commit_slot *s = &p->slots[(p->head + p->count) % COMMITS_IN_FLIGHT];
    store_batch *spare = s->batch;
    s->batch = w->batch;
    w->batch = spare;
    memcpy(s->sends, w->sends, w->n_sends * sizeof *s->sends);
    s->n_sends = w->n_sends;
    memcpy(s->held, w->held, w->n_held * sizeof *s->held);
    s->n_held = w->n_held;
    memcpy(s->replies, w->replies, w->n_replies * sizeof *s->replies);
    s->n_replies = w->n_replies;
    outbound **pushes = s->pushes;   /* the slot's spare array becomes the writer's */
    size_t cap_pushes = s->cap_pushes;
    s->pushes = w->pushes;
    s->cap_pushes = w->cap_pushes;
    s->n_pushes = w->n_pushes;
    w->pushes = pushes;
    w->cap_pushes = cap_pushes;
    note_list notes = s->notes;
    s->notes = w->notes_open;
    w->notes_open = notes;
    w->notes_open.n = 0;
    take_convs(p, s);
    w->n_sends = w->n_held = w->n_replies = w->n_pushes = 0;
    pthread_mutex_lock(&p->mu);
    s->done = false;
    pthread_mutex_unlock(&p->mu);
    p->count++;
    note_in_flight(1);
    METRIC_INC(writer_commits_async_total);
    bool sync = w->srv->cfg.fsync != FSYNC_OFF;
    if (store_commit_async(w->srv->store, s->batch, sync, commit_done, s) != 0) {
        /* not started (the callback will not come): it failed */
        pthread_mutex_lock(&p->mu);
        s->result = -1;
        s->done = true;
        pthread_mutex_unlock(&p->mu);
    }
    return 1;
}

/* ------------------------------------------------------------- held back */

static uint64_t send_conv(const chat_request *r) {
    if (r->op != CHAT_FRAME || r->frame->body_case != PARLEY__V1__FRAME__BODY_SEND_MESSAGE) return 0;
    return r->frame->send_message->conversation_id;
}

bool writer_commit_park(writer *w, chat_request *r) {
    struct writer_pipeline *p = w->pipe;
    uint64_t conv = p ? send_conv(r) : 0;
    if (!conv || (!u64map_get(&p->in_flight, conv) && !u64map_get(&p->parked_convs, conv))) return false;
    if (p->n_parked == PARKED_MAX) abort();   /* the loop pops only while there is room (writer_commit_room) */
    uint64_t *count = u64map_get(&p->parked_convs, conv);
    if (u64map_put(&p->parked_convs, conv, count ? *count + 1 : 1)) abort();
    p->parked[p->n_parked++] = r;
    METRIC_INC(writer_commit_waits_total);
    /* a retry whose first attempt is in flight: answered after it (a duplicate, from the cache) */
    const ProtobufCBinaryData *id = &r->frame->send_message->client_msg_id;
    uint64_t first_conv = 0, first_seq = 0;
    if (writer_cache_dedupe_get(&w->cache, r->user_id, r->device_id, id->data, id->len, clock_wall_ms(),
                                w->srv->cfg.retention_ms, &first_conv, &first_seq) &&
        u64map_get(&p->in_flight, first_conv))
        METRIC_INC(writer_retries_in_flight_total);
    return true;
}

void writer_commit_wait(writer *w) {
    bool failed = false;
    if (w->pipe && w->pipe->count > 0) finish_oldest(w, true, &failed);
}

size_t writer_commit_unpark(writer *w, chat_request **out, size_t max) {
    struct writer_pipeline *p = w->pipe;
    if (!p || p->n_parked == 0) return 0;
    size_t n = 0, kept = 0;
    for (size_t i = 0; i < p->n_parked; i++) {
        chat_request *r = p->parked[i];
        uint64_t conv = send_conv(r);
        /* once out is full everything after stays, so each conversation keeps its order */
        if (n == max || u64map_get(&p->in_flight, conv)) {
            p->parked[kept++] = r;
            continue;
        }
        uint64_t *count = u64map_get(&p->parked_convs, conv);
        if (count && *count > 1) (*count)--;
        else u64map_remove(&p->parked_convs, conv, NULL);
        out[n++] = r;
    }
    p->n_parked = kept;
    return n;
}

bool writer_commit_room(const writer *w) {
    return !w->pipe || w->pipe->n_parked + BATCH_MAX <= PARKED_MAX;
}

size_t writer_commit_parked(const writer *w) {
    return w->pipe ? w->pipe->n_parked : 0;
}

bool writer_commit_busy(const writer *w) {
    return w->pipe && (w->pipe->count > 0 || w->pipe->n_parked > 0 || w->pipe->n_raises > 0);
}

bool writer_commit_defer_raise(writer *w, const delivered_note *note) {
    struct writer_pipeline *p = w->pipe;
    if (!p || !u64map_get(&p->in_flight, note->conv)) return false;
    if (p->n_raises == p->cap_raises) {
        size_t cap = p->cap_raises ? p->cap_raises * 2 : 64;
        delivered_note *grown = cap <= RAISES_HELD_MAX ? realloc(p->raises, cap * sizeof *grown) : NULL;
        if (!grown) return false;   /* written now: its batch then waits for the commit in flight */
        p->raises = grown;
        p->cap_raises = cap;
    }
    p->raises[p->n_raises++] = *note;
    return true;
}

void writer_commit_replay_raises(writer *w, void (*raise)(writer *, const delivered_note *)) {
    struct writer_pipeline *p = w->pipe;
    if (!p || p->n_raises == 0) return;
    size_t kept = 0, n = p->n_raises;
    p->n_raises = 0;   /* raise does not hold a note back: its conversation is not in flight */
    for (size_t i = 0; i < n; i++) {
        delivered_note note = p->raises[i];
        if (u64map_get(&p->in_flight, note.conv)) p->raises[kept++] = note;
        else raise(w, &note);
    }
    p->n_raises = kept;
}
