/* bigendian.h -- unsigned integers of 1 to 8 bytes, most significant byte
 * first: the byte order of parley's store keys and Kafka record bodies,
 * so that keys sort as their numbers do. */
#ifndef PARLEY_CORE_BIGENDIAN_H
#define PARLEY_CORE_BIGENDIAN_H

#include <stdint.h>

/* writes the low `bytes` bytes of v at p; returns p + bytes */
static inline uint8_t *put_be(uint8_t *p, uint64_t v, int bytes) {
    for (int i = bytes - 1; i >= 0; i--) *p++ = (uint8_t)(v >> (8 * i));
    return p;
}

static inline uint64_t get_be(const uint8_t *p, int bytes) {
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) v = v << 8 | p[i];
    return v;
}

#endif
