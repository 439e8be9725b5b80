// SPDX-License-Identifier: MIT
/*
 * Corosync glue: libquorum says whether this node may act, libcpg who else runs ftd.
 *
 * Both libraries deliver callbacks from their dispatch functions only, in this thread, so
 * the state below needs no lock. The peer table is kept here rather than read back from
 * CPG because a confchg carries the reason a member left, which is the point: a dead
 * process (PROCDOWN) is reported at once and says nothing about the node, a node that
 * left the membership (NODEDOWN) may be dead or cut off, and then only quorum decides.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <corosync/cpg.h>
#include <corosync/quorum.h>
#include <corosync/votequorum.h>

#include "daemon/cluster.h"
#include "lib/clock.h"

/* cpg_join answers CS_ERR_TRY_AGAIN while a membership sync runs: retry this long. */
#define CLUSTER_JOIN_RETRY_MS 2000
#define CLUSTER_JOIN_STEP_MS  20

struct cluster_peer {
	uint32_t nodeid;
	uint32_t pid;
};

struct cluster {
	quorum_handle_t quorum;
	cpg_handle_t cpg;
	votequorum_handle_t votequorum;
	bool have_quorum, have_cpg, have_votequorum;
	int quorum_fd, cpg_fd;
	struct cpg_name group;

	cluster_event_fn fn;
	void *opaque;

	uint32_t nodeid; /* this process in CPG: nodeid and pid */
	uint32_t pid;
	bool quorate;
	bool quorum_reported; /* the first notification is always an event */
	bool gone;	      /* corosync went away: everything below is void */

	/*
	 * Is quorum decided for the current membership? CPG reports a membership as soon as
	 * totem has formed it; votequorum decides quorum for it only once its qdevice has
	 * answered, which can take seconds, and until then quorate is the previous
	 * membership's state. ring_seq is the ring (sequence numbers only grow) of the last
	 * totem membership CPG reported, quorum_seq the one votequorum last decided for.
	 * CPG sends a membership's node-level joins and leaves before its totem confchg, so a
	 * NODEUP/NODEDOWN also marks a newer ring as on its way (awaiting, above ring_seq
	 * await_seq): a CLUSTER_LEFT_NODE is never reported as settled with the old quorum.
	 */
	uint64_t ring_seq;
	uint64_t quorum_seq;
	uint64_t await_seq;
	bool awaiting;

	unsigned int npeers;
	struct cluster_peer peers[CPG_MEMBERS_MAX];
};

static int cs_to_errno(cs_error_t err)
{
	switch (err) {
	case CS_OK:
		return 0;
	case CS_ERR_LIBRARY:
	case CS_ERR_BAD_HANDLE:
		return -ENOTCONN;
	case CS_ERR_TRY_AGAIN:
	case CS_ERR_BUSY:
		return -EAGAIN;
	case CS_ERR_NO_MEMORY:
		return -ENOMEM;
	case CS_ERR_ACCESS:
	case CS_ERR_SECURITY:
		return -EACCES;
	case CS_ERR_INVALID_PARAM:
	case CS_ERR_BAD_FLAGS:
		return -EINVAL;
	case CS_ERR_NAME_TOO_LONG:
		return -ENAMETOOLONG;
	case CS_ERR_EXIST:
		return -EEXIST;
	case CS_ERR_NOT_EXIST:
	case CS_ERR_NAME_NOT_FOUND:
		return -ENOENT;
	case CS_ERR_TIMEOUT:
		return -ETIMEDOUT;
	case CS_ERR_INTERRUPT:
		return -EINTR;
	case CS_ERR_NOT_SUPPORTED:
		return -EOPNOTSUPP;
	case CS_ERR_TOO_BIG:
		return -E2BIG;
	case CS_ERR_NO_SPACE:
	case CS_ERR_NO_RESOURCES:
	case CS_ERR_QUEUE_FULL:
	case CS_ERR_TOO_MANY_GROUPS:
		return -ENOBUFS;
	default:
		return -EIO;
	}
}

static void cluster_emit(struct cluster *c, const struct cluster_event *ev)
{
	if (c->fn)
		c->fn(c->opaque, ev);
}

