/* cql_response.c -- parse of a response body (ERROR or RESULT) into a
 * cql_result. Every length read from the body is checked against what is
 * left of it before use; counts are bounded before anything is allocated. */
#include "store/cql/cql_result_internal.h"
#include "store/cql/cql_wire.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct rd {
    const uint8_t *p;
    size_t len, pos;
    int bad;
} rd;

static int avail(rd *r, size_t n) {
    if (r->bad || r->len - r->pos < n) {
        r->bad = 1;
        return 0;
    }
    return 1;
}

static uint16_t get_u16(rd *r) {
    if (!avail(r, 2))
        return 0;
    uint16_t v = (uint16_t)((r->p[r->pos] << 8) | r->p[r->pos + 1]);
    r->pos += 2;
    return v;
}

static int32_t get_i32(rd *r) {
    if (!avail(r, 4))
        return 0;
    const uint8_t *q = r->p + r->pos;
    uint32_t v = ((uint32_t)q[0] << 24) | ((uint32_t)q[1] << 16) | ((uint32_t)q[2] << 8) | q[3];
    r->pos += 4;
    return (int32_t)v;
}

/* [string] or [short bytes]: offset and length of its content */
static size_t get_short_span(rd *r, size_t *len) {
    size_t n = get_u16(r);
    *len = 0;
    if (!avail(r, n))
        return 0;
    size_t off = r->pos;
    r->pos += n;
    *len = n;
    return off;
}

static void skip_short_span(rd *r) {
    size_t n;
    (void)get_short_span(r, &n);
}

/* [bytes]: offset, length (-1 null) */
static size_t get_bytes_span(rd *r, int32_t *len) {
    int32_t n = get_i32(r);
    *len = -1;
    if (r->bad || n < 0)
        return 0;
    if (!avail(r, (size_t)n))
        return 0;
    size_t off = r->pos;
    r->pos += (size_t)n;
    *len = n;
    return off;
}

/* [option]: type id; the element type of list/set into *elem; nested and
 * custom types are skipped (depth bounded) and reported by their id. */
static uint16_t get_option(rd *r, uint16_t *elem, int depth) {
    uint16_t id = get_u16(r);
    uint16_t dummy;
    if (elem)
        *elem = 0;
    if (depth > 8) {
        r->bad = 1;
        return 0;
    }
    switch (id) {
    case 0x0000:
        skip_short_span(r);
        break;
    case 0x0020: case 0x0022: /* list, set */
        {
            uint16_t e = get_option(r, NULL, depth + 1);
            if (elem)
                *elem = e;
        }
        break;
    case 0x0021:
        (void)get_option(r, NULL, depth + 1);
        (void)get_option(r, NULL, depth + 1);
        break;
    case 0x0030: { /* UDT: ks, name, n, (name, type)* */
        skip_short_span(r);
        skip_short_span(r);
        uint16_t n = get_u16(r);
        for (uint16_t i = 0; i < n && !r->bad; i++) {
            skip_short_span(r);
            (void)get_option(r, &dummy, depth + 1);
        }
        break;
    }
    case 0x0031: {
        uint16_t n = get_u16(r);
        for (uint16_t i = 0; i < n && !r->bad; i++)
            (void)get_option(r, &dummy, depth + 1);
        break;
    }
    default:
        break;
    }
    return id;
}

static void set_message(cql_result *res, const uint8_t *p, size_t n) {
    if (n >= sizeof res->message)
        n = sizeof res->message - 1;
    memcpy(res->message, p, n);
    res->message[n] = '\0';
}

