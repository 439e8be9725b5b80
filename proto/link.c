// SPDX-License-Identifier: MIT
/*
 * Connections: a link's send queue (one send in flight, zero-copy
 * notifications holding a message until the kernel lets go of its pages), its
 * one receive in flight, connect, and the ways it ends (failure, close, close
 * after the queue drains, abort). With TLS, sends and receives go through the
 * record pump (proto/tls_pump.c) instead of straight to the owner's buffers.
 */
#include <errno.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/clock.h"
#include "proto/link.h"
#include "proto/link_internal.h"
#include "proto/tls.h"
#include "proto/wire.h"

#define LINK_COPY_MAX (WIRE_HDR_SIZE + WIRE_MAX_MSG)

static void link_start_recv(struct link *l);
static void link_kick_send(struct link *l);

static void link_maybe_free(struct link *l)
{
	if (!l->dead || !l->reported || l->ops_inflight)
		return;
	if (l->fd >= 0)
		close(l->fd);
	tls_free(l->tls);
	free(l->tls_in);
	free(l->tls_out);
	if (l->ops->released)
		l->ops->released(l->opaque);
	free(l);
}

/* The connection failed: report once; the owner answers with link_close(). */
void link_fail(struct link *l, int err)
{
	if (l->dead)
		return;
	l->dead = true;
	shutdown(l->fd, SHUT_RDWR);
	if (l->close_pending)
		link_close(l); /* the owner has let go already */
	else
		l->ops->closed(l->opaque, err);
}

void link_msg_finish(struct link_msg *m)
{
	m->done(m, m->err);
}

/* Completes every queued message that is not in the kernel's hands. */
void link_cancel_queue(struct link *l)
{
	/* While a send is in flight, the head completes from its CQE (with TLS the
	 * send in flight is ciphertext the link owns: every message goes now). */
	bool head_busy = l->send_busy && l->head && !l->tls;
	struct link_msg **pp = head_busy ? &l->head->next : &l->head;

	while (*pp) {
		struct link_msg *m = *pp;

		*pp = m->next;
		m->dequeued = true;
		m->err = -ECANCELED;
		if (!m->notifs) /* else the kernel still holds pages: the notification finishes */
			link_msg_finish(m);
	}
	l->tail = head_busy ? l->head : NULL;
	if (!head_busy)
		l->head = NULL;
}

static void link_init(struct link *l, struct netloop *nl, int fd, const struct link_ops *ops,
		      void *opaque)
{
	int one = 1;

	l->nl = nl;
	l->fd = fd;
	l->ops = ops;
	l->opaque = opaque;
	/* Frames are small and latency-bound (ACKs, epoch trailers): no Nagle. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	l->last_recv_ns = l->last_send_ns = clock_now_ns();
}

int link_open(struct netloop *nl, int fd, SSL_CTX *tls, const struct link_ops *ops, void *opaque,
	      struct link **ret)
{
	struct link *l = calloc(1, sizeof(*l));
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (!l || tls_pump_init(l, tls, true) < 0) {
		free(l);
		return -ENOMEM;
	}
	link_init(l, nl, fd, ops, opaque);
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
		net_format_addr((struct sockaddr *)&ss, l->peer, sizeof(l->peer));
	link_start_recv(l);
	*ret = l;
	return 0;
}

int link_connect(struct netloop *nl, const struct sockaddr *sa, socklen_t salen, SSL_CTX *tls,
		 const struct link_ops *ops, void *opaque, struct link **ret)
{
	struct link *l = calloc(1, sizeof(*l));
	struct io_uring_sqe *sqe;
	int fd;

	if (!l || tls_pump_init(l, tls, false) < 0) {
		free(l);
		return -ENOMEM;
	}
	fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		tls_free(l->tls);
		free(l->tls_in);
		free(l);
		return -errno;
	}
	link_init(l, nl, fd, ops, opaque);
	net_format_addr(sa, l->peer, sizeof(l->peer));
	memcpy(&l->addr, sa, salen);
	l->connecting = true;
	sqe = netloop_get_sqe(nl);
	io_uring_prep_connect(sqe, fd, (struct sockaddr *)&l->addr, salen);
	netloop_set_data(sqe, l, OP_CONNECT);
	l->ops_inflight++;
	nl->inflight++;
	*ret = l;
	return 0;
}

static void link_start_recv(struct link *l)
{
	struct io_uring_sqe *sqe;
	size_t len;

	if (l->dead || l->recv_busy || l->connecting)
		return;
	if (l->close_pending) {
		/* link_finish(): bytes to drop, never in the owner's buffers. */
		static uint8_t drain[16384];

		l->rbuf = drain;
		len = sizeof(drain);
	} else if (l->tls) {
		l->rbuf = l->tls_in; /* ciphertext: the owner gets plaintext from tls_pump_recv */
		len = TLS_IN_SIZE;
	} else {
		l->ops->recv_buf(l->opaque, &l->rbuf, &len);
	}
	sqe = netloop_get_sqe(l->nl);
	io_uring_prep_recv(sqe, l->fd, l->rbuf, len, 0);
	netloop_set_data(sqe, l, OP_RECV);
	l->recv_busy = true;
	l->ops_inflight++;
	l->nl->inflight++;
}

