/* SPDX-License-Identifier: MIT */
/*
 * A listening socket accepting connections through the netloop's ring; each
 * accepted fd goes to the owner, who usually wraps it with link_open().
 */
#ifndef RINGFT_PROTO_LISTENER_H
#define RINGFT_PROTO_LISTENER_H

#include <stdbool.h>
#include <sys/socket.h>

#include "proto/netloop.h" /* and liburing.h, for struct __kernel_timespec */

struct listener {
	struct netloop *nl;
	int fd;
	void (*accepted)(void *opaque, int fd, const struct sockaddr *sa);
	void *opaque;
	bool busy;
	bool dead;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct __kernel_timespec backoff;
};

int listener_open(struct netloop *nl, const struct sockaddr *sa, socklen_t salen,
		  void (*accepted)(void *opaque, int fd, const struct sockaddr *sa), void *opaque,
		  struct listener **ret);
void listener_close(struct listener *ls);

#endif
