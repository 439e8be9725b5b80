/* SPDX-License-Identifier: MIT */
/*
 * The virtio-mmio transport for builtin:kv's drivers (virtio_mmio.h): the steps
 * of a driver's initialisation (virtio 1.2, 3.1.1) that do not depend on the
 * device type.
 */
#include "guest/kv/virtio_mmio.h"
#include "guest/kv/kv.h"

/* kv_panic() with the device's name before the message: "kv: virtio-net: ...". */
__attribute__((noreturn)) static void vmmio_panic(const struct vmmio *m, const char *msg)
{
	kv_line_start("kv: ");
	kv_line_str(m->name);
	kv_line_str(": ");
	kv_line_str(msg);
	kv_line_end();
	guest_panic();
}

enum vmmio_probe vmmio_probe(uint64_t mmio_gpa, uint32_t device_id)
{
	const struct vmmio m = { .base = (volatile uint8_t *)(uintptr_t)mmio_gpa };

	if (vmmio_rd(&m, VM_MAGIC) != MMIO_MAGIC)
		return VMMIO_BAD_MAGIC;
	if (vmmio_rd(&m, VM_VERSION) != 2)
		return VMMIO_BAD_VERSION;
	if (vmmio_rd(&m, VM_DEVICE_ID) != device_id)
		return VMMIO_OTHER_DEVICE;
	return VMMIO_FOUND;
}

uint64_t vmmio_begin(struct vmmio *m, uint64_t mmio_gpa, const char *name)
{
	uint32_t lo, hi;

	m->base = (volatile uint8_t *)(uintptr_t)mmio_gpa;
	m->name = name;
	vmmio_wr(m, VM_STATUS, 0);
	while (vmmio_rd(m, VM_STATUS))
		cpu_relax();
	vmmio_wr(m, VM_STATUS, ST_ACKNOWLEDGE);
	vmmio_wr(m, VM_STATUS, ST_ACKNOWLEDGE | ST_DRIVER);

	vmmio_wr(m, VM_DEV_FEAT_SEL, 0);
	lo = vmmio_rd(m, VM_DEV_FEATURES);
	vmmio_wr(m, VM_DEV_FEAT_SEL, 1);
	hi = vmmio_rd(m, VM_DEV_FEATURES);
	if (!(hi & (1u << (F_VERSION_1 - 32))))
		vmmio_panic(m, "device lacks VIRTIO_F_VERSION_1");
	return (uint64_t)hi << 32 | lo;
}

void vmmio_set_features(const struct vmmio *m, uint64_t features)
{
	vmmio_wr(m, VM_DRV_FEAT_SEL, 0);
	vmmio_wr(m, VM_DRV_FEATURES, (uint32_t)features);
	vmmio_wr(m, VM_DRV_FEAT_SEL, 1);
	vmmio_wr(m, VM_DRV_FEATURES, (uint32_t)(features >> 32));
	vmmio_wr(m, VM_STATUS, ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK);
	if (!(vmmio_rd(m, VM_STATUS) & ST_FEATURES_OK)) {
		vmmio_wr(m, VM_STATUS, ST_FAILED);
		vmmio_panic(m, "device refused our features (FEATURES_OK did not stick)");
	}
}

uint32_t vmmio_queue_max(const struct vmmio *m, unsigned int index)
{
	vmmio_wr(m, VM_QUEUE_SEL, index);
	if (vmmio_rd(m, VM_QUEUE_READY))
		vmmio_panic(m, "queue already ready after reset");
	return vmmio_rd(m, VM_QUEUE_NUM_MAX);
}

void vmmio_queue_ready(const struct vmmio *m, uint16_t num, void *desc, void *avail, void *used)
{
	uint64_t a;

	vmmio_wr(m, VM_QUEUE_NUM, num);
	a = (uint64_t)(uintptr_t)desc;
	vmmio_wr(m, VM_QUEUE_DESC_LO, (uint32_t)a);
	vmmio_wr(m, VM_QUEUE_DESC_HI, (uint32_t)(a >> 32));
	a = (uint64_t)(uintptr_t)avail;
	vmmio_wr(m, VM_QUEUE_AVAIL_LO, (uint32_t)a);
	vmmio_wr(m, VM_QUEUE_AVAIL_HI, (uint32_t)(a >> 32));
	a = (uint64_t)(uintptr_t)used;
	vmmio_wr(m, VM_QUEUE_USED_LO, (uint32_t)a);
	vmmio_wr(m, VM_QUEUE_USED_HI, (uint32_t)(a >> 32));
	*(uint16_t *)avail = AVAIL_F_NO_INTERRUPT; /* the avail ring's flags: polled */
	vmmio_wr(m, VM_QUEUE_READY, 1);
}

void vmmio_driver_ok(const struct vmmio *m)
{
	vmmio_wr(m, VM_STATUS, ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
	vmmio_check(m);
}

void vmmio_check(const struct vmmio *m)
{
	if (vmmio_rd(m, VM_STATUS) & ST_DEVICE_NEEDS_RESET)
		vmmio_panic(m, "device needs reset (DEVICE_NEEDS_RESET)");
}

int vmmio_notify(const struct vmmio *m, unsigned int index, const uint16_t *used_flags)
{
	/* Our avail idx visible before we read the device's flags (virtio 1.2, 2.7.13.4). */
	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (__atomic_load_n(used_flags, __ATOMIC_RELAXED) & USED_F_NO_NOTIFY)
		return 0;
	vmmio_wr(m, VM_QUEUE_NOTIFY, index);
	return 1;
}
