// SPDX-License-Identifier: MIT
/*
 * --cluster, as ftd sees it: keeps struct ftd_cluster up to date from
 * Corosync's events (daemon/cluster.c), logs and publishes them, carries the
 * generation announcements, and holds a primary back until it may boot.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>

#include "daemon/events.h"
#include "daemon/ftd_cluster.h"
#include "daemon/run.h"
#include "lib/clock.h"
#include "lib/log.h"

/* A CPG message: this line, then the gen_serialize() text. */
#define GEN_MSG "ftd-generation 1\n"

int announce_gen(struct ftd_cluster *fc, const struct gen_state *g)
{
	char buf[2048];
	int n = snprintf(buf, sizeof(buf), GEN_MSG);
	int m = gen_serialize(g, buf + n, sizeof(buf) - (size_t)n);

	if (!fc || !fc->c || fc->lost)
		return -ENOTCONN;
	return m < 0 ? m : cluster_send(fc->c, buf, (size_t)(n + m));
}

static void cluster_changed(void *opaque, const struct cluster_event *ev)
{
	struct ftd_cluster *fc = opaque;
	char node[16], pid[16];

	snprintf(node, sizeof(node), "%u", ev->nodeid);
	snprintf(pid, sizeof(pid), "%u", ev->pid);
	switch (ev->type) {
	case CLUSTER_QUORUM:
		if (ev->quorate == fc->quorate)
			break;
		fc->quorate = ev->quorate;
		if (ev->quorate)
			log_info("cluster: this node is quorate");
		else
			log_warning("cluster: this node lost quorum");
		event_emit(fc->ctl, "quorum", "quorate", ev->quorate ? "yes" : "no", NULL);
		break;
	case CLUSTER_PEER_JOINED:
		fc->peers = cluster_peers(fc->c, NULL, 0);
		fc->peer_left = false;
		log_info("cluster: the ftd on node %s (pid %s) joined", node, pid);
		if (fc->running && announce_gen(fc, fc->running) < 0)
			log_warning("cluster: cannot tell the new member which guest runs here");
		event_emit(fc->ctl, "cluster-peer-joined", "node", node, "pid", pid, NULL);
		break;
	case CLUSTER_PEER_LEFT:
		fc->peers = cluster_peers(fc->c, NULL, 0);
		fc->peer_left = fc->peers == 0;
		fc->left_by_node = ev->reason == CLUSTER_LEFT_NODE;
		fc->left_ns = clock_now_ns();
		fc->left_nodeid = ev->nodeid;
		log_warning("cluster: the ftd on node %s (pid %s) left: %s", node, pid,
			    fc->left_by_node ? "its node left the membership"
					     : "the process ended");
		event_emit(fc->ctl, "cluster-peer-left", "node", node, "pid", pid, "reason",
			   fc->left_by_node ? "node" : "process", NULL);
		break;
	case CLUSTER_MESSAGE: {
		char text[2048];
		struct gen_state g;

		if (ev->len <= strlen(GEN_MSG) || ev->len >= sizeof(text) ||
		    memcmp(ev->data, GEN_MSG, strlen(GEN_MSG)))
			break;
		memcpy(text, ev->data, ev->len);
		text[ev->len] = 0;
		if (gen_parse(text + strlen(GEN_MSG), &g) == 0 && fc->on_gen)
			fc->on_gen(fc->gen_opaque, &g, ev->from_self, ev->nodeid);
		break;
	}
	}
}

int ftd_cluster_open(struct ftd_cluster *fc, const char *name, struct control *ctl)
{
	char group[80];
	int r;

	fc->ctl = ctl;
	snprintf(group, sizeof(group), "ftd-%s", name);
	r = cluster_open(group, cluster_changed, fc, &fc->c);
	if (r < 0) {
		log_error("Cannot join the cluster (--cluster %s): %s%s", name, strerror(-r),
			  r == -ECONNREFUSED ? " (is corosync running?)"
			  : r == -EOPNOTSUPP ? " (corosync runs without a quorum provider)"
					     : "");
		return r;
	}
	fc->quorate = cluster_quorate(fc->c);
	log_info("cluster: joined CPG group %s as node %u, %squorate", group,
		 cluster_local_nodeid(fc->c), fc->quorate ? "" : "not ");
	return 0;
}

int ftd_cluster_pollfds(const struct ftd_cluster *fc, struct pollfd *pfd, int n, int max)
{
	int fds[3], k = fc->c ? cluster_fds(fc->c, fds, 3) : 0;

	for (int i = 0; i < k && n < max; i++)
		pfd[n++] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
	return n;
}

void ftd_cluster_dispatch(struct ftd_cluster *fc)
{
	int r;

	if (!fc->c || fc->lost)
		return;
	r = cluster_dispatch(fc->c);
	if (r < 0) {
		fc->lost = true;
		fc->quorate = false;
		log_error("cluster: lost the connection to corosync (%s): acting as not quorate",
			  strerror(-r));
	}
}

const char *ftd_cluster_quorum(const struct ftd_cluster *fc)
{
	return !fc || !fc->c ? NULL : fc->quorate ? "yes" : "no";
}

int wait_quorum(struct ftd_cluster *fc, int sig_fd)
{
	if (!fc->quorate)
		log_info("cluster: waiting for quorum before starting the guest");
	while (!fc->quorate) {
		struct pollfd pfd[4] = { { .fd = sig_fd, .events = POLLIN } };
		int n = ftd_cluster_pollfds(fc, pfd, 1, 4);

		if (fc->lost)
			return -ENOTCONN;
		if (poll(pfd, (nfds_t)n, 1000) < 0 && errno != EINTR)
			return -errno;
		if ((pfd[0].revents & POLLIN) && ftd_read_signal(sig_fd))
			return -EINTR;
		ftd_cluster_dispatch(fc);
	}
	return 0;
}

struct boot_check {
	bool found;
	uint32_t nodeid;
	struct gen_state g;
};

static void boot_on_gen(void *opaque, const struct gen_state *g, bool from_self, uint32_t nodeid)
{
	struct boot_check *bc = opaque;

	if (from_self || bc->found)
		return;
	bc->found = true;
	bc->nodeid = nodeid;
	bc->g = *g;
}

int cluster_boot_check(struct ftd_cluster *fc, int sig_fd)
{
	struct boot_check bc = { 0 };
	uint64_t end = clock_now_ns() + 1500000000ULL;
	char d[128];

	fc->on_gen = boot_on_gen;
	fc->gen_opaque = &bc;
	while (!bc.found && !fc->lost && clock_now_ns() < end) {
		struct pollfd pfd[4] = { { .fd = sig_fd, .events = POLLIN } };
		int n = ftd_cluster_pollfds(fc, pfd, 1, 4);

		if (poll(pfd, (nfds_t)n, 100) < 0 && errno != EINTR)
			break;
		if ((pfd[0].revents & POLLIN) && ftd_read_signal(sig_fd))
			return -EINTR;
		ftd_cluster_dispatch(fc);
	}
	fc->on_gen = NULL;
	if (!bc.found)
		return 0;
	gen_describe(&bc.g, d, sizeof(d));
	log_error("cluster: node %u runs %s: not booting a second copy here (start this node as "
		  "its secondary instead)",
		  bc.nodeid, d);
	return -EEXIST;
}
