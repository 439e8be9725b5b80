// SPDX-License-Identifier: MIT
/*
 * The initial sync: every page the VM ever touched while the guest runs (the
 * rest listed as zero), then rounds over what the dirty log reported
 * meanwhile until few are left, then checkpoint 0.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "lib/clock.h"
#include "lib/diskimg.h"
#include "lib/log.h"
#include "primary/replicate_internal.h"
#include "proto/disk_wire.h"
#include "proto/wire.h"
#include "vmm/virtio_blk.h"
#include "vmm/vm.h"

/* ---- disk sync --------------------------------------------------------------- */

/*
 * The disk part of the initial sync, before the memory part: every block of
 * the image is compared with the secondary's sum of it, and the blocks that
 * differ are logged as writes (or zero ranges) by the device, in the same log
 * as the guest's own writes, which the device records from here on. So the
 * secondary receives the blocks and the guest's writes in the order they
 * happened, and its image equals this one at every later checkpoint: a fresh
 * all-zero secondary is sent the allocated non-zero blocks, a returning old
 * copy only what changed (virtio_blk_sync_block explains the in-flight rule).
 */
#define DISK_SYNC_SENT_MAX  64u	  /* blocks sent per sync epoch (4 MiB of data) */
#define DISK_SYNC_CHECK_MAX 4096u /* blocks compared per sync epoch */

/* Every log the device hands over fits one epoch, a sync epoch's blocks included. */
_Static_assert(VIRTIO_BLK_LOG_MAX + VIRTIO_BLK_REQ_MAX +
			       (uint64_t)DISK_SYNC_SENT_MAX * DISK_BLOCK <=
		       EPOCH_DISK_MAX,
	       "a device log's data fits an epoch");
_Static_assert(VIRTIO_BLK_LOG_RECS_MAX + VIRTIO_BLK_REQ_MAX / DISK_REC_MAX + 1 +
			       DISK_SYNC_SENT_MAX <=
		       EPOCH_DISK_RECS_MAX,
	       "a device log's records fit an epoch");
/*
 * Comparing reads and hashes the image on the owner thread, which also serves
 * the guest's disk and network: it yields to the loop after this long (the
 * loop comes straight back, primary_next_due), so a large image is compared
 * in slices rather than in one stall.
 */
#define DISK_SYNC_SLICE_NS 2000000ULL

static int disk_sync_begin(struct primary *p)
{
	uint64_t n = diskimg_blocks(virtio_blk_size(p->cfg.disk));
	uint64_t *sums = realloc(p->disk_sums, n * sizeof(uint64_t));

	if (!sums)
		return -ENOMEM;
	p->disk_sums = sums;
	p->disk_blocks = n;
	p->disk_sums_have = 0;
	p->disk_pos = 0;
	p->disk_synced = false;
	p->disk_sync_start_ns = clock_now_ns();
	p->st.disk_sync_blocks = 0;
	p->st.disk_sync_bytes = 0;
	p->st.disk_sync_ms = 0;
	/* Before any block is read: a write after the read is logged after it. */
	virtio_blk_set_logging(p->cfg.disk, true);
	return 0;
}

void disk_sums_received(struct primary *p, const uint8_t *payload, size_t len)
{
	char why[160] = "", drop[224];
	uint32_t n = 0;
	int r = -EPROTO;

	if (p->state == PRIMARY_SYNCING && p->cfg.disk && !p->disk_synced)
		r = disk_sums_parse(payload, len, p->disk_blocks, p->disk_sums_have,
				    p->disk_sums + p->disk_sums_have, &n, why, sizeof(why));
	else
		snprintf(why, sizeof(why), "disk sums outside a disk sync");
	if (r < 0) {
		snprintf(drop, sizeof(drop), "bad DISK_SUMS from the secondary: %s", why);
		session_drop(p, drop);
		return;
	}
	p->disk_sums_have += n;
	sync_pump(p);
}

/*
 * The device's log since the last take into the slot's (cleared first; none
 * without a disk). False, the session dropped, when a write reached the image
 * but not the log: the next session syncs again.
 */
static bool take_disk_log(struct primary *p, struct primary_slot *s)
{
	disk_log_clear(&s->ck.disk_log);
	if (!p->cfg.disk || virtio_blk_take_log(p->cfg.disk, &s->ck.disk_log) == 0)
		return true;
	log_error("sync: a guest disk write reached %s but not its write log: starting the sync "
		  "again",
		  virtio_blk_path(p->cfg.disk));
	session_drop(p, "a disk write was not logged");
	return false;
}

/*
 * One disk sync epoch: compares blocks until DISK_SYNC_SENT_MAX of them differ
 * or its time slice is up, and ships what the device logged meanwhile. False
 * when it has to wait (for sums, for a write in flight to the next block, for
 * the next slice): the next pass of the loop goes on.
 */
