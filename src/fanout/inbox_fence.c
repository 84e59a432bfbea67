/* inbox_fence.c -- see inbox_fence.h.
 *
 * Why: on a fenced store two fan-outs can number one user's inbox (two
 * chat nodes with users in common, or a stalled node resumed after its
 * partitions moved). The store lets only one writer have each user_seq
 * (the conditional head of the inbox partition), and a loser is told
 * STORE_CONFLICT. The loser must then neither lose its entries nor add one
 * a second time: some of them may already be there (its own conditional
 * batch of another bucket applied before the conflict, or another owner
 * appended the same message), and the rest belong after the head. The
 * same check runs on a user touched cold whose head is past its hint: a
 * stalled fan-out's append may have won its condition without its logged
 * batch (hint, checkpoint) landing, and the message would come round
 * again from the log. And on a stale entry (inbox_fence.h): a resumed
 * stalled node's fan-out holds entries the new owner appended already. */
#include "fanout/inbox_fence.h"

#include <stdlib.h>

#include "core/log.h"

/* entries read per user at most: (hint, head] is at most a few commits */
enum { FENCE_SCAN_MAX = 65536 };

typedef struct found {
    uint64_t conv, seq, user_seq;
} found;

typedef struct scan {
    found *f;
    size_t n, cap;
} scan;

static int collect(void *ud, uint64_t user_seq, uint64_t conv, uint64_t seq, uint64_t sender) {
    (void)sender;
    scan *sc = ud;
    if (sc->n == sc->cap) {
        size_t cap = sc->cap ? sc->cap * 2 : 64;
        found *grown = realloc(sc->f, cap * sizeof *grown);
        if (!grown) abort();
        sc->f = grown;
        sc->cap = cap;
    }
    sc->f[sc->n++] = (found){conv, seq, user_seq};
    return 0;
}

bool inbox_fence_stale(uint64_t numbered_ms, uint64_t now_ms) {
    /* a wall clock set back makes entries look young: see README, drill 4 */
    return now_ms >= numbered_ms && now_ms - numbered_ms >= INBOX_FENCE_STALE_MS;
}

static const found *lookup(const scan *sc, uint64_t conv, uint64_t seq) {
    for (size_t i = 0; i < sc->n; i++)
        if (sc->f[i].conv == conv && sc->f[i].seq == seq) return &sc->f[i];
    return NULL;
}

int inbox_fence_renumber(store *s, inbox_claim *c, size_t n, u64map *heads) {
    scan sc = {0};
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0;) {
        size_t end = i;
        while (end < n && c[end].user == c[i].user) end++;
        uint64_t user = c[i].user, hint = 0, head = 0;
        uint64_t first = c[i].user_seq ? c[i].user_seq - 1 : 0;
        if (store_inbox_heads(s, user, &hint, &head) != 0) {
            rc = -1;
            break;
        }
        uint64_t after = hint < first ? hint : first;
        bool deep = false;
        for (size_t k = i; k < end; k++) deep = deep || c[k].deep;
        uint64_t back = head > INBOX_FENCE_DEEP ? head - INBOX_FENCE_DEEP : 0;
        if (deep && back < after) after = back;
        sc.n = 0;
        if (head > after) {
            uint64_t span = head - after;
            if (span > FENCE_SCAN_MAX) {
                log_warn("fanout: inbox of user %llu: %llu entries between hint and head; only the last %d checked",
                         (unsigned long long)user, (unsigned long long)span, FENCE_SCAN_MAX);
                after = head - FENCE_SCAN_MAX;
            }
            if (store_scan_inbox(s, user, after, head, FENCE_SCAN_MAX, collect, &sc) != 0) {
                rc = -1;
                break;
            }
        }
        for (size_t k = i; k < end; k++) {
            const found *f = lookup(&sc, c[k].conv, c[k].seq);
            c[k].present = f != NULL;
            c[k].user_seq = f ? f->user_seq : ++head;
        }
        if (u64map_put(heads, user, head)) abort();
        i = end;
    }
    free(sc.f);
    return rc;
}
