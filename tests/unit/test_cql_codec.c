/* test_cql_codec.c -- the CQL v4 codec without a server: request frames,
 * bound values, response headers split at every byte, rows/prepared/error
 * bodies, and malformed or hostile bodies refused without a crash. */
#include "../check.h"
#include "store/cql/cql.h"
#include "store/cql/cql_wire.h"

#include <string.h>

static void put_str(cql_buf *b, const char *s) { cql_put_string(b, s, strlen(s)); }

/* a ROWS body: bigint id, text name, boolean ok, list<bigint> seqs; paging
 * state "PS"; two rows, the second with null name and list */
static void rows_body(cql_buf *b) {
    cql_put_i32(b, CQL_RESULT_ROWS);
    cql_put_i32(b, 0x0001 | 0x0002); /* global spec, has more pages */
    cql_put_i32(b, 4);
    cql_put_bytes(b, (const uint8_t *)"PS", 2);
    put_str(b, "ks");
    put_str(b, "t");
    put_str(b, "id"); cql_put_u16(b, CQL_TYPE_BIGINT);
    put_str(b, "name"); cql_put_u16(b, CQL_TYPE_VARCHAR);
    put_str(b, "[applied]"); cql_put_u16(b, CQL_TYPE_BOOLEAN);
    put_str(b, "seqs"); cql_put_u16(b, CQL_TYPE_LIST); cql_put_u16(b, CQL_TYPE_BIGINT);
    cql_put_i32(b, 2);
    /* row 0 */
    cql_put_i32(b, 8); cql_put_i64(b, -5);
    cql_put_bytes(b, (const uint8_t *)"alice", 5);
    cql_put_i32(b, 1); cql_put_u8(b, 1);
    cql_put_i32(b, 4 + 2 * 12);
    cql_put_i32(b, 2); cql_put_i32(b, 8); cql_put_i64(b, 7); cql_put_i32(b, 8); cql_put_i64(b, 1LL << 40);
    /* row 1 */
    cql_put_i32(b, 8); cql_put_i64(b, 42);
    cql_put_bytes(b, NULL, -1);
    cql_put_i32(b, 1); cql_put_u8(b, 0);
    cql_put_bytes(b, NULL, -1);
}

static void startup_frame_is_exact(void) {
    cql_buf b = {0};
    size_t start = cql_frame_begin(&b, 3, CQL_OP_STARTUP);
    cql_body_startup(&b);
    cql_frame_end(&b, start);
    static const uint8_t want[] = {0x04, 0, 0, 3, 0x01, 0, 0, 0, 22, 0, 1, 0, 11, 'C', 'Q', 'L',
                                   '_', 'V', 'E', 'R', 'S', 'I', 'O', 'N', 0, 5, '3', '.', '0', '.', '0'};
    CHECK(!b.oom && b.len == sizeof want, "len %zu", b.len);
    CHECK(memcmp(b.data, want, sizeof want) == 0, "bytes differ");
    cql_buf_free(&b);
}

static void query_params_encode_values_and_paging(void) {
    cql_values v;
    cql_values_init(&v);
    cql_values_bigint(&v, 0x0102030405060708LL);
    cql_values_int(&v, -2);
    cql_values_text(&v, "hi", 2);
    cql_values_bool(&v, 1);
    cql_values_null(&v);
    CHECK(!v.error && v.count == 5, "count %u", v.count);
    cql_buf b = {0};
    cql_body_params(&b, CQL_LOCAL_QUORUM, &v, 100, (const uint8_t *)"xy", 2);
    static const uint8_t want[] = {
        0, 6, 0x01 | 0x04 | 0x08, 0, 5,
        0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8,
        0, 0, 0, 4, 0xff, 0xff, 0xff, 0xfe,
        0, 0, 0, 2, 'h', 'i',
        0, 0, 0, 1, 1,
        0xff, 0xff, 0xff, 0xff,
        0, 0, 0, 100,
        0, 0, 0, 2, 'x', 'y'};
    CHECK(b.len == sizeof want && memcmp(b.data, want, sizeof want) == 0, "params differ (len %zu)", b.len);
    cql_buf_free(&b);
    cql_values_free(&v);
}

static void too_many_values_is_an_error(void) {
    cql_values v;
    cql_values_init(&v);
    for (int i = 0; i < CQL_MAX_VALUES + 1; i++)
        cql_values_int(&v, i);
    CHECK(v.error, "257 values accepted");
    cql_values_free(&v);
}

