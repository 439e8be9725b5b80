/* SPDX-License-Identifier: MIT */
/*
 * The virtio-mmio transport (virtio 1.2, 4.2, register layout version 2, as
 * Linux's drivers/virtio/virtio_mmio.c drives it), shared by every virtio device
 * (virtio_net.c, later virtio_blk.c). A device embeds struct virtio_dev, fills
 * in struct virtio_dev_ops (its ID, features, queues, config space, and what to
 * do when a queue is notified) and calls virtio_dev_init() + vm_add_device().
 *
 * Slot s sits at GUEST_VIRTIO_MMIO_GPA + s * GUEST_VIRTIO_MMIO_SIZE and raises
 * IRQ GUEST_VIRTIO_IRQ_BASE + s on the in-kernel irqchip (KVM_IRQ_LINE, level:
 * high while InterruptStatus is not 0).
 *
 * Threads (see vm.h): registers are read and written on vCPU threads under
 * vdev->lock. A QueueNotify write only records the queue and wakes the owner;
 * the owner's vm_devices_poll() runs the device's queue_notify() and poll()
 * hooks with vdev->lock held, and those are the only places that touch guest
 * memory. Save and load (the checkpoint) run on the owner with the vCPUs parked.
 *
 * Saved state (the device_ops save blob, little-endian, version 1): transport
 * registers, features both ways, per queue num/ready/addresses/indices, and the
 * config space: 56 + 32 * queues + config bytes (virtio-net: 128).
 */
#ifndef RINGFT_VMM_VIRTIO_MMIO_H
#define RINGFT_VMM_VIRTIO_MMIO_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

#include "vmm/device.h"
#include "vmm/virtqueue.h"

struct vm;

/* Registers (virtio 1.2, 4.2.2). */
#define VIRTIO_MMIO_MAGIC_VALUE		0x000
#define VIRTIO_MMIO_VERSION		0x004
#define VIRTIO_MMIO_DEVICE_ID		0x008
#define VIRTIO_MMIO_VENDOR_ID		0x00c
#define VIRTIO_MMIO_DEVICE_FEATURES	0x010
#define VIRTIO_MMIO_DEVICE_FEATURES_SEL 0x014
#define VIRTIO_MMIO_DRIVER_FEATURES	0x020
#define VIRTIO_MMIO_DRIVER_FEATURES_SEL 0x024
#define VIRTIO_MMIO_QUEUE_SEL		0x030
#define VIRTIO_MMIO_QUEUE_NUM_MAX	0x034
#define VIRTIO_MMIO_QUEUE_NUM		0x038
#define VIRTIO_MMIO_QUEUE_READY		0x044
#define VIRTIO_MMIO_QUEUE_NOTIFY	0x050
#define VIRTIO_MMIO_INTERRUPT_STATUS	0x060
#define VIRTIO_MMIO_INTERRUPT_ACK	0x064
#define VIRTIO_MMIO_STATUS		0x070
#define VIRTIO_MMIO_QUEUE_DESC_LOW	0x080
#define VIRTIO_MMIO_QUEUE_DESC_HIGH	0x084
#define VIRTIO_MMIO_QUEUE_AVAIL_LOW	0x090
#define VIRTIO_MMIO_QUEUE_AVAIL_HIGH	0x094
#define VIRTIO_MMIO_QUEUE_USED_LOW	0x0a0
#define VIRTIO_MMIO_QUEUE_USED_HIGH	0x0a4
#define VIRTIO_MMIO_SHM_SEL		0x0ac
#define VIRTIO_MMIO_SHM_LEN_LOW		0x0b0
#define VIRTIO_MMIO_SHM_LEN_HIGH	0x0b4
#define VIRTIO_MMIO_SHM_BASE_LOW	0x0b8
#define VIRTIO_MMIO_SHM_BASE_HIGH	0x0bc
#define VIRTIO_MMIO_CONFIG_GENERATION	0x0fc
#define VIRTIO_MMIO_CONFIG		0x100

