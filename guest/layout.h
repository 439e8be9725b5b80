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
 *   GUEST_KV_BSS_GPA                   kv: the image's .bss (lwIP, rings, clients)
 *   GUEST_KV_STORE_GPA                 kv: the store (hash buckets, then the arena)
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

/*
 * builtin:kv. Its image has a .bss (lwIP's global state, the virtqueues and their
 * buffers, the client buffers) linked at GUEST_KV_BSS_GPA (guest/kv/kv.ld) and
 * zeroed by the guest; the store follows at GUEST_KV_STORE_GPA: the hash bucket
 * array (guest_kv_buckets() pointers), then the arena of kv_max_bytes.
 */
#define GUEST_KV_BSS_GPA       0x800000ULL
#define GUEST_KV_BSS_MAX       0x2800000ULL /* 40 MiB, up to the store */
#define GUEST_KV_STORE_GPA     0x3000000ULL
#define GUEST_KV_MIN_BYTES     (64ULL << 10) /* ftd --kv-max-bytes: at least 64K */
#define GUEST_KV_DEFAULT_BYTES (64ULL << 20)

/* Buckets of the store's hash table: a power of two, one per 256 bytes, >= 1024. */
static inline uint64_t guest_kv_buckets(uint64_t max_bytes)
{
	uint64_t n = 1024;

	while (n * 256 < max_bytes)
		n <<= 1;
	return n;
}

/* End of the store for kv_max_bytes: buckets (8 bytes each), then the arena. */
static inline uint64_t guest_kv_store_end(const struct guest_params *p)
{
	return GUEST_KV_STORE_GPA + guest_kv_buckets(p->kv_max_bytes) * 8 + p->kv_max_bytes;
}

#endif
