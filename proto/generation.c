// SPDX-License-Identifier: MIT
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto/generation.h"

bool gen_has_guest(const struct gen_state *g)
{
	static const uint8_t zero[GEN_UUID_SIZE];

	return memcmp(g->uuid, zero, GEN_UUID_SIZE) != 0 && g->cur.number;
}

void gen_clear(struct gen_state *g)
{
	memset(g, 0, sizeof(*g));
}

void gen_new_guest(struct gen_state *g, const uint8_t uuid[GEN_UUID_SIZE], uint64_t tag)
{
	gen_clear(g);
	memcpy(g->uuid, uuid, GEN_UUID_SIZE);
	/* RFC 4122 version 4 (random) and variant bits, so that tools recognize it. */
	g->uuid[6] = (uint8_t)((g->uuid[6] & 0x0f) | 0x40);
	g->uuid[8] = (uint8_t)((g->uuid[8] & 0x3f) | 0x80);
	g->cur = (struct gen_id){ 1, tag ? tag : 1 };
}

void gen_bump(struct gen_state *g, uint64_t tag)
{
	unsigned int n = g->nr_history < GEN_HISTORY_MAX ? g->nr_history + 1 : GEN_HISTORY_MAX;

	memmove(&g->history[1], &g->history[0], (n - 1) * sizeof(g->history[0]));
	g->history[0] = g->cur;
	g->nr_history = n;
	/*
	 * Stays at UINT64_MAX rather than wrapping to 0 ("no guest", which a
	 * secondary would sync anything over): tags alone tell generations apart.
	 */
	g->cur = (struct gen_id){ g->cur.number < UINT64_MAX ? g->cur.number + 1 : UINT64_MAX,
				  tag ? tag : 1 };
}

static bool gen_id_eq(struct gen_id a, struct gen_id b)
{
	return a.number == b.number && a.tag == b.tag;
}

/* Position of id in g's history, or -1. */
static int history_find(const struct gen_state *g, struct gen_id id)
{
	for (unsigned int i = 0; i < g->nr_history && i < GEN_HISTORY_MAX; i++)
		if (gen_id_eq(g->history[i], id))
			return (int)i;
	return -1;
}

enum gen_relation gen_compare(const struct gen_state *local, const struct gen_state *remote)
{
	if (!gen_has_guest(local) || !gen_has_guest(remote))
		return GEN_EMPTY;
	if (memcmp(local->uuid, remote->uuid, GEN_UUID_SIZE))
		return GEN_OTHER_GUEST;
	if (gen_id_eq(local->cur, remote->cur))
		return GEN_SAME;
	if (history_find(remote, local->cur) >= 0)
		return GEN_LOCAL_OLDER;
	if (history_find(local, remote->cur) >= 0)
		return GEN_REMOTE_OLDER;
	return GEN_DIVERGED;
}

const char *gen_relation_name(enum gen_relation r)
{
	static const char *const names[] = {
		[GEN_EMPTY] = "empty",
		[GEN_OTHER_GUEST] = "other guest",
		[GEN_SAME] = "same",
		[GEN_LOCAL_OLDER] = "local older",
		[GEN_REMOTE_OLDER] = "remote older",
		[GEN_DIVERGED] = "diverged",
	};

	return r <= GEN_DIVERGED ? names[r] : "?";
}

unsigned int gen_behind(const struct gen_state *local, const struct gen_state *remote)
{
	int i;

	if (gen_compare(local, remote) != GEN_LOCAL_OLDER)
		return 0;
	i = history_find(remote, local->cur);
	return (unsigned int)i + 1;
}

enum gen_verdict gen_secondary_verdict(const struct gen_state *local, bool holds,
				       const struct gen_state *remote)
{
	if (!holds || !gen_has_guest(local))
		return GEN_ACCEPT;
	if (!gen_has_guest(remote))
		return GEN_REFUSE_GUEST; /* a primary without identity cannot be this guest */
	switch (gen_compare(local, remote)) {
	case GEN_OTHER_GUEST:
		return GEN_REFUSE_GUEST;
	case GEN_REMOTE_OLDER:
		return GEN_REFUSE_OLDER;
	case GEN_DIVERGED:
		return GEN_REFUSE_DIVERGED;
	case GEN_EMPTY:
	case GEN_SAME:
	case GEN_LOCAL_OLDER:
		break;
	}
	return GEN_ACCEPT;
}

const char *gen_verdict_reason(enum gen_verdict v)
{
	switch (v) {
	case GEN_ACCEPT:
		return "accepted";
	case GEN_REFUSE_GUEST:
		return "the secondary holds a checkpoint of another guest";
	case GEN_REFUSE_OLDER:
		return "the secondary holds a newer generation of this guest";
	case GEN_REFUSE_DIVERGED:
		return "the secondary's copy and this primary diverged (both ran on their own)";
	}
	return "?";
}

