// SPDX-License-Identifier: MIT
/*
 * guest/ptwalk.h: the walk with which the built-in guests' page-fault handler
 * tells a spurious fault (retried) from one its page tables explain (the vCPU
 * stops). Page tables built here in a buffer standing for guest memory.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "guest/ptwalk.h"

#define MEM_SIZE (1u << 20) /* tables at 0x1000.. in the first MiB */
#define PML4	 0x1000ULL
#define PDPT	 0x2000ULL
#define PD	 0x3000ULL
#define PT	 0x4000ULL
#define TABLE	 (PTWALK_P | PTWALK_RW | PTWALK_US)

static uint64_t mem[MEM_SIZE / 8];
static unsigned int reads;

static uint64_t read_mem(void *ctx, uint64_t gpa)
{
	(void)ctx;
	reads++;
	assert_true(gpa < MEM_SIZE && !(gpa & 7));
	return mem[gpa / 8];
}

static void set(uint64_t table, unsigned int index, uint64_t entry)
{
	mem[(table + index * 8) / 8] = entry;
}

static unsigned int walk(uint64_t addr, uint64_t error)
{
	return guest_ptwalk(PML4 | 0x18 /* PWT, PCD: not address bits */, addr, error, MEM_SIZE,
			    read_mem, NULL);
}

/* The guests' own layout: 2 MiB user pages below 1 GiB, a 4 KiB table for one of them. */
static int setup(void **state)
{
	(void)state;
	memset(mem, 0, sizeof(mem));
	set(PML4, 0, PDPT | TABLE);
	set(PDPT, 0, PD | TABLE);
	set(PD, 0, 0x000000 | TABLE | PTWALK_PS);
	set(PD, 1, 0x200000 | TABLE | PTWALK_PS);
	set(PD, 2, PT | TABLE);					 /* 0x400000: 4 KiB pages */
	set(PT, 0, 0x400000 | TABLE);				 /* user, writable */
	set(PT, 1, 0x401000 | PTWALK_P | PTWALK_US);		 /* user, read-only */
	set(PT, 2, 0x402000 | PTWALK_P | PTWALK_RW);		 /* supervisor only */
	set(PD, 3, 0x600000 | PTWALK_P | PTWALK_US | PTWALK_PS); /* 2 MiB read-only */
	set(PDPT, 1, 0x40000000 | TABLE | PTWALK_PS);		 /* a 1 GiB page */
	set(PDPT, 2, 0x7ff00000 | TABLE);			 /* a table beyond RAM */
	reads = 0;
	return 0;
}

static void test_mapped(void **state)
{
	(void)state;
	/* The fault from CI: a user read (error 4) of a 2 MiB page the tables map. */
	assert_int_equal(walk(0x200052, PF_ERR_USER), GUEST_WALK_MAPPED);
	assert_int_equal(reads, 3);
	assert_int_equal(walk(0x1001e9, PF_ERR_USER | PF_ERR_WRITE), GUEST_WALK_MAPPED);
	assert_int_equal(walk(0x400123, PF_ERR_USER | PF_ERR_WRITE), GUEST_WALK_MAPPED);
	assert_int_equal(walk(0x401000, PF_ERR_USER), GUEST_WALK_MAPPED);
	assert_int_equal(walk(0x402fff, PF_ERR_WRITE), GUEST_WALK_MAPPED); /* supervisor */
	assert_int_equal(walk(0x6fffff, PF_ERR_USER), GUEST_WALK_MAPPED);
	reads = 0;
	assert_int_equal(walk(0x7fffffff, PF_ERR_USER | PF_ERR_WRITE), GUEST_WALK_MAPPED);
	assert_int_equal(reads, 2); /* the 1 GiB page ends the walk at the PDPT */
}

static void test_absent(void **state)
{
	(void)state;
	assert_int_equal(walk(0x403000, PF_ERR_USER), GUEST_WALK_ABSENT);	 /* PTE */
	assert_int_equal(walk(0x800000, PF_ERR_USER), GUEST_WALK_ABSENT);	 /* PDE */
	assert_int_equal(walk(0xc0000000, PF_ERR_USER), GUEST_WALK_ABSENT);	 /* PDPTE */
	assert_int_equal(walk(0x8000000000ULL, PF_ERR_USER), GUEST_WALK_ABSENT); /* PML4E */
	/* Canonical high half: PML4 index 511. */
	assert_int_equal(walk(0xffffffff80000000ULL, 0), GUEST_WALK_ABSENT);
	/* Present bit cleared on the way, the rest of the entry intact. */
	set(PD, 1, 0x200000 | PTWALK_RW | PTWALK_US | PTWALK_PS);
	assert_int_equal(walk(0x200052, PF_ERR_USER), GUEST_WALK_ABSENT);
}

static void test_denied(void **state)
{
	(void)state;
	assert_int_equal(walk(0x401000, PF_ERR_USER | PF_ERR_WRITE), GUEST_WALK_DENIED);
	assert_int_equal(walk(0x401000, PF_ERR_WRITE), GUEST_WALK_DENIED); /* CR0.WP */
	assert_int_equal(walk(0x402000, PF_ERR_USER), GUEST_WALK_DENIED);
	assert_int_equal(walk(0x600000, PF_ERR_USER | PF_ERR_WRITE), GUEST_WALK_DENIED);
	/* A right missing in a table above the page counts as well. */
	set(PDPT, 0, PD | PTWALK_P | PTWALK_US);
	assert_int_equal(walk(0x200000, PF_ERR_USER | PF_ERR_WRITE), GUEST_WALK_DENIED);
	set(PML4, 0, PDPT | PTWALK_P | PTWALK_RW);
	assert_int_equal(walk(0x200000, PF_ERR_USER), GUEST_WALK_DENIED);
}

static void test_bad_table(void **state)
{
	(void)state;
	/* Never read beyond RAM, nor a table that straddles its end. */
	reads = 0;
	assert_int_equal(walk(0x80000000, PF_ERR_USER), GUEST_WALK_BAD_TABLE);
	assert_int_equal(reads, 2);
	assert_int_equal(guest_ptwalk(PML4, 0x200000, PF_ERR_USER, PML4 + 4095, read_mem, NULL),
			 GUEST_WALK_BAD_TABLE);
	assert_int_equal(guest_ptwalk(MEM_SIZE, 0x200000, PF_ERR_USER, MEM_SIZE, read_mem, NULL),
			 GUEST_WALK_BAD_TABLE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup(test_mapped, setup),
		cmocka_unit_test_setup(test_absent, setup),
		cmocka_unit_test_setup(test_denied, setup),
		cmocka_unit_test_setup(test_bad_table, setup),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
