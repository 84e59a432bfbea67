/* test_recent_inbox.c -- fan-out's memory of users' last inbox entries
 * (src/chat/recent_inbox.c), which an Ack reads instead of the store: a
 * range is answered only when every entry of it is held, with exactly the
 * entries noted, in order; a gap, a range reaching past either end, another
 * user in the slot, or an entry dropped at the bound all say "not covered". */
#include <stdio.h>
#include <stdlib.h>

#include "../check.h"
#include "chat/recent_inbox.h"

/* what a scan called back with */
typedef struct got {
    uint64_t user_seq[4096], conv[4096], seq[4096], sender[4096];
    size_t n;
} got;

static int collect(void *ud, uint64_t user_seq, uint64_t conv, uint64_t seq, uint64_t sender) {
    got *g = ud;
    if (g->n < 4096) {
        g->user_seq[g->n] = user_seq;
        g->conv[g->n] = conv;
        g->seq[g->n] = seq;
        g->sender[g->n] = sender;
        g->n++;
    }
    return 0;
}

/* entry user_seq of a user: a function of it, so a wrong entry shows */
static uint64_t conv_of(uint64_t us) { return 100 + us % 7; }
static uint64_t seq_of(uint64_t us) { return us * 3; }
static uint64_t sender_of(uint64_t us) { return 1000 + us % 5; }

static void note_range(recent_inbox *r, uint64_t user, uint64_t from, uint64_t through) {
    for (uint64_t us = from; us <= through; us++) recent_inbox_note(r, user, us, conv_of(us), seq_of(us), sender_of(us));
}

/* 1 when the scan of (after, through] answered with exactly those entries */
static int scan_exact(recent_inbox *r, uint64_t user, uint64_t after, uint64_t through) {
    static got g;
    g.n = 0;
    if (!recent_inbox_scan(r, user, after, through, collect, &g)) return 0;
    if (g.n != through - after) return -1;
    for (size_t i = 0; i < g.n; i++) {
        uint64_t us = after + 1 + i;
        if (g.user_seq[i] != us || g.conv[i] != conv_of(us) || g.seq[i] != seq_of(us) || g.sender[i] != sender_of(us))
            return -1;
    }
    return 1;
}

static void answers_only_what_it_holds(void) {
    recent_inbox *r = recent_inbox_new();
    CHECK(r, "new");
    CHECK(scan_exact(r, 5, 0, 3) == 0, "nothing noted: not covered");
    note_range(r, 5, 11, 40);
    CHECK(scan_exact(r, 5, 10, 40) == 1, "the whole run");
    CHECK(scan_exact(r, 5, 20, 25) == 1, "a range inside it");
    CHECK(scan_exact(r, 5, 9, 20) == 0, "a range starting before it");
    CHECK(scan_exact(r, 5, 30, 41) == 0, "a range reaching past its end");
    CHECK(scan_exact(r, 6, 10, 20) == 0, "another user");
    CHECK(scan_exact(r, 5, 40, 40) == 1, "an empty range");
    recent_inbox_free(r);
}

/* an entry that does not follow the last starts a new run: what was before
 * the gap is no longer answered */
static void a_gap_starts_a_new_run(void) {
    recent_inbox *r = recent_inbox_new();
    note_range(r, 5, 1, 10);
    note_range(r, 5, 15, 20);
    CHECK(scan_exact(r, 5, 0, 10) == 0, "the run before the gap is gone");
    CHECK(scan_exact(r, 5, 10, 20) == 0, "a range over the gap");
    CHECK(scan_exact(r, 5, 14, 20) == 1, "the new run");
    recent_inbox_free(r);
}

/* more entries than a run holds: unacknowledged, it grows to the bound and
 * then drops the oldest; acknowledged, it drops the oldest at once */
static void bounded_runs(void) {
    recent_inbox *r = recent_inbox_new();
    note_range(r, 5, 1, RECENT_INBOX_RUN_MAX + 50);
    CHECK(scan_exact(r, 5, 50, RECENT_INBOX_RUN_MAX + 50) == 1, "the last RUN_MAX entries");
    CHECK(scan_exact(r, 5, 49, RECENT_INBOX_RUN_MAX + 50) == 0, "one more than it holds");
    /* user 9: acknowledged as it goes, so the run stays short */
    note_range(r, 9, 1, 10);
    CHECK(scan_exact(r, 9, 0, 10) == 1, "first ten");
    note_range(r, 9, 11, 10 + RECENT_INBOX_RUN_MIN);
    CHECK(scan_exact(r, 9, 10, 10 + RECENT_INBOX_RUN_MIN) == 1, "the next run's worth, after an ack");
    CHECK(scan_exact(r, 9, 0, 10 + RECENT_INBOX_RUN_MIN) == 0, "what was acknowledged was dropped");
    recent_inbox_free(r);
}

/* more users than slots: each user answered is answered with its own
 * entries, and a user whose slot was taken is not answered */
static void collisions_never_mix(void) {
    recent_inbox *r = recent_inbox_new();
    enum { USERS = 3 * RECENT_INBOX_SLOTS };
    for (uint64_t u = 1; u <= USERS; u++)
        for (uint64_t us = 1; us <= 3; us++) recent_inbox_note(r, u, us, u, us, u + 1);
    size_t answered = 0;
    for (uint64_t u = 1; u <= USERS; u++) {
        got *g = calloc(1, sizeof *g);
        if (!g) abort();
        if (recent_inbox_scan(r, u, 0, 3, collect, g)) {
            answered++;
            CHECK(g->n == 3 && g->conv[0] == u && g->conv[2] == u && g->seq[2] == 3 && g->sender[1] == u + 1,
                  "user %llu answered with its own entries", (unsigned long long)u);
        }
        free(g);
    }
    CHECK(answered > 0 && answered <= RECENT_INBOX_SLOTS, "%zu of %d users answered in %d slots", answered, USERS,
          RECENT_INBOX_SLOTS);
    recent_inbox_free(r);
}

int main(void) {
    RUN(answers_only_what_it_holds);
    RUN(a_gap_starts_a_new_run);
    RUN(bounded_runs);
    RUN(collisions_never_mix);
    CHECK_EXIT();
}