static cql_status status_of_code(int code) {
    switch (code) {
    case 0x0000: return CQL_ERR_SERVER;
    case 0x000A: return CQL_ERR_PROTOCOL;
    case 0x0100: case 0x2100: return CQL_ERR_AUTH;
    case 0x1000: return CQL_ERR_UNAVAILABLE;
    case 0x1001: case 0x1002: return CQL_ERR_OVERLOADED;
    case 0x1003: return CQL_ERR_TRUNCATE;
    case 0x1100: return CQL_ERR_WRITE_TIMEOUT;
    case 0x1200: return CQL_ERR_READ_TIMEOUT;
    case 0x1300: return CQL_ERR_READ_FAILURE;
    case 0x1400: return CQL_ERR_FUNCTION;
    case 0x1500: return CQL_ERR_WRITE_FAILURE;
    case 0x2000: return CQL_ERR_SYNTAX;
    case 0x2200: return CQL_ERR_INVALID;
    case 0x2300: return CQL_ERR_CONFIG;
    case 0x2400: return CQL_ERR_ALREADY_EXISTS;
    case 0x2500: return CQL_ERR_UNPREPARED;
    default: return CQL_ERR_SERVER;
    }
}

static void parse_error(cql_result *res, rd *r) {
    int code = get_i32(r);
    size_t mlen;
    size_t moff = get_short_span(r, &mlen);
    if (r->bad)
        return;
    res->error_code = code;
    res->status = status_of_code(code);
    set_message(res, r->p + moff, mlen);
    if (code == 0x2500) {
        res->id_off = get_short_span(r, &res->id_len);
        res->has_id = !r->bad;
    }
    /* the other errors' extra fields are not needed by callers */
}

/* [metadata] of rows (and the result metadata of PREPARED) */
static void parse_metadata(cql_result *res, rd *r, int prepared) {
    int32_t flags = get_i32(r);
    int32_t ncols = get_i32(r);
    if (prepared) { /* prepared metadata: pk_count then pk indexes */
        int32_t pk = get_i32(r);
        if (pk < 0 || pk > CQL_MAX_COLUMNS) {
            r->bad = 1;
            return;
        }
        for (int32_t i = 0; i < pk; i++)
            (void)get_u16(r);
    }
    if (r->bad || ncols < 0 || ncols > CQL_MAX_COLUMNS) {
        r->bad = 1;
        return;
    }
    if (!prepared && (flags & 0x0002)) { /* Has_more_pages */
        int32_t n;
        res->paging_off = get_bytes_span(r, &n);
        if (r->bad)
            return;
        if (n > 0) {
            res->has_paging = 1;
            res->paging_len = (size_t)n;
        }
    }
    if (flags & 0x0004) /* No_metadata */
        return;
    if (flags & 0x0001) { /* Global_tables_spec */
        skip_short_span(r);
        skip_short_span(r);
    }
    if (r->bad)
        return;
    if (!prepared) {
        /* each column spec takes at least 4 bytes: bound before allocating */
        if ((size_t)ncols > (r->len - r->pos) / 4 + 1) {
            r->bad = 1;
            return;
        }
        res->cols = calloc((size_t)ncols + 1, sizeof *res->cols);
        if (!res->cols) {
            res->status = CQL_ERR_NOMEM;
            r->bad = 1;
            return;
        }
        res->ncols = (size_t)ncols;
    }
    for (int32_t i = 0; i < ncols && !r->bad; i++) {
        if (!(flags & 0x0001)) {
            skip_short_span(r);
            skip_short_span(r);
        }
        size_t nlen;
        size_t noff = get_short_span(r, &nlen);
        uint16_t elem;
        uint16_t type = get_option(r, &elem, 0);
        if (r->bad || prepared)
            continue;
        cql_column *c = &res->cols[i];
        size_t n = nlen < CQL_NAME_MAX - 1 ? nlen : CQL_NAME_MAX - 1;
        memcpy(c->name, r->p + noff, n);
        c->name[n] = '\0';
        c->type = type;
        c->elem = elem;
    }
}

