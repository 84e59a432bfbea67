/* writer_route.c -- the write path's owners and what crosses between them.
 *
 * Owners (each a writer thread with its own queue, batch and group commit):
 *  - conversation writer i (of N, --writers) owns every conversation
 *    partition p with p mod N == i (chat/partition.h): sends, read marks,
 *    group changes, accept/decline, the creation of the conversations of its
 *    partitions (OpenDirect by the pair's partition, CreateGroup by a
 *    partition picked from the request), their seqs, member records, and
 *    the fan-out log of its partitions;
 *  - the accounts owner: registration, devices, link tokens, keys, device
 *    messages, blocks, and every consent record. A flood of these waits in
 *    its queue, not in front of anyone's sends.
 *
 * A request that touches the data of two owners is handled by the owner of
 * what it changes first and then handed on, never shared:
 *  - a device's ack (CHAT_ACK) goes to the conversation writer of its
 *    user's partition (so one device's cursor writes stay in order); it
 *    stores the cursor and raises delivered seqs in the conversations it
 *    owns; the raises for other conversations go to their owners
 *    (CHAT_DELIVERED), which are the only writers of those member records;
 *  - an action that implies an accept (OpenDirect, CreateGroup, AddMembers,
 *    AcceptRequest, the first reply in a direct conversation) commits its
 *    conversation part on the conversation writer, then hands the consent
 *    changes and the batch's answers to the accounts owner (CHAT_CONSENT),
 *    which applies them (an implied accept only over "none", so it never
 *    undoes a block committed in between), commits, and only then answers:
 *    whoever hears OK finds both parts stored. Conversation writers read
 *    consent from the store (the committed state) and keep it only until
 *    the accounts owner's next consent change commits (consent.c: an
 *    epoch it bumps before answering);
 *  - RemoveDevice (accounts) tells every conversation writer which user
 *    removed a device (CHAT_DEVICE_REMOVED), so their requests from it are
 *    refused once the removal is committed.
 * The hand-offs go one way per kind (conversation -> accounts blocks when
 * full; accounts -> conversation and conversation -> conversation never
 * block and drop a hint when full), so no two owners wait on each other. */
#include "chat/partition.h"
#include "chat/writer.h"
#include "chat/writer_internal.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"
#include "core/metrics.h"

writer *writer_owner_of_conv(const writer_group *g, uint64_t conv) {
    return g->convs[conv_partition(conv, g->partitions) % g->n];
}

bool writer_owns_conv(const writer *w, uint64_t conv) {
    return !w->accounts && writer_owner_of_conv(w->group, conv) == w;
}

uint32_t writer_group_partition(const chat_request *r, uint32_t partitions) {
    /* any partition will do; spreading by who asks and which request keeps
     * every owner's share of new groups even. Not by connection: with
     * --kafka the origin node picks the partition (writer_request_partition)
     * and the owner that stores it must pick the same one. */
    return hash_partition(r->user_id ^ (r->request_id * 0x9E3779B97F4A7C15ull), partitions);
}

/* The conversation a conversation writer's request names: false when the
 * frame is of another kind or lacks its body. (0 is a conversation id too
 * here: its partition's owner answers that it does not exist.) */
static bool conversation_of(const Parley__V1__Frame *f, uint64_t *conv) {
    bool has = false;
    switch (f->body_case) {
    case PARLEY__V1__FRAME__BODY_SEND_MESSAGE:
        if ((has = f->send_message != NULL)) *conv = f->send_message->conversation_id;
        break;
    case PARLEY__V1__FRAME__BODY_MARK_READ:
        if ((has = f->mark_read != NULL)) *conv = f->mark_read->conversation_id;
        break;
    case PARLEY__V1__FRAME__BODY_ADD_MEMBERS:
        if ((has = f->add_members != NULL)) *conv = f->add_members->conversation_id;
        break;
    case PARLEY__V1__FRAME__BODY_REMOVE_MEMBER:
        if ((has = f->remove_member != NULL)) *conv = f->remove_member->conversation_id;
        break;
    case PARLEY__V1__FRAME__BODY_RENAME_GROUP:
        if ((has = f->rename_group != NULL)) *conv = f->rename_group->conversation_id;
        break;
    case PARLEY__V1__FRAME__BODY_ACCEPT_REQUEST:
        if ((has = f->accept_request != NULL)) *conv = f->accept_request->conversation_id;
        break;
    case PARLEY__V1__FRAME__BODY_DECLINE_REQUEST:
        if ((has = f->decline_request != NULL)) *conv = f->decline_request->conversation_id;
        break;
    default:
        break;
    }
    return has;
}

