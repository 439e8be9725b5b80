// SPDX-License-Identifier: MIT
/*
 * Completions carry a tagged pointer in user_data: the low 3 bits say which
 * operation (malloc'ed objects are at least 8-byte aligned). A link or message
 * is never freed while the ring holds an operation naming it.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "proto/link.h"
#include "proto/tls.h"
#include "proto/wire.h"
#include "vmm/clock.h"

enum {
	OP_SEND = 1,	/* user_data: link; the message is l->head */
	OP_SEND_ZC = 2, /* user_data: message (result, then notification) */
	OP_RECV = 3,	/* user_data: link */
	OP_CONNECT = 4, /* user_data: link */
	OP_ACCEPT = 5,	/* user_data: listener */
	OP_CANCEL = 6,	/* user_data: none */
	OP_BACKOFF = 7, /* user_data: listener; accept again after a pause */
	OP_MASK = 7,
};

#define NETLOOP_ENTRIES 256
#define LINK_COPY_MAX	(WIRE_HDR_SIZE + WIRE_MAX_MSG)

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

static struct io_uring_sqe *get_sqe(struct netloop *nl)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&nl->ring);

	if (!sqe) {
		/* Submission queue full: hand what is there to the kernel first. */
		io_uring_submit(&nl->ring);
		sqe = io_uring_get_sqe(&nl->ring);
	}
	return sqe; /* never NULL after a submit: the SQ is empty then */
}

static void set_data(struct io_uring_sqe *sqe, void *p, unsigned int op)
{
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)p | op);
}

/* ---- addresses ------------------------------------------------------------ */

int net_parse_addr(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len, char *err,
		   size_t errlen)
{
	char host[128];
	const char *colon = strrchr(s, ':');
	char *end;
	unsigned long port;
	size_t hl;

	memset(ret, 0, sizeof(*ret));
	if (!colon || colon == s)
		goto bad;
	hl = (size_t)(colon - s);
	if (s[0] == '[') {
		if (hl < 3 || hl - 2 >= sizeof(host) || s[hl - 1] != ']')
			goto bad;
		memcpy(host, s + 1, hl - 2);
		host[hl - 2] = 0;
	} else {
		if (hl >= sizeof(host))
			goto bad;
		memcpy(host, s, hl);
		host[hl] = 0;
	}
	errno = 0;
	port = strtoul(colon + 1, &end, 10);
	if (errno || *end || end == colon + 1 || port == 0 || port > 65535)
		goto bad;
	if (!strcmp(host, "localhost"))
		strcpy(host, "127.0.0.1");
	{
		struct sockaddr_in *a4 = (struct sockaddr_in *)ret;
		struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ret;

		if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
			a4->sin_family = AF_INET;
			a4->sin_port = htons((uint16_t)port);
			*ret_len = sizeof(*a4);
			return 0;
		}
		if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
			a6->sin6_family = AF_INET6;
			a6->sin6_port = htons((uint16_t)port);
			*ret_len = sizeof(*a6);
			return 0;
		}
	}
bad:
	snprintf(err, errlen, "'%.80s%s' is not HOST:PORT (an IPv4 address, [IPv6] or localhost)",
		 s, strlen(s) > 80 ? "..." : "");
	return -EINVAL;
}

void net_format_addr(const struct sockaddr *sa, char *buf, size_t len)
{
	char host[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)sa;

		inet_ntop(AF_INET, &a->sin_addr, host, sizeof(host));
		snprintf(buf, len, "%s:%u", host, ntohs(a->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)sa;

		inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof(host));
		snprintf(buf, len, "[%s]:%u", host, ntohs(a->sin6_port));
	} else {
		snprintf(buf, len, "(family %u)", sa->sa_family);
	}
}

bool net_is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6)
		return IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)sa)->sin6_addr);
	return false;
}

/* ---- links ---------------------------------------------------------------- */

static void link_start_recv(struct link *l);
static void link_kick_send(struct link *l);

#define TLS_IN_SIZE   (64u << 10)
#define TLS_OUT_CHUNK (256u << 10) /* plaintext encrypted per send */

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
static void link_fail(struct link *l, int err)
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

static void msg_finish(struct link_msg *m)
{
	m->done(m, m->err);
}

/* Completes every queued message that is not in the kernel's hands. */
static void link_cancel_queue(struct link *l)
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
			msg_finish(m);
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

/* TLS state and buffers for a new link; 0 or -ENOMEM (nothing to undo then). */
static int link_tls_init(struct link *l, SSL_CTX *ctx, bool server)
{
	if (!ctx)
		return 0;
	l->tls_in = malloc(TLS_IN_SIZE);
	if (!l->tls_in || tls_new(ctx, server, &l->tls) < 0) {
		free(l->tls_in);
		l->tls_in = NULL;
		return -ENOMEM;
	}
	return 0;
}

