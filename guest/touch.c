/* SPDX-License-Identifier: MIT */
/*
 * builtin:touch: an exactly known dirty set, for tests and benchmarks. vCPU i
 * owns touch_span pages at touch_base_gpa + i * touch_span * 4096; in every round
 * it writes the 64-bit value round + 1 (round counts from 0) at offset 0 of pages
 * (k * touch_stride) mod touch_span, k < touch_count: the same pages every round,
 * new contents every round.
 *
 * Protocol with the VMM (port GUEST_PORT_SIGNAL, 32-bit values):
 *   READY         set-up done; round 0 starts at once, without waiting for `go`
 *   DONE          one round done; the guest then spins until params->go differs
 *                 from the value it read at the start of that round
 * After touch_rounds rounds (0: forever) the guest spins for good.
 *
 * From READY on, the touched pages are the only guest memory it writes: the
 * round loop keeps everything in registers and never touches the stack. The
 * loader pre-sets the accessed and dirty bits of the page tables, so no
 * page-table page gets dirty either.
 */
#include "guest/lib.h"

/*
 * The round loop, in one asm statement so that nothing but the touched pages is
 * written from READY on: every value lives in a register, no stack, no calls.
 */
__attribute__((noreturn)) static void touch_loop(uint64_t base, uint64_t count, uint64_t mask,
						 uint64_t stride, uint64_t rounds,
						 const volatile uint64_t *go)
{
	register uint64_t r_base asm("rdi") = base;
	register uint64_t r_count asm("rsi") = count;
	register uint64_t r_mask asm("r10") = mask;
	register uint64_t r_stride asm("r11") = stride;
	register uint64_t r_rounds asm("r8") = rounds;
	register const volatile uint64_t *r_go asm("r9") = go;

	asm volatile(
		/* r12 round, r13 go seen at round start, r14 value, rcx k, r15 page */
		"	xorl	%%r12d, %%r12d\n"
		"	movl	%[port], %%edx\n"
		"	movl	%[ready], %%eax\n"
		"	outl	%%eax, %%dx\n"
		"1:	movq	(%[go]), %%r13\n"
		"	leaq	1(%%r12), %%r14\n"
		"	xorl	%%ecx, %%ecx\n"
		"	xorl	%%r15d, %%r15d\n"
		"	testq	%[count], %[count]\n"
		"	jz	3f\n"
		"2:	movq	%%r15, %%rax\n"
		"	shlq	$12, %%rax\n"
		"	movq	%%r14, (%[base], %%rax)\n"
		"	addq	%[stride], %%r15\n"
		"	andq	%[mask], %%r15\n"
		"	incq	%%rcx\n"
		"	cmpq	%[count], %%rcx\n"
		"	jb	2b\n"
		"3:	movl	%[done], %%eax\n"
		"	outl	%%eax, %%dx\n"
		"	incq	%%r12\n"
		"	testq	%[rounds], %[rounds]\n"
		"	jz	4f\n"
		"	cmpq	%[rounds], %%r12\n"
		"	jae	5f\n"
		"4:	pause\n"
		"	cmpq	(%[go]), %%r13\n"
		"	je	4b\n"
		"	jmp	1b\n"
		"5:	pause\n"
		"	jmp	5b\n"
		:
		: [base] "r"(r_base), [count] "r"(r_count), [mask] "r"(r_mask),
		  [stride] "r"(r_stride), [rounds] "r"(r_rounds), [go] "r"(r_go),
		  [port] "i"(GUEST_PORT_SIGNAL), [ready] "i"(GUEST_SIGNAL_READY),
		  [done] "i"(GUEST_SIGNAL_DONE)
		: "rax", "rcx", "rdx", "r12", "r13", "r14", "r15", "memory", "cc");
	__builtin_unreachable();
}

void guest_main(unsigned int vcpu, const struct guest_params *params)
{
	uint64_t span = params->touch_span;

	guest_check_params(vcpu, params);
	if (!span || (span & (span - 1)) || !(params->touch_stride & 1) ||
	    params->touch_count > span || (params->touch_base_gpa & (GUEST_PAGE_SIZE - 1)))
		guest_panic();

	touch_loop(guest_touch_base(params, vcpu), params->touch_count, span - 1,
		   params->touch_stride & (span - 1), params->touch_rounds, &params->go);
}
