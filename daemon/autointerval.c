// SPDX-License-Identifier: MIT
#include <stdbool.h>
#include <string.h>

#include "daemon/autointerval.h"

void auto_interval_init(struct auto_interval *ai, uint32_t overhead_pct, uint64_t max_hold_ns)
{
	memset(ai, 0, sizeof(*ai));
	ai->enabled = true;
	ai->overhead_pct = overhead_pct ? overhead_pct : AUTO_OVERHEAD_DEFAULT;
	ai->max_hold_ns = max_hold_ns;
	ai->bound = "starting";
}

static uint64_t clamp(uint64_t v, uint64_t lo, uint64_t hi)
{
	return v < lo ? lo : v > hi ? hi : v;
}

static bool near(uint64_t v, uint64_t target)
{
	return v * 100 >= target * 95 && v * 100 <= target * 105;
}

uint64_t auto_interval_next(struct auto_interval *ai, uint64_t cur_ns, uint64_t pause_p50_ns,
			    uint64_t ack_p99_ns)
{
	uint64_t target, next;

	if (!pause_p50_ns)
		return cur_ns;
	target = pause_p50_ns * 100 / ai->overhead_pct;
	ai->bound = "overhead";
	ai->overhead_exceeded = false;
	if (target < AUTO_INTERVAL_MIN_NS)
		ai->bound = "minimum";
	if (target > AUTO_INTERVAL_MAX_NS) {
		ai->bound = "maximum";
		ai->overhead_exceeded =
			pause_p50_ns * 100 / AUTO_INTERVAL_MAX_NS > ai->overhead_pct;
	}
	target = clamp(target, AUTO_INTERVAL_MIN_NS, AUTO_INTERVAL_MAX_NS);
	if (ai->max_hold_ns) {
		uint64_t hold = ai->max_hold_ns > ack_p99_ns ? ai->max_hold_ns - ack_p99_ns : 0;

		hold = clamp(hold, AUTO_INTERVAL_MIN_NS, AUTO_INTERVAL_MAX_NS);
		if (hold < target) {
			target = hold;
			ai->bound = "hold";
			ai->overhead_exceeded = pause_p50_ns * 100 / target > ai->overhead_pct;
		}
	}
	ai->target_ns = target;
	/*
	 * Within 5% of the target: stay (one noisy second is not a trend). Else
	 * half-way there, or all the way once that is within 5%.
	 */
	if (near(cur_ns, target))
		return cur_ns;
	next = cur_ns / 2 + target / 2;
	return near(next, target) ? target : next;
}
