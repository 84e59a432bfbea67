/* delivered_record.c -- see delivered_record.h. */
#include "cluster/delivered_record.h"

#include "core/bigendian.h"

size_t delivered_record_encode(uint64_t user, const delivered_raise *raises, size_t n, uint8_t *out) {
    if (n == 0 || n > DELIVERED_RECORD_RAISES_MAX) return 0;
    uint8_t *p = out;
    *p++ = DELIVERED_RECORD_KIND;
    p = put_be(p, user, 8);
    p = put_be(p, n, 2);
    for (size_t i = 0; i < n; i++) {
        uint32_t m = raises[i].n_senders < DELIVERED_RECORD_SENDERS ? raises[i].n_senders : DELIVERED_RECORD_SENDERS;
        p = put_be(p, raises[i].conv, 8);
        p = put_be(p, raises[i].seq, 8);
        *p++ = (uint8_t)m;
        for (uint32_t j = 0; j < m; j++) p = put_be(p, raises[i].senders[j], 8);
    }
    return (size_t)(p - out);
}

bool delivered_record_is(const void *value, size_t len) {
    return len > 0 && ((const uint8_t *)value)[0] == DELIVERED_RECORD_KIND;
}

int delivered_record_parse(const void *value, size_t len, uint64_t *user, delivered_raise *raises, size_t *n) {
    const uint8_t *v = value;
    if (len < 1 + 8 + 2 || len > DELIVERED_RECORD_MAX || v[0] != DELIVERED_RECORD_KIND) return -1;
    *user = get_be(v + 1, 8);
    size_t count = (size_t)get_be(v + 9, 2);
    if (count == 0 || count > DELIVERED_RECORD_RAISES_MAX) return -1;
    size_t at = 1 + 8 + 2;
    for (size_t i = 0; i < count; i++) {
        if (len - at < 8 + 8 + 1) return -1;
        delivered_raise *r = &raises[i];
        r->conv = get_be(v + at, 8);
        r->seq = get_be(v + at + 8, 8);
        r->n_senders = v[at + 16];
        at += 17;
        if (r->n_senders > DELIVERED_RECORD_SENDERS || len - at < 8 * (size_t)r->n_senders) return -1;
        for (uint32_t j = 0; j < r->n_senders; j++, at += 8) r->senders[j] = get_be(v + at, 8);
    }
    if (at != len) return -1;   /* nothing may trail the last raise */
    *n = count;
    return 0;
}
