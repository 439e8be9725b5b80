// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdlib.h>
#include <xxhash.h>

#include "vmm/memhash.h"
#include "vmm/vm.h"

#define HASH_CHUNK_PAGES 512ULL /* 2 MiB */

struct hash_work {
	struct vm *vm;
	uint64_t *sums;
};

static void hash_chunk(void *arg, uint32_t chunk)
{
	struct hash_work *w = arg;
	uint64_t first = (uint64_t)chunk * HASH_CHUNK_PAGES;
	uint64_t n = w->vm->nr_pages - first < HASH_CHUNK_PAGES ? w->vm->nr_pages - first
								: HASH_CHUNK_PAGES;

	w->sums[chunk] = XXH3_64bits(vm_page_hva(w->vm, first), n * VM_PAGE_SIZE);
}

int vm_memory_hash(struct vm *vm, bool paused, uint64_t *ret)
{
	uint32_t chunks = (uint32_t)((vm->nr_pages + HASH_CHUNK_PAGES - 1) / HASH_CHUNK_PAGES);
	struct hash_work w = { .vm = vm, .sums = calloc(chunks, sizeof(uint64_t)) };

	if (!w.sums)
		return -ENOMEM;
	if (paused)
		vm_paused_parallel(vm, hash_chunk, &w, chunks);
	else
		for (uint32_t c = 0; c < chunks; c++)
			hash_chunk(&w, c);
	*ret = XXH3_64bits(w.sums, chunks * sizeof(uint64_t));
	free(w.sums);
	return 0;
}
