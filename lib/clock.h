/* SPDX-License-Identifier: MIT */
/* The one clock every figure is measured with, and the units it is counted in. */
#ifndef RINGFT_LIB_CLOCK_H
#define RINGFT_LIB_CLOCK_H

#include <stdint.h>
#include <time.h>

/*
 * Times are uint64_t nanoseconds everywhere; these convert to and from the
 * units people read and type (a double division by them gives seconds, ms, us).
 */
#define NS_PER_US 1000ULL
#define NS_PER_MS 1000000ULL
#define NS_PER_S  1000000000ULL

/* CLOCK_MONOTONIC in nanoseconds: every latency figure is measured with it. */
static inline uint64_t clock_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * NS_PER_S + (uint64_t)ts.tv_nsec;
}

#endif
