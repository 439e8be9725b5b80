// SPDX-License-Identifier: MIT
/*
 * The io_uring event loop: the ring's life, submission, and dispatch of every
 * completion to its owner by the tag in user_data (proto/link_internal.h).
 * What an operation means is the owner's business: proto/link.c for sends,
 * receives and connects, proto/listener.c for accepts.
 */
#include <errno.h>
#include <string.h>

#include "lib/clock.h"
#include "proto/link_internal.h"
#include "proto/netloop.h"

#define NETLOOP_ENTRIES 256

int netloop_init(struct netloop *nl, bool send_zc)
{
	memset(nl, 0, sizeof(*nl));
	nl->send_zc = send_zc;
	return io_uring_queue_init(NETLOOP_ENTRIES, &nl->ring, 0);
}

void netloop_drain(struct netloop *nl, uint64_t timeout_ns)
{
	for (uint64_t waited = 0; nl->inflight && waited < timeout_ns; waited += 5000000ULL)
		netloop_wait(nl, 5000000ULL);
}

void netloop_free(struct netloop *nl)
{
	io_uring_queue_exit(&nl->ring);
}

int netloop_fd(const struct netloop *nl)
{
	return nl->ring.ring_fd;
}

struct io_uring_sqe *netloop_get_sqe(struct netloop *nl)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&nl->ring);

	if (!sqe) {
		/* Submission queue full: hand what is there to the kernel first. */
		io_uring_submit(&nl->ring);
		sqe = io_uring_get_sqe(&nl->ring);
	}
	return sqe; /* never NULL after a submit: the SQ is empty then */
}

static void dispatch_one(struct netloop *nl, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	unsigned int op = ud & OP_MASK;
	void *p = (void *)(uintptr_t)(ud & ~(uint64_t)OP_MASK);

	switch (op) {
	case OP_SEND_ZC:
		link_msg_complete(p, cqe);
		break;
	case OP_ACCEPT:
	case OP_BACKOFF:
		listener_complete(p, op, cqe->res);
		break;
	case OP_CANCEL:
		nl->inflight--;
		break;
	case OP_SEND:
	case OP_RECV:
	case OP_CONNECT:
		link_complete(p, op, cqe->res);
		break;
	}
}

int netloop_dispatch(struct netloop *nl)
{
	struct io_uring_cqe *cqe;
	int r = io_uring_submit(&nl->ring);

	if (r < 0 && r != -EBUSY && r != -EINTR)
		return r;
	while (io_uring_peek_cqe(&nl->ring, &cqe) == 0) {
		struct io_uring_cqe c = *cqe;

		io_uring_cqe_seen(&nl->ring, cqe);
		dispatch_one(nl, &c);
	}
	r = io_uring_submit(&nl->ring);
	return r < 0 && r != -EBUSY && r != -EINTR ? r : 0;
}

int netloop_wait(struct netloop *nl, uint64_t timeout_ns)
{
	struct __kernel_timespec ts = { .tv_sec = (long long)(timeout_ns / NS_PER_S),
					.tv_nsec = (long long)(timeout_ns % NS_PER_S) };
	struct io_uring_cqe *cqe;
	int r = io_uring_submit_and_wait_timeout(&nl->ring, &cqe, 1, &ts, NULL);

	if (r < 0 && r != -ETIME && r != -EINTR)
		return r;
	return netloop_dispatch(nl);
}