#define VIRTIO_MMIO_MAGIC  0x74726976 /* "virt" */
#define VIRTIO_MMIO_VENDOR 0x54464752 /* "RGFT" */

/* Device status bits (2.1). */
#define VIRTIO_STATUS_ACKNOWLEDGE	 1
#define VIRTIO_STATUS_DRIVER		 2
#define VIRTIO_STATUS_DRIVER_OK		 4
#define VIRTIO_STATUS_FEATURES_OK	 8
#define VIRTIO_STATUS_DEVICE_NEEDS_RESET 0x40
#define VIRTIO_STATUS_FAILED		 0x80

/* InterruptStatus bits. */
#define VIRTIO_MMIO_INT_VRING  1
#define VIRTIO_MMIO_INT_CONFIG 2

#define VIRTIO_F_VERSION_1 32

#define VIRTIO_MAX_QUEUES    4
#define VIRTIO_CONFIG_MAX    64
#define VIRTIO_STATE_VERSION 1

struct virtio_dev;

struct virtio_dev_ops {
	const char *name; /* the device_ops name, in checkpoints: "virtio-net" */
	uint32_t device_id;
	/* Device features besides VIRTIO_F_VERSION_1, which the transport adds. */
	uint64_t features;
	unsigned int nr_queues; /* 1..VIRTIO_MAX_QUEUES */
	uint32_t config_len;	/* bytes of vdev->config the driver sees */
	/*
	 * Owner, lock held, device DRIVER_OK: queue q was notified (or kicked
	 * after a load or by the device itself). Pops and pushes as it likes.
	 */
	void (*queue_notify)(struct virtio_dev *vdev, unsigned int q);
	/* Owner, lock held: backend work (completions). Returns 0 or -errno. */
	int (*poll)(struct virtio_dev *vdev);
	/* Lock held, any thread: the driver reset the device. No guest memory. */
	void (*reset)(struct virtio_dev *vdev);
	void (*free)(struct virtio_dev *vdev);
};

struct virtio_dev {
	struct device dev;
	struct device_ops dops; /* the transport's ops under the device's name */
	struct vm *vm;
	const struct virtio_dev_ops *ops;
	unsigned int slot;
	unsigned int irq;
	pthread_mutex_t lock;

	/* Under lock. */
	uint64_t device_features;
	uint64_t driver_features;
	uint32_t device_features_sel;
	uint32_t driver_features_sel;
	uint32_t queue_sel;
	uint32_t status;
	uint32_t isr;
	uint32_t config_gen;
	uint32_t notify_pending; /* bit per queue: notified, not yet processed */
	bool irq_level;		 /* what KVM_IRQ_LINE was last told */
	struct virtqueue vq[VIRTIO_MAX_QUEUES];
	uint8_t config[VIRTIO_CONFIG_MAX]; /* little-endian, as the driver reads it */
};

/* Fills in vdev->dev for slot (0..GUEST_VIRTIO_MMIO_SLOTS-1); then vm_add_device(). */
int virtio_dev_init(struct virtio_dev *vdev, struct vm *vm, unsigned int slot,
		    const struct virtio_dev_ops *ops);
/* Undoes init (the device's free hook calls it). */
void virtio_dev_destroy(struct virtio_dev *vdev);

/* Lock held. Raises InterruptStatus bits and the IRQ line. */
void virtio_dev_interrupt(struct virtio_dev *vdev, uint32_t bits);
/*
 * Lock held: a queue broke (bad address, loop): the device needs a reset, the
 * driver is told with a config interrupt.
 */
void virtio_dev_needs_reset(struct virtio_dev *vdev);
/* Lock held: queue q has used entries; interrupts unless the driver said not to. */
void virtio_dev_used(struct virtio_dev *vdev, unsigned int q);
/* Lock held: DRIVER_OK and not broken, the device may process queues. */
bool virtio_dev_live(const struct virtio_dev *vdev);
/* Any thread, lock held or not: process queue q at the next poll. */
void virtio_dev_kick(struct virtio_dev *vdev, unsigned int q);

#endif
