// SPDX-License-Identifier: MIT
/*
 * ftd's configuration file (--config FILE, checked by --check-config): one
 * `key = value` per line, read with inih; the keys are the long options
 * without dashes, plus `role`, and each value goes through the same checks
 * as on the command line (options_apply).
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

/* inih handler: one key. Returns 1 to go on, 0 for an error (the first is kept). */
static int config_key(void *user, const char *section, const char *name, const char *value)
{
	struct config_ctx *ctx = user;
	char err[256] = "";
	bool flag;
	int r = 0;

	if (ctx->err[0])
		return 0;
	if (section[0]) {
		snprintf(err, sizeof(err), "sections are not used ([%s])", section);
	} else if (!strcmp(name, "role")) {
		if (options_parse_role(value, &ctx->o->role) < 0)
			snprintf(err, sizeof(err), "role '%s' is not run, primary or secondary",
				 value);
	} else {
		const struct option *opt = NULL;

		for (const struct option *l = options_long; l->name; l++)
			if (!strcmp(l->name, name))
				opt = l;
		if (!opt || opt->val == OPT_HELP || opt->val == OPT_VERSION ||
		    opt->val == OPT_CONFIG || opt->val == OPT_CHECK_CONFIG) {
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
