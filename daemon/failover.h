/* SPDX-License-Identifier: MIT */
/*
 * The failover decision (docs/failover.md, "Ways to fail over" and "Automatic
 * failover"): whether a secondary may run its replica now, as a pure function
 * of what the daemon knows. No I/O, no clock, no globals: the daemon gathers
 * a failover_view, asks failover_decide() and acts on the answer (fences,
 * promotes, logs, answers ftctl), so that every rule is unit-tested without a
 * cluster (test_units).
 */
#ifndef RINGFT_DAEMON_FAILOVER_H
#define RINGFT_DAEMON_FAILOVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* --fence-command, for this promotion. */
enum failover_fence {
	FAILOVER_FENCE_NONE,	/* no fence command configured */
	FAILOVER_FENCE_PENDING, /* configured, not run yet */
	FAILOVER_FENCE_DONE,	/* ran and exited 0: the old primary is off */
	FAILOVER_FENCE_FAILED,	/* failed, timed out or could not run: fence_error says which */
};

struct failover_view {
	/* Who asks: `ftctl failover [--force]`, else the automatic check of --cluster. */
	bool manual;
	bool force;

	/* The replica (struct secondary). */
	bool promoted;	     /* the guest already runs here */
	bool peer_connected; /* a primary holds a session (syncing or replicating) */
	bool syncing;	     /* that session is still in its initial sync (wording only) */
	bool sync_complete;  /* the replica is a complete checkpoint */
	uint64_t checkpoint; /* ...this one, */
	uint64_t generation; /* of this generation of the guest */
	/* The primary ran on without the replica (learned from the cluster). */
	bool stale;
	uint64_t stale_by;	   /* the generation it moved on to */
	unsigned int stale_behind; /* how many generations past the replica's that is */
	uint64_t stale_for_ns;	   /* since the replica was found stale */

	/* The cluster: only the automatic path reads these. */
	bool cluster;		   /* --cluster, joined */
	bool auto_blocked;	   /* an automatic promotion failed before: the operator decides */
	bool quorate;		   /* this node, for the membership just formed (settled) */
	unsigned int peers;	   /* other ftds in the CPG group */
	bool peer_left;		   /* the last of them left the group, */
	bool peer_node_left;	   /* ...with its node (else only its process ended), */
	uint32_t peer_nodeid;	   /* ...that node, */
	uint64_t peer_left_ago_ns; /* ...this long ago */
	uint64_t cluster_wait_ns;  /* --cluster-wait */

	enum failover_fence fence;
	const char *fence_error; /* FAILOVER_FENCE_FAILED: the fence command's failure */
};

enum failover_action {
	FAILOVER_PROMOTE, /* run the replica here now (after the fence command, if pending) */
	FAILOVER_WAIT,	  /* not now: the automatic check asks again as things change */
	FAILOVER_FREEZE,  /* not by this path: it stays as it is until an operator acts */
};

enum failover_reason {
	FAILOVER_WHY_OPERATOR,	    /* promote: ftctl failover */
	FAILOVER_WHY_PEER_ENDED,    /* promote: the primary's ftd ended, its node a member */
	FAILOVER_WHY_NODE_LEFT,	    /* promote: its node left: waited out, or fenced */
	FAILOVER_WHY_NO_CLUSTER,    /* without --cluster only an operator fails over */
	FAILOVER_WHY_BLOCKED,	    /* an automatic promotion failed before */
	FAILOVER_WHY_PROMOTED,	    /* the guest already runs here */
	FAILOVER_WHY_CONNECTED,	    /* a primary is connected: it may be alive */
	FAILOVER_WHY_NO_CHECKPOINT, /* nothing to run: the sync is not complete */
	FAILOVER_WHY_STALE,	    /* the primary ran on without this replica */
	FAILOVER_WHY_NOT_QUORATE,
	FAILOVER_WHY_PEER_MEMBER,  /* the primary's ftd is still in the group */
	FAILOVER_WHY_NO_PEER_SEEN, /* no primary ftd was ever in the group */
	FAILOVER_WHY_CLUSTER_WAIT, /* its node left less than --cluster-wait ago */
	FAILOVER_WHY_FENCE_FAILED,
};

struct failover_decision {
	enum failover_action action;
	enum failover_reason why;
	/* PROMOTE with FAILOVER_FENCE_PENDING: fence, then decide again with the result. */
	bool fence_first;
	/*
	 * Nothing to tell anyone: the automatic path has no question to answer
	 * yet (the secondary's own log lines say what happened, e.g. "Primary
	 * lost: ...").
	 */
	bool quiet;
	/* Not PROMOTE: what a refused `ftctl failover` returns (-EBUSY, -ESTALE, ...). */
	int error;
	/*
	 * In words: the refusal ftctl shows, what an automatic promotion waits
	 * for, or on PROMOTE who decided (the automatic path's "promoted by").
	 */
	char text[320];
};

struct failover_decision failover_decide(const struct failover_view *v);

/*
 * How far promoting a stale replica takes the guest back: the refusal of
 * `ftctl failover` and the "Rollback:" warning when forced.
 */
void failover_rollback_text(const struct failover_view *v, char *buf, size_t len);

#endif
