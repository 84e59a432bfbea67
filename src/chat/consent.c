/* consent.c -- see consent.h. The request handlers (AcceptRequest,
 * BlockUser) and the checks the writer's other handlers make: sends in a
 * direct conversation, pre-key claims, device messages. They run on the
 * writer thread; consent_state and consent_visible also on workers. */
#include "chat/consent.h"

#include <string.h>

#include "chat/membership.h"
#include "chat/writer_internal.h"
#include "core/clock.h"
#include "core/metrics.h"

/* 0 with *state, or -1 on a store error (*state NONE) */
static int consent_read(store *s, uint64_t owner, uint64_t other, int *state) {
    Parley__Store__Consent *c = NULL;
    int found = store_get_consent(s, owner, other, &c);
    *state = found == 1 ? (int)c->state : CONSENT_NONE;
    if (c) parley__store__consent__free_unpacked(c, NULL);
    return found < 0 ? -1 : 0;
}

int consent_state(store *s, uint64_t owner, uint64_t other) {
    int state;
    consent_read(s, owner, other, &state);
    return state;
}

bool consent_visible(store *s, uint64_t viewer, uint64_t target) {
    if (viewer == target) return true;
    return consent_state(s, target, viewer) == CONSENT_ACCEPTED && membership_shared(s, viewer, target) == 1;
}

/* a's conversations are scanned for a group b is a current member of too;
 * the scan ends at the first one (bounded by a's conversations) */
struct group_scan {
    store *s;
    uint64_t a, b;
    int found;
};

static int check_group(void *ud, uint64_t conv) {
    struct group_scan *g = ud;
    if (membership_current(g->s, conv, g->a, NULL) != 1 || membership_current(g->s, conv, g->b, NULL) != 1) return 0;
    Parley__Store__Conversation *c = NULL;
    if (store_get_conversation(g->s, conv, &c) != 1) return 0;
    g->found = c->kind != PARLEY__V1__CONVERSATION_KIND__DIRECT;
    parley__store__conversation__free_unpacked(c, NULL);
    return g->found;
}

bool consent_group_peers(store *s, uint64_t a, uint64_t b) {
    if (a == b) return true;
    struct group_scan g = {s, a, b, 0};
    store_scan_user_conversations(s, a, check_group, &g);
    return g.found;
}

bool consent_devices_visible(store *s, uint64_t viewer, uint64_t target) {
    if (viewer == target) return true;
    int state = consent_state(s, target, viewer);
    if (state == CONSENT_BLOCKED) return false;
    if (state == CONSENT_ACCEPTED) return membership_shared(s, viewer, target) == 1;
    return consent_group_peers(s, viewer, target);
}

bool consent_is_request(store *s, uint64_t user, const Parley__Store__Member *m) {
    /* direct conversations from before direct_peer was kept carry no peer:
     * they predate requests and stay ordinary */
    uint64_t other = m->direct_peer ? m->direct_peer : m->added_by;
    if (!other || other == user) return false;
    return consent_state(s, user, other) != CONSENT_ACCEPTED;
}

/* The accounts owner is the only one that changes consent, so it keeps the
 * states it has read or written in a direct-mapped table (bounded: a slot is
 * simply overwritten) and a send in a direct conversation costs no store
 * read once the pair is known. Cleared when a commit fails (it may hold what
 * did not commit). A conversation writer keeps the committed states it read
 * in the same kind of table, each tagged with the group's consent epoch
 * when it was read; a slot counts only while the epoch is unchanged, and
 * the accounts owner bumps it after every commit that changed a state,
 * before that commit's answers go out, so whoever heard of a block finds
 * it applied to the sends that follow. */
enum { CONSENT_CACHE_SLOTS = 1 << 16 };

struct consent_slot {
    uint64_t owner, other;
    uint64_t epoch;          /* conversation writers: group->consent_epoch when read */
    uint32_t state;
    bool used;
};

