/* SPDX-License-Identifier: MIT */
/* One vCPU: its fd, kvm_run, dirty ring, thread, and saved state. */
#ifndef RINGFT_VMM_VCPU_H
#define RINGFT_VMM_VCPU_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "vmm/state.h"

struct vm;

enum vcpu_status {
	VCPU_RUNNING = 0,
	VCPU_CRASHED, /* triple fault, or the guest's exception report: registers in crash_regs */
	VCPU_FAILED,  /* KVM_RUN error, entry failure, internal error, unknown exit */
};

struct vcpu_exit_stats {
	uint64_t io;
	uint64_t ring_full;
	uint64_t intr;
	uint64_t other;
	uint64_t int3_fallback;	 /* CPL-0 int3 the host could not emulate: #BP injected */
	uint64_t fwait_fallback; /* fwait the host could not emulate: skipped */
	uint64_t faults_retried; /* spurious page faults the guest's handler retried */
};

struct vcpu {
	struct vm *vm;
	unsigned int id;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_started;

	/*
	 * KVM_CAP_SYNC_REGS: KVM copies REGS and VCPU_EVENTS into run->s.regs at
	 * every return from KVM_RUN, so a parked vCPU saves them without two
	 * ioctls (~5 us each here). run_state_fresh: the copy is the vCPU's state
	 * (set by the vCPU thread after KVM_RUN, cleared by vcpu_load_state).
	 */
	bool sync_regs;
	bool run_state_fresh;

	/* Dirty ring (ring backend only). */
	struct kvm_dirty_gfn *ring;
	uint32_t ring_fetch;
	/* Set by the vCPU thread on KVM_EXIT_DIRTY_RING_FULL; cleared by vm_resume. */
	bool ring_full;

	/* Pause protocol (pause.c), under vm->lock. */
	uint64_t acked_seq;
	uint64_t rekicks;  /* pauses that had to kick this vCPU again */
	uint32_t work_seq; /* last vm_paused_parallel() work it joined */

	/* Filled by the vCPU's own thread when paused with VM_PAUSE_SAVE_STATE. */
	struct vcpu_state *saved;
	int save_err;
	uint64_t save_ns;

	enum vcpu_status status;
	char fail_reason[192];
	struct kvm_regs crash_regs;
	struct kvm_sregs crash_sregs;
	/*
	 * crash_regs are not the fault's: KVM reset the vCPU at the shutdown (SVM),
	 * or the guest reported its exception itself (rip, rsp and cr2 only, which
	 * fail_reason says).
	 */
	bool crash_regs_lost;

	struct vcpu_exit_stats exits;
};

int vcpu_create(struct vm *vm, unsigned int id, struct vcpu **ret_vcpu);
void vcpu_free(struct vcpu *vcpu);

/* The CPUID vCPU `id` is given: KVM's supported entries with its own APIC ID. */
int vcpu_cpuid(struct vm *vm, unsigned int id, struct kvm_cpuid2 **ret);

/* Called from the vCPU's own thread or while it is parked / not started. */
int vcpu_save_state(struct vcpu *vcpu, struct vcpu_state *ret_state);
int vcpu_load_state(struct vcpu *vcpu, const struct vcpu_state *state);
/*
 * The guest TSC a saved vCPU had (its IA32_TSC), and setting one: machine_load
 * gives every vCPU of a restored guest the first vCPU's, before its state.
 */
int vcpu_saved_tsc(const struct vcpu_state *state, uint64_t *ret_tsc);
int vcpu_set_tsc(struct vcpu *vcpu, uint64_t tsc);

/* Probe the MSRs to save (KVM's index list plus ones it omits); once per VM. */
int vcpu_probe_msrs(struct vcpu *vcpu, uint32_t **ret_list, uint32_t *ret_nr);

/*
 * Start the vCPU's thread, running KVM_RUN until the VM is torn down (for
 * vm_start(); vm_stop_vcpus() in pause.c ends and joins it).
 */
int vcpu_start(struct vcpu *vcpu, const pthread_attr_t *attr);

#endif
