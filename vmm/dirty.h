/* SPDX-License-Identifier: MIT */
/*
 * Dirty page tracking: a deduplicating page set, and the tracking backends (dirty
 * ring, dirty bitmap) behind one ops table, in the manner of the KVM selftests'
 * log modes.
 *
 * Pages are numbered by their offset in the VMM's guest RAM mapping divided by the
 * page size ("page index"), not by guest physical frame: RAM above the PCI hole is
 * contiguous with low RAM in that mapping.
 */
#ifndef RINGFT_VMM_DIRTY_H
#define RINGFT_VMM_DIRTY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <linux/kvm.h>

struct vm;
struct vcpu;

/*
 * A set of page indexes with O(1) insert and O(pages in the set) iteration and
 * clear: a bitmap for membership plus an array in insertion order. Both arrays are
 * MAP_NORESERVE, so a set over a large, lightly dirtied guest costs little memory.
 */
struct dirty_set {
	uint64_t nr_pages; /* universe: page indexes are < nr_pages */
	uint64_t count;
	uint64_t *bits;
	uint64_t *pages;
};

/* Anonymous MAP_NORESERVE memory (only what is touched is resident), or NULL. */
void *map_noreserve(size_t len);

int dirty_set_init(struct dirty_set *s, uint64_t nr_pages);
void dirty_set_free(struct dirty_set *s);
void dirty_set_clear(struct dirty_set *s);
void dirty_set_merge(struct dirty_set *dst, const struct dirty_set *src);
void dirty_set_sort(struct dirty_set *s);

static inline bool dirty_set_test(const struct dirty_set *s, uint64_t page)
{
	return page < s->nr_pages && (s->bits[page / 64] >> (page % 64)) & 1;
}

/* Returns true if the page was not in the set yet; false if present or out of range. */
static inline bool dirty_set_add(struct dirty_set *s, uint64_t page)
{
	uint64_t mask = 1ULL << (page % 64);

	if (page >= s->nr_pages || (s->bits[page / 64] & mask))
		return false;
	s->bits[page / 64] |= mask;
	s->pages[s->count++] = page;
	return true;
}

enum dirty_mode {
	DIRTY_RING = 0,
	DIRTY_BITMAP = 1,
};

const char *dirty_mode_name(enum dirty_mode mode);
int dirty_mode_parse(const char *name, enum dirty_mode *ret_mode);

struct dirty_stats {
	uint64_t entries; /* ring entries walked / bitmap bits set (with repeats) */
	uint64_t pages;	  /* distinct pages added to the output */
	uint64_t invalid; /* entries naming no page of ours (ignored) */
	uint64_t harvest_ns;
	uint64_t reset_ns; /* KVM_RESET_DIRTY_RINGS / KVM_CLEAR_DIRTY_LOG */
};

struct dirty_ops {
	const char *name;
	enum dirty_mode mode;
	uint32_t slot_flags; /* extra KVM_MEM_* flags for RAM slots */
	bool quiet_harvest;  /* harvest only on a quiet thread (vmm/harvest.c) */
	/* On the VM fd, before any vCPU exists. */
	int (*vm_init)(struct vm *vm);
	int (*vcpu_init)(struct vm *vm, struct vcpu *vcpu);
	void (*vcpu_free)(struct vm *vm, struct vcpu *vcpu);
	/*
	 * Add every page dirtied since the last harvest to *out and re-arm tracking for
	 * them. With the vCPUs paused the result is exact; while they run (initial
	 * sync) a page written after its re-arm is reported again next time.
	 */
	int (*harvest)(struct vm *vm, struct dirty_set *out, struct dirty_stats *st);
	void (*vm_free)(struct vm *vm);
};

extern const struct dirty_ops dirty_ring_ops;
extern const struct dirty_ops dirty_bitmap_ops;

const struct dirty_ops *dirty_ops_for(enum dirty_mode mode);

/*
 * Walks one vCPU's ring from *fetch while entries are published (acquire), adds
 * their pages to *out, marks them for reset (release), and advances *fetch.
 * `slot_first_page[slot]` maps KVM slot ids (< nr_slots) to page indexes and
 * `slot_pages[slot]` bounds offsets. Returns the number of entries collected.
 * Pure: the unit tests drive it with a ring in ordinary memory.
 */
uint32_t dirty_ring_collect(struct kvm_dirty_gfn *ring, uint32_t nr_entries, uint32_t *fetch,
			    const uint64_t *slot_first_page, const uint64_t *slot_pages,
			    uint32_t nr_slots, struct dirty_set *out, struct dirty_stats *st);

#endif
