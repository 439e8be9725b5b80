// SPDX-License-Identifier: MIT
/* SIGHUP: the console reopened, the configuration read again (daemon/reload.h). */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/events.h"
#include "daemon/reload.h"
#include "daemon/role.h"
#include "daemon/run.h"
#include "lib/log.h"
#include "proto/tls.h"

static struct ftd_options *live;
static int live_argc;
static char **live_argv;

void ftd_reload_init(struct ftd_options *o, int argc, char **argv)
{
	live = o;
	live_argc = argc;
	live_argv = argv;
}

/* An option, where it is in struct ftd_options, and what the role applies when it changes. */
struct reload_field {
	const char *name;
	size_t offset, size;
	unsigned int what; /* RELOAD_*: 0, read where it is used */
};

#define FIELD_APPLY(name, member, what)                                                            \
	{                                                                                          \
		name, offsetof(struct ftd_options, member),                                        \
			sizeof(((struct ftd_options *)0)->member), what                            \
	}
#define FIELD(name, member) FIELD_APPLY(name, member, 0)

/* Fixed for the life of the process: the VM, its devices, the addresses, the identity. */
static const struct reload_field fixed[] = {
	FIELD("guest", guest),
	FIELD("mem", mem_size),
	FIELD("vcpus", vcpus),
	FIELD("tracking", tracking),
	FIELD("ring-entries", ring_entries),
	FIELD("duration", duration_ns),
	FIELD("realtime", realtime),
	FIELD("peer", peer),
	FIELD("listen", listen),
	FIELD("verify", verify),
	FIELD("prealloc", prealloc),
	FIELD("send-zc", send_zc),
	FIELD("live-harvest", live_harvest),
	FIELD("control", control),
	FIELD("cluster", cluster),
	FIELD("insecure", insecure),
	FIELD("state-dir", state_dir),
	FIELD("net", net),
	FIELD("kernel, initrd, cmdline or boot-protocol", kern),
	FIELD("disk", disk),
	FIELD("metrics-listen", metrics_listen),
	FIELD("[node] sections", nodes),
	FIELD("node", node),
	FIELD("role", role),
	FIELD("the guest's parameters (seed, bank-*, dirty-*, guest-ip, kv-max-bytes)", gp),
};

/*
 * Take effect once copied: the hooks and waits are read where they are used;
 * the interval and the timeout the role applies to its timers and session.
 */
static const struct reload_field live_fields[] = {
	FIELD_APPLY("interval", interval_ns, RELOAD_INTERVAL),
	FIELD_APPLY("interval auto", interval_auto, RELOAD_INTERVAL),
	FIELD_APPLY("auto-overhead", auto_overhead_pct, RELOAD_INTERVAL),
	FIELD_APPLY("auto-max-hold", auto_max_hold_ns, RELOAD_INTERVAL),
	FIELD_APPLY("output-interval", output_interval_ns, RELOAD_INTERVAL),
	FIELD_APPLY("timeout", timeout_ns, RELOAD_TIMEOUT),
	FIELD("fence-command", fence_command),
	FIELD("fence-timeout", fence_timeout_ns),
	FIELD("notify-command", notify_command),
	FIELD("cluster-wait", cluster_wait_ns),
	FIELD("corosync-conf", corosync_conf),
	FIELD("quiet", quiet),
	FIELD("console", console),
	FIELD("tls-cert", tls_cert),
	FIELD("tls-key", tls_key),
	FIELD("tls-ca", tls_ca),
	FIELD("tls-peer", tls_peer),
};

static bool differs(const struct ftd_options *a, const struct ftd_options *b,
		    const struct reload_field *f)
{
	return memcmp((const char *)a + f->offset, (const char *)b + f->offset, f->size) != 0;
}

static void copy_field(struct ftd_options *to, const struct ftd_options *from,
		       const struct reload_field *f)
{
	memcpy((char *)to + f->offset, (const char *)from + f->offset, f->size);
}

