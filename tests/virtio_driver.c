// SPDX-License-Identifier: MIT
/*
 * The test as the guest's virtio driver (virtio_driver.h). Descriptors are 16
 * bytes (addr, len, flags, next), the avail ring is flags, idx, ring[], the
 * used ring flags, idx, then (id, len) elements: virtio 1.2, 2.7.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "tests/kvm_helpers.h"
#include "tests/virtio_driver.h"
#include "vmm/virtio_mmio.h"
#include "vmm/vm.h"

#define VDRV_POLL_NS 10000000000ULL

struct device *vdrv_attach(struct vdrv *d, struct vm *vm, unsigned int nr_queues)
{
	assert_true(vm->nr_devices > 0 && nr_queues <= VDRV_QUEUES_MAX);
	*d = (struct vdrv){ .vm = vm,
			    .dev = vm->devices[vm->nr_devices - 1],
			    .nr_queues = nr_queues };
	return d->dev;
}

uint32_t vdrv_rd(struct device *dev, uint64_t off)
{
	uint32_t v;

	dev->ops->mmio(dev, dev->mmio_base + off, 0, (uint8_t *)&v, 4);
	return v;
}

void vdrv_wr(struct device *dev, uint64_t off, uint32_t v)
{
	dev->ops->mmio(dev, dev->mmio_base + off, 1, (uint8_t *)&v, 4);
}

void *vdrv_hva(struct vm *vm, uint64_t gpa, uint64_t len)
{
	void *p = vm_gpa_to_hva(vm, gpa, len);

	assert_non_null(p);
	return p;
}

uint32_t vdrv_negotiate(struct device *dev, uint64_t features)
{
	vdrv_wr(dev, VIRTIO_MMIO_STATUS, 0);
	vdrv_wr(dev, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE);
	vdrv_wr(dev, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	vdrv_wr(dev, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	vdrv_wr(dev, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)features);
	vdrv_wr(dev, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	vdrv_wr(dev, VIRTIO_MMIO_DRIVER_FEATURES, (uint32_t)(features >> 32));
	vdrv_wr(dev, VIRTIO_MMIO_STATUS,
		VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	return vdrv_rd(dev, VIRTIO_MMIO_STATUS);
}

/* Queue q, empty, at its addresses: the driver starts handing out descriptor 0. */
static void vdrv_queue(struct vdrv *d, unsigned int q)
{
	struct vdrv_queue *vq = &d->q[q];
	struct device *dev = d->dev;

	memset(vdrv_hva(d->vm, vq->desc, 0x3000), 0, 0x3000);
	vq->next_desc = vq->avail_idx = 0;
	vdrv_wr(dev, VIRTIO_MMIO_QUEUE_SEL, q);
	assert_int_equal(vdrv_rd(dev, VIRTIO_MMIO_QUEUE_READY), 0);
	assert_int_equal(vdrv_rd(dev, VIRTIO_MMIO_QUEUE_NUM_MAX), VQ_NUM_MAX);
	vdrv_wr(dev, VIRTIO_MMIO_QUEUE_NUM, VDRV_QNUM);
	vdrv_wr(dev, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)vq->desc);
	vdrv_wr(dev, VIRTIO_MMIO_QUEUE_DESC_HIGH, (uint32_t)(vq->desc >> 32));
	vdrv_wr(dev, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)vq->avail);
	vdrv_wr(dev, VIRTIO_MMIO_QUEUE_AVAIL_HIGH, (uint32_t)(vq->avail >> 32));
	vdrv_wr(dev, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)vq->used);
	vdrv_wr(dev, VIRTIO_MMIO_QUEUE_USED_HIGH, (uint32_t)(vq->used >> 32));
	vdrv_wr(dev, VIRTIO_MMIO_QUEUE_READY, 1);
	assert_int_equal(vdrv_rd(dev, VIRTIO_MMIO_QUEUE_READY), 1);
}

void vdrv_init(struct vdrv *d, uint64_t features)
{
	assert_true(vdrv_negotiate(d->dev, features) & VIRTIO_STATUS_FEATURES_OK);
	for (unsigned int q = 0; q < d->nr_queues; q++)
		vdrv_queue(d, q);
	vdrv_wr(d->dev, VIRTIO_MMIO_STATUS,
		VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
			VIRTIO_STATUS_DRIVER_OK);
	assert_int_equal(vdrv_rd(d->dev, VIRTIO_MMIO_STATUS) & 0xff, 0x0f);
}

