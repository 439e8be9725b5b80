// SPDX-License-Identifier: MIT
#include <errno.h>
#include <string.h>

#include "primary/commit.h"

void commit_init(struct commit *c)
{
	memset(c, 0, sizeof(*c));
}

int commit_add_channel(struct commit *c, struct outbuf *ob)
{
	if (c->nr_chan == COMMIT_MAX_CHANNELS)
		return -ENOSPC;
	c->chan[c->nr_chan++] = ob;
	return 0;
}

void commit_mark(struct commit *c, struct commit_mark *ret)
{
	memset(ret, 0, sizeof(*ret));
	for (unsigned int i = 0; i < c->nr_chan; i++)
		ret->pos[i] = outbuf_mark(c->chan[i]);
	c->last = *ret;
	c->marks++;
}

void commit_acked(struct commit *c, const struct commit_mark *m)
{
	for (unsigned int i = 0; i < c->nr_chan; i++)
		outbuf_allow(c->chan[i], m->pos[i]);
	c->acked++;
}

void commit_unprotected(struct commit *c)
{
	if (c->stopping || c->frozen || (c->gated && !c->gate_open))
		return;
	for (unsigned int i = 0; i < c->nr_chan; i++)
		outbuf_allow(c->chan[i], outbuf_mark(c->chan[i]));
}

void commit_shutdown(struct commit *c)
{
	c->stopping = true;
}

void commit_freeze(struct commit *c, bool frozen)
{
	c->frozen = frozen;
}

void commit_gate(struct commit *c, bool gated, bool open)
{
	c->gated = gated;
	c->gate_open = open;
}

void commit_session_lost(struct commit *c)
{
	c->gate_open = false;
}

uint64_t commit_held(struct commit *c)
{
	uint64_t held = 0;

	for (unsigned int i = 0; i < c->nr_chan; i++)
		held += outbuf_held(c->chan[i]);
	return held;
}

uint64_t commit_unmarked(struct commit *c)
{
	uint64_t n = 0;

	for (unsigned int i = 0; i < c->nr_chan; i++)
		n += outbuf_mark(c->chan[i]) - c->last.pos[i];
	return n;
}
