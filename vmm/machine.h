/* SPDX-License-Identifier: MIT */
/*
 * Whole-machine state (everything but RAM) in the order that works: VM-wide
 * in-kernel devices, then every vCPU, then the emulated devices.
 */
#ifndef RINGFT_VMM_MACHINE_H
#define RINGFT_VMM_MACHINE_H

#include "vmm/state.h"

struct vm;

/*
 * With the VM paused by vm_pause(VM_PAUSE_SAVE_STATE): the VM-wide state and the
 * devices are saved here; the vCPU states the pause saved are copied in too, so
 * this may run after vm_resume() (the owner is the only thread that pauses).
 */
int machine_save_vm(struct vm *vm, struct machine_state *ms);
void machine_collect_vcpus(struct vm *vm, struct machine_state *ms);

/* Loads a complete state into a VM whose vCPUs are paused or not yet started. */
int machine_load(struct vm *vm, const struct machine_state *ms);

#endif