uint16_t vdrv_add(struct vdrv *d, unsigned int q, const struct vdrv_seg *segs, unsigned int n)
{
	struct vdrv_queue *vq = &d->q[q];
	uint8_t *table = vdrv_hva(d->vm, vq->desc, 16 * VDRV_QNUM);
	uint16_t *avail = vdrv_hva(d->vm, vq->avail, 6 + 2 * VDRV_QNUM);
	uint16_t head = vq->next_desc % VDRV_QNUM;

	for (unsigned int i = 0; i < n; i++) {
		uint16_t id = (uint16_t)((head + i) % VDRV_QNUM);
		uint16_t flags = (segs[i].write ? 2 : 0) | (i + 1 < n ? 1 : 0);
		uint16_t next = (uint16_t)((id + 1) % VDRV_QNUM);

		memcpy(table + 16 * id, &segs[i].gpa, 8);
		memcpy(table + 16 * id + 8, &segs[i].len, 4);
		memcpy(table + 16 * id + 12, &flags, 2);
		memcpy(table + 16 * id + 14, &next, 2);
	}
	vq->next_desc = (uint16_t)(vq->next_desc + n);
	avail[2 + vq->avail_idx % VDRV_QNUM] = head;
	/* The chain and its ring entry before the index that makes them the device's. */
	__atomic_store_n(&avail[1], (uint16_t)(vq->avail_idx + 1), __ATOMIC_RELEASE);
	vq->avail_idx++;
	return head;
}

void vdrv_notify(struct vdrv *d, unsigned int q)
{
	vdrv_wr(d->dev, VIRTIO_MMIO_QUEUE_NOTIFY, q);
}

uint16_t vdrv_used_idx(struct vdrv *d, unsigned int q)
{
	return __atomic_load_n((uint16_t *)vdrv_hva(d->vm, d->q[q].used + 2, 2), __ATOMIC_ACQUIRE);
}

void vdrv_used_elem(struct vdrv *d, unsigned int q, uint16_t i, uint32_t *ret_id, uint32_t *ret_len)
{
	uint8_t *e = vdrv_hva(d->vm, d->q[q].used + 4 + 8 * (i % VDRV_QNUM), 8);

	memcpy(ret_id, e, 4);
	memcpy(ret_len, e + 4, 4);
}

bool vdrv_poll_until(struct vm *vm, bool (*cond)(void *opaque, uintptr_t arg), void *opaque,
		     uintptr_t arg)
{
	uint64_t deadline = t_now_ns() + VDRV_POLL_NS;

	while (!cond(opaque, arg)) {
		struct pollfd p = { .fd = vm_device_fd(vm), .events = POLLIN };

		if (t_now_ns() > deadline)
			return false;
		poll(&p, 1, 100);
		assert_int_equal(vm_devices_poll(vm), 0);
	}
	return true;
}

struct used_is {
	struct vdrv *d;
	unsigned int q;
};

static bool used_is(void *opaque, uintptr_t n)
{
	struct used_is *u = opaque;

	return vdrv_used_idx(u->d, u->q) == n;
}

bool vdrv_poll_used(struct vdrv *d, unsigned int q, uint16_t n)
{
	struct used_is u = { d, q };

	return vdrv_poll_until(d->vm, used_is, &u, n);
}

void vdrv_harvest(struct vm *vm, struct dirty_set *s)
{
	dirty_set_clear(s);
	assert_int_equal(vm_harvest(vm, s, NULL), 0);
	dirty_set_sort(s);
}

void vdrv_assert_pages(const struct dirty_set *s, const uint64_t *pages, unsigned int n)
{
	if (s->count != n) {
		for (uint64_t i = 0; i < s->count; i++)
			fprintf(stderr, "dirty page 0x%llx\n", (unsigned long long)s->pages[i]);
	}
	assert_int_equal(s->count, n);
	for (unsigned int i = 0; i < n; i++)
		assert_int_equal(s->pages[i], pages[i]);
}
