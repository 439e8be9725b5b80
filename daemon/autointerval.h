/* SPDX-License-Identifier: MIT */
/*
 * `--interval auto`: the checkpoint interval chosen from a budget the operator
 * states, and adapted once a second as the guest's dirty rate changes.
 *
 * Two budgets pull in opposite directions:
 *  - overhead: the share of wall time the guest may spend paused. A pause
 *    costs about the same whatever the interval (kick, state) plus a part that
 *    grows with the pages dirtied in the interval, so the overhead falls as the
 *    interval grows: it sets a lower bound, pause p50 * 100 / PCT.
 *  - hold: how long guest output may wait before it leaves (the interval, then
 *    the checkpoint's way to the secondary's ACK): an upper bound, max_hold -
 *    ACK p99.
 * The interval is the overhead bound, capped by the hold bound (output latency
 * is what clients see; when both cannot be met the hold budget wins and the
 * status says the overhead budget is exceeded), within 1 ms .. 1 s. It moves
 * half-way towards the target each second, and not at all while within 5% of
 * it, so one noisy second does not swing it.
 */
#ifndef RINGFT_DAEMON_AUTOINTERVAL_H
#define RINGFT_DAEMON_AUTOINTERVAL_H

#include <stdbool.h>
#include <stdint.h>

#include "lib/clock.h"

#define AUTO_INTERVAL_MIN_NS  NS_PER_MS
#define AUTO_INTERVAL_MAX_NS  NS_PER_S
#define AUTO_OVERHEAD_DEFAULT 5 /* percent */

struct auto_interval {
	bool enabled;
	uint32_t overhead_pct; /* 1..50 */
	uint64_t max_hold_ns;  /* 0: no hold budget */
	uint64_t target_ns;    /* the last target computed */
	/* What bounds the interval now, for status lines: "overhead", "hold", ... */
	const char *bound;
	bool overhead_exceeded; /* the hold budget forces more overhead than allowed */
};

void auto_interval_init(struct auto_interval *ai, uint32_t overhead_pct, uint64_t max_hold_ns);

/*
 * The next interval, given the current one and the last second's pause p50
 * and pause-to-ACK p99 (0: no checkpoints were taken, nothing to learn from:
 * the interval stays). Pure.
 */
uint64_t auto_interval_next(struct auto_interval *ai, uint64_t cur_ns, uint64_t pause_p50_ns,
			    uint64_t ack_p99_ns);

#endif
