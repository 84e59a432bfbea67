#include "gateway/presence_access.h"

#include <stdbool.h>

#include "chat/consent.h"
#include "chat/membership.h"
#include "core/u64map.h"

enum {
    VIEWER_CONVERSATIONS_MAX = 4096,   /* as membership_shared looks at */
    STEP_BUDGET = 65536,               /* conversation ids read, all ids together */
};

size_t presence_unique_ids(uint64_t *ids, size_t n) {
    u64map seen = {0};
    size_t kept = 0;
    for (size_t i = 0; i < n; i++) {
        /* key 0 cannot be stored: id 0 is never a user, so one is kept */
        if (ids[i] == 0) {
            bool have = false;
            for (size_t j = 0; j < kept && !have; j++) have = ids[j] == 0;
            if (!have) ids[kept++] = 0;
            continue;
        }
        if (u64map_get(&seen, ids[i])) continue;
        if (u64map_put(&seen, ids[i], 1)) break;   /* out of memory: the rest is dropped */
        ids[kept++] = ids[i];
    }
    u64map_free(&seen);
    return kept;
}

typedef struct viewer_convs {
    u64map convs;
    size_t steps;
} viewer_convs;

static int collect_viewer_conv(void *ud, uint64_t conv) {
    viewer_convs *v = ud;
    v->steps++;
    u64map_put(&v->convs, conv, 1);
    return v->convs.count >= VIEWER_CONVERSATIONS_MAX;
}

typedef struct shared_probe {
    store *s;
    viewer_convs *v;
    uint64_t viewer, user;
    int found;          /* 1 shared, -1 error */
    int over_budget;
} shared_probe;

static int probe_conv(void *ud, uint64_t conv) {
    shared_probe *p = ud;
    if (++p->v->steps > STEP_BUDGET) {
        p->over_budget = 1;
        return 1;
    }
    if (!u64map_get(&p->v->convs, conv)) return 0;
    /* the conversation lists keep former ones too: both must be current */
    int a = membership_current(p->s, conv, p->viewer, NULL);
    int b = a == 1 ? membership_current(p->s, conv, p->user, NULL) : 0;
    if (a < 0 || b < 0) p->found = -1;
    else if (a == 1 && b == 1) p->found = 1;
    return p->found != 0;
}

int presence_access_check(store *s, uint64_t viewer, const uint64_t *ids, size_t n, uint64_t *denied) {
    viewer_convs v = {{0}, 0};
    int rc = PRESENCE_ACCESS_OK;
    if (store_scan_user_conversations(s, viewer, collect_viewer_conv, &v) < 0) rc = PRESENCE_ACCESS_ERROR;
    for (size_t i = 0; i < n && rc == PRESENCE_ACCESS_OK; i++) {
        if (ids[i] == viewer) continue;
        shared_probe p = {s, &v, viewer, ids[i], 0, 0};
        if (v.convs.count >= VIEWER_CONVERSATIONS_MAX) {
            /* the viewer's list did not fit: membership_shared answers
             * without the list, at a cost counted as a full list per id */
            v.steps += VIEWER_CONVERSATIONS_MAX;
            if (v.steps > STEP_BUDGET) p.over_budget = 1;
            else p.found = membership_shared(s, viewer, ids[i]);
        } else if (store_scan_user_conversations(s, ids[i], probe_conv, &p) < 0) {
            p.found = -1;
        }
        if (p.over_budget) rc = PRESENCE_ACCESS_TOO_COSTLY;
        else if (p.found < 0) rc = PRESENCE_ACCESS_ERROR;
        else if (p.found == 0 || consent_state(s, ids[i], viewer) != CONSENT_ACCEPTED) {
            *denied = ids[i];
            rc = PRESENCE_ACCESS_DENIED;
        }
    }
    u64map_free(&v.convs);
    return rc;
}