/* A send (plain or ciphertext) is in the ring: one at a time per link. */
void link_send_submitted(struct link *l)
{
	l->send_busy = true;
	l->sends++;
	l->ops_inflight++;
	l->nl->inflight++;
}

static void link_kick_send(struct link *l)
{
	struct link_msg *m = l->head;
	struct io_uring_sqe *sqe;
	unsigned int n = 0;
	bool zc;

	if (l->tls) {
		tls_pump_send(l);
		return;
	}
	if (l->dead || l->send_busy || l->connecting || !m)
		return;
	for (unsigned int i = m->idx; i < m->nr_iov && n < 64; i++) {
		l->iov_tmp[n] = m->iov[i];
		if (i == m->idx) {
			l->iov_tmp[n].iov_base = (uint8_t *)m->iov[i].iov_base + m->off;
			l->iov_tmp[n].iov_len -= m->off;
		}
		if (l->iov_tmp[n].iov_len)
			n++;
	}
	memset(&l->mh, 0, sizeof(l->mh));
	l->mh.msg_iov = l->iov_tmp;
	l->mh.msg_iovlen = n;
	zc = l->nl->send_zc && m->zero_copy;
	sqe = netloop_get_sqe(l->nl);
	if (zc) {
		io_uring_prep_sendmsg_zc(sqe, l->fd, &l->mh, MSG_NOSIGNAL);
		netloop_set_data(sqe, m, OP_SEND_ZC);
	} else {
		io_uring_prep_sendmsg(sqe, l->fd, &l->mh, MSG_NOSIGNAL);
		netloop_set_data(sqe, l, OP_SEND);
	}
	link_send_submitted(l);
}

/* Advances the head message by n bytes; true when it has been sent whole. */
bool link_msg_advance(struct link_msg *m, size_t n)
{
	while (n && m->idx < m->nr_iov) {
		size_t left = m->iov[m->idx].iov_len - m->off;

		if (n < left) {
			m->off += n;
			return false;
		}
		n -= left;
		m->idx++;
		m->off = 0;
	}
	while (m->idx < m->nr_iov && !m->iov[m->idx].iov_len)
		m->idx++;
	return m->idx == m->nr_iov;
}

static void link_send_result(struct link *l, struct link_msg *m, int res, bool zc_pending)
{
	bool whole;

	l->send_busy = false;
	if (res < 0) {
		if ((res == -EINTR || res == -EAGAIN) && !l->dead) {
			link_kick_send(l);
			return;
		}
		/* After link_close() the owner cancelled it: say so, not how the socket failed. */
		if (l->reported)
			res = -ECANCELED;
		/* The message is dropped from the queue; its done() reports the error. */
		l->head = m->next;
		if (!l->head)
			l->tail = NULL;
		m->dequeued = true;
		m->err = res;
		if (!zc_pending)
			link_msg_finish(m);
		link_fail(l, res);
		link_cancel_queue(l);
		return;
	}
	l->bytes_sent += (uint64_t)res;
	l->last_send_ns = clock_now_ns();
	whole = link_msg_advance(m, (size_t)res);
	if (whole) {
		l->head = m->next;
		if (!l->head)
			l->tail = NULL;
		m->next = NULL;
		m->dequeued = true;
		if (!zc_pending)
			link_msg_finish(m);
	}
	if (l->dead)
		link_cancel_queue(l);
	else if (l->close_pending && !l->head)
		link_all_sent(l);
	else
		link_kick_send(l);
}

/* ---- completions --------------------------------------------------------- */

/* A zero-copy send of m returned, or the kernel let go of its pages. */
void link_msg_complete(struct link_msg *m, struct io_uring_cqe *cqe)
{
	struct link *l = m->link;

	if (cqe->flags & IORING_CQE_F_NOTIF) {
		/* The kernel is done with the pages of one send of this message. */
		if (!--m->notifs && m->dequeued)
			link_msg_finish(m);
	} else {
		if (cqe->flags & IORING_CQE_F_MORE) {
			/* A notification follows: it holds the message (and link) alive. */
			m->notifs++;
			l->ops_inflight++;
			l->nl->inflight++;
		}
		link_send_result(l, m, cqe->res, m->notifs > 0);
	}
	l->ops_inflight--;
	l->nl->inflight--;
	link_maybe_free(l);
}

static void handle_recv(struct link *l, int res)
{
	l->recv_busy = false;
	if (l->dead)
		return;
	if (res == -EINTR || res == -EAGAIN) {
		link_start_recv(l);
		return;
	}
	if (res <= 0) {
		link_fail(l, res);
		return;
	}
	l->bytes_received += (uint64_t)res;
	l->last_recv_ns = clock_now_ns();
	if (l->close_pending) {
		/* The owner has let go: drop it; read on only to see the peer close. */
		if (l->linger)
			link_start_recv(l);
		return;
	}
	if (l->tls) {
		tls_pump_recv(l, (size_t)res);
		if (l->dead)
			return;
	} else if (l->ops->received(l->opaque, l->rbuf, (size_t)res) < 0) {
		link_fail(l, -EPROTO);
		return;
	}
	link_start_recv(l);
}

