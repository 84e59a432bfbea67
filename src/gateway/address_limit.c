#include "gateway/address_limit.h"

#include <pthread.h>

#include "core/u64map.h"

/* one short critical section per accept and per sign-in; the map holds only
 * addresses with pending sockets (removed at zero), so it is bounded by the
 * sockets open */
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static u64map pending;   /* addr + 1 (keys are non-zero) -> count */

bool address_limit_take(uint32_t addr, uint32_t cap) {
    uint64_t key = (uint64_t)addr + 1;
    bool ok = true;
    pthread_mutex_lock(&lock);
    uint64_t *n = u64map_get(&pending, key);
    if (n && cap && *n >= cap) ok = false;
    else if (n) (*n)++;
    else ok = u64map_put(&pending, key, 1) == 0;
    pthread_mutex_unlock(&lock);
    return ok;
}

void address_limit_release(uint32_t addr) {
    uint64_t key = (uint64_t)addr + 1;
    pthread_mutex_lock(&lock);
    uint64_t *n = u64map_get(&pending, key);
    if (n && --*n == 0) u64map_remove(&pending, key, NULL);
    pthread_mutex_unlock(&lock);
}