static void cluster_set_quorate(struct cluster *c, bool quorate)
{
	struct cluster_event ev = { .type = CLUSTER_QUORUM, .quorate = quorate };

	if (c->quorum_reported && c->quorate == quorate)
		return;
	c->quorate = quorate;
	c->quorum_reported = true;
	cluster_emit(c, &ev);
}

static void quorum_notify(quorum_handle_t handle, uint32_t quorate, struct quorum_ring_id ring_id,
			  uint32_t member_list_entries, const uint32_t *member_list)
{
	struct cluster *c;

	if (quorum_context_get(handle, (const void **)&c) != CS_OK || !c)
		return;
	if (ring_id.seq > c->quorum_seq)
		c->quorum_seq = ring_id.seq;
	cluster_set_quorate(c, quorate != 0);
}

static void quorum_nodelist(quorum_handle_t handle, struct quorum_ring_id ring_id,
			    uint32_t member_list_entries, const uint32_t *member_list,
			    uint32_t joined_list_entries, const uint32_t *joined_list,
			    uint32_t left_list_entries, const uint32_t *left_list)
{
}

static int peer_find(const struct cluster *c, uint32_t nodeid, uint32_t pid)
{
	for (unsigned int i = 0; i < c->npeers; i++)
		if (c->peers[i].nodeid == nodeid && c->peers[i].pid == pid)
			return (int)i;
	return -1;
}

static bool is_self(const struct cluster *c, const struct cpg_address *a)
{
	return a->nodeid == c->nodeid && a->pid == c->pid;
}

/*
 * Diff against our table rather than trusting joined_list alone: on our own join the
 * members already there come in member_list only, and they are news to the caller too.
 */
static void cpg_confchg(cpg_handle_t handle, const struct cpg_name *group_name,
			const struct cpg_address *member_list, size_t member_list_entries,
			const struct cpg_address *left_list, size_t left_list_entries,
			const struct cpg_address *joined_list, size_t joined_list_entries)
{
	struct cluster *c;

	if (cpg_context_get(handle, (void **)&c) != CS_OK || !c)
		return;

	for (size_t i = 0; i < left_list_entries; i++)
		if (left_list[i].reason == CPG_REASON_NODEDOWN)
			c->awaiting = true;
	for (size_t i = 0; i < joined_list_entries; i++)
		if (joined_list[i].reason == CPG_REASON_NODEUP)
			c->awaiting = true;
	if (c->awaiting)
		c->await_seq = c->ring_seq;

	for (size_t i = 0; i < left_list_entries; i++) {
		const struct cpg_address *a = &left_list[i];
		struct cluster_event ev = { .type = CLUSTER_PEER_LEFT,
					    .nodeid = a->nodeid,
					    .pid = a->pid };
		int k = peer_find(c, a->nodeid, a->pid);

		if (is_self(c, a) || k < 0)
			continue;
		c->peers[k] = c->peers[--c->npeers];
		ev.reason =
			a->reason == CPG_REASON_NODEDOWN ? CLUSTER_LEFT_NODE : CLUSTER_LEFT_PROCESS;
		cluster_emit(c, &ev);
	}

	for (size_t i = 0; i < member_list_entries; i++) {
		const struct cpg_address *a = &member_list[i];
		struct cluster_event ev = { .type = CLUSTER_PEER_JOINED,
					    .nodeid = a->nodeid,
					    .pid = a->pid };

		if (is_self(c, a) || peer_find(c, a->nodeid, a->pid) >= 0)
			continue;
		if (c->npeers == CPG_MEMBERS_MAX) /* CPG itself holds no more */
			break;
		c->peers[c->npeers++] = (struct cluster_peer){ a->nodeid, a->pid };
		cluster_emit(c, &ev);
	}
}

static void cpg_totem_confchg(cpg_handle_t handle, struct cpg_ring_id ring_id,
			      uint32_t member_list_entries, const uint32_t *member_list)
{
	struct cluster *c;

	if (cpg_context_get(handle, (void **)&c) != CS_OK || !c)
		return;
	if (ring_id.seq > c->ring_seq)
		c->ring_seq = ring_id.seq;
	if (c->awaiting && c->ring_seq > c->await_seq)
		c->awaiting = false;
}

