// SPDX-License-Identifier: MIT
/*
 * State round trip: run builtin:bank, pause, save every vCPU, the VM-wide state
 * and the devices, copy RAM into a fresh VM, load the state there and run it, for
 * several hops in a row (VM 1 -> VM 2 -> ...), with both tracking backends.
 *
 * The console a reader sees is VM 1's bytes followed by VM 2's and so on: a line
 * cut by the pause continues byte for byte in the next VM. Across that whole
 * stream every bank line says ok and each vCPU's iter goes up by exactly one, so
 * nothing was lost or repeated, and every new VM adds lines of its own.
 */
#include <string.h>

#include "tests/kvm_helpers.h"
#include "vmm/loader.h"
#include "vmm/machine.h"
#include "vmm/vcpu.h"

#define HOPS 4

/* The stream so far: consoles of the finished VMs plus the running one's. */
static void parse_stream(const char *done, struct t_console *live, unsigned int vcpus,
			 struct t_bank *b)
{
	char *text = strdup(done);

	CHECK(text, "out of memory");
	t_console_append_raw(live, &text);
	t_bank_parse(text, vcpus, b);
	if (b->bad)
		fprintf(stderr, "console stream:\n%s\n", text);
	free(text);
	CHECK(!b->bad, "%s", b->first_bad);
}

static void wait_progress(const char *done, struct t_console *live, unsigned int vcpus,
			  const uint64_t *before, struct t_bank *b)
{
	uint64_t deadline = t_now_ns() + 20000000000ULL;

	for (;;) {
		bool enough = true;

		parse_stream(done, live, vcpus, b);
		for (unsigned int i = 0; i < vcpus; i++)
			enough &= b->lines[i] >= before[i] + 5;
		if (enough)
			return;
		CHECK(t_now_ns() < deadline, "the guest printed no new bank lines");
		t_sleep_ms(5);
	}
}

static void round_trip(enum dirty_mode mode, unsigned int vcpus)
{
	struct vm_config cfg = { .mem_size = 128ULL << 20, .nr_vcpus = vcpus, .tracking = mode };
	struct machine_state *ms = calloc(1, sizeof(*ms));
	struct t_console console[HOPS + 1];
	uint64_t before[GUEST_MAX_VCPUS] = { 0 };
	char *done = strdup("");
	struct guest_params gp;
	struct t_bank b;
	struct vm *vm;

	CHECK(ms && done, "out of memory");
	loader_default_params(&gp);
	gp.bank_check_ms = 2;
	t_console_init(&console[0]);
	vm = t_vm_new(&cfg, "builtin:bank", &gp, &console[0]);
	CHECK_OK(vm_start(vm));
	wait_progress(done, &console[0], vcpus, before, &b);

	for (unsigned int hop = 1; hop <= HOPS; hop++) {
		struct vm *fresh;

		CHECK_OK(vm_pause(vm, VM_PAUSE_SAVE_STATE, NULL));
		CHECK_OK(machine_save_vm(vm, ms));
		machine_collect_vcpus(vm, ms);
		/* Paused: this VM's console is final. */
		parse_stream(done, &console[hop - 1], vcpus, &b);
		t_console_append_raw(&console[hop - 1], &done);
		memcpy(before, b.lines, sizeof(before));

		/* A fresh VM built like the first, no guest loaded: memory and state move. */
		t_console_init(&console[hop]);
		fresh = t_vm_new(&cfg, NULL, NULL, &console[hop]);
		memcpy(fresh->mem, vm->mem, vm->mem_size);
		CHECK_OK(machine_load(fresh, ms));
		vm_free(vm);
		vm = fresh;
		CHECK_OK(vm_start(vm));
		wait_progress(done, &console[hop], vcpus, before, &b);
		printf("ok: %s, %u vCPU(s), hop %u: bank went on from iter", dirty_mode_name(mode),
		       vcpus, hop);
		for (unsigned int i = 0; i < vcpus; i++)
			printf(" %llu", (unsigned long long)before[i]);
		printf(", all ok, none lost or repeated\n");
	}
	vm_free(vm);
	for (unsigned int i = 0; i <= HOPS; i++)
		t_console_free(&console[i]);
	free(done);
	free(ms);
}

int main(void)
{
	t_require_kvm();
	round_trip(DIRTY_RING, 2);
	round_trip(DIRTY_BITMAP, 2);
	round_trip(DIRTY_RING, 1);
	round_trip(DIRTY_RING, 4);
	return T_EXIT_PASS;
}
