/* SPDX-License-Identifier: MIT */
/*
 * The virtio-mmio transport (virtio 1.2, 4.2, version 2) for builtin:kv's
 * poll-mode drivers (virtio_net.c, virtio_blk.c): registers, the probe, the
 * feature handshake, split-queue set-up and notification. A driver keeps its
 * own rings (their sizes differ) and decides its features and queue sizes; the
 * panics here name the device ("virtio-net: ...").
 */
#ifndef RINGFT_KV_VIRTIO_MMIO_H
#define RINGFT_KV_VIRTIO_MMIO_H

#include <stdint.h>

/* MMIO registers (virtio 1.2, 4.2.2). */
#define VM_MAGIC	  0x000
#define VM_VERSION	  0x004
#define VM_DEVICE_ID	  0x008
#define VM_DEV_FEATURES	  0x010
#define VM_DEV_FEAT_SEL	  0x014
#define VM_DRV_FEATURES	  0x020
#define VM_DRV_FEAT_SEL	  0x024
#define VM_QUEUE_SEL	  0x030
#define VM_QUEUE_NUM_MAX  0x034
#define VM_QUEUE_NUM	  0x038
#define VM_QUEUE_READY	  0x044
#define VM_QUEUE_NOTIFY	  0x050
#define VM_STATUS	  0x070
#define VM_QUEUE_DESC_LO  0x080
#define VM_QUEUE_DESC_HI  0x084
#define VM_QUEUE_AVAIL_LO 0x090
#define VM_QUEUE_AVAIL_HI 0x094
#define VM_QUEUE_USED_LO  0x0a0
#define VM_QUEUE_USED_HI  0x0a4
#define VM_CONFIG_GEN	  0x0fc
#define VM_CONFIG	  0x100

#define MMIO_MAGIC 0x74726976 /* "virt" */

#define ST_ACKNOWLEDGE	      1
#define ST_DRIVER	      2
#define ST_DRIVER_OK	      4
#define ST_FEATURES_OK	      8
#define ST_DEVICE_NEEDS_RESET 64
#define ST_FAILED	      128

#define F_VERSION_1 32

#define DESC_F_NEXT	     1
#define DESC_F_WRITE	     2
#define AVAIL_F_NO_INTERRUPT 1
#define USED_F_NO_NOTIFY     1

struct vq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct vmmio {
	volatile uint8_t *base;
	const char *name; /* "virtio-net": what its panics begin with */
};

static inline uint32_t vmmio_rd(const struct vmmio *m, uint32_t off)
{
	return *(volatile uint32_t *)(m->base + off);
}

static inline void vmmio_wr(const struct vmmio *m, uint32_t off, uint32_t v)
{
	*(volatile uint32_t *)(m->base + off) = v;
}

enum vmmio_probe {
	VMMIO_FOUND,
	VMMIO_BAD_MAGIC, /* an empty slot reads as all ones (vmm/vcpu.c) */
	VMMIO_BAD_VERSION,
	VMMIO_OTHER_DEVICE,
};

/* What answers at mmio_gpa: the first check that fails, in this order. */
enum vmmio_probe vmmio_probe(uint64_t mmio_gpa, uint32_t device_id);

/*
 * Resets the device, then ACKNOWLEDGE and DRIVER: returns the features it
 * offers. Panics without VIRTIO_F_VERSION_1.
 */
uint64_t vmmio_begin(struct vmmio *m, uint64_t mmio_gpa, const char *name);
/* Accepts `features` and sets FEATURES_OK; panics (status FAILED) if it does not stick. */
void vmmio_set_features(const struct vmmio *m, uint64_t features);
/* Selects queue `index` (not ready yet after the reset): returns its QueueNumMax. */
uint32_t vmmio_queue_max(const struct vmmio *m, unsigned int index);
/*
 * The selected queue: `num` entries, its rings at the given addresses (avail's
 * flags set to NO_INTERRUPT: the drivers poll), then QueueReady.
 */
void vmmio_queue_ready(const struct vmmio *m, uint16_t num, void *desc, void *avail, void *used);
/* DRIVER_OK, then vmmio_check(). */
void vmmio_driver_ok(const struct vmmio *m);
/* Panics if the device set DEVICE_NEEDS_RESET (reads Status: an exit). */
void vmmio_check(const struct vmmio *m);
/*
 * Notifies queue `index` unless the device's used ring (its flags at
 * used_flags) says it does not want to be: returns whether it did.
 */
int vmmio_notify(const struct vmmio *m, unsigned int index, const uint16_t *used_flags);

#endif
