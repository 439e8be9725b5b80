/* SPDX-License-Identifier: MIT */
/*
 * The test as the guest's virtio driver (test_virtio.c, test_blk.c): it calls
 * a device's mmio op as a vCPU exit would, and writes descriptor tables and
 * rings straight into a real VM's memory. Every queue is VDRV_QNUM entries,
 * its descriptor table, avail and used rings in three pages from `desc` on;
 * descriptors are handed out in order, one chain after the other.
 *
 * The helpers fail the test (cmocka) rather than return errors.
 */
#ifndef RINGFT_TESTS_VIRTIO_DRIVER_H
#define RINGFT_TESTS_VIRTIO_DRIVER_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/dirty.h"

struct device;
struct vm;

#define VDRV_QNUM	16
#define VDRV_QUEUES_MAX 2

/* The driver's view of one queue. */
struct vdrv_queue {
	uint64_t desc, avail, used;
	uint16_t next_desc; /* free descriptors are handed out in order */
	uint16_t avail_idx;
};

/* One device's driver, in a test's fixture (the fixture owns the VM). */
struct vdrv {
	struct vm *vm;
	struct device *dev;
	unsigned int nr_queues;
	struct vdrv_queue q[VDRV_QUEUES_MAX];
};

/* One descriptor of a chain. */
struct vdrv_seg {
	uint64_t gpa;
	uint32_t len;
	bool write; /* device-writable */
};

/*
 * Drives the device `vm` created last, through nr_queues queues whose addresses
 * the caller puts in d->q[] before vdrv_init(): returns the device.
 */
struct device *vdrv_attach(struct vdrv *d, struct vm *vm, unsigned int nr_queues);

/* A 4-byte register read or write, as a vCPU's MMIO exit would do it. */
uint32_t vdrv_rd(struct device *dev, uint64_t off);
void vdrv_wr(struct device *dev, uint64_t off, uint32_t v);
/* Guest memory the test writes as the driver; fails the test if it is not RAM. */
void *vdrv_hva(struct vm *vm, uint64_t gpa, uint64_t len);

/* Negotiates `features`: returns the status read back after FEATURES_OK. */
uint32_t vdrv_negotiate(struct device *dev, uint64_t features);
/*
 * What a driver's probe does: `features` (which must be accepted), every queue
 * emptied and set up at its addresses, DRIVER_OK.
 */
void vdrv_init(struct vdrv *d, uint64_t features);

/* Adds a chain of descriptors and publishes it in the avail ring (no notify): its head. */
uint16_t vdrv_add(struct vdrv *d, unsigned int q, const struct vdrv_seg *segs, unsigned int n);
void vdrv_notify(struct vdrv *d, unsigned int q);
uint16_t vdrv_used_idx(struct vdrv *d, unsigned int q);
/* Used element i (a free-running index) of queue q. */
void vdrv_used_elem(struct vdrv *d, unsigned int q, uint16_t i, uint32_t *ret_id,
		    uint32_t *ret_len);

/* Runs the owner's device work until cond(opaque, arg) or 10 s pass. */
bool vdrv_poll_until(struct vm *vm, bool (*cond)(void *opaque, uintptr_t arg), void *opaque,
		     uintptr_t arg);
/* The same, until queue q's used index is n. */
bool vdrv_poll_used(struct vdrv *d, unsigned int q, uint16_t n);

/* Pages in the VM's dirty set now (cleared by the harvest), sorted. */
void vdrv_harvest(struct vm *vm, struct dirty_set *s);
/* The set is exactly these pages (sorted); prints the set if it is not. */
void vdrv_assert_pages(const struct dirty_set *s, const uint64_t *pages, unsigned int n);

#endif
