/* SPDX-License-Identifier: MIT */
/*
 * builtin:dirty: a steady dirtying rate for benchmarks. Each vCPU writes one word
 * into dirty_pages_per_ms (K) distinct pages of its working set (W bytes of its
 * own, guest/layout.h) every millisecond, then spins until the next millisecond.
 * It also watches its own progress: the longest gap between two consecutive TSC
 * reads of its loop is a stall (a checkpoint pause, a failover), reported every
 * dirty_report_ms as
 *   dirty vcpu=<i> iter=<n> pages=<total> maxstall_us=<us> maxstall_all_us=<us>
 */
#include "guest/lib.h"

struct dirty_vcpu {
	uint64_t iter;	   /* lines printed so far: the next line's iter */
	uint64_t pages;	   /* page writes since start */
	uint64_t pos;	   /* position in the page order, 0..span-1 */
	uint64_t maxstall; /* ticks, since the last line */
	uint64_t maxstall_all;
	struct deadline ms;
	struct deadline report;
	struct line line;
};

struct order {
	uint64_t npages; /* pages in the working set */
	uint64_t span;	 /* npages rounded up to a power of two */
	unsigned int bits;
	int random;
	uint64_t mul1, mul2, add; /* random order: odd multipliers and an offset */
};

/*
 * Page number for position x of a cycle through [0, span). Sequential: x. Random:
 * a bijection of [0, span) (odd multiplications mod 2^bits and a xorshift are
 * each invertible), so positions x..x+span-1 name every value once; positions at
 * or above npages are skipped, so any npages consecutive accepted positions are
 * distinct pages.
 */
static inline uint64_t order_page(const struct order *o, uint64_t x)
{
	uint64_t mask = o->span - 1;

	if (!o->random)
		return x;
	x = (x * o->mul1 + o->add) & mask;
	x ^= x >> (o->bits / 2 + 1);
	return (x * o->mul2) & mask;
}

static void order_init(struct order *o, const struct guest_params *p, uint64_t *prng)
{
	o->npages = guest_dirty_pages(p);
	o->span = 1;
	o->bits = 0;
	while (o->span < o->npages) {
		o->span <<= 1;
		o->bits++;
	}
	o->random = p->dirty_order == GUEST_ORDER_RANDOM;
	o->mul1 = prng_next(prng) | 1;
	o->mul2 = prng_next(prng) | 1;
	o->add = prng_next(prng);
}

static void note_gap(struct dirty_vcpu *st, uint64_t *last, uint64_t now)
{
	/* A TSC that went backwards (another host) is no stall. */
	uint64_t gap = now > *last ? now - *last : 0;

	if (gap > st->maxstall)
		st->maxstall = gap;
	*last = now;
}

static void report(struct dirty_vcpu *st, unsigned int vcpu, uint64_t tsc_khz)
{
	if (st->maxstall > st->maxstall_all)
		st->maxstall_all = st->maxstall;
	line_str(&st->line, "dirty vcpu=");
	line_u64(&st->line, vcpu);
	line_str(&st->line, " iter=");
	line_u64(&st->line, st->iter);
	line_str(&st->line, " pages=");
	line_u64(&st->line, st->pages);
	line_str(&st->line, " maxstall_us=");
	line_u64(&st->line, ticks_to_us(st->maxstall, tsc_khz));
	line_str(&st->line, " maxstall_all_us=");
	line_u64(&st->line, ticks_to_us(st->maxstall_all, tsc_khz));
	line_emit(&st->line);
	st->iter++;
	st->maxstall = 0;
}

void guest_main(unsigned int vcpu, const struct guest_params *params)
{
	struct dirty_vcpu *st = (struct dirty_vcpu *)guest_vcpu_area(vcpu);
	uint8_t *base = (uint8_t *)guest_dirty_base(params, vcpu);
	uint64_t tsc_khz = params->tsc_khz;
	uint64_t k = params->dirty_pages_per_ms;
	uint64_t prng, last, now;
	struct order o;

	guest_check_params(vcpu, params);
	if (!tsc_khz || !params->dirty_report_ms || !guest_dirty_pages(params) ||
	    k > guest_dirty_pages(params) || params->dirty_order > GUEST_ORDER_RANDOM)
		guest_panic();

	prng = prng_seed(params->seed, vcpu);
	order_init(&o, params, &prng);
	st->iter = 0;
	st->pages = 0;
	st->pos = 0;
	st->maxstall = 0;
	st->maxstall_all = 0;
	line_reset(&st->line);
	now = last = rdtsc();
	deadline_start(&st->ms, now, tsc_khz);
	deadline_start(&st->report, now, params->dirty_report_ms * tsc_khz);

	for (;;) {
		for (uint64_t i = 0; i < k; i++) {
			uint64_t page;

			do {
				page = order_page(&o, st->pos);
				st->pos = (st->pos + 1) & (o.span - 1);
			} while (page >= o.npages);
			*(volatile uint64_t *)(base + page * GUEST_PAGE_SIZE) = ++st->pages;
			note_gap(st, &last, rdtsc());
		}
		do {
			now = rdtsc();
			note_gap(st, &last, now);
			cpu_relax();
		} while (!deadline_passed(&st->ms, now));

		if (deadline_passed(&st->report, now)) {
			report(st, vcpu, tsc_khz);
			/* Waiting for the console is not a stall of the workload. */
			last = rdtsc();
		}
	}
}
