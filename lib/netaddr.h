/* SPDX-License-Identifier: MIT */
/* Socket addresses as the configuration and the messages write them: "HOST:PORT". */
#ifndef RINGFT_LIB_NETADDR_H
#define RINGFT_LIB_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

/* "HOST:PORT" (IPv4 or [IPv6]) into a sockaddr. 0 or -EINVAL with a message. */
int net_parse_addr(const char *s, struct sockaddr_storage *ret, socklen_t *ret_len, char *err,
		   size_t errlen);
void net_format_addr(const struct sockaddr *sa, char *buf, size_t len);
bool net_is_loopback(const struct sockaddr *sa);

#endif
