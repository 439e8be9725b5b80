// SPDX-License-Identifier: MIT
/*
 * Dirty ring backend (KVM_CAP_DIRTY_LOG_RING[_ACQ_REL]): every vCPU has a ring of
 * (slot, offset) entries that KVM publishes as the guest first writes a page after
 * it was (re)protected. Harvest cost is O(entries), independent of guest size.
 */
#include <errno.h>
#include <sched.h>
#include <stdio.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "lib/clock.h"
#include "vmm/dirty.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

uint32_t dirty_ring_collect(struct kvm_dirty_gfn *ring, uint32_t nr_entries, uint32_t *fetch,
			    const uint64_t *slot_first_page, const uint64_t *slot_pages,
			    uint32_t nr_slots, struct dirty_set *out, struct dirty_stats *st)
{
	uint32_t n = 0;

	/*
	 * A full ring holds at most nr_entries published entries; the entry after the
	 * last one we reset is our own RESET mark, so the walk ends by itself. The
	 * bound guards against a ring KVM (or a test) filled with garbage.
	 */
	while (n < nr_entries) {
		struct kvm_dirty_gfn *e = &ring[*fetch & (nr_entries - 1)];
		uint32_t slot, as_id;
		uint64_t offset;

		/* Pairs with KVM's release store of DIRTY after writing slot/offset. */
		if (!(__atomic_load_n(&e->flags, __ATOMIC_ACQUIRE) & KVM_DIRTY_GFN_F_DIRTY))
			break;
		slot = e->slot & 0xffff;
		as_id = e->slot >> 16;
		offset = e->offset;
		if (as_id == 0 && slot < nr_slots && offset < slot_pages[slot]) {
			if (dirty_set_add(out, slot_first_page[slot] + offset) && st)
				st->pages++;
		} else if (st) {
			st->invalid++;
		}
		/*
		 * Release: our reads of the entry happen before KVM may reuse it after
		 * KVM_RESET_DIRTY_RINGS sees the RESET flag.
		 */
		__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_RESET, __ATOMIC_RELEASE);
		(*fetch)++;
		n++;
	}
	if (st)
		st->entries += n;
	return n;
}

static int ring_vm_init(struct vm *vm)
{
	struct kvm_enable_cap cap = { 0 };
	uint32_t bytes;
	int max;

	/* Prefer the variant with explicit acquire/release semantics (needed on weakly
	 * ordered architectures, harmless on x86). */
	max = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING_ACQ_REL);
	vm->ring_acq_rel = max > 0;
	cap.cap = KVM_CAP_DIRTY_LOG_RING_ACQ_REL;
	if (max <= 0) {
		max = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_DIRTY_LOG_RING);
		cap.cap = KVM_CAP_DIRTY_LOG_RING;
	}
	if (max <= 0)
		return -EOPNOTSUPP;
	if (vm->ring_entries & (vm->ring_entries - 1))
		return -EINVAL;
	bytes = vm->ring_entries * (uint32_t)sizeof(struct kvm_dirty_gfn);
	if (bytes < 4096 || bytes > (uint32_t)max)
		return -ERANGE;
	cap.args[0] = bytes;
	if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0)
		return -errno;
	return 0;
}

static size_t ring_bytes(const struct vm *vm)
{
	return (size_t)vm->ring_entries * sizeof(struct kvm_dirty_gfn);
}

static int ring_vcpu_init(struct vm *vm, struct vcpu *vcpu)
{
	long psz = sysconf(_SC_PAGESIZE);
	void *p;

	p = mmap(NULL, ring_bytes(vm), PROT_READ | PROT_WRITE, MAP_SHARED, vcpu->fd,
		 (off_t)KVM_DIRTY_LOG_PAGE_OFFSET * psz);
	if (p == MAP_FAILED)
		return -errno;
	vcpu->ring = p;
	vcpu->ring_fetch = 0;
	return 0;
}

