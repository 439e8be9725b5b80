/* SPDX-License-Identifier: MIT */
/*
 * Membership and quorum from the local Corosync: the ground automatic failover stands on.
 *
 * ftd does not decide by itself who is alive. It asks Corosync two things:
 *   - quorum (libquorum, provider corosync_votequorum): may this node act at all?
 *   - the CPG group `group` (libcpg), which every ftd joins: is the other ftd there?
 *
 * What "quorate" means with two nodes and a quorum device (corosync-qdevice on each node,
 * talking to corosync-qnetd on a third host, algorithm ffsplit):
 *   Each node has 1 vote and the qdevice 1, so expected votes are 3 and quorum is 2. A node
 *   is quorate while its current membership holds 2 votes: both nodes, or one node plus
 *   the qdevice's vote. qnetd gives that vote to one partition at a time: with ffsplit the
 *   larger; on a tie the one whose qdevice heuristics pass, then the one that was quorate
 *   before (keep_active_partition_tie_breaker), then the lowest node id (tie_breaker). So
 *   after a node1<->node2 cut exactly one node stays quorate (node1, with the defaults),
 *   and a node cut off from both the other node and qnetd loses quorum. qnetd itself down
 *   is harmless while both nodes see each other. two_node must not be configured: it
 *   cannot be combined with a qdevice and would leave both halves of a split quorate.
 *
 * Quorum lags membership. CPG reports a new membership as soon as totem has formed it
 * (token timeout + consensus after a cut), e.g. a CLUSTER_PEER_LEFT with CLUSTER_LEFT_NODE;
 * votequorum decides quorum for it only when the qdevice has answered for it, and until
 * then cluster_quorate() is the PREVIOUS membership's state: a node that was itself cut off
 * sees its peer leave while still "quorate". cluster_quorum_settled() tells the two apart.
 *
 * A node cut off from everything loses quorum when its qdevice gives up on qnetd (a missed
 * echo reply: 1 to 2 heartbeats of 0.8 * quorum.device.timeout after the cut), and at the
 * latest quorum.device.sync_timeout after its own membership change (votequorum then stops
 * waiting for the qdevice). The surviving node sees it leave, and even gets its own quorum
 * settled, BEFORE that (measured by tests/test_cluster.sh: up to 2.6 s before with token
 * 1000 ms, qdevice timeout 3000 ms; sync_timeout after with a stuck qdevice). So:
 *   - a secondary promotes on CLUSTER_LEFT_NODE only while quorate and settled, and only
 *     sync_timeout + token after the event: by then a cut-off primary has lost quorum;
 *   - a primary stops its guest as soon as it gets CLUSTER_QUORUM false or loses corosync
 *     (cluster_dispatch() fails). Until then output commit protects the outside world: a
 *     cut-off primary gets no acknowledgements, so it releases nothing.
 *
 * CLUSTER_LEFT_PROCESS comes within milliseconds, but says only that the process left the
 * group: it died (its guest with it), closed its handle, or its corosync is shutting down,
 * in which case the process is still alive and learns it a moment later (cluster_dispatch
 * fails). Treat the process as dead only once something else shows it (its replication
 * connection closed).
 *
 * Everything runs in the caller's thread: poll cluster_fds() for POLLIN, then call
 * cluster_dispatch(), which calls fn for each change. fn must not call cluster_close().
 */
#ifndef RINGFT_DAEMON_CLUSTER_H
#define RINGFT_DAEMON_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

struct cluster;

enum cluster_event_type {
	CLUSTER_QUORUM,
	CLUSTER_PEER_JOINED,
	CLUSTER_PEER_LEFT,
	CLUSTER_MESSAGE, /* a cluster_send() of any member, this one's included */
};

enum cluster_leave_reason {
	/* The ftd process left or died (CPG_REASON_LEAVE/PROCDOWN): its node is still a member. */
	CLUSTER_LEFT_PROCESS,
	/* Its node left the membership (CPG_REASON_NODEDOWN): dead, or cut off from this one. */
	CLUSTER_LEFT_NODE,
};

