// SPDX-License-Identifier: MIT
/*
 * Dirty bitmap backend: KVM_GET_DIRTY_LOG with manual protect
 * (KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2) and KVM_CLEAR_DIRTY_LOG. Kept as the
 * baseline the benchmarks compare the ring against: fetching and scanning the
 * bitmap costs O(guest memory) whatever the guest dirtied.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include "lib/clock.h"
#include "vmm/dirty.h"
#include "vmm/vm.h"

struct bitmap_priv {
	uint64_t *bitmap[2]; /* per slot, one bit per page */
	size_t bytes[2];
};

static int bitmap_vm_init(struct vm *vm)
{
	struct kvm_enable_cap cap = { .cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 };
	int caps = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);

	if (caps <= 0 || !(caps & KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE))
		return -EOPNOTSUPP;
	/*
	 * Not KVM_DIRTY_LOG_INITIALLY_SET: the first harvest must report what the
	 * guest wrote, exactly like the ring, not every page.
	 */
	cap.args[0] = KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE;
	if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0)
		return -errno;
	return 0;
}

static struct bitmap_priv *priv_get(struct vm *vm)
{
	struct bitmap_priv *p = vm->dirty_priv;

	if (p)
		return p;
	p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	for (unsigned int s = 0; s < vm->nr_slots; s++) {
		void *m;

		p->bytes[s] = (vm->slots[s].size / VM_PAGE_SIZE + 63) / 64 * 8;
		m = mmap(NULL, p->bytes[s], PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (m == MAP_FAILED) {
			for (unsigned int t = 0; t < s; t++)
				munmap(p->bitmap[t], p->bytes[t]);
			free(p);
			return NULL;
		}
		p->bitmap[s] = m;
	}
	vm->dirty_priv = p;
	return p;
}

static int bitmap_harvest(struct vm *vm, struct dirty_set *out, struct dirty_stats *st)
{
	struct bitmap_priv *p = priv_get(vm);
	uint64_t t_harvest = 0, t_reset = 0;

	if (!p)
		return -ENOMEM;
	for (unsigned int s = 0; s < vm->nr_slots; s++) {
		const struct vm_slot *slot = &vm->slots[s];
		uint64_t npages = slot->size / VM_PAGE_SIZE, nwords = (npages + 63) / 64, t0, t1;
		struct kvm_dirty_log log = { .slot = slot->id, .dirty_bitmap = p->bitmap[s] };
		struct kvm_clear_dirty_log clear = {
			.slot = slot->id,
			.first_page = 0,
			.num_pages = (uint32_t)npages,
			.dirty_bitmap = p->bitmap[s],
		};
		uint64_t *bm = p->bitmap[s];

		t0 = clock_now_ns();
		if (ioctl(vm->vm_fd, KVM_GET_DIRTY_LOG, &log) < 0)
			return -errno;
		for (uint64_t w = 0; w < nwords; w++) {
			uint64_t bits = bm[w];

			while (bits) {
				uint64_t page = w * 64 + (uint64_t)__builtin_ctzll(bits);

				bits &= bits - 1;
				if (st)
					st->entries++;
				if (dirty_set_add(out, slot->first_page + page) && st)
					st->pages++;
			}
		}
		t1 = clock_now_ns();
		/*
		 * Re-protect exactly the pages we saw: a page dirtied between GET and
		 * CLEAR keeps its bit for the next harvest. One call for the whole slot
		 * (first_page 0, ending at the slot end) satisfies the 64-page alignment
		 * rule.
		 */
		if (ioctl(vm->vm_fd, KVM_CLEAR_DIRTY_LOG, &clear) < 0)
			return -errno;
		t_harvest += t1 - t0;
		t_reset += clock_now_ns() - t1;
	}
	if (st) {
		st->harvest_ns += t_harvest;
		st->reset_ns += t_reset;
	}
	return 0;
}

static void bitmap_vm_free(struct vm *vm)
{
	struct bitmap_priv *p = vm->dirty_priv;

	if (!p)
		return;
	for (unsigned int s = 0; s < 2; s++)
		if (p->bitmap[s])
			munmap(p->bitmap[s], p->bytes[s]);
	free(p);
	vm->dirty_priv = NULL;
}

const struct dirty_ops dirty_bitmap_ops = {
	.name = "bitmap",
	.mode = DIRTY_BITMAP,
	.slot_flags = 0,
	.vm_init = bitmap_vm_init,
	.harvest = bitmap_harvest,
	.vm_free = bitmap_vm_free,
};
