#include "hist.h"

#include <string.h>

void hist_init(hist *h) {
    memset(h, 0, sizeof *h);
    h->min = UINT64_MAX;
}

/* bucket index: values below HIST_SUB are exact; above, the top set bit picks
 * the power of two and the next HIST_SUB_BITS bits the sub-bucket */
static unsigned bucket_of(uint64_t v) {
    if (v < HIST_SUB) return (unsigned)v;
    unsigned top = 63u - (unsigned)__builtin_clzll(v);
    if (top > HIST_TOP_BIT) return HIST_BUCKETS - 1;
    unsigned shift = top - HIST_SUB_BITS;
    unsigned sub = (unsigned)(v >> shift) & (HIST_SUB - 1);
    return (shift + 1) * HIST_SUB + sub;
}

/* the largest value that falls into bucket b */
static uint64_t bucket_top(unsigned b) {
    if (b < HIST_SUB) return b;
    unsigned shift = b / HIST_SUB - 1;
    uint64_t sub = b % HIST_SUB;
    return ((((uint64_t)HIST_SUB | sub) + 1) << shift) - 1;
}

void hist_record(hist *h, uint64_t v) {
    h->counts[bucket_of(v)]++;
    h->count++;
    if (v > h->max) h->max = v;
    if (v < h->min) h->min = v;
}

void hist_merge(hist *into, const hist *from) {
    for (unsigned i = 0; i < HIST_BUCKETS; i++) into->counts[i] += from->counts[i];
    into->count += from->count;
    if (from->max > into->max) into->max = from->max;
    if (from->min < into->min) into->min = from->min;
}

uint64_t hist_quantile(const hist *h, double q) {
    if (h->count == 0) return 0;
    if (q >= 1.0) return h->max;
    uint64_t want = (uint64_t)(q * (double)h->count + 0.5);
    if (want < 1) want = 1;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= want) {
            uint64_t top = bucket_top(i);
            return top > h->max ? h->max : top;
        }
    }
    return h->max;
}

void hist_write_distribution(const hist *h, FILE *out) {
    if (h->count == 0) return;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        if (!h->counts[i]) continue;
        seen += h->counts[i];
        uint64_t top = bucket_top(i);
        fprintf(out, "%.9f %llu\n", (double)seen / (double)h->count,
                (unsigned long long)(top > h->max ? h->max : top));
    }
}
