/* SPDX-License-Identifier: MIT */
/*
 * Output commit (DESIGN.md, "The checkpoint", step 7): the one place that
 * decides when guest output may leave the primary. Output is produced on
 * channels, an outbuf each (the console today; packets and disk-backed
 * replies next), and all of them leave at one release point, by one rule:
 *
 *   - a checkpoint's marks (every channel's position when the guest was
 *     paused for it) are released when the secondary acknowledges it
 *     (commit_acked): the secondary then holds a guest that produced it all;
 *   - unprotected (no secondary, or before checkpoint 0), everything produced
 *     leaves at once (commit_unprotected), unless
 *       - ftd is stopping (commit_shutdown) or the guest is frozen for want
 *         of quorum (commit_freeze):
 *         what it produced since its last acknowledged checkpoint stays held;
 *       - or the daemon gates it (commit_gate): with a cluster, output of an
 *         unprotected guest leaves only while no other node can promote, and
 *         a freshly booted primary holds everything until its peer answered.
 *
 * The engine (replicate.c, conn.c) marks, releases on ACK and on the loss of
 * a session; the daemon only gates and reads the accounting.
 */
#ifndef RINGFT_PRIMARY_COMMIT_H
#define RINGFT_PRIMARY_COMMIT_H

#include <stdbool.h>
#include <stdint.h>

#include "primary/outbuf.h"

#define COMMIT_MAX_CHANNELS 4

/* A checkpoint's boundary: bytes of each channel produced before it. */
struct commit_mark {
	uint64_t pos[COMMIT_MAX_CHANNELS];
};

struct commit {
	struct outbuf *chan[COMMIT_MAX_CHANNELS];
	unsigned int nr_chan;
	bool stopping;		 /* shutting down: unprotected output stays held */
	bool frozen;		 /* the guest is stopped for want of quorum: likewise */
	bool gated;		 /* the daemon's gate is in force... */
	bool gate_open;		 /* ...and open: no other node can promote now */
	struct commit_mark last; /* the last checkpoint's marks */
	uint64_t marks;		 /* checkpoints marked */
	uint64_t acked;		 /* of them, released on their ACK */
};

void commit_init(struct commit *c);
/* Adds a channel (its outbuf stays the caller's). Returns 0 or -ENOSPC. */
int commit_add_channel(struct commit *c, struct outbuf *ob);
/* The boundary of a checkpoint taken now (the guest is paused). */
void commit_mark(struct commit *c, struct commit_mark *ret);
/* The checkpoint with these marks is acknowledged: its output leaves. */
void commit_acked(struct commit *c, const struct commit_mark *m);
/* No checkpoint protects the guest: what it produced leaves, unless held. */
void commit_unprotected(struct commit *c);
/* ftd is shutting down: nothing unprotected leaves from now on. */
void commit_shutdown(struct commit *c);
/* The guest is stopped for want of quorum (true), or runs again (false). */
void commit_freeze(struct commit *c, bool frozen);
/*
 * The daemon's gate on unprotected output: gated and closed holds it, gated
 * and open lets it leave, not gated (no cluster, peer answered) never holds.
 */
void commit_gate(struct commit *c, bool gated, bool open);
/* A session ended: the gate closes until the daemon decides again. */
void commit_session_lost(struct commit *c);
/* Bytes produced but not yet allowed out, over every channel. */
uint64_t commit_held(struct commit *c);
/* Bytes produced since the last checkpoint's marks: output no checkpoint covers yet. */
uint64_t commit_unmarked(struct commit *c);

#endif