bool writer_request_partition(const chat_request *r, uint32_t partitions, uint32_t *p) {
    const Parley__V1__Frame *f = r->frame;
    if (r->op != CHAT_FRAME || !f || partitions == 0) return false;
    if (f->body_case == PARLEY__V1__FRAME__BODY_OPEN_DIRECT) {
        if (!f->open_direct) return false;
        *p = pair_partition(r->user_id, f->open_direct->peer_user_id, partitions);
        return true;
    }
    if (f->body_case == PARLEY__V1__FRAME__BODY_CREATE_GROUP) {
        *p = writer_group_partition(r, partitions);
        return true;
    }
    uint64_t conv;
    if (!conversation_of(f, &conv)) return false;
    *p = conv_partition(conv, partitions);
    return true;
}

static writer *owner_of_partition(const writer_group *g, uint32_t p) { return g->convs[p % g->n]; }

static writer *route(writer_group *g, const chat_request *r) {
    if (r->op == CHAT_ACK) return owner_of_partition(g, hash_partition(r->user_id, g->partitions));
    /* --kafka: a delivered record's raises, all of one partition (delivered_log.c) */
    if (r->op == CHAT_DELIVERED && r->forward->n_notes) return writer_owner_of_conv(g, r->forward->notes[0].conv);
    uint32_t p;
    /* registration, devices, keys, link tokens, blocks: the accounts owner */
    return writer_request_partition(r, g->partitions, &p) ? owner_of_partition(g, p) : g->accounts;
}

void writer_note_depth(writer *w, size_t depth) {
    const writer_group *g = w->group;
    atomic_store(&w->depth, (long)depth);
    long sum = atomic_load(&g->accounts->depth);
    for (uint32_t i = 0; i < g->n; i++) sum += atomic_load(&g->convs[i]->depth);
    atomic_store(&g_metrics.writer_queue_depth, sum);
}

/* ------------------------------------------------------------- forwards */

/* Every request into an owner's queue goes through here: counted in
 * in_flight until the turn that handles it is done (writer_turn_done). */
static int owner_push(writer *to, chat_request *r, bool block) {
    atomic_fetch_add(&to->group->in_flight, 1);
    int rc = block ? mpsc_push(&to->requests, r) : mpsc_try_push(&to->requests, r);
    if (rc) atomic_fetch_sub(&to->group->in_flight, 1);
    return rc;
}

void writer_turn_done(writer *w, size_t n) {
    if (n) atomic_fetch_sub(&w->group->in_flight, (long)n);
}

void chat_forward_free(chat_forward *f) {
    if (!f) return;
    for (size_t i = 0; i < f->n_then_post; i++) outbound_free(f->then_post[i]);
    free(f->then_post);
    free(f->changes.items);
    free(f->notes);
    free(f);
}

static chat_request *forward_new(chat_op op) {
    chat_request *r = calloc(1, sizeof *r);
    chat_forward *f = r ? calloc(1, sizeof *f) : NULL;
    if (!f) {
        free(r);
        return NULL;
    }
    r->op = op;
    r->forward = f;
    return r;
}

static void push_delivered(writer *w, uint32_t owner) {
    chat_request *r = w->delivered_out[owner];
    w->delivered_out[owner] = NULL;
    if (r && owner_push(w->group->convs[owner], r, false)) chat_request_free(r);
}

/* A delivered mark is a hint: dropped when out of memory or when the owner's
 * queue is full (the next ack raises it). */
void writer_forward_delivered(writer *w, const delivered_note *note) {
    uint32_t owner = conv_partition(note->conv, w->group->partitions) % w->group->n;
    chat_request *r = w->delivered_out[owner];
    if (!r && !(r = w->delivered_out[owner] = forward_new(CHAT_DELIVERED))) return;
    chat_forward *f = r->forward;
    if (f->n_notes == f->cap_notes) {
        size_t cap = f->cap_notes ? f->cap_notes * 2 : 16;
        delivered_note *grown = realloc(f->notes, cap * sizeof *grown);
        if (!grown) return;
        f->notes = grown;
        f->cap_notes = cap;
    }
    f->notes[f->n_notes++] = *note;
    if (f->n_notes == FORWARD_NOTES_MAX) push_delivered(w, owner);
}

void writer_send_delivered(writer *w) {
    for (uint32_t i = 0; i < w->group->n; i++) push_delivered(w, i);
}

void writer_tell_device_removed(writer *w, uint64_t user) {
    const writer_group *g = w->group;
    for (uint32_t i = 0; i < g->n; i++) {
        chat_request *r = forward_new(CHAT_DEVICE_REMOVED);
        if (!r) continue;
        r->forward->about_user = user;
        /* full: its queued requests from the device are not refused, but the
         * device's connections are closed all the same (handle_remove_device) */
        if (owner_push(g->convs[i], r, false)) chat_request_free(r);
    }
}

