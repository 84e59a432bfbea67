/* writer_prefetch.c -- see writer_prefetch.h. A fixed pool of helper
 * threads per conversation writer, started on first use; the writer hands
 * them a table of lookups, takes lookups from the same table itself, and
 * waits until every one is answered. */
#include "chat/writer_prefetch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "chat/writer_internal.h"
#include "core/log.h"
#include "core/metrics.h"

typedef struct lookup {
    uint64_t user;
    uint32_t device;
    uint8_t len;
    uint8_t id[WCACHE_MSG_ID_MAX];
    int found;
    uint64_t conv, seq;
} lookup;

struct writer_prefetch {
    store *store;
    pthread_t threads[PREFETCH_THREADS];
    int n_threads;
    pthread_mutex_t mu;
    pthread_cond_t work, finished;
    lookup items[BATCH_MAX];
    size_t n;            /* lookups of the current table */
    size_t next;         /* the next one not taken (under mu) */
    size_t done;         /* answered (under mu) */
    bool valid;          /* the table answers writer_prefetch_get */
    bool stop;
};

static void run_lookup(writer_prefetch *p, lookup *l) {
    l->found = store_get_client_msg(p->store, l->user, l->device, l->id, l->len, &l->conv, &l->seq);
}

/* takes and answers lookups until none is left untaken; under mu on entry and exit */
static void drain(writer_prefetch *p) {
    while (p->next < p->n) {
        lookup *l = &p->items[p->next++];
        pthread_mutex_unlock(&p->mu);
        run_lookup(p, l);
        pthread_mutex_lock(&p->mu);
        if (++p->done == p->n) pthread_cond_signal(&p->finished);
    }
}

static void *helper_main(void *arg) {
    writer_prefetch *p = arg;
    pthread_setname_np(pthread_self(), "parley-prefetch");
    pthread_mutex_lock(&p->mu);
    while (!p->stop) {
        drain(p);
        if (!p->stop) pthread_cond_wait(&p->work, &p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static writer_prefetch *prefetch_of(writer *w) {
    if (w->prefetch) return w->prefetch;
    writer_prefetch *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->store = w->srv->store;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    pthread_cond_init(&p->finished, NULL);
    for (int i = 0; i < PREFETCH_THREADS; i++) {
        if (pthread_create(&p->threads[i], NULL, helper_main, p)) break;
        p->n_threads++;
    }
    if (p->n_threads == 0) log_warn("%s: no prefetch threads: dedupe reads one at a time", w->name);
    return w->prefetch = p;
}

static bool network_store(const writer *w) {
    store_kind kind = STORE_KIND_ROCKSDB;
    return store_kind_parse(w->srv->cfg.store, &kind) == 0 && kind != STORE_KIND_ROCKSDB;
}

static bool listed(const writer_prefetch *p, size_t n, uint64_t user, uint32_t device, const uint8_t *id,
                   size_t len) {
    for (size_t i = 0; i < n; i++) {
        const lookup *l = &p->items[i];
        if (l->user == user && l->device == device && l->len == len && memcmp(l->id, id, len) == 0) return true;
    }
    return false;
}

void writer_prefetch_dedupe(writer *w, chat_request *const *reqs, size_t n) {
    if (w->prefetch) w->prefetch->valid = false;
    if (w->accounts || n < 2 || !network_store(w)) return;
    writer_prefetch *p = prefetch_of(w);
    if (!p) return;
    size_t k = 0;
    for (size_t i = 0; i < n && k < BATCH_MAX; i++) {
        const chat_request *r = reqs[i];
        if (r->op != CHAT_FRAME || !r->frame || r->frame->body_case != PARLEY__V1__FRAME__BODY_SEND_MESSAGE ||
            !r->frame->send_message)
            continue;
        const ProtobufCBinaryData *id = &r->frame->send_message->client_msg_id;
        uint64_t conv, seq;
        if (id->len < 1 || id->len > WCACHE_MSG_ID_MAX || listed(p, k, r->user_id, r->device_id, id->data, id->len) ||
            writer_cache_dedupe_get(&w->cache, r->user_id, r->device_id, id->data, id->len, 0, 0, &conv, &seq))
            continue;
        lookup *l = &p->items[k++];
        memset(l, 0, sizeof *l);
        l->user = r->user_id;
        l->device = r->device_id;
        l->len = (uint8_t)id->len;
        memcpy(l->id, id->data, id->len);
    }
    if (k < 2) return;   /* one read: handle_send makes it */
    pthread_mutex_lock(&p->mu);
    p->n = k;
    p->next = 0;
    p->done = 0;
    pthread_cond_broadcast(&p->work);
    drain(p);
    while (p->done < p->n) pthread_cond_wait(&p->finished, &p->mu);
    p->valid = true;
    pthread_mutex_unlock(&p->mu);
    METRIC_ADD(writer_dedupe_reads_total, k);
    METRIC_ADD(writer_dedupe_prefetched_total, k);
}

bool writer_prefetch_get(writer_prefetch *p, uint64_t user, uint32_t device, const uint8_t *id, size_t len,
                         int *found, uint64_t *conv, uint64_t *seq) {
    if (!p || !p->valid) return false;   /* the writer's thread wrote both last: no lock needed */
    for (size_t i = 0; i < p->n; i++) {
        const lookup *l = &p->items[i];
        if (l->user != user || l->device != device || l->len != len || memcmp(l->id, id, len) != 0) continue;
        if (l->found < 0) return false;   /* a failed read: handle_send reads again */
        *found = l->found;
        *conv = l->conv;
        *seq = l->seq;
        return true;
    }
    return false;
}

void writer_prefetch_forget(writer_prefetch *p) {
    if (p) p->valid = false;
}

void writer_prefetch_free(writer_prefetch *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stop = true;
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    pthread_cond_destroy(&p->finished);
    free(p);
}
