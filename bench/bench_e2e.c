/* bench_e2e.c -- per-connection Sender Keys state of parley-bench --e2e
 * (see bench_e2e.h). */
#include <stdlib.h>

#include "bench_e2e.h"
#include "e2e/e2e.h"

_Atomic size_t g_e2e_wire_bytes;
bool g_e2e_run_invalid;

typedef struct peer_key {
    uint32_t key_id;
    e2e_sender_key *k;
} peer_key;

struct bench_e2e {
    e2e_sender_key *own;       /* NULL: this connection does not send */
    uint32_t own_id;
    peer_key *peers;           /* sorted by key_id, bsearch on each delivery */
    uint32_t n_peers, cap_peers;
};

static bench_e2e *state_of(bconn *c) {
    if (!c->e2e) c->e2e = calloc(1, sizeof *c->e2e);
    return c->e2e;
}

static int add_peer(bench_e2e *s, uint32_t key_id, e2e_sender_key *k) {
    if (s->n_peers == s->cap_peers) {
        uint32_t cap = s->cap_peers ? s->cap_peers * 2 : 4;
        peer_key *np = realloc(s->peers, cap * sizeof *np);
        if (!np) return -1;
        s->peers = np;
        s->cap_peers = cap;
    }
    s->peers[s->n_peers++] = (peer_key){key_id, k};
    return 0;
}

static int cmp_peer(const void *a, const void *b) {
    uint32_t x = ((const peer_key *)a)->key_id, y = ((const peer_key *)b)->key_id;
    return x < y ? -1 : x > y;
}

int bench_e2e_distribute(bconn *const *members, uint32_t n, bool (*sends)(uint32_t index)) {
    for (uint32_t i = 0; i < n; i++) {
        if (!sends(members[i]->index)) continue;
        bench_e2e *s = state_of(members[i]);
        if (!s || e2e_sender_key_create(&s->own) != E2E_OK) return -1;
        s->own_id = e2e_sender_key_id(s->own);
        uint8_t *dist;
        size_t dist_len;
        if (e2e_sender_key_distribution(s->own, &dist, &dist_len) != E2E_OK) return -1;
        for (uint32_t j = 0; j < n; j++) {
            if (j == i) continue;
            bench_e2e *r = state_of(members[j]);
            e2e_sender_key *k;
            if (!r || e2e_sender_key_from_distribution(&k, dist, dist_len) != E2E_OK) {
                free(dist);
                return -1;
            }
            if (add_peer(r, s->own_id, k)) {
                e2e_sender_key_free(k);
                free(dist);
                return -1;
            }
        }
        free(dist);
    }
    for (uint32_t j = 0; j < n; j++) {
        bench_e2e *r = members[j]->e2e;
        if (r && r->n_peers > 1) qsort(r->peers, r->n_peers, sizeof *r->peers, cmp_peer);
    }
    return 0;
}

void bench_e2e_free(bconn *c) {
    bench_e2e *s = c->e2e;
    if (!s) return;
    e2e_sender_key_free(s->own);
    for (uint32_t i = 0; i < s->n_peers; i++) e2e_sender_key_free(s->peers[i].k);
    free(s->peers);
    free(s);
    c->e2e = NULL;
}

int bench_e2e_seal(bconn *c, const uint8_t *pt, size_t len, uint8_t **out, size_t *out_len) {
    if (!c->e2e || !c->e2e->own) return E2E_ERR_WRONG_KEY;
    return e2e_sender_key_encrypt(c->e2e->own, pt, len, out, out_len);
}

int bench_e2e_open(bconn *c, const uint8_t *msg, size_t len, uint8_t **pt, size_t *pt_len) {
    bench_e2e *s = c->e2e;
    uint32_t key_id;
    int rc = e2e_sender_message_key_id(msg, len, &key_id);
    if (rc != E2E_OK) return rc;
    if (!s) return E2E_ERR_WRONG_KEY;
    if (s->own && key_id == s->own_id) return BENCH_E2E_OWN;
    peer_key want = {key_id, NULL};
    peer_key *p = bsearch(&want, s->peers, s->n_peers, sizeof *s->peers, cmp_peer);
    if (!p) return E2E_ERR_WRONG_KEY;
    return e2e_sender_key_decrypt(p->k, msg, len, pt, pt_len);
}
