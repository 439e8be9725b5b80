// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "lib/clock.h"
#include "primary/checkpoint.h"
#include "vmm/machine.h"
#include "vmm/memhash.h"
#include "vmm/vcpu.h"
#include "vmm/virtio_blk.h"
#include "vmm/vm.h"

int ckpt_init(struct ckpt *c, struct vm *vm)
{
	int r;

	memset(c, 0, sizeof(*c));
	c->vm = vm;
	c->epoch = UINT64_MAX;
	r = dirty_set_init(&c->dirty, vm->nr_pages);
	if (r == 0)
		r = dirty_set_init(&c->fresh, vm->nr_pages);
	if (r < 0)
		goto fail;
	/*
	 * Sized for the worst epoch (every page, live and again in the pause) but
	 * MAP_NORESERVE: only as much as the largest epoch so far is ever resident.
	 * Their own sizes: a ckpt may outlive its VM (freed in any order).
	 */
	c->capacity = EPOCH_MAX_COPIES * vm->nr_pages;
	c->staging_bytes = c->capacity * VM_PAGE_SIZE;
	c->staging = map_noreserve(c->staging_bytes);
	c->list_bytes = c->capacity * sizeof(*c->list);
	c->list = map_noreserve(c->list_bytes);
	if (!c->staging || !c->list) {
		r = -ENOMEM;
		goto fail;
	}
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
	dirty_set_free(&c->fresh);
	if (c->staging)
		munmap(c->staging, c->staging_bytes);
	if (c->list)
		munmap(c->list, c->list_bytes);
	free(c->state);
	disk_log_free(&c->disk_log);
	memset(c, 0, sizeof(*c));
}

/* Pages per unit of parallel copy: small enough to balance, large enough to amortise. */
#define CKPT_COPY_CHUNK 64

/*
 * Gives every page of `fresh` the next staging slot: appended, never written
 * over, because a live batch may still be on the wire (and is in the epoch's
 * checksum) when the same page is copied again.
 */
static void place_fresh(struct ckpt *c)
{
	c->batch = c->staged;
	for (uint64_t k = 0; k < c->fresh.count; k++) {
		c->list[c->staged + k] = c->fresh.pages[k];
		dirty_set_add(&c->dirty, c->fresh.pages[k]);
	}
	c->staged += c->fresh.count;
}

static void copy_fresh(struct ckpt *c, uint64_t first, uint64_t end)
{
	for (uint64_t k = first; k < end; k++)
		memcpy(c->staging + ((c->batch + k) << VM_PAGE_SHIFT),
		       vm_page_hva(c->vm, c->fresh.pages[k]), VM_PAGE_SIZE);
}

static void copy_chunk(void *arg, uint32_t chunk)
{
	struct ckpt *c = arg;
	uint64_t first = (uint64_t)chunk * CKPT_COPY_CHUNK;

	copy_fresh(c, first,
		   first + CKPT_COPY_CHUNK < c->fresh.count ? first + CKPT_COPY_CHUNK
							    : c->fresh.count);
}

static void forget_all(struct ckpt *c)
{
	vm_requeue_dirty(c->vm, &c->fresh);
	vm_requeue_dirty(c->vm, &c->dirty);
	dirty_set_clear(&c->fresh);
	c->live = false;
}

void ckpt_live_forget(struct ckpt *c)
{
	if (c->live)
		forget_all(c);
}

int ckpt_live_harvest(struct ckpt *c)
{
	int r;

	/* One live batch per epoch: staging holds EPOCH_MAX_COPIES of memory. */
	if (c->live)
		return -EBUSY;
	dirty_set_clear(&c->dirty);
	c->staged = 0;
	c->live = true;
	dirty_set_clear(&c->fresh);
	/*
	 * The guest runs: the rings are reset before any page is read, so a write
	 * that lands during the copy below is logged again and copied again by a
	 * later harvest (DESIGN.md, dirty ring facts).
	 */
	r = vm_harvest(c->vm, &c->fresh, NULL);
	if (r < 0) {
		forget_all(c);
		return r;
	}
	place_fresh(c);
	copy_fresh(c, 0, c->fresh.count);
	return (int)(c->fresh.count > INT32_MAX ? INT32_MAX : c->fresh.count);
}

