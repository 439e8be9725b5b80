/* SPDX-License-Identifier: MIT */
/*
 * lwIP's platform for builtin:kv (NO_SYS): sys_now() from the TSC, a PRNG for
 * LWIP_RAND (TCP initial sequence numbers, ports), assertions on the console.
 * The console helpers of guest/lib.h build one line at a time.
 */
#include "lwip/sys.h"

#include "guest/kv/kv.h"

const struct guest_params *kv_params;

/* Clock state (.bss): milliseconds so far and the TSC they were counted up to. */
static uint64_t clock_ms, clock_tsc, clock_rem;
static uint64_t rand_state;
static struct line kv_line;

uint64_t kv_now_ms(void)
{
	uint64_t now = rdtsc(), khz = kv_params->tsc_khz;

	if (!clock_tsc || now < clock_tsc) {
		/* first call, or the TSC went back (another host): restart from here */
		clock_tsc = now;
		return clock_ms;
	}
	clock_rem += now - clock_tsc;
	clock_tsc = now;
	clock_ms += clock_rem / khz;
	clock_rem %= khz;
	return clock_ms;
}

u32_t sys_now(void)
{
	return (u32_t)kv_now_ms();
}

unsigned long kv_rand(void)
{
	if (!rand_state)
		rand_state = prng_seed(kv_params->seed ^ rdtsc(), 0);
	return (unsigned long)(prng_next(&rand_state) >> 32);
}

void kv_line_start(const char *s)
{
	line_reset(&kv_line);
	line_str(&kv_line, s);
}

void kv_line_str(const char *s)
{
	line_str(&kv_line, s);
}

void kv_line_u64(uint64_t v)
{
	line_u64(&kv_line, v);
}

void kv_line_ip(uint32_t ip)
{
	for (int i = 3; i >= 0; i--) {
		line_u64(&kv_line, (ip >> (i * 8)) & 0xff);
		if (i)
			line_str(&kv_line, ".");
	}
}

void kv_line_end(void)
{
	line_emit(&kv_line);
}

void kv_panic(const char *msg)
{
	kv_line_start("kv: ");
	kv_line_str(msg);
	kv_line_end();
	guest_panic();
}

void kv_lwip_assert(const char *msg, const char *file, int line)
{
	const char *base = file;

	for (const char *p = file; *p; p++)
		if (*p == '/')
			base = p + 1;
	kv_line_start("kv: lwIP assertion failed: ");
	kv_line_str(msg);
	kv_line_str(" at ");
	kv_line_str(base);
	kv_line_str(":");
	kv_line_u64((uint64_t)line);
	kv_line_end();
	guest_panic();
}
