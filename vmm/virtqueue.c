// SPDX-License-Identifier: MIT
/*
 * Split virtqueues, the device side (virtqueue.h). Rings live in guest memory
 * and are re-resolved with vm_gpa_to_hva() on every use, so nothing here can
 * read or write outside guest RAM whatever the driver puts in them.
 *
 * Memory ordering, as in the spec (2.7.13, 2.7.14): the driver fills
 * descriptors and the avail ring, then publishes avail->idx; we load idx with
 * acquire before reading what it covers. We fill used elements, then publish
 * used->idx with release.
 */
#include <errno.h>
#include <string.h>

#include "vmm/virtqueue.h"
#include "vmm/vm.h"

#define VIRTQ_DESC_F_NEXT	   1
#define VIRTQ_DESC_F_WRITE	   2
#define VIRTQ_DESC_F_INDIRECT	   4
#define VIRTQ_AVAIL_F_NO_INTERRUPT 1

struct virtq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct virtq_used_elem {
	uint32_t id;
	uint32_t len;
};

static uint64_t desc_size(uint16_t num)
{
	return 16ULL * num;
}

static uint64_t avail_size(uint16_t num)
{
	return 6 + 2ULL * num;
}

static uint64_t used_size(uint16_t num)
{
	return 6 + 8ULL * num;
}

void vq_reset(struct virtqueue *vq)
{
	*vq = (struct virtqueue){ 0 };
}

int vq_validate(const struct virtqueue *vq, struct vm *vm)
{
	if (!vq->num || vq->num > VQ_NUM_MAX || (vq->num & (vq->num - 1)))
		return -EINVAL;
	if (vq->desc % 16 || vq->driver % 2 || vq->device % 4)
		return -EINVAL;
	if (!vm_gpa_to_hva(vm, vq->desc, desc_size(vq->num)) ||
	    !vm_gpa_to_hva(vm, vq->driver, avail_size(vq->num)) ||
	    !vm_gpa_to_hva(vm, vq->device, used_size(vq->num)))
		return -EINVAL;
	return 0;
}

static int vq_break(struct virtqueue *vq)
{
	vq->broken = true;
	return -EIO;
}

static uint16_t *avail_ring(struct virtqueue *vq, struct vm *vm)
{
	return vm_gpa_to_hva(vm, vq->driver, avail_size(vq->num));
}

/* Entries available and not popped; -EIO if the index is not believable. */
static int vq_pending(struct virtqueue *vq, struct vm *vm, uint16_t **ret_avail)
{
	uint16_t *avail, idx, n;

	if (!vq->ready || vq->broken)
		return 0;
	avail = avail_ring(vq, vm);
	if (!avail)
		return vq_break(vq);
	idx = __atomic_load_n(&avail[1], __ATOMIC_ACQUIRE);
	n = (uint16_t)(idx - vq->last_avail_idx);
	if (n > vq->num)
		return vq_break(vq);
	*ret_avail = avail;
	return n;
}

bool vq_has_avail(struct virtqueue *vq, struct vm *vm)
{
	uint16_t *avail;

	return vq_pending(vq, vm, &avail) > 0;
}

int vq_chain_at(struct virtqueue *vq, struct vm *vm, uint16_t head, struct vq_chain *ret_chain)
{
	const struct virtq_desc *table = vm_gpa_to_hva(vm, vq->desc, desc_size(vq->num));
	uint16_t i = head;

	ret_chain->head = head;
	ret_chain->nr = 0;
	ret_chain->out_len = ret_chain->in_len = 0;
	if (!table || head >= vq->num)
		return vq_break(vq);
	for (;;) {
		struct virtq_desc d;
		struct vq_seg *s;

		/* A copy: the driver may change the table under us; we check what we use. */
		memcpy(&d, &table[i], sizeof(d));
		if (ret_chain->nr == vq->num || (d.flags & VIRTQ_DESC_F_INDIRECT))
			return vq_break(vq); /* a loop, or a feature not offered */
		s = &ret_chain->seg[ret_chain->nr++];
		s->gpa = d.addr;
		s->len = d.len;
		s->write = d.flags & VIRTQ_DESC_F_WRITE;
		s->hva = vm_gpa_to_hva(vm, d.addr, d.len);
		if (!s->hva)
			return vq_break(vq);
		if (s->write)
			ret_chain->in_len += d.len;
		else
			ret_chain->out_len += d.len;
		if (!(d.flags & VIRTQ_DESC_F_NEXT))
			return 0;
		if (d.next >= vq->num)
			return vq_break(vq);
		i = d.next;
	}
}

int vq_pop(struct virtqueue *vq, struct vm *vm, struct vq_chain *c)
{
	uint16_t *avail;
	int n = vq_pending(vq, vm, &avail);

	if (n <= 0)
		return n;
	n = vq_chain_at(vq, vm, avail[2 + vq->last_avail_idx % vq->num], c);
	if (n < 0)
		return n;
	vq->last_avail_idx++;
	return 1;
}

void vq_unpop(struct virtqueue *vq)
{
	vq->last_avail_idx--;
}

int vq_push(struct virtqueue *vq, struct vm *vm, uint16_t head, uint32_t len)
{
	uint8_t *used;
	struct virtq_used_elem e = { .id = head, .len = len };
	uint64_t off;

	if (!vq->ready || vq->broken)
		return -EIO;
	used = vm_gpa_to_hva(vm, vq->device, used_size(vq->num));
	if (!used)
		return vq_break(vq);
	off = 4 + 8ULL * (vq->used_idx % vq->num);
	memcpy(used + off, &e, sizeof(e));
	vm_mark_device_dirty(vm, vq->device + off, sizeof(e));
	vq->used_idx++;
	__atomic_store_n((uint16_t *)(used + 2), vq->used_idx, __ATOMIC_RELEASE);
	vm_mark_device_dirty(vm, vq->device + 2, 2);
	return 0;
}

bool vq_wants_interrupt(struct virtqueue *vq, struct vm *vm)
{
	uint16_t *avail = avail_ring(vq, vm);

	/* Make the used idx visible before reading the driver's flags (2.7.10). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	return !avail ||
	       !(__atomic_load_n(&avail[0], __ATOMIC_RELAXED) & VIRTQ_AVAIL_F_NO_INTERRUPT);
}

size_t vq_chain_read(const struct vq_chain *c, size_t skip, uint8_t *buf, size_t len)
{
	size_t done = 0;

	for (unsigned int i = 0; i < c->nr && done < len; i++) {
		const struct vq_seg *s = &c->seg[i];
		size_t n;

		if (s->write)
			continue;
		if (skip >= s->len) {
			skip -= s->len;
			continue;
		}
		n = s->len - skip;
		if (n > len - done)
			n = len - done;
		memcpy(buf + done, s->hva + skip, n);
		done += n;
		skip = 0;
	}
	return done;
}

size_t vq_chain_write(const struct vq_chain *c, struct vm *vm, size_t off, const uint8_t *src,
		      size_t len)
{
	size_t done = 0;

	for (unsigned int i = 0; i < c->nr && done < len; i++) {
		const struct vq_seg *s = &c->seg[i];
		size_t n;

		if (!s->write)
			continue;
		if (off >= s->len) {
			off -= s->len;
			continue;
		}
		n = s->len - off;
		if (n > len - done)
			n = len - done;
		memcpy(s->hva + off, src + done, n);
		vm_mark_device_dirty(vm, s->gpa + off, n);
		done += n;
		off = 0;
	}
	return done;
}
