/* recent_inbox.c -- see recent_inbox.h. */
#include "chat/recent_inbox.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct recent_entry {
    uint64_t conv, seq, sender;
} recent_entry;

/* one user's run: e[(head + i) % cap] is user_seq first + i, for i < n */
typedef struct recent_slot {
    pthread_mutex_t lock;
    uint64_t user;           /* 0: empty */
    uint64_t first;
    uint64_t acked;          /* the highest through a lookup of this user gave */
    uint32_t head, n, cap;
    recent_entry *e;
} recent_slot;

struct recent_inbox {
    atomic_size_t entries;   /* allocated in all runs: at most RECENT_INBOX_ENTRIES_MAX */
    recent_slot slots[RECENT_INBOX_SLOTS];
};

/* process-wide, like the other fan-out counters */
static atomic_ulong lookups_memory_total, lookups_store_total;

recent_inbox *recent_inbox_new(void) {
    recent_inbox *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    for (size_t i = 0; i < RECENT_INBOX_SLOTS; i++) pthread_mutex_init(&r->slots[i].lock, NULL);
    return r;
}

void recent_inbox_free(recent_inbox *r) {
    if (!r) return;
    for (size_t i = 0; i < RECENT_INBOX_SLOTS; i++) {
        pthread_mutex_destroy(&r->slots[i].lock);
        free(r->slots[i].e);
    }
    free(r);
}

static recent_slot *slot_of(recent_inbox *r, uint64_t user) {
    uint64_t h = user * 0x9E3779B97F4A7C15ull;
    return &r->slots[(h >> 32) % RECENT_INBOX_SLOTS];
}

/* Doubles s's run (entries kept, in order from index 0), within the bounds.
 * false: it stays as it is. */
static bool grow(recent_inbox *r, recent_slot *s) {
    uint32_t cap = s->cap ? s->cap * 2 : RECENT_INBOX_RUN_MIN;
    if (cap > RECENT_INBOX_RUN_MAX) return false;
    size_t more = cap - s->cap;
    if (atomic_fetch_add(&r->entries, more) + more > RECENT_INBOX_ENTRIES_MAX) {
        atomic_fetch_sub(&r->entries, more);
        return false;
    }
    recent_entry *e = malloc(cap * sizeof *e);
    if (!e) {
        atomic_fetch_sub(&r->entries, more);
        return false;
    }
    for (uint32_t i = 0; i < s->n; i++) e[i] = s->e[(s->head + i) % s->cap];
    free(s->e);
    s->e = e;
    s->head = 0;
    s->cap = cap;
    return true;
}

void recent_inbox_note(recent_inbox *r, uint64_t user, uint64_t user_seq, uint64_t conv, uint64_t seq,
                       uint64_t sender) {
    recent_slot *s = slot_of(r, user);
    pthread_mutex_lock(&s->lock);
    if (s->user != user) {   /* another user's run (or none): this one starts here */
        s->user = user;
        s->acked = 0;
        s->n = 0;
    }
    if (s->n > 0 && user_seq != s->first + s->n) s->n = 0;   /* not contiguous: a new run */
    if (s->n == 0) {
        s->first = user_seq;
        s->head = 0;
    }
    /* full: grow while nobody has acknowledged the oldest entry, else drop it */
    if (s->n == s->cap && !((s->cap == 0 || s->first > s->acked) && grow(r, s))) {
        if (s->cap == 0) {   /* no room at all: remembers nothing */
            s->user = 0;
            pthread_mutex_unlock(&s->lock);
            return;
        }
        s->head = (s->head + 1) % s->cap;
        s->first++;
        s->n--;
    }
    s->e[(s->head + s->n) % s->cap] = (recent_entry){conv, seq, sender};
    s->n++;
    pthread_mutex_unlock(&s->lock);
}

int recent_inbox_scan(recent_inbox *r, uint64_t user, uint64_t after, uint64_t through, store_inbox_fn fn,
                      void *ud) {
    recent_slot *s = slot_of(r, user);
    pthread_mutex_lock(&s->lock);
    int covered = through <= after;   /* an empty range: nothing to find */
    if (s->user == user) {
        if (through > s->acked) s->acked = through;
        if (!covered && s->n > 0 && s->first <= after + 1 && through <= s->first + s->n - 1) {
            for (uint64_t us = after + 1; us <= through; us++) {
                const recent_entry *e = &s->e[(s->head + (us - s->first)) % s->cap];
                fn(ud, us, e->conv, e->seq, e->sender);
            }
            covered = 1;
        }
    }
    pthread_mutex_unlock(&s->lock);
    atomic_fetch_add(covered ? &lookups_memory_total : &lookups_store_total, 1);
    return covered;
}

size_t recent_inbox_metrics_render(char *out, size_t cap) {
    int n = snprintf(out, cap,
        "# HELP parley_ack_inbox_memory_total Acks whose inbox range was found in fan-out's recent entries.\n"
        "# TYPE parley_ack_inbox_memory_total counter\nparley_ack_inbox_memory_total %lu\n"
        "# HELP parley_ack_inbox_store_total Acks whose inbox range was read from the store (not in memory).\n"
        "# TYPE parley_ack_inbox_store_total counter\nparley_ack_inbox_store_total %lu\n",
        atomic_load(&lookups_memory_total), atomic_load(&lookups_store_total));
    if (n < 0) return 0;
    return (size_t)n < cap ? (size_t)n : 0;
}
