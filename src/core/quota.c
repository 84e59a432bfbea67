/* quota.c -- see quota.h. */
#include "core/quota.h"

#include <pthread.h>
#include <stdlib.h>

enum {
    SHARDS = 64,              /* a power of two */
    SLOTS_INITIAL = 64,       /* per shard, a power of two; doubles past 2 entries a slot */
    SWEEP_MS = 5000,          /* a shard drops its idle entries this often */
    USER_ENTRY = 0,           /* device id of a user's own entry (devices start at 1) */
};

typedef struct entry {
    uint64_t user;
    uint32_t device;          /* USER_ENTRY: the user's buckets and writer share */
    uint32_t in_writer;       /* user entry: requests in the writer queue */
    double tokens[QUOTA_KINDS];
    uint64_t refilled_ms;
    struct entry *next;
} entry;

typedef struct shard {
    pthread_mutex_t lock;
    entry **slots;
    uint32_t n_slots;
    uint32_t count;
    uint64_t swept_ms;
} shard;

struct quota {
    quota_limits limits;
    shard shards[SHARDS];
};

static uint64_t mix(uint64_t x) {   /* splitmix64's finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static shard *shard_of(quota *q, uint64_t user) { return &q->shards[mix(user) & (SHARDS - 1)]; }

static uint32_t slot_of(const shard *s, uint64_t user, uint32_t device) {
    return (uint32_t)(mix(user * 31 + device + 1) >> 7) & (s->n_slots - 1);
}

static const uint32_t *rates_of(const quota *q, const entry *e) {
    return e->device == USER_ENTRY ? q->limits.user_rate : q->limits.device_rate;
}

/* Adds what the time since the last refill earned; true when every bucket
 * is full (the entry says nothing a fresh one would not). */
static bool refill(const quota *q, entry *e, uint64_t now_ms) {
    const uint32_t *rate = rates_of(q, e);
    double dt = now_ms > e->refilled_ms ? (double)(now_ms - e->refilled_ms) / 1000.0 : 0.0;
    e->refilled_ms = now_ms;
    bool full = true;
    for (int k = 0; k < QUOTA_KINDS; k++) {
        double cap = 2.0 * rate[k];
        e->tokens[k] += dt * rate[k];
        if (e->tokens[k] >= cap) e->tokens[k] = cap;
        else full = false;
    }
    return full;
}

static void sweep(quota *q, shard *s, uint64_t now_ms) {
    s->swept_ms = now_ms;
    for (uint32_t i = 0; i < s->n_slots; i++) {
        entry **link = &s->slots[i];
        while (*link) {
            entry *e = *link;
            if (refill(q, e, now_ms) && e->in_writer == 0) {
                *link = e->next;
                free(e);
                s->count--;
            } else {
                link = &e->next;
            }
        }
    }
}

/* Doubles the slots; on failure the chains just grow longer. */
static void grow(shard *s) {
    uint32_t n = s->n_slots * 2;
    entry **slots = calloc(n, sizeof *slots);
    if (!slots) return;
    shard bigger = *s;
    bigger.slots = slots;
    bigger.n_slots = n;
    for (uint32_t i = 0; i < s->n_slots; i++) {
        for (entry *e = s->slots[i], *next; e; e = next) {
            next = e->next;
            uint32_t j = slot_of(&bigger, e->user, e->device);
            e->next = slots[j];
            slots[j] = e;
        }
    }
    free(s->slots);
    s->slots = slots;
    s->n_slots = n;
}

/* The entry, made with full buckets on first use; NULL when out of memory.
 * Caller holds s->lock. */
static entry *entry_for(quota *q, shard *s, uint64_t user, uint32_t device, uint64_t now_ms) {
    if (now_ms - s->swept_ms >= SWEEP_MS) sweep(q, s, now_ms);
    uint32_t i = slot_of(s, user, device);
    for (entry *e = s->slots[i]; e; e = e->next)
        if (e->user == user && e->device == device) return e;
    entry *e = calloc(1, sizeof *e);
    if (!e) return NULL;
    e->user = user;
    e->device = device;
    e->refilled_ms = now_ms;
    const uint32_t *rate = rates_of(q, e);
    for (int k = 0; k < QUOTA_KINDS; k++) e->tokens[k] = 2.0 * rate[k];
    e->next = s->slots[i];
    s->slots[i] = e;
    if (++s->count > 2 * s->n_slots) grow(s);
    return e;
}

quota *quota_new(const quota_limits *limits) {
    quota *q = calloc(1, sizeof *q);
    if (!q) return NULL;
    q->limits = *limits;
    for (int i = 0; i < SHARDS; i++) {
        shard *s = &q->shards[i];
        pthread_mutex_init(&s->lock, NULL);
        s->n_slots = SLOTS_INITIAL;
        s->slots = calloc(s->n_slots, sizeof *s->slots);
        if (!s->slots) {
            for (int j = 0; j <= i; j++) free(q->shards[j].slots);
            free(q);
            return NULL;
        }
    }
    return q;
}

/* a user's rate not given: twice its device's (a user has a few devices) */
static uint32_t user_rate(uint32_t given, uint32_t device_rate) {
    if (given) return given;
    return device_rate > 500000 ? 1000000 : 2 * device_rate;
}

quota *quota_new_for_config(const config *cfg) {
    quota_limits limits = {
        .device_rate = {[QUOTA_SEND] = cfg->send_rate, [QUOTA_WRITE] = cfg->write_rate},
        .user_rate = {[QUOTA_SEND] = user_rate(cfg->user_send_rate, cfg->send_rate),
                      [QUOTA_WRITE] = user_rate(cfg->user_write_rate, cfg->write_rate)},
        .user_writer_share = cfg->user_writer_share,
    };
    return quota_new(&limits);
}

void quota_free(quota *q) {
    if (!q) return;
    for (int i = 0; i < SHARDS; i++) {
        shard *s = &q->shards[i];
        for (uint32_t j = 0; j < s->n_slots; j++) {
            for (entry *e = s->slots[j], *next; e; e = next) {
                next = e->next;
                free(e);
            }
        }
        free(s->slots);
        pthread_mutex_destroy(&s->lock);
    }
    free(q);
}

static uint64_t wait_ms(double tokens, uint32_t rate) {
    return tokens >= 1.0 ? 0 : (uint64_t)((1.0 - tokens) * 1000.0 / rate) + 1;
}

bool quota_take(quota *q, quota_kind kind, uint64_t user, uint32_t device, uint64_t now_ms,
                uint64_t *retry_after_ms) {
    shard *s = shard_of(q, user);
    pthread_mutex_lock(&s->lock);
    entry *d = entry_for(q, s, user, device, now_ms);
    entry *u = entry_for(q, s, user, USER_ENTRY, now_ms);
    bool ok = true;
    /* out of memory: the request is not limited rather than refused */
    if (d && u) {
        refill(q, d, now_ms);
        refill(q, u, now_ms);
        ok = d->tokens[kind] >= 1.0 && u->tokens[kind] >= 1.0;
        if (ok) {
            d->tokens[kind] -= 1.0;
            u->tokens[kind] -= 1.0;
        } else {
            uint64_t wd = wait_ms(d->tokens[kind], q->limits.device_rate[kind]);
            uint64_t wu = wait_ms(u->tokens[kind], q->limits.user_rate[kind]);
            *retry_after_ms = wd > wu ? wd : wu;
        }
    }
    pthread_mutex_unlock(&s->lock);
    return ok;
}

bool quota_writer_enter(quota *q, uint64_t user, uint64_t now_ms) {
    shard *s = shard_of(q, user);
    pthread_mutex_lock(&s->lock);
    entry *u = entry_for(q, s, user, USER_ENTRY, now_ms);
    bool ok = !u || u->in_writer < q->limits.user_writer_share;
    if (u && ok) u->in_writer++;
    pthread_mutex_unlock(&s->lock);
    /* out of memory (!u): let it through uncounted; leave finds no entry */
    return ok;
}

void quota_writer_leave(quota *q, uint64_t user) {
    shard *s = shard_of(q, user);
    pthread_mutex_lock(&s->lock);
    uint32_t i = slot_of(s, user, USER_ENTRY);
    for (entry *e = s->slots[i]; e; e = e->next) {
        if (e->user == user && e->device == USER_ENTRY) {
            if (e->in_writer > 0) e->in_writer--;
            break;
        }
    }
    pthread_mutex_unlock(&s->lock);
}

uint64_t quota_entries(quota *q) {
    uint64_t n = 0;
    for (int i = 0; i < SHARDS; i++) {
        pthread_mutex_lock(&q->shards[i].lock);
        n += q->shards[i].count;
        pthread_mutex_unlock(&q->shards[i].lock);
    }
    return n;
}
