/* presence_access.h -- whose presence a user may watch: the one place that
 * decides: users who share a current conversation with the viewer and
 * accepted the viewer (consent.h; one point lookup per id).
 *
 * Bounded work: the viewer's conversations are read once (not once per id),
 * each id is checked against them with its own conversation list, and the
 * whole check stops past a fixed number of store steps. */
#ifndef PARLEY_GATEWAY_PRESENCE_ACCESS_H
#define PARLEY_GATEWAY_PRESENCE_ACCESS_H

#include <stddef.h>
#include <stdint.h>

#include "store/store.h"

enum {
    PRESENCE_ACCESS_OK = 1,
    PRESENCE_ACCESS_DENIED = 0,     /* *denied: the first id not allowed */
    PRESENCE_ACCESS_ERROR = -1,     /* store read failed or out of memory */
    PRESENCE_ACCESS_TOO_COSTLY = -2,/* the step budget ran out */
};

/* Removes repeated ids from ids[0..n) in place, keeping first occurrences
 * in order; returns the new count. */
size_t presence_unique_ids(uint64_t *ids, size_t n);

/* May viewer watch every one of ids[0..n)? */
int presence_access_check(store *s, uint64_t viewer, const uint64_t *ids, size_t n, uint64_t *denied);

#endif
