/* SPDX-License-Identifier: MIT */
/*
 * What the files of the primary's replication engine share, private to
 * primary/: replicate.c (staging slots, checkpoints, live harvest, the tick),
 * conn.c (the connection: handshake, ACKs, heartbeats, the end of a session),
 * sync.c (the initial sync) and switchover.c (the planned hand-over).
 */
#ifndef RINGFT_PRIMARY_REPLICATE_INTERNAL_H
#define RINGFT_PRIMARY_REPLICATE_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "primary/replicate.h"
#include "proto/session.h"

/* Initial sync: pages per batch (one epoch), when to stop iterating. */
#define SYNC_BATCH_PAGES 2048u
#define SYNC_ZERO_MAX	 65536u /* zero pages listed per batch (the list stays < 1 MiB) */
#define SYNC_CONVERGED	 2048u
#define SYNC_MAX_ROUNDS	 8u
/* Staging pages a slot keeps committed between epochs (64 MiB). */
#define STAGING_KEEP_PAGES 16384u

/* The connection of a session (conn.c). */
struct pconn {
	struct primary *p;
	struct link *link;
	struct frame_rx fr;
	uint8_t rbuf[65536];
};

/* conn.c (each function's comment is at its definition) */
void connect_peer(struct primary *p, uint64_t now);
void session_end(struct primary *p, const char *why, bool flush);
void session_drop(struct primary *p, const char *why);
void send_small(struct primary *p, const uint8_t *buf, size_t len);
void send_built(struct primary *p, int r, uint8_t *buf, size_t len);

/* replicate.c */
bool slot_on_wire(const struct primary_slot *s);
struct primary_slot *slot_free(struct primary *p);
void slot_ship(struct primary *p, struct primary_slot *s, bool sync, uint64_t start_ns);
int take_checkpoint(struct primary *p, struct primary_slot *s, bool early);

/* sync.c */
void sync_start(struct primary *p);
/* Sends sync batches while slots are free; then checkpoint 0. */
void sync_pump(struct primary *p);
int harvest_now(struct primary *p, struct dirty_set *into);
/*
 * A DISK_SUMS frame's payload: the secondary's sums of the next blocks of its
 * image, which the disk sync compares against. Anything out of order or
 * beyond the image ends the session.
 */
void disk_sums_received(struct primary *p, const uint8_t *payload, size_t len);

/* switchover.c */
void handover_capture(struct primary *p);

#endif
