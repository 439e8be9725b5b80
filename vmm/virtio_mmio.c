// SPDX-License-Identifier: MIT
/*
 * The virtio-mmio transport: registers (on vCPU threads), the owner's poll that
 * runs queue work, the interrupt line, and the saved form of a virtio device.
 * virtio_mmio.h has the threading rules; the device-specific parts live in one
 * file per device (virtio_net.c).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/kvm.h>

#include "guest/guest_abi.h"
#include "vmm/virtio_mmio.h"
#include "vmm/vm.h"

static struct virtio_dev *to_vdev(struct device *dev)
{
	return dev->priv;
}

bool virtio_dev_live(const struct virtio_dev *vdev)
{
	return (vdev->status & VIRTIO_STATUS_DRIVER_OK) &&
	       !(vdev->status & (VIRTIO_STATUS_DEVICE_NEEDS_RESET | VIRTIO_STATUS_FAILED));
}

/* Lock held: the line follows InterruptStatus (level-triggered). */
static void virtio_update_irq(struct virtio_dev *vdev)
{
	bool level = vdev->isr != 0;

	if (level == vdev->irq_level)
		return;
	/* Fails only without an irqchip: our VMs always have one. */
	if (vm_irq_line(vdev->vm, vdev->irq, level) == 0)
		vdev->irq_level = level;
}

void virtio_dev_interrupt(struct virtio_dev *vdev, uint32_t bits)
{
	vdev->isr |= bits;
	virtio_update_irq(vdev);
}

void virtio_dev_needs_reset(struct virtio_dev *vdev)
{
	if (vdev->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET)
		return;
	vdev->status |= VIRTIO_STATUS_DEVICE_NEEDS_RESET;
	/* 2.1.2: a device that sets NEEDS_RESET after DRIVER_OK sends a config change. */
	if (vdev->status & VIRTIO_STATUS_DRIVER_OK)
		virtio_dev_interrupt(vdev, VIRTIO_MMIO_INT_CONFIG);
}

void virtio_dev_used(struct virtio_dev *vdev, unsigned int q)
{
	if (vq_wants_interrupt(&vdev->vq[q], vdev->vm))
		virtio_dev_interrupt(vdev, VIRTIO_MMIO_INT_VRING);
}

void virtio_dev_kick(struct virtio_dev *vdev, unsigned int q)
{
	__atomic_fetch_or(&vdev->notify_pending, 1u << q, __ATOMIC_RELAXED);
	vm_devices_kick(vdev->vm);
}

/* Lock held: back to the state after power-on (Status = 0). */
static void virtio_reset_locked(struct virtio_dev *vdev)
{
	vdev->driver_features = 0;
	vdev->device_features_sel = 0;
	vdev->driver_features_sel = 0;
	vdev->queue_sel = 0;
	vdev->status = 0;
	vdev->isr = 0;
	__atomic_store_n(&vdev->notify_pending, 0, __ATOMIC_RELAXED);
	for (unsigned int i = 0; i < VIRTIO_MAX_QUEUES; i++)
		vq_reset(&vdev->vq[i]);
	if (vdev->ops->reset)
		vdev->ops->reset(vdev);
	virtio_update_irq(vdev);
}

static struct virtqueue *selected_vq(struct virtio_dev *vdev)
{
	return vdev->queue_sel < vdev->ops->nr_queues ? &vdev->vq[vdev->queue_sel] : NULL;
}

