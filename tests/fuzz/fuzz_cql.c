/* fuzz_cql.c -- libFuzzer target for the CQL v4 response-frame parser: the
 * input after its first byte is a stream of response frames as a server
 * would send them. It is split into frames the way the client does
 * (cql_frame_next over a buffer filled in reads of a size taken from byte 0),
 * each frame's body is parsed (cql_response_parse) and every accessor is run
 * over every cell. Checked: no crash or sanitizer report, the same frames
 * whatever the read size, results with a status in range, cells and ids
 * inside the result, no rows on an error. */
#include "store/cql/cql.h"
#include "store/cql/cql_wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define MAX_BODY (1u << 20) /* smaller than the client's, so limits are reached */

static uint64_t mix(uint64_t h, uint64_t v) { return (h ^ v) * 0x100000001b3ull; }

static uint64_t walk_result(const cql_result *r) {
    uint64_t h = 0xcbf29ce484222325ull;
    cql_status st = cql_result_status(r);
    if ((int)st < CQL_OK || (int)st > CQL_ERR_ARG)
        abort();
    h = mix(h, (uint64_t)st);
    size_t rows = cql_result_rows(r), cols = cql_result_columns(r);
    if (st != CQL_OK && rows != 0)
        abort();
    if (strlen(cql_result_message(r)) >= 256)
        abort();
    const uint8_t *p;
    size_t n;
    if (cql_result_paging_state(r, &p, &n) && n == 0)
        abort();
    if (cql_result_prepared_id(r, &p, &n) == 0 && n == 0)
        abort();
    (void)cql_result_applied(r);
    for (size_t row = 0; row < rows; row++) {
        for (size_t col = 0; col < cols; col++) {
            int64_t x;
            int32_t i32;
            int b;
            size_t len;
            if (cql_get_bigint(r, row, col, &x) == 0) h = mix(h, (uint64_t)x);
            if (cql_get_timestamp(r, row, col, &x) == 0) h = mix(h, (uint64_t)x);
            if (cql_get_int(r, row, col, &i32) == 0) h = mix(h, (uint32_t)i32);
            if (cql_get_bool(r, row, col, &b) == 0) h = mix(h, (uint64_t)b);
            if (cql_get_bytes(r, row, col, &p, &len) == 0) {
                for (size_t k = 0; k < len; k++)
                    h = mix(h, p[k]);
            }
            if (cql_get_list_len(r, row, col, &len) == 0) {
                for (size_t k = 0; k < len && k < 64; k++)
                    if (cql_get_list_bigint(r, row, col, k, &x) == 0)
                        h = mix(h, (uint64_t)x);
            }
        }
    }
    /* out of range is refused, never read */
    int64_t x;
    if (cql_get_bigint(r, rows, 0, &x) == 0 || cql_get_bigint(r, 0, cols, &x) == 0)
        abort();
    return h;
}

/* plays the stream in reads of `step` bytes; returns a digest of what came out */
static uint64_t play(const uint8_t *data, size_t size, size_t step, int *frames) {
    uint8_t *buf = malloc(size + 1);
    if (!buf)
        abort();
    size_t have = 0, fed = 0;
    uint64_t h = 0;
    *frames = 0;
    for (;;) {
        size_t take = size - fed < step ? size - fed : step;
        memcpy(buf + have, data + fed, take);
        have += take;
        fed += take;
        size_t pos = 0;
        int broken = 0;
        for (;;) {
            cql_header hd;
            const uint8_t *body;
            int got = cql_frame_next(buf + pos, have - pos, MAX_BODY, &hd, &body);
            if (got < 0) {
                broken = 1;
                break;
            }
            if (got == 0)
                break;
            if (hd.length > MAX_BODY || body != buf + pos + CQL_HEADER_LEN)
                abort();
            pos += CQL_HEADER_LEN + hd.length;
            cql_result *r = cql_response_parse(hd.flags, hd.opcode, body, hd.length);
            if (!r)
                abort(); /* only out of memory gives NULL */
            h = mix(h, walk_result(r));
            h = mix(h, (uint64_t)(uint16_t)hd.stream);
            cql_result_free(r);
            (*frames)++;
        }
        memmove(buf, buf + pos, have - pos);
        have -= pos;
        if (broken) {
            h = mix(h, 0xdead);
            break;
        }
        if (fed == size)
            break;
    }
    free(buf);
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1)
        return 0;
    size_t step = (size_t)data[0] + 1;
    data++;
    size--;
    int f1, f2;
    uint64_t whole = play(data, size, size ? size : 1, &f1);
    uint64_t split = play(data, size, step, &f2);
    if (whole != split || f1 != f2)
        abort();
    return 0;
}