static bool disk_fill(struct primary *p, struct primary_slot *s)
{
	struct epoch_opts opts = { .initial_sync = true, .disk = &s->ck.disk_log };
	uint64_t checked = 0, sent = 0, start = clock_now_ns();
	bool stuck = false;
	int r = 0;

	while (p->disk_pos < p->disk_sums_have && sent < DISK_SYNC_SENT_MAX &&
	       checked < DISK_SYNC_CHECK_MAX) {
		if (checked % 8 == 7 && clock_now_ns() - start > DISK_SYNC_SLICE_NS) {
			stuck = true; /* not stuck: out of time; the loop comes back at once */
			break;
		}
		bool differs = false;

		r = virtio_blk_sync_block(p->cfg.disk, p->disk_pos, p->disk_sums[p->disk_pos],
					  &differs);
		if (r == -EBUSY) {
			stuck = true;
			break;
		}
		if (r < 0) {
			log_error("Cannot read block %llu of disk image %s for the sync: %s",
				  (unsigned long long)p->disk_pos, virtio_blk_path(p->cfg.disk),
				  strerror(-r));
			session_drop(p, "the disk sync failed");
			return false;
		}
		p->disk_pos++;
		checked++;
		sent += differs;
	}
	if (!take_disk_log(p, s))
		return false;
	p->st.disk_sync_blocks += sent;
	p->st.disk_sync_bytes += disk_log_bytes(&s->ck.disk_log);
	if (p->disk_pos == p->disk_blocks) {
		p->disk_synced = true;
		p->st.disk_sync_ms = (clock_now_ns() - p->disk_sync_start_ns) / NS_PER_MS;
		log_info("sync: disk image %s compared in %.2f s: %llu of %llu blocks of %u KiB "
			 "differed (%llu MiB of data sent)",
			 virtio_blk_path(p->cfg.disk),
			 (double)(clock_now_ns() - p->disk_sync_start_ns) / NS_PER_S,
			 (unsigned long long)p->st.disk_sync_blocks,
			 (unsigned long long)p->disk_blocks, DISK_BLOCK >> 10,
			 (unsigned long long)(p->st.disk_sync_bytes >> 20));
	}
	if (!s->ck.disk_log.nr)
		return p->disk_synced || (checked && !stuck);
	r = epoch_pack(&s->tx, p->next_epoch, NULL, 0, s->ck.staging, NULL, &opts);
	if (r < 0) {
		session_drop(p, "packing a disk sync batch failed");
		return false;
	}
	s->mark = 0;
	memset(&s->marks, 0, sizeof(s->marks)); /* a sync batch releases nothing */
	slot_ship(p, s, true, clock_now_ns());
	return !stuck;
}

/* ---- initial sync ---------------------------------------------------------- */

/* Harvests with the guest briefly paused; pages go to `into` (or nowhere). */
int harvest_now(struct primary *p, struct dirty_set *into)
{
	int r;

	dirty_set_clear(&p->scratch);
	r = vm_harvest_paused(p->vm, &p->scratch);
	if (r == 0 && into)
		dirty_set_merge(into, &p->scratch);
	return r;
}

void sync_start(struct primary *p)
{
	int r;

	if (p->frozen) {
		/* A sync harvests (pause, resume): not with the guest stopped. */
		session_drop(p, "the guest is stopped (no quorum): no sync now");
		return;
	}
	p->state = PRIMARY_SYNCING;
	p->next_epoch = 0;
	p->first_checkpoint = UINT64_MAX;
	p->console_started = false;
	p->st.sync_pages = 0;
	p->st.sync_zero_pages = 0;
	p->st.sync_round = 0;
	p->sync_start_ns = p->sync_round_start_ns = clock_now_ns();
	if (p->cfg.disk && disk_sync_begin(p) < 0) {
		session_drop(p, "out of memory for the disk sync");
		return;
	}
	/* Reset the log before reading a page: any later write is logged again. */
	dirty_set_clear(&p->sync_dirty);
	r = harvest_now(p, NULL);
	if (r < 0) {
		log_error("Cannot start the initial sync: harvesting dirty pages failed: %s",
			  strerror(-r));
		session_drop(p, "initial sync failed");
		return;
	}
	free(p->sync_list);
	p->sync_list = NULL; /* round 0: every page, in order */
	p->sync_len = p->vm->nr_pages;
	p->sync_pos = 0;
	p->st.sync_remaining = p->sync_len;
	log_info("Secondary %s accepted the handshake: initial sync of %llu MiB (%llu MiB "
		 "touched) while the guest runs",
		 p->cfg.peer_name, (unsigned long long)(p->vm->mem_size >> 20),
		 (unsigned long long)(p->vm->touched.count * VM_PAGE_SIZE >> 20));
	sync_pump(p);
}

