// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "vmm/clock.h"
#include "primary/checkpoint.h"
#include "vmm/machine.h"
#include "vmm/memhash.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

int ckpt_init(struct ckpt *c, struct vm *vm)
{
	void *p;
	int r;

	memset(c, 0, sizeof(*c));
	c->vm = vm;
	c->epoch = UINT64_MAX;
	r = dirty_set_init(&c->dirty, vm->nr_pages);
	if (r < 0)
		return r;
	/*
	 * Sized for the worst epoch (every page) but MAP_NORESERVE: only as much as
	 * the largest epoch so far is ever resident.
	 */
	c->staging_bytes = vm->mem_size;
	p = mmap(NULL, c->staging_bytes, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (p == MAP_FAILED) {
		r = -errno;
		goto fail;
	}
	c->staging = p;
	c->state = calloc(1, sizeof(*c->state));
	if (!c->state) {
		r = -ENOMEM;
		goto fail;
	}
	return 0;
fail:
	ckpt_free(c);
	return r;
}

void ckpt_free(struct ckpt *c)
{
	if (!c)
		return;
	dirty_set_free(&c->dirty);
	if (c->staging)
		munmap(c->staging, c->staging_bytes);
	free(c->state);
	memset(c, 0, sizeof(*c));
}

/* Pages per unit of parallel copy: small enough to balance, large enough to amortise. */
#define CKPT_COPY_CHUNK 64

static void copy_chunk(void *arg, uint32_t chunk)
{
	struct ckpt *c = arg;
	uint64_t first = (uint64_t)chunk * CKPT_COPY_CHUNK;
	uint64_t end =
		first + CKPT_COPY_CHUNK < c->dirty.count ? first + CKPT_COPY_CHUNK : c->dirty.count;

	for (uint64_t k = first; k < end; k++)
		memcpy(c->staging + (k << VM_PAGE_SHIFT), vm_page_hva(c->vm, c->dirty.pages[k]),
		       VM_PAGE_SIZE);
}

int ckpt_capture(struct ckpt *c, struct ckpt_timing *t)
{
	struct vm *vm = c->vm;
	struct vm_pause_stats ps = { 0 };
	struct dirty_stats ds = { 0 };
	uint64_t t0, t1, t2, t3;
	int r;

	memset(t, 0, sizeof(*t));
	dirty_set_clear(&c->dirty);
	t0 = clock_now_ns();
	/* Paused: no vCPU can write, so harvest-then-copy is exact. */
	r = vm_pause_harvest(vm, VM_PAUSE_SAVE_STATE, &c->dirty, &ds, &ps);
	if (r < 0)
		goto requeue;
	/* A crashed guest is not a checkpoint: never capture its state. */
	for (unsigned int i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i]->status != VCPU_RUNNING)
			r = -ESRCH;
	if (r < 0)
		goto requeue;
	t1 = clock_now_ns();
	/* The parked vCPU threads are idle: they copy alongside the owner. */
	vm_paused_parallel(vm, copy_chunk, c,
			   (uint32_t)((c->dirty.count + CKPT_COPY_CHUNK - 1) / CKPT_COPY_CHUNK));
	t2 = clock_now_ns();
	if (c->hash_memory) {
		r = vm_memory_hash(vm, true, &c->memory_hash);
		if (r < 0)
			goto requeue;
		t->hash_ns = clock_now_ns() - t2;
		t2 = clock_now_ns();
	}
	r = machine_save_vm(vm, c->state);
	if (r == 0 && c->paused_fn)
		c->paused_fn(c->paused_opaque, c->epoch + 1);
	t3 = clock_now_ns();
	t->harvest_ns = ds.harvest_ns;
	t->reset_ns = ds.reset_ns;
	t->copy_ns = t2 - t1;
	t->vmstate_ns = t3 - t2;
requeue:
	/* Harvested pages are no longer tracked anywhere else: keep them for the next try. */
	if (r < 0)
		vm_requeue_dirty(vm, &c->dirty);
	if (r < 0 || !c->keep_paused)
		vm_resume(vm);
	t->pause_ns = clock_now_ns() - t0;
	t->kick_ns = ps.kick_ns;
	t->save_ns = ps.save_ns;
	t->pages = c->dirty.count;
	if (r < 0)
		return r;
	/* vCPU states stay in their per-vCPU buffers until the next pause. */
	machine_collect_vcpus(vm, c->state);
	c->epoch++;
	return 0;
}