bool writer_forward_consent(writer *w, outbound **posts, size_t n_posts) {
    if (w->consent_out.n == 0) return false;
    chat_request *r = forward_new(CHAT_CONSENT);
    outbound **then = r ? malloc((n_posts ? n_posts : 1) * sizeof *then) : NULL;
    if (!then) abort();   /* the answers must not be lost: a few bytes */
    chat_forward *f = r->forward;
    f->changes = w->consent_out;   /* moved: the writer starts a new list */
    memset(&w->consent_out, 0, sizeof w->consent_out);
    memcpy(then, posts, n_posts * sizeof *then);
    f->then_post = then;
    f->n_then_post = f->cap_then_post = n_posts;
    /* blocks while the accounts owner's queue is full: it never waits for a
     * conversation writer, so this cannot deadlock */
    if (owner_push(w->group->accounts, r, true)) {
        /* stopping: the accounts owner is gone; what committed is answered */
        log_error("%s: consent changes dropped at stop", w->name);
        for (size_t i = 0; i < f->n_then_post; i++) outbound_send(w->srv->outbox, f->then_post[i]);
        f->n_then_post = 0;
        chat_request_free(r);
    }
    return true;
}

/* ------------------------------------------------------------- the group */

static void group_free(writer_group *g) {
    for (uint32_t i = 0; g->convs && i < g->n; i++) writer_free_owner(g->convs[i]);
    writer_free_owner(g->accounts);
    free(g->convs);
    free(g);
}

writer *writer_start(server *srv) {
    writer_group *g = calloc(1, sizeof *g);
    if (!g) return NULL;
    g->srv = srv;
    if (partitions_load(srv->store, &g->partitions, &g->user_partitions)) {
        log_error("writer: cannot read the store's partition count");
        free(g);
        return NULL;
    }
    g->n = srv->cfg.writers ? srv->cfg.writers : 1;
    if (g->n > g->partitions) g->n = g->partitions;   /* a writer with no partition would idle */
    g->convs = calloc(g->n, sizeof *g->convs);
    bool ok = g->convs != NULL;
    for (uint32_t i = 0; ok && i < g->n; i++) ok = (g->convs[i] = writer_new_owner(srv, g, false, i)) != NULL;
    if (ok) ok = (g->accounts = writer_new_owner(srv, g, true, 0)) != NULL;
    if (!ok) {
        log_error("writer: cannot start");
        group_free(g);
        return NULL;
    }
    /* every owner exists before any thread runs: they hand requests on */
    uint32_t started = 0;
    while (started < g->n && writer_run(g->convs[started]) == 0) started++;
    if (started < g->n || writer_run(g->accounts)) {
        log_error("writer: cannot start its threads");
        _exit(1);   /* threads already running hold the group: no clean way back */
    }
    log_info("write path: %u conversation writers over %u partitions, one accounts owner", g->n, g->partitions);
    return g->accounts;   /* requests enter through any owner: writer_submit routes */
}

int writer_submit(writer *w, chat_request *r) {
    return owner_push(route(w->group, r), r, false);
}

void writer_forget_cached(writer *w) { atomic_fetch_add(&w->group->forget_epoch, 1); }

/* Until no request is queued or being handled anywhere (bounded): the
 * gateway has stopped submitting, and what is left may still hand delivered
 * raises, consent changes or device removals to another owner, which must
 * then still take them. */
static void wait_until_quiet(writer_group *g) {
    enum { QUIET_WAIT_MS = 30000, POLL_US = 1000 };
    for (int i = 0; i < QUIET_WAIT_MS * 1000 / POLL_US; i++) {
        if (atomic_load(&g->in_flight) <= 0) return;
        usleep(POLL_US);
    }
    log_warn("writer: %ld requests still in flight after %d ms; stopping anyway (a delivered mark they raise may be lost)",
             atomic_load(&g->in_flight), (int)QUIET_WAIT_MS);
}

void writer_stop(writer *w) {
    if (!w) return;
    writer_group *g = w->group;
    wait_until_quiet(g);
    /* conversation writers first: while they finish they may hand consent
     * changes to the accounts owner, which is still running */
    for (uint32_t i = 0; i < g->n; i++) mpsc_close(&g->convs[i]->requests);
    for (uint32_t i = 0; i < g->n; i++) pthread_join(g->convs[i]->thread, NULL);
    mpsc_close(&g->accounts->requests);
    pthread_join(g->accounts->thread, NULL);
    group_free(g);
}
