// SPDX-License-Identifier: MIT
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "tests/kvm_helpers.h"
#include "vmm/loader.h"
#include "vmm/serial.h"
#include "vmm/vcpu.h"

void t_require_kvm(void)
{
	const char *req = getenv("FT_REQUIRE_KVM");
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	/* Progress lines and failure messages stay in order under ctest. */
	setvbuf(stdout, NULL, _IOLBF, 0);

	if (fd >= 0) {
		close(fd);
		return;
	}
	if (req && !strcmp(req, "1")) {
		fprintf(stderr, "FT_REQUIRE_KVM=1 but /dev/kvm cannot be opened: %s\n",
			strerror(errno));
		exit(T_EXIT_FAIL);
	}
	fprintf(stderr, "skipped: /dev/kvm cannot be opened: %s\n", strerror(errno));
	exit(T_EXIT_SKIP);
}

void t_console_init(struct t_console *c)
{
	memset(c, 0, sizeof(*c));
	pthread_mutex_init(&c->lock, NULL);
}

void t_console_free(struct t_console *c)
{
	free(c->buf);
	pthread_mutex_destroy(&c->lock);
}

void t_console_sink(void *opaque, const uint8_t *buf, size_t len)
{
	struct t_console *c = opaque;

	pthread_mutex_lock(&c->lock);
	if (c->len + len + 1 > c->cap) {
		size_t cap = (c->cap ? c->cap * 2 : 65536) + len;
		char *b = realloc(c->buf, cap);

		if (!b) {
			pthread_mutex_unlock(&c->lock);
			abort();
		}
		c->buf = b;
		c->cap = cap;
	}
	memcpy(c->buf + c->len, buf, len);
	c->len += len;
	c->buf[c->len] = 0;
	pthread_mutex_unlock(&c->lock);
}

char *t_console_snapshot(struct t_console *c)
{
	char *s, *nl;

	pthread_mutex_lock(&c->lock);
	s = strndup(c->buf ? c->buf : "", c->len);
	pthread_mutex_unlock(&c->lock);
	if (!s)
		abort();
	nl = strrchr(s, '\n');
	if (nl)
		nl[1] = 0;
	else
		s[0] = 0;
	return s;
}

void t_console_append_raw(struct t_console *c, char **text)
{
	size_t have = *text ? strlen(*text) : 0;
	char *t;

	pthread_mutex_lock(&c->lock);
	t = realloc(*text, have + c->len + 1);
	if (!t)
		abort();
	memcpy(t + have, c->buf ? c->buf : "", c->len);
	t[have + c->len] = 0;
	pthread_mutex_unlock(&c->lock);
	*text = t;
}

int __t_vm_new(const struct vm_config *cfg, const char *guest, const struct guest_params *gp,
	       struct t_console *console, struct vm **ret_vm)
{
	struct device *serial = NULL;
	struct vm *vm;
	int r;

	r = vm_create(cfg, &vm);
	if (r < 0)
		return r;
	r = serial_new(GUEST_PORT_COM1, t_console_sink, console, &serial);
	if (r < 0)
		goto fail;
	r = vm_add_device(vm, serial);
	if (r < 0) {
		serial->ops->free(serial);
		goto fail;
	}
	r = guest ? loader_load(vm, guest, gp) : 0;
	if (r < 0)
		goto fail;
	*ret_vm = vm;
	return 0;
fail:
	vm_free(vm);
	return r;
}

struct vm *t_vm_new(const struct vm_config *cfg, const char *guest, const struct guest_params *gp,
		    struct t_console *console)
{
	struct vm *vm = NULL;

	CHECK_OK(__t_vm_new(cfg, guest, gp, console, &vm));
	return vm;
}

static void bank_bad(struct t_bank *b, const char *line, size_t len, const char *why)
{
	if (!b->bad++)
		snprintf(b->first_bad, sizeof(b->first_bad), "%s: %.*s", why, (int)len, line);
}

void t_bank_parse(const char *text, unsigned int nr_vcpus, struct t_bank *b)
{
	const char *p = text;

	memset(b, 0, sizeof(*b));
	b->nr_vcpus = nr_vcpus;
	for (unsigned int i = 0; i < GUEST_MAX_VCPUS; i++)
		b->last_iter[i] = -1;
	while (*p) {
		const char *eol = strchr(p, '\n');
		size_t len = eol ? (size_t)(eol - p) : strlen(p);
		unsigned int vcpu;
		long long iter;
		unsigned long long sum;
		const char *verdict;
		char line[256];

		if (!eol)
			break; /* a line still being printed */
		if (len < sizeof(line) && !strncmp(p, "bank ", 5)) {
			memcpy(line, p, len);
			line[len] = 0;
			/* The verdict is the last word (guest/README.md). */
			verdict = strrchr(line, ' ');
			verdict = verdict ? verdict + 1 : "";
			if (sscanf(line, "bank vcpu=%u iter=%lld sum=%llu", &vcpu, &iter, &sum) !=
				    3 ||
			    vcpu >= nr_vcpus) {
				bank_bad(b, p, len, "malformed");
			} else {
				if (strcmp(verdict, "ok"))
					bank_bad(b, p, len, "not ok");
				/* Text starts at the guest's start: iter 0, then +1 each. */
				if (iter != b->last_iter[vcpu] + 1)
					bank_bad(b, p, len,
						 "iter does not follow the previous one");
				b->last_iter[vcpu] = iter;
				b->lines[vcpu]++;
			}
		}
		p += len + (eol ? 1 : 0);
	}
}

const char *t_stopped_reason(const struct vm *vm)
{
	static char buf[sizeof(((struct vcpu *)0)->fail_reason) + 32];

	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		const struct vcpu *v = vm->vcpus[i];

		if (v->status != VCPU_RUNNING) {
			snprintf(buf, sizeof(buf), "vCPU %u: %s", i, v->fail_reason);
			return buf;
		}
	}
	return "no vCPU stopped";
}

uint64_t t_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

void t_sleep_ms(unsigned int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}
