// SPDX-License-Identifier: MIT
/*
 * A guest that crashes is reported, not checkpointed: an undefined instruction
 * with no IDT is a triple fault (KVM_EXIT_SHUTDOWN). The vCPU must stop with
 * its registers recorded, the owner must be told (VM_EVENT_STOPPED), pauses must
 * still complete (a stopped vCPU still acknowledges), and a checkpoint capture
 * must refuse (-ESRCH) instead of saving the crashed state.
 */
#include <errno.h>
#include <poll.h>
#include <string.h>

#include "primary/checkpoint.h"
#include "tests/kvm_helpers.h"
#include "vmm/loader.h"
#include "vmm/vcpu.h"

static void crash(unsigned int vcpus)
{
	struct vm_config cfg = { .mem_size = 128ULL << 20,
				 .nr_vcpus = vcpus,
				 .tracking = DIRTY_RING };
	static const uint8_t ud2[] = { 0x0f, 0x0b };
	struct t_console console;
	struct guest_params gp;
	struct ckpt_timing t;
	struct ckpt ckpt;
	unsigned int events = 0, crashed = 0;
	uint64_t deadline;
	struct vm *vm;

	t_console_init(&console);
	loader_default_params(&gp);
	vm = t_vm_new(&cfg, "builtin:bank", &gp, &console);
	/* Every vCPU enters at the image's first byte: make it ud2. */
	CHECK_OK(vm_write_guest(vm, GUEST_IMAGE_GPA, ud2, sizeof(ud2)));
	CHECK_OK(ckpt_init(&ckpt, vm));
	CHECK_OK(vm_start(vm));

	deadline = t_now_ns() + 10000000000ULL;
	while (crashed < vcpus) {
		struct pollfd pfd = { .fd = vm->event_fd, .events = POLLIN };

		CHECK(t_now_ns() < deadline, "%u of %u vCPUs reported a crash", crashed, vcpus);
		poll(&pfd, 1, 10);
		events |= vm_take_events(vm);
		crashed = 0;
		for (unsigned int i = 0; i < vcpus; i++)
			crashed += vm->vcpus[i]->status == VCPU_CRASHED;
	}
	CHECK(events & VM_EVENT_STOPPED, "the owner was not told");
	for (unsigned int i = 0; i < vcpus; i++) {
		struct vcpu *v = vm->vcpus[i];

		CHECK(v->crash_regs.rip == GUEST_IMAGE_GPA, "vCPU %u crash rip 0x%llx", i,
		      (unsigned long long)v->crash_regs.rip);
		CHECK(strstr(v->fail_reason, "triple fault") &&
			      strstr(v->fail_reason, "rip=0x100000"),
		      "vCPU %u reason '%s'", i, v->fail_reason);
	}
	/* Stopped vCPUs still acknowledge: pausing must not hang. */
	for (int i = 0; i < 100; i++) {
		CHECK_OK(vm_pause(vm, VM_PAUSE_SAVE_STATE, NULL));
		vm_resume(vm);
	}
	CHECK(ckpt_capture(&ckpt, &t) == -ESRCH, "a crashed guest was checkpointed");
	CHECK(ckpt.epoch == UINT64_MAX, "the epoch advanced");
	printf("ok: %u vCPU(s): triple fault reported (%s), pauses still complete, "
	       "capture refused\n",
	       vcpus, vm->vcpus[0]->fail_reason);
	ckpt_free(&ckpt);
	vm_free(vm);
	t_console_free(&console);
}

int main(void)
{
	t_require_kvm();
	crash(1);
	crash(3);
	return T_EXIT_PASS;
}
