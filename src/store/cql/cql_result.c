/* cql_result.c -- reading a parsed result: status, columns, cells. */
#include "store/cql/cql_result_internal.h"
#include "store/cql/cql_wire.h"

#include <stdlib.h>
#include <string.h>

void cql_result_free(cql_result *r) {
    if (!r)
        return;
    free(r->body);
    free(r->cols);
    free(r->cell_off);
    free(r->cell_len);
    free(r);
}

cql_status cql_result_status(const cql_result *r) { return r->status; }
const char *cql_result_message(const cql_result *r) { return r->message; }
int cql_result_error_code(const cql_result *r) { return r->error_code; }
size_t cql_result_rows(const cql_result *r) { return r->nrows; }
size_t cql_result_columns(const cql_result *r) { return r->ncols; }
int cql_result_kind(const cql_result *r) { return r->status == CQL_OK ? r->kind : 0; }

int cql_result_column(const cql_result *r, const char *name) {
    for (size_t i = 0; i < r->ncols; i++)
        if (strcmp(r->cols[i].name, name) == 0)
            return (int)i;
    return -1;
}

int cql_result_column_type(const cql_result *r, size_t col) {
    return col < r->ncols ? r->cols[col].type : -1;
}

int cql_result_paging_state(const cql_result *r, const uint8_t **p, size_t *len) {
    if (!r->has_paging)
        return 0;
    *p = r->body + r->paging_off;
    *len = r->paging_len;
    return 1;
}

int cql_result_prepared_id(const cql_result *r, const uint8_t **id, size_t *len) {
    if (r->status != CQL_OK || r->kind != CQL_RESULT_PREPARED || !r->has_id)
        return -1;
    *id = r->body + r->id_off;
    *len = r->id_len;
    return 0;
}

int cql_result_unprepared_id(const cql_result *r, const uint8_t **id, size_t *len) {
    if (r->status != CQL_ERR_UNPREPARED || !r->has_id)
        return -1;
    *id = r->body + r->id_off;
    *len = r->id_len;
    return 0;
}

/* the cell's bytes if it exists, is not null and its column has one of the types */
static const uint8_t *cell(const cql_result *r, size_t row, size_t col, int t1, int t2,
                           size_t *len) {
    if (row >= r->nrows || col >= r->ncols)
        return NULL;
    int t = r->cols[col].type;
    if (t != t1 && t != t2)
        return NULL;
    size_t i = row * r->ncols + col;
    if (r->cell_len[i] < 0)
        return NULL;
    *len = (size_t)r->cell_len[i];
    return r->body + r->cell_off[i];
}

static uint64_t be(const uint8_t *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

int cql_get_bigint(const cql_result *r, size_t row, size_t col, int64_t *out) {
    size_t n;
    const uint8_t *p = cell(r, row, col, CQL_TYPE_BIGINT, CQL_TYPE_BIGINT, &n);
    if (!p || n != 8)
        return -1;
    *out = (int64_t)be(p, 8);
    return 0;
}

int cql_get_timestamp(const cql_result *r, size_t row, size_t col, int64_t *out) {
    size_t n;
    const uint8_t *p = cell(r, row, col, CQL_TYPE_TIMESTAMP, CQL_TYPE_TIMESTAMP, &n);
    if (!p || n != 8)
        return -1;
    *out = (int64_t)be(p, 8);
    return 0;
}

int cql_get_int(const cql_result *r, size_t row, size_t col, int32_t *out) {
    size_t n;
    const uint8_t *p = cell(r, row, col, CQL_TYPE_INT, CQL_TYPE_INT, &n);
    if (!p || n != 4)
        return -1;
    *out = (int32_t)(uint32_t)be(p, 4);
    return 0;
}

int cql_get_bool(const cql_result *r, size_t row, size_t col, int *out) {
    size_t n;
    const uint8_t *p = cell(r, row, col, CQL_TYPE_BOOLEAN, CQL_TYPE_BOOLEAN, &n);
    if (!p || n != 1)
        return -1;
    *out = p[0] != 0;
    return 0;
}

int cql_get_bytes(const cql_result *r, size_t row, size_t col, const uint8_t **out, size_t *len) {
    size_t n;
    const uint8_t *p = cell(r, row, col, CQL_TYPE_VARCHAR, CQL_TYPE_BLOB, &n);
    if (!p)
        p = cell(r, row, col, CQL_TYPE_ASCII, CQL_TYPE_ASCII, &n);
    if (!p)
        return -1;
    *out = p;
    *len = n;
    return 0;
}

/* a list/set cell: [int] n, then n [bytes] */
static const uint8_t *list_cell(const cql_result *r, size_t row, size_t col, size_t *len,
                                size_t *count) {
    const uint8_t *p = cell(r, row, col, CQL_TYPE_LIST, CQL_TYPE_SET, len);
    if (!p || *len < 4)
        return NULL;
    int32_t n = (int32_t)(uint32_t)be(p, 4);
    if (n < 0 || (size_t)n > (*len - 4) / 4)
        return NULL;
    *count = (size_t)n;
    return p;
}

int cql_get_list_len(const cql_result *r, size_t row, size_t col, size_t *n) {
    size_t len;
    return list_cell(r, row, col, &len, n) ? 0 : -1;
}

int cql_get_list_bigint(const cql_result *r, size_t row, size_t col, size_t i, int64_t *out) {
    size_t len, count;
    const uint8_t *p = list_cell(r, row, col, &len, &count);
    if (!p || i >= count || r->cols[col].elem != CQL_TYPE_BIGINT)
        return -1;
    size_t pos = 4;
    for (size_t k = 0;; k++) { /* elements are [bytes]; walk to the i-th, bounded by count */
        if (len - pos < 4)
            return -1;
        int32_t n = (int32_t)(uint32_t)be(p + pos, 4);
        pos += 4;
        if (n < 0 || (size_t)n > len - pos)
            return -1;
        if (k == i) {
            if (n != 8)
                return -1;
            *out = (int64_t)be(p + pos, 8);
            return 0;
        }
        pos += (size_t)n;
    }
}

int cql_result_applied(const cql_result *r) {
    int col = cql_result_column(r, "[applied]");
    int v;
    if (col < 0 || cql_get_bool(r, 0, (size_t)col, &v) != 0)
        return -1;
    return v;
}

const char *cql_status_name(cql_status st) {
    static const char *const names[] = {
        "OK", "SERVER", "PROTOCOL", "AUTH", "UNAVAILABLE", "OVERLOADED", "TRUNCATE",
        "WRITE_TIMEOUT", "READ_TIMEOUT", "READ_FAILURE", "FUNCTION", "WRITE_FAILURE",
        "SYNTAX", "INVALID", "CONFIG", "ALREADY_EXISTS", "UNPREPARED", "TIMEOUT",
        "CONNECTION", "BUSY", "CLOSED", "NOMEM", "ARG",
    };
    if ((size_t)st < sizeof names / sizeof names[0])
        return names[st];
    return "?";
}

int cql_status_outcome_unknown(cql_status st) {
    return st == CQL_ERR_WRITE_TIMEOUT || st == CQL_ERR_WRITE_FAILURE || st == CQL_ERR_TIMEOUT ||
           st == CQL_ERR_CONNECTION || st == CQL_ERR_SERVER;
}
