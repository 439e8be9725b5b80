// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/options.h"
#include "daemon/request.h"
#include "lib/clock.h"
#include "lib/parse.h"
#include "proto/link.h"

#define KNOWN                                                                                      \
	"known: status, metrics, events [--now], failover [--force], switchover, protect --peer "  \
	"HOST:PORT [--tls-peer NAME], set interval DURATION|auto, discard"

int request_parse(const char *line, size_t len, struct request *req, char *err, size_t errlen)
{
	const char *arg;

	memset(req, 0, sizeof(*req));
	if (len >= sizeof(req->text)) {
		snprintf(err, errlen, "request longer than %d bytes", REQUEST_MAX - 1);
		return -EINVAL;
	}
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)line[i] < 0x20 || (unsigned char)line[i] > 0x7e) {
			snprintf(err, errlen, "request is not a line of printable text");
			return -EINVAL;
		}
	memcpy(req->text, line, len);
	req->text[len] = 0;
	if (!strcmp(req->text, "status")) {
		req->kind = REQ_STATUS;
	} else if (!strcmp(req->text, "metrics")) {
		req->kind = REQ_METRICS;
	} else if (!strcmp(req->text, "events") || !strcmp(req->text, "events --now")) {
		req->kind = REQ_EVENTS;
		req->now = req->text[6] != 0;
	} else if (!strcmp(req->text, "failover") || !strcmp(req->text, "failover --force")) {
		req->kind = REQ_FAILOVER;
		req->force = req->text[8] != 0;
	} else if (!strcmp(req->text, "switchover")) {
		req->kind = REQ_SWITCHOVER;
	} else if (!strcmp(req->text, "discard")) {
		req->kind = REQ_DISCARD;
	} else if (!strcmp(req->text, "start")) {
		req->kind = REQ_START;
	} else if (!strncmp(req->text, "protect --peer ", 15)) {
		char why[160], addr[REQUEST_MAX];
		const char *name = strstr(req->text + 15, " --tls-peer ");

		snprintf(addr, sizeof(addr), "%.*s",
			 (int)(name ? (size_t)(name - req->text - 15) : strlen(req->text + 15)),
			 req->text + 15);
		arg = addr;
		req->kind = REQ_PROTECT;
		if (name) {
			name += 12;
			if (!*name || strlen(name) >= sizeof(req->tls_peer) ||
			    strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					 "0123456789.-_*") != strlen(name)) {
				snprintf(err, errlen,
					 "protect --tls-peer: '%.64s' is not a host name", name);
				return -EINVAL;
			}
			snprintf(req->tls_peer, sizeof(req->tls_peer), "%s", name);
		}
		if (net_parse_addr(arg, &req->peer, &req->peer_len, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "protect --peer: %s", why);
			return -EINVAL;
		}
	} else if (!strncmp(req->text, "set interval ", 13)) {
		arg = req->text + 13;
		req->kind = REQ_SET_INTERVAL;
		req->interval_auto = !strcmp(arg, "auto");
		if (!req->interval_auto &&
		    (parse_duration(arg, &req->interval_ns) < 0 || req->interval_ns < NS_PER_MS ||
		     req->interval_ns > 60000000000ULL)) {
			snprintf(err, errlen,
				 "interval '%.32s' is not auto or a duration between 1ms and 60s",
				 arg);
			return -EINVAL;
		}
	} else {
		snprintf(err, errlen, "unknown request '%.64s' (" KNOWN ")", req->text);
		return -EINVAL;
	}
	return 0;
}
