/* SPDX-License-Identifier: MIT */
/*
 * Control socket requests (ctl/README.md): one line of printable ASCII, parsed
 * here and nowhere else, so that every daemon role refuses the same bad input
 * with the same message (and a fuzzer can drive it without a daemon).
 */
#ifndef RINGFT_DAEMON_REQUEST_H
#define RINGFT_DAEMON_REQUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define REQUEST_MAX 512 /* bytes, newline included */

enum request_kind {
	REQ_STATUS,
	REQ_METRICS,
	REQ_EVENTS,
	REQ_FAILOVER,
	REQ_SWITCHOVER,
	REQ_PROTECT,
	REQ_SET_INTERVAL,
	REQ_DISCARD, /* secondary: drop its copy so that another guest may sync */
	REQ_START,   /* a waiting node (role auto): boot the guest here */
};

struct request {
	enum request_kind kind;
	int force;		      /* failover --force */
	bool now;		      /* events --now: the current state first */
	uint64_t interval_ns;	      /* set interval */
	bool interval_auto;	      /* set interval auto */
	struct sockaddr_storage peer; /* protect --peer */
	socklen_t peer_len;
	char tls_peer[256];	/* protect --peer HOST:PORT --tls-peer NAME, or "" */
	char text[REQUEST_MAX]; /* the line as received */
};

/*
 * Parses one request line (without its newline, len bytes, not necessarily
 * NUL-terminated). Returns 0, or -EINVAL with a message naming what was wrong
 * in err (unknown request, bad argument, bytes that are not printable ASCII).
 */
int request_parse(const char *line, size_t len, struct request *req, char *err, size_t errlen);

#endif
