/* SPDX-License-Identifier: MIT */
/*
 * Freestanding helpers for the built-in guests: port I/O, TSC, a PRNG, console
 * lines and the console lock. Guests run at CPL 3 with IOPL 3 and IF 0 (exceptions
 * reach guest_exception() at CPL 0, guest/README.md): no hlt, no cli/sti, no SSE
 * (built with -mgeneral-regs-only). Guests keep no
 * state in the image (no .data/.bss): per-vCPU state lives in the vCPU's area or in
 * the data area, so that every bit of it travels with a checkpoint. builtin:kv is
 * the exception (lwIP has globals): its .bss is at a fixed GPA (guest/kv/kv.ld).
 */
#ifndef RINGFT_GUEST_LIB_H
#define RINGFT_GUEST_LIB_H

#include <stddef.h>
#include <stdint.h>

#include "guest/guest_abi.h"
#include "guest/layout.h"

#define LINE_MAX_LEN 128

static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;

	asm volatile("rdtsc" : "=a"(lo), "=d"(hi));
	return ((uint64_t)hi << 32) | lo;
}

static inline void cpu_relax(void)
{
	asm volatile("pause" ::: "memory");
}

static inline void outl(uint16_t port, uint32_t val)
{
	asm volatile("outl %0, %w1" : : "a"(val), "Nd"(port) : "memory");
}

/* The whole buffer in one string instruction: one exit if KVM batches it. */
static inline void outsb(uint16_t port, const void *buf, uint64_t len)
{
	asm volatile("cld; rep outsb" : "+S"(buf), "+c"(len) : "d"(port) : "memory");
}

/* Tells the VMM the guest failed (GUEST_SIGNAL_PANIC), then spins forever. */
__attribute__((noreturn)) void guest_panic(void);

/* Panics unless the parameter page is valid and `vcpu` is one of its vCPUs. */
void guest_check_params(unsigned int vcpu, const struct guest_params *p);

/* xorshift64*: small, good enough to pick accounts and pages. State never 0. */
uint64_t prng_seed(uint64_t seed, unsigned int vcpu);

static inline uint64_t prng_next(uint64_t *s)
{
	uint64_t x = *s;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	*s = x;
	return x * 0x2545f4914f6cdd1dULL;
}

/* Uniform in [0, n) for n <= 2^32 (multiply-shift, no division). */
static inline uint64_t prng_below(uint64_t *s, uint64_t n)
{
	return ((prng_next(s) >> 32) * n) >> 32;
}

/* TSC ticks to microseconds at tsc_khz ticks per millisecond. */
static inline uint64_t ticks_to_us(uint64_t ticks, uint64_t tsc_khz)
{
	return ticks / tsc_khz * 1000 + ticks % tsc_khz * 1000 / tsc_khz;
}

/*
 * A periodic deadline on the TSC. The next deadline is one period after the last
 * one; after a long stall (a checkpoint, a failover) the missed periods are
 * dropped instead of replayed, and a TSC that went backwards (another host)
 * restarts the period from now.
 */
struct deadline {
	uint64_t next;
	uint64_t period;
};

static inline void deadline_start(struct deadline *d, uint64_t now, uint64_t period)
{
	d->period = period;
	d->next = now + period;
}

/* Returns nonzero (and arms the next period) when the deadline has passed. */
static inline int deadline_passed(struct deadline *d, uint64_t now)
{
	if (now + d->period < d->next) {
		d->next = now + d->period; /* the TSC went backwards */
		return 0;
	}
	if (now < d->next)
		return 0;
	d->next += d->period;
	if (d->next <= now)
		d->next = now + d->period;
	return 1;
}

/* One console line, built in guest memory and written with one `rep outsb`. */
struct line {
	uint32_t len;
	char buf[LINE_MAX_LEN];
};

void line_reset(struct line *l);
void line_str(struct line *l, const char *s);
void line_u64(struct line *l, uint64_t v);
/* Appends '\n' and writes the line to COM1 under the console lock. */
void line_emit(struct line *l);

/* Compilers may emit calls to these even in freestanding code; lwIP (kv) uses them. */
void *memset(void *dst, int c, size_t n);
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);
int strncmp(const char *a, const char *b, size_t n);
int strcmp(const char *a, const char *b);
long strtol(const char *s, char **end, int base);

#endif