static void header_split_at_every_byte(void) {
    cql_buf body = {0};
    rows_body(&body);
    cql_buf f = {0};
    uint8_t h[CQL_HEADER_LEN] = {0x84, 0, 0x01, 0x02, CQL_OP_RESULT, 0, 0, 0, 0};
    uint32_t n = (uint32_t)body.len;
    h[5] = (uint8_t)(n >> 24); h[6] = (uint8_t)(n >> 16); h[7] = (uint8_t)(n >> 8); h[8] = (uint8_t)n;
    cql_put_raw(&f, h, sizeof h);
    cql_put_raw(&f, body.data, body.len);
    for (size_t cut = 0; cut < f.len; cut++) {
        cql_header hd;
        const uint8_t *b;
        CHECK(cql_frame_next(f.data, cut, CQL_MAX_BODY, &hd, &b) == 0, "whole frame at %zu of %zu", cut, f.len);
    }
    cql_header hd;
    const uint8_t *b;
    CHECK(cql_frame_next(f.data, f.len, CQL_MAX_BODY, &hd, &b) == 1, "not whole");
    CHECK(hd.stream == 0x0102 && hd.opcode == CQL_OP_RESULT && hd.length == n, "header fields");
    CHECK(b == f.data + CQL_HEADER_LEN, "body pointer");
    /* a request version, or a body over the limit, is a broken stream */
    f.data[0] = 0x04;
    CHECK(cql_frame_next(f.data, f.len, CQL_MAX_BODY, &hd, &b) == -1, "request version accepted");
    f.data[0] = 0x84;
    CHECK(cql_frame_next(f.data, f.len, n - 1, &hd, &b) == -1, "over-limit body accepted");
    /* negative stream ids (events) come through as negative */
    f.data[2] = 0xff; f.data[3] = 0xff;
    CHECK(cql_frame_next(f.data, f.len, CQL_MAX_BODY, &hd, &b) == 1 && hd.stream == -1, "stream -1");
    cql_buf_free(&f);
    cql_buf_free(&body);
}

static void rows_decode(void) {
    cql_buf body = {0};
    rows_body(&body);
    cql_result *r = cql_response_parse(0, CQL_OP_RESULT, body.data, body.len);
    CHECK(r && cql_result_status(r) == CQL_OK, "status %s: %s", cql_status_name(cql_result_status(r)), cql_result_message(r));
    CHECK(cql_result_kind(r) == CQL_RESULT_ROWS, "kind");
    CHECK(cql_result_rows(r) == 2 && cql_result_columns(r) == 4, "shape %zu x %zu", cql_result_rows(r), cql_result_columns(r));
    CHECK(cql_result_column(r, "name") == 1 && cql_result_column(r, "nope") == -1, "column lookup");
    int64_t x;
    CHECK(cql_get_bigint(r, 0, 0, &x) == 0 && x == -5, "row0 id");
    CHECK(cql_get_bigint(r, 1, 0, &x) == 0 && x == 42, "row1 id");
    const uint8_t *p;
    size_t n;
    CHECK(cql_get_bytes(r, 0, 1, &p, &n) == 0 && n == 5 && memcmp(p, "alice", 5) == 0, "row0 name");
    CHECK(cql_get_bytes(r, 1, 1, &p, &n) == -1, "null name read as a value");
    CHECK(cql_get_bigint(r, 0, 1, &x) == -1, "text read as bigint");
    CHECK(cql_result_applied(r) == 1, "applied");
    int ok;
    CHECK(cql_get_bool(r, 1, 2, &ok) == 0 && ok == 0, "row1 bool");
    CHECK(cql_get_list_len(r, 0, 3, &n) == 0 && n == 2, "list len");
    CHECK(cql_get_list_bigint(r, 0, 3, 1, &x) == 0 && x == (1LL << 40), "list[1]");
    CHECK(cql_get_list_bigint(r, 0, 3, 2, &x) == -1, "list[2] out of range");
    CHECK(cql_get_list_len(r, 1, 3, &n) == -1, "null list");
    CHECK(cql_get_bigint(r, 2, 0, &x) == -1, "row out of range");
    CHECK(cql_result_paging_state(r, &p, &n) == 1 && n == 2 && memcmp(p, "PS", 2) == 0, "paging state");
    cql_result_free(r);
    cql_buf_free(&body);
}

static void every_truncation_is_refused(void) {
    cql_buf body = {0};
    rows_body(&body);
    for (size_t cut = 0; cut < body.len; cut++) {
        cql_result *r = cql_response_parse(0, CQL_OP_RESULT, body.data, cut);
        CHECK(r && cql_result_status(r) == CQL_ERR_PROTOCOL, "prefix %zu of %zu gave %s", cut,
              body.len, cql_status_name(cql_result_status(r)));
        CHECK(cql_result_rows(r) == 0, "rows from a prefix");
        cql_result_free(r);
    }
    cql_buf_free(&body);
}