/* The console file again (logrotate moved it away), at its path in the options now. */
static void reopen_console(int console_fd, const char *path)
{
	int fd;

	if (console_fd < 0 || !strcmp(path, "-"))
		return;
	fd = ftd_open_console(path);
	if (fd < 0) {
		log_error("SIGHUP: cannot reopen console %s: %s; writing on to the old file", path,
			  strerror(errno));
		return;
	}
	if (dup3(fd, console_fd, O_CLOEXEC) < 0)
		log_error("SIGHUP: cannot reopen console %s: %s", path, strerror(errno));
	else
		log_info("SIGHUP: console reopened: %s", path);
	close(fd);
}

/* A new TLS context from the files (renewed certificates): for the next connection. */
static int reload_tls(const struct ftd_options *n, SSL_CTX **tls)
{
	SSL_CTX *ctx = NULL;
	char err[384];

	if (tls_ctx_new(n->tls_cert, n->tls_key, n->tls_ca, n->tls_peer, &ctx, err, sizeof(err)) <
	    0) {
		log_error("SIGHUP: %s; the connections keep the TLS files read before", err);
		return -EINVAL;
	}
	tls_ctx_free(*tls); /* connections made with it hold their own reference */
	*tls = ctx;
	log_info("SIGHUP: TLS files read again (%s, %s), for the next connection", n->tls_cert,
		 n->tls_ca);
	return 0;
}

unsigned int ftd_reload_options(struct ftd_options *o, struct ftd_options *n)
{
	unsigned int what = 0;

	for (size_t i = 0; i < sizeof(fixed) / sizeof(fixed[0]); i++)
		if (differs(o, n, &fixed[i]))
			log_warning(
				"SIGHUP: %s changed in %s, but it cannot change while ftd runs: "
				"it applies at the next start",
				fixed[i].name, o->config);
	if ((n->tls_cert[0] != 0) != (o->tls_cert[0] != 0)) {
		log_warning("SIGHUP: TLS is %s in %s, but replication in the clear and with TLS "
			    "cannot swap while ftd runs: it applies at the next start",
			    o->tls_cert[0] ? "off" : "on", o->config);
		memcpy(n->tls_cert, o->tls_cert, sizeof(n->tls_cert));
		memcpy(n->tls_key, o->tls_key, sizeof(n->tls_key));
		memcpy(n->tls_ca, o->tls_ca, sizeof(n->tls_ca));
		memcpy(n->tls_peer, o->tls_peer, sizeof(n->tls_peer));
	}
	for (size_t i = 0; i < sizeof(live_fields) / sizeof(live_fields[0]); i++) {
		const struct reload_field *f = &live_fields[i];

		if (!differs(o, n, f))
			continue;
		log_info("SIGHUP: %s changed", f->name);
		what |= f->what;
		copy_field(o, n, f);
	}
	return what;
}

unsigned int ftd_reload_files(int console_fd, SSL_CTX **tls)
{
	struct ftd_options *n;
	char err[1024] = "";
	unsigned int what;

	if (!live->config[0]) {
		log_info("SIGHUP: no --config to read again");
		reopen_console(console_fd, live->console);
		return 0;
	}
	n = calloc(1, sizeof(*n));
	if (!n) {
		log_error("SIGHUP: out of memory; nothing changed");
		return 0;
	}
	if (ftd_options_parse(live_argc, live_argv, n, err, sizeof(err)) < 0) {
		log_error("SIGHUP: %s; nothing changed", err);
		free(n);
		reopen_console(console_fd, live->console);
		return 0;
	}
	what = ftd_reload_options(live, n);
	event_set_notify(live->notify_command[0] ? live->notify_command : NULL);
	reopen_console(console_fd, live->console);
	if (tls && live->tls_cert[0] && reload_tls(live, tls) == 0)
		what |= RELOAD_TLS;
	free(n);
	return what;
}

unsigned int ftd_reload(struct ftd_process *pr)
{
	return ftd_reload_files(pr->console_fd, &pr->tls);
}
