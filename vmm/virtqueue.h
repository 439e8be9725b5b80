/* SPDX-License-Identifier: MIT */
/*
 * Split virtqueues (virtio 1.2, 2.7), the device side: pop descriptor chains the
 * driver made available, push used elements back. No indirect descriptors, no
 * EVENT_IDX: the driver's VIRTQ_AVAIL_F_NO_INTERRUPT flag is honoured.
 *
 * The driver is untrusted. Every guest address is checked with vm_gpa_to_hva();
 * a bad address, a chain that loops or is longer than the queue, or an avail
 * index that runs ahead by more than the queue size breaks the queue: the call
 * returns -EIO, vq->broken is set and the queue does nothing more until the
 * driver resets the device (the transport sets DEVICE_NEEDS_RESET).
 *
 * Every byte written into guest memory (used ring, received data) is marked with
 * vm_mark_device_dirty(), because KVM logs only the vCPUs' writes.
 *
 * Threads: the owner only (vm_devices_poll), under the transport's lock.
 */
#ifndef RINGFT_VMM_VIRTQUEUE_H
#define RINGFT_VMM_VIRTQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;

#define VQ_NUM_MAX 256 /* QueueNumMax of every queue; a chain has at most this many */

struct virtqueue {
	/* Set by the driver through the transport while the queue is not ready. */
	uint16_t num;
	bool ready;
	uint64_t desc;	 /* descriptor table */
	uint64_t driver; /* available ring */
	uint64_t device; /* used ring */
	/* The device's own position: next avail entry to pop, next used index. */
	uint16_t last_avail_idx;
	uint16_t used_idx;
	bool broken;
};

struct vq_seg {
	uint64_t gpa;
	uint8_t *hva;
	uint32_t len;
	bool write; /* device-writable */
};

struct vq_chain {
	uint16_t head;
	unsigned int nr;
	uint64_t out_len; /* bytes the device reads */
	uint64_t in_len;  /* bytes the device may write */
	struct vq_seg seg[VQ_NUM_MAX];
};

void vq_reset(struct virtqueue *vq);
/* Checks the ring addresses and size before the queue goes ready: 0 or -EINVAL. */
int vq_validate(const struct virtqueue *vq, struct vm *vm);
/* True if the driver made a chain available that was not popped yet. */
bool vq_has_avail(struct virtqueue *vq, struct vm *vm);
/*
 * Walks the chain at `head` into *ret_chain with vq_pop()'s checks, without
 * touching the avail ring: 0, or -EIO the queue broke. For the chains a loaded
 * device re-executes: the saved state holds their heads, not their segments.
 */
int vq_chain_at(struct virtqueue *vq, struct vm *vm, uint16_t head, struct vq_chain *ret_chain);
/* Pops the next chain: 1 popped, 0 none available, -EIO the queue broke. */
int vq_pop(struct virtqueue *vq, struct vm *vm, struct vq_chain *c);
/* Gives the last popped chain back to the avail ring (it is popped again next). */
void vq_unpop(struct virtqueue *vq);
/* Returns a chain as used, `len` bytes written into it: 0 or -EIO. */
int vq_push(struct virtqueue *vq, struct vm *vm, uint16_t head, uint32_t len);
/* After pushes: false if the driver asked for no interrupts. */
bool vq_wants_interrupt(struct virtqueue *vq, struct vm *vm);

/*
 * Copies the chain's readable bytes from offset `skip` into buf (at most `len`):
 * returns the number copied.
 */
size_t vq_chain_read(const struct vq_chain *c, size_t skip, uint8_t *buf, size_t len);
/*
 * Writes `len` bytes of src into the chain's writable segments from offset
 * `off`, marking the pages dirty: returns the number written (short if the
 * chain is).
 */
size_t vq_chain_write(const struct vq_chain *c, struct vm *vm, size_t off, const uint8_t *src,
		      size_t len);

#endif
