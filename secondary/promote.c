// SPDX-License-Identifier: MIT
/*
 * What becomes of the replica: promotion (ftctl failover, a cluster's
 * decision, or a planned switchover the primary asks for in its GOODBYE),
 * the checks before it, and marking the replica stale or discarding it.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "secondary/receiver.h"
#include "secondary/receiver_internal.h"

static int promote(struct secondary *s);

/*
 * A planned hand-over: the primary's guest is stopped at the checkpoint it
 * names. Run it if that is exactly the replica's, and say so (the primary
 * waits for the answer before it lets go of its stopped guest).
 */
void sconn_switchover(struct sconn *c)
{
	struct secondary *s = c->s;
	uint64_t ck = c->rx.switchover_checkpoint;
	char why[160];
	uint8_t *buf = NULL;
	size_t len = 0;
	int r = -ESTALE;

	c->orderly = true;
	if (s->replica.has_checkpoint && s->replica.checkpoint == ck && s->replica.epoch == ck) {
		snprintf(s->promoted_by, sizeof(s->promoted_by), "switchover from %s",
			 c->link->peer);
		r = promote(s);
	}
	if (r == 0) {
		log_info("Switchover: %s handed over the guest at checkpoint %llu", c->link->peer,
			 (unsigned long long)ck);
		r = goodbye_frame("promoted: the guest runs here", ck, &buf, &len);
	} else {
		if (r == -ESTALE)
			snprintf(why, sizeof(why),
				 "switchover refused: it stops at checkpoint %llu, the replica "
				 "holds %s%llu",
				 (unsigned long long)ck,
				 s->replica.has_checkpoint ? "" : "none, epoch ",
				 (unsigned long long)(s->replica.has_checkpoint
							      ? s->replica.checkpoint
							      : s->replica.epoch));
		else
			snprintf(why, sizeof(why), "switchover refused: promotion failed: %s",
				 strerror(-r));
		log_error("%s", why);
		r = goodbye_frame(why, UINT64_MAX, &buf, &len);
	}
	if (r == 0)
		link_send_copy(c->link, buf, len);
	free(buf);
	sconn_drop(c, true);
}

int secondary_can_promote(const struct secondary *s, bool force)
{
	if (s->state == SECONDARY_ACTIVE)
		return -EALREADY;
	if (s->session && !force)
		return -EBUSY;
	if (!s->replica.has_checkpoint)
		return -ENODATA;
	if (s->stale && !force)
		return -ESTALE;
	return 0;
}

/* Runs the replica's checkpoint; the caller has checked it may. */
static int promote(struct secondary *s)
{
	int r = replica_promote(&s->replica);

	if (r < 0)
		return r;
	for (int i = 0; i < SECONDARY_MAX_PEERS; i++)
		if (s->peers[i] && s->peers[i] != s->session)
			sconn_drop(s->peers[i], false);
	/*
	 * One copy of the guest: nobody may sync over it now. The listener stays
	 * so that a primary that comes back (restarted with its old
	 * configuration) is told this node runs the guest (on_hello refuses it).
	 */
	s->state = SECONDARY_ACTIVE;
	/*
	 * The guest's own virtio-blk device writes the image from now on, through
	 * its own descriptor: this one is done (no epoch is applied any more).
	 */
	diskimg_close(&s->disk);
	s->replica.disk = NULL;
	log_info("Promoted (%s): the guest runs here from checkpoint %llu, unprotected",
		 s->promoted_by[0] ? s->promoted_by : "?",
		 (unsigned long long)s->replica.checkpoint);
	return 0;
}

int secondary_promote(struct secondary *s, bool force)
{
	int r = secondary_can_promote(s, force);

	if (r < 0)
		return r;
	if (s->session)
		s->session->orderly = true;
	for (int i = 0; i < SECONDARY_MAX_PEERS; i++)
		if (s->peers[i])
			sconn_drop(s->peers[i], false);
	if (!s->promoted_by[0])
		snprintf(s->promoted_by, sizeof(s->promoted_by), "ftctl failover%s",
			 force ? " --force" : "");
	return promote(s);
}

int secondary_boot_here(struct secondary *s, const char *by)
{
	if (s->state == SECONDARY_ACTIVE)
		return -EALREADY;
	if (s->session || s->state != SECONDARY_WAITING)
		return -EBUSY;
	if (s->replica.has_checkpoint)
		return -EEXIST;
	if (s->st.sessions)
		return -ENOTEMPTY;
	for (int i = 0; i < SECONDARY_MAX_PEERS; i++)
		if (s->peers[i])
			sconn_drop(s->peers[i], false);
	snprintf(s->promoted_by, sizeof(s->promoted_by), "%s", by);
	/* As a promotion: primaries are told the guest runs here; the guest's device owns the disk.
	 */
	s->state = SECONDARY_ACTIVE;
	diskimg_close(&s->disk);
	s->replica.disk = NULL;
	return 0;
}

int secondary_mark_stale(struct secondary *s, const struct gen_state *by, uint64_t now_ns)
{
	if (s->state == SECONDARY_ACTIVE || !s->replica.has_checkpoint ||
	    gen_compare(&s->gen, by) != GEN_LOCAL_OLDER)
		return 0;
	if (s->stale && gen_compare(&s->stale_by, by) != GEN_LOCAL_OLDER)
		return 0; /* already known */
	if (!s->stale)
		s->stale_ns = now_ns;
	s->stale = true;
	s->stale_by = *by;
	return 1;
}

int secondary_discard(struct secondary *s)
{
	if (s->state == SECONDARY_ACTIVE)
		return -EALREADY;
	if (s->session)
		return -EBUSY;
	s->replica.has_checkpoint = false;
	s->copy_released = false;
	s->stale = false;
	gen_clear(&s->gen);
	s->gen_changed = true;
	s->hello.gen = s->gen;
	s->hello.holds = HOLDS_NOTHING;
	return 0;
}
