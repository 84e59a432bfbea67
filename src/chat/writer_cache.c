/* writer_cache.c -- see writer_cache.h. Two set-associative tables, WAYS
 * entries a set; a hit or a put stamps the entry with the table's tick, a
 * put into a full set takes the least recently stamped entry. */
#include "chat/writer_cache.h"

#include <stdlib.h>
#include <string.h>

#include "chat/writer_internal.h"
#include "core/clock.h"
#include "core/metrics.h"

enum { WAYS = WCACHE_WAYS };

typedef struct member_entry {
    uint64_t conv, user;   /* user 0: empty (user ids start at 1) */
    uint64_t used;         /* tick of the last hit or put */
    Parley__Store__Member record;   /* its spans (a re-added member's), if any, in one block the entry owns */
} member_entry;

typedef struct dedupe_entry {
    uint64_t user;         /* 0: empty */
    uint32_t device;
    uint8_t len;
    uint8_t id[WCACHE_MSG_ID_MAX];
    uint64_t conv, seq, stored_ms;
    uint64_t used;
} dedupe_entry;

struct writer_cache {
    member_entry *members;   /* WCACHE_MEMBER_ENTRIES */
    dedupe_entry *dedupe;    /* WCACHE_DEDUPE_ENTRIES */
    uint64_t tick;
};

_Static_assert(WCACHE_MEMBER_ENTRIES % WAYS == 0 && WCACHE_DEDUPE_ENTRIES % WAYS == 0, "whole sets");

static writer_cache *cache_of(writer_cache **c) {
    if (*c) return *c;
    writer_cache *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    n->members = calloc(WCACHE_MEMBER_ENTRIES, sizeof *n->members);
    n->dedupe = calloc(WCACHE_DEDUPE_ENTRIES, sizeof *n->dedupe);
    if (!n->members || !n->dedupe) {
        writer_cache_free(n);
        return NULL;
    }
    return *c = n;
}

static void drop_spans(member_entry *e) {
    free(e->record.earlier);
    e->record.earlier = NULL;
    e->record.n_earlier = 0;
}

/* The earlier spans of m into one block: the pointers, then the spans. A
 * few dozen bytes, and a record that cannot be held would break the
 * write-through promise: out of memory aborts, as the store's unpack does. */
static void copy_spans(member_entry *e, const Parley__Store__Member *m) {
    size_t n = m->n_earlier;
    if (n == 0) return;
    Parley__Store__MemberSpan **ptrs = malloc(n * (sizeof *ptrs + sizeof **ptrs));
    if (!ptrs) abort();
    Parley__Store__MemberSpan *spans = (Parley__Store__MemberSpan *)(ptrs + n);
    for (size_t i = 0; i < n; i++) {
        parley__store__member_span__init(&spans[i]);
        spans[i].joined_seq = m->earlier[i]->joined_seq;
        spans[i].left_seq = m->earlier[i]->left_seq;
        ptrs[i] = &spans[i];
    }
    e->record.earlier = ptrs;
    e->record.n_earlier = n;
}

static void drop_all_spans(writer_cache *c) {
    for (size_t i = 0; i < WCACHE_MEMBER_ENTRIES; i++) drop_spans(&c->members[i]);
}

void writer_cache_free(writer_cache *c) {
    if (!c) return;
    if (c->members) drop_all_spans(c);
    free(c->members);
    free(c->dedupe);
    free(c);
}

void writer_cache_clear(writer_cache *c) {
    if (!c) return;
    drop_all_spans(c);
    memset(c->members, 0, WCACHE_MEMBER_ENTRIES * sizeof *c->members);
    memset(c->dedupe, 0, WCACHE_DEDUPE_ENTRIES * sizeof *c->dedupe);
}

static uint64_t mix(uint64_t h) {
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    h *= 0xc4ceb9fe1a85ec53ull;
    return h ^ (h >> 33);
}

/* ------------------------------------------------------------- members */

