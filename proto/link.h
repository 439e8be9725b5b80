/* SPDX-License-Identifier: MIT */
/*
 * The replication transport: connected TCP sockets driven by one io_uring.
 *
 * One thread owns a struct netloop (the ring, proto/netloop.h) and every link
 * on it; nothing blocks. A link sends a queue of messages, each a list of
 * iovecs that stay owned by the caller until its completion runs (page data is
 * sent straight from the staging buffer it points into), with exactly one send
 * in flight per socket. It keeps one receive in flight, into whatever buffer
 * its owner names for the next bytes (the receiver places page data straight
 * into staging).
 *
 * This is the seam for an encrypting layer: it sees every outgoing iovec list
 * and every received buffer, and can substitute its own records for them
 * (proto/tls_pump.c does, for mutual TLS).
 *
 * This header includes the loop, the listener and the address helpers too:
 * users of the transport need only it.
 */
#ifndef RINGFT_PROTO_LINK_H
#define RINGFT_PROTO_LINK_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include "lib/netaddr.h"
#include "proto/listener.h"
#include "proto/netloop.h"

struct link;

/* One outgoing message: the caller owns it and its iovecs until done() runs. */
struct link_msg {
	const struct iovec *iov;
	unsigned int nr_iov;
	bool zero_copy; /* may use SENDMSG_ZC (when the netloop has it) */
	/* err: 0 when every byte was handed to the kernel, else -errno (connection failed). */
	void (*done)(struct link_msg *m, int err);
	/* Private to the link. */
	struct link_msg *next;
	struct link *link;
	unsigned int idx;
	size_t off;
	unsigned int notifs;
	bool dequeued;
	int err;
};

struct link_ops {
	/* Where the next received bytes go: a buffer of *ret_len bytes (> 0). */
	void (*recv_buf)(void *opaque, uint8_t **ret_buf, size_t *ret_len);
	/* n bytes arrived in the buffer recv_buf named. Return <0 to close the link. */
	int (*received)(void *opaque, uint8_t *buf, size_t n);
	/* The link failed or closed (err: -errno, 0 for an orderly close by the peer). */
	void (*closed)(void *opaque, int err);
	/* Connect finished (links from link_connect only): 0, or -errno and closed() follows. */
	void (*connected)(void *opaque, int err);
	/*
	 * Optional: the link is gone and no operation references the owner's memory
	 * any more (receive buffers, message iovecs). Runs after link_close().
	 */
	void (*released)(void *opaque);
};

struct link {
	struct netloop *nl;
	int fd;
	const struct link_ops *ops;
	void *opaque;
	char peer[64]; /* "addr:port", for messages */

	struct link_msg *head, *tail;
	bool send_busy;
	bool recv_busy;
	bool connecting;
	bool dead;	    /* failed or closing: no new operations, callbacks suppressed */
	bool reported;	    /* link_close() called */
	bool close_pending; /* link_close_after_send() or link_finish() */
	bool linger;	    /* link_finish(): half-close, then read until the peer closes */
	unsigned int ops_inflight;
	uint8_t *rbuf; /* the buffer of the receive in flight */
	struct msghdr mh;
	struct iovec iov_tmp[64];
	struct sockaddr_storage addr;

	/* TLS (proto/tls.h): records in and out of link-owned buffers. */
	struct link_tls *tls;
	uint8_t *tls_in, *tls_out;
	size_t tls_out_len, tls_out_off, tls_out_cap;
	char error[192]; /* why it failed, when the errno says too little (TLS) */

	uint64_t bytes_sent;
	uint64_t bytes_received;
	uint64_t last_recv_ns;
	uint64_t last_send_ns;
	uint64_t sends; /* send operations submitted */
};

typedef struct ssl_ctx_st SSL_CTX;

/*
 * Wraps a connected socket (takes ownership of fd) and starts receiving. With
 * a TLS context (else NULL) it is the server side of a mutual-TLS handshake:
 * no bytes reach the owner, and none of its messages leave, before the peer's
 * certificate is verified; a failed handshake closes the link with the reason
 * in l->error.
 */
int link_open(struct netloop *nl, int fd, SSL_CTX *tls, const struct link_ops *ops, void *opaque,
	      struct link **ret);
/* Starts a non-blocking connect; ops->connected reports the result. TLS: the client side. */
int link_connect(struct netloop *nl, const struct sockaddr *sa, socklen_t salen, SSL_CTX *tls,
		 const struct link_ops *ops, void *opaque, struct link **ret);
/*
 * Data the peer has not acknowledged within `ns` aborts the connection
 * (TCP_USER_TIMEOUT): a dead peer cannot pin queued sends, or zero-copy
 * buffers, for the kernel's retransmission timeout of about 15 minutes.
 */
void link_set_user_timeout(struct link *l, uint64_t ns);
/* Queues a message. On a link already closed or failed, done(-ECANCELED) runs at once. */
void link_send(struct link *l, struct link_msg *m);
/* Copies a frame (at most a header and WIRE_MAX_MSG) and queues it. 0, -EMSGSIZE or -ENOMEM. */
int link_send_copy(struct link *l, const void *buf, size_t len);
/* Bytes queued but not yet handed to the kernel. */
size_t link_queued(const struct link *l);
/*
 * Closes the link; the owner calls it exactly once, also after closed() (which
 * only reports). Queued messages complete with -ECANCELED at once, the one in
 * flight when the kernel returns it; recv_buf, received, closed and connected
 * never run again. When the ring has returned every operation, released() runs
 * and the link is freed: until then the owner keeps its buffers (and the
 * netloop must keep dispatching).
 */
void link_close(struct link *l);
/* link_close() once every queued message has been sent (or at once if none is). */
void link_close_after_send(struct link *l);
/*
 * The orderly end of a session: once every queued message has been sent, a
 * half-close (FIN), then whatever the peer still sends is read and dropped
 * until it closes too, and then link_close(). Closing a socket with unread
 * bytes would reset the connection instead, and a peer that has not read
 * everything yet (a goodbye behind a queue of epochs) would lose it. The owner
 * bounds the wait: its link_close() (or link_abort()) ends it at any time.
 */
void link_finish(struct link *l);
/*
 * Resets the connection (RST): bytes the kernel still holds for it are dropped,
 * so a send stuck on a peer that takes nothing returns at once and zero-copy
 * pages come back; then link_close() unless the owner called it already.
 */
void link_abort(struct link *l);

#endif
