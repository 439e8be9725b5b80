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
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "daemon/options.h"
#include "daemon/options_internal.h"

struct config_ctx {
	struct ftd_options *o;
	char err[256]; /* the first error */
};

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

/* A key of section `[node NAME]`. Writes a message into err when it is wrong. */
static void config_node(struct ftd_options *o, const char *name, const char *key, const char *value,
			char *err, size_t errlen)
{
	struct ftd_node *n = NULL;

	if (!name[0] || strlen(name) >= sizeof(n->name) || strpbrk(name, " \t/")) {
		snprintf(err, errlen, "[node %s]: not a node name (1..%zu bytes, no spaces)", name,
			 sizeof(n->name) - 1);
		return;
	}
	for (unsigned int i = 0; i < o->nr_nodes; i++)
		if (!strcmp(o->nodes[i].name, name))
			n = &o->nodes[i];
	if (!n && o->nr_nodes == FTD_NODES) {
		snprintf(err, errlen,
			 "[node %s]: a third node (a guest is protected by two: %s and %s)", name,
			 o->nodes[0].name, o->nodes[1].name);
		return;
	}
	if (!n) {
		n = &o->nodes[o->nr_nodes++];
		snprintf(n->name, sizeof(n->name), "%s", name);
	}
	if (strcmp(key, "address")) {
		snprintf(err, errlen, "[node %s]: unknown key '%s' (a node has an address)", name,
			 key);
		return;
	}
	if (!value[0] || strlen(value) >= sizeof(n->address) || !strchr(value, ':')) {
		snprintf(err, errlen, "[node %s]: address '%s' is not HOST:PORT", name, value);
		return;
	}
	snprintf(n->address, sizeof(n->address), "%s", value);
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
	if (!strncmp(section, "node ", 5)) {
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
		snprintf(ctx->err, sizeof(ctx->err), "%s", err);
		return 0;
	}
	return 1;
}

int options_load_config(const char *path, struct ftd_options *o, char *err, size_t errlen)
{
	struct config_ctx ctx = { .o = o };
	int line = ini_parse(path, config_key, &ctx);

	if (line == -1)
		return options_fail(err, errlen, "%s: cannot open: %s", path, strerror(errno));
	if (line == -2)
		return options_fail(err, errlen, "%s: out of memory", path);
	if (line > 0)
		return options_fail(err, errlen, "%s:%d: %s", path, line,
				    ctx.err[0] ? ctx.err : "not a `key = value` line");
	return 0;
}
