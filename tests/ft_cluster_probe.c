// SPDX-License-Identifier: MIT
/*
 * ft_cluster_probe [-s] [-t] GROUP: joins CPG group GROUP through daemon/cluster.c, as ftd
 * will, and prints one line per event on stdout, flushed at once:
 *
 *	quorate yes|no
 *	joined NODEID PID
 *	left NODEID PID process|node
 *
 * -s also prints "settled yes|no" when cluster_quorum_settled() flips, before the event
 * that revealed it; -t starts each line with the wall-clock time the event was handled
 * ("SECONDS.MICROSECONDS ", like bash's EPOCHREALTIME), for time lines across nodes.
 *
 * ft_cluster_probe --votes GROUP: prints votequorum's view once and exits:
 *	votes TOTAL/EXPECTED quorum QUORUM qdevice yes|no vote yes|no
 * (it joins GROUP for a moment: use another group than the probes watching).
 *
 * Exit status: 0 on SIGTERM or SIGINT, 1 when corosync cannot be reached or goes away
 * (with a message on stderr), 2 on a usage error.
 */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "daemon/cluster.h"

struct probe {
	struct cluster *c;
	bool show_settled;
	bool timestamps;
	bool settled;
};

static void __attribute__((format(printf, 2, 3))) line(const struct probe *p, const char *fmt, ...)
{
	va_list ap;

	if (p->timestamps) {
		struct timespec ts;

		clock_gettime(CLOCK_REALTIME, &ts);
		printf("%lld.%06ld ", (long long)ts.tv_sec, ts.tv_nsec / 1000);
	}
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	putchar('\n');
	fflush(stdout);
}

static void print_settled(struct probe *p)
{
	bool settled;

	if (!p->show_settled || !p->c)
		return;
	settled = cluster_quorum_settled(p->c);
	if (settled == p->settled)
		return;
	p->settled = settled;
	line(p, "settled %s", settled ? "yes" : "no");
}

static void print_event(void *opaque, const struct cluster_event *ev)
{
	struct probe *p = opaque;

	print_settled(p);
	switch (ev->type) {
	case CLUSTER_QUORUM:
		line(p, "quorate %s", ev->quorate ? "yes" : "no");
		break;
	case CLUSTER_PEER_JOINED:
		line(p, "joined %u %u", ev->nodeid, ev->pid);
		break;
	case CLUSTER_PEER_LEFT:
		line(p, "left %u %u %s", ev->nodeid, ev->pid,
		     ev->reason == CLUSTER_LEFT_NODE ? "node" : "process");
		break;
	case CLUSTER_MESSAGE:
		line(p, "message %u %u %zu bytes", ev->nodeid, ev->pid, ev->len);
		break;
	}
}

static int signal_fd(void)
{
	sigset_t mask;
	int fd;

	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	if (sigprocmask(SIG_BLOCK, &mask, NULL) < 0)
		return -errno;
	fd = signalfd(-1, &mask, SFD_CLOEXEC);
	return fd < 0 ? -errno : fd;
}

/* Polls the cluster's fds and the signal fd until a signal (0) or an error (-errno). */
static int run(struct probe *p, int sig)
{
	for (;;) {
		struct pollfd pfd[4];
		int fds[3];
		int n = cluster_fds(p->c, fds, 3);
		int r;

		for (int i = 0; i < n; i++)
			pfd[i] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
		pfd[n] = (struct pollfd){ .fd = sig, .events = POLLIN };
		if (poll(pfd, (nfds_t)n + 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (pfd[n].revents & POLLIN)
			return 0;
		r = cluster_dispatch(p->c);
		if (r < 0)
			return r;
		print_settled(p);
	}
}

static int print_votes(struct cluster *c)
{
	struct cluster_votes v;
	int r = cluster_votes(c, &v);

	if (r < 0)
		return r;
	printf("votes %u/%u quorum %u qdevice %s vote %s\n", v.total, v.expected, v.quorum,
	       v.qdevice ? "yes" : "no", v.qdevice_vote ? "yes" : "no");
	return 0;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "votes", no_argument, NULL, 'v' },
		{ NULL, 0, NULL, 0 },
	};
	struct probe p = { .settled = true };
	bool votes = false;
	const char *group;
	int opt, sig, r;

	while ((opt = getopt_long(argc, argv, "st", longopts, NULL)) != -1) {
		switch (opt) {
		case 's':
			p.show_settled = true;
			break;
		case 't':
			p.timestamps = true;
			break;
		case 'v':
			votes = true;
			break;
		default:
			return 2;
		}
	}
	if (optind != argc - 1) {
		fprintf(stderr, "usage: ft_cluster_probe [-s] [-t] GROUP | --votes GROUP\n");
		return 2;
	}
	group = argv[optind];
	sig = signal_fd();
	if (sig < 0) {
		fprintf(stderr, "ft_cluster_probe: signalfd: %s\n", strerror(-sig));
		return 1;
	}
	r = cluster_open(group, print_event, &p, &p.c);
	if (r == -ECONNREFUSED) {
		fprintf(stderr, "ft_cluster_probe: cannot reach corosync: %s\n", strerror(-r));
		return 1;
	} else if (r < 0) {
		fprintf(stderr, "ft_cluster_probe: cannot join %s: %s\n", group, strerror(-r));
		return 1;
	}
	if (votes) {
		r = print_votes(p.c);
		cluster_close(p.c);
		if (r < 0)
			fprintf(stderr, "ft_cluster_probe: votes: %s\n", strerror(-r));
		return r < 0;
	}
	fprintf(stderr, "ft_cluster_probe: node %u pid %d in group %s\n", cluster_local_nodeid(p.c),
		getpid(), group);
	r = run(&p, sig);
	cluster_close(p.c);
	close(sig);
	if (r < 0) {
		fprintf(stderr, "ft_cluster_probe: lost corosync: %s\n", strerror(-r));
		return 1;
	}
	return 0;
}
