/* SPDX-License-Identifier: MIT */
/*
 * Private to secondary/: one connection (struct sconn) and the calls between
 * the receiver (receiver.c: connections, handshake, the session), applying
 * epochs (apply.c) and promotion (promote.c).
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

#endif
