/* SPDX-License-Identifier: MIT */
#include "guest/lib.h"
#include "guest/ptwalk.h"

void guest_panic(void)
{
	outl(GUEST_PORT_SIGNAL, GUEST_SIGNAL_PANIC);
	for (;;)
		cpu_relax();
}

/* What guest/start.S's exception entry leaves on the vCPU's exception stack. */
struct exc_frame {
	uint64_t r11, r10, r9, r8, rdi, rsi, rdx, rcx, rax;
	uint64_t vector, error; /* pushed by the entry (error: by the CPU, or 0) */
	uint64_t rip, cs, rflags, rsp, ss;
};

/* A fault at the same place this soon after a retry of it came straight back. */
#define EXC_REPEAT_MS  1
#define EXC_REPEAT_MAX 100

static uint64_t read_entry(void *ctx, uint64_t gpa)
{
	(void)ctx;
	return *(volatile const uint64_t *)gpa;
}

/*
 * Every exception, at CPL 0 on this vCPU's exception page (guest_abi.h). A page
 * fault whose address the guest's own tables map with the rights the access
 * needed has nothing to fix: it is retried, as an OS retries a spurious fault,
 * and reported, because a correct CPU and hypervisor never raise one. Anything
 * else is reported and stops here. Returns only to retry.
 */
void guest_exception(struct exc_frame *f);
void guest_exception(struct exc_frame *f)
{
	struct guest_exception_report *r = (void *)((uint64_t)f & ~(GUEST_PAGE_SIZE - 1));
	const struct guest_params *p = (const struct guest_params *)GUEST_PARAMS_GPA;
	/* CPL 0: inside this handler, which must not look further. */
	int nested = !(f->cs & 3);

	r->vector = f->vector;
	r->error = f->error;
	r->rip = f->rip;
	r->rsp = f->rsp;
	r->cs = f->cs;
	r->cr2 = 0;
	r->walk = GUEST_WALK_BAD_TABLE;
	if (f->vector == 14 && !nested) {
		uint64_t cr2, cr3, now = rdtsc();

		asm volatile("mov %%cr2, %0" : "=r"(cr2));
		asm volatile("mov %%cr3, %0" : "=r"(cr3));
		r->cr2 = cr2;
		r->walk = guest_ptwalk(cr3, cr2, f->error, p->data_end, read_entry, 0);
		if (r->walk == GUEST_WALK_MAPPED && !(f->error & PF_ERR_RESERVED)) {
			if (r->last_rip == f->rip && r->last_cr2 == cr2 &&
			    now - r->last_tsc < EXC_REPEAT_MS * p->tsc_khz)
				r->repeats++;
			else
				r->repeats = 0;
			r->last_rip = f->rip;
			r->last_cr2 = cr2;
			r->last_tsc = now;
			if (r->repeats < EXC_REPEAT_MAX) {
				r->count++;
				outl(GUEST_PORT_SIGNAL, GUEST_SIGNAL_FAULT_RETRIED);
				return;
			}
		}
	}
	outl(GUEST_PORT_SIGNAL, GUEST_SIGNAL_EXCEPTION);
	for (;;)
		cpu_relax();
}

void guest_check_params(unsigned int vcpu, const struct guest_params *p)
{
	if (p->magic != GUEST_PARAMS_MAGIC || vcpu >= p->nr_vcpus || p->nr_vcpus > GUEST_MAX_VCPUS)
		guest_panic();
}

uint64_t prng_seed(uint64_t seed, unsigned int vcpu)
{
	/* splitmix64 finaliser: distinct, well mixed streams per (seed, vCPU). */
	uint64_t z = seed + (vcpu + 1) * 0x9e3779b97f4a7c15ULL;

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	z ^= z >> 31;
	return z ? z : 1;
}

void line_reset(struct line *l)
{
	l->len = 0;
}

void line_str(struct line *l, const char *s)
{
	while (*s && l->len < LINE_MAX_LEN - 1)
		l->buf[l->len++] = *s++;
}

