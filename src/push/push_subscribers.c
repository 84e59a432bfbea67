/* push_subscribers.c -- see push_subscribers.h. The pairs: chained hashing
 * per shard under the shard's lock, every pair of one user in one chain
 * (hashed by user alone); only adds and removes touch them. The fan-out's
 * question reads one counter of pairs per user hash instead, without a
 * lock or a write: 0 is "none"; two users sharing a counter only make a
 * hint go to the push thread, which finds nothing. */
#include "push/push_subscribers.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "core/log.h"

enum {
    COUNTERS = 1 << 20,    /* pairs per user hash: 4 MiB */
    SHARDS = 64,
    BUCKETS_FIRST = 64,    /* per shard; doubled while a shard holds more pairs than buckets */
};

typedef struct pair_node {
    uint64_t user;
    uint32_t device;
    struct pair_node *next;
} pair_node;

typedef struct shard {
    pthread_mutex_t lock;          /* adds and removes only */
    pair_node **buckets;
    size_t n_buckets, n;
} shard;

struct push_subscribers {
    atomic_uint *counters;    /* COUNTERS, written under the shard's lock */
    shard shards[SHARDS];
    atomic_size_t n;          /* pairs, all shards */
    atomic_bool everyone;     /* over the bound or not loaded: "maybe" for all */
};

static uint64_t mix(uint64_t user) { return user * 0x9E3779B97F4A7C15ull; }
static shard *shard_of(push_subscribers *s, uint64_t user) { return &s->shards[mix(user) >> 58]; }
static size_t bucket_of(const shard *sh, uint64_t user) { return (size_t)(mix(user) >> 20) & (sh->n_buckets - 1); }
/* the low bits: a bijection of the user id's low 20 bits, so ids handed out in
 * sequence share no counter below 2^20 users */
static atomic_uint *counter_of(push_subscribers *s, uint64_t user) { return &s->counters[mix(user) & (COUNTERS - 1)]; }

push_subscribers *push_subscribers_new(void) {
    push_subscribers *s = calloc(1, sizeof *s);
    if (!s) return NULL;
    s->counters = calloc(COUNTERS, sizeof *s->counters);
    if (!s->counters) {
        free(s);
        return NULL;
    }
    for (size_t i = 0; i < SHARDS; i++) {
        shard *sh = &s->shards[i];
        sh->buckets = calloc(BUCKETS_FIRST, sizeof *sh->buckets);
        sh->n_buckets = BUCKETS_FIRST;
        pthread_mutex_init(&sh->lock, NULL);
        if (!sh->buckets) atomic_store(&s->everyone, true);   /* an empty shard answers "maybe" */
    }
    return s;
}

void push_subscribers_free(push_subscribers *s) {
    if (!s) return;
    for (size_t i = 0; i < SHARDS; i++) {
        shard *sh = &s->shards[i];
        for (size_t b = 0; sh->buckets && b < sh->n_buckets; b++)
            for (pair_node *p = sh->buckets[b], *next; p; p = next) {
                next = p->next;
                free(p);
            }
        free(sh->buckets);
        pthread_mutex_destroy(&sh->lock);
    }
    free(s->counters);
    free(s);
}

/* under the shard's write lock; a failed grow keeps the old table (longer chains) */
static void grow(shard *sh) {
    size_t n = sh->n_buckets * 2;
    pair_node **grown = calloc(n, sizeof *grown);
    if (!grown) return;
    size_t old_n = sh->n_buckets;
    pair_node **old = sh->buckets;
    sh->buckets = grown;
    sh->n_buckets = n;
    for (size_t b = 0; b < old_n; b++)
        for (pair_node *p = old[b], *next; p; p = next) {
            next = p->next;
            size_t i = bucket_of(sh, p->user);
            p->next = grown[i];
            grown[i] = p;
        }
    free(old);
}

void push_subscribers_add(push_subscribers *s, uint64_t user, uint32_t device) {
    if (!s) return;
    shard *sh = shard_of(s, user);
    pthread_mutex_lock(&sh->lock);
    bool have = false;
    if (sh->buckets)
        for (pair_node *p = sh->buckets[bucket_of(sh, user)]; p && !have; p = p->next)
            have = p->user == user && p->device == device;
    if (!have) {
        pair_node *p = NULL;
        if (sh->buckets && atomic_load(&s->n) < PUSH_SUBSCRIBERS_MAX) p = malloc(sizeof *p);
        if (p) {
            if (sh->n >= sh->n_buckets) grow(sh);
            size_t i = bucket_of(sh, user);
            *p = (pair_node){user, device, sh->buckets[i]};
            sh->buckets[i] = p;
            sh->n++;
            atomic_fetch_add(&s->n, 1);
            atomic_fetch_add(counter_of(s, user), 1);
        } else if (!atomic_exchange(&s->everyone, true)) {
            log_warn("push: more than %d subscriptions in memory: every user's messages now reach the push thread",
                     PUSH_SUBSCRIBERS_MAX);
        }
    }
    pthread_mutex_unlock(&sh->lock);
}

void push_subscribers_remove(push_subscribers *s, uint64_t user, uint32_t device) {
    if (!s) return;
    shard *sh = shard_of(s, user);
    pthread_mutex_lock(&sh->lock);
    if (sh->buckets)
        for (pair_node **pp = &sh->buckets[bucket_of(sh, user)]; *pp; pp = &(*pp)->next) {
            pair_node *p = *pp;
            if (p->user != user || p->device != device) continue;
            *pp = p->next;
            free(p);
            sh->n--;
            atomic_fetch_sub(&s->n, 1);
            atomic_fetch_sub(counter_of(s, user), 1);
            break;
        }
    pthread_mutex_unlock(&sh->lock);
}

bool push_subscribers_any(push_subscribers *s, uint64_t user) {
    if (!s || atomic_load_explicit(&s->everyone, memory_order_relaxed)) return true;
    /* an add made before a message's commit happens before its fan-out
     * (the write path's queues order them): this load sees it */
    return atomic_load_explicit(counter_of(s, user), memory_order_relaxed) != 0;
}

size_t push_subscribers_count(push_subscribers *s) { return s ? atomic_load(&s->n) : 0; }

static int load_one(void *ud, uint64_t user, uint32_t device) {
    push_subscribers_add(ud, user, device);
    return 0;
}

int push_subscribers_load(push_subscribers *s, store *st) {
    int rc = store_scan_push_subscriptions(st, load_one, s);
    if (rc == 0) return 0;
    atomic_store(&s->everyone, true);
    if (rc < 0) log_warn("push: cannot list the subscriptions: every user's messages reach the push thread");
    return rc < 0 ? -1 : 0;
}