static member_entry *member_set(writer_cache *c, uint64_t conv, uint64_t user) {
    uint64_t h = mix(conv * 0x9E3779B97F4A7C15ull ^ user);
    return &c->members[(h % (WCACHE_MEMBER_ENTRIES / WAYS)) * WAYS];
}

/* A copy the caller frees as an unpacked record: the spans each in their
 * own allocation, as protobuf-c's free_unpacked expects. */
static Parley__Store__Member *copy_out(const Parley__Store__Member *held) {
    Parley__Store__Member *m = malloc(sizeof *m);
    if (!m) abort();   /* a few bytes; the store's unpack aborts likewise */
    *m = *held;
    m->earlier = NULL;
    m->n_earlier = 0;
    if (held->n_earlier == 0) return m;
    m->earlier = malloc(held->n_earlier * sizeof *m->earlier);
    if (!m->earlier) abort();
    for (size_t i = 0; i < held->n_earlier; i++) {
        m->earlier[i] = malloc(sizeof **m->earlier);
        if (!m->earlier[i]) abort();
        *m->earlier[i] = *held->earlier[i];
    }
    m->n_earlier = held->n_earlier;
    return m;
}

Parley__Store__Member *writer_cache_member_get(writer_cache **cp, uint64_t conv, uint64_t user) {
    writer_cache *c = *cp;
    if (!c || user == 0) return NULL;
    member_entry *set = member_set(c, conv, user);
    for (int i = 0; i < WAYS; i++) {
        if (set[i].user != user || set[i].conv != conv) continue;
        set[i].used = ++c->tick;
        return copy_out(&set[i].record);
    }
    return NULL;
}

void writer_cache_member_marks(writer_cache **cp, uint64_t conv, uint64_t user, uint64_t read_seq,
                               uint64_t delivered_seq) {
    writer_cache *c = *cp;
    if (!c || user == 0) return;
    member_entry *set = member_set(c, conv, user);
    for (int i = 0; i < WAYS; i++) {
        if (set[i].user != user || set[i].conv != conv) continue;
        set[i].record.read_seq = read_seq;
        set[i].record.delivered_seq = delivered_seq;
        return;
    }
}

void writer_cache_member_put(writer_cache **cp, uint64_t conv, uint64_t user, const Parley__Store__Member *m) {
    writer_cache *c = cache_of(cp);
    if (!c || user == 0) return;
    member_entry *set = member_set(c, conv, user), *slot = &set[0];
    for (int i = 0; i < WAYS; i++) {
        if (set[i].user == user && set[i].conv == conv) {
            slot = &set[i];
            break;
        }
        if (set[i].used < slot->used) slot = &set[i];   /* empty entries have used 0 */
    }
    drop_spans(slot);
    slot->conv = conv;
    slot->user = user;
    slot->used = ++c->tick;
    slot->record = *m;
    /* the copy owns only its spans: unknown fields stay with the caller's record */
    slot->record.base.n_unknown_fields = 0;
    slot->record.base.unknown_fields = NULL;
    slot->record.earlier = NULL;
    slot->record.n_earlier = 0;
    copy_spans(slot, m);
}

/* ------------------------------------------------------------- dedupe */

size_t writer_cache_dedupe_set_of(uint64_t user, uint32_t device, const uint8_t *id, size_t len) {
    uint64_t h = 1469598103934665603ull;   /* FNV-1a over the id, then mixed with who sent it */
    for (size_t i = 0; i < len; i++) h = (h ^ id[i]) * 1099511628211ull;
    h = mix(h ^ user * 0x9E3779B97F4A7C15ull ^ (uint64_t)device << 17);
    return (size_t)(h % (WCACHE_DEDUPE_ENTRIES / WAYS));
}

static dedupe_entry *dedupe_set(writer_cache *c, uint64_t user, uint32_t device, const uint8_t *id, size_t len) {
    return &c->dedupe[writer_cache_dedupe_set_of(user, device, id, len) * WAYS];
}

