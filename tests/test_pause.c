// SPDX-License-Identifier: MIT
/*
 * Pause/resume under load, thousands of times: every pause returns with every
 * vCPU parked, nothing deadlocks (an alarm fails the test), and the guest is
 * intact afterwards (bank lines go on, all ok, iter consecutive). Then the same
 * with checkpoints racing full dirty rings: vCPUs parked on a full ring must
 * acknowledge pauses too.
 */
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "primary/checkpoint.h"
#include "tests/kvm_helpers.h"
#include "vmm/loader.h"
#include "vmm/vcpu.h"

static void on_alarm(int sig)
{
	static const char msg[] = "test_pause: timed out (a pause or resume deadlocked)\n";

	(void)sig;
	if (write(STDERR_FILENO, msg, sizeof(msg) - 1) < 0) {
		/* exiting anyway */
	}
	_exit(T_EXIT_FAIL);
}

static uint64_t count_prefix(const char *text, const char *prefix)
{
	uint64_t n = 0;
	size_t len = strlen(prefix);

	for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
		n += !strncmp(p, prefix, len);
	return n;
}

static void bank_under_pauses(unsigned int vcpus, unsigned int cycles)
{
	struct vm_config cfg = { .mem_size = 128ULL << 20,
				 .nr_vcpus = vcpus,
				 .tracking = DIRTY_RING };
	struct t_console console;
	struct guest_params gp;
	struct vm_pause_stats ps;
	uint64_t lines_before = 0, lines_after = 0, seed = 12345, max_kick = 0;
	struct t_bank b;
	struct vm *vm;
	char *text;

	t_console_init(&console);
	loader_default_params(&gp);
	/*
	 * A line every millisecond: each costs tens of I/O exits here, so this also
	 * checks that no vCPU starves on the guest's console lock while 4 vCPUs share
	 * 2 host cores with constant pauses.
	 */
	gp.bank_check_ms = 1;
	vm = t_vm_new(&cfg, "builtin:bank", &gp, &console);
	CHECK_OK(vm_start(vm));
	t_sleep_ms(50);
	for (unsigned int i = 0; i < cycles; i++) {
		unsigned int flags = (i & 1) ? VM_PAUSE_SAVE_STATE : 0;

		CHECK_OK(vm_pause(vm, flags, &ps));
		if (ps.kick_ns > max_kick)
			max_kick = ps.kick_ns;
		/* Every vCPU must be parked: none may be left in KVM_RUN. */
		for (unsigned int v = 0; v < vcpus; v++)
			CHECK(vm->vcpus[v]->acked_seq == vm->pause_seq, "vCPU %u not parked", v);
		if (i == cycles / 2) {
			text = t_console_snapshot(&console);
			t_bank_parse(text, vcpus, &b);
			free(text);
			for (unsigned int v = 0; v < vcpus; v++)
				lines_before += b.lines[v];
		}
		vm_resume(vm);
		/* A varying run time between pauses: 0..255 us. */
		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		usleep((useconds_t)((seed >> 33) & 255));
	}
	t_sleep_ms(200);
	CHECK_OK(vm_pause(vm, VM_PAUSE_SAVE_STATE, NULL));
	text = t_console_snapshot(&console);
	t_bank_parse(text, vcpus, &b);
	free(text);
	CHECK(!b.bad, "%s", b.first_bad);
	for (unsigned int v = 0; v < vcpus; v++) {
		CHECK(b.lines[v] > 0, "vCPU %u printed nothing (io exits %llu, rip 0x%llx)", v,
		      (unsigned long long)vm->vcpus[v]->exits.io,
		      (unsigned long long)vm->vcpus[v]->saved->regs.rip);
		CHECK(vm->vcpus[v]->status == VCPU_RUNNING, "vCPU %u stopped: %s", v,
		      vm->vcpus[v]->fail_reason);
		lines_after += b.lines[v];
	}
	CHECK(lines_after > lines_before, "the guest made no progress after the pauses");
	printf("ok: bank, %u vCPU(s): %u pause/resume cycles, slowest pause %llu us, "
	       "%llu bank lines all ok\n",
	       vcpus, cycles, (unsigned long long)(max_kick / 1000),
	       (unsigned long long)lines_after);
	vm_free(vm);
	t_console_free(&console);
}

static void checkpoints_with_full_rings(unsigned int vcpus, unsigned int checkpoints)
{
	struct vm_config cfg = { .mem_size = 256ULL << 20,
				 .nr_vcpus = vcpus,
				 .tracking = DIRTY_RING,
				 .ring_entries = 256 };
	struct t_console console;
	struct guest_params gp;
	struct ckpt ckpt;
	struct ckpt_timing t;
	uint64_t ring_full = 0, early = 0, lines, deadline;
	unsigned int done = 0;
	struct vm *vm;
	char *text;

	t_console_init(&console);
	loader_default_params(&gp);
	gp.dirty_pages_per_ms = 2000;
	gp.dirty_wss_bytes = 32ULL << 20;
	gp.dirty_report_ms = 20;
	vm = t_vm_new(&cfg, "builtin:dirty", &gp, &console);
	CHECK_OK(ckpt_init(&ckpt, vm));
	CHECK_OK(vm_start(vm));
	/*
	 * The checkpoints asked for, and more until a ring has filled: how many
	 * pages a slow (emulated) CPU dirties in a millisecond is not ours to say.
	 * Those extra checkpoints wait up to 100 ms for the ring-full event: on
	 * one emulated CPU under ASan, 1 ms apart, the loop itself left the guest
	 * too little CPU to dirty 256 pages between two (16775 checkpoints in
	 * 30 s, no ring full).
	 */
	deadline = t_now_ns() + 30000000000ULL;
	for (unsigned int i = 0; i < checkpoints || (!ring_full && t_now_ns() < deadline); i++) {
		struct pollfd pfd = { .fd = vm->event_fd, .events = POLLIN };
		unsigned int ev;

		poll(&pfd, 1, i < checkpoints ? 1 : 100);
		ev = vm_take_events(vm);
		CHECK(!(ev & VM_EVENT_STOPPED), "%s", t_stopped_reason(vm));
		early += !!(ev & VM_EVENT_RING_FULL);
		CHECK_OK(ckpt_capture(&ckpt, &t));
		ring_full = 0;
		for (unsigned int v = 0; v < vcpus; v++)
			ring_full += vm->vcpus[v]->exits.ring_full;
		done = i + 1;
	}
	CHECK(ring_full > 0, "the ring never filled in %u checkpoints", done);
	text = t_console_snapshot(&console);
	lines = count_prefix(text, "dirty vcpu=");
	free(text);
	CHECK(lines >= vcpus, "builtin:dirty printed %llu lines", (unsigned long long)lines);
	printf("ok: dirty, %u vCPU(s), 256-entry rings: %u checkpoints, %llu ring-full exits, "
	       "%llu early, %llu guest lines\n",
	       vcpus, done, (unsigned long long)ring_full, (unsigned long long)early,
	       (unsigned long long)lines);
	ckpt_free(&ckpt);
	vm_free(vm);
	t_console_free(&console);
}

int main(void)
{
	t_require_kvm();
	signal(SIGALRM, on_alarm);
	alarm(240);
	bank_under_pauses(2, 3000);
	bank_under_pauses(1, 2000);
	bank_under_pauses(4, 1000);
	checkpoints_with_full_rings(2, 2000);
	return T_EXIT_PASS;
}