static void handle_connect(struct link *l, int res)
{
	l->connecting = false;
	if (l->dead)
		return;
	if (res < 0) {
		l->ops->connected(l->opaque, res);
		link_fail(l, res);
		return;
	}
	{
		int one = 1;

		setsockopt(l->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	l->ops->connected(l->opaque, 0);
	if (l->tls && !l->dead)
		tls_handshake(l->tls, l->error, sizeof(l->error)); /* the ClientHello */
	link_start_recv(l);
	link_kick_send(l);
}

/* A send, receive or connect of l returned (zero-copy sends come through link_msg_complete). */
void link_complete(struct link *l, unsigned int op, int res)
{
	switch (op) {
	case OP_SEND:
		if (l->tls)
			tls_pump_send_result(l, res);
		else
			link_send_result(l, l->head, res, false);
		break;
	case OP_RECV:
		handle_recv(l, res);
		break;
	case OP_CONNECT:
		handle_connect(l, res);
		break;
	}
	/* Counted until the handler returns: a link_close() inside it cannot free l. */
	l->ops_inflight--;
	l->nl->inflight--;
	link_maybe_free(l);
}

/* ---- the owner's calls --------------------------------------------------- */

void link_send(struct link *l, struct link_msg *m)
{
	m->next = NULL;
	m->link = l;
	m->idx = 0;
	m->off = 0;
	m->notifs = 0;
	m->err = 0;
	m->dequeued = false;
	if (l->dead) {
		m->dequeued = true;
		m->err = -ECANCELED;
		link_msg_finish(m);
		return;
	}
	if (l->tail)
		l->tail->next = m;
	else
		l->head = m;
	l->tail = m;
	link_kick_send(l);
}

void link_set_user_timeout(struct link *l, uint64_t ns)
{
	unsigned int ms = (unsigned int)(ns / NS_PER_MS);

	setsockopt(l->fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &ms, sizeof(ms));
}

struct copy_msg {
	struct link_msg m;
	struct iovec iov;
	uint8_t data[];
};

static void copy_done(struct link_msg *m, int err)
{
	free(m); /* m is the first member of struct copy_msg */
}

int link_send_copy(struct link *l, const void *buf, size_t len)
{
	struct copy_msg *c;

	if (len > LINK_COPY_MAX)
		return -EMSGSIZE;
	c = malloc(sizeof(*c) + len);
	if (!c)
		return -ENOMEM;
	memcpy(c->data, buf, len);
	c->iov = (struct iovec){ c->data, len };
	c->m = (struct link_msg){ .iov = &c->iov, .nr_iov = 1, .done = copy_done };
	link_send(l, &c->m);
	return 0;
}

size_t link_queued(const struct link *l)
{
	size_t n = 0;

	for (const struct link_msg *m = l->head; m; m = m->next)
		for (unsigned int i = m->idx; i < m->nr_iov; i++)
			n += m->iov[i].iov_len - (i == m->idx ? m->off : 0);
	return n;
}

void link_close(struct link *l)
{
	struct io_uring_sqe *sqe;

	if (!l)
		return;
	if (!l->dead) {
		l->dead = true;
		shutdown(l->fd, SHUT_RDWR);
	}
	l->reported = true;
	link_cancel_queue(l);
	if (l->ops_inflight) {
		/* A connect in progress ignores shutdown(): cancel by fd. */
		sqe = netloop_get_sqe(l->nl);
		io_uring_prep_cancel_fd(sqe, l->fd, IORING_ASYNC_CANCEL_ALL);
		netloop_set_data(sqe, NULL, OP_CANCEL);
		l->nl->inflight++;
	}
	link_maybe_free(l);
}

/* Every queued message has left (close_pending): close, or half-close and linger. */
void link_all_sent(struct link *l)
{
	if (!l->linger) {
		link_close(l);
		return;
	}
	shutdown(l->fd, SHUT_WR);
	link_start_recv(l); /* until the peer's FIN (0) or an error: link_fail() closes */
}

static void close_when_sent(struct link *l, bool linger)
{
	bool tls_left = l->tls && (l->send_busy || l->tls_out_off < l->tls_out_len);

	if (l->dead) {
		link_close(l);
		return;
	}
	l->close_pending = true;
	l->linger = linger;
	if (!l->head && !tls_left)
		link_all_sent(l);
}

void link_close_after_send(struct link *l)
{
	close_when_sent(l, false);
}

void link_finish(struct link *l)
{
	close_when_sent(l, true);
}

void link_abort(struct link *l)
{
	struct sockaddr sa = { .sa_family = AF_UNSPEC };

	if (!l)
		return;
	/* connect(AF_UNSPEC) is tcp_disconnect(): RST, write queue purged, waiters woken. */
	if (l->fd >= 0)
		connect(l->fd, &sa, sizeof(sa));
	if (!l->reported)
		link_close(l);
}