void line_u64(struct line *l, uint64_t v)
{
	char tmp[20];
	int n = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n && l->len < LINE_MAX_LEN - 1)
		l->buf[l->len++] = tmp[--n];
}

/*
 * The lock keeps lines of different vCPUs apart even when KVM splits a `rep outsb`
 * into several exits (kvm_pvm exits once per byte). It is a ticket lock: a line
 * costs tens of exits, so with frequent lines a test-and-set lock lets some vCPUs
 * starve. It lives in guest memory, so a checkpoint taken while a vCPU holds it or
 * waits for it restores a consistent state (that vCPU's registers are in the same
 * checkpoint).
 */
static void console_lock(void)
{
	volatile uint32_t *next = (volatile uint32_t *)GUEST_CONSOLE_LOCK_GPA;
	volatile uint32_t *owner = next + 1;
	uint32_t ticket = __atomic_fetch_add(next, 1, __ATOMIC_RELAXED);

	while (__atomic_load_n(owner, __ATOMIC_ACQUIRE) != ticket)
		cpu_relax();
}

static void console_unlock(void)
{
	volatile uint32_t *owner = (volatile uint32_t *)GUEST_CONSOLE_LOCK_GPA + 1;

	__atomic_store_n(owner, *owner + 1, __ATOMIC_RELEASE);
}

void line_emit(struct line *l)
{
	l->buf[l->len++] = '\n'; /* line_str/line_u64 always leave room for it */
	console_lock();
	outsb(GUEST_PORT_COM1, l->buf, l->len);
	console_unlock();
	l->len = 0;
}

/* String instructions: fast on every CPU with ERMS, and short. */
void *memset(void *dst, int c, size_t n)
{
	void *d = dst;

	asm volatile("cld; rep stosb" : "+D"(d), "+c"(n) : "a"(c) : "memory");
	return dst;
}

void *memcpy(void *dst, const void *src, size_t n)
{
	void *d = dst;

	asm volatile("cld; rep movsb" : "+D"(d), "+S"(src), "+c"(n) : : "memory");
	return dst;
}

void *memmove(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	if (d <= s || d >= s + n)
		return memcpy(dst, src, n);
	/* Overlapping with dst above src: copy backwards. */
	d += n - 1;
	s += n - 1;
	asm volatile("std; rep movsb; cld" : "+D"(d), "+S"(s), "+c"(n) : : "memory");
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;

	for (size_t i = 0; i < n; i++)
		if (x[i] != y[i])
			return x[i] < y[i] ? -1 : 1;
	return 0;
}

size_t strlen(const char *s)
{
	size_t n = 0;

	while (s[n])
		n++;
	return n;
}

int strncmp(const char *a, const char *b, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char x = (unsigned char)a[i], y = (unsigned char)b[i];

		if (x != y)
			return x < y ? -1 : 1;
		if (!x)
			break;
	}
	return 0;
}

int strcmp(const char *a, const char *b)
{
	return strncmp(a, b, (size_t)-1);
}

long strtol(const char *s, char **end, int base)
{
	unsigned long v = 0;
	int neg = 0;

	while (*s == ' ' || (*s >= '\t' && *s <= '\r'))
		s++;
	if (*s == '-' || *s == '+')
		neg = *s++ == '-';
	if ((base == 0 || base == 16) && s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
		s += 2;
		base = 16;
	} else if (base == 0) {
		base = s[0] == '0' ? 8 : 10;
	}
	for (;; s++) {
		int d = *s >= '0' && *s <= '9'	 ? *s - '0'
			: *s >= 'a' && *s <= 'z' ? *s - 'a' + 10
			: *s >= 'A' && *s <= 'Z' ? *s - 'A' + 10
						 : 99;

		if (d >= base)
			break;
		v = v * (unsigned long)base + (unsigned long)d;
	}
	if (end)
		*end = (char *)s;
	return neg ? -(long)v : (long)v;
}
