/* SPDX-License-Identifier: MIT */
/*
 * A KVM virtual machine: guest RAM in memslots, in-kernel irqchip and PIT, dirty
 * tracking, port-I/O devices, and 1..8 vCPUs each on its own thread, which can all
 * be paused (parked outside KVM_RUN, optionally saving their own state) and resumed.
 *
 * Threads: the owner (one thread) calls everything here; vCPU threads run guest
 * code and device register emulation. Pause/resume (pause.h) and harvest are
 * owner-only.
 *
 * Devices (device.h) split their work between the two: a vCPU thread only reads
 * and writes device registers, and a register write that asks for work (a
 * virtio QueueNotify) just records it and wakes the owner through
 * vm_device_fd(). All guest-memory work of every device (popping descriptor
 * chains, copying frames, pushing used entries) happens in vm_devices_poll() on
 * the owner thread. The owner also takes checkpoints (between vm_pause and
 * vm_resume), so a checkpoint is a consistent cut of vCPUs and devices without
 * any device thread to stop.
 */
#ifndef RINGFT_VMM_VM_H
#define RINGFT_VMM_VM_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "vmm/device.h"
#include "vmm/dirty.h"
#include "vmm/pause.h"

#define VM_MAX_VCPUS   8
#define VM_MAX_DEVICES 8
#define VM_PAGE_SIZE   4096ULL
#define VM_PAGE_SHIFT  12
#define VM_MIN_MEM     (64ULL << 20)
#define VM_MAX_MEM     (64ULL << 30)
/* RAM above 3 GiB is placed at 4 GiB and up: the hole keeps the LAPIC/IOAPIC free. */
#define VM_LOW_MEM_END		(3ULL << 30)
#define VM_HIGH_MEM_GPA		(4ULL << 30)
#define VM_DEFAULT_RING_ENTRIES 4096

struct vcpu;
struct vcpu_state;
struct vm_state;

struct vm_config {
	uint64_t mem_size;     /* bytes, multiple of 2 MiB, VM_MIN_MEM..VM_MAX_MEM */
	unsigned int nr_vcpus; /* 1..VM_MAX_VCPUS */
	enum dirty_mode tracking;
	uint32_t ring_entries; /* dirty ring entries per vCPU (power of two); 0: default */
};

struct vm_slot {
	uint32_t id;
	uint64_t gpa;
	uint64_t size;
	uint64_t first_page; /* page index of gpa */
	uint8_t *host;
};

/* Owner hook for writes to GUEST_PORT_SIGNAL, called on the vCPU thread. */
typedef void (*vm_signal_fn)(void *opaque, unsigned int vcpu, uint32_t value);
/*
 * Owner hook for things worth one log line that are not errors (an instruction
 * fallback the host needed), called on the vCPU thread, once per kind per VM.
 */
typedef void (*vm_notice_fn)(void *opaque, const char *msg);

/* Kinds of notice (vm->notices_sent bits). */
enum vm_notice {
	VM_NOTICE_INT3 = 1u << 0,
	VM_NOTICE_FWAIT = 1u << 1,
};

struct vm {
	int kvm_fd;
	int vm_fd;
	int run_size;
	uint8_t *mem;
	uint64_t mem_size;
	uint64_t nr_pages;
	struct vm_slot slots[2];
	unsigned int nr_slots;
	uint64_t slot_first_page[2];
	uint64_t slot_pages[2];

	struct vm_config cfg;
	uint32_t ring_entries;
	bool ring_acq_rel;
	uint64_t tsc_khz;
	uint32_t xsave_size;

	const struct dirty_ops *dirty;
	void *dirty_priv;
	char dirty_error[128]; /* why the last harvest returned -EIO */

	/* The harvest thread: a quiet place for ring resets (harvest.c). */
	pthread_t hv_thread;
	bool hv_init, hv_started, hv_stop;
	pthread_mutex_t hv_lock;
	pthread_cond_t hv_cond;	     /* owner -> thread: a request, or stop */
	pthread_cond_t hv_done_cond; /* thread -> owner: request done */
	struct harvest_req *hv_req;

	/* Pages the VMM itself wrote (KVM does not log those). */
	pthread_mutex_t vmm_dirty_lock;
	struct dirty_set vmm_dirty;
	/*
	 * Every page written since the VM was created: by its vCPUs (as harvested),
	 * by the VMM, or stored into it as a replica (vm_mark_touched). A page not
	 * in it is still all zero, so an initial sync lists it without reading it.
	 */
	struct dirty_set touched;

