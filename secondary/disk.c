// SPDX-License-Identifier: MIT
/*
 * The secondary's replicated disk: its image (lib/diskimg.h), the block
 * checksums a primary gets after the HELLO so that its initial sync sends
 * only the blocks that differ, each epoch's disk records written before the
 * epoch's memory, and the --verify hash of the image.
 *
 * Every image access here is synchronous, on the owner thread: the block sums
 * go in slices (sconn_send_disk_sums); an epoch's writes (and its fdatasync)
 * are written whole before its ACK, and no socket is served meanwhile.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "proto/disk_wire.h"
#include "secondary/receiver.h"
#include "secondary/receiver_internal.h"

int secondary_set_disk(struct secondary *s, const char *path)
{
	int r;

	diskimg_close(&s->disk);
	s->replica.disk = NULL;
	s->hello.disk_size = 0;
	r = diskimg_open(&s->disk, path);
	if (r < 0)
		return r;
	s->replica.disk = &s->disk;
	s->hello.disk_size = s->disk.size;
	return 0;
}

void sconn_goodbye(struct sconn *c, const char *reason)
{
	uint8_t *buf = NULL;
	size_t len = 0;

	if (goodbye_frame(reason, UINT64_MAX, &buf, &len) == 0)
		link_send_copy(c->link, buf, len);
	free(buf);
	/* Ended here, on purpose: not a lost primary (it runs on, unprotected). */
	c->orderly = true;
	sconn_drop(c, true);
}

/*
 * The image is read (holes skipped) and summed in slices of at most
 * SUMS_SLICE_NS, each sent as its own DISK_SUMS frame, so a large, mostly
 * written image (about a second per GiB from a disk) never keeps the owner
 * thread from its sockets for long: heartbeats and the primary's frames are
 * served between slices (secondary_tick and secondary_next_due drive them).
 */
#define SUMS_SLICE_NS	  2000000ULL
#define SUMS_SLICE_BLOCKS 64u /* summed between two looks at the clock */

int sconn_send_disk_sums(struct sconn *c)
{
	struct secondary *s = c->s;
	uint64_t nr = diskimg_blocks(s->disk.size), start = clock_now_ns(), first = c->sums_next;
	uint64_t *sums = malloc(WIRE_MAX_DISK_SUMS * sizeof(*sums));
	size_t cap = disk_sums_frame_len(WIRE_MAX_DISK_SUMS);
	uint8_t *buf = malloc(cap);
	uint32_t n = 0;
	char why[128];
	int r = buf && sums ? 0 : -ENOMEM;

	if (!c->sums_next)
		c->sums_start_ns = start;
	while (r == 0 && first + n < nr && n < WIRE_MAX_DISK_SUMS &&
	       (n == 0 || clock_now_ns() - start < SUMS_SLICE_NS)) {
		uint64_t k = nr - first - n;
		uint32_t m = (uint32_t)(k < SUMS_SLICE_BLOCKS ? k : SUMS_SLICE_BLOCKS);

		if (m > WIRE_MAX_DISK_SUMS - n)
			m = WIRE_MAX_DISK_SUMS - n;
		r = diskimg_sums(&s->disk, first + n, m, sums + n);
		n += m;
	}
	if (r == 0 && n)
		r = disk_sums_frame(buf, cap, first, sums, n);
	if (r > 0)
		r = link_send_copy(c->link, buf, (size_t)r);
	free(sums);
	free(buf);
	if (r < 0) {
		c->sums_pending = false;
		log_error(
			"Cannot read the disk image %s for the primary %s: %s; ending the session",
			s->disk.path, c->link->peer, strerror(-r));
		snprintf(why, sizeof(why), "cannot read its disk image: %s", strerror(-r));
		sconn_goodbye(c, why);
		return r;
	}
	c->sums_next = first + n;
	c->sums_pending = c->sums_next < nr;
	if (!c->sums_pending)
		log_info("Sent the block sums of disk image %s (%llu MiB) in %.2f s", s->disk.path,
			 (unsigned long long)(s->disk.size >> 20),
			 (double)(clock_now_ns() - c->sums_start_ns) / NS_PER_S);
	return 0;
}

int sconn_apply_disk(struct sconn *c)
{
	struct secondary *s = c->s;
	struct epoch_rx *rx = &c->rx;
	const struct disk_log *log = &rx->disk;
	uint64_t t0 = clock_now_ns();
	char held[64], why[160];
	bool torn, durable;
	int r;

	/* Which checkpoint the replica holds now, for the messages below. */
	if (s->replica.has_checkpoint)
		snprintf(held, sizeof(held), "checkpoint %llu",
			 (unsigned long long)s->replica.checkpoint);
	else
		snprintf(held, sizeof(held), "no checkpoint");
	/*
	 * Durable where the guest flushed, and at the session's first checkpoint:
	 * the sync's blocks hold what the guest flushed before the session, and
	 * that checkpoint's ACK releases output that may depend on them.
	 */
	durable = log->flush ||
		  (s->replica.disk && !rx->initial_sync && s->state != SECONDARY_REPLICATING);
	r = replica_apply_disk(&s->replica, rx->epoch, log, durable, &torn);
	s->st.disk_apply_ns += clock_now_ns() - t0;
	if (r == 0) {
		for (size_t i = 0; i < log->nr; i++) {
			if (log->recs[i].flags & DISK_REC_FLUSH)
				continue;
			s->st.disk_writes++;
			s->st.disk_bytes += log->recs[i].len;
		}
		if (durable)
			s->st.disk_syncs++;
		return 0;
	}
	if (torn)
		log_error("Cannot apply epoch %llu to the disk image %s: %s; part of its writes "
			  "are on the image, which is no checkpoint any more: this replica holds "
			  "nothing it could be promoted from until a primary syncs it again",
			  (unsigned long long)rx->epoch, s->disk.path, strerror(-r));
	else
		log_error("Cannot apply epoch %llu to the disk image %s: %s; refusing it: the "
			  "replica stays at %s",
			  (unsigned long long)rx->epoch, s->disk.path, strerror(-r), held);
	snprintf(why, sizeof(why), "cannot apply epoch %llu to its disk image: %s%s",
		 (unsigned long long)rx->epoch, strerror(-r),
		 torn ? " (image torn: no checkpoint left there)" : "");
	s->replica_changed = true;
	sconn_goodbye(c, why);
	return r;
}

uint32_t sconn_verify_disk(struct sconn *c)
{
	struct secondary *s = c->s;
	struct epoch_rx *rx = &c->rx;
	uint64_t hash = 0;
	int r = -ENODEV;

	if (!rx->disk_hash)
		return 0;
	if (s->replica.disk)
		r = diskimg_hash(s->replica.disk, &hash);
	if (r == 0 && hash == rx->disk_hash)
		return 1;
	if (r < 0)
		log_error("Checkpoint %llu: cannot hash the disk image%s%s: %s",
			  (unsigned long long)rx->epoch, s->replica.disk ? " " : "",
			  s->replica.disk ? s->disk.path : "", strerror(-r));
	else
		log_error("Checkpoint %llu: replica disk image hash %016llx, primary's %016llx",
			  (unsigned long long)rx->epoch, (unsigned long long)hash,
			  (unsigned long long)rx->disk_hash);
	return 2;
}
