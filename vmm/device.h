/* SPDX-License-Identifier: MIT */
/*
 * Emulated devices: one device per file behind this ops table. A device claims a
 * port-I/O range, an MMIO range (guest-physical, outside RAM), or both. Every
 * device saves and loads its registers as a flat blob, because checkpoints carry
 * the state of every device.
 *
 * Threads: io() and mmio() run on vCPU threads, possibly several at once: the
 * device locks what it shares. poll(), save(), load() and reset() run on the
 * VM's owner thread; save() and load() only while the vCPUs are parked. A device
 * reads and writes guest memory only from poll() (see vm_devices_poll() in vm.h),
 * so a checkpoint taken by the owner is a consistent cut of vCPUs and devices.
 */
#ifndef RINGFT_VMM_DEVICE_H
#define RINGFT_VMM_DEVICE_H

#include <stddef.h>
#include <stdint.h>

/* Largest saved device blob; virtio-net needs 128 bytes (virtio_mmio.h). */
#define DEVICE_STATE_MAX 256

struct device;

struct device_ops {
	const char *name;
	/*
	 * `count` accesses of `size` bytes each at `port` (base <= port < base + len):
	 * count > 1 is a string instruction (`rep outsb`) that KVM batched into one
	 * exit. KVM may also split one: kvm_pvm exits once per byte. For writes `data` holds size *
	 * count bytes; for reads the device fills them. NULL if the device has no ports.
	 */
	void (*io)(struct device *dev, uint16_t port, int is_write, uint8_t *data, uint32_t size,
		   uint32_t count);
	/*
	 * One access of `len` (1, 2, 4 or 8) bytes at guest-physical `gpa`, with
	 * mmio_base <= gpa < mmio_base + mmio_len. For reads the device fills `data`.
	 * NULL if the device has no MMIO range.
	 */
	void (*mmio)(struct device *dev, uint64_t gpa, int is_write, uint8_t *data, uint32_t len);
	/*
	 * Owner only: do the work vCPUs or backends asked for (queue notifies, I/O
	 * completions). Returns 0 or -errno (a backend failure the owner should
	 * report). NULL if the device never has work.
	 */
	int (*poll)(struct device *dev);
	void (*reset)(struct device *dev);
	/* Returns the number of bytes written to buf (at most DEVICE_STATE_MAX) or -errno. */
	int (*save)(struct device *dev, uint8_t *buf, size_t len);
	int (*load)(struct device *dev, const uint8_t *buf, size_t len);
	void (*free)(struct device *dev);
};

struct device {
	const struct device_ops *ops;
	uint16_t port_base;
	uint16_t port_len; /* 0: no ports */
	uint64_t mmio_base;
	uint64_t mmio_len; /* 0: no MMIO range */
	void *priv;
};

/* Saved state of one device, as plain data. */
struct device_state {
	char name[16];
	uint32_t len;
	uint8_t data[DEVICE_STATE_MAX];
};

#endif