static void hostile_counts_are_refused(void) {
    cql_buf b = {0};
    cql_put_i32(&b, CQL_RESULT_ROWS);
    cql_put_i32(&b, 0x0001);
    cql_put_i32(&b, 1000);
    put_str(&b, "ks"); put_str(&b, "t");
    for (int i = 0; i < 1000; i++) {
        put_str(&b, "c");
        cql_put_u16(&b, CQL_TYPE_BIGINT);
    }
    /* rows: far more than the body holds; trusted, rows x columns cells
     * would be terabytes (an allocation failure, not a refusal) */
    cql_put_i32(&b, 0x7fffffff);
    cql_result *r = cql_response_parse(0, CQL_OP_RESULT, b.data, b.len);
    CHECK(r && cql_result_status(r) == CQL_ERR_PROTOCOL, "huge row count: %s", cql_status_name(cql_result_status(r)));
    cql_result_free(r);
    b.len = 0;
    cql_put_i32(&b, CQL_RESULT_ROWS);
    cql_put_i32(&b, 0x0001);
    cql_put_i32(&b, 0x7fffffff); /* columns */
    r = cql_response_parse(0, CQL_OP_RESULT, b.data, b.len);
    CHECK(r && cql_result_status(r) == CQL_ERR_PROTOCOL, "huge column count");
    cql_result_free(r);
    cql_buf_free(&b);
}

static void error_frames_map_to_statuses(void) {
    static const struct { int code; cql_status st; } map[] = {
        {0x1000, CQL_ERR_UNAVAILABLE}, {0x1001, CQL_ERR_OVERLOADED}, {0x1100, CQL_ERR_WRITE_TIMEOUT},
        {0x1200, CQL_ERR_READ_TIMEOUT}, {0x2000, CQL_ERR_SYNTAX}, {0x2200, CQL_ERR_INVALID},
        {0x2400, CQL_ERR_ALREADY_EXISTS}, {0x000A, CQL_ERR_PROTOCOL}, {0x0000, CQL_ERR_SERVER},
    };
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++) {
        cql_buf b = {0};
        cql_put_i32(&b, map[i].code);
        put_str(&b, "boom");
        cql_result *r = cql_response_parse(0, CQL_OP_ERROR, b.data, b.len);
        CHECK(r && cql_result_status(r) == map[i].st, "code 0x%04x gave %s", map[i].code, cql_status_name(cql_result_status(r)));
        CHECK(cql_result_error_code(r) == map[i].code && strcmp(cql_result_message(r), "boom") == 0, "code/message");
        cql_result_free(r);
        cql_buf_free(&b);
    }
    CHECK(cql_status_outcome_unknown(CQL_ERR_WRITE_TIMEOUT) && !cql_status_outcome_unknown(CQL_ERR_UNAVAILABLE),
          "outcome-unknown classification");
}

static void unprepared_carries_the_id(void) {
    cql_buf b = {0};
    cql_put_i32(&b, 0x2500);
    put_str(&b, "unknown id");
    cql_put_short_bytes(&b, (const uint8_t *)"\x01\x02\x03", 3);
    cql_result *r = cql_response_parse(0, CQL_OP_ERROR, b.data, b.len);
    const uint8_t *id;
    size_t n;
    CHECK(r && cql_result_status(r) == CQL_ERR_UNPREPARED, "status");
    CHECK(cql_result_unprepared_id(r, &id, &n) == 0 && n == 3 && memcmp(id, "\x01\x02\x03", 3) == 0, "id");
    cql_result_free(r);
    /* the same without its id is malformed */
    b.len -= 5;
    r = cql_response_parse(0, CQL_OP_ERROR, b.data, b.len);
    CHECK(r && cql_result_status(r) == CQL_ERR_PROTOCOL, "unprepared without id: %s", cql_status_name(cql_result_status(r)));
    cql_result_free(r);
    cql_buf_free(&b);
}

static void prepared_result_gives_id(void) {
    cql_buf b = {0};
    cql_put_i32(&b, CQL_RESULT_PREPARED);
    cql_put_short_bytes(&b, (const uint8_t *)"ABCD", 4);
    /* bound variables: global spec, 1 column, 1 pk index */
    cql_put_i32(&b, 0x0001); cql_put_i32(&b, 1); cql_put_i32(&b, 1); cql_put_u16(&b, 0);
    put_str(&b, "ks"); put_str(&b, "t");
    put_str(&b, "id"); cql_put_u16(&b, CQL_TYPE_BIGINT);
    /* result metadata: no metadata */
    cql_put_i32(&b, 0x0004); cql_put_i32(&b, 2);
    cql_result *r = cql_response_parse(0, CQL_OP_RESULT, b.data, b.len);
    const uint8_t *id;
    size_t n;
    CHECK(r && cql_result_status(r) == CQL_OK, "status %s: %s", cql_status_name(cql_result_status(r)), cql_result_message(r));
    CHECK(cql_result_prepared_id(r, &id, &n) == 0 && n == 4 && memcmp(id, "ABCD", 4) == 0, "id");
    cql_result_free(r);
    cql_buf_free(&b);
}

