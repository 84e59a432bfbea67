/* reconnect.c -- getting back to a usable connection after a loss:
 * exponential backoff with full jitter (so a fleet of clients that lost the
 * same server does not come back in one wave), Retry-After and close 1013
 * honoured, then sign in again and restart sync from the last acked event. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include <sodium.h>

#include "internal.h"

enum {
    RETRY_AFTER_MAX_S = 300,  /* a bigger Retry-After is a server bug, not a plan */
    OVERLOAD_EXTRA_EXP = 2,   /* 1013 / bare 503: widen the jitter window 4x */
};

void pc_sleep_ms(int ms) {
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR) {
    }
}

/* Uniform in [0, min(cap, base * 2^exp)]. */
static int full_jitter_ms(int base, int cap, int exp) {
    int64_t window = base;
    for (int i = 0; i < exp && window < cap; i++) window *= 2;
    if (window > cap) window = cap;
    if (window <= 0) return 0;
    return (int)randombytes_uniform((uint32_t)window + 1);
}

/* How long to wait before the next attempt, from why the last one ended. */
int pc_backoff_delay_ms(pc_client *c) {
    bool overloaded = c->last_close_code == WS_CLOSE_TRY_AGAIN
                      || (c->status == PARLEY__V1__STATUS__UNAVAILABLE && c->retry_after_s < 0);
    int exp = c->backoff_attempt + (overloaded ? OVERLOAD_EXTRA_EXP : 0);
    int delay = full_jitter_ms(c->reconnect_base_ms, c->reconnect_cap_ms, exp);
    if (c->retry_after_s > 0) {
        int ra = c->retry_after_s > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : c->retry_after_s;
        /* at least what the server asked for, plus jitter so the clients it
         * turned away do not all return in the same second */
        delay += ra * 1000;
    }
    if (c->backoff_attempt < 30) c->backoff_attempt++;
    return delay;
}

int pc_reconnect(pc_client *c, int *budget) {
    if (!c->want_connected) return pc_fail(c, -1, "not connected");
    if (c->max_reconnects == 0) return -1;   /* keep the error that lost the connection */
    int attempts = 0;
    while (*budget > 0) {
        (*budget)--;
        attempts++;
        pc_sleep_ms(pc_backoff_delay_ms(c));
        if (pc_conn_open(c) < 0) continue;
        if (c->have_identity && pc_sign_in_once(c) < 0) {
            if (c->fd >= 0) return -1;   /* refused, not lost: retrying will not help */
            continue;
        }
        if (c->sync_started && pc_start_sync_once(c) < 0) {
            if (c->fd >= 0) return -1;
            continue;
        }
        c->stats.reconnects++;
        return 0;
    }
    char last[sizeof c->error];
    snprintf(last, sizeof last, "%s", c->error);
    return pc_fail(c, -1, "connection lost; %d reconnect attempt%s failed (last: %s)", attempts,
                   attempts == 1 ? "" : "s", last);
}
