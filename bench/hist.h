/* hist.h -- a log-bucketed latency histogram in the style of HdrHistogram.
 *
 * Values are nanoseconds. Each power of two is split into 64 linear
 * sub-buckets, so a recorded value is known to within 1/64 (about 1.6 %)
 * whatever its magnitude, in fixed memory, with O(1) recording. Percentiles
 * come from the counts of every sample (never from averages of averages),
 * and histograms from several threads or processes merge by adding counts. */
#ifndef PARLEY_BENCH_HIST_H
#define PARLEY_BENCH_HIST_H

#include <stdint.h>
#include <stdio.h>

enum { HIST_SUB_BITS = 6, HIST_SUB = 1 << HIST_SUB_BITS, HIST_TOP_BIT = 42 };
enum { HIST_BUCKETS = (HIST_TOP_BIT - HIST_SUB_BITS + 2) * HIST_SUB };

typedef struct hist {
    uint64_t count;
    uint64_t max;
    uint64_t min;
    uint64_t counts[HIST_BUCKETS];
} hist;

void hist_init(hist *h);
void hist_record(hist *h, uint64_t value_ns);
void hist_merge(hist *into, const hist *from);
/* The smallest recorded value v such that at least q (0..1) of the samples
 * are <= v, reported as the top of its bucket (exact max for q == 1). */
uint64_t hist_quantile(const hist *h, double q);
/* "q value_ns" lines, for plotting the distribution on a log axis. */
void hist_write_distribution(const hist *h, FILE *out);

#endif
