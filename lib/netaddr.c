// SPDX-License-Identifier: MIT
/*
 * "HOST:PORT" in and out of socket addresses: what the configuration, the
 * control requests and the log messages write (no name lookup; localhost is
 * the one name known).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/netaddr.h"

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
