/* registry.h -- who is online where: (user) -> the connections of that
 * user's devices that are receiving live events, each with the worker
 * thread that owns it. Fan-out and receipts look users up; workers add a
 * connection when it starts sync and remove it when it closes.
 *
 * The embedded registry (registry_local.c) is an in-process table; the
 * scale-out one is Redis. */
#ifndef PARLEY_REGISTRY_H
#define PARLEY_REGISTRY_H

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

#endif
