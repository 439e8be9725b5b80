/* SPDX-License-Identifier: MIT */
/*
 * Emulated port-I/O devices: one device per file behind this ops table. Every
 * device saves and loads its registers as a flat blob, because checkpoints carry
 * the state of every device.
 */
#ifndef RINGFT_VMM_DEVICE_H
#define RINGFT_VMM_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#define DEVICE_STATE_MAX 256

struct device;

struct device_ops {
	const char *name;
	/*
	 * `count` accesses of `size` bytes each at `port` (base <= port < base + len):
	 * count > 1 is a string instruction (`rep outsb`) that KVM batched into one
	 * exit. KVM may also split one: kvm_pvm exits once per byte. For writes `data` holds size *
	 * count bytes; for reads the device fills them. Called from vCPU threads, possibly several
	 * at once: the device locks what it shares.
	 */
	void (*io)(struct device *dev, uint16_t port, int is_write, uint8_t *data, uint32_t size,
		   uint32_t count);
	void (*reset)(struct device *dev);
	/* Returns the number of bytes written to buf (at most DEVICE_STATE_MAX) or -errno. */
	int (*save)(struct device *dev, uint8_t *buf, size_t len);
	int (*load)(struct device *dev, const uint8_t *buf, size_t len);
	void (*free)(struct device *dev);
};

struct device {
	const struct device_ops *ops;
	uint16_t port_base;
	uint16_t port_len;
	void *priv;
};

/* Saved state of one device, as plain data. */
struct device_state {
	char name[16];
	uint32_t len;
	uint8_t data[DEVICE_STATE_MAX];
};

#endif