static struct consent_slot *cache_slot(writer *w, uint64_t owner, uint64_t other) {
    if (!w->consent_cache) {
        w->consent_cache = calloc(CONSENT_CACHE_SLOTS, sizeof *w->consent_cache);
        if (!w->consent_cache) return NULL;   /* then every lookup reads the store */
    }
    uint64_t h = (owner * 0x9E3779B97F4A7C15ull) ^ (other * 0xC2B2AE3D27D4EB4Full);
    return &w->consent_cache[(h >> 32) % CONSENT_CACHE_SLOTS];
}

/* A conversation writer reads the committed state, then what its open
 * batch will ask the accounts owner to change (consent_change). */
static int committed_state(writer *w, uint64_t owner, uint64_t other) {
    /* the epoch before the read: a change committed after it moves the
     * epoch on, and the slot filled here no longer counts */
    uint64_t epoch = atomic_load(&w->group->consent_epoch);
    struct consent_slot *slot = cache_slot(w, owner, other);
    if (slot && slot->used && slot->owner == owner && slot->other == other && slot->epoch == epoch) {
        METRIC_INC(writer_consent_cache_hits_total);
        return (int)slot->state;
    }
    int state;
    METRIC_INC(writer_consent_reads_total);
    if (consent_read(w->srv->store, owner, other, &state) == 0 && slot)
        *slot = (struct consent_slot){owner, other, epoch, (uint32_t)state, true};
    return state;
}

static int conversation_writer_view(writer *w, uint64_t owner, uint64_t other) {
    int state = committed_state(w, owner, other);
    for (size_t i = 0; i < w->consent_out.n; i++) {
        const consent_change *c = &w->consent_out.items[i];
        if (c->owner != owner || c->other != other) continue;
        if (!c->if_none || state == CONSENT_NONE) state = (int)c->state;
    }
    return state;
}

int writer_consent_state(writer *w, uint64_t owner, uint64_t other) {
    if (!w->accounts) return conversation_writer_view(w, owner, other);
    struct consent_slot *slot = cache_slot(w, owner, other);
    if (slot && slot->used && slot->owner == owner && slot->other == other) return (int)slot->state;
    int state;
    METRIC_INC(writer_consent_reads_total);
    if (consent_read(w->srv->store, owner, other, &state) == 0 && slot)
        *slot = (struct consent_slot){owner, other, 0, (uint32_t)state, true};
    return state;
}

void writer_consent_cache_clear(writer *w) {
    if (w->consent_cache) memset(w->consent_cache, 0, CONSENT_CACHE_SLOTS * sizeof *w->consent_cache);
    w->consent_dirty = false;
}

void writer_consent_committed(writer *w) {
    atomic_fetch_add(&w->group->consent_epoch, 1);
    w->consent_dirty = false;
}

/* Only the accounts owner writes consent records; a conversation writer
 * notes the change for it (writer_forward_consent, after its commit).
 * if_none: an accept implied by an action, applied only over "none". */
static void note_change(writer *w, uint64_t owner, uint64_t other, int state, bool if_none) {
    consent_changes *l = &w->consent_out;
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 16;
        consent_change *grown = realloc(l->items, cap * sizeof *grown);
        if (!grown) abort();   /* bounded by the batch: BATCH_MAX requests, a group's members each */
        l->items = grown;
        l->cap = cap;
    }
    l->items[l->n++] = (consent_change){owner, other, (uint32_t)state, if_none};
}

static void put_state(writer *w, uint64_t owner, uint64_t other, int state) {
    if (!w->accounts) {
        note_change(w, owner, other, state, false);
        return;
    }
    Parley__Store__Consent c;
    parley__store__consent__init(&c);
    c.state = (uint32_t)state;   /* the request counters start again from zero */
    store_put_consent(w->batch, owner, other, &c);
    w->consent_dirty = true;
    struct consent_slot *slot = cache_slot(w, owner, other);
    if (slot) *slot = (struct consent_slot){owner, other, 0, (uint32_t)state, true};
}

void consent_accept_added(writer *w, uint64_t actor, const uint64_t *users, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (users[i] == actor || writer_consent_state(w, actor, users[i]) != CONSENT_NONE) continue;
        if (w->accounts) put_state(w, actor, users[i], CONSENT_ACCEPTED);
        else note_change(w, actor, users[i], CONSENT_ACCEPTED, true);
    }
}

