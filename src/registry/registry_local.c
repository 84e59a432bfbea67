/* registry_local.c -- the embedded registry: a hash map per shard, each
 * behind its own reader-writer lock, so lookups from fan-out and updates
 * from workers rarely meet. */
#include "registry/registry.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "core/u64map.h"

enum { SHARDS = 64 };

typedef struct user_conns {
    uint32_t count, cap;
    registry_entry entries[];
} user_conns;

typedef struct shard {
    pthread_rwlock_t lock;
    u64map users;   /* user -> user_conns * */
} shard;

struct presence;
struct presence *presence_new(void);
void presence_free(struct presence *p);

struct registry {
    shard shards[SHARDS];
    struct presence *presence;   /* presence_local.c */
    registry_mirror mirror;      /* registry.h: no callbacks when unset */
};

void registry_set_mirror(registry *r, const registry_mirror *m) {
    if (m) r->mirror = *m;
    else memset(&r->mirror, 0, sizeof r->mirror);
}

struct presence *registry_presence(registry *r) { return r->presence; }

static shard *shard_of(registry *r, uint64_t user) { return &r->shards[user % SHARDS]; }

registry *registry_local_new(void) {
    registry *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    for (int i = 0; i < SHARDS; i++) pthread_rwlock_init(&r->shards[i].lock, NULL);
    r->presence = presence_new();
    if (!r->presence) {
        free(r);
        return NULL;
    }
    return r;
}

void registry_free(registry *r) {
    if (!r) return;
    presence_free(r->presence);
    for (int i = 0; i < SHARDS; i++) {
        u64map *m = &r->shards[i].users;
        for (size_t j = 0; j < m->cap; j++)
            if (m->slots[j].key) free((void *)(uintptr_t)m->slots[j].value);
        u64map_free(m);
        pthread_rwlock_destroy(&r->shards[i].lock);
    }
    free(r);
}

int registry_add(registry *r, uint64_t user, const registry_entry *e) {
    shard *s = shard_of(r, user);
    int rc = 0;
    pthread_rwlock_wrlock(&s->lock);
    uint64_t *slot = u64map_get(&s->users, user);
    user_conns *uc = slot ? (user_conns *)(uintptr_t)*slot : NULL;
    if (!uc || uc->count == uc->cap) {
        /* one entry first: most users have one device online */
        uint32_t cap = uc ? uc->cap * 2 : 1;
        user_conns *grown = realloc(uc, sizeof *uc + cap * sizeof(registry_entry));
        if (!grown) { rc = -1; goto out; }
        if (!uc) grown->count = 0;
        grown->cap = cap;
        uc = grown;
        if (u64map_put(&s->users, user, (uint64_t)(uintptr_t)uc)) {
            if (!slot) free(uc);
            rc = -1;
            goto out;
        }
    }
    uc->entries[uc->count++] = *e;
out:
    pthread_rwlock_unlock(&s->lock);
    if (rc == 0 && r->mirror.added) r->mirror.added(r->mirror.ud, user, e);
    return rc;
}

void registry_remove(registry *r, uint64_t user, uint64_t conn_id) {
    shard *s = shard_of(r, user);
    registry_entry removed = {0};
    bool found = false;
    pthread_rwlock_wrlock(&s->lock);
    uint64_t *slot = u64map_get(&s->users, user);
    if (slot) {
        user_conns *uc = (user_conns *)(uintptr_t)*slot;
        for (uint32_t i = 0; i < uc->count; i++) {
            if (uc->entries[i].conn_id != conn_id) continue;
            removed = uc->entries[i];
            found = true;
            uc->entries[i] = uc->entries[--uc->count];
            break;
        }
        if (uc->count == 0) {
            u64map_remove(&s->users, user, NULL);
            free(uc);
        }
    }
    pthread_rwlock_unlock(&s->lock);
    if (found && r->mirror.removed) r->mirror.removed(r->mirror.ud, user, &removed);
}

size_t registry_lookup(registry *r, uint64_t user, registry_entry *out, size_t max) {
    shard *s = shard_of(r, user);
    size_t n = 0;
    pthread_rwlock_rdlock(&s->lock);
    uint64_t *slot = u64map_get(&s->users, user);
    if (slot) {
        user_conns *uc = (user_conns *)(uintptr_t)*slot;
        n = uc->count;
        memcpy(out, uc->entries, (n < max ? n : max) * sizeof *out);
    }
    pthread_rwlock_unlock(&s->lock);
    return n;
}
