/* test_reconnect.c -- libparley's reconnect backoff (client/reconnect.c):
 * exponential windows up to the cap, full jitter drawn from the injected
 * random source, Retry-After added and bounded, 1013 and a bare 503 widening
 * the window, and the default source spreading delays uniformly over the
 * window (not at its edges, not at one value). */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "../check.h"
#include "internal.h"

enum { BASE = 100, CAP = 2000, MAX_DRAWS = 64 };

/* A scripted source: answers by mode, records every bound it was asked for. */
typedef struct source {
    int mode;                 /* 0: lowest, 1: highest, 2: xorshift64 from seed */
    uint64_t state;
    uint32_t bounds[MAX_DRAWS];
    uint32_t draws[MAX_DRAWS];
    int n;
} source;

static uint32_t scripted(void *ud, uint32_t bound) {
    source *s = ud;
    uint32_t r = 0;
    if (s->mode == 1) r = bound - 1;
    if (s->mode == 2) {
        s->state ^= s->state << 13;
        s->state ^= s->state >> 7;
        s->state ^= s->state << 17;
        r = (uint32_t)(s->state % bound);
    }
    if (s->n < MAX_DRAWS) {
        s->bounds[s->n] = bound;
        s->draws[s->n++] = r;
    }
    return r;
}

static pc_client *client_with(source *s, int mode, uint64_t seed) {
    memset(s, 0, sizeof *s);
    s->mode = mode;
    s->state = seed;
    pc_options o = {0};
    o.reconnect_base_ms = BASE;
    o.reconnect_cap_ms = CAP;
    o.max_reconnects = 5;
    pc_client *c = pc_new(&o);
    if (c) pc_set_jitter_source(c, scripted, s);
    return c;
}

/* The highest draw every time: the windows themselves, doubling to the cap. */
static void windows_double_up_to_the_cap(void) {
    source s;
    pc_client *c = client_with(&s, 1, 0);
    CHECK(c, "pc_new");
    const int want[] = {100, 200, 400, 800, 1600, 2000, 2000, 2000};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        int d = pc_backoff_delay_ms(c);
        CHECK(d == want[i], "attempt %zu: delay %d, want %d", i, d, want[i]);
        CHECK(s.bounds[i] == (uint32_t)want[i] + 1, "attempt %zu: drew below %u, want %d", i,
              s.bounds[i], want[i] + 1);
    }
    /* many failures in a row: the exponent stops, the window stays the cap */
    for (int i = 0; i < 100; i++) {
        int d = pc_backoff_delay_ms(c);
        CHECK(d == CAP, "after %d more attempts: delay %d, want the cap %d", i + 1, d, CAP);
    }
    pc_free(c);
}

/* The lowest draw every time: full jitter goes down to 0, at every step. */
static void full_jitter_reaches_zero(void) {
    source s;
    pc_client *c = client_with(&s, 0, 0);
    CHECK(c, "pc_new");
    for (int i = 0; i < 8; i++) {
        int d = pc_backoff_delay_ms(c);
        CHECK(d == 0, "attempt %d: delay %d with a zero draw", i, d);
    }
    pc_free(c);
}

/* A seeded source: the delays are exactly its draws, so the sequence is
 * reproducible, and each draw was over the expected window. */
static void seeded_sequence_is_the_draws(void) {
    source s1, s2;
    pc_client *a = client_with(&s1, 2, 0x9E3779B97F4A7C15ull);
    pc_client *b = client_with(&s2, 2, 0x9E3779B97F4A7C15ull);
    CHECK(a && b, "pc_new");
    const uint32_t windows[] = {100, 200, 400, 800, 1600, 2000, 2000, 2000, 2000, 2000};
    int distinct = 0, prev = -1;
    for (size_t i = 0; i < sizeof windows / sizeof windows[0]; i++) {
        int da = pc_backoff_delay_ms(a), db = pc_backoff_delay_ms(b);
        CHECK(da == db, "attempt %zu: same seed, delays %d and %d", i, da, db);
        CHECK(s1.bounds[i] == windows[i] + 1, "attempt %zu: window %u, want %u", i, s1.bounds[i] - 1,
              windows[i]);
        CHECK(da == (int)s1.draws[i], "attempt %zu: delay %d, the draw was %u", i, da, s1.draws[i]);
        CHECK(da >= 0 && da <= (int)windows[i], "attempt %zu: delay %d outside [0, %u]", i, da,
              windows[i]);
        if (da != prev) distinct++;
        prev = da;
    }
    CHECK(distinct > 5, "a seeded source gave only %d distinct delays in 10", distinct);
    pc_free(a);
    pc_free(b);
}

/* A source that answers out of range is clamped to the window. */
static uint32_t too_big(void *ud, uint32_t bound) {
    (void)ud;
    return bound + 1000;
}
static void out_of_range_draw_is_clamped(void) {
    pc_options o = {0};
    o.reconnect_base_ms = BASE;
    o.reconnect_cap_ms = CAP;
    pc_client *c = pc_new(&o);
    CHECK(c, "pc_new");
    pc_set_jitter_source(c, too_big, NULL);
    int d = pc_backoff_delay_ms(c);
    pc_free(c);
    CHECK(d == BASE, "delay %d, want the window %d", d, BASE);
}

/* Retry-After: at least what the server asked for, plus the ordinary jitter;
 * an absurd value is bounded at 300 s. */