	struct device *devices[VM_MAX_DEVICES];
	unsigned int nr_devices;
	/* eventfd: readable when a device has work for vm_devices_poll(). */
	int device_fd;
	/* Test switch (vm_set_device_dirty_marking): devices skip vm_mark_dirty. */
	bool device_dirty_off;
	vm_signal_fn signal_fn;
	void *signal_opaque;
	vm_notice_fn notice_fn;
	void *notice_opaque;
	unsigned int notices_sent; /* enum vm_notice bits, atomic */

	unsigned int nr_vcpus;
	struct vcpu *vcpus[VM_MAX_VCPUS];
	bool started;

	/* Pause protocol; see pause.c. */
	pthread_mutex_t lock;
	pthread_cond_t parked_cond; /* vCPU -> owner: one more vCPU parked/acked */
	pthread_cond_t resume_cond; /* owner -> vCPUs: pause over, or new request */
	bool pausing;
	bool stopping;
	unsigned int pause_flags;
	uint64_t pause_seq;
	unsigned int nr_acked;
	/* vm_pause_lend_harvest(): where the last vCPU to park harvests to. */
	struct dirty_set *pause_out;
	struct dirty_stats *pause_dirty_st;
	int pause_harvest_err;
	bool pause_poll; /* more CPUs than vCPUs: vm_pause() polls before sleeping */

	/* Work shared with parked vCPU threads (vm_paused_parallel), under lock. */
	vm_work_fn work_fn;
	void *work_arg;
	uint32_t work_chunks;
	uint32_t work_seq;
	/* (work_seq << 32) | next chunk: claiming checks the work is still ours. */
	uint64_t work_ticket;
	uint64_t work_done;

	/* Readable (eventfd) when vm_events() has something: ring full, vCPU stopped. */
	int event_fd;
	unsigned int events; /* enum vm_event bits, under lock */

	/* Reusable list of MSR indexes saved for every vCPU (probed once). */
	uint32_t *msr_list;
	uint32_t nr_msrs;
};

int vm_create(const struct vm_config *cfg, struct vm **ret_vm);
/* Stops and joins the vCPU threads, closes everything. Accepts NULL. */
void vm_free(struct vm *vm);

/*
 * Registers a device (before vm_start); the VM owns it from then on and frees it
 * in vm_free(). -EBUSY after start, -ENOSPC when full, -EEXIST if its MMIO range
 * overlaps another device's.
 */
int vm_add_device(struct vm *vm, struct device *dev);
void vm_set_signal_hook(struct vm *vm, vm_signal_fn fn, void *opaque);
void vm_set_notice_hook(struct vm *vm, vm_notice_fn fn, void *opaque);
/* Passes msg to the notice hook unless a notice of this kind was passed before. */
void vm_notice_once(struct vm *vm, enum vm_notice kind, const char *msg);

/*
 * Drives interrupt line `gsi` of the in-kernel PIC and IOAPIC to `level` (0 or 1):
 * KVM_IRQ_LINE. Any thread. Returns 0 or -errno.
 */
int vm_irq_line(struct vm *vm, unsigned int gsi, int level);

/* Start one thread per vCPU running KVM_RUN (after the loader set up state). */
int vm_start(struct vm *vm);
/*
 * Allocates every page of guest RAM now (zero-filled, as at first touch), so
 * that running out of host memory shows at start and not at a first touch
 * during a failover. Returns 0, -ENOMEM, or another -errno.
 */
int vm_prealloc(struct vm *vm);

/* Pausing and resuming the vCPUs, and the events they raise: pause.h. */

/*
 * The CPUID vCPU 0 is given at creation (struct kvm_cpuid_entry2[], as
 * KVM_SET_CPUID2 set it), for the handshake. Not KVM_GET_CPUID2: that reflects
 * guest state (OSXSAVE follows CR4) and would differ between a running primary
 * and an idle replica.
 */
int vm_get_cpuid(struct vm *vm, uint8_t **ret_buf, size_t *ret_len);

