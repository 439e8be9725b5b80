/* SPDX-License-Identifier: MIT */
/*
 * Capturing one checkpoint (DESIGN.md, "The checkpoint", steps 1-4): pause every
 * vCPU (each saves its own state), harvest the dirty pages, copy them into a
 * staging buffer, save VM and device state, resume. Everything the epoch needs
 * afterwards (shipping it) reads only the staging buffer and the saved state.
 */
#ifndef RINGFT_PRIMARY_CHECKPOINT_H
#define RINGFT_PRIMARY_CHECKPOINT_H

#include <stdint.h>

#include "lib/disklog.h"
#include "proto/epoch.h"
#include "vmm/dirty.h"
#include "vmm/state.h"

struct vm;
struct virtio_blk;

/* Called by ckpt_capture while the guest is paused (e.g. to mark output boundaries). */
typedef void (*ckpt_paused_fn)(void *opaque, uint64_t epoch);

struct ckpt {
	struct vm *vm;
	ckpt_paused_fn paused_fn; /* optional */
	void *paused_opaque;
	uint64_t epoch;		/* number of the last capture, 0-based; UINT64_MAX before */
	struct dirty_set dirty; /* every page of the last capture, its live batch's too */
	/*
	 * Staging, in the order pages go on the wire: slot k holds a copy of page
	 * list[k]. A live batch fills the first slots, the pause appends; a page
	 * written again after its live copy has a later slot, which wins.
	 */
	uint8_t *staging;
	uint64_t *list;
	uint64_t staged;	/* slots used this epoch */
	uint64_t batch;		/* first slot of the last harvest (live or the pause's) */
	uint64_t capacity;	/* slots: EPOCH_MAX_COPIES of guest memory */
	struct dirty_set fresh; /* the last harvest's pages, in slot order from `batch` */
	bool live;		/* a live batch of the next capture is staged */
	uint64_t staging_bytes, list_bytes;
	struct machine_state *state;
	bool hash_memory;     /* --verify: hash all guest memory while paused */
	bool keep_paused;     /* the guest stays paused after a successful capture (switchover) */
	uint64_t memory_hash; /* of the last capture, when hash_memory */
	/*
	 * --disk: the guest's disk. A capture takes the writes it logged since the
	 * last one (virtio_blk_take_log) into disk_log, which ships with the
	 * epoch; with hash_memory it also waits for the requests in flight and
	 * hashes the image (disk_hash).
	 */
	struct virtio_blk *disk;
	struct disk_log disk_log;
	bool disk_log_lost; /* a write reached the image, not disk_log: the peer must resync */
	uint64_t disk_hash;
};

struct ckpt_timing {
	uint64_t pause_ns;   /* guest-visible: first kick to resume */
	uint64_t kick_ns;    /* until every vCPU parked (includes their state saves) */
	uint64_t save_ns;    /* slowest vCPU's own state save, inside kick_ns */
	uint64_t harvest_ns; /* ring walk / bitmap fetch+scan */
	uint64_t reset_ns;   /* KVM_RESET_DIRTY_RINGS / KVM_CLEAR_DIRTY_LOG */
	uint64_t copy_ns;    /* dirty pages into staging */
	uint64_t vmstate_ns; /* irqchip, PIT, clock, devices */
	uint64_t hash_ns;    /* --verify memory hash */
	uint64_t pages;	     /* in the checkpoint */
	uint64_t live_pages; /* of those, copied by live harvests and not again in the pause */
};

int ckpt_init(struct ckpt *c, struct vm *vm);
void ckpt_free(struct ckpt *c);
/*
 * Returns 0, -ESRCH if a vCPU has stopped (guest crash: nothing captured), or
 * another -errno. On failure the epoch is not advanced, c->state is not a
 * consistent checkpoint, and pages already harvested are handed back to the VM
 * so the next capture reports them again. A harvest that returned -EIO means
 * tracking was lost (ring overflow): only a full resync recovers.
 */
int ckpt_capture(struct ckpt *c, struct ckpt_timing *ret_timing);

/*
 * Live harvest: while the guest runs, collect and re-arm the pages dirtied so
 * far and copy them into staging as the next capture's live batch (slots
 * `batch` to `staged`, ready to send), so the capture copies only what was
 * dirtied after this (a page written again is copied again, into a later
 * slot). Once per capture: -EBUSY for a second. Owner only. Returns the number
 * of pages harvested, or -errno (pages are then handed back to the VM, as by a
 * failed capture).
 */
int ckpt_live_harvest(struct ckpt *c);
/* Hands live-harvested pages back to the VM: they will not be captured here. */
void ckpt_live_forget(struct ckpt *c);

/*
 * A captured machine state as the wire carries it (proto/epoch.h): blobs that
 * point into ms, so valid while ms is (for c->state: until the next capture).
 */
void ckpt_epoch_state(const struct machine_state *ms, struct epoch_state *ret);

#endif
