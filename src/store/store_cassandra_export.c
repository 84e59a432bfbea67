/* store_cassandra_export.c -- store_scan_all of the Cassandra backend:
 * every row of every table, as the tagged key and value a batch writes
 * (store.h), kind after kind (cass_kinds order), each table in its own
 * (token) order. A row two kinds share (a conversation's record and last
 * seq, a member's record and read marks) gives a record per kind whose
 * columns it holds. The bucket columns are not part of any key: they
 * follow from the seq. */
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "store/store_cassandra_internal.h"

typedef struct export_scan {
    const cass_kind *k;
    store_record_fn fn;
    void *ud;
    uint8_t key[512], val[1 << 7];
    int stopped;
} export_scan;

static void put_be(uint8_t *p, uint64_t v, int n) {
    for (int i = n - 1; i >= 0; i--) *p++ = (uint8_t)(v >> (i * 8));
}

static int export_row_cb(void *ud, const cql_result *r, size_t row) {
    export_scan *es = ud;
    const cass_kind *k = es->k;
    size_t col = 0, kl = 0;
    es->key[kl++] = (uint8_t)k->tag;
    for (const char *c = k->key_fmt; *c; c++) {
        const uint8_t *p;
        size_t n;
        int64_t x;
        int32_t i;
        switch (*c) {
        case 'L':
            if (cql_get_bigint(r, row, col++, &x) != 0) return 0;
            put_be(es->key + kl, (uint64_t)x, 8);
            kl += 8;
            break;
        case 'I':
            if (cql_get_int(r, row, col++, &i) != 0) return 0;
            put_be(es->key + kl, (uint32_t)i, 4);
            kl += 4;
            break;
        case 'T':
            if (cql_get_bytes(r, row, col++, &p, &n) != 0 || n > 255) return 0;
            if (n) memcpy(es->key + kl, p, n);
            kl += n;
            break;
        case 'D':
            if (cql_get_bytes(r, row, col++, &p, &n) != 0 || n > 255) return 0;
            es->key[kl++] = (uint8_t)n;
            if (n) memcpy(es->key + kl, p, n);
            kl += n;
            break;
        case 'b':
            col++;
            break;
        case 'r':
            es->key[kl++] = 'r';
            break;
        }
    }
    int stop;
    if (strcmp(k->val_fmt, "B") == 0) {
        const uint8_t *p;
        size_t n;
        if (cql_get_bytes(r, row, col, &p, &n) != 0) return 0;   /* the row holds another kind only */
        stop = es->fn(es->ud, es->key, kl, p, n);
    } else {
        size_t nv = strlen(k->val_fmt);
        for (size_t j = 0; j < nv; j++) {
            int64_t x;
            if (cql_get_bigint(r, row, col + j, &x) != 0) return 0;
            put_be(es->val + 8 * j, (uint64_t)x, 8);
        }
        stop = es->fn(es->ud, es->key, kl, es->val, 8 * nv);
    }
    if (stop) es->stopped = 1;
    return stop;
}

int cass_scan_all(void *impl, store_record_fn fn, void *ud) {
    cass *s = impl;
    export_scan es = {.fn = fn, .ud = ud};
    for (size_t i = 0; i < cass_n_kinds && !es.stopped; i++) {
        cql_result *err = NULL;
        cql_prepared *stmt = cql_prepare(s->cql, s->texts[i].select_all, &err);
        if (!stmt) {
            log_error("store: cassandra: prepare %s: %s", s->texts[i].select_all,
                      err ? cql_result_message(err) : "out of memory");
            cql_result_free(err);
            return -1;
        }
        es.k = &cass_kinds[i];
        if (cass_rows(s, stmt, NULL, PAGE_ROWS, export_row_cb, &es) != 0) return -1;
    }
    return 0;
}