/* The changes a conversation writer committed its part of: applied in the
 * order they were made, each implied accept only over "none" (so a block
 * committed in between stands), committed, then the answers that waited. */
void handle_consent_forward(writer *w, chat_request *r) {
    chat_forward *f = r->forward;
    for (size_t i = 0; i < f->changes.n; i++) {
        const consent_change *c = &f->changes.items[i];
        if (c->if_none && writer_consent_state(w, c->owner, c->other) != CONSENT_NONE) continue;
        put_state(w, c->owner, c->other, (int)c->state);
    }
    /* A failed commit here loses only the implied accepts (the store logs
     * it): what the answers report, the conversation writer's part, is
     * committed, so they stand. */
    writer_flush(w);
    for (size_t i = 0; i < f->n_then_post; i++) outbound_send(w->srv->outbox, f->then_post[i]);
    f->n_then_post = 0;
}

/* the other member of a direct conversation, from the member record or, for
 * conversations from before it was recorded, by a scan */
struct other_scan { uint64_t me, other; };
static int find_other(void *ud, uint64_t user, const Parley__Store__Member *m) {
    (void)m;
    struct other_scan *o = ud;
    if (user != o->me) o->other = user;
    return o->other != 0;
}

uint64_t consent_direct_peer(writer *w, uint64_t conv, uint64_t me, const Parley__Store__Member *m) {
    if (m->direct_peer) return m->direct_peer;
    Parley__Store__Conversation *c = NULL;
    if (store_get_conversation(w->srv->store, conv, &c) != 1) return 0;
    bool direct = c->kind == PARLEY__V1__CONVERSATION_KIND__DIRECT;
    parley__store__conversation__free_unpacked(c, NULL);
    if (!direct) return 0;
    struct other_scan o = {me, 0};
    store_scan_members(w->srv->store, conv, find_other, &o);
    return o.other;
}

void handle_accept_request(writer *w, chat_request *r) {
    uint64_t conv = r->frame->accept_request->conversation_id;
    Parley__Store__Member *m = NULL;
    int active = writer_active_member(w, conv, r->user_id, &m);
    if (active <= 0) {
        writer_fail(w, r, active < 0 ? PARLEY__V1__STATUS__INTERNAL : PARLEY__V1__STATUS__FORBIDDEN,
                    "not a member of conversation %llu", (unsigned long long)conv);
        return;
    }
    uint64_t other = consent_direct_peer(w, conv, r->user_id, m);
    if (!other) other = m->added_by;
    if (other && other != r->user_id) put_state(w, r->user_id, other, CONSENT_ACCEPTED);
    if (m->hidden) {
        m->hidden = false;
        writer_put_member(w, conv, r->user_id, m);
    }
    parley__store__member__free_unpacked(m, NULL);
    writer_answer_ok(w, r);
}

void handle_block_user(writer *w, chat_request *r) {
    const Parley__V1__BlockUser *q = r->frame->block_user;
    if (q->user_id == r->user_id) {
        writer_fail(w, r, PARLEY__V1__STATUS__BAD_REQUEST, "one cannot block oneself");
        return;
    }
    if (writer_user_exists(w, q->user_id) != 1) {
        writer_fail(w, r, PARLEY__V1__STATUS__NOT_FOUND, "no user %llu", (unsigned long long)q->user_id);
        return;
    }
    put_state(w, r->user_id, q->user_id, q->unblock ? CONSENT_NONE : CONSENT_BLOCKED);
    /* a presence subscription made while the caller accepted the blocked user
     * ends too (after the commit, like every push) */
    if (!q->unblock) {
        outbound *drop = outbound_new(OUT_DROP_PRESENCE, 0, 0);
        drop->user_id = q->user_id;
        drop->about_user = r->user_id;
        writer_post_later(w, drop);
    }
    writer_answer_ok(w, r);
}

