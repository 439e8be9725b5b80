/* SPDX-License-Identifier: MIT */
/*
 * --metrics-listen HOST:PORT: Prometheus text over HTTP (libmicrohttpd).
 * GET /metrics answers with the "text" of a `metrics` request put to a control
 * handler (the role's, so that a promoted secondary serves a primary's
 * metrics from then on); any other path is 404, any other method 405.
 *
 * The server has no thread of its own: the owner thread's loop (daemon/loop.h)
 * polls its one fd and runs it, so the handler reads the role's state without
 * locks. It is bounded so that a scraper cannot stall checkpoints: sockets
 * are non-blocking, at most METRICS_HTTP_CONNECTIONS clients at a time (half
 * of them from one address), each dropped after METRICS_HTTP_TIMEOUT_S idle
 * seconds.
 */
#ifndef RINGFT_DAEMON_METRICS_HTTP_H
#define RINGFT_DAEMON_METRICS_HTTP_H

#include <stdbool.h>
#include <stdint.h>

#include "daemon/control.h"

#define METRICS_HTTP_CONNECTIONS 8
#define METRICS_HTTP_TIMEOUT_S	 5

struct metrics_http;

/*
 * Listens on addr ("HOST:PORT", IPv4 or [IPv6]); requests go to fn. Logs
 * failures, naming the address (one in use: -EADDRINUSE). 0 or -errno.
 */
int metrics_http_open(const char *addr, control_fn fn, void *opaque, struct metrics_http **ret);
/* Closes the listener and every client. Accepts NULL. */
void metrics_http_close(struct metrics_http *mh);
/* Requests go to fn from now on. */
void metrics_http_set_handler(struct metrics_http *mh, control_fn fn, void *opaque);

/* For the loop's poll: readable when the server has new work. */
int metrics_http_fd(const struct metrics_http *mh);
/*
 * How long the loop may wait before metrics_http_run() (clients' timeouts,
 * work pending inside the server), UINT64_MAX: until the fd is readable.
 */
uint64_t metrics_http_wait_ns(struct metrics_http *mh);
/* After each poll, whatever woke it: serves what is ready (never blocks). */
void metrics_http_run(struct metrics_http *mh);

#endif