static void parse_rows(cql_result *res, rd *r) {
    parse_metadata(res, r, 0);
    int32_t nrows = get_i32(r);
    if (r->bad || nrows < 0) {
        r->bad = 1;
        return;
    }
    size_t cells = (size_t)nrows * res->ncols;
    if (res->ncols == 0) {
        if (nrows != 0)
            r->bad = 1; /* rows without metadata: not something we asked for */
        return;
    }
    /* every cell takes at least its 4-byte length */
    if ((size_t)nrows > (r->len - r->pos) / 4 / res->ncols) {
        r->bad = 1;
        return;
    }
    res->cell_off = malloc(cells * sizeof *res->cell_off + 1);
    res->cell_len = malloc(cells * sizeof *res->cell_len + 1);
    if (!res->cell_off || !res->cell_len) {
        res->status = CQL_ERR_NOMEM;
        r->bad = 1;
        return;
    }
    for (size_t i = 0; i < cells && !r->bad; i++) {
        int32_t n;
        size_t off = get_bytes_span(r, &n);
        res->cell_off[i] = (int32_t)off;
        res->cell_len[i] = n;
    }
    if (!r->bad)
        res->nrows = (size_t)nrows;
}

static void parse_result(cql_result *res, rd *r) {
    int32_t kind = get_i32(r);
    if (r->bad)
        return;
    res->kind = kind;
    switch (kind) {
    case CQL_RESULT_VOID:
        break;
    case CQL_RESULT_ROWS:
        parse_rows(res, r);
        break;
    case CQL_RESULT_SET_KEYSPACE:
        skip_short_span(r);
        break;
    case CQL_RESULT_PREPARED:
        res->id_off = get_short_span(r, &res->id_len);
        if (r->bad || res->id_len == 0) {
            r->bad = 1;
            break;
        }
        res->has_id = 1;
        parse_metadata(res, r, 1);  /* bound variables */
        parse_metadata(res, r, 0);  /* result columns */
        res->has_paging = 0;
        break;
    case CQL_RESULT_SCHEMA_CHANGE:
        skip_short_span(r); /* change type; target and names follow, unused */
        break;
    default:
        r->bad = 1;
    }
}

cql_result *cql_result_error(cql_status st, const char *msg) {
    cql_result *res = calloc(1, sizeof *res);
    if (!res)
        return NULL;
    res->status = st;
    res->error_code = -1;
    if (msg)
        set_message(res, (const uint8_t *)msg, strlen(msg));
    return res;
}

cql_result *cql_response_parse(uint8_t flags, uint8_t opcode, const uint8_t *body, size_t len) {
    cql_result *res = cql_result_error(CQL_OK, NULL);
    if (!res)
        return NULL;
    if (len > 0) {
        res->body = malloc(len);
        if (!res->body) {
            res->status = CQL_ERR_NOMEM;
            return res;
        }
        memcpy(res->body, body, len);
    }
    res->body_len = len;
    rd r = {res->body, len, 0, 0};
    /* what the header flags put before the body proper (spec section 2.2) */
    if ((flags & 0x02) && avail(&r, 16)) /* tracing: a [uuid] */
        r.pos += 16;
    if (flags & 0x08) { /* warnings: [string list] */
        uint16_t n = get_u16(&r);
        for (uint16_t i = 0; i < n && !r.bad; i++)
            skip_short_span(&r);
    }
    if (flags & 0x04) { /* custom payload: [bytes map] */
        uint16_t n = get_u16(&r);
        for (uint16_t i = 0; i < n && !r.bad; i++) {
            int32_t blen;
            skip_short_span(&r);
            (void)get_bytes_span(&r, &blen);
        }
    }
    if (opcode == CQL_OP_ERROR)
        parse_error(res, &r);
    else if (opcode == CQL_OP_RESULT)
        parse_result(res, &r);
    else if (opcode != CQL_OP_READY)
        r.bad = 1;
    if (r.bad && res->status != CQL_ERR_NOMEM) {
        free(res->cols);
        free(res->cell_off);
        free(res->cell_len);
        res->cols = NULL;
        res->cell_off = res->cell_len = NULL;
        res->ncols = res->nrows = 0;
        res->has_id = res->has_paging = 0;
        res->kind = 0;
        res->status = CQL_ERR_PROTOCOL;
        snprintf(res->message, sizeof res->message, "malformed response (opcode 0x%02x, %zu bytes)",
                 opcode, len);
    }
    return res;
}