static bool same_id(const dedupe_entry *e, uint64_t user, uint32_t device, const uint8_t *id, size_t len) {
    return e->user == user && e->device == device && e->len == len && memcmp(e->id, id, len) == 0;
}

bool writer_cache_dedupe_get(writer_cache **cp, uint64_t user, uint32_t device, const uint8_t *id, size_t len,
                             uint64_t now_ms, uint64_t retention_ms, uint64_t *conv, uint64_t *seq) {
    writer_cache *c = *cp;
    if (!c || user == 0 || len == 0 || len > WCACHE_MSG_ID_MAX) return false;
    dedupe_entry *set = dedupe_set(c, user, device, id, len);
    for (int i = 0; i < WAYS; i++) {
        dedupe_entry *e = &set[i];
        if (!same_id(e, user, device, id, len)) continue;
        /* past retention the store no longer has it: neither do we */
        if (retention_ms && now_ms >= e->stored_ms && now_ms - e->stored_ms >= retention_ms) {
            memset(e, 0, sizeof *e);
            return false;
        }
        e->used = ++c->tick;
        *conv = e->conv;
        *seq = e->seq;
        return true;
    }
    return false;
}

void writer_cache_dedupe_put(writer_cache **cp, uint64_t user, uint32_t device, const uint8_t *id, size_t len,
                             uint64_t conv, uint64_t seq, uint64_t stored_ms) {
    if (user == 0 || len == 0 || len > WCACHE_MSG_ID_MAX) return;
    writer_cache *c = cache_of(cp);
    if (!c) return;
    dedupe_entry *set = dedupe_set(c, user, device, id, len), *slot = &set[0];
    for (int i = 0; i < WAYS; i++) {
        if (same_id(&set[i], user, device, id, len)) {
            slot = &set[i];
            break;
        }
        if (set[i].used < slot->used) slot = &set[i];
    }
    slot->user = user;
    slot->device = device;
    slot->len = (uint8_t)len;
    memcpy(slot->id, id, len);
    slot->conv = conv;
    slot->seq = seq;
    slot->stored_ms = stored_ms;
    slot->used = ++c->tick;
}

/* ------------------------------------------------------------- the writer's use */

int writer_read_member(writer *w, uint64_t conv, uint64_t user, Parley__Store__Member **out) {
    /* only the owner of conv writes its member records: another owner's
     * copy could be stale, so it reads the store */
    bool own = writer_owns_conv(w, conv);
    Parley__Store__Member *held = own ? writer_cache_member_get(&w->cache, conv, user) : NULL;
    if (held) {
        METRIC_INC(writer_member_cache_hits_total);
        *out = held;
        return 1;
    }
    METRIC_INC(writer_member_reads_total);
    int found = store_get_member(w->srv->store, conv, user, out);
    if (found == 1 && own) writer_cache_member_put(&w->cache, conv, user, *out);
    return found;
}

void writer_put_member(writer *w, uint64_t conv, uint64_t user, const Parley__Store__Member *m) {
    store_put_member(w->batch, conv, user, m);
    writer_commit_touch(w, conv);
    if (writer_owns_conv(w, conv)) writer_cache_member_put(&w->cache, conv, user, m);
}

int writer_read_client_msg(writer *w, uint64_t user, uint32_t device, const uint8_t *id, size_t len,
                           uint64_t *conv, uint64_t *seq) {
    if (writer_cache_dedupe_get(&w->cache, user, device, id, len, clock_wall_ms(), w->srv->cfg.retention_ms,
                                conv, seq)) {
        METRIC_INC(writer_dedupe_cache_hits_total);
        return 1;
    }
    int found;
    if (writer_prefetch_get(w->prefetch, user, device, id, len, &found, conv, seq)) return found;
    METRIC_INC(writer_dedupe_reads_total);
    return store_get_client_msg(w->srv->store, user, device, id, len, conv, seq);
}
