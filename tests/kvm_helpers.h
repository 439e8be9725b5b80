/* SPDX-License-Identifier: MIT */
/*
 * Helpers for tests that run real guests. Helpers come in two forms, as in
 * liburing's tests: __x() returns the error, x() fails the test on error.
 */
#ifndef RINGFT_TESTS_KVM_HELPERS_H
#define RINGFT_TESTS_KVM_HELPERS_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include "guest/guest_abi.h"
#include "vmm/vm.h"

#define T_EXIT_PASS 0
#define T_EXIT_FAIL 1
#define T_EXIT_SKIP 77

#define CHECK(cond, ...)                                                                           \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			fprintf(stderr, "%s:%d: check failed: %s: ", __FILE__, __LINE__, #cond);   \
			fprintf(stderr, __VA_ARGS__);                                              \
			fprintf(stderr, "\n");                                                     \
			exit(T_EXIT_FAIL);                                                         \
		}                                                                                  \
	} while (0)

#define CHECK_OK(expr)                                                                             \
	do {                                                                                       \
		int __r = (expr);                                                                  \
		CHECK(__r >= 0, "%s", strerror(-__r));                                             \
	} while (0)

/* Exits 77 (skip) without /dev/kvm, or 1 if FT_REQUIRE_KVM=1 demands it. */
void t_require_kvm(void);

/* Console output of a guest, collected from its serial port. */
struct t_console {
	pthread_mutex_t lock;
	char *buf;
	size_t len;
	size_t cap;
};

void t_console_init(struct t_console *c);
void t_console_free(struct t_console *c);
void t_console_sink(void *opaque, const uint8_t *buf, size_t len);
/* Copy of the complete lines so far (NUL-terminated, caller frees). */
char *t_console_snapshot(struct t_console *c);
/* Appends every byte so far, a partial last line included, to *text (realloc'd). */
void t_console_append_raw(struct t_console *c, char **text);

/*
 * VM with a serial console and a guest loaded (not started). With guest NULL
 * nothing is loaded: the VM is a target for saved memory and state.
 */
int __t_vm_new(const struct vm_config *cfg, const char *guest, const struct guest_params *gp,
	       struct t_console *console, struct vm **ret_vm);
struct vm *t_vm_new(const struct vm_config *cfg, const char *guest, const struct guest_params *gp,
		    struct t_console *console);

/* bank lines: per vCPU, the last iter seen and counts. */
struct t_bank {
	unsigned int nr_vcpus;
	long long last_iter[GUEST_MAX_VCPUS];
	uint64_t lines[GUEST_MAX_VCPUS];
	uint64_t bad; /* FAIL lines, gaps, repeats, malformed bank lines */
	char first_bad[256];
};

/*
 * Parses every complete "bank vcpu=..." line of text, which must begin with the
 * guest's first output; checks that each vCPU's iter starts at 0 and goes up by
 * exactly one, and that every line says ok.
 */
void t_bank_parse(const char *text, unsigned int nr_vcpus, struct t_bank *ret);

/* Why the first stopped vCPU stopped ("vCPU N: reason"), or "no vCPU stopped". */
const char *t_stopped_reason(const struct vm *vm);

uint64_t t_now_ns(void);
void t_sleep_ms(unsigned int ms);

#endif