void gen_uuid_format(const uint8_t u[GEN_UUID_SIZE], char buf[GEN_UUID_TEXT])
{
	static const uint8_t zero[GEN_UUID_SIZE];

	if (!memcmp(u, zero, GEN_UUID_SIZE)) {
		snprintf(buf, GEN_UUID_TEXT, "none");
		return;
	}
	snprintf(buf, GEN_UUID_TEXT,
		 "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", u[0], u[1],
		 u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10], u[11], u[12], u[13], u[14],
		 u[15]);
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

int gen_uuid_parse(const char *s, uint8_t u[GEN_UUID_SIZE])
{
	unsigned int n = 0;

	if (!strcmp(s, "none")) {
		memset(u, 0, GEN_UUID_SIZE);
		return 0;
	}
	for (unsigned int i = 0; s[i] && n < 2 * GEN_UUID_SIZE; i++) {
		int v;

		if (s[i] == '-' && (i == 8 || i == 13 || i == 18 || i == 23))
			continue;
		v = hexval(s[i]);
		if (v < 0)
			return -EINVAL;
		if (n % 2 == 0)
			u[n / 2] = (uint8_t)(v << 4);
		else
			u[n / 2] |= (uint8_t)v;
		n++;
	}
	return n == 2 * GEN_UUID_SIZE && strlen(s) == 36 ? 0 : -EINVAL;
}

void gen_describe(const struct gen_state *g, char *buf, size_t len)
{
	char u[GEN_UUID_TEXT];

	if (!gen_has_guest(g)) {
		snprintf(buf, len, "no guest");
		return;
	}
	gen_uuid_format(g->uuid, u);
	snprintf(buf, len, "guest %s generation %" PRIu64 " (tag %016" PRIx64 ")", u, g->cur.number,
		 g->cur.tag);
}

int gen_serialize(const struct gen_state *g, char *buf, size_t len)
{
	char u[GEN_UUID_TEXT];
	size_t at;
	int n;

	gen_uuid_format(g->uuid, u);
	n = snprintf(buf, len,
		     "# ftd guest identity and data generation (written atomically; do not edit)\n"
		     "uuid = %s\ngeneration = %" PRIu64 " %016" PRIx64 "\n",
		     u, g->cur.number, g->cur.tag);
	if (n < 0 || (size_t)n >= len)
		return -ENOSPC;
	at = (size_t)n;
	for (unsigned int i = 0; i < g->nr_history && i < GEN_HISTORY_MAX; i++) {
		n = snprintf(buf + at, len - at, "history = %" PRIu64 " %016" PRIx64 "\n",
			     g->history[i].number, g->history[i].tag);
		if (n < 0 || (size_t)n >= len - at)
			return -ENOSPC;
		at += (size_t)n;
	}
	return (int)at;
}

/*
 * "NUMBER TAG" exactly as gen_serialize writes it: decimal digits, one space,
 * hex digits, nothing else. strtoull() alone would also take blanks, a sign
 * ("-1" is UINT64_MAX) and a 0x prefix: garbage read as a generation.
 */
static int parse_id(const char *v, struct gen_id *id)
{
	uint64_t number = 0, tag = 0;
	const char *p = v;

	for (; *p >= '0' && *p <= '9'; p++) {
		if (number > (UINT64_MAX - (uint64_t)(*p - '0')) / 10)
			return -EINVAL;
		number = number * 10 + (uint64_t)(*p - '0');
	}
	if (p == v || *p++ != ' ')
		return -EINVAL;
	v = p;
	for (int d; (d = hexval(*p)) >= 0; p++) {
		if (tag >> 60)
			return -EINVAL;
		tag = tag << 4 | (uint64_t)d;
	}
	if (p == v || *p)
		return -EINVAL;
	*id = (struct gen_id){ number, tag };
	return 0;
}

int gen_parse(const char *text, struct gen_state *ret)
{
	bool have_uuid = false, have_gen = false;
	const char *line = text;

	gen_clear(ret);
	while (line && *line) {
		const char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) : strlen(line);
		char l[128];

		/* Every line ends with its newline: a file cut mid-line is no state. */
		if (!nl || n >= sizeof(l))
			return -EINVAL;
		memcpy(l, line, n);
		l[n] = 0;
		line = nl + 1;
		if (!l[0] || l[0] == '#')
			continue;
		if (!strncmp(l, "uuid = ", 7)) {
			if (have_uuid || gen_uuid_parse(l + 7, ret->uuid) < 0)
				return -EINVAL;
			have_uuid = true;
		} else if (!strncmp(l, "generation = ", 13)) {
			if (have_gen || parse_id(l + 13, &ret->cur) < 0)
				return -EINVAL;
			have_gen = true;
		} else if (!strncmp(l, "history = ", 10)) {
			if (ret->nr_history == GEN_HISTORY_MAX ||
			    parse_id(l + 10, &ret->history[ret->nr_history]) < 0)
				return -EINVAL;
			ret->nr_history++;
		} else {
			return -EINVAL;
		}
	}
	return have_uuid && have_gen ? 0 : -EINVAL;
}
