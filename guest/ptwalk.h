/* SPDX-License-Identifier: MIT */
/*
 * The walk that the built-in guests' page-fault handler makes of their own page
 * tables (4-level, 4 KiB / 2 MiB / 1 GiB pages) to tell a spurious fault from a
 * real one: does the translation of `addr` exist now, with the rights that the
 * faulting access needed? Freestanding (the guests) and host-testable (the
 * caller says how a table entry is read).
 */
#ifndef RINGFT_GUEST_PTWALK_H
#define RINGFT_GUEST_PTWALK_H

#include <stdint.h>

#include "guest/guest_abi.h"

#define PTWALK_P    (1ULL << 0)
#define PTWALK_RW   (1ULL << 1)
#define PTWALK_US   (1ULL << 2)
#define PTWALK_PS   (1ULL << 7)
#define PTWALK_ADDR 0x000ffffffffff000ULL
/* Page-fault error code bits. */
#define PF_ERR_PRESENT	(1ULL << 0)
#define PF_ERR_WRITE	(1ULL << 1)
#define PF_ERR_USER	(1ULL << 2)
#define PF_ERR_RESERVED (1ULL << 3)

/* Reads the 8-byte table entry at guest physical address gpa. */
typedef uint64_t (*ptwalk_read_fn)(void *ctx, uint64_t gpa);

/*
 * GUEST_WALK_* for an access with page-fault error code `error` to `addr`, under
 * CR3 `cr3` with CR0.WP set; tables at or beyond `ram_end` are not read.
 */
static inline unsigned int guest_ptwalk(uint64_t cr3, uint64_t addr, uint64_t error,
					uint64_t ram_end, ptwalk_read_fn read, void *ctx)
{
	uint64_t table = cr3 & PTWALK_ADDR;

	for (int level = 4; level >= 1; level--) {
		unsigned int shift = 12 + 9 * (unsigned int)(level - 1);
		uint64_t entry;

		if (table >= ram_end || ram_end - table < 4096)
			return GUEST_WALK_BAD_TABLE;
		entry = read(ctx, table + ((addr >> shift) & 511) * 8);
		if (!(entry & PTWALK_P))
			return GUEST_WALK_ABSENT;
		if (((error & PF_ERR_WRITE) && !(entry & PTWALK_RW)) ||
		    ((error & PF_ERR_USER) && !(entry & PTWALK_US)))
			return GUEST_WALK_DENIED;
		/* A large page (PDPTE: 1 GiB, PDE: 2 MiB) ends the walk. */
		if (level == 1 || ((level == 2 || level == 3) && (entry & PTWALK_PS)))
			return GUEST_WALK_MAPPED;
		table = entry & PTWALK_ADDR;
	}
	return GUEST_WALK_MAPPED; /* not reached */
}

#endif