static void ring_vcpu_free(struct vm *vm, struct vcpu *vcpu)
{
	if (vcpu->ring)
		munmap(vcpu->ring, ring_bytes(vm));
	vcpu->ring = NULL;
}

/*
 * Walk every vCPU's ring, then reset them all with one ioctl (rarely more). Entries must be
 * harvested (and their pages' contents read) in this order when the guest runs:
 * a write after the reset is logged again, a write before it lands in the copy
 * that follows. Runs only on a quiet thread (harvest.c): a reset that sees a
 * pending signal drops write protection it owes.
 */
/* KVM_RESET_DIRTY_RINGS calls before a short reset counts as lost tracking. */
#define RING_RESET_TRIES 100000u

static int ring_harvest(struct vm *vm, struct dirty_set *out, struct dirty_stats *st)
{
	uint64_t t0 = clock_now_ns(), t1, collected = 0, reset_total = 0;
	struct dirty_stats local = { 0 };
	unsigned int overflowed = 0; /* 1 + the first vCPU whose ring overflowed */
	int reset = 0;

	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		struct vcpu *v = vm->vcpus[i];
		uint32_t n = dirty_ring_collect(v->ring, vm->ring_entries, &v->ring_fetch,
						vm->slot_first_page, vm->slot_pages, vm->nr_slots,
						out, &local);

		/*
		 * KVM asks for a harvest (soft full) with a reserve left for the
		 * instruction in flight, so a whole ring of entries means it pushed
		 * past the end: entries were overwritten before we read them. That
		 * happens when the host emulates more writes between two checks than
		 * the reserve holds (each emulated write is an entry; KVM warns
		 * "kvm_dirty_ring_push" in the host's log).
		 */
		if (n == vm->ring_entries)
			overflowed = overflowed ? overflowed : i + 1;
		collected += n;
	}
	t1 = clock_now_ns();
	/*
	 * KVM resets exactly what we marked, but may stop early and report a
	 * partial count, even 0: go on until all of it is done, and before the
	 * guest runs again, or a write would slip through unlogged. On a quiet
	 * thread nothing should stop it; the loop stays for kernels that also
	 * yield to the scheduler mid-walk.
	 */
	for (unsigned int tries = 0; reset_total < collected && tries < RING_RESET_TRIES; tries++) {
		reset = ioctl(vm->vm_fd, KVM_RESET_DIRTY_RINGS, 0);
		if (reset < 0 && errno != EINTR)
			break;
		if (reset > 0)
			reset_total += (uint64_t)reset;
		else
			sched_yield();
	}
	if (st) {
		st->entries += local.entries;
		st->pages += local.pages;
		st->invalid += local.invalid;
		st->harvest_ns += t1 - t0;
		st->reset_ns += clock_now_ns() - t1;
	}
	if (reset < 0 && errno != EINTR)
		return -errno;
	if (overflowed) {
		snprintf(vm->dirty_error, sizeof(vm->dirty_error),
			 "the dirty ring of vCPU %u overflowed (%u entries between two "
			 "harvests): entries were lost",
			 overflowed - 1, vm->ring_entries);
		return -EIO;
	}
	/*
	 * Fewer or more entries reset than collected, or entries naming no page of
	 * ours: the rings no longer describe the guest. Tracking is lost.
	 */
	if (reset_total != collected || local.invalid) {
		snprintf(vm->dirty_error, sizeof(vm->dirty_error),
			 "dirty ring: %llu entries harvested, %llu reset, %llu invalid",
			 (unsigned long long)collected, (unsigned long long)reset_total,
			 (unsigned long long)local.invalid);
		return -EIO;
	}
	return 0;
}

const struct dirty_ops dirty_ring_ops = {
	.name = "ring",
	.mode = DIRTY_RING,
	.slot_flags = 0,
	.quiet_harvest = true,
	.vm_init = ring_vm_init,
	.vcpu_init = ring_vcpu_init,
	.vcpu_free = ring_vcpu_free,
	.harvest = ring_harvest,
};
