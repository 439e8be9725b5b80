/* SPDX-License-Identifier: MIT */
/*
 * What ftd knows of its cluster (--cluster): quorum, the other ftds of the
 * CPG group and when the last of them left, and the data generations
 * announced there. daemon/cluster.c talks to Corosync; this keeps the state
 * both roles decide on, up to date from cluster_dispatch().
 */
#ifndef RINGFT_DAEMON_FTD_CLUSTER_H
#define RINGFT_DAEMON_FTD_CLUSTER_H

#include <poll.h>
#include <stdbool.h>
#include <stdint.h>

#include "daemon/cluster.h"
#include "proto/generation.h"

struct control;

struct ftd_cluster {
	struct cluster *c; /* NULL without --cluster */
	struct control *ctl;
	bool quorate;
	bool lost;	    /* corosync went away: not quorate until ftd restarts */
	unsigned int peers; /* other ftds in the group */
	bool peer_left;	    /* the last of them left, how and when: */
	bool left_by_node;  /* its node left the membership (else the process ended) */
	uint64_t left_ns;
	uint32_t left_nodeid;
	/*
	 * Data generations announced in the group, for the role's handler. Only
	 * a node that runs the guest announces: when it starts a generation, and
	 * again whenever another ftd joins (running: its generation, else NULL).
	 */
	void (*on_gen)(void *opaque, const struct gen_state *g, bool from_self, uint32_t nodeid);
	void *gen_opaque;
	const struct gen_state *running;
};

/* Joins group ftd-NAME; events go to ctl. Logs failures; returns 0 or -errno. */
int ftd_cluster_open(struct ftd_cluster *fc, const char *name, struct control *ctl);
/* Adds the cluster's fds to pfd[] from index n; returns the new count. */
int ftd_cluster_pollfds(const struct ftd_cluster *fc, struct pollfd *pfd, int n, int max);
/* After a poll: every change pending. Losing corosync means not quorate from then on. */
void ftd_cluster_dispatch(struct ftd_cluster *fc);
/* "yes", "no", or NULL without a cluster: status' "quorum". */
const char *ftd_cluster_quorum(const struct ftd_cluster *fc);
/* Tells every ftd of the group which generation of the guest this node is at. */
int announce_gen(struct ftd_cluster *fc, const struct gen_state *g);

/* A primary starts its guest only on a quorate node. -EINTR on a signal. */
int wait_quorum(struct ftd_cluster *fc, int sig_fd);
/*
 * Before booting, listens a moment for the group: a node that runs the guest
 * announces its generation to every ftd that joins. If one does, booting here
 * would make a second copy. Logs; 0, or -EEXIST / -EINTR.
 */
int cluster_boot_check(struct ftd_cluster *fc, int sig_fd);

#endif
