/* SPDX-License-Identifier: MIT */
/* Latency samples and their percentiles (pause times, harvest costs, ...). */
#ifndef RINGFT_LIB_STATS_H
#define RINGFT_LIB_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

struct samples {
	uint64_t *v;
	size_t n;
	size_t cap;
};

int samples_add(struct samples *s, uint64_t value);
void samples_reset(struct samples *s);
void samples_free(struct samples *s);
/* Nearest-rank percentile (0 < p <= 100) of the samples; sorts them. 0 when empty. */
uint64_t samples_percentile(struct samples *s, double p);
uint64_t samples_max(const struct samples *s);
uint64_t samples_sum(const struct samples *s);

/*
 * A fixed-size log-linear histogram for a whole run, however long: 32
 * sub-buckets per power of two, so a percentile is within about 3% (exact below
 * 64). 16 KiB, no allocation.
 */
#define HIST_SUB	  32
#define HIST_BUCKETS	  (64 * HIST_SUB)
#define HIST_BUCKETS_USED (60 * HIST_SUB) /* the last one holds UINT64_MAX */

struct histogram {
	uint64_t n;
	uint64_t max;
	uint64_t sum;
	uint64_t count[HIST_BUCKETS];
};

void histogram_add(struct histogram *h, uint64_t value);
/* Upper bound of the bucket holding the nearest-rank percentile (at most max). */
uint64_t histogram_percentile(const struct histogram *h, double p);
/* Values up to `value`, to the bucket (within about 3%): cumulative buckets. */
uint64_t histogram_count_le(const struct histogram *h, uint64_t value);
/* Bucket b's values are lower..upper (b < HIST_BUCKETS_USED; the last one's upper is UINT64_MAX).
 */
uint64_t histogram_bucket_lower(unsigned int b);
uint64_t histogram_bucket_upper(unsigned int b);

/*
 * The bucket, _sum and _count lines of a Prometheus histogram NAME (in
 * seconds) for a histogram of microseconds, at the bounds Prometheus clients
 * use for request latency (100 us .. 2.5 s, then +Inf); `labels` ("" or
 * `k="v"`) go into every line. The HELP and TYPE lines are the caller's, once
 * for all the series of NAME.
 */
void histogram_prometheus(FILE *f, const char *name, const char *labels,
			  const struct histogram *us);

#endif
