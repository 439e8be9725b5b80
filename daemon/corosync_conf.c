// SPDX-License-Identifier: MIT
/* corosync.conf's timeouts (daemon/corosync_conf.h). */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/corosync_conf.h"

#define DEPTH_MAX 8

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = 0;
	return s;
}

/* key's value in milliseconds (corosync's timeouts are plain numbers of ms). */
static int ms_value(const char *v, uint64_t *ret)
{
	char *end;
	unsigned long long n;

	errno = 0;
	n = strtoull(v, &end, 10);
	if (errno || end == v || *end || n > 86400000ULL)
		return -EINVAL;
	*ret = n;
	return 0;
}

int corosync_conf_read(const char *path, struct corosync_timeouts *t, char *err, size_t errlen)
{
	char line[512], stack[DEPTH_MAX][32];
	int depth = 0, lineno = 0, r = 0;
	FILE *f = fopen(path, "re");

	*t = (struct corosync_timeouts){ .token_ms = 3000,
					 .device_timeout_ms = 10000,
					 .device_sync_ms = 30000 };
	if (!f)
		return -errno;
	while (r == 0 && fgets(line, sizeof(line), f)) {
		char *s = line, *colon;

		lineno++;
		if (!strchr(s, '\n') && !feof(f)) {
			snprintf(err, errlen, "%s:%d: a line longer than %zu bytes", path, lineno,
				 sizeof(line) - 2);
			r = -EINVAL;
			break;
		}
		s[strcspn(s, "#")] = 0;
		s = trim(s);
		if (!*s)
			continue;
		if (s[strlen(s) - 1] == '{') {
			s[strlen(s) - 1] = 0;
			s = trim(s);
			if (depth == DEPTH_MAX || !*s || strlen(s) >= sizeof(stack[0])) {
				snprintf(err, errlen, "%s:%d: a section corosync would not take",
					 path, lineno);
				r = -EINVAL;
				break;
			}
			snprintf(stack[depth++], sizeof(stack[0]), "%s", s);
			if (depth == 2 && !strcmp(stack[0], "quorum") &&
			    !strcmp(stack[1], "device"))
				t->device = true;
			continue;
		}
		if (!strcmp(s, "}")) {
			if (!depth) {
				snprintf(err, errlen, "%s:%d: '}' closes no section", path, lineno);
				r = -EINVAL;
				break;
			}
			depth--;
			continue;
		}
		colon = strchr(s, ':');
		if (!colon) {
			snprintf(err, errlen, "%s:%d: not `key: value`", path, lineno);
			r = -EINVAL;
			break;
		}
		*colon = 0;
		s = trim(s);
		colon = trim(colon + 1);
		if (depth == 1 && !strcmp(stack[0], "totem") && !strcmp(s, "token"))
			r = ms_value(colon, &t->token_ms);
		else if (depth == 2 && !strcmp(stack[0], "quorum") && !strcmp(stack[1], "device") &&
			 !strcmp(s, "timeout"))
			r = ms_value(colon, &t->device_timeout_ms);
		else if (depth == 2 && !strcmp(stack[0], "quorum") && !strcmp(stack[1], "device") &&
			 !strcmp(s, "sync_timeout"))
			r = ms_value(colon, &t->device_sync_ms);
		if (r < 0)
			snprintf(err, errlen, "%s:%d: %s: '%s' is not a number of milliseconds",
				 path, lineno, s, colon);
	}
	if (r == 0 && depth) {
		snprintf(err, errlen, "%s: section %s is not closed", path, stack[depth - 1]);
		r = -EINVAL;
	}
	fclose(f);
	return r;
}

uint64_t corosync_isolation_ms(const struct corosync_timeouts *t)
{
	uint64_t dev =
		t->device_sync_ms > t->device_timeout_ms ? t->device_sync_ms : t->device_timeout_ms;

	return t->token_ms + (t->device ? dev : 0);
}
