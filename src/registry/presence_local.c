/* presence_local.c -- the embedded registry's presence table.
 *
 * Two maps under one mutex (presence changes on connect and disconnect, and
 * subscriptions change rarely: neither is on the per-message path):
 *   user -> state: open connections, last seen, who subscribes, what they
 *           were last told and when
 *   conn -> the users it subscribes to (to unsubscribe when it closes)
 * A user's state stays while anyone subscribes or they are connected, and
 * for last-seen afterwards (a small record per user seen since start). */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "core/metrics.h"
#include "core/u64map.h"
#include "registry/registry.h"

typedef struct user_presence {
    uint32_t conns;
    bool dirty;             /* on the dirty list */
    bool told_online;       /* what subscribers were last told */
    uint64_t last_seen_ms;
    uint64_t told_ms;
    uint64_t *subscribers;  /* conn ids */
    uint32_t n_subscribers, cap_subscribers;
} user_presence;

typedef struct subscription {
    size_t n;
    uint64_t users[];
} subscription;

struct presence {
    pthread_mutex_t lock;
    u64map users;       /* user -> user_presence * */
    u64map subs;        /* conn id -> subscription * */
    uint64_t *dirty;    /* users changed since the last flush */
    size_t n_dirty, cap_dirty;
    presence_watch watch;   /* set: changes cross nodes (cluster/presence_bus.c), none are flushed here */
    bool has_watch;
};

struct presence *registry_presence(registry *r);

struct presence *presence_new(void) {
    struct presence *p = calloc(1, sizeof *p);
    if (p) pthread_mutex_init(&p->lock, NULL);
    return p;
}

void presence_free(struct presence *p) {
    if (!p) return;
    for (size_t i = 0; i < p->users.cap; i++) {
        if (!p->users.slots[i].key) continue;
        user_presence *u = (user_presence *)(uintptr_t)p->users.slots[i].value;
        free(u->subscribers);
        free(u);
    }
    for (size_t i = 0; i < p->subs.cap; i++)
        if (p->subs.slots[i].key) free((void *)(uintptr_t)p->subs.slots[i].value);
    u64map_free(&p->users);
    u64map_free(&p->subs);
    free(p->dirty);
    pthread_mutex_destroy(&p->lock);
    free(p);
}

static user_presence *user_get(struct presence *p, uint64_t user, bool create) {
    uint64_t *slot = u64map_get(&p->users, user);
    if (slot) return (user_presence *)(uintptr_t)*slot;
    if (!create) return NULL;
    user_presence *u = calloc(1, sizeof *u);
    if (!u) return NULL;
    if (u64map_put(&p->users, user, (uint64_t)(uintptr_t)u)) {
        free(u);
        return NULL;
    }
    return u;
}

static void mark_dirty(struct presence *p, uint64_t user, user_presence *u) {
    if (u->dirty || u->n_subscribers == 0 || p->has_watch) return;
    if (p->n_dirty == p->cap_dirty) {
        size_t cap = p->cap_dirty ? p->cap_dirty * 2 : 64;
        uint64_t *grown = realloc(p->dirty, cap * sizeof *grown);
        if (!grown) return;   /* the change is lost to subscribers until the next one */
        p->dirty = grown;
        p->cap_dirty = cap;
    }
    p->dirty[p->n_dirty++] = user;
    u->dirty = true;
    atomic_store(&g_metrics.presence_pending, (long)p->n_dirty);
}

void registry_presence_connected(registry *r, uint64_t user) {
    struct presence *p = registry_presence(r);
    pthread_mutex_lock(&p->lock);
    user_presence *u = user_get(p, user, true);
    if (u && u->conns++ == 0) mark_dirty(p, user, u);
    pthread_mutex_unlock(&p->lock);
}

void registry_presence_disconnected(registry *r, uint64_t user, uint64_t now_ms) {
    struct presence *p = registry_presence(r);
    pthread_mutex_lock(&p->lock);
    user_presence *u = user_get(p, user, false);
    if (u && u->conns > 0) {
        u->last_seen_ms = now_ms;
        if (--u->conns == 0) mark_dirty(p, user, u);
    }
    pthread_mutex_unlock(&p->lock);
}

void registry_presence_state(registry *r, uint64_t user, int *online, uint64_t *last_seen_ms) {
    struct presence *p = registry_presence(r);
    pthread_mutex_lock(&p->lock);
    user_presence *u = user_get(p, user, false);
    *online = u && u->conns > 0;
    *last_seen_ms = u ? u->last_seen_ms : 0;
    pthread_mutex_unlock(&p->lock);
}

/* The watcher hears of a user's first subscriber and of its last leaving,
 * under the lock (it must not block or call back in here). */
static void tell_watch(struct presence *p, uint64_t user, bool watched) {
    if (p->has_watch) p->watch.changed(p->watch.ud, user, watched);
}

static void remove_subscriber(struct presence *p, uint64_t user, user_presence *u, uint64_t conn_id) {
    for (uint32_t i = 0; i < u->n_subscribers; i++) {
        if (u->subscribers[i] != conn_id) continue;
        u->subscribers[i] = u->subscribers[--u->n_subscribers];
        if (u->n_subscribers == 0) tell_watch(p, user, false);
        return;
    }
}