int link_open(struct netloop *nl, int fd, SSL_CTX *tls, const struct link_ops *ops, void *opaque,
	      struct link **ret)
{
	struct link *l = calloc(1, sizeof(*l));
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (!l || link_tls_init(l, tls, true) < 0) {
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

	if (!l || link_tls_init(l, tls, false) < 0) {
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
	sqe = get_sqe(nl);
	io_uring_prep_connect(sqe, fd, (struct sockaddr *)&l->addr, salen);
	set_data(sqe, l, OP_CONNECT);
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
	if (l->tls) {
		l->rbuf = l->tls_in; /* ciphertext: the owner gets plaintext from tls_recv */
		len = TLS_IN_SIZE;
	} else {
		l->ops->recv_buf(l->opaque, &l->rbuf, &len);
	}
	sqe = get_sqe(l->nl);
	io_uring_prep_recv(sqe, l->fd, l->rbuf, len, 0);
	set_data(sqe, l, OP_RECV);
	l->recv_busy = true;
	l->ops_inflight++;
	l->nl->inflight++;
}

static void tls_kick_send(struct link *l);

/* A send (plain or ciphertext) is in the ring: one at a time per link. */
static void link_send_submitted(struct link *l)
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
		tls_kick_send(l);
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
	sqe = get_sqe(l->nl);
	if (zc) {
		io_uring_prep_sendmsg_zc(sqe, l->fd, &l->mh, MSG_NOSIGNAL);
		set_data(sqe, m, OP_SEND_ZC);
	} else {
		io_uring_prep_sendmsg(sqe, l->fd, &l->mh, MSG_NOSIGNAL);
		set_data(sqe, l, OP_SEND);
	}
	link_send_submitted(l);
}

/* Advances the head message by n bytes; true when it has been sent whole. */
static bool msg_advance(struct link_msg *m, size_t n)
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
			msg_finish(m);
		link_fail(l, res);
		link_cancel_queue(l);
		return;
	}
	l->bytes_sent += (uint64_t)res;
	l->last_send_ns = clock_now_ns();
	whole = msg_advance(m, (size_t)res);
	if (whole) {
		l->head = m->next;
		if (!l->head)
			l->tail = NULL;
		m->next = NULL;
		m->dequeued = true;
		if (!zc_pending)
			msg_finish(m);
	}
	if (l->dead)
		link_cancel_queue(l);
	else if (l->close_pending && !l->head)
		link_close(l);
	else
		link_kick_send(l);
}

/* ---- TLS: the same queue and ring, records in between ----------------------- */

/*
 * Encrypts queued plaintext (once the handshake is done) and sends the
 * ciphertext from a link-owned buffer. A message is done once all of its
 * bytes are inside records: its buffers are free again.
 */
static void tls_kick_send(struct link *l)
{
	struct io_uring_sqe *sqe;
	size_t pend;

	if (l->dead || l->send_busy || l->connecting)
		return;
	if (l->tls_out_off == l->tls_out_len) {
		size_t budget = TLS_OUT_CHUNK;

		l->tls_out_len = l->tls_out_off = 0;
		while (tls_ready(l->tls) && l->head && budget) {
			struct link_msg *m = l->head;
			size_t left, n;

			if (m->idx == m->nr_iov) {
				n = 0;
			} else {
				left = m->iov[m->idx].iov_len - m->off;
				n = left < budget ? left : budget;
				if (tls_encrypt(l->tls,
						(const uint8_t *)m->iov[m->idx].iov_base + m->off,
						n) < 0) {
					snprintf(l->error, sizeof(l->error), "TLS: out of memory");
					link_fail(l, -ENOMEM);
					link_cancel_queue(l);
					return;
				}
				budget -= n;
			}
			if (msg_advance(m, n)) {
				l->head = m->next;
				if (!l->head)
					l->tail = NULL;
				m->next = NULL;
				m->dequeued = true;
				msg_finish(m);
			}
		}
		pend = tls_pending_out(l->tls);
		if (!pend) {
			if (l->close_pending && !l->head)
				link_close(l);
			return;
		}
		if (pend > l->tls_out_cap) {
			/* Grows to the largest batch once: no allocation per send after. */
			uint8_t *b = realloc(l->tls_out, pend);

			if (!b) {
				link_fail(l, -ENOMEM);
				return;
			}
			l->tls_out = b;
			l->tls_out_cap = pend;
		}
		l->tls_out_len = tls_take_out(l->tls, l->tls_out, pend);
	}
	sqe = get_sqe(l->nl);
	io_uring_prep_send(sqe, l->fd, l->tls_out + l->tls_out_off, l->tls_out_len - l->tls_out_off,
			   MSG_NOSIGNAL);
	set_data(sqe, l, OP_SEND);
	link_send_submitted(l);
}

static void tls_send_result(struct link *l, int res)
{
	l->send_busy = false;
	if (res < 0) {
		if ((res == -EINTR || res == -EAGAIN) && !l->dead) {
			tls_kick_send(l);
			return;
		}
		link_fail(l, l->reported ? -ECANCELED : res);
		link_cancel_queue(l);
		return;
	}
	l->bytes_sent += (uint64_t)res;
	l->last_send_ns = clock_now_ns();
	l->tls_out_off += (size_t)res;
	if (l->dead)
		link_cancel_queue(l);
	else
		tls_kick_send(l); /* more ciphertext, or a pending close */
}