/* Messages: the data generations ftds announce (daemon/replication.c). */
static void cpg_deliver(cpg_handle_t handle, const struct cpg_name *group_name, uint32_t nodeid,
			uint32_t pid, void *msg, size_t msg_len)
{
	struct cluster *c;
	struct cluster_event ev = {
		.type = CLUSTER_MESSAGE, .nodeid = nodeid, .pid = pid, .data = msg, .len = msg_len
	};

	if (cpg_context_get(handle, (void **)&c) != CS_OK || !c || c->gone)
		return;
	ev.from_self = nodeid == c->nodeid && pid == c->pid;
	cluster_emit(c, &ev);
}

int cluster_send(struct cluster *c, const void *buf, size_t len)
{
	struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };

	if (!c || c->gone || !c->have_cpg)
		return -ENOTCONN;
	return cs_to_errno(cpg_mcast_joined(c->cpg, CPG_TYPE_AGREED, &iov, 1));
}

static void msleep(unsigned int ms)
{
	struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)((ms % 1000) * NS_PER_MS) };

	while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
		;
}

static int cluster_connect_quorum(struct cluster *c)
{
	quorum_model_v1_data_t model = {
		.model = QUORUM_MODEL_V1,
		.quorum_notify_fn = quorum_notify,
		.nodelist_notify_fn = quorum_nodelist,
	};
	uint32_t type = QUORUM_FREE;
	int quorate = 0;
	cs_error_t err;

	err = quorum_model_initialize(&c->quorum, QUORUM_MODEL_V1, (quorum_model_data_t *)&model,
				      &type, c);
	if (err != CS_OK)
		return err == CS_ERR_LIBRARY ? -ECONNREFUSED : cs_to_errno(err);
	c->have_quorum = true;
	if (type != QUORUM_SET)
		return -EOPNOTSUPP;
	err = quorum_getquorate(c->quorum, &quorate);
	if (err == CS_OK)
		err = quorum_trackstart(c->quorum, CS_TRACK_CURRENT | CS_TRACK_CHANGES);
	if (err == CS_OK)
		err = quorum_fd_get(c->quorum, &c->quorum_fd);
	c->quorate = quorate != 0;
	return cs_to_errno(err);
}

static int cluster_connect_cpg(struct cluster *c)
{
	cpg_model_v1_data_t model = {
		.model = CPG_MODEL_V1,
		.cpg_deliver_fn = cpg_deliver,
		.cpg_confchg_fn = cpg_confchg,
		.cpg_totem_confchg_fn = cpg_totem_confchg,
		.flags = CPG_MODEL_V1_DELIVER_INITIAL_TOTEM_CONF,
	};
	unsigned int waited = 0;
	cs_error_t err;

	err = cpg_model_initialize(&c->cpg, CPG_MODEL_V1, (cpg_model_data_t *)&model, c);
	if (err != CS_OK)
		return err == CS_ERR_LIBRARY ? -ECONNREFUSED : cs_to_errno(err);
	c->have_cpg = true;
	err = cpg_local_get(c->cpg, &c->nodeid);
	if (err == CS_OK)
		err = cpg_fd_get(c->cpg, &c->cpg_fd);
	while (err == CS_OK) {
		err = cpg_join(c->cpg, &c->group);
		if (err != CS_ERR_TRY_AGAIN || waited >= CLUSTER_JOIN_RETRY_MS)
			break;
		msleep(CLUSTER_JOIN_STEP_MS);
		waited += CLUSTER_JOIN_STEP_MS;
		err = CS_OK;
	}
	return cs_to_errno(err);
}

