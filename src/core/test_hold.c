/* test_hold.c -- see test_hold.h. */
#include "core/test_hold.h"

#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

enum { HOLD_OFF = 1, HOLD_ON = 2, STEP_MS = 10 };

static int look_up(test_hold *h) {
    const char *p = getenv(h->env_name);
    if (!p || !p[0]) {
        atomic_store(&h->state, HOLD_OFF);
        return HOLD_OFF;
    }
    int unset = 0;
    h->path = p;   /* the environment outlives every thread */
    if (atomic_compare_exchange_strong(&h->state, &unset, HOLD_ON))
        log_warn("test hook %s=%s: %s wait while that file exists", h->env_name, p, h->what);
    return HOLD_ON;
}

void test_hold_wait(test_hold *h) {
    int state = atomic_load_explicit(&h->state, memory_order_acquire);
    if (state == 0) state = look_up(h);
    if (state != HOLD_ON) return;
    struct timespec step = {0, STEP_MS * 1000000L};
    for (int waited = 0; waited < TEST_HOLD_MAX_MS && access(h->path, F_OK) == 0; waited += STEP_MS)
        nanosleep(&step, NULL);
}