static void retry_after_is_honoured(void) {
    source s;
    pc_client *c = client_with(&s, 0, 0);
    CHECK(c, "pc_new");
    c->status = PARLEY__V1__STATUS__UNAVAILABLE;
    c->retry_after_s = 3;
    int d = pc_backoff_delay_ms(c);
    CHECK(d == 3000, "Retry-After 3 with a zero draw: delay %d, want 3000", d);
    CHECK(s.bounds[0] == BASE + 1, "Retry-After given: window %u, want the plain %d", s.bounds[0] - 1,
          BASE);
    s.mode = 1;
    d = pc_backoff_delay_ms(c);
    CHECK(d == 3000 + 2 * BASE, "Retry-After 3 with the highest draw: delay %d, want %d", d,
          3000 + 2 * BASE);
    c->retry_after_s = 1000000;
    s.mode = 0;
    d = pc_backoff_delay_ms(c);
    CHECK(d == 300000, "Retry-After 1000000: delay %d, want the 300 s bound", d);
    pc_free(c);
}

/* Close 1013 (Try Again Later) and a 503 without Retry-After widen the
 * window 4x (still capped). */
static void overload_widens_the_window(void) {
    source s;
    pc_client *c = client_with(&s, 1, 0);
    CHECK(c, "pc_new");
    c->last_close_code = WS_CLOSE_TRY_AGAIN;
    int d = pc_backoff_delay_ms(c);
    CHECK(d == 4 * BASE, "after 1013: delay %d, want %d", d, 4 * BASE);
    d = pc_backoff_delay_ms(c);
    CHECK(d == 8 * BASE, "after 1013, second attempt: delay %d, want %d", d, 8 * BASE);
    d = pc_backoff_delay_ms(c);
    CHECK(d == 16 * BASE, "after 1013, third attempt: delay %d, want %d", d, 16 * BASE);
    d = pc_backoff_delay_ms(c);
    CHECK(d == CAP, "after 1013, fourth attempt: delay %d, want the cap %d", d, CAP);
    pc_free(c);

    c = client_with(&s, 1, 0);
    CHECK(c, "pc_new");
    c->status = PARLEY__V1__STATUS__UNAVAILABLE;
    c->retry_after_s = -1;
    d = pc_backoff_delay_ms(c);
    CHECK(d == 4 * BASE, "503 without Retry-After: delay %d, want %d", d, 4 * BASE);
    pc_free(c);

    /* a plain loss (close 1012, restart) is not overload */
    c = client_with(&s, 1, 0);
    CHECK(c, "pc_new");
    c->last_close_code = WS_CLOSE_RESTART;
    d = pc_backoff_delay_ms(c);
    CHECK(d == BASE, "after 1012: delay %d, want %d", d, BASE);
    pc_free(c);
}

/* The default source (libsodium): delays at the cap are uniform on [0, cap].
 * Kolmogorov-Smirnov distance of the empirical CDF from uniform, with a
 * bound that a true uniform exceeds with probability 2*exp(-2*N*D^2) < 1e-10,
 * and ten equal buckets each within 15% of N/10 (~7 standard deviations).
 * All delays at the edges, at one value, or in half the window fail both. */
enum { N_UNIFORM = 20000, BUCKETS = 10 };
static int cmp_int(const void *a, const void *b) {
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}
static void default_source_is_uniform_over_the_window(void) {
    pc_options o = {0};
    o.reconnect_base_ms = BASE;
    o.reconnect_cap_ms = CAP;
    pc_client *c = pc_new(&o);
    CHECK(c, "pc_new");
    static int d[N_UNIFORM];
    for (int i = 0; i < N_UNIFORM; i++) {
        c->backoff_attempt = 30;   /* the window is the cap */
        d[i] = pc_backoff_delay_ms(c);
    }
    pc_free(c);
    qsort(d, N_UNIFORM, sizeof d[0], cmp_int);
    CHECK(d[0] >= 0 && d[N_UNIFORM - 1] <= CAP, "delays %d..%d outside [0, %d]", d[0],
          d[N_UNIFORM - 1], CAP);
    double ks = 0;
    for (int i = 0; i < N_UNIFORM; i++) {
        double x = (d[i] + 0.5) / (CAP + 1.0);   /* CDF of the discrete uniform, mid-step */
        double lo = fabs(x - (double)i / N_UNIFORM), hi = fabs((double)(i + 1) / N_UNIFORM - x);
        if (lo > ks) ks = lo;
        if (hi > ks) ks = hi;
    }
    CHECK(ks < 0.025, "KS distance %.4f from uniform on [0, %d]", ks, CAP);
    int counts[BUCKETS] = {0};
    for (int i = 0; i < N_UNIFORM; i++) counts[(int64_t)d[i] * BUCKETS / (CAP + 1)]++;
    for (int b = 0; b < BUCKETS; b++)
        CHECK(counts[b] > N_UNIFORM / BUCKETS * 85 / 100 && counts[b] < N_UNIFORM / BUCKETS * 115 / 100,
              "bucket %d of %d holds %d of %d delays", b, BUCKETS, counts[b], N_UNIFORM);
}

int main(void) {
    RUN(windows_double_up_to_the_cap);
    RUN(full_jitter_reaches_zero);
    RUN(seeded_sequence_is_the_draws);
    RUN(out_of_range_draw_is_clamped);
    RUN(retry_after_is_honoured);
    RUN(overload_widens_the_window);
    RUN(default_source_is_uniform_over_the_window);
    CHECK_EXIT();
}