int cluster_open(const char *group, cluster_event_fn fn, void *opaque, struct cluster **ret)
{
	struct cluster *c;
	size_t len = strlen(group);
	int r;

	*ret = NULL;
	if (len == 0)
		return -EINVAL;
	if (len >= CPG_MAX_NAME_LENGTH)
		return -ENAMETOOLONG;
	c = calloc(1, sizeof(*c));
	if (!c)
		return -ENOMEM;
	memcpy(c->group.value, group, len);
	c->group.length = (uint32_t)len;
	c->fn = fn;
	c->opaque = opaque;
	c->pid = (uint32_t)getpid(); /* CPG knows us by SO_PEERCRED's pid */
	c->quorum_fd = c->cpg_fd = -1;

	r = cluster_connect_quorum(c);
	if (r == 0)
		r = cluster_connect_cpg(c);
	if (r == 0) {
		cs_error_t err = votequorum_initialize(&c->votequorum, NULL);

		c->have_votequorum = err == CS_OK;
		r = cs_to_errno(err);
	}
	if (r < 0) {
		cluster_close(c);
		return r;
	}
	*ret = c;
	return 0;
}

static void cluster_disconnect(struct cluster *c)
{
	if (c->have_cpg)
		cpg_finalize(c->cpg); /* leaves the group */
	if (c->have_quorum)
		quorum_finalize(c->quorum);
	if (c->have_votequorum)
		votequorum_finalize(c->votequorum);
	c->have_cpg = c->have_quorum = c->have_votequorum = false;
	c->quorum_fd = c->cpg_fd = -1;
}

void cluster_close(struct cluster *c)
{
	if (!c)
		return;
	cluster_disconnect(c);
	free(c);
}

int cluster_fds(const struct cluster *c, int *fds, int max)
{
	int n = 0;

	if (c->gone)
		return 0;
	if (n < max && c->quorum_fd >= 0)
		fds[n++] = c->quorum_fd;
	if (n < max && c->cpg_fd >= 0)
		fds[n++] = c->cpg_fd;
	return n;
}

/* Corosync went away: nothing it said holds any longer, least of all quorum. */
static int cluster_lost(struct cluster *c, int r)
{
	c->gone = true;
	c->npeers = 0;
	cluster_disconnect(c);
	if (c->quorate)
		cluster_set_quorate(c, false);
	return r;
}

int cluster_dispatch(struct cluster *c)
{
	cs_error_t err;

	if (c->gone)
		return -ENOTCONN;
	/*
	 * Quorum first: when corosync has already decided quorum for a new membership, a
	 * PEER_LEFT is then seen with it (cluster_quorum_settled() says whether it has).
	 */
	err = quorum_dispatch(c->quorum, CS_DISPATCH_ALL);
	if (err == CS_OK || err == CS_ERR_TRY_AGAIN)
		err = cpg_dispatch(c->cpg, CS_DISPATCH_ALL);
	if (err == CS_OK || err == CS_ERR_TRY_AGAIN)
		return 0;
	return cluster_lost(c, cs_to_errno(err));
}

bool cluster_quorate(const struct cluster *c)
{
	return !c->gone && c->quorate;
}

uint32_t cluster_local_nodeid(const struct cluster *c)
{
	return c->nodeid;
}

bool cluster_quorum_settled(const struct cluster *c)
{
	return !c->gone && !c->awaiting && c->quorum_seq != 0 && c->quorum_seq >= c->ring_seq;
}

unsigned int cluster_peers(const struct cluster *c, uint32_t *nodeids, unsigned int max)
{
	for (unsigned int i = 0; nodeids && i < c->npeers && i < max; i++)
		nodeids[i] = c->peers[i].nodeid;
	return c->npeers;
}

int cluster_votes(const struct cluster *c, struct cluster_votes *ret)
{
	struct votequorum_info info;
	cs_error_t err;

	if (c->gone || !c->have_votequorum)
		return -ENOTCONN;
	err = votequorum_getinfo(c->votequorum, VOTEQUORUM_QDEVICE_NODEID, &info);
	if (err != CS_OK)
		return cs_to_errno(err);
	*ret = (struct cluster_votes){
		.expected = info.highest_expected,
		.total = info.total_votes,
		.quorum = info.quorum,
		.qdevice = (info.flags & VOTEQUORUM_INFO_QDEVICE_ALIVE) != 0,
		.qdevice_vote = (info.flags & VOTEQUORUM_INFO_QDEVICE_CAST_VOTE) != 0,
	};
	return 0;
}
