/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include "daemon/failover.h"
#include "lib/clock.h"

static struct failover_decision decided(enum failover_action action, enum failover_reason why,
					int error, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static struct failover_decision decided(enum failover_action action, enum failover_reason why,
					int error, const char *fmt, ...)
{
	struct failover_decision d = { .action = action, .why = why, .error = error };
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(d.text, sizeof(d.text), fmt, ap);
	va_end(ap);
	return d;
}

static struct failover_decision quietly(struct failover_decision d)
{
	d.quiet = true;
	return d;
}

void failover_rollback_text(const struct failover_view *v, char *buf, size_t len)
{
	snprintf(buf, len,
		 "the primary ran on without it for at least %.1f s (generation %llu there, %u "
		 "generation%s ahead of this checkpoint %llu of generation %llu): promoting it "
		 "takes the guest back that far, and output released since is lost",
		 (double)v->stale_for_ns / NS_PER_S, (unsigned long long)v->stale_by,
		 v->stale_behind, v->stale_behind == 1 ? "" : "s",
		 (unsigned long long)v->checkpoint, (unsigned long long)v->generation);
}

/*
 * Every other rule passed: the fence command (if any) has the last word, on
 * both paths. It runs only once nothing else stands in the way, because it
 * powers a host off.
 */
static struct failover_decision fence_then(const struct failover_view *v, enum failover_reason by,
					   const char *text)
{
	struct failover_decision d;

	if (v->fence == FAILOVER_FENCE_FAILED)
		return decided(FAILOVER_FREEZE, FAILOVER_WHY_FENCE_FAILED, -EHOSTUNREACH, "%s",
			       v->fence_error ? v->fence_error : "the fence command failed");
	d = decided(FAILOVER_PROMOTE, by, 0, "%s", text);
	d.fence_first = v->fence == FAILOVER_FENCE_PENDING;
	return d;
}

/*
 * `ftctl failover`: the operator decides, so quorum and membership do not
 * count; what is refused is what may be a mistake (a primary that may be
 * alive, a stale replica: --force overrides both) or impossible. The order is
 * secondary_promote()'s, which checks the same again.
 */
static struct failover_decision decide_manual(const struct failover_view *v)
{
	if (v->promoted)
		return decided(FAILOVER_FREEZE, FAILOVER_WHY_PROMOTED, -EALREADY,
			       "already promoted: the guest runs here");
	if (v->peer_connected && !v->force)
		return decided(FAILOVER_FREEZE, FAILOVER_WHY_CONNECTED, -EBUSY,
			       "the primary is still connected: it may be alive (use --force to "
			       "promote anyway)");
	if (!v->sync_complete)
		return decided(FAILOVER_FREEZE, FAILOVER_WHY_NO_CHECKPOINT, -ENODATA, "%s",
			       v->syncing ? "the initial sync is not complete: the replica holds "
					    "no checkpoint"
					  : "the replica holds no complete checkpoint");
	if (v->stale && !v->force) {
		char rollback[256];

		failover_rollback_text(v, rollback, sizeof(rollback));
		return decided(FAILOVER_FREEZE, FAILOVER_WHY_STALE, -ESTALE,
			       "the replica is stale: %s; use --force to promote it anyway",
			       rollback);
	}
	return fence_then(v, FAILOVER_WHY_OPERATOR,
			  v->force ? "ftctl failover --force" : "ftctl failover");
}

/*
 * --cluster: promote by ourselves once it is safe. The replica must be a
 * checkpoint and the primary gone from here; this node quorate (for the
 * membership just formed); and the primary's ftd out of the CPG group: at once
 * if its process ended (its node is still a member, so it cannot run a guest
 * without us noticing), after --cluster-wait if its node left the membership
 * (an isolated primary needs that long to notice it lost quorum and stop its
 * guest), unless the fence command confirms it is off first.
 */
static struct failover_decision decide_auto(const struct failover_view *v)
{
	/* No question to answer yet: what happened is logged elsewhere, or nothing did. */
	if (!v->cluster)
		return quietly(decided(FAILOVER_FREEZE, FAILOVER_WHY_NO_CLUSTER, -EPERM,
				       "without --cluster an operator decides"));
	if (v->auto_blocked)
		return quietly(decided(FAILOVER_FREEZE, FAILOVER_WHY_BLOCKED, -EPERM,
				       "an automatic promotion failed: an operator decides"));
	if (v->promoted)
		return quietly(decided(FAILOVER_FREEZE, FAILOVER_WHY_PROMOTED, -EALREADY,
				       "already promoted: the guest runs here"));
	if (v->peer_connected)
		return quietly(decided(FAILOVER_WAIT, FAILOVER_WHY_CONNECTED, -EBUSY,
				       "a primary is connected"));
	if (!v->sync_complete)
		return quietly(decided(FAILOVER_WAIT, FAILOVER_WHY_NO_CHECKPOINT, -ENODATA,
				       "the replica holds no complete checkpoint"));
	/* Only an operator may take the guest back to before what the world saw. */
	if (v->stale)
		return decided(FAILOVER_FREEZE, FAILOVER_WHY_STALE, -ESTALE,
			       "the replica is stale (the primary moved on to generation %llu): an "
			       "operator decides",
			       (unsigned long long)v->stale_by);
	if (!v->quorate)
		return decided(FAILOVER_WAIT, FAILOVER_WHY_NOT_QUORATE, -EAGAIN,
			       "this node is not quorate");
	if (v->peers)
		return decided(FAILOVER_WAIT, FAILOVER_WHY_PEER_MEMBER, -EBUSY,
			       "the primary's ftd is still a cluster member: it may be alive");
	if (!v->peer_left)
		return decided(FAILOVER_WAIT, FAILOVER_WHY_NO_PEER_SEEN, -EAGAIN,
			       "no primary ftd has been seen in the cluster group");
	if (v->peer_node_left && v->fence == FAILOVER_FENCE_NONE &&
	    v->peer_left_ago_ns < v->cluster_wait_ns)
		return decided(FAILOVER_WAIT, FAILOVER_WHY_CLUSTER_WAIT, -EAGAIN,
			       "node %u left the membership: giving its primary %.1f s to stop its "
			       "guest",
			       v->peer_nodeid, (double)v->cluster_wait_ns / NS_PER_S);
	if (v->peer_node_left)
		return fence_then(v, FAILOVER_WHY_NODE_LEFT, "cluster: the primary's node left");
	return fence_then(v, FAILOVER_WHY_PEER_ENDED, "cluster: the primary's ftd ended");
}

struct failover_decision failover_decide(const struct failover_view *v)
{
	return v->manual ? decide_manual(v) : decide_auto(v);
}
