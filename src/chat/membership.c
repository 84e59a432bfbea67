#include "chat/membership.h"

#include <stdbool.h>

#include "core/u64map.h"

int membership_current(store *s, uint64_t conv, uint64_t user, Parley__Store__Member **out) {
    Parley__Store__Member *m = NULL;
    int found = store_get_member(s, conv, user, &m);
    if (found != 1) return found;
    int active = m->joined_seq > 0 && m->left_seq == 0;
    if (out && active) *out = m;
    else parley__store__member__free_unpacked(m, NULL);
    return active;
}

/* membership_shared holds at most this many conversation ids in memory.
 * It is a bound on memory, not on the answer: past it the other user's
 * side is looked at, and when both are past it, every conversation of a
 * is checked in place (one point read of b's membership each). */
enum { MAX_CONVERSATIONS_HELD = 4096 };

typedef struct conv_set {
    u64map convs;
    bool complete;      /* every conversation of the user is in convs */
} conv_set;

static int collect_conv(void *ud, uint64_t conv) {
    conv_set *cs = ud;
    if (cs->convs.count >= MAX_CONVERSATIONS_HELD) {
        cs->complete = false;
        return 1;
    }
    u64map_put(&cs->convs, conv, 1);
    return 0;
}

struct shared_scan {
    store *s;
    const u64map *held;     /* conversations of `other`, or NULL: read them */
    uint64_t scanned, other;
    int found;
};

static int check_shared(void *ud, uint64_t conv) {
    struct shared_scan *ss = ud;
    if (ss->held && !u64map_get(ss->held, conv)) return 0;
    ss->found = membership_current(ss->s, conv, ss->other, NULL) == 1 &&
                membership_current(ss->s, conv, ss->scanned, NULL) == 1;
    return ss->found;
}

/* Streams scanned's conversations against other's (held in memory when
 * they all fit, else read one by one). */
static int shared_scan(store *s, uint64_t scanned, uint64_t other, const u64map *held) {
    struct shared_scan ss = {s, held, scanned, other, 0};
    store_scan_user_conversations(s, scanned, check_shared, &ss);
    return ss.found;
}

int membership_shared(store *s, uint64_t a, uint64_t b) {
    if (a == b) return 1;
    /* hold the smaller side if either fits; stream the other */
    conv_set sb = {{0}, true};
    store_scan_user_conversations(s, b, collect_conv, &sb);
    if (sb.complete) {
        int found = shared_scan(s, a, b, &sb.convs);
        u64map_free(&sb.convs);
        return found;
    }
    u64map_free(&sb.convs);
    conv_set sa = {{0}, true};
    store_scan_user_conversations(s, a, collect_conv, &sa);
    int found = sa.complete ? shared_scan(s, b, a, &sa.convs) : shared_scan(s, a, b, NULL);
    u64map_free(&sa.convs);
    return found;
}