Parley__V1__Status consent_direct_send(writer *w, uint64_t me, uint64_t peer, Parley__Store__Member *m,
                                       const char **why) {
    int mine = writer_consent_state(w, me, peer);
    int theirs = writer_consent_state(w, peer, me);
    if (mine == CONSENT_BLOCKED) {
        *why = "you blocked this user; unblock them first";
        return PARLEY__V1__STATUS__FORBIDDEN;
    }
    if (theirs == CONSENT_BLOCKED) {
        METRIC_INC(blocked_refused_total);
        *why = "this user does not accept your messages";
        return PARLEY__V1__STATUS__FORBIDDEN;
    }
    if (theirs == CONSENT_NONE && m->request_sent >= REQUEST_MESSAGES_MAX) {
        METRIC_INC(request_limit_refused_total);
        *why = "message request limit reached: wait until the recipient accepts";
        return PARLEY__V1__STATUS__FORBIDDEN;
    }
    /* answering a request accepts it */
    if (mine == CONSENT_NONE) {
        if (w->accounts) put_state(w, me, peer, CONSENT_ACCEPTED);
        else note_change(w, me, peer, CONSENT_ACCEPTED, true);
    }
    m->hidden = false;
    if (theirs == CONSENT_NONE) m->request_sent++;
    return PARLEY__V1__STATUS__OK;
}

/* The record of target's view of caller, for a bounded use; NULL when
 * target accepted caller (no bound). Sets *status when refused. */
static Parley__Store__Consent *bounded_use(writer *w, uint64_t target, uint64_t caller, Parley__V1__Status *status) {
    *status = PARLEY__V1__STATUS__OK;
    Parley__Store__Consent *c = NULL;
    METRIC_INC(writer_consent_reads_total);
    int found = store_get_consent(w->srv->store, target, caller, &c);
    if (found < 0) {
        *status = PARLEY__V1__STATUS__INTERNAL;
        return NULL;
    }
    if (found == 0) {
        c = malloc(sizeof *c);
        if (!c) abort();
        parley__store__consent__init(c);
    }
    if (c->state == CONSENT_ACCEPTED) {
        parley__store__consent__free_unpacked(c, NULL);
        return NULL;
    }
    if (c->state == CONSENT_BLOCKED) {
        METRIC_INC(blocked_refused_total);
        *status = PARLEY__V1__STATUS__FORBIDDEN;
        parley__store__consent__free_unpacked(c, NULL);
        return NULL;
    }
    /* members of one group exchange keys and sender keys without having
     * accepted each other: the bounds are for direct message requests */
    if (consent_group_peers(w->srv->store, caller, target)) {
        parley__store__consent__free_unpacked(c, NULL);
        return NULL;
    }
    return c;
}

Parley__V1__Status consent_key_claim(writer *w, uint64_t caller, uint64_t target, uint64_t *retry_after_ms) {
    if (caller == target) return PARLEY__V1__STATUS__OK;
    Parley__V1__Status st;
    Parley__Store__Consent *c = bounded_use(w, target, caller, &st);
    if (!c) return st;
    uint64_t now = clock_wall_ms();
    if (now - c->key_window_ts >= REQUEST_KEY_WINDOW_MS) {
        c->key_window_ts = now;
        c->key_claims = 0;
    }
    if (c->key_claims >= REQUEST_KEY_CLAIMS) {
        METRIC_INC(key_claims_rate_limited_total);
        *retry_after_ms = c->key_window_ts + REQUEST_KEY_WINDOW_MS - now;
        st = PARLEY__V1__STATUS__RATE_LIMITED;
    } else {
        c->key_claims++;
        store_put_consent(w->batch, target, caller, c);
    }
    parley__store__consent__free_unpacked(c, NULL);
    return st;
}

Parley__V1__Status consent_device_message(writer *w, uint64_t caller, uint64_t target) {
    if (caller == target) return PARLEY__V1__STATUS__OK;
    Parley__V1__Status st;
    Parley__Store__Consent *c = bounded_use(w, target, caller, &st);
    if (!c) return st;
    if (c->device_messages >= REQUEST_DEVICE_MESSAGES_MAX) {
        METRIC_INC(request_limit_refused_total);
        st = PARLEY__V1__STATUS__FORBIDDEN;
    } else {
        c->device_messages++;
        store_put_consent(w->batch, target, caller, c);
    }
    parley__store__consent__free_unpacked(c, NULL);
    return st;
}
