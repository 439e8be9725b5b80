/* SPDX-License-Identifier: MIT */
/*
 * Saved machine state as plain data (no pointers), ready to be framed on the wire:
 * per vCPU, the VM-wide in-kernel devices, and every emulated device.
 */
#ifndef RINGFT_VMM_STATE_H
#define RINGFT_VMM_STATE_H

#include <stdbool.h>
#include <stdint.h>

#include <linux/kvm.h>

#include "vmm/device.h"

#define VCPU_MAX_MSRS  256
#define VCPU_XSAVE_MAX 16384 /* KVM_GET_XSAVE2 size is 4096 here, ~11 KiB with AMX */

struct vcpu_state {
	uint32_t has_sregs2; /* 1: sregs2 valid; 0: sregs valid */
	uint32_t nr_msrs;
	uint32_t xsave_size;
	uint32_t pad;
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_sregs2 sregs2;
	struct kvm_xcrs xcrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp_state;
	struct kvm_debugregs debugregs;
	struct kvm_msr_entry msrs[VCPU_MAX_MSRS];
	uint8_t xsave[VCPU_XSAVE_MAX] __attribute__((aligned(64)));
};

struct vm_state {
	struct kvm_irqchip pic_master;
	struct kvm_irqchip pic_slave;
	struct kvm_irqchip ioapic;
	struct kvm_pit_state2 pit;
	struct kvm_clock_data clock;
};

/* Everything but memory: what a checkpoint carries besides the dirty pages. */
struct machine_state {
	uint32_t nr_vcpus;
	uint32_t nr_devices;
	struct vm_state vm;
	struct vcpu_state vcpu[8];
	struct device_state dev[8];
};

#endif
