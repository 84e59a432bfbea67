#include "chat/membership.h"

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

enum { MAX_CONVERSATIONS_LOOKED_AT = 4096 };

static int collect_conv(void *ud, uint64_t conv) {
    u64map *convs = ud;
    u64map_put(convs, conv, 1);
    return convs->count >= MAX_CONVERSATIONS_LOOKED_AT;
}

struct shared_scan {
    store *s;
    u64map *convs_of_a;
    uint64_t a, b;
    int found;
};

static int check_shared(void *ud, uint64_t conv) {
    struct shared_scan *ss = ud;
    if (!u64map_get(ss->convs_of_a, conv)) return 0;
    ss->found = membership_current(ss->s, conv, ss->a, NULL) == 1 &&
                membership_current(ss->s, conv, ss->b, NULL) == 1;
    return ss->found;
}

int membership_shared(store *s, uint64_t a, uint64_t b) {
    if (a == b) return 1;
    u64map convs = {0};
    store_scan_user_conversations(s, a, collect_conv, &convs);
    struct shared_scan ss = {s, &convs, a, b, 0};
    store_scan_user_conversations(s, b, check_shared, &ss);
    u64map_free(&convs);
    return ss.found;
}
