// SPDX-License-Identifier: MIT
/*
 * The listener: one accept in flight on the ring at a time, handed to the
 * owner as it completes; a pause before accepting again when the process is
 * out of fds or memory; freed once the ring has returned its last operation.
 */
#include <errno.h>
#include <stdlib.h>
#include <unistd.h>

#include "proto/link_internal.h"
#include "proto/listener.h"

static void listener_arm(struct listener *ls)
{
	struct io_uring_sqe *sqe;

	if (ls->busy || ls->dead)
		return;
	ls->addrlen = sizeof(ls->addr);
	sqe = netloop_get_sqe(ls->nl);
	io_uring_prep_accept(sqe, ls->fd, (struct sockaddr *)&ls->addr, &ls->addrlen, SOCK_CLOEXEC);
	netloop_set_data(sqe, ls, OP_ACCEPT);
	ls->busy = true;
	ls->nl->inflight++;
}

int listener_open(struct netloop *nl, const struct sockaddr *sa, socklen_t salen,
		  void (*accepted)(void *opaque, int fd, const struct sockaddr *sa), void *opaque,
		  struct listener **ret)
{
	struct listener *ls = calloc(1, sizeof(*ls));
	int one = 1, r;

	if (!ls)
		return -ENOMEM;
	ls->nl = nl;
	ls->accepted = accepted;
	ls->opaque = opaque;
	ls->fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (ls->fd < 0) {
		r = -errno;
		free(ls);
		return r;
	}
	setsockopt(ls->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(ls->fd, sa, salen) < 0 || listen(ls->fd, 16) < 0) {
		r = -errno;
		close(ls->fd);
		free(ls);
		return r;
	}
	listener_arm(ls);
	*ret = ls;
	return 0;
}

void listener_close(struct listener *ls)
{
	if (!ls)
		return;
	ls->dead = true;
	shutdown(ls->fd, SHUT_RDWR);
	if (!ls->busy) {
		close(ls->fd);
		free(ls);
	}
}

static void handle_accept(struct listener *ls, int res)
{
	ls->busy = false;
	if (ls->dead) {
		if (res >= 0)
			close(res);
		close(ls->fd);
		free(ls);
		return;
	}
	if (res >= 0) {
		ls->accepted(ls->opaque, res, (struct sockaddr *)&ls->addr);
	} else if (res != -EINTR && res != -EAGAIN && res != -ECONNABORTED) {
		/* Out of fds or memory: accepting again at once would only spin. */
		struct io_uring_sqe *sqe = netloop_get_sqe(ls->nl);

		ls->backoff = (struct __kernel_timespec){ .tv_nsec = 100000000 };
		io_uring_prep_timeout(sqe, &ls->backoff, 0, 0);
		netloop_set_data(sqe, ls, OP_BACKOFF);
		ls->busy = true;
		ls->nl->inflight++;
		return;
	}
	listener_arm(ls);
}

void listener_complete(struct listener *ls, unsigned int op, int res)
{
	ls->nl->inflight--;
	if (op == OP_BACKOFF)
		res = -EINTR; /* re-arms, or frees a closed listener */
	handle_accept(ls, res);
}
