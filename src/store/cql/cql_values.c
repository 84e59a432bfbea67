/* cql_values.c -- bound values, encoded as [bytes] when they are added. */
#include "store/cql/cql.h"
#include "store/cql/cql_wire.h"

#include <stdlib.h>
#include <string.h>

void cql_values_init(cql_values *v) { memset(v, 0, sizeof *v); }

void cql_values_free(cql_values *v) {
    free(v->data);
    memset(v, 0, sizeof *v);
}

/* appends one [bytes] value (n < 0: null) */
static void add(cql_values *v, const void *p, int64_t n) {
    if (v->error)
        return;
    if (v->count >= CQL_MAX_VALUES || n > (int64_t)CQL_MAX_VALUE_LEN) {
        v->error = 1;
        return;
    }
    cql_buf b = {v->data, v->len, v->cap, 0};
    cql_put_bytes(&b, p, (int32_t)n);
    v->data = b.data;
    v->len = b.len;
    v->cap = b.cap;
    if (b.oom) {
        v->error = 1;
        return;
    }
    v->count++;
}

static void add_be(cql_values *v, uint64_t x, size_t n) {
    uint8_t b[8];
    for (size_t i = 0; i < n; i++)
        b[i] = (uint8_t)(x >> (8 * (n - 1 - i)));
    add(v, b, (int64_t)n);
}

void cql_values_null(cql_values *v) { add(v, NULL, -1); }
void cql_values_bigint(cql_values *v, int64_t x) { add_be(v, (uint64_t)x, 8); }
void cql_values_int(cql_values *v, int32_t x) { add_be(v, (uint32_t)x, 4); }
void cql_values_bool(cql_values *v, int b) { add_be(v, b ? 1 : 0, 1); }
void cql_values_timestamp(cql_values *v, int64_t ms) { add_be(v, (uint64_t)ms, 8); }
void cql_values_blob(cql_values *v, const void *p, size_t n) {
    add(v, p, n > CQL_MAX_VALUE_LEN ? (int64_t)CQL_MAX_VALUE_LEN + 1 : (int64_t)n);
}
void cql_values_text(cql_values *v, const char *s, size_t n) { cql_values_blob(v, s, n); }

void cql_values_list_bigint(cql_values *v, const int64_t *xs, size_t n) {
    if (n > CQL_MAX_VALUE_LEN / 12) {
        v->error = 1;
        return;
    }
    cql_buf b = {0};
    cql_put_i32(&b, (int32_t)n);
    for (size_t i = 0; i < n; i++) {
        cql_put_i32(&b, 8);
        cql_put_i64(&b, xs[i]);
    }
    if (b.oom)
        v->error = 1;
    else
        add(v, b.data, (int64_t)b.len);
    cql_buf_free(&b);
}
