/* registry.h -- who is online where: (user) -> the connections of that
 * user's devices that are receiving live events, each with the worker
 * thread that owns it. Fan-out and receipts look users up; workers add a
 * connection when it starts sync and remove it when it closes.
 *
 * The embedded registry (registry_local.c) is an in-process table; the
 * scale-out one is Redis. */
#ifndef PARLEY_REGISTRY_H
#define PARLEY_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct registry registry;

typedef struct registry_entry {
    uint64_t conn_id;
    uint32_t device_id;
    uint32_t worker;
} registry_entry;

registry *registry_local_new(void);
void registry_free(registry *r);
int registry_add(registry *r, uint64_t user, const registry_entry *e);
void registry_remove(registry *r, uint64_t user, uint64_t conn_id);
/* Copies up to max entries of user into out; returns how many there are
 * (which may exceed max). */
size_t registry_lookup(registry *r, uint64_t user, registry_entry *out, size_t max);

/* A second registry that follows this one (the scale-out session registry,
 * cluster/session_registry.c): told of every add that succeeded and every
 * remove that found its entry, on the caller's thread, after the table's
 * lock is released; it must not block. Set it before the workers start
 * and clear it (NULL) after they stopped: the pointer is not locked. */
typedef struct registry_mirror {
    void (*added)(void *ud, uint64_t user, const registry_entry *e);
    void (*removed)(void *ud, uint64_t user, const registry_entry *e);
    void *ud;
} registry_mirror;
void registry_set_mirror(registry *r, const registry_mirror *m);

/* Presence: a user is online while at least one of their devices has a
 * signed-in connection. Devices subscribe (by connection) to users; a change
 * reaches subscribers through registry_presence_flush, at most once per user
 * per coalesce interval, so its cost grows with subscriptions, not users. */
void registry_presence_connected(registry *r, uint64_t user);
void registry_presence_disconnected(registry *r, uint64_t user, uint64_t now_ms);
void registry_presence_state(registry *r, uint64_t user, int *online, uint64_t *last_seen_ms);
/* Replaces conn's subscriptions with users[0..n). 0, or -1 out of memory. */
int registry_presence_subscribe(registry *r, uint64_t conn_id, const uint64_t *users, size_t n);
void registry_presence_unsubscribe(registry *r, uint64_t conn_id);
/* Drops user from conn's subscriptions; true when it was there. */
bool registry_presence_unsubscribe_user(registry *r, uint64_t conn_id, uint64_t user);
typedef void (*presence_emit_fn)(void *ud, uint64_t conn_id, uint64_t user, int online, uint64_t last_seen_ms);
/* Emits the changes due at now_ms (changes newer than coalesce_ms after the
 * user's previous emission wait for a later flush). */
void registry_presence_flush(registry *r, uint64_t now_ms, uint64_t coalesce_ms, presence_emit_fn emit, void *ud);

/* Many nodes (cluster/presence_bus.c): changed(ud, user, true) when user
 * gets its first subscriber on this node, (.., false) when the last one
 * leaves; called under the presence lock (must not block or call any
 * registry_presence_* function). While a watch is set, this node's own
 * connects and disconnects are not flushed by registry_presence_flush:
 * every subscriber hears the cluster-wide state from the watcher. NULL
 * clears it. */
typedef struct presence_watch {
    void (*changed)(void *ud, uint64_t user, bool watched);
    void *ud;
} presence_watch;
void registry_set_presence_watch(registry *r, const presence_watch *w);
/* Copies up to max connections subscribed to user into out; returns how
 * many there are (which may exceed max). */
size_t registry_presence_subscribers(registry *r, uint64_t user, uint64_t *out, size_t max);

#endif
