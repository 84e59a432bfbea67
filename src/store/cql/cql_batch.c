/* cql_batch.c -- the statements of a LOGGED BATCH, encoded as they are
 * added (native_protocol_v4.spec section 4.1.7): each is <kind 0><long
 * string query><short n><n bytes values>. */
#include "store/cql/cql.h"
#include "store/cql/cql_wire.h"

#include <stdlib.h>
#include <string.h>

/* a query text longer than this is a bug of the caller, not a statement */
#define BATCH_QUERY_MAX 4096

struct cql_batch {
    cql_buf body;
    size_t count;
    int error; /* sticky: CQL_ERR_ARG or CQL_ERR_NOMEM */
};

cql_batch *cql_batch_new(void) { return calloc(1, sizeof(cql_batch)); }

void cql_batch_free(cql_batch *b) {
    if (!b)
        return;
    cql_buf_free(&b->body);
    free(b);
}

void cql_batch_add(cql_batch *b, const char *query, const cql_values *values) {
    if (b->error)
        return;
    size_t qlen = strnlen(query, BATCH_QUERY_MAX + 1);
    if (qlen > BATCH_QUERY_MAX || b->count >= CQL_MAX_BATCH || (values && values->error)) {
        b->error = CQL_ERR_ARG;
        return;
    }
    cql_put_u8(&b->body, 0); /* kind: query text */
    cql_put_long_string(&b->body, query, qlen);
    cql_put_u16(&b->body, values ? values->count : 0);
    if (values && values->count)
        cql_put_raw(&b->body, values->data, values->len);
    if (b->body.oom) {
        b->error = CQL_ERR_NOMEM;
        return;
    }
    b->count++;
}

size_t cql_batch_count(const cql_batch *b) { return b->count; }
size_t cql_batch_bytes(const cql_batch *b) { return b->body.len; }

cql_status cql_batch_body(const cql_batch *b, cql_consistency cl, cql_buf *out) {
    if (b->error)
        return (cql_status)b->error;
    if (b->count == 0)
        return CQL_ERR_ARG;
    cql_put_u8(out, 0); /* LOGGED */
    cql_put_u16(out, (uint16_t)b->count);
    cql_put_raw(out, b->body.data, b->body.len);
    cql_put_u16(out, (uint16_t)cl);
    cql_put_u8(out, 0); /* flags: no serial consistency, no default timestamp */
    return out->oom ? CQL_ERR_NOMEM : CQL_OK;
}
