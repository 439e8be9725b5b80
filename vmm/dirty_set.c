// SPDX-License-Identifier: MIT
/* The deduplicating page set used by harvests and by the VMM's own writes. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "vmm/dirty.h"

void *map_noreserve(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

static size_t bits_bytes(uint64_t nr_pages)
{
	return (nr_pages + 63) / 64 * sizeof(uint64_t);
}

int dirty_set_init(struct dirty_set *s, uint64_t nr_pages)
{
	memset(s, 0, sizeof(*s));
	if (!nr_pages)
		return -EINVAL;
	s->bits = map_noreserve(bits_bytes(nr_pages));
	s->pages = map_noreserve(nr_pages * sizeof(uint64_t));
	if (!s->bits || !s->pages) {
		dirty_set_free(s);
		return -ENOMEM;
	}
	s->nr_pages = nr_pages;
	return 0;
}

void dirty_set_free(struct dirty_set *s)
{
	if (!s)
		return;
	if (s->bits)
		munmap(s->bits, bits_bytes(s->nr_pages ? s->nr_pages : 1));
	if (s->pages)
		munmap(s->pages, (s->nr_pages ? s->nr_pages : 1) * sizeof(uint64_t));
	memset(s, 0, sizeof(*s));
}

/* O(pages in the set): only the words holding members are touched. */
void dirty_set_clear(struct dirty_set *s)
{
	for (uint64_t i = 0; i < s->count; i++)
		s->bits[s->pages[i] / 64] = 0;
	s->count = 0;
}

void dirty_set_merge(struct dirty_set *dst, const struct dirty_set *src)
{
	for (uint64_t i = 0; i < src->count; i++)
		dirty_set_add(dst, src->pages[i]);
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

/* Ascending order, for page lists that read sequentially and for comparisons. */
void dirty_set_sort(struct dirty_set *s)
{
	qsort(s->pages, s->count, sizeof(*s->pages), cmp_u64);
}

const char *dirty_mode_name(enum dirty_mode mode)
{
	return mode == DIRTY_BITMAP ? "bitmap" : "ring";
}

int dirty_mode_parse(const char *name, enum dirty_mode *ret_mode)
{
	if (!strcmp(name, "ring"))
		*ret_mode = DIRTY_RING;
	else if (!strcmp(name, "bitmap"))
		*ret_mode = DIRTY_BITMAP;
	else
		return -EINVAL;
	return 0;
}

const struct dirty_ops *dirty_ops_for(enum dirty_mode mode)
{
	return mode == DIRTY_BITMAP ? &dirty_bitmap_ops : &dirty_ring_ops;
}
