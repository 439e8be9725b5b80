// SPDX-License-Identifier: MIT
/*
 * ftd's configuration file (--config FILE, checked by --check-config): one
 * `key = value` per line, read with inih; the keys are the long options
 * without dashes, plus `role`, and each value goes through the same checks
 * as on the command line (options_apply). Then the two `[node NAME]`
 * sections, each with `address = HOST:PORT`: the same file on both nodes.
 */
#include <errno.h>
#include <ini.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/options.h"
#include "daemon/options_internal.h"

/* inih keeps a section's name in 50 bytes: "node " and 44, the rest cut. */
#define CONFIG_NODE_NAME_MAX 44

struct config_ctx {
	struct ftd_options *o;
	FILE *f;
	char *line; /* the line inih parses, whole (getline) */
	size_t size;
	int lineno;
	bool after_key;	  /* a key since the last section: inih continues its value */
	char key[64];	  /* the last key */
	char pending[64]; /* a [node NAME] without keys yet, and its line */
	int pending_line;
	int err_line;  /* of the first error; 0: the file's, not a line's */
	char err[256]; /* the first error */
};

static void config_error(struct config_ctx *ctx, int line, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void config_error(struct config_ctx *ctx, int line, const char *fmt, ...)
{
	va_list ap;

	if (ctx->err[0])
		return;
	va_start(ap, fmt);
	vsnprintf(ctx->err, sizeof(ctx->err), fmt, ap);
	va_end(ap);
	ctx->err_line = line;
}

static int config_flag(const char *value, bool *ret)
{
	if (!strcmp(value, "true") || !strcmp(value, "yes") || !strcmp(value, "1"))
		*ret = true;
	else if (!strcmp(value, "false") || !strcmp(value, "no") || !strcmp(value, "0"))
		*ret = false;
	else
		return -EINVAL;
	return 0;
}

/* The node of section `[node NAME]`, added if new. NULL with err set when wrong. */
static struct ftd_node *config_node_find(struct ftd_options *o, const char *name, char *err,
					 size_t errlen)
{
	struct ftd_node *n;

	if (!name[0] || strlen(name) > CONFIG_NODE_NAME_MAX || strpbrk(name, " \t/")) {
		snprintf(err, errlen, "[node %s]: not a node name (1..%d bytes, no spaces)", name,
			 CONFIG_NODE_NAME_MAX);
		return NULL;
	}
	for (unsigned int i = 0; i < o->nr_nodes; i++)
		if (!strcmp(o->nodes[i].name, name))
			return &o->nodes[i];
	if (o->nr_nodes == FTD_NODES) {
		snprintf(err, errlen,
			 "[node %s]: a third node (a guest is protected by two: %s and %s)", name,
			 o->nodes[0].name, o->nodes[1].name);
		return NULL;
	}
	n = &o->nodes[o->nr_nodes++];
	snprintf(n->name, sizeof(n->name), "%s", name);
	return n;
}

/*
 * A [node NAME] section that ended without a key (inih tells only of keys)
 * is a node too, without an address: added, with an error at its line.
 */
static bool config_node_ended(struct config_ctx *ctx)
{
	char why[256] = "";

	if (ctx->pending[0] && !config_node_find(ctx->o, ctx->pending, why, sizeof(why)))
		config_error(ctx, ctx->pending_line, "%s", why);
	ctx->pending[0] = '\0';
	return !ctx->err[0];
}

/* A key of section `[node NAME]`. Writes a message into err when it is wrong. */
static void config_node(struct ftd_options *o, const char *name, const char *key, const char *value,
			char *err, size_t errlen)
{
	struct ftd_node *n = config_node_find(o, name, err, errlen);

	if (!n)
		return;
	if (strcmp(key, "address")) {
		snprintf(err, errlen, "[node %s]: unknown key '%s' (a node has an address)", name,
			 key);
		return;
	}
	if (strlen(value) >= sizeof(n->address) || !options_addr_ok(value)) {
		snprintf(err, errlen,
			 "[node %s]: address '%s' is not HOST:PORT (an IPv4 address, [IPv6] or "
			 "localhost)",
			 name, value);
		return;
	}
	snprintf(n->address, sizeof(n->address), "%s", value);
}

/*
 * inih's reader (fgets's signature): one whole line at a time, or the end
 * with ctx->err set. inih reads a line into num bytes and would take a
 * longer one as two (the tail a comment, dropped, or a key, applied); a NUL
 * byte would hide the rest of its line; an indented line after a key would
 * be a second value of that key, not a key of its own; and a read error (a
 * directory) would end the file as if it were complete. Each is refused. The
 * same order of tests as inih's: comment, continuation, section, key.
 */
static char *config_read(char *str, int num, void *stream)
{
	static const char space[] = " \t\n\v\f\r";
	struct config_ctx *ctx = stream;
	const char *l, *s;
	ssize_t n;

	if (ctx->err[0])
		return NULL;
	errno = 0;
	n = getline(&ctx->line, &ctx->size, ctx->f);
	if (n < 0) {
		if (ferror(ctx->f))
			config_error(ctx, 0, "cannot read: %s", strerror(errno ? errno : EIO));
		return NULL;
	}
	ctx->lineno++;
	if (n && ctx->line[n - 1] == '\n')
		ctx->line[--n] = '\0';
	if (n && ctx->line[n - 1] == '\r')
		ctx->line[--n] = '\0';
	if (strlen(ctx->line) != (size_t)n) {
		config_error(ctx, ctx->lineno, "a NUL byte in the line");
		return NULL;
	}
	l = ctx->line;
	if (ctx->lineno == 1 && !strncmp(l, "\xef\xbb\xbf", 3))
		l += 3; /* a UTF-8 BOM, which inih skips */
	s = l + strspn(l, space);
	if (!*s || *s == '#' || *s == ';') {
		/* A comment or a blank line, whatever its length: its start is enough. */
		snprintf(str, (size_t)num, "%s", ctx->line);
		return str;
	}
	if (n > num - 1) {
		config_error(ctx, ctx->lineno, "a line longer than %d bytes", num - 1);
		return NULL;
	}
	if (s > l && ctx->after_key) {
		config_error(ctx, ctx->lineno,
			     "an indented line continues the value of '%s' (one key per line, "
			     "not indented)",
			     ctx->key);
		return NULL;
	} else if (*s == '[') {
		const char *end = strchr(s, ']');
		int len = end ? (int)(end - s - 6) : 0;

		ctx->after_key = false;
		if (!config_node_ended(ctx))
			return NULL;
		if (end && !strncmp(s, "[node ", 6)) {
			/* Checked here: inih would cut a long name and merge two nodes. */
			if (!len || len > CONFIG_NODE_NAME_MAX || memchr(s + 6, '/', len) ||
			    strcspn(s + 6, " \t") < (size_t)len) {
				config_error(
					ctx, ctx->lineno,
					"[node %.*s]: not a node name (1..%d bytes, no spaces)",
					len, s + 6, CONFIG_NODE_NAME_MAX);
				return NULL;
			}
			snprintf(ctx->pending, sizeof(ctx->pending), "%.*s", len, s + 6);
			ctx->pending_line = ctx->lineno;
		}
	} else if (strpbrk(s, "=:")) {
		ctx->after_key = true;
	}
	memcpy(str, ctx->line, (size_t)n + 1);
	return str;
}

/* inih handler: one key. Returns 1 to go on, 0 for an error (the first is kept). */
static int config_key(void *user, const char *section, const char *name, const char *value)
{
	struct config_ctx *ctx = user;
	char err[256] = "";
	bool flag;
	int r = 0;

	if (ctx->err[0])
		return 0;
	snprintf(ctx->key, sizeof(ctx->key), "%s", name);
	if (!strncmp(section, "node ", 5)) {
		ctx->pending[0] = '\0'; /* it has a key: added at its line */
		config_node(ctx->o, section + 5, name, value, err, sizeof(err));
	} else if (section[0]) {
		snprintf(err, sizeof(err), "unknown section [%s] (only [node NAME])", section);
	} else if (!strcmp(name, "role")) {
		if (options_parse_role(value, &ctx->o->role) < 0)
			snprintf(err, sizeof(err),
				 "role '%s' is not auto, run, primary or secondary", value);
	} else {
		const struct option *opt = NULL;

		for (const struct option *l = options_long; l->name; l++)
			if (!strcmp(l->name, name))
				opt = l;
		if (!opt || opt->val == OPT_HELP || opt->val == OPT_VERSION ||
		    opt->val == OPT_NODE || opt->val == OPT_CONFIG ||
		    opt->val == OPT_CHECK_CONFIG) {
			snprintf(err, sizeof(err), "unknown key '%s'", name);
		} else if (opt->has_arg == no_argument) {
			if (config_flag(value, &flag) < 0)
				snprintf(err, sizeof(err), "%s: '%s' is not true or false", name,
					 value);
			else if (flag)
				r = options_apply(ctx->o, opt->val, NULL, err, sizeof(err));
			else if (opt->val == OPT_REALTIME)
				ctx->o->realtime = 0;
			else if (opt->val == OPT_QUIET)
				ctx->o->quiet = false;
			else if (opt->val == OPT_VERIFY)
				ctx->o->verify = false;
			else if (opt->val == OPT_PREALLOC)
				ctx->o->prealloc = false;
			else if (opt->val == OPT_SEND_ZC)
				ctx->o->send_zc = false;
		} else {
			r = options_apply(ctx->o, opt->val, value, err, sizeof(err));
		}
	}
	if (r < 0 || err[0]) {
		config_error(ctx, ctx->lineno, "%s", err);
		return 0;
	}
	return 1;
}

int options_load_config(const char *path, struct ftd_options *o, char *err, size_t errlen)
{
	struct config_ctx ctx = { .o = o };
	int line;

	ctx.f = fopen(path, "re");
	if (!ctx.f)
		return options_fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
	line = ini_parse_stream(config_read, &ctx, config_key, &ctx);
	if (!ctx.err[0])
		config_node_ended(&ctx);
	fclose(ctx.f);
	free(ctx.line);
	if (line == -2)
		return options_fail(err, errlen, "%s: out of memory", path);
	/* inih's line is its first error, the handler's or a line it could not read. */
	if (line > 0 && (!ctx.err[0] || line < ctx.err_line))
		return options_fail(err, errlen, "%s:%d: not a `key = value` line", path, line);
	if (ctx.err[0] && ctx.err_line)
		return options_fail(err, errlen, "%s:%d: %s", path, ctx.err_line, ctx.err);
	if (ctx.err[0])
		return options_fail(err, errlen, "%s: %s", path, ctx.err);
	return 0;
}
