/* SPDX-License-Identifier: MIT */
/*
 * The event loop of the replication transport: one io_uring, owned by one
 * thread together with every link and listener on it (proto/link.h,
 * proto/listener.h); nothing blocks. The owner polls netloop_fd() beside its
 * other fds and calls netloop_dispatch() when it is readable.
 */
#ifndef RINGFT_PROTO_NETLOOP_H
#define RINGFT_PROTO_NETLOOP_H

#include <liburing.h>
#include <stdbool.h>
#include <stdint.h>

struct netloop {
	struct io_uring ring;
	bool send_zc; /* IORING_OP_SENDMSG_ZC for messages that ask for it */
	unsigned int inflight;
};

int netloop_init(struct netloop *nl, bool send_zc);
void netloop_free(struct netloop *nl);
int netloop_fd(const struct netloop *nl); /* readable (poll) when completions are ready */
/* Submits queued operations; dispatches every completion already available. */
int netloop_dispatch(struct netloop *nl);
/* Submits and waits up to timeout_ns for at least one completion, then dispatches. */
int netloop_wait(struct netloop *nl, uint64_t timeout_ns);
/* Dispatches until nothing is in flight (closed links and listeners freed), at most timeout_ns. */
void netloop_drain(struct netloop *nl, uint64_t timeout_ns);

#endif