static uint32_t reg_read(struct virtio_dev *vdev, uint64_t off)
{
	struct virtqueue *vq = selected_vq(vdev);

	switch (off) {
	case VIRTIO_MMIO_MAGIC_VALUE:
		return VIRTIO_MMIO_MAGIC;
	case VIRTIO_MMIO_VERSION:
		return 2;
	case VIRTIO_MMIO_DEVICE_ID:
		return vdev->ops->device_id;
	case VIRTIO_MMIO_VENDOR_ID:
		return VIRTIO_MMIO_VENDOR;
	case VIRTIO_MMIO_DEVICE_FEATURES:
		return vdev->device_features_sel < 2 ? (uint32_t)(vdev->device_features >>
								  (32 * vdev->device_features_sel))
						     : 0;
	case VIRTIO_MMIO_QUEUE_NUM_MAX:
		return vq ? VQ_NUM_MAX : 0;
	case VIRTIO_MMIO_QUEUE_READY:
		return vq ? vq->ready : 0;
	case VIRTIO_MMIO_INTERRUPT_STATUS:
		return vdev->isr;
	case VIRTIO_MMIO_STATUS:
		return vdev->status;
	case VIRTIO_MMIO_SHM_LEN_LOW:
	case VIRTIO_MMIO_SHM_LEN_HIGH:
		return 0xffffffff; /* no shared memory regions */
	case VIRTIO_MMIO_CONFIG_GENERATION:
		return vdev->config_gen;
	}
	return 0; /* write-only and reserved registers */
}

static void set_half(uint64_t *v, uint32_t val, bool high)
{
	if (high)
		*v = (*v & 0xffffffffULL) | (uint64_t)val << 32;
	else
		*v = (*v & ~0xffffffffULL) | val;
}