struct cluster_event {
	enum cluster_event_type type;
	bool quorate;	 /* CLUSTER_QUORUM: the new state */
	uint32_t nodeid; /* PEER_*: the other ftd's node and pid */
	uint32_t pid;
	enum cluster_leave_reason reason; /* PEER_LEFT */
	const void *data;		  /* MESSAGE: valid during the callback only */
	size_t len;
	bool from_self; /* MESSAGE: sent by this process */
};

typedef void (*cluster_event_fn)(void *opaque, const struct cluster_event *ev);

/*
 * Connects to the local corosync, tracks quorum (libquorum, CS_TRACK_CHANGES) and joins CPG
 * group `group` (1 to 127 bytes). Returns 0, -ECONNREFUSED when corosync is not running,
 * -EOPNOTSUPP when it runs without a quorum provider (everyone would be "quorate"), -EAGAIN
 * when it stayed busy (membership sync) for 2 s, or another -errno. Never exits.
 *
 * The first cluster_dispatch() reports the current state: one CLUSTER_QUORUM, and one
 * CLUSTER_PEER_JOINED for each member already in the group. Until then cluster_quorate()
 * gives the state read at open.
 */
int cluster_open(const char *group, cluster_event_fn fn, void *opaque, struct cluster **ret);

/* Leaves the group (the others see CLUSTER_LEFT_PROCESS) and frees c. Accepts NULL. */
void cluster_close(struct cluster *c);

/* fds to poll for POLLIN (quorum and cpg); returns the count (<= 3), 0 once corosync is gone. */
int cluster_fds(const struct cluster *c, int *fds, int max);

/*
 * Dispatches everything pending (CS_DISPATCH_ALL) without blocking, quorum first, then CPG,
 * calling fn for each change. Returns 0, or -ENOTCONN (or another -errno) when corosync went
 * away: then, if it was quorate, fn has just got CLUSTER_QUORUM false; from then on
 * cluster_quorate() is false, cluster_peers() is 0 and cluster_fds() gives nothing.
 * Close the handle and open a new one to reconnect.
 */
int cluster_dispatch(struct cluster *c);

/*
 * Sends a message to every member of the group, this one included, in agreed
 * order (CPG_TYPE_AGREED): by virtual synchrony, once this process has got its
 * own message back, every member that stays in the membership gets it too,
 * before any later membership change. Returns 0 or -errno (-EAGAIN: retry).
 */
int cluster_send(struct cluster *c, const void *buf, size_t len);

bool cluster_quorate(const struct cluster *c);

/*
 * Whether cluster_quorate() was decided for the membership CPG last reported: false from
 * a node joining or leaving (it is false already when fn gets that CLUSTER_PEER_LEFT with
 * CLUSTER_LEFT_NODE) until votequorum has decided quorum for the new membership, which
 * waits for the qdevice's answer (up to quorum.device.sync_timeout). Settling is not an
 * event when the state stays the same: re-check after every cluster_dispatch().
 */
bool cluster_quorum_settled(const struct cluster *c);

uint32_t cluster_local_nodeid(const struct cluster *c);

/* Other members of the group (not this process): count, and optionally their nodeids. */
unsigned int cluster_peers(const struct cluster *c, uint32_t *nodeids, unsigned int max);

/* Votequorum's view of this node, for status output. */
struct cluster_votes {
	uint32_t expected; /* expected votes: every node's and the qdevice's */
	uint32_t total;	   /* votes in this node's partition now, the qdevice's included */
	uint32_t quorum;   /* votes needed to be quorate */
	bool qdevice;	   /* a quorum device is registered and alive on this node */
	bool qdevice_vote; /* ... and casts its vote for this partition */
};

/* A synchronous round trip to corosync: not for the failover path. Returns 0 or -errno. */
int cluster_votes(const struct cluster *c, struct cluster_votes *ret);

#endif
