// SPDX-License-Identifier: MIT
/*
 * ftctl switchover: the guest stops at a final checkpoint, the secondary
 * acknowledges it and is asked to run it (conn.c handles its answer).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "primary/replicate_internal.h"
#include "proto/wire.h"
#include "vmm/vm.h"

/* The switchover's final checkpoint: the guest stays stopped after it. */
void handover_capture(struct primary *p)
{
	struct primary_slot *s = slot_free(p);
	int r;

	if (!s)
		return;
	s->ck.keep_paused = true;
	r = take_checkpoint(p, s, false);
	s->ck.keep_paused = false;
	if (p->handover != HANDOVER_CAPTURE)
		return; /* the session ended meanwhile: it said why */
	if (r < 0) {
		snprintf(p->handover_error, sizeof(p->handover_error),
			 "the final checkpoint failed: %s", strerror(-r));
		session_drop(p, "the switchover's final checkpoint failed");
		return;
	}
	p->handover = HANDOVER_ACK;
	p->handover_epoch = p->next_epoch - 1;
}

int primary_switchover(struct primary *p)
{
	if (p->handover >= HANDOVER_CAPTURE && p->handover <= HANDOVER_ANSWER)
		return -EALREADY;
	if (p->state != PRIMARY_PROTECTED || p->frozen)
		return -ENOTCONN;
	p->handover = HANDOVER_CAPTURE;
	p->handover_error[0] = 0;
	log_info("Switchover to %s: stopping the guest at a final checkpoint", p->cfg.peer_name);
	handover_capture(p);
	return 0;
}

bool primary_may_thaw(const struct primary *p)
{
	return p->conn && p->state == PRIMARY_PROTECTED &&
	       (p->handover == HANDOVER_NONE || p->handover == HANDOVER_CAPTURE);
}
