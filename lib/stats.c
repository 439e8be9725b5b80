// SPDX-License-Identifier: MIT
#include <errno.h>
#include <math.h>
#include <stdlib.h>

#include "lib/stats.h"

int samples_add(struct samples *s, uint64_t value)
{
	if (s->n == s->cap) {
		size_t cap = s->cap ? s->cap * 2 : 1024;
		uint64_t *v = realloc(s->v, cap * sizeof(*v));

		if (!v)
			return -ENOMEM;
		s->v = v;
		s->cap = cap;
	}
	s->v[s->n++] = value;
	return 0;
}

void samples_reset(struct samples *s)
{
	s->n = 0;
}

void samples_free(struct samples *s)
{
	free(s->v);
	s->v = NULL;
	s->n = s->cap = 0;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

uint64_t samples_percentile(struct samples *s, double p)
{
	size_t rank;

	if (!s->n)
		return 0;
	qsort(s->v, s->n, sizeof(*s->v), cmp_u64);
	rank = (size_t)ceil(p / 100.0 * (double)s->n);
	if (rank < 1)
		rank = 1;
	if (rank > s->n)
		rank = s->n;
	return s->v[rank - 1];
}

uint64_t samples_max(const struct samples *s)
{
	uint64_t m = 0;

	for (size_t i = 0; i < s->n; i++)
		if (s->v[i] > m)
			m = s->v[i];
	return m;
}

uint64_t samples_sum(const struct samples *s)
{
	uint64_t t = 0;

	for (size_t i = 0; i < s->n; i++)
		t += s->v[i];
	return t;
}

static unsigned int hist_bucket(uint64_t v)
{
	unsigned int e;

	if (v < HIST_SUB)
		return (unsigned int)v;
	e = 63u - (unsigned int)__builtin_clzll(v); /* e >= 5 */
	return (e - 4) * HIST_SUB + (unsigned int)((v >> (e - 5)) & (HIST_SUB - 1));
}

uint64_t histogram_bucket_lower(unsigned int b)
{
	unsigned int e = b / HIST_SUB + 4;

	if (b < HIST_SUB)
		return b;
	return (uint64_t)(HIST_SUB + b % HIST_SUB) << (e - 5);
}

void histogram_add(struct histogram *h, uint64_t value)
{
	h->count[hist_bucket(value)]++;
	h->n++;
	h->sum += value;
	if (value > h->max)
		h->max = value;
}

uint64_t histogram_percentile(const struct histogram *h, double p)
{
	uint64_t rank, seen = 0;

	if (!h->n)
		return 0;
	rank = (uint64_t)ceil(p / 100.0 * (double)h->n);
	if (rank < 1)
		rank = 1;
	for (unsigned int b = 0; b < HIST_BUCKETS; b++) {
		seen += h->count[b];
		if (seen >= rank) {
			uint64_t upper = histogram_bucket_upper(b);

			return upper < h->max ? upper : h->max;
		}
	}
	return h->max;
}

uint64_t histogram_count_le(const struct histogram *h, uint64_t value)
{
	uint64_t n = 0;

	for (unsigned int b = 0; b <= hist_bucket(value); b++)
		n += h->count[b];
	return n;
}

uint64_t histogram_bucket_upper(unsigned int b)
{
	return b + 1 < HIST_BUCKETS_USED ? histogram_bucket_lower(b + 1) - 1 : UINT64_MAX;
}

void histogram_prometheus(FILE *f, const char *name, const char *labels, const struct histogram *us)
{
	static const uint64_t bounds_us[] = {
		100,   250,   500,    1000,   2500,   5000,    10000,
		25000, 50000, 100000, 250000, 500000, 1000000, 2500000
	};
	const char *sep = labels[0] ? "," : "";

	for (size_t i = 0; i < sizeof(bounds_us) / sizeof(bounds_us[0]); i++)
		fprintf(f, "%s_bucket{%s%sle=\"%g\"} %llu\n", name, labels, sep,
			(double)bounds_us[i] / 1e6,
			(unsigned long long)histogram_count_le(us, bounds_us[i]));
	fprintf(f, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", name, labels, sep,
		(unsigned long long)us->n);
	fprintf(f,
		labels[0] ? "%s_sum{%s} %.6f\n%s_count{%s} %llu\n"
			  : "%s_sum%s %.6f\n%s_count%s %llu\n",
		name, labels, (double)us->sum / 1e6, name, labels, (unsigned long long)us->n);
}