static void write_status(struct virtio_dev *vdev, uint32_t v)
{
	if (!v) {
		virtio_reset_locked(vdev);
		return;
	}
	/*
	 * FEATURES_OK only for a subset of what we offer that includes VERSION_1:
	 * a refused driver reads the bit back clear (3.1.1) and gives up.
	 */
	if ((v & VIRTIO_STATUS_FEATURES_OK) && !(vdev->status & VIRTIO_STATUS_FEATURES_OK) &&
	    ((vdev->driver_features & ~vdev->device_features) ||
	     !(vdev->driver_features & (1ULL << VIRTIO_F_VERSION_1))))
		v &= ~VIRTIO_STATUS_FEATURES_OK;
	/* DRIVER_OK without FEATURES_OK is a driver bug: do not go live. */
	if ((v & VIRTIO_STATUS_DRIVER_OK) && !(v & VIRTIO_STATUS_FEATURES_OK))
		v &= ~VIRTIO_STATUS_DRIVER_OK;
	v = (v & 0xff & ~VIRTIO_STATUS_DEVICE_NEEDS_RESET) |
	    (vdev->status & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	if ((v & VIRTIO_STATUS_DRIVER_OK) && !(vdev->status & VIRTIO_STATUS_DRIVER_OK)) {
		/* Buffers made available before DRIVER_OK are processed now. */
		for (unsigned int q = 0; q < vdev->ops->nr_queues; q++)
			__atomic_fetch_or(&vdev->notify_pending, 1u << q, __ATOMIC_RELAXED);
		vm_devices_kick(vdev->vm);
	}
	vdev->status = v;
}

static void write_queue_ready(struct virtio_dev *vdev, struct virtqueue *vq, uint32_t v)
{
	if (!v) {
		/* 4.2.3.2 disabling a queue: forget it, the driver resets the indices. */
		vq_reset(vq);
		return;
	}
	if (vq->ready)
		return;
	if (vq_validate(vq, vdev->vm) < 0) {
		virtio_dev_needs_reset(vdev);
		return;
	}
	vq->ready = true;
	vq->broken = false;
	vq->last_avail_idx = vq->used_idx = 0;
}

static void reg_write(struct virtio_dev *vdev, uint64_t off, uint32_t v)
{
	struct virtqueue *vq = selected_vq(vdev);
	bool writable_q = vq && !vq->ready; /* queue registers only while not ready */

	switch (off) {
	case VIRTIO_MMIO_DEVICE_FEATURES_SEL:
		vdev->device_features_sel = v;
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES:
		if (vdev->driver_features_sel < 2 && !(vdev->status & VIRTIO_STATUS_FEATURES_OK))
			set_half(&vdev->driver_features, v, vdev->driver_features_sel);
		break;
	case VIRTIO_MMIO_DRIVER_FEATURES_SEL:
		vdev->driver_features_sel = v;
		break;
	case VIRTIO_MMIO_QUEUE_SEL:
		vdev->queue_sel = v;
		break;
	case VIRTIO_MMIO_QUEUE_NUM:
		if (writable_q)
			vq->num = (uint16_t)(v <= VQ_NUM_MAX ? v : 0);
		break;
	case VIRTIO_MMIO_QUEUE_READY:
		if (vq)
			write_queue_ready(vdev, vq, v);
		break;
	case VIRTIO_MMIO_QUEUE_NOTIFY:
		/* The queue index (without VIRTIO_F_NOTIFICATION_DATA). Owner does the work. */
		if (v < vdev->ops->nr_queues)
			virtio_dev_kick(vdev, v);
		break;
	case VIRTIO_MMIO_INTERRUPT_ACK:
		vdev->isr &= ~v;
		virtio_update_irq(vdev);
		break;
	case VIRTIO_MMIO_STATUS:
		write_status(vdev, v);
		break;
	case VIRTIO_MMIO_QUEUE_DESC_LOW:
	case VIRTIO_MMIO_QUEUE_DESC_HIGH:
		if (writable_q)
			set_half(&vq->desc, v, off == VIRTIO_MMIO_QUEUE_DESC_HIGH);
		break;
	case VIRTIO_MMIO_QUEUE_AVAIL_LOW:
	case VIRTIO_MMIO_QUEUE_AVAIL_HIGH:
		if (writable_q)
			set_half(&vq->driver, v, off == VIRTIO_MMIO_QUEUE_AVAIL_HIGH);
		break;
	case VIRTIO_MMIO_QUEUE_USED_LOW:
	case VIRTIO_MMIO_QUEUE_USED_HIGH:
		if (writable_q)
			set_half(&vq->device, v, off == VIRTIO_MMIO_QUEUE_USED_HIGH);
		break;
	case VIRTIO_MMIO_SHM_SEL:
	default:
		break; /* read-only and reserved registers */
	}
}

static void virtio_mmio(struct device *dev, uint64_t gpa, int is_write, uint8_t *data, uint32_t len)
{
	struct virtio_dev *vdev = to_vdev(dev);
	uint64_t off = gpa - dev->mmio_base;
	uint32_t v = 0;

	pthread_mutex_lock(&vdev->lock);
	if (off >= VIRTIO_MMIO_CONFIG) {
		/* Config space: any width. Read-only for our devices: writes are dropped. */
		off -= VIRTIO_MMIO_CONFIG;
		if (!is_write) {
			for (uint32_t i = 0; i < len; i++)
				data[i] =
					off + i < vdev->ops->config_len ? vdev->config[off + i] : 0;
		}
	} else if (len != 4 || off % 4) {
		/* 4.2.2.2: registers are 32-bit aligned words; anything else is undefined. */
		if (!is_write)
			memset(data, 0xff, len);
	} else if (is_write) {
		memcpy(&v, data, 4);
		reg_write(vdev, off, v);
	} else {
		v = reg_read(vdev, off);
		memcpy(data, &v, 4);
	}
	pthread_mutex_unlock(&vdev->lock);
}

static int virtio_poll(struct device *dev)
{
	struct virtio_dev *vdev = to_vdev(dev);
	uint32_t pending;
	int r = 0;

	pthread_mutex_lock(&vdev->lock);
	pending = __atomic_exchange_n(&vdev->notify_pending, 0, __ATOMIC_RELAXED);
	if (vdev->ops->poll)
		r = vdev->ops->poll(vdev);
	for (unsigned int q = 0; q < vdev->ops->nr_queues; q++) {
		if (!(pending & (1u << q)) || !virtio_dev_live(vdev))
			continue;
		if (vdev->vq[q].ready && !vdev->vq[q].broken)
			vdev->ops->queue_notify(vdev, q);
		if (vdev->vq[q].broken)
			virtio_dev_needs_reset(vdev);
	}
	pthread_mutex_unlock(&vdev->lock);
	return r;
}

static void virtio_device_reset(struct device *dev)
{
	struct virtio_dev *vdev = to_vdev(dev);

	pthread_mutex_lock(&vdev->lock);
	virtio_reset_locked(vdev);
	pthread_mutex_unlock(&vdev->lock);
}

/* The saved form: fixed-size little-endian fields, no padding, version first. */
struct virtio_saved_queue {
	uint64_t desc;
	uint64_t driver;
	uint64_t device;
	uint16_t num;
	uint16_t last_avail_idx;
	uint16_t used_idx;
	uint8_t ready;
	uint8_t broken;
};

struct virtio_saved {
	uint8_t version;
	uint8_t nr_queues;
	uint8_t config_len;
	uint8_t irq_level;
	uint32_t device_id;
	uint64_t device_features;
	uint64_t driver_features;
	uint32_t device_features_sel;
	uint32_t driver_features_sel;
	uint32_t queue_sel;
	uint32_t status;
	uint32_t isr;
	uint32_t config_gen;
	uint32_t reserved[2]; /* 0 */
};

_Static_assert(sizeof(struct virtio_saved_queue) == 32, "no padding in the saved queue");
_Static_assert(sizeof(struct virtio_saved) == 56, "no padding in the saved transport");
_Static_assert(sizeof(struct virtio_saved) + VIRTIO_MAX_QUEUES * sizeof(struct virtio_saved_queue) +
			       VIRTIO_CONFIG_MAX <=
		       DEVICE_STATE_MAX,
	       "every virtio device fits a device state blob");

static size_t saved_size(const struct virtio_dev *vdev)
{
	return sizeof(struct virtio_saved) +
	       vdev->ops->nr_queues * sizeof(struct virtio_saved_queue) + vdev->ops->config_len;
}

static int virtio_save(struct device *dev, uint8_t *buf, size_t len)
{
	struct virtio_dev *vdev = to_vdev(dev);
	size_t need = saved_size(vdev);
	struct virtio_saved s;
	uint8_t *p = buf + sizeof(s);

	if (len < need)
		return -ENOSPC;
	pthread_mutex_lock(&vdev->lock);
	s = (struct virtio_saved){
		.version = VIRTIO_STATE_VERSION,
		.nr_queues = (uint8_t)vdev->ops->nr_queues,
		.config_len = (uint8_t)vdev->ops->config_len,
		.irq_level = vdev->irq_level,
		.device_id = vdev->ops->device_id,
		.device_features = vdev->device_features,
		.driver_features = vdev->driver_features,
		.device_features_sel = vdev->device_features_sel,
		.driver_features_sel = vdev->driver_features_sel,
		.queue_sel = vdev->queue_sel,
		.status = vdev->status,
		.isr = vdev->isr,
		.config_gen = vdev->config_gen,
	};
	memcpy(buf, &s, sizeof(s));
	for (unsigned int i = 0; i < vdev->ops->nr_queues; i++) {
		const struct virtqueue *vq = &vdev->vq[i];
		struct virtio_saved_queue q = {
			.desc = vq->desc,
			.driver = vq->driver,
			.device = vq->device,
			.num = vq->num,
			.last_avail_idx = vq->last_avail_idx,
			.used_idx = vq->used_idx,
			.ready = vq->ready,
			.broken = vq->broken,
		};

		memcpy(p, &q, sizeof(q));
		p += sizeof(q);
	}
	memcpy(p, vdev->config, vdev->ops->config_len);
	pthread_mutex_unlock(&vdev->lock);
	return (int)need;
}

static int virtio_load(struct device *dev, const uint8_t *buf, size_t len)
{
	struct virtio_dev *vdev = to_vdev(dev);
	struct virtio_saved s;
	const uint8_t *p = buf + sizeof(s);

	if (len != saved_size(vdev))
		return -EINVAL;
	memcpy(&s, buf, sizeof(s));
	if (s.version != VIRTIO_STATE_VERSION || s.nr_queues != vdev->ops->nr_queues ||
	    s.config_len != vdev->ops->config_len || s.device_id != vdev->ops->device_id ||
	    s.device_features != vdev->device_features || (s.driver_features & ~s.device_features))
		return -EINVAL;
	pthread_mutex_lock(&vdev->lock);
	vdev->driver_features = s.driver_features;
	vdev->device_features_sel = s.device_features_sel;
	vdev->driver_features_sel = s.driver_features_sel;
	vdev->queue_sel = s.queue_sel;
	vdev->status = s.status & 0xff;
	vdev->isr = s.isr;
	vdev->config_gen = s.config_gen;
	for (unsigned int i = 0; i < vdev->ops->nr_queues; i++) {
		struct virtqueue *vq = &vdev->vq[i];
		struct virtio_saved_queue q;

		memcpy(&q, p, sizeof(q));
		p += sizeof(q);
		*vq = (struct virtqueue){
			.num = q.num,
			.ready = q.ready,
			.desc = q.desc,
			.driver = q.driver,
			.device = q.device,
			.last_avail_idx = q.last_avail_idx,
			.used_idx = q.used_idx,
			.broken = q.broken,
		};
		if (vq->ready && vq_validate(vq, vdev->vm) < 0)
			vq->broken = true;
	}
	memcpy(vdev->config, p, vdev->ops->config_len);
	/*
	 * Notifies are not saved: work the saved device had not done yet (a notify
	 * recorded but not processed, buffers made available after it) is found by
	 * looking at every queue.
	 */
	__atomic_store_n(&vdev->notify_pending, (1u << vdev->ops->nr_queues) - 1, __ATOMIC_RELAXED);
	/* Make KVM's line match (the irqchip state came with the VM state). */
	vdev->irq_level = !s.isr;
	virtio_update_irq(vdev);
	pthread_mutex_unlock(&vdev->lock);
	vm_devices_kick(vdev->vm);
	return 0;
}

static void virtio_free(struct device *dev)
{
	struct virtio_dev *vdev;

	if (!dev)
		return;
	vdev = to_vdev(dev);
	vdev->ops->free(vdev);
}

static const struct device_ops virtio_mmio_ops_template = {
	.mmio = virtio_mmio,
	.poll = virtio_poll,
	.reset = virtio_device_reset,
	.save = virtio_save,
	.load = virtio_load,
	.free = virtio_free,
};

int virtio_dev_init(struct virtio_dev *vdev, struct vm *vm, unsigned int slot,
		    const struct virtio_dev_ops *ops)
{
	int r;

	if (slot >= GUEST_VIRTIO_MMIO_SLOTS || !ops->nr_queues ||
	    ops->nr_queues > VIRTIO_MAX_QUEUES || ops->config_len > VIRTIO_CONFIG_MAX ||
	    !ops->queue_notify || !ops->free)
		return -EINVAL;
	r = -pthread_mutex_init(&vdev->lock, NULL);
	if (r < 0)
		return r;
	vdev->vm = vm;
	vdev->ops = ops;
	vdev->slot = slot;
	vdev->irq = GUEST_VIRTIO_IRQ_BASE + slot;
	vdev->device_features = ops->features | (1ULL << VIRTIO_F_VERSION_1);
	vdev->dops = virtio_mmio_ops_template;
	vdev->dops.name = ops->name;
	vdev->dev = (struct device){
		.ops = &vdev->dops,
		.mmio_base = GUEST_VIRTIO_MMIO_GPA + slot * GUEST_VIRTIO_MMIO_SIZE,
		.mmio_len = GUEST_VIRTIO_MMIO_SIZE,
		.priv = vdev,
	};
	for (unsigned int i = 0; i < VIRTIO_MAX_QUEUES; i++)
		vq_reset(&vdev->vq[i]);
	return 0;
}

void virtio_dev_destroy(struct virtio_dev *vdev)
{
	pthread_mutex_destroy(&vdev->lock);
}
