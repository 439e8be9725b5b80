// SPDX-License-Identifier: MIT
/*
 * The TLS record pump of a link: the same message queue and ring as a plain
 * link (proto/link.c), with records in between. Outgoing plaintext is
 * encrypted into a link-owned buffer and the ciphertext sent from there, one
 * send at a time; received ciphertext goes into the link's own buffer, drives
 * the handshake, and comes out as plaintext in the owner's buffers. The
 * OpenSSL side (proto/tls.c) knows nothing of links or rings; this file is
 * where the two meet.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#include "lib/clock.h"
#include "proto/link_internal.h"
#include "proto/tls.h"

/* TLS state and buffers for a new link; 0 or -ENOMEM (nothing to undo then). */
int tls_pump_init(struct link *l, SSL_CTX *ctx, bool server)
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

/*
 * Encrypts queued plaintext (once the handshake is done) and sends the
 * ciphertext from a link-owned buffer. A message is done once all of its
 * bytes are inside records: its buffers are free again.
 */
void tls_pump_send(struct link *l)
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
			if (link_msg_advance(m, n)) {
				l->head = m->next;
				if (!l->head)
					l->tail = NULL;
				m->next = NULL;
				m->dequeued = true;
				link_msg_finish(m);
			}
		}
		pend = tls_pending_out(l->tls);
		if (!pend) {
			if (l->close_pending && !l->head)
				link_all_sent(l);
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
	sqe = netloop_get_sqe(l->nl);
	io_uring_prep_send(sqe, l->fd, l->tls_out + l->tls_out_off, l->tls_out_len - l->tls_out_off,
			   MSG_NOSIGNAL);
	netloop_set_data(sqe, l, OP_SEND);
	link_send_submitted(l);
}

void tls_pump_send_result(struct link *l, int res)
{
	l->send_busy = false;
	if (res < 0) {
		if ((res == -EINTR || res == -EAGAIN) && !l->dead) {
			tls_pump_send(l);
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
		tls_pump_send(l); /* more ciphertext, or a pending close */
}

/* Received ciphertext: the handshake first, then plaintext for the owner. */
void tls_pump_recv(struct link *l, size_t n)
{
	if (tls_feed(l->tls, l->tls_in, n) < 0) {
		link_fail(l, -ENOMEM);
		return;
	}
	if (!tls_ready(l->tls)) {
		int r = tls_handshake(l->tls, l->error, sizeof(l->error));

		tls_pump_send(l); /* handshake records, then whatever the owner queued */
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
	tls_pump_send(l);
}
