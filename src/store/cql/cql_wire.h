/* cql_wire.h -- the CQL native protocol v4 on the wire: frame header, the
 * [int]/[short]/[string]/[bytes] primitives (big-endian), request bodies and
 * the parse of a response body into a cql_result. Pure functions over byte
 * buffers, no I/O, so the unit test and the fuzz target drive them directly.
 * Reference: native_protocol_v4.spec (sections 2-4, 6, 8, 9). */
#ifndef PARLEY_CQL_WIRE_H
#define PARLEY_CQL_WIRE_H

#include "store/cql/cql.h"

#include <stddef.h>
#include <stdint.h>

#define CQL_VERSION_REQUEST 0x04
#define CQL_VERSION_RESPONSE 0x84
#define CQL_HEADER_LEN 9
/* Largest response body accepted; the spec allows 256 MB, a chat store's
 * pages are far smaller, and a bigger length is treated as a broken peer. */
#define CQL_MAX_BODY (16u << 20)

enum {
    CQL_OP_ERROR = 0x00, CQL_OP_STARTUP = 0x01, CQL_OP_READY = 0x02,
    CQL_OP_AUTHENTICATE = 0x03, CQL_OP_OPTIONS = 0x05, CQL_OP_SUPPORTED = 0x06,
    CQL_OP_QUERY = 0x07, CQL_OP_RESULT = 0x08, CQL_OP_PREPARE = 0x09,
    CQL_OP_EXECUTE = 0x0A, CQL_OP_REGISTER = 0x0B, CQL_OP_EVENT = 0x0C,
    CQL_OP_BATCH = 0x0D,
};

enum { /* result kinds */
    CQL_RESULT_VOID = 1, CQL_RESULT_ROWS = 2, CQL_RESULT_SET_KEYSPACE = 3,
    CQL_RESULT_PREPARED = 4, CQL_RESULT_SCHEMA_CHANGE = 5,
};

typedef struct cql_header {
    uint8_t version;
    uint8_t flags;
    int16_t stream;
    uint8_t opcode;
    uint32_t length;
} cql_header;

/* Growable output buffer; oom is sticky so writers need not check each call. */
typedef struct cql_buf {
    uint8_t *data;
    size_t len, cap;
    int oom;
} cql_buf;

void cql_buf_free(cql_buf *b);
void cql_put_u8(cql_buf *b, uint8_t v);
void cql_put_u16(cql_buf *b, uint16_t v);
void cql_put_i32(cql_buf *b, int32_t v);
void cql_put_i64(cql_buf *b, int64_t v);
void cql_put_raw(cql_buf *b, const void *p, size_t n);
void cql_put_string(cql_buf *b, const char *s, size_t n);      /* [string] */
void cql_put_long_string(cql_buf *b, const char *s, size_t n); /* [long string] */
void cql_put_short_bytes(cql_buf *b, const uint8_t *p, size_t n);
void cql_put_bytes(cql_buf *b, const uint8_t *p, int32_t n);   /* n < 0: null */

/* Parses the 9-byte header at p (len >= CQL_HEADER_LEN). Returns 0, or -1 if
 * it is not a v4 response or its body is longer than max_body. */
int cql_header_parse(const uint8_t *p, size_t len, size_t max_body, cql_header *h);

/* Splits the next whole frame off a received byte stream: 1 with *h and
 * *body (pointing into p) when p holds a whole frame, 0 when more bytes are
 * needed (a partial header or body), -1 when the stream is broken (not a v4
 * response, or a body longer than max_body). Consumes CQL_HEADER_LEN +
 * h->length bytes on 1. */
int cql_frame_next(const uint8_t *p, size_t len, size_t max_body, cql_header *h,
                   const uint8_t **body);

/* Writes a whole request frame: header with body length, then body.
 * The body is appended by the caller between begin and end. */
size_t cql_frame_begin(cql_buf *b, int16_t stream, uint8_t opcode);
void cql_frame_end(cql_buf *b, size_t start);

/* Request bodies. */
void cql_body_startup(cql_buf *b);
/* query parameters of QUERY/EXECUTE (values already encoded: [short] n
 * then n [bytes], as cql_values holds them) */
void cql_body_params(cql_buf *b, cql_consistency cl, const cql_values *values,
                     int32_t page_size, const uint8_t *paging_state, size_t paging_len);
/* the same with the serial consistency of a lightweight transaction
 * (CQL_SERIAL or CQL_LOCAL_SERIAL; any other value: none, the server's
 * default SERIAL) */
void cql_body_params_serial(cql_buf *b, cql_consistency cl, cql_consistency serial,
                            const cql_values *values, int32_t page_size,
                            const uint8_t *paging_state, size_t paging_len);

/* The body of a BATCH request of b (LOGGED, no flags) into out, with the
 * current id of each prepared statement (so only on the I/O thread, or
 * where no id can change). CQL_OK, CQL_ERR_ARG for an empty or failed
 * batch, CQL_ERR_NOMEM. */
cql_status cql_batch_body(const cql_batch *b, cql_consistency cl, cql_buf *out);
/* what cql_batch_body would answer but for memory: CQL_OK, or the
 * batch's error (CQL_ERR_ARG also for an empty batch) */
cql_status cql_batch_check(const cql_batch *b);
/* a copy of b (a request's own), NULL out of memory */
cql_batch *cql_batch_copy(const cql_batch *b);
/* the i-th prepared statement of b, NULL past the last */
const cql_prepared *cql_batch_statement(const cql_batch *b, size_t i);
/* a prepared statement's server id (I/O thread only; empty before the
 * first PREPARE answered) */
const uint8_t *cql_prepared_id(const cql_prepared *st);
size_t cql_prepared_id_len(const cql_prepared *st);

/* Parses a response body of the given header flags and opcode into a new
 * result; the tracing id, warnings and custom payload that the flags announce
 * are skipped (compression is never negotiated, so flag 0x01 is refused by
 * the caller). Returns
 * NULL only when out of memory; a malformed body gives a result with status
 * CQL_ERR_PROTOCOL. The result copies the body; it never points into it. */
cql_result *cql_response_parse(uint8_t flags, uint8_t opcode, const uint8_t *body, size_t len);

/* For PREPARED results: the statement id (borrowed from the result). */
int cql_result_prepared_id(const cql_result *r, const uint8_t **id, size_t *len);
/* For UNPREPARED errors: the id the server did not know. */
int cql_result_unprepared_id(const cql_result *r, const uint8_t **id, size_t *len);
/* Result kind (CQL_RESULT_*) or 0 for errors. */
int cql_result_kind(const cql_result *r);
/* A result with just a status and message (client-side errors). */
cql_result *cql_result_error(cql_status st, const char *msg);

#endif
