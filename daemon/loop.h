/* SPDX-License-Identifier: MIT */
/*
 * The owner thread's event loop, for every role (`ftd run`, the primary,
 * the secondary). Each pass:
 *
 *   wait    ppoll on the signalfd, the role's fds (the VM's event fd, the
 *           checkpoint timer, the io_uring), the metrics server's and the
 *           cluster's, at most max_wait_ns or until the role's next timed
 *           work (next_due) or the metrics server's
 *   signal  SIGINT/SIGTERM read and logged: the loop ends, status 0;
 *           SIGHUP: the role's reload
 *   io      the role's wakeup work: dispatch, the VM's events, checkpoints
 *   tick    the role's timed work at now (the clock read once, after io)
 *   metrics --metrics-listen: scrapes answered, after the role's work
 *   second  once a second (the statistics line, the systemd watchdog)
 *   end     --duration reached (end_ns): status 0
 *
 * io and tick return FTD_LOOP_ON to go on, or the exit status to end with.
 */
#ifndef RINGFT_DAEMON_LOOP_H
#define RINGFT_DAEMON_LOOP_H

#include <stdbool.h>
#include <stdint.h>

#include "daemon/control.h"

struct ftd_cluster;
struct metrics_http;

#define FTD_LOOP_ON (-1)

struct ftd_loop_ops {
	int (*io)(void *opaque);
	int (*tick)(void *opaque, uint64_t now);    /* NULL: none */
	void (*second)(void *opaque, uint64_t now); /* NULL: none */
	void (*reload)(void *opaque);		    /* SIGHUP (daemon/reload.h); NULL: none */
	/* When the role has timed work next (clock_now_ns), UINT64_MAX: none. NULL: never. */
	uint64_t (*next_due)(void *opaque);
};

struct ftd_loop {
	const struct ftd_loop_ops *ops;
	void *opaque;
	int sig_fd;
	int fds[4]; /* besides the signalfd; only wake the loop, io looks at them */
	int nr_fds;
	const struct ftd_cluster *fc; /* its fds too; NULL: none */
	/*
	 * --metrics-listen (daemon/metrics_http.h), NULL: none. metrics_fn, if
	 * set, answers its scrapes from the loop's start: the role's control
	 * handler (a promoted secondary's loop is a primary's).
	 */
	struct metrics_http *mh;
	control_fn metrics_fn;
	void *metrics_opaque;
	uint64_t max_wait_ns;
	uint64_t next_second_ns; /* the first call of second */
	/*
	 * true: seconds on a fixed grid (`ftd run`: one line per second on
	 * average); false: a full second after each call (the watchdog's).
	 */
	bool second_on_grid;
	uint64_t end_ns; /* --duration: the loop ends once now reaches it; 0: never */
};

/* Runs l until a signal, the end, an exit status from io or tick, or a failed poll (1). */
int ftd_loop_run(struct ftd_loop *l);

#endif
