/* SPDX-License-Identifier: MIT */
/*
 * builtin:bank: money moves between accounts on different pages; the total never
 * changes. A checkpoint that captured one page of a transfer but not the other
 * (a lost dirty page, a torn apply) shows up as a wrong sum, on the replica after
 * a failover as much as on the primary.
 *
 * Each vCPU owns bank_accounts accounts spread over bank_pages pages of its own
 * (guest/layout.h). Every bank_check_ms it sums them and prints
 *   bank vcpu=<i> iter=<n> sum=<sum> moves=<moves> ok|FAIL
 */
#include "guest/lib.h"

struct bank_vcpu {
	uint64_t prng;
	uint64_t iter;	/* lines printed so far: the next line's iter */
	uint64_t moves; /* transfers done since start */
	struct deadline check;
	struct line line;
};

struct bank {
	uint64_t *base;	   /* this vCPU's first account page */
	uint64_t pages;	   /* P */
	uint64_t accounts; /* N */
	uint64_t per_page; /* N / P: every page holds this many, ... */
	uint64_t extra;	   /* ... and pages below N % P one more */
};

static inline uint64_t *account(const struct bank *b, uint64_t page, uint64_t slot)
{
	return b->base + page * (GUEST_PAGE_SIZE / 8) + slot;
}

static void bank_move(const struct bank *b, uint64_t *prng)
{
	uint64_t pa = prng_below(prng, b->pages);
	uint64_t pb = (pa + 1 + prng_below(prng, b->pages - 1)) % b->pages;
	uint64_t *from = account(b, pa, prng_below(prng, b->per_page + (pa < b->extra)));
	uint64_t *to = account(b, pb, prng_below(prng, b->per_page + (pb < b->extra)));
	uint64_t amount = prng_next(prng);

	/* Unsigned, so balances wrap: the invariant is the sum mod 2^64. */
	*from -= amount;
	*to += amount;
}

static uint64_t bank_sum(const struct bank *b)
{
	uint64_t sum = 0;

	for (uint64_t p = 0; p < b->pages; p++)
		for (uint64_t s = 0; s < b->per_page + (p < b->extra); s++)
			sum += *account(b, p, s);
	return sum;
}

void guest_main(unsigned int vcpu, const struct guest_params *params)
{
	struct bank_vcpu *st = (struct bank_vcpu *)guest_vcpu_area(vcpu);
	struct bank b;
	uint64_t expected;

	guest_check_params(vcpu, params);
	if (params->bank_pages < 2 || params->bank_accounts < params->bank_pages ||
	    params->bank_accounts > params->bank_pages * GUEST_BANK_ACCOUNTS_PER_PAGE ||
	    !params->tsc_khz || !params->bank_check_ms)
		guest_panic();

	b.base = (uint64_t *)guest_bank_base(params, vcpu);
	b.pages = params->bank_pages;
	b.accounts = params->bank_accounts;
	b.per_page = b.accounts / b.pages;
	b.extra = b.accounts % b.pages;
	expected = b.accounts * params->bank_initial;

	for (uint64_t p = 0; p < b.pages; p++)
		for (uint64_t s = 0; s < b.per_page + (p < b.extra); s++)
			*account(&b, p, s) = params->bank_initial;

	st->prng = prng_seed(params->seed, vcpu);
	st->iter = 0;
	st->moves = 0;
	line_reset(&st->line);
	deadline_start(&st->check, rdtsc(), params->bank_check_ms * params->tsc_khz);

	for (;;) {
		/* A batch between clock reads: rdtsc may exit to the hypervisor. */
		for (int i = 0; i < 64; i++)
			bank_move(&b, &st->prng);
		st->moves += 64;
		if (!deadline_passed(&st->check, rdtsc()))
			continue;

		uint64_t sum = bank_sum(&b);

		line_str(&st->line, "bank vcpu=");
		line_u64(&st->line, vcpu);
		line_str(&st->line, " iter=");
		line_u64(&st->line, st->iter);
		line_str(&st->line, " sum=");
		line_u64(&st->line, sum);
		line_str(&st->line, " moves=");
		line_u64(&st->line, st->moves);
		line_str(&st->line, sum == expected ? " ok" : " FAIL");
		line_emit(&st->line);
		st->iter++;
	}
}
