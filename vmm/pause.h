/* SPDX-License-Identifier: MIT */
/*
 * The pause protocol between the owner thread and the vCPU threads (pause.c says
 * how it works): pausing every vCPU outside KVM_RUN, resuming, work shared with the
 * parked vCPU threads, and the events a vCPU thread raises for the owner.
 *
 * vm.h includes this header: everything above "Inside vmm/" is the VM's API.
 */
#ifndef RINGFT_VMM_PAUSE_H
#define RINGFT_VMM_PAUSE_H

#include <stdbool.h>
#include <stdint.h>

struct vm;
struct vcpu;
struct dirty_set;
struct dirty_stats;

/* Why the owner is being woken (bits of the value read from vm->event_fd's cause). */
enum vm_event {
	VM_EVENT_RING_FULL = 1u << 0, /* a vCPU parked on a full dirty ring: checkpoint now */
	VM_EVENT_STOPPED = 1u << 1,   /* a vCPU stopped for good (guest crash, KVM error) */
};

/* One chunk of work run by vm_paused_parallel(). */
typedef void (*vm_work_fn)(void *arg, uint32_t chunk);

struct vm_pause_stats {
	uint64_t kick_ns; /* from the first kick until every vCPU is parked */
	uint64_t save_ns; /* state saving inside the pause, if requested (parallel) */
};

/* Flags of vm_pause(); bit 1 is pause.c's own (a harvest lent to a vCPU thread). */
#define VM_PAUSE_SAVE_STATE 1u /* each vCPU saves its own state into vcpu->saved */

/*
 * Park every vCPU outside KVM_RUN (an exit in progress is completed first, and
 * pending I/O is completed with an immediate_exit re-entry so the state is
 * consistent). With VM_PAUSE_SAVE_STATE every vCPU thread saves its own state in
 * parallel. Returns 0 or -errno (a vCPU failed to save). Owner only.
 */
int vm_pause(struct vm *vm, unsigned int flags, struct vm_pause_stats *st);
void vm_resume(struct vm *vm);

/*
 * While paused: run fn(arg, 0 .. nr_chunks - 1) on the owner thread and on the
 * parked vCPU threads together, which are idle anyway (copying dirty pages is
 * most of a large pause). Returns when every chunk has run. Owner only.
 */
void vm_paused_parallel(struct vm *vm, vm_work_fn fn, void *arg, uint32_t nr_chunks);

/* Takes and clears pending enum vm_event bits (also drains event_fd). */
unsigned int vm_take_events(struct vm *vm);

/* Inside vmm/. */

/* vm.c: the protocol's lock and condition variables; init cannot fail. */
void vm_pause_init(struct vm *vm, unsigned int nr_vcpus);
void vm_pause_destroy(struct vm *vm);
/* vm.c: the process-wide handler of the kick signal (it does nothing but interrupt). */
int vm_install_kick_handler(void);
/* vm.c: ends every started vCPU thread and joins it. */
void vm_stop_vcpus(struct vm *vm);

/* harvest.c: vm_pause() whose last vCPU thread to park harvests into *out. */
int vm_pause_lend_harvest(struct vm *vm, unsigned int flags, struct dirty_set *out,
			  struct dirty_stats *st, struct vm_pause_stats *ps);

/* vcpu.c, on the vCPU's own thread: the signal that kicks it must not be blocked. */
void vcpu_unblock_kick(void);
/*
 * vcpu.c, on the vCPU's own thread: park until the VM is neither pausing nor
 * waiting on this vCPU (stopped: for good), acknowledging every pause meanwhile.
 * Returns true when the VM is being torn down.
 */
bool vcpu_park(struct vcpu *v, bool stopped);
/*
 * vcpu.c, on the vCPU's own thread, before it parks for longer than a pause: wake
 * the owner. VM_EVENT_RING_FULL also keeps the vCPU parked until vm_resume();
 * VM_EVENT_STOPPED follows a write of v->status, which the event publishes.
 */
void vcpu_report(struct vcpu *v, enum vm_event event);

#endif