/* Received ciphertext: the handshake first, then plaintext for the owner. */
static void tls_recv(struct link *l, size_t n)
{
	if (tls_feed(l->tls, l->tls_in, n) < 0) {
		link_fail(l, -ENOMEM);
		return;
	}
	if (!tls_ready(l->tls)) {
		int r = tls_handshake(l->tls, l->error, sizeof(l->error));

		tls_kick_send(l); /* handshake records, then whatever the owner queued */
		if (r < 0) {
			link_fail(l, r);
			return;
		}
		if (r == 0)
			return;
	}
	for (;;) {
		uint8_t *buf;
		size_t len;
		long got;

		l->ops->recv_buf(l->opaque, &buf, &len);
		got = tls_decrypt(l->tls, buf, len, l->error, sizeof(l->error));
		if (got == 0)
			break;
		if (got < 0) {
			link_fail(l, got == -ECONNRESET ? 0 : (int)got);
			return;
		}
		if (l->ops->received(l->opaque, buf, (size_t)got) < 0) {
			link_fail(l, -EPROTO);
			return;
		}
		if (l->dead || l->close_pending)
			return;
	}
	tls_kick_send(l);
}

static void handle_send_zc(struct link_msg *m, struct io_uring_cqe *cqe)
{
	struct link *l = m->link;

	if (cqe->flags & IORING_CQE_F_NOTIF) {
		/* The kernel is done with the pages of one send of this message. */
		if (!--m->notifs && m->dequeued)
			msg_finish(m);
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
	if (l->close_pending)
		return; /* the owner has let go: stop reading */
	if (l->tls) {
		tls_recv(l, (size_t)res);
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
		msg_finish(m);
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
	unsigned int ms = (unsigned int)(ns / 1000000ULL);

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
		sqe = get_sqe(l->nl);
		io_uring_prep_cancel_fd(sqe, l->fd, IORING_ASYNC_CANCEL_ALL);
		set_data(sqe, NULL, OP_CANCEL);
		l->nl->inflight++;
	}
	link_maybe_free(l);
}

void link_close_after_send(struct link *l)
{
	bool tls_left = l->tls && (l->send_busy || l->tls_out_off < l->tls_out_len);

	if (l->dead || (!l->head && !tls_left)) {
		link_close(l);
		return;
	}
	l->close_pending = true;
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

/* ---- listener ------------------------------------------------------------- */

static void listener_arm(struct listener *ls)
{
	struct io_uring_sqe *sqe;

	if (ls->busy || ls->dead)
		return;
	ls->addrlen = sizeof(ls->addr);
	sqe = get_sqe(ls->nl);
	io_uring_prep_accept(sqe, ls->fd, (struct sockaddr *)&ls->addr, &ls->addrlen, SOCK_CLOEXEC);
	set_data(sqe, ls, OP_ACCEPT);
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
		struct io_uring_sqe *sqe = get_sqe(ls->nl);

		ls->backoff = (struct __kernel_timespec){ .tv_nsec = 100000000 };
		io_uring_prep_timeout(sqe, &ls->backoff, 0, 0);
		set_data(sqe, ls, OP_BACKOFF);
		ls->busy = true;
		ls->nl->inflight++;
		return;
	}
	listener_arm(ls);
}

/* ---- dispatch ------------------------------------------------------------- */

static void dispatch_one(struct netloop *nl, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	unsigned int op = ud & OP_MASK;
	void *p = (void *)(uintptr_t)(ud & ~(uint64_t)OP_MASK);
	struct link *l = p;

	switch (op) {
	case OP_SEND_ZC:
		handle_send_zc(p, cqe);
		return;
	case OP_ACCEPT:
		nl->inflight--;
		handle_accept(p, cqe->res);
		return;
	case OP_BACKOFF:
		nl->inflight--;
		handle_accept(p, -EINTR); /* re-arms, or frees a closed listener */
		return;
	case OP_CANCEL:
		nl->inflight--;
		return;
	case OP_SEND:
		if (l->tls)
			tls_send_result(l, cqe->res);
		else
			link_send_result(l, l->head, cqe->res, false);
		break;
	case OP_RECV:
		handle_recv(l, cqe->res);
		break;
	case OP_CONNECT:
		handle_connect(l, cqe->res);
		break;
	}
	/* Counted until the handler returns: a link_close() inside it cannot free l. */
	l->ops_inflight--;
	nl->inflight--;
	link_maybe_free(l);
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
	struct __kernel_timespec ts = { .tv_sec = (long long)(timeout_ns / 1000000000ULL),
					.tv_nsec = (long long)(timeout_ns % 1000000000ULL) };
	struct io_uring_cqe *cqe;
	int r = io_uring_submit_and_wait_timeout(&nl->ring, &cqe, 1, &ts, NULL);

	if (r < 0 && r != -ETIME && r != -EINTR)
		return r;
	return netloop_dispatch(nl);
}
