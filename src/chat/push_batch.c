/* push_batch.c -- see push_batch.h. */
#include "chat/push_batch.h"

#include <stdlib.h>

#include "cluster/node_forward.h"

void push_batch_init(push_batch *b, server *srv) { *b = (push_batch){.srv = srv}; }

bool push_batch_add(push_batch *b, uint64_t user) {
    if (!b->srv->forward) return false;   /* single node: the local registry, no round trip */
    if (b->n == b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        if (cap > PUSH_BATCH_MAX) cap = PUSH_BATCH_MAX;
        uint64_t *grown = cap > b->cap ? realloc(b->users, cap * sizeof *grown) : NULL;
        if (!grown) return false;
        b->users = grown;
        b->cap = cap;
    }
    b->users[b->n++] = user;
    return true;
}

void push_batch_lookup(push_batch *b) {
    /* a sender of many notes is gathered many times: the prefetch asks once */
    if (b->n) node_sessions_prefetch(b->srv, b->users, b->n, sizeof *b->users);
}

void push_batch_end(push_batch *b) {
    if (b->n) node_sessions_prefetch_end();
    free(b->users);
    *b = (push_batch){.srv = b->srv};
}