int take_checkpoint(struct primary *p, struct primary_slot *s, bool early);

/* Ends a round: harvest, then either another round or checkpoint 0. */
static void sync_round_end(struct primary *p)
{
	uint64_t now = clock_now_ns(), n;
	double secs = (double)(now - p->sync_round_start_ns) / NS_PER_S;
	int r = harvest_now(p, &p->sync_dirty);

	if (r < 0) {
		session_drop(p, "harvesting dirty pages during the initial sync failed");
		return;
	}
	n = p->sync_dirty.count;
	log_info("sync: round %u sent %llu pages in %.2f s; %llu pages dirtied meanwhile "
		 "(%.0f pages/s)",
		 p->st.sync_round, (unsigned long long)p->sync_len, secs, (unsigned long long)n,
		 secs > 0 ? (double)n / secs : 0.0);
	free(p->sync_list);
	p->sync_list = NULL;
	p->sync_len = p->sync_pos = 0;
	if (n <= SYNC_CONVERGED || p->st.sync_round + 1 >= SYNC_MAX_ROUNDS) {
		/* The rest travels in checkpoint 0 (the next capture reports it again). */
		vm_requeue_dirty(p->vm, &p->sync_dirty);
		dirty_set_clear(&p->sync_dirty);
		p->st.sync_remaining = 0;
		p->first_checkpoint = p->next_epoch;
		return; /* sync_pump takes checkpoint 0 when a slot is free */
	}
	p->sync_list = malloc(n * sizeof(uint64_t));
	if (!p->sync_list) {
		session_drop(p, "out of memory for the sync page list");
		return;
	}
	dirty_set_sort(&p->sync_dirty);
	memcpy(p->sync_list, p->sync_dirty.pages, n * sizeof(uint64_t));
	dirty_set_clear(&p->sync_dirty);
	p->sync_len = n;
	p->st.sync_remaining = n;
	p->st.sync_round++;
	p->sync_round_start_ns = now;
}

/*
 * One sync batch: up to SYNC_BATCH_PAGES pages with data, and the all-zero
 * pages met on the way listed without data (most of a fresh guest: reading
 * them does not even fault memory in). Read while the guest runs: a write
 * after the read is in the dirty log already and goes in a later round.
 */
static void sync_fill(struct primary *p, struct primary_slot *s)
{
	struct dirty_set *d = &s->ck.dirty;
	struct epoch_opts opts = { .initial_sync = true, .zero_pages = s->zero };
	uint64_t n = 0;
	int r;

	dirty_set_clear(d);
	while (p->sync_pos < p->sync_len && n < SYNC_BATCH_PAGES && opts.nr_zero < SYNC_ZERO_MAX) {
		uint64_t page = p->sync_list ? p->sync_list[p->sync_pos] : p->sync_pos;
		const uint8_t *hva = vm_page_hva(p->vm, page);

		p->sync_pos++;
		/* Never written since the VM was created: zero, without reading it. */
		if (!vm_page_touched(p->vm, page) || vm_page_is_zero(p->vm, page)) {
			s->zero[opts.nr_zero++] = page;
			continue;
		}
		dirty_set_add(d, page);
		memcpy(s->ck.staging + n * VM_PAGE_SIZE, hva, VM_PAGE_SIZE);
		n++;
	}
	p->st.sync_pages += n + opts.nr_zero;
	p->st.sync_zero_pages += opts.nr_zero;
	p->st.sync_remaining = p->sync_len - p->sync_pos;
	/* The guest's disk writes since the last epoch travel with these pages. */
	if (!take_disk_log(p, s))
		return;
	opts.disk = &s->ck.disk_log;
	r = epoch_pack(&s->tx, p->next_epoch, d->pages, n, s->ck.staging, NULL, &opts);
	if (r < 0) {
		session_drop(p, "packing a sync batch failed");
		return;
	}
	s->mark = 0;
	memset(&s->marks, 0, sizeof(s->marks)); /* a sync batch releases nothing */
	slot_ship(p, s, true, clock_now_ns());
}

void sync_pump(struct primary *p)
{
	struct primary_slot *s;

	while (p->state == PRIMARY_SYNCING && p->first_checkpoint == UINT64_MAX &&
	       (s = slot_free(p))) {
		if (p->cfg.disk && !p->disk_synced) {
			if (!disk_fill(p, s))
				break;
		} else if (p->sync_pos < p->sync_len)
			sync_fill(p, s);
		else
			sync_round_end(p);
	}
	if (p->state == PRIMARY_SYNCING && p->first_checkpoint == p->next_epoch &&
	    (s = slot_free(p))) {
		if (take_checkpoint(p, s, false) < 0)
			session_drop(p, "checkpoint 0 failed");
	}
}