/* Guest memory access. Returns NULL unless [gpa, gpa+len) is RAM. */
void *vm_gpa_to_hva(struct vm *vm, uint64_t gpa, uint64_t len);
int vm_gpa_to_page(const struct vm *vm, uint64_t gpa, uint64_t *ret_page);
uint64_t vm_page_to_gpa(const struct vm *vm, uint64_t page);
static inline void *vm_page_hva(struct vm *vm, uint64_t page)
{
	return vm->mem + (page << VM_PAGE_SHIFT);
}
/* True if the page reads as all zero (a never-touched page is not faulted in). */
static inline bool vm_page_is_zero(struct vm *vm, uint64_t page)
{
	const uint64_t *w = vm_page_hva(vm, page);

	for (size_t i = 0; i < VM_PAGE_SIZE / sizeof(*w); i++)
		if (w[i])
			return false;
	return true;
}
/* See vm->touched. Owner only (a paused replica's writer, or harvests). */
static inline bool vm_page_touched(const struct vm *vm, uint64_t page)
{
	return dirty_set_test(&vm->touched, page);
}
static inline void vm_mark_touched(struct vm *vm, uint64_t page)
{
	dirty_set_add(&vm->touched, page);
}
/* Writes guest memory on behalf of the VMM and records the pages as dirty. */
int vm_write_guest(struct vm *vm, uint64_t gpa, const void *src, uint64_t len);
void vm_mark_dirty(struct vm *vm, uint64_t gpa, uint64_t len);

/*
 * Device work (see the head of this file). vm_device_fd() is an eventfd that
 * becomes readable when any device has work: a vCPU wrote a queue notify, a
 * backend's io_uring posted a completion (devices register this fd with
 * io_uring_register_eventfd), or the owner resumed a stopped queue. The owner
 * waits for it in its event loop and then calls vm_devices_poll(), which drains
 * the fd and lets every device do its work: returns 0 or the first -errno a
 * device reported (the others still ran).
 *
 * Owner only. Guest memory written here is marked dirty, so it belongs to the
 * next harvest: never call it between the harvest and machine_save_vm() of one
 * checkpoint (simplest: not while the VM is paused). A secondary calls it only
 * after promotion.
 */
int vm_device_fd(struct vm *vm);
int vm_devices_poll(struct vm *vm);
/* Wakes the owner: makes vm_device_fd() readable. Any thread. */
void vm_devices_kick(struct vm *vm);
/*
 * Device writes into guest memory: the pages go to the VMM dirty set, because
 * KVM logs only what the vCPUs write. Devices use this, not vm_mark_dirty().
 */
static inline void vm_mark_device_dirty(struct vm *vm, uint64_t gpa, uint64_t len)
{
	if (!vm->device_dirty_off)
		vm_mark_dirty(vm, gpa, len);
}
/*
 * Test only: with false, devices write guest memory without marking it, so a
 * test can prove that `ftd --verify` catches a missing mark. Default true.
 */
void vm_set_device_dirty_marking(struct vm *vm, bool on);

/*
 * Collect every page dirtied since the last harvest (guest writes through the
 * tracking backend, plus VMM writes) into *out, which is not cleared first.
 * Owner only; the VM may be running (pages written after their re-arm are
 * reported again next time) or paused. Ring resets run on a quiet thread
 * (harvest.c explains why), never on the caller's.
 */
int vm_harvest(struct vm *vm, struct dirty_set *out, struct dirty_stats *st);
/*
 * vm_pause() and an exact harvest in one: the last vCPU thread to park
 * harvests before it acknowledges, which costs the pause no extra wake-up.
 * The VM stays paused, also on error.
 */
int vm_pause_harvest(struct vm *vm, unsigned int flags, struct dirty_set *out,
		     struct dirty_stats *st, struct vm_pause_stats *ps);
/*
 * A harvest outside a checkpoint: pauses the vCPUs (no state saved), harvests
 * into *out, resumes. Empties full rings.
 */
int vm_harvest_paused(struct vm *vm, struct dirty_set *out);
/* harvest.c, for vm.c and pause.c: the harvest thread, and a harvest on this thread
 * with every signal blocked. */
int vm_harvest_thread_start(struct vm *vm);
void vm_harvest_thread_stop(struct vm *vm);
int vm_harvest_quiet(struct vm *vm, struct dirty_set *out, struct dirty_stats *st);
/*
 * Hands harvested pages back (they are reported again by the next harvest): a
 * checkpoint that failed after harvesting must not lose them.
 */
void vm_requeue_dirty(struct vm *vm, const struct dirty_set *pages);

/* VM-wide state (irqchip, PIT, clock); vCPU state via vcpu.h. Owner, paused. */
int vm_save_state(struct vm *vm, struct vm_state *ret_state);
int vm_load_state(struct vm *vm, const struct vm_state *state);

#endif
