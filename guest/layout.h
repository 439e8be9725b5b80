/* SPDX-License-Identifier: MIT */
/*
 * Where the built-in guests keep their data inside the data area (guest_abi.h).
 * Shared by the guests, the loader (which checks that a workload fits) and tests
 * (which look at guest memory). guest/README.md describes the same layout.
 *
 *   GUEST_VCPU_AREA_GPA + i * 64 KiB   vCPU i: its workload state at the bottom,
 *                                      its stack growing down from the top
 *   GUEST_DATA_GPA                     one page of shared locks (console lock)
 *   GUEST_WORK_GPA                     bank and dirty: vCPU 0's region, then vCPU 1's...
 *   touch_base_gpa                     touch: vCPU i at base + i * span pages
 */
#ifndef RINGFT_GUEST_LAYOUT_H
#define RINGFT_GUEST_LAYOUT_H

#include <stdint.h>

#include "guest/guest_abi.h"

#define GUEST_PAGE_SIZE	       4096ULL
#define GUEST_LOCKS_GPA	       GUEST_DATA_GPA
#define GUEST_CONSOLE_LOCK_GPA GUEST_LOCKS_GPA /* uint32_t, 0: free, 1: held */
#define GUEST_WORK_GPA	       (GUEST_DATA_GPA + GUEST_PAGE_SIZE)

/* A bank page holds at most this many accounts (uint64_t each). */
#define GUEST_BANK_ACCOUNTS_PER_PAGE (GUEST_PAGE_SIZE / 8)

static inline uint64_t guest_vcpu_area(unsigned int vcpu)
{
	return GUEST_VCPU_AREA_GPA + (uint64_t)vcpu * GUEST_VCPU_AREA_SIZE;
}

/* builtin:bank: vCPU i's bank_pages pages; account a is at page a % P, word a / P. */
static inline uint64_t guest_bank_base(const struct guest_params *p, unsigned int vcpu)
{
	return GUEST_WORK_GPA + (uint64_t)vcpu * p->bank_pages * GUEST_PAGE_SIZE;
}

static inline uint64_t guest_bank_account_gpa(const struct guest_params *p, unsigned int vcpu,
					      uint64_t account)
{
	return guest_bank_base(p, vcpu) + (account % p->bank_pages) * GUEST_PAGE_SIZE +
	       (account / p->bank_pages) * 8;
}

/* builtin:dirty: vCPU i's working set, dirty_wss_bytes rounded down to pages. */
static inline uint64_t guest_dirty_pages(const struct guest_params *p)
{
	return p->dirty_wss_bytes / GUEST_PAGE_SIZE;
}

static inline uint64_t guest_dirty_base(const struct guest_params *p, unsigned int vcpu)
{
	return GUEST_WORK_GPA + (uint64_t)vcpu * guest_dirty_pages(p) * GUEST_PAGE_SIZE;
}

/* builtin:touch: vCPU i's span of touch_span pages. */
static inline uint64_t guest_touch_base(const struct guest_params *p, unsigned int vcpu)
{
	return p->touch_base_gpa + (uint64_t)vcpu * p->touch_span * GUEST_PAGE_SIZE;
}

#endif