static void unsubscribe_locked(struct presence *p, uint64_t conn_id) {
    uint64_t value;
    if (!u64map_remove(&p->subs, conn_id, &value)) return;
    subscription *s = (subscription *)(uintptr_t)value;
    for (size_t i = 0; i < s->n; i++) {
        user_presence *u = user_get(p, s->users[i], false);
        if (u) remove_subscriber(p, s->users[i], u, conn_id);
    }
    free(s);
}

int registry_presence_subscribe(registry *r, uint64_t conn_id, const uint64_t *users, size_t n) {
    struct presence *p = registry_presence(r);
    int rc = 0;
    pthread_mutex_lock(&p->lock);
    unsubscribe_locked(p, conn_id);
    if (n == 0) goto out;
    subscription *s = malloc(sizeof *s + n * sizeof(uint64_t));
    if (!s || u64map_put(&p->subs, conn_id, (uint64_t)(uintptr_t)s)) {
        free(s);
        rc = -1;
        goto out;
    }
    s->n = 0;
    for (size_t i = 0; i < n; i++) {
        user_presence *u = user_get(p, users[i], true);
        if (!u) continue;
        if (u->n_subscribers == u->cap_subscribers) {
            uint32_t cap = u->cap_subscribers ? u->cap_subscribers * 2 : 4;
            uint64_t *grown = realloc(u->subscribers, cap * sizeof *grown);
            if (!grown) continue;
            u->subscribers = grown;
            u->cap_subscribers = cap;
        }
        if (u->n_subscribers == 0) u->told_online = u->conns > 0;   /* the subscriber is told at once */
        u->subscribers[u->n_subscribers++] = conn_id;
        if (u->n_subscribers == 1) tell_watch(p, users[i], true);
        s->users[s->n++] = users[i];
    }
out:
    pthread_mutex_unlock(&p->lock);
    return rc;
}

void registry_presence_unsubscribe(registry *r, uint64_t conn_id) {
    struct presence *p = registry_presence(r);
    pthread_mutex_lock(&p->lock);
    unsubscribe_locked(p, conn_id);
    pthread_mutex_unlock(&p->lock);
}

bool registry_presence_unsubscribe_user(registry *r, uint64_t conn_id, uint64_t user) {
    struct presence *p = registry_presence(r);
    bool found = false;
    pthread_mutex_lock(&p->lock);
    uint64_t *slot = u64map_get(&p->subs, conn_id);
    subscription *s = slot ? (subscription *)(uintptr_t)*slot : NULL;
    for (size_t i = 0; s && i < s->n && !found; i++) {
        if (s->users[i] != user) continue;
        s->users[i] = s->users[--s->n];
        found = true;
    }
    user_presence *u = found ? user_get(p, user, false) : NULL;
    if (u) remove_subscriber(p, user, u, conn_id);
    pthread_mutex_unlock(&p->lock);
    return found;
}

void registry_set_presence_watch(registry *r, const presence_watch *w) {
    struct presence *p = registry_presence(r);
    pthread_mutex_lock(&p->lock);
    p->has_watch = w != NULL;
    if (w) p->watch = *w;
    pthread_mutex_unlock(&p->lock);
}

size_t registry_presence_subscribers(registry *r, uint64_t user, uint64_t *out, size_t max) {
    struct presence *p = registry_presence(r);
    pthread_mutex_lock(&p->lock);
    user_presence *u = user_get(p, user, false);
    size_t n = u ? u->n_subscribers : 0;
    for (size_t i = 0; i < n && i < max; i++) out[i] = u->subscribers[i];
    pthread_mutex_unlock(&p->lock);
    return n;
}

typedef struct emission {
    uint64_t conn_id, user, last_seen_ms;
    int online;
} emission;

void registry_presence_flush(registry *r, uint64_t now_ms, uint64_t coalesce_ms, presence_emit_fn emit, void *ud) {
    struct presence *p = registry_presence(r);
    /* collect under the lock, emit after it: emitting posts to workers */
    emission *out = NULL;
    size_t n_out = 0, cap_out = 0;
    pthread_mutex_lock(&p->lock);
    size_t kept = 0;
    for (size_t i = 0; i < p->n_dirty; i++) {
        uint64_t user = p->dirty[i];
        user_presence *u = user_get(p, user, false);
        if (!u) continue;
        if (now_ms - u->told_ms < coalesce_ms && u->told_ms != 0) {
            p->dirty[kept++] = user;   /* too soon: a later flush */
            continue;
        }
        u->dirty = false;
        bool online = u->conns > 0;
        if (online == u->told_online) continue;   /* flapped back: nothing to say */
        u->told_online = online;
        u->told_ms = now_ms;
        for (uint32_t j = 0; j < u->n_subscribers; j++) {
            if (n_out == cap_out) {
                cap_out = cap_out ? cap_out * 2 : 64;
                emission *grown = realloc(out, cap_out * sizeof *grown);
                if (!grown) break;
                out = grown;
            }
            out[n_out++] = (emission){u->subscribers[j], user, u->last_seen_ms, online};
        }
    }
    p->n_dirty = kept;
    atomic_store(&g_metrics.presence_pending, (long)kept);
    pthread_mutex_unlock(&p->lock);
    for (size_t i = 0; i < n_out; i++) emit(ud, out[i].conn_id, out[i].user, out[i].online, out[i].last_seen_ms);
    free(out);
}
