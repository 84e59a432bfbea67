/* pb_read.h -- reading protobuf varints by hand, for the frames the
 * gateway reads without decoding them (request_limits.c, send_read.c). */
#ifndef PARLEY_GATEWAY_PB_READ_H
#define PARLEY_GATEWAY_PB_READ_H

#include <stddef.h>
#include <stdint.h>

/* 0 and *out, *pos past the varint; -1 when it runs past len or past 64 bits */
static inline int pb_read_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*pos >= len) return -1;
        uint8_t b = p[(*pos)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return 0;
        }
    }
    return -1;
}

/* A varint as encoders write it: the fewest bytes (no trailing 0x80 ...
 * 0x00 padding), and fitting 64 bits (a 10th byte carries only the top
 * bit). The decoder refuses some longer forms (a length or a key in more
 * than 5 bytes) and reads others, so the in-place readers take none of
 * them: what they accept must be what the decoder accepts, as the same
 * value (tests/fuzz/fuzz_frame checks it). */
static inline int pb_read_canonical_varint(const uint8_t *p, size_t len, size_t *pos, uint64_t *out) {
    size_t start = *pos;
    if (pb_read_varint(p, len, pos, out)) return -1;
    size_t n = *pos - start;
    uint8_t last = p[*pos - 1];
    if (n > 1 && last == 0) return -1;
    return n < 10 || last <= 1 ? 0 : -1;
}

#endif
