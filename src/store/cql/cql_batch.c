/* cql_batch.c -- the statements of a LOGGED BATCH, encoded as they are
 * added (native_protocol_v4.spec section 4.1.7): each is <kind 0><long
 * string query><short n><n bytes values>, or <kind 1><short bytes prepared
 * id><short n><n bytes values>. A prepared id is not written when the
 * statement is added but when the batch is framed (cql_batch_body, on the
 * client's I/O thread, the only one that reads or changes ids): the id of a
 * statement re-prepared after UNPREPARED is new, and a batch re-sent after
 * that must carry the new one. So the body keeps, per prepared statement,
 * where its id goes. */
#include "store/cql/cql.h"
#include "store/cql/cql_wire.h"

#include <stdlib.h>
#include <string.h>

/* a query text longer than this is a bug of the caller, not a statement */
#define BATCH_QUERY_MAX 4096

/* a prepared statement of the batch: its id goes at body offset `at` */
typedef struct id_mark {
    size_t at;
    const cql_prepared *stmt;
} id_mark;

struct cql_batch {
    cql_buf body;
    size_t count;
    id_mark *marks;
    size_t n_marks, cap_marks;
    int error; /* sticky: CQL_ERR_ARG or CQL_ERR_NOMEM */
};

cql_batch *cql_batch_new(void) { return calloc(1, sizeof(cql_batch)); }

void cql_batch_free(cql_batch *b) {
    if (!b)
        return;
    cql_buf_free(&b->body);
    free(b->marks);
    free(b);
}

cql_batch *cql_batch_copy(const cql_batch *b) {
    cql_batch *c = cql_batch_new();
    if (!c)
        return NULL;
    c->count = b->count;
    c->error = b->error;
    cql_put_raw(&c->body, b->body.data, b->body.len);
    if (b->n_marks) {
        c->marks = malloc(b->n_marks * sizeof *c->marks);
        if (c->marks) {
            memcpy(c->marks, b->marks, b->n_marks * sizeof *c->marks);
            c->n_marks = c->cap_marks = b->n_marks;
        }
    }
    if (c->body.oom || (b->n_marks && !c->marks)) {
        cql_batch_free(c);
        return NULL;
    }
    return c;
}

const cql_prepared *cql_batch_statement(const cql_batch *b, size_t i) {
    return i < b->n_marks ? b->marks[i].stmt : NULL;
}

void cql_batch_add_prepared(cql_batch *b, const cql_prepared *stmt, const cql_values *values) {
    if (b->error)
        return;
    if (!stmt || b->count >= CQL_MAX_BATCH || (values && values->error)) {
        b->error = CQL_ERR_ARG;
        return;
    }
    if (b->n_marks == b->cap_marks) {
        size_t cap = b->cap_marks ? b->cap_marks * 2 : 16;
        id_mark *grown = realloc(b->marks, cap * sizeof *grown);
        if (!grown) {
            b->error = CQL_ERR_NOMEM;
            return;
        }
        b->marks = grown;
        b->cap_marks = cap;
    }
    cql_put_u8(&b->body, 1); /* kind: prepared id, written at framing */
    b->marks[b->n_marks++] = (id_mark){b->body.len, stmt};
    cql_put_u16(&b->body, values ? values->count : 0);
    if (values && values->count)
        cql_put_raw(&b->body, values->data, values->len);
    if (b->body.oom) {
        b->error = CQL_ERR_NOMEM;
        return;
    }
    b->count++;
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

cql_status cql_batch_check(const cql_batch *b) {
    if (b->error)
        return (cql_status)b->error;
    return b->count == 0 ? CQL_ERR_ARG : CQL_OK;
}

cql_status cql_batch_body(const cql_batch *b, cql_consistency cl, cql_buf *out) {
    cql_status st = cql_batch_check(b);
    if (st != CQL_OK)
        return st;
    cql_put_u8(out, 0); /* LOGGED */
    cql_put_u16(out, (uint16_t)b->count);
    size_t from = 0;
    for (size_t i = 0; i < b->n_marks; i++) {
        const id_mark *m = &b->marks[i];
        cql_put_raw(out, b->body.data + from, m->at - from);
        cql_put_short_bytes(out, cql_prepared_id(m->stmt), cql_prepared_id_len(m->stmt));
        from = m->at;
    }
    cql_put_raw(out, b->body.data + from, b->body.len - from);
    cql_put_u16(out, (uint16_t)cl);
    cql_put_u8(out, 0); /* flags: no serial consistency, no default timestamp */
    return out->oom ? CQL_ERR_NOMEM : CQL_OK;
}