int ckpt_capture(struct ckpt *c, struct ckpt_timing *t)
{
	struct vm *vm = c->vm;
	struct vm_pause_stats ps = { 0 };
	struct dirty_stats ds = { 0 };
	uint64_t t0, t1, t2, t3, before;
	int r;

	memset(t, 0, sizeof(*t));
	if (!c->live) {
		dirty_set_clear(&c->dirty);
		c->staged = 0;
	}
	dirty_set_clear(&c->fresh);
	t0 = clock_now_ns();
	/* Paused: no vCPU can write, so harvest-then-copy is exact. */
	r = vm_pause_harvest(vm, VM_PAUSE_SAVE_STATE, &c->fresh, &ds, &ps);
	if (r < 0)
		goto requeue;
	/* A crashed guest is not a checkpoint: never capture its state. */
	for (unsigned int i = 0; i < vm->nr_vcpus; i++)
		if (vm->vcpus[i]->status != VCPU_RUNNING)
			r = -ESRCH;
	if (r < 0)
		goto requeue;
	if (c->disk && c->hash_memory) {
		/*
		 * --verify hashes the image, which must then hold every write the
		 * log holds: complete the requests in flight, and collect the pages
		 * their completions wrote (status bytes, used ring, read data).
		 */
		r = virtio_blk_drain(c->disk);
		if (r == 0)
			r = vm_harvest(vm, &c->fresh, NULL);
		if (r < 0)
			goto requeue;
	}
	t1 = clock_now_ns();
	before = c->dirty.count;
	place_fresh(c);
	/* Live pages minus those dirtied again since (in fresh, but placed already). */
	t->live_pages = before - (c->fresh.count - (c->dirty.count - before));
	/* The parked vCPU threads are idle: they copy alongside the owner. */
	vm_paused_parallel(vm, copy_chunk, c,
			   (uint32_t)((c->fresh.count + CKPT_COPY_CHUNK - 1) / CKPT_COPY_CHUNK));
	t2 = clock_now_ns();
	t->copy_ns = t2 - t1;
	if (c->hash_memory) {
		r = vm_memory_hash(vm, true, &c->memory_hash);
		if (r < 0)
			goto requeue;
		if (c->disk)
			r = virtio_blk_hash(c->disk, &c->disk_hash);
		if (r < 0)
			goto requeue;
		t->hash_ns = clock_now_ns() - t2;
		t2 = clock_now_ns();
	}
	r = machine_save_vm(vm, c->state);
	if (r == 0 && c->paused_fn)
		c->paused_fn(c->paused_opaque, c->epoch + 1);
	/* Last, so a failed capture leaves the writes with the device for the next. */
	disk_log_clear(&c->disk_log);
	c->disk_log_lost = false;
	if (r == 0 && c->disk)
		c->disk_log_lost = virtio_blk_take_log(c->disk, &c->disk_log) < 0;
	t3 = clock_now_ns();
	t->harvest_ns = ds.harvest_ns;
	t->reset_ns = ds.reset_ns;
	t->vmstate_ns = t3 - t2;
requeue:
	/* Harvested pages are no longer tracked anywhere else: keep them for the next try. */
	if (r < 0)
		forget_all(c);
	c->live = false;
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

_Static_assert(sizeof(((struct machine_state *)0)->vcpu) / sizeof(struct vcpu_state) <=
		       EPOCH_MAX_VCPUS,
	       "an epoch carries every vCPU");
_Static_assert(sizeof(((struct machine_state *)0)->dev) / sizeof(struct device_state) <=
		       EPOCH_MAX_DEVICES,
	       "an epoch carries every device");

void ckpt_epoch_state(const struct machine_state *ms, struct epoch_state *ret)
{
	memset(ret, 0, sizeof(*ret));
	ret->nr_vcpus = ms->nr_vcpus;
	ret->nr_devices = ms->nr_devices;
	ret->vm = (struct epoch_blob){ &ms->vm, sizeof(ms->vm) };
	for (uint32_t i = 0; i < ms->nr_vcpus; i++)
		ret->vcpu[i] = (struct epoch_blob){ &ms->vcpu[i], sizeof(ms->vcpu[i]) };
	for (uint32_t i = 0; i < ms->nr_devices; i++)
		ret->dev[i] = (struct epoch_device){
			.name = ms->dev[i].name,
			.state = { ms->dev[i].data, ms->dev[i].len },
		};
}
