/* SPDX-License-Identifier: MIT */
/*
 * Private to secondary/: one connection (struct sconn) and the calls between
 * the receiver (receiver.c: connections, handshake, the session), applying
 * epochs (apply.c), the replicated disk (disk.c) and promotion (promote.c).
 */
#ifndef RINGFT_SECONDARY_RECEIVER_INTERNAL_H
#define RINGFT_SECONDARY_RECEIVER_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "proto/epoch.h"
#include "proto/session.h"
#include "secondary/receiver.h"

#define BOUNCE_SIZE 65536

struct sconn {
	struct secondary *s;
	struct link *link;
	int slot;			/* index in s->peers */
	struct sockaddr_storage source; /* the peer's address; its port is ignored */
	uint64_t opened_ns;
	bool hello_ok;
	bool orderly; /* goodbye, shutdown or promotion: not a lost primary */
	struct frame_rx fr;
	struct epoch_rx rx;
	bool rx_ready;
	/* The disk's block sums still to send after the HELLO (sconn_send_disk_sums). */
	bool sums_pending;
	uint64_t sums_next; /* first block not sent yet */
	uint64_t sums_start_ns;
	uint8_t bounce[BOUNCE_SIZE];
};

/* Stops listening to a peer (its memory goes when the link is released). */
void sconn_drop(struct sconn *c, bool flush);
/* Bad input: one log line naming the peer and what was wrong, then close. */
void sconn_reject(struct sconn *c, const char *what);
/* A complete, verified epoch: apply it, check the memory hash, ACK. */
int sconn_apply(struct sconn *c);
/* The primary's GOODBYE asks for a switchover: promote or say why not, then close. */
void sconn_switchover(struct sconn *c);
/* Ends the session on this side's account: GOODBYE{reason}, then close once it is sent. */
void sconn_goodbye(struct sconn *c, const char *reason);

/*
 * After the HELLO: the image's block checksums, in DISK_SUMS frames, one
 * slice of the image per call (c->sums_pending until the last is sent; the
 * tick calls it again). 0, or a negative errno after the session was ended
 * (logged, GOODBYE sent).
 */
int sconn_send_disk_sums(struct sconn *c);
/*
 * A verified epoch's disk records to the image, before its memory. 0, or a
 * negative errno after the session was ended: the epoch must not be applied
 * nor acknowledged.
 */
int sconn_apply_disk(struct sconn *c);
/* --verify: the image against the epoch's disk_hash: 0 not asked, 1 equal, 2 different. */
uint32_t sconn_verify_disk(struct sconn *c);

#endif
