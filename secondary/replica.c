// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/diskimg.h"
#include "secondary/replica.h"
#include "vmm/machine.h"
#include "vmm/vm.h"

int replica_init(struct replica *r, struct vm *vm)
{
	memset(r, 0, sizeof(*r));
	r->committed = calloc(1, sizeof(*r->committed));
	r->seen = calloc((vm->nr_pages + 63) / 64, sizeof(*r->seen));
	if (!r->committed || !r->seen) {
		replica_free(r);
		return -ENOMEM;
	}
	r->vm = vm;
	r->epoch = UINT64_MAX;
	return 0;
}

void replica_free(struct replica *r)
{
	if (!r)
		return;
	free(r->committed);
	free(r->seen);
	r->committed = NULL;
	r->seen = NULL;
}

static int check_epoch(struct replica *r, uint64_t epoch, const uint64_t *pages, uint64_t nr_pages)
{
	if (r->promoted)
		return -EALREADY;
	/* Epochs apply in order: 0 first, then each next one. */
	if (epoch != r->epoch + 1)
		return -EPROTO;
	for (uint64_t k = 0; k < nr_pages; k++)
		if (pages[k] >= r->vm->nr_pages)
			return -ERANGE;
	return 0;
}

/*
 * Writes every listed page's last copy: from the end of the list, a page
 * already written is skipped (its earlier copies are older).
 */
static void write_pages(struct replica *r, const uint64_t *pages, uint64_t nr_pages,
			const uint8_t *data)
{
	for (uint64_t k = nr_pages; k-- > 0;) {
		uint64_t page = pages[k], bit = 1ULL << (page % 64);

		if (r->seen[page / 64] & bit)
			continue;
		r->seen[page / 64] |= bit;
		memcpy(vm_page_hva(r->vm, page), data + k * VM_PAGE_SIZE, VM_PAGE_SIZE);
		vm_mark_touched(r->vm, page);
	}
	for (uint64_t k = 0; k < nr_pages; k++)
		r->seen[pages[k] / 64] = 0;
}

int replica_apply(struct replica *r, uint64_t epoch, const uint64_t *pages, uint64_t nr_pages,
		  const uint8_t *data, const struct machine_state *state)
{
	int ret = check_epoch(r, epoch, pages, nr_pages);

	if (ret < 0)
		return ret;
	if (state->nr_vcpus != r->vm->nr_vcpus || state->nr_devices != r->vm->nr_devices)
		return -EINVAL;
	/* Everything checked: from here on nothing can fail halfway. */
	write_pages(r, pages, nr_pages, data);
	memcpy(r->committed, state, sizeof(*state));
	r->epoch = epoch;
	r->checkpoint = epoch;
	r->has_checkpoint = true;
	/* A torn image was synced again by this session before its first checkpoint. */
	r->disk_torn = false;
	return 0;
}

int replica_apply_disk(struct replica *r, uint64_t epoch, const struct disk_log *log, bool durable,
		       bool *ret_torn)
{
	int ret = check_epoch(r, epoch, NULL, 0);

	*ret_torn = false;
	if (ret < 0 || (!log->nr && !durable))
		return ret;
	if (!r->disk)
		return -ENODEV;
	ret = diskimg_apply(r->disk, log, durable, ret_torn);
	if (ret < 0 && *ret_torn)
		replica_disk_torn(r);
	return ret;
}

void replica_disk_torn(struct replica *r)
{
	r->has_checkpoint = false;
	r->disk_torn = true;
}

int replica_apply_sync(struct replica *r, uint64_t epoch, const uint64_t *pages, uint64_t nr_pages,
		       const uint8_t *data, const uint64_t *zero_pages, uint64_t nr_zero)
{
	int ret = check_epoch(r, epoch, pages, nr_pages);

	if (ret == 0)
		ret = check_epoch(r, epoch, zero_pages, nr_zero);
	if (ret < 0)
		return ret;
	write_pages(r, pages, nr_pages, data);
	/*
	 * Only pages ever written here can be other than zero: the rest are not
	 * even read (not resident in a fresh replica, and reading costs).
	 */
	for (uint64_t k = 0; k < nr_zero; k++)
		if (vm_page_touched(r->vm, zero_pages[k]) && !vm_page_is_zero(r->vm, zero_pages[k]))
			memset(vm_page_hva(r->vm, zero_pages[k]), 0, VM_PAGE_SIZE);
	r->epoch = epoch;
	r->has_checkpoint = false;
	return 0;
}

void replica_new_session(struct replica *r)
{
	r->epoch = UINT64_MAX;
}

int replica_promote(struct replica *r)
{
	int ret;

	if (r->promoted)
		return -EALREADY;
	if (!r->has_checkpoint)
		return -ENODATA;
	ret = machine_load(r->vm, r->committed);
	if (ret < 0)
		return ret;
	ret = vm_start(r->vm);
	if (ret < 0)
		return ret;
	r->promoted = true;
	return 0;
}
