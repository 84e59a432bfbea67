/* test_dedupe_cache.c -- the conversation writer's dedupe cache
 * (src/chat/writer_cache.c), at its eviction edge: a set of WCACHE_WAYS
 * entries filled, then one more record for that set.
 *
 *   - the entry evicted is the least recently used one (a hit renews an
 *     entry; a put of an id already held updates it in place and evicts
 *     nothing), and every other entry keeps its own seq;
 *   - a retried client_msg_id whose record was evicted still gets its first
 *     (conv, seq), from the store (writer_read_client_msg on a real
 *     RocksDB store), and the cache is not what answered it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../check.h"
#include "chat/writer_cache.h"
#include "chat/writer_internal.h"
#include "core/metrics.h"
#include "server.h"
#include "store/store.h"

enum { USER = 77, DEVICE = 3, SEARCH_MAX = 1000000 };

typedef struct msg_id {
    uint8_t b[16];
} msg_id;

static void make_id(msg_id *m, uint32_t n) {
    memset(m, 0, sizeof *m);
    snprintf((char *)m->b, sizeof m->b, "cmid-%u", n);
}

/* WCACHE_WAYS + 1 ids of USER's DEVICE that share one set: 0 or -1 */
static int ids_of_one_set(msg_id *out) {
    make_id(&out[0], 0);
    size_t set = writer_cache_dedupe_set_of(USER, DEVICE, out[0].b, sizeof out[0].b);
    int n = 1;
    for (uint32_t k = 1; k < SEARCH_MAX && n < WCACHE_WAYS + 1; k++) {
        make_id(&out[n], k);
        if (writer_cache_dedupe_set_of(USER, DEVICE, out[n].b, sizeof out[n].b) == set) n++;
    }
    return n == WCACHE_WAYS + 1 ? 0 : -1;
}

static int held(writer_cache **c, const msg_id *m, uint64_t *seq) {
    uint64_t conv = 0;
    return writer_cache_dedupe_get(c, USER, DEVICE, m->b, sizeof m->b, 1000, 0, &conv, seq);
}

static void full_set_evicts_the_least_recently_used(void) {
    msg_id ids[WCACHE_WAYS + 1];
    CHECK(ids_of_one_set(ids) == 0, "no %d ids of one set found", WCACHE_WAYS + 1);
    writer_cache *c = NULL;
    for (int i = 0; i < WCACHE_WAYS; i++)
        writer_cache_dedupe_put(&c, USER, DEVICE, ids[i].b, sizeof ids[i].b, 9, 100 + (uint64_t)i, 1000);
    CHECK(c, "the cache was not allocated");
    uint64_t seq = 0;
    /* ids[0] is renewed by a hit, ids[2] by a put of the same id (updated in
     * place): ids[1] is now the least recently used */
    CHECK(held(&c, &ids[0], &seq) && seq == 100, "ids[0] not held with its seq (%llu)", (unsigned long long)seq);
    writer_cache_dedupe_put(&c, USER, DEVICE, ids[2].b, sizeof ids[2].b, 9, 102, 1000);
    for (int i = 0; i < WCACHE_WAYS; i++)
        CHECK(held(&c, &ids[i], &seq) && seq == 100 + (uint64_t)i, "a put of a held id evicted ids[%d]", i);
    /* those gets renewed every entry in index order: ids[0] is oldest again */
    writer_cache_dedupe_get(&c, USER, DEVICE, ids[0].b, sizeof ids[0].b, 1000, 0, &(uint64_t){0}, &seq);
    writer_cache_dedupe_get(&c, USER, DEVICE, ids[2].b, sizeof ids[2].b, 1000, 0, &(uint64_t){0}, &seq);
    /* order of last use now: ids[1], ids[3], ids[0], ids[2] */
    writer_cache_dedupe_put(&c, USER, DEVICE, ids[WCACHE_WAYS].b, sizeof ids[0].b, 9, 200, 1000);
    CHECK(!held(&c, &ids[1], &seq), "the least recently used entry (ids[1]) was not the one evicted");
    CHECK(held(&c, &ids[WCACHE_WAYS], &seq) && seq == 200, "the new entry is not held with its seq");
    for (int i = 0; i < WCACHE_WAYS; i++) {
        if (i == 1) continue;
        CHECK(held(&c, &ids[i], &seq) && seq == 100 + (uint64_t)i,
              "ids[%d] lost or changed (%llu) by the eviction of another", i, (unsigned long long)seq);
    }
    writer_cache_free(c);
}

static void evicted_retry_gets_its_first_seq_from_the_store(void) {
    msg_id ids[WCACHE_WAYS + 1];
    CHECK(ids_of_one_set(ids) == 0, "no %d ids of one set found", WCACHE_WAYS + 1);
    char dir[] = "/tmp/parley-dedupe-cache-XXXXXX";
    CHECK(mkdtemp(dir), "mkdtemp");
    char *err = NULL;
    store *st = store_open(dir, 0, 0, &err);
    CHECK(st, "store_open: %s", err ? err : "?");
    /* the first send of ids[0]: stored with seq 41 in conversation 5, and
     * held by the writer as its owner does when it puts the record */
    store_batch *b = store_batch_new();
    store_put_client_msg(b, USER, DEVICE, ids[0].b, sizeof ids[0].b, 5, 41, 1000);
    int committed = store_commit(st, b, false);
    store_batch_free(b);
    server srv;
    memset(&srv, 0, sizeof srv);
    srv.store = st;
    writer *w = calloc(1, sizeof *w);
    int ok = committed == 0 && w;
    if (ok) {
        w->srv = &srv;
        writer_cache_dedupe_put(&w->cache, USER, DEVICE, ids[0].b, sizeof ids[0].b, 5, 41, 1000);
        /* four later sends of the same device fill the set: ids[0] goes */
        for (int i = 1; i <= WCACHE_WAYS; i++)
            writer_cache_dedupe_put(&w->cache, USER, DEVICE, ids[i].b, sizeof ids[i].b, 5, 41 + (uint64_t)i, 1000);
    }
    uint64_t seq = 0, conv = 0;
    int cached = ok && writer_cache_dedupe_get(&w->cache, USER, DEVICE, ids[0].b, sizeof ids[0].b, 1000, 0, &conv,
                                               &seq);
    unsigned long reads0 = atomic_load(&g_metrics.writer_dedupe_reads_total);
    conv = seq = 0;
    int found = ok ? writer_read_client_msg(w, USER, DEVICE, ids[0].b, sizeof ids[0].b, &conv, &seq) : -1;
    unsigned long reads1 = atomic_load(&g_metrics.writer_dedupe_reads_total);
    if (w) writer_cache_free(w->cache);
    free(w);
    store_close(st);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    if (system(cmd) != 0) fprintf(stderr, "  could not remove %s\n", dir);
    CHECK(ok, "the store commit or the writer failed");
    CHECK(!cached, "ids[0] still held after %d newer records of its set", WCACHE_WAYS);
    CHECK(found == 1 && conv == 5 && seq == 41, "the retry found %d (conv %llu, seq %llu), want its first (5, 41)",
          found, (unsigned long long)conv, (unsigned long long)seq);
    CHECK(reads1 == reads0 + 1, "the retry was not answered by the store (dedupe reads %lu -> %lu)", reads0, reads1);
}

int main(void) {
    RUN(full_set_evicts_the_least_recently_used);
    RUN(evicted_retry_gets_its_first_seq_from_the_store);
    CHECK_EXIT();
}