/* Cassandra puts warnings (flag 0x08) before the body, e.g. on a PREPARE
 * after USE; tracing ids (0x02) and custom payloads (0x04) likewise */
static void flagged_prefixes_are_skipped(void) {
    cql_buf b = {0};
    cql_put_u8(&b, 0xAA); /* 16-byte tracing id */
    for (int i = 1; i < 16; i++)
        cql_put_u8(&b, (uint8_t)i);
    cql_put_u16(&b, 2); put_str(&b, "careful"); put_str(&b, "really");
    cql_put_u16(&b, 1); put_str(&b, "key"); cql_put_bytes(&b, (const uint8_t *)"val", 3);
    cql_put_i32(&b, CQL_RESULT_PREPARED);
    cql_put_short_bytes(&b, (const uint8_t *)"ID", 2);
    cql_put_i32(&b, 0x0001); cql_put_i32(&b, 0); cql_put_i32(&b, 0); put_str(&b, "ks"); put_str(&b, "t");
    cql_put_i32(&b, 0x0004); cql_put_i32(&b, 0);
    cql_result *r = cql_response_parse(0x02 | 0x04 | 0x08, CQL_OP_RESULT, b.data, b.len);
    const uint8_t *id;
    size_t n;
    CHECK(r && cql_result_status(r) == CQL_OK, "status %s: %s", cql_status_name(cql_result_status(r)), cql_result_message(r));
    CHECK(cql_result_prepared_id(r, &id, &n) == 0 && n == 2 && memcmp(id, "ID", 2) == 0, "id");
    cql_result_free(r);
    /* the same body read without the flags is not a result */
    r = cql_response_parse(0, CQL_OP_RESULT, b.data, b.len);
    CHECK(r && cql_result_status(r) == CQL_ERR_PROTOCOL, "unflagged: %s", cql_status_name(cql_result_status(r)));
    cql_result_free(r);
    cql_buf_free(&b);
}

/* a LOGGED BATCH body: type 0, the count, each statement as kind 0, long
 * string and its values, then consistency and no flags; an empty or failed
 * batch is refused before it is sent */
static void batch_body_is_exact(void) {
    cql_batch *bt = cql_batch_new();
    CHECK(bt, "new");
    cql_buf out = {0};
    CHECK(cql_batch_body(bt, CQL_LOCAL_QUORUM, &out) == CQL_ERR_ARG, "an empty batch was encoded");
    cql_values v;
    cql_values_init(&v);
    cql_values_int(&v, 7);
    cql_batch_add(bt, "Q1", &v);
    cql_batch_add(bt, "Q2", NULL);
    cql_values_free(&v);
    CHECK(cql_batch_count(bt) == 2, "count %zu", cql_batch_count(bt));
    CHECK(cql_batch_body(bt, CQL_LOCAL_QUORUM, &out) == CQL_OK, "encode");
    static const uint8_t want[] = {
        0x00, 0x00, 0x02,                                   /* LOGGED, 2 statements */
        0x00, 0, 0, 0, 2, 'Q', '1', 0x00, 0x01, 0, 0, 0, 4, 0, 0, 0, 7,
        0x00, 0, 0, 0, 2, 'Q', '2', 0x00, 0x00,
        0x00, 0x06, 0x00,                                   /* LOCAL_QUORUM, no flags */
    };
    CHECK(out.len == sizeof want && memcmp(out.data, want, sizeof want) == 0, "body of %zu bytes differs", out.len);
    cql_buf_free(&out);
    cql_values bad;
    cql_values_init(&bad);
    bad.error = 1;
    cql_batch_add(bt, "Q3", &bad);
    cql_buf again = {0};
    CHECK(cql_batch_body(bt, CQL_ONE, &again) == CQL_ERR_ARG, "a batch with a failed statement was encoded");
    cql_buf_free(&again);
    cql_batch_free(bt);
}

int main(void) {
    RUN(startup_frame_is_exact);
    RUN(query_params_encode_values_and_paging);
    RUN(too_many_values_is_an_error);
    RUN(header_split_at_every_byte);
    RUN(rows_decode);
    RUN(every_truncation_is_refused);
    RUN(hostile_counts_are_refused);
    RUN(error_frames_map_to_statuses);
    RUN(unprepared_carries_the_id);
    RUN(prepared_result_gives_id);
    RUN(flagged_prefixes_are_skipped);
    RUN(batch_body_is_exact);
    CHECK_EXIT();
}
