/* SPDX-License-Identifier: MIT */
/* Latency samples and their percentiles (pause times, harvest costs, ...). */
#ifndef RINGFT_PRIMARY_STATS_H
#define RINGFT_PRIMARY_STATS_H

#include <stddef.h>
#include <stdint.h>

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

#endif
