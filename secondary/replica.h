/* SPDX-License-Identifier: MIT */
/*
 * The replica: a VM created exactly like the primary's (same memory layout,
 * tracking enabled, vCPUs created) whose vCPUs never run until promotion. Its
 * memory is the replicated guest memory, so promotion needs no copy.
 *
 * replica_apply() takes one complete, already verified epoch and applies it:
 * first every check (epoch order, page indexes, vCPU and device counts), then
 * the pages, then the state. Nothing is written unless everything checks out,
 * so the replica is always exactly the last applied checkpoint.
 *
 * With a replicated disk, an epoch's disk writes go to the image first
 * (replica_apply_disk), then its memory and state. A disk write can fail
 * (the image's file system is full, an I/O error); if it fails before any byte
 * of the image changed, the replica is still the previous checkpoint, memory
 * and disk; if it fails halfway the image is no checkpoint at all, and the
 * replica holds none (has_checkpoint false, disk_torn) until a new session
 * has synced memory and disk again.
 */
#ifndef RINGFT_SECONDARY_REPLICA_H
#define RINGFT_SECONDARY_REPLICA_H

#include <stdbool.h>
#include <stdint.h>

#include "vmm/state.h"

struct diskimg;
struct disk_log;
struct vm;

struct replica {
	struct vm *vm;
	struct machine_state *committed;
	uint64_t *seen;	     /* one bit per guest page: copies already applied, cleared after */
	uint64_t epoch;	     /* last applied in this session, UINT64_MAX before the first */
	uint64_t checkpoint; /* epoch of the committed checkpoint, if has_checkpoint */
	bool has_checkpoint; /* memory, `committed` (and disk) are one complete checkpoint */
	bool promoted;
	struct diskimg *disk; /* the replicated disk's image (borrowed), or NULL: none */
	bool disk_torn;	      /* some epoch's disk writes failed halfway: no checkpoint */
};

int replica_init(struct replica *r, struct vm *vm);
void replica_free(struct replica *r); /* does not free r->vm */

/*
 * Applies epoch `epoch`: nr_pages pages whose indexes are in pages[] and whose
 * contents are data[k * 4096], and the machine state. A page listed more than
 * once (a live batch's copy, then the pause's) is written once, with its
 * last copy. Returns 0, -EALREADY
 * after promotion, -EPROTO for an epoch out of order, -ERANGE for a page index
 * outside guest memory, -EINVAL for state that does not fit this VM.
 */
int replica_apply(struct replica *r, uint64_t epoch, const uint64_t *pages, uint64_t nr_pages,
		  const uint8_t *data, const struct machine_state *state);

/*
 * A new primary session: epochs count from 0 again. Its initial sync overwrites
 * memory page by page, so the replica holds no checkpoint until the session's
 * first checkpoint is applied (a replica that was one belongs to a primary that
 * has since run unprotected: it must not be promoted anyway).
 */
void replica_new_session(struct replica *r);

/*
 * Applies an initial-sync epoch: pages with data, and pages that are all zero
 * (listed without data). Returns 0, -EALREADY, -EPROTO or -ERANGE as
 * replica_apply.
 */
int replica_apply_sync(struct replica *r, uint64_t epoch, const uint64_t *pages, uint64_t nr_pages,
		       const uint8_t *data, const uint64_t *zero_pages, uint64_t nr_zero);

/*
 * Writes epoch `epoch`'s disk records to r->disk, in order, before the same
 * epoch's replica_apply() or replica_apply_sync(); fdatasync()s the image
 * when `durable` (the epoch carried a guest flush, or is the session's first
 * checkpoint, after the sync's blocks), an empty log too; an empty log not
 * durable is nothing to do. Returns 0, -EALREADY after promotion, -EPROTO for an epoch out of
 * order, -ENODEV for records without a disk, or diskimg_apply()'s -errno (-ENOSPC, -EIO, ...): then
 * the epoch must not be applied. If *ret_torn, some writes reached the image: the replica holds no
 * checkpoint from here on.
 */
int replica_apply_disk(struct replica *r, uint64_t epoch, const struct disk_log *log, bool durable,
		       bool *ret_torn);

/*
 * The image no longer matches the replica's memory: nothing promotable is left
 * until a new session syncs both (set by replica_apply_disk, or by the caller
 * when memory could not follow the disk).
 */
void replica_disk_torn(struct replica *r);

/* Loads the last applied state into the VM and starts its vCPUs. */
int replica_promote(struct replica *r);

#endif
