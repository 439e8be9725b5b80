/* SPDX-License-Identifier: MIT */
/*
 * What the transport's files share and nobody else sees: the tag in each
 * operation's user_data, the submission helpers, and the completion handlers
 * the netloop dispatches to (proto/netloop.c owns the ring, proto/link.c the
 * connections, proto/tls_pump.c their TLS path, proto/listener.c accepting).
 *
 * Completions carry a tagged pointer in user_data: the low 3 bits say which
 * operation (malloc'ed objects are at least 8-byte aligned). A link or message
 * is never freed while the ring holds an operation naming it.
 */
#ifndef RINGFT_PROTO_LINK_INTERNAL_H
#define RINGFT_PROTO_LINK_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/link.h"

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

/* An SQE, submitting what is queued first when the SQ is full: never NULL. */
struct io_uring_sqe *netloop_get_sqe(struct netloop *nl);

static inline void netloop_set_data(struct io_uring_sqe *sqe, void *p, unsigned int op)
{
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)p | op);
}

/* Completions, by owner (the netloop has decoded the tag). */
void link_complete(struct link *l, unsigned int op, int res);
void link_msg_complete(struct link_msg *m, struct io_uring_cqe *cqe);
void listener_complete(struct listener *ls, unsigned int op, int res);

/* proto/link.c, for the TLS pump: the queue and the connection's end. */
void link_fail(struct link *l, int err);
void link_cancel_queue(struct link *l);
void link_send_submitted(struct link *l);
bool link_msg_advance(struct link_msg *m, size_t n);
void link_all_sent(struct link *l);
void link_msg_finish(struct link_msg *m);

/* proto/tls_pump.c: the same queue and ring, records in between. */
#define TLS_IN_SIZE   (64u << 10)
#define TLS_OUT_CHUNK (256u << 10) /* plaintext encrypted per send */

int tls_pump_init(struct link *l, SSL_CTX *ctx, bool server);
void tls_pump_send(struct link *l);
void tls_pump_send_result(struct link *l, int res);
void tls_pump_recv(struct link *l, size_t n);

#endif
