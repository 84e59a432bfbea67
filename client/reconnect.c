/* reconnect.c -- getting back to a usable connection after a loss:
 * exponential backoff with full jitter (so a fleet of clients that lost the
 * same server does not come back in one wave), Retry-After and close 1013
 * honoured, then sign in again and restart sync from the last acked event.
 * With several servers each attempt goes to another one (servers.c). */
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

void pc_set_jitter_source(pc_client *c, pc_uniform_fn fn, void *ud) {
    c->jitter_uniform = fn;
    c->jitter_ud = ud;
}

/* Uniform in [0, min(cap, base * 2^exp)]. */
static int full_jitter_ms(pc_client *c, int base, int cap, int exp) {
    int64_t window = base;
    for (int i = 0; i < exp && window < cap; i++) window *= 2;
    if (window > cap) window = cap;
    if (window <= 0) return 0;
    uint32_t bound = (uint32_t)window + 1;
    uint32_t r = c->jitter_uniform ? c->jitter_uniform(c->jitter_ud, bound) : randombytes_uniform(bound);
    /* an injected source is a test's: keep its answer inside the window anyway */
    return (int)(r < bound ? r : bound - 1);
}

/* How long to wait before the next attempt, from why the last one ended. */
int pc_backoff_delay_ms(pc_client *c) {
    bool overloaded = c->last_close_code == WS_CLOSE_TRY_AGAIN
                      || (c->status == PARLEY__V1__STATUS__UNAVAILABLE && c->retry_after_s < 0);
    int exp = c->backoff_attempt + (overloaded ? OVERLOAD_EXTRA_EXP : 0);
    int delay = full_jitter_ms(c, c->reconnect_base_ms, c->reconnect_cap_ms, exp);
    if (c->retry_after_s > 0) {
        int ra = c->retry_after_s > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : c->retry_after_s;
        /* at least what the server asked for, plus jitter so the clients it
         * turned away do not all return in the same second */
        delay += ra * 1000;
    }
    if (c->backoff_attempt < 30) c->backoff_attempt++;
    return delay;
}

/* One attempt: connect, sign in again, restart sync. 0 connected; 1 failed
 * (lost: another attempt may work); -1 refused (retrying will not help). */
static int reconnect_once(pc_client *c) {
    pc_servers_next(c);   /* with several servers: another one than the last */
    if (pc_conn_open(c) < 0) return 1;
    if (c->have_identity && pc_sign_in_once(c) < 0) {
        /* the server could not check the key now (its store is away): a
         * lost attempt, tried again after the backoff on a new connection */
        if (c->fd >= 0 && c->status == PARLEY__V1__STATUS__UNAVAILABLE) pc_conn_drop(c);
        return c->fd >= 0 ? -1 : 1;
    }
    if (c->sync_started && pc_start_sync_once(c) < 0) return c->fd >= 0 ? -1 : 1;
    pc_servers_connected(c);
    c->stats.reconnects++;
    return 0;
}

static int gave_up(pc_client *c, int attempts) {
    char last[sizeof c->error];
    snprintf(last, sizeof last, "%s", c->error);
    return pc_fail(c, -1, "connection lost; %d reconnect attempt%s failed (last: %s)", attempts,
                   attempts == 1 ? "" : "s", last);
}

int pc_reconnect(pc_client *c, int *budget) {
    if (!c->want_connected) return pc_fail(c, -1, "not connected");
    if (c->max_reconnects == 0) return -1;   /* keep the error that lost the connection */
    int attempts = 0;
    while (*budget > 0) {
        (*budget)--;
        attempts++;
        /* an attempt pc_poll already scheduled keeps its time */
        int delay = c->next_attempt_ms ? pc_ms_left(c->next_attempt_ms) : pc_backoff_delay_ms(c);
        c->next_attempt_ms = 0;
        pc_sleep_ms(delay);
        int r = reconnect_once(c);
        if (r == 0) {
            c->failed_attempts = 0;
            return 0;
        }
        if (r < 0) return -1;
    }
    return gave_up(c, attempts);
}

int pc_reconnect_until(pc_client *c, int64_t deadline) {
    if (!c->want_connected) return pc_fail(c, -1, "not connected");
    if (c->max_reconnects == 0) return -1;
    for (;;) {
        if (c->next_attempt_ms == 0) c->next_attempt_ms = pc_now_ms() + pc_backoff_delay_ms(c);
        int wait = pc_ms_left(c->next_attempt_ms);
        int left = pc_ms_left(deadline);   /* -1: no deadline */
        if (left >= 0 && left < wait) {
            pc_sleep_ms(left);
            return 0;
        }
        pc_sleep_ms(wait);
        c->next_attempt_ms = 0;
        int r = reconnect_once(c);
        if (r == 0) {
            c->failed_attempts = 0;
            return 1;
        }
        if (r < 0) return -1;
        if (++c->failed_attempts >= c->max_reconnects) {
            int n = c->failed_attempts;
            c->failed_attempts = 0;
            return gave_up(c, n);
        }
        if (pc_ms_left(deadline) == 0) {
            c->next_attempt_ms = pc_now_ms() + pc_backoff_delay_ms(c);
            return 0;
        }
    }
}
