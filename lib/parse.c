// SPDX-License-Identifier: MIT
/*
 * Numbers as people write them on the command line, in the configuration file
 * and in control requests: pure functions, so the unit tests pin them down.
 */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/clock.h"
#include "lib/parse.h"

/* Decimal digits at the start of s (no sign, no space); *ret_end after them. */
static int parse_leading_number(const char *s, unsigned long long *ret, char **ret_end)
{
	if (!s || !isdigit((unsigned char)*s))
		return -EINVAL;
	errno = 0;
	*ret = strtoull(s, ret_end, 10);
	return errno ? -ERANGE : 0;
}

int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret)
{
	unsigned long long v;
	char *end;
	int r = parse_leading_number(s, &v, &end);

	if (r < 0)
		return r;
	if (*end)
		return -EINVAL;
	if (v < min || v > max)
		return -ERANGE;
	*ret = v;
	return 0;
}

/* "4096", "64K", "512M", "1G", "16GiB", "2T": binary units. */
int parse_size(const char *s, uint64_t *ret_bytes)
{
	unsigned long long v;
	unsigned int shift = 0;
	char *end;
	int r = parse_leading_number(s, &v, &end);

	if (r < 0)
		return r;
	switch (toupper((unsigned char)*end)) {
	case '\0':
		break;
	case 'K':
		shift = 10;
		break;
	case 'M':
		shift = 20;
		break;
	case 'G':
		shift = 30;
		break;
	case 'T':
		shift = 40;
		break;
	default:
		return -EINVAL;
	}
	if (*end) {
		end++;
		if (!strcmp(end, "iB") || !strcmp(end, "B"))
			end += strlen(end);
		if (*end)
			return -EINVAL;
	}
	if (shift && v > (UINT64_MAX >> shift))
		return -ERANGE;
	*ret_bytes = (uint64_t)v << shift;
	return 0;
}

/*
 * "500us", "10ms", "2s", "1500ns", "1m"; a bare number means seconds, as
 * systemd.time(7), keepalived and corosync read one.
 */
int parse_duration(const char *s, uint64_t *ret_ns)
{
	static const struct {
		const char *unit;
		uint64_t ns;
	} units[] = { { "ns", 1 },	{ "us", NS_PER_US }, { "ms", NS_PER_MS },
		      { "", NS_PER_S }, { "s", NS_PER_S },   { "m", 60 * NS_PER_S } };
	unsigned long long v;
	char *end;
	int r = parse_leading_number(s, &v, &end);

	if (r < 0)
		return r;
	for (size_t i = 0; i < sizeof(units) / sizeof(units[0]); i++) {
		if (strcmp(end, units[i].unit))
			continue;
		if (v > UINT64_MAX / units[i].ns)
			return -ERANGE;
		*ret_ns = (uint64_t)v * units[i].ns;
		return 0;
	}
	return -EINVAL;
}
