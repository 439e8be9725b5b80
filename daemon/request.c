// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/options.h"
#include "daemon/request.h"
#include "proto/link.h"

#define KNOWN                                                                                      \
	"known: status, metrics, events, failover [--force], switchover, protect --peer "          \
	"HOST:PORT, set interval DURATION"

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
	} else if (!strcmp(req->text, "events")) {
		req->kind = REQ_EVENTS;
	} else if (!strcmp(req->text, "failover") || !strcmp(req->text, "failover --force")) {
		req->kind = REQ_FAILOVER;
		req->force = req->text[8] != 0;
	} else if (!strcmp(req->text, "switchover")) {
		req->kind = REQ_SWITCHOVER;
	} else if (!strncmp(req->text, "protect --peer ", 15)) {
		char why[160];

		arg = req->text + 15;
		req->kind = REQ_PROTECT;
		if (net_parse_addr(arg, &req->peer, &req->peer_len, why, sizeof(why)) < 0) {
			snprintf(err, errlen, "protect --peer: %s", why);
			return -EINVAL;
		}
	} else if (!strncmp(req->text, "set interval ", 13)) {
		arg = req->text + 13;
		req->kind = REQ_SET_INTERVAL;
		if (parse_duration(arg, &req->interval_ns) < 0 || req->interval_ns < 1000000ULL ||
		    req->interval_ns > 60000000000ULL) {
			snprintf(err, errlen,
				 "interval '%.32s' is not a duration between 1ms and 60s", arg);
			return -EINVAL;
		}
	} else {
		snprintf(err, errlen, "unknown request '%.64s' (" KNOWN ")", req->text);
		return -EINVAL;
	}
	return 0;
}
