// SPDX-License-Identifier: MIT
/* The owner thread's event loop (daemon/loop.h). */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <time.h>

#include "daemon/ftd_cluster.h"
#include "daemon/loop.h"
#include "daemon/metrics_http.h"
#include "daemon/run.h"
#include "lib/clock.h"
#include "lib/log.h"

/* The signalfd, four of the role's, the metrics server's, three of the cluster's. */
#define LOOP_MAX_FDS 9

static struct timespec loop_wait(const struct ftd_loop *l)
{
	uint64_t due = l->ops->next_due ? l->ops->next_due(l->opaque) : UINT64_MAX;
	uint64_t wait_ns = l->max_wait_ns, now = clock_now_ns();

	if (due != UINT64_MAX)
		wait_ns = due <= now ? 0 : due - now < wait_ns ? due - now : wait_ns;
	if (l->mh) {
		uint64_t m = metrics_http_wait_ns(l->mh);

		wait_ns = m < wait_ns ? m : wait_ns;
	}
	return (struct timespec){ .tv_sec = (time_t)(wait_ns / NS_PER_S),
				  .tv_nsec = (long)(wait_ns % NS_PER_S) };
}

int ftd_loop_run(struct ftd_loop *l)
{
	if (l->mh && l->metrics_fn)
		metrics_http_set_handler(l->mh, l->metrics_fn, l->metrics_opaque);
	for (;;) {
		struct pollfd pfd[LOOP_MAX_FDS] = { { .fd = l->sig_fd, .events = POLLIN } };
		struct timespec wait_ts = loop_wait(l);
		int npfd = 1, r;
		uint64_t now;

		for (int i = 0; i < l->nr_fds; i++)
			pfd[npfd++] = (struct pollfd){ .fd = l->fds[i], .events = POLLIN };
		if (l->mh)
			pfd[npfd++] =
				(struct pollfd){ .fd = metrics_http_fd(l->mh), .events = POLLIN };
		if (l->fc)
			npfd = ftd_cluster_pollfds(l->fc, pfd, npfd, LOOP_MAX_FDS);
		if (ppoll(pfd, (nfds_t)npfd, &wait_ts, NULL) < 0 && errno != EINTR) {
			log_error("poll failed: %s", strerror(errno));
			return 1;
		}
		if ((pfd[0].revents & POLLIN) && ftd_read_signal(l->sig_fd))
			return 0;
		if (ftd_hup_take() && l->ops->reload)
			l->ops->reload(l->opaque);
		r = l->ops->io(l->opaque);
		if (r != FTD_LOOP_ON)
			return r;
		now = clock_now_ns();
		if (l->ops->tick && (r = l->ops->tick(l->opaque, now)) != FTD_LOOP_ON)
			return r;
		/* Last: a scrape waits for the checkpoint that is due, never the reverse. */
		if (l->mh)
			metrics_http_run(l->mh);
		if (l->ops->second && now >= l->next_second_ns) {
			l->ops->second(l->opaque, now);
			if (!l->second_on_grid)
				l->next_second_ns = now + NS_PER_S;
			else if ((l->next_second_ns += NS_PER_S) < now)
				l->next_second_ns = now + NS_PER_S;
		}
		if (l->end_ns && now >= l->end_ns)
			return 0;
	}
}
