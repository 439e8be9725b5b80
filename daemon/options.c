// SPDX-License-Identifier: MIT
/*
 * ftd's command line: the option table, the defaults, every option's checks
 * (options_apply, which the configuration file uses too), and the parse: the
 * file (options_config.c) first, then the subcommand and the options, then
 * the checks across options. The --help text is in options_usage.c.
 */
#include <errno.h>
#include <getopt.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/corosync_conf.h"
#include "daemon/options.h"
#include "daemon/options_internal.h"
#include "lib/clock.h"
#include "lib/netaddr.h"
#include "lib/parse.h"
#include "vmm/loader.h"
#include "vmm/vm.h"

const struct option options_long[] = {
	{ "guest", required_argument, NULL, OPT_GUEST },
	{ "mem", required_argument, NULL, OPT_MEM },
	{ "vcpus", required_argument, NULL, OPT_VCPUS },
	{ "tracking", required_argument, NULL, OPT_TRACKING },
	{ "ring-entries", required_argument, NULL, OPT_RING_ENTRIES },
	{ "interval", required_argument, NULL, OPT_INTERVAL },
	{ "duration", required_argument, NULL, OPT_DURATION },
	{ "console", required_argument, NULL, OPT_CONSOLE },
	{ "quiet", no_argument, NULL, OPT_QUIET },
	{ "realtime", no_argument, NULL, OPT_REALTIME },
	{ "no-realtime", no_argument, NULL, OPT_NO_REALTIME },
	{ "seed", required_argument, NULL, OPT_SEED },
	{ "bank-pages", required_argument, NULL, OPT_BANK_PAGES },
	{ "bank-accounts", required_argument, NULL, OPT_BANK_ACCOUNTS },
	{ "bank-check-ms", required_argument, NULL, OPT_BANK_CHECK_MS },
	{ "dirty-pages-per-ms", required_argument, NULL, OPT_DIRTY_PAGES_PER_MS },
	{ "dirty-wss", required_argument, NULL, OPT_DIRTY_WSS },
	{ "dirty-order", required_argument, NULL, OPT_DIRTY_ORDER },
	{ "dirty-report-ms", required_argument, NULL, OPT_DIRTY_REPORT_MS },
	{ "peer", required_argument, NULL, OPT_PEER },
	{ "listen", required_argument, NULL, OPT_LISTEN },
	{ "verify", no_argument, NULL, OPT_VERIFY },
	{ "prealloc", no_argument, NULL, OPT_PREALLOC },
	{ "timeout", required_argument, NULL, OPT_TIMEOUT },
	{ "send-zc", no_argument, NULL, OPT_SEND_ZC },
	{ "live-harvest", required_argument, NULL, OPT_LIVE_HARVEST },
	{ "auto-overhead", required_argument, NULL, OPT_AUTO_OVERHEAD },
	{ "auto-max-hold", required_argument, NULL, OPT_AUTO_MAX_HOLD },
	{ "control", required_argument, NULL, OPT_CONTROL },
	{ "fence-command", required_argument, NULL, OPT_FENCE_COMMAND },
	{ "fence-timeout", required_argument, NULL, OPT_FENCE_TIMEOUT },
	{ "notify-command", required_argument, NULL, OPT_NOTIFY_COMMAND },
	{ "cluster", required_argument, NULL, OPT_CLUSTER },
	{ "cluster-wait", required_argument, NULL, OPT_CLUSTER_WAIT },
	{ "tls-cert", required_argument, NULL, OPT_TLS_CERT },
	{ "tls-key", required_argument, NULL, OPT_TLS_KEY },
	{ "tls-ca", required_argument, NULL, OPT_TLS_CA },
	{ "tls-peer", required_argument, NULL, OPT_TLS_PEER },
	{ "insecure", no_argument, NULL, OPT_INSECURE },
	{ "state-dir", required_argument, NULL, OPT_STATE_DIR },
	{ "net", required_argument, NULL, OPT_NET },
	{ "output-interval", required_argument, NULL, OPT_OUTPUT_INTERVAL },
	{ "net-hold-max", required_argument, NULL, OPT_NET_HOLD_MAX },
	{ "guest-ip", required_argument, NULL, OPT_GUEST_IP },
	{ "guest-gateway", required_argument, NULL, OPT_GUEST_GATEWAY },
	{ "kv-max-bytes", required_argument, NULL, OPT_KV_MAX_BYTES },
	{ "debug-no-device-dirty", no_argument, NULL, OPT_DEBUG_NO_DEVICE_DIRTY },
	{ "kernel", required_argument, NULL, OPT_KERNEL },
	{ "initrd", required_argument, NULL, OPT_INITRD },
	{ "cmdline", required_argument, NULL, OPT_CMDLINE },
	{ "boot-protocol", required_argument, NULL, OPT_BOOT_PROTOCOL },
	{ "disk", required_argument, NULL, OPT_DISK },
	{ "metrics-listen", required_argument, NULL, OPT_METRICS_LISTEN },
	{ "node", required_argument, NULL, OPT_NODE },
	{ "corosync-conf", required_argument, NULL, OPT_COROSYNC_CONF },
	{ "config", required_argument, NULL, OPT_CONFIG },
	{ "check-config", no_argument, NULL, OPT_CHECK_CONFIG },
	{ "help", no_argument, NULL, OPT_HELP },
	{ "version", no_argument, NULL, OPT_VERSION },
	{ 0 },
};

int options_fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -EINVAL;
}

static int opt_uint(const char *name, const char *arg, uint64_t min, uint64_t max, uint64_t *ret,
		    char *err, size_t errlen)
{
	int r = parse_uint(arg, min, max, ret);

	if (r == -ERANGE)
		return options_fail(err, errlen, "--%s: %s is out of range %llu..%llu", name, arg,
				    (unsigned long long)min, (unsigned long long)max);
	if (r < 0)
		return options_fail(err, errlen, "--%s: '%s' is not a number", name, arg);
	return 0;
}

int options_parse_role(const char *word, enum ftd_role *ret)
{
	if (!strcmp(word, "run"))
		*ret = FTD_ROLE_RUN;
	else if (!strcmp(word, "primary"))
		*ret = FTD_ROLE_PRIMARY;
	else if (!strcmp(word, "secondary"))
		*ret = FTD_ROLE_SECONDARY;
	else if (!strcmp(word, "auto"))
		*ret = FTD_ROLE_AUTO;
	else
		return -EINVAL;
	return 0;
}

static void options_defaults(struct ftd_options *o)
{
	memset(o, 0, sizeof(*o));
	snprintf(o->guest, sizeof(o->guest), "builtin:bank");
	o->mem_size = 1ULL << 30;
	o->vcpus = 2;
	o->tracking = DIRTY_RING;
	o->ring_entries = VM_DEFAULT_RING_ENTRIES;
	o->interval_ns = 10 * NS_PER_MS;
	o->realtime = -1;
	o->timeout_ns = 2000000000ULL;
	o->fence_timeout_ns = 60000000000ULL;
	o->cluster_wait_ns = 35000000000ULL;
	snprintf(o->corosync_conf, sizeof(o->corosync_conf), "%s", COROSYNC_CONF_DEFAULT);
	snprintf(o->console, sizeof(o->console), "-");
	o->net.hold_max = FTD_NET_DEFAULT_HOLD_MAX;
	loader_default_params(&o->gp);
}

/*
 * --kernel and --initrd: the path as given (the daemon opens it when it boots the
 * guest, so a relative path is relative to where ftd started). The guest's name,
 * which the handshake and status show, is linux:BASENAME.
 */
static int options_kernel_file(struct ftd_options *o, int c, const char *arg, char *err,
			       size_t errlen)
{
	const char *name = c == OPT_KERNEL ? "kernel" : "initrd";
	char *dst = c == OPT_KERNEL ? o->kern.kernel : o->kern.initrd;
	const char *base;

	if (!arg[0] || strlen(arg) >= sizeof(o->kern.kernel))
		return options_fail(err, errlen, "--%s: '%s' is not a file name of 1..%zu bytes",
				    name, arg, sizeof(o->kern.kernel) - 1);
	snprintf(dst, sizeof(o->kern.kernel), "%s", arg);
	if (c == OPT_KERNEL) {
		base = strrchr(arg, '/');
		base = base ? base + 1 : arg;
		snprintf(o->guest, sizeof(o->guest), "linux:%.57s", base);
	}
	return 0;
}

int options_apply(struct ftd_options *o, int c, const char *arg, char *err, size_t errlen)
{
	uint64_t v = 0;
	int r = 0;

	switch (c) {
	case OPT_GUEST:
		if (strncmp(arg, "builtin:", 8) || strlen(arg) >= sizeof(o->guest))
			return options_fail(err, errlen,
					    "--guest: '%s' is not a guest (use builtin:NAME)", arg);
		snprintf(o->guest, sizeof(o->guest), "%s", arg);
		o->guest_set = true;
		break;
	case OPT_KERNEL:
	case OPT_INITRD:
		return options_kernel_file(o, c, arg, err, errlen);
	case OPT_DISK:
		if (!arg[0] || strlen(arg) >= sizeof(o->disk))
			return options_fail(err, errlen,
					    "--disk: '%s' is not a path of 1..%zu bytes", arg,
					    sizeof(o->disk) - 1);
		snprintf(o->disk, sizeof(o->disk), "%s", arg);
		break;
	case OPT_METRICS_LISTEN:
		if (strlen(arg) >= sizeof(o->metrics_listen) || !options_addr_ok(arg))
			return options_fail(err, errlen,
					    "--metrics-listen: '%s' is not HOST:PORT (e.g. "
					    "127.0.0.1:9410)",
					    arg);
		snprintf(o->metrics_listen, sizeof(o->metrics_listen), "%s", arg);
		break;
	case OPT_COROSYNC_CONF:
		if (*arg != '/' || strlen(arg) >= sizeof(o->corosync_conf))
			return options_fail(
				err, errlen,
				"--corosync-conf: '%s' is not an absolute path of under "
				"%zu bytes",
				arg, sizeof(o->corosync_conf));
		snprintf(o->corosync_conf, sizeof(o->corosync_conf), "%s", arg);
		break;
	case OPT_NODE:
		if (!arg[0] || strlen(arg) >= sizeof(o->node))
			return options_fail(err, errlen,
					    "--node: '%s' is not a name of 1..%zu bytes", arg,
					    sizeof(o->node) - 1);
		snprintf(o->node, sizeof(o->node), "%s", arg);
		break;
	case OPT_CMDLINE:
		if (strlen(arg) >= sizeof(o->kern.cmdline))
			return options_fail(err, errlen, "--cmdline: longer than %zu bytes",
					    sizeof(o->kern.cmdline) - 1);
		snprintf(o->kern.cmdline, sizeof(o->kern.cmdline), "%s", arg);
		o->kern.cmdline_set = true;
		break;
	case OPT_BOOT_PROTOCOL:
		if (strcmp(arg, "64bit") && strcmp(arg, "pvh"))
			return options_fail(err, errlen,
					    "--boot-protocol: '%s' is not 64bit or pvh", arg);
		o->kern.pvh = !strcmp(arg, "pvh");
		break;
	case OPT_MEM:
		if (parse_size(arg, &v) < 0)
			return options_fail(err, errlen,
					    "--mem: '%s' is not a size (use e.g. 512M, 1G, 16G)",
					    arg);
		if (v < VM_MIN_MEM || v > VM_MAX_MEM || v % (2ULL << 20))
			return options_fail(err, errlen,
					    "--mem: %s is not a multiple of 2M between 64M and 64G",
					    arg);
		o->mem_size = v;
		break;
	case OPT_VCPUS:
		r = opt_uint("vcpus", arg, 1, VM_MAX_VCPUS, &v, err, errlen);
		o->vcpus = (unsigned int)v;
		break;
	case OPT_TRACKING:
		if (dirty_mode_parse(arg, &o->tracking) < 0)
			return options_fail(err, errlen, "--tracking: '%s' is not ring or bitmap",
					    arg);
		break;
	case OPT_RING_ENTRIES:
		r = opt_uint("ring-entries", arg, 256, 65536, &v, err, errlen);
		if (!r && (v & (v - 1)))
			return options_fail(err, errlen, "--ring-entries: %s is not a power of two",
					    arg);
		o->ring_entries = (uint32_t)v;
		break;
	case OPT_INTERVAL:
		if (!strcmp(arg, "auto")) {
			o->interval_auto = true;
			break;
		}
		o->interval_auto = false;
		if (parse_duration(arg, &v) < 0)
			return options_fail(err, errlen,
					    "--interval: '%s' is not a duration (e.g. 10ms)", arg);
		if (v < NS_PER_MS || v > 60 * NS_PER_S)
			return options_fail(err, errlen, "--interval: %s is outside 1ms..60s", arg);
		o->interval_ns = v;
		break;
	case OPT_DURATION:
		if (parse_duration(arg, &v) < 0)
			return options_fail(err, errlen,
					    "--duration: '%s' is not a duration (e.g. 30s)", arg);
		o->duration_ns = v;
		break;
	case OPT_CONSOLE:
		if (!*arg || strlen(arg) >= sizeof(o->console))
			return options_fail(err, errlen, "--console: '%s' is not a usable path",
					    arg);
		snprintf(o->console, sizeof(o->console), "%s", arg);
		break;
	case OPT_QUIET:
		o->quiet = true;
		break;
	case OPT_REALTIME:
		o->realtime = 1;
		break;
	case OPT_NO_REALTIME:
		o->realtime = 0;
		break;
	case OPT_SEED:
		r = opt_uint("seed", arg, 0, UINT64_MAX, &o->gp.seed, err, errlen);
		break;
	case OPT_BANK_PAGES:
		r = opt_uint("bank-pages", arg, 2, 1u << 20, &v, err, errlen);
		o->gp.bank_pages = (uint32_t)v;
		break;
	case OPT_BANK_ACCOUNTS:
		r = opt_uint("bank-accounts", arg, 2, 1u << 26, &v, err, errlen);
		o->gp.bank_accounts = (uint32_t)v;
		break;
	case OPT_BANK_CHECK_MS:
		r = opt_uint("bank-check-ms", arg, 1, 3600000, &v, err, errlen);
		o->gp.bank_check_ms = (uint32_t)v;
		break;
	case OPT_DIRTY_PAGES_PER_MS:
		r = opt_uint("dirty-pages-per-ms", arg, 1, 1u << 20, &v, err, errlen);
		o->gp.dirty_pages_per_ms = (uint32_t)v;
		break;
	case OPT_DIRTY_WSS:
		if (parse_size(arg, &v) < 0 || v < VM_PAGE_SIZE)
			return options_fail(err, errlen,
					    "--dirty-wss: '%s' is not a size of at least 4K", arg);
		o->gp.dirty_wss_bytes = v;
		break;
	case OPT_DIRTY_ORDER:
		if (!strcmp(arg, "seq") || !strcmp(arg, "sequential"))
			o->gp.dirty_order = GUEST_ORDER_SEQUENTIAL;
		else if (!strcmp(arg, "random"))
			o->gp.dirty_order = GUEST_ORDER_RANDOM;
		else
			return options_fail(err, errlen, "--dirty-order: '%s' is not seq or random",
					    arg);
		break;
	case OPT_DIRTY_REPORT_MS:
		r = opt_uint("dirty-report-ms", arg, 1, 3600000, &v, err, errlen);
		o->gp.dirty_report_ms = (uint32_t)v;
		break;
	case OPT_PEER:
	case OPT_LISTEN: {
		char *dst = c == OPT_PEER ? o->peer : o->listen;

		if (strlen(arg) >= sizeof(o->peer) || !options_addr_ok(arg))
			return options_fail(
				err, errlen,
				"--%s: '%s' is not HOST:PORT (an IPv4 address, [IPv6] or "
				"localhost)",
				c == OPT_PEER ? "peer" : "listen", arg);
		snprintf(dst, sizeof(o->peer), "%s", arg);
		break;
	}
	case OPT_VERIFY:
		o->verify = true;
		break;
	case OPT_PREALLOC:
		o->prealloc = true;
		break;
	case OPT_TIMEOUT:
		if (parse_duration(arg, &v) < 0)
			return options_fail(err, errlen,
					    "--timeout: '%s' is not a duration (e.g. 2s)", arg);
		if (v < 100000000ULL || v > 600000000000ULL)
			return options_fail(err, errlen, "--timeout: %s is outside 100ms..10m",
					    arg);
		o->timeout_ns = v;
		break;
	case OPT_SEND_ZC:
		o->send_zc = true;
		break;
	case OPT_AUTO_OVERHEAD:
		r = opt_uint("auto-overhead", arg, 1, 50, &v, err, errlen);
		o->auto_overhead_pct = (uint32_t)v;
		break;
	case OPT_AUTO_MAX_HOLD:
		if (parse_duration(arg, &v) < 0)
			return options_fail(err, errlen,
					    "--auto-max-hold: '%s' is not a duration (e.g. 50ms)",
					    arg);
		if (v < 2 * NS_PER_MS || v > 10 * NS_PER_S)
			return options_fail(err, errlen, "--auto-max-hold: %s is outside 2ms..10s",
					    arg);
		o->auto_max_hold_ns = v;
		break;
	case OPT_LIVE_HARVEST:
		if (!strcmp(arg, "auto"))
			o->live_harvest = FTD_LIVE_AUTO;
		else if (!strcmp(arg, "on"))
			o->live_harvest = FTD_LIVE_ON;
		else if (!strcmp(arg, "off"))
			o->live_harvest = FTD_LIVE_OFF;
		else
			return options_fail(err, errlen,
					    "--live-harvest: '%s' is not auto, on or off", arg);
		break;
	case OPT_CONTROL:
		if (*arg != '/' || strlen(arg) >= sizeof(o->control))
			return options_fail(
				err, errlen,
				"--control: '%s' is not an absolute path of under 108 bytes", arg);
		snprintf(o->control, sizeof(o->control), "%s", arg);
		break;
	case OPT_FENCE_COMMAND:
	case OPT_NOTIFY_COMMAND: {
		char *dst = c == OPT_FENCE_COMMAND ? o->fence_command : o->notify_command;

		if (!*arg || strlen(arg) >= sizeof(o->fence_command))
			return options_fail(err, errlen, "--%s: the command must be 1..511 bytes",
					    c == OPT_FENCE_COMMAND ? "fence-command"
								   : "notify-command");
		snprintf(dst, sizeof(o->fence_command), "%s", arg);
		break;
	}
	case OPT_FENCE_TIMEOUT:
	case OPT_CLUSTER_WAIT: {
		const char *name = c == OPT_FENCE_TIMEOUT ? "fence-timeout" : "cluster-wait";

		if (parse_duration(arg, &v) < 0)
			return options_fail(err, errlen, "--%s: '%s' is not a duration (e.g. 5s)",
					    name, arg);
		if (v > 3600000000000ULL)
			return options_fail(err, errlen, "--%s: %s is more than an hour", name,
					    arg);
		if (c == OPT_FENCE_TIMEOUT)
			o->fence_timeout_ns = v;
		else
			o->cluster_wait_ns = v;
		break;
	}
	case OPT_CLUSTER:
		if (!*arg || strlen(arg) > 48 ||
		    strspn(arg, "abcdefghijklmnopqrstuvwxyz"
				"ABCDEFGHIJKLMNOPQRSTUVWXYZ"
				"0123456789_.-") != strlen(arg))
			return options_fail(
				err, errlen,
				"--cluster: '%s' is not a name of 1..48 letters, digits, _ . -",
				arg);
		snprintf(o->cluster, sizeof(o->cluster), "%s", arg);
		break;
	case OPT_TLS_CERT:
	case OPT_TLS_KEY:
	case OPT_TLS_CA: {
		char *dst = c == OPT_TLS_CERT  ? o->tls_cert
			    : c == OPT_TLS_KEY ? o->tls_key
					       : o->tls_ca;

		if (!*arg || strlen(arg) >= sizeof(o->tls_cert))
			return options_fail(err, errlen, "--%s: the path must be 1..255 bytes",
					    c == OPT_TLS_CERT  ? "tls-cert"
					    : c == OPT_TLS_KEY ? "tls-key"
							       : "tls-ca");
		snprintf(dst, sizeof(o->tls_cert), "%s", arg);
		break;
	}
	case OPT_TLS_PEER:
		if (!*arg || strlen(arg) >= sizeof(o->tls_peer))
			return options_fail(err, errlen,
					    "--tls-peer: the name must be 1..127 bytes");
		snprintf(o->tls_peer, sizeof(o->tls_peer), "%s", arg);
		break;
	case OPT_INSECURE:
		o->insecure = true;
		break;
	case OPT_STATE_DIR:
		if (*arg != '/' || strlen(arg) >= sizeof(o->state_dir))
			return options_fail(
				err, errlen,
				"--state-dir: '%s' is not an absolute path of under 200 bytes",
				arg);
		snprintf(o->state_dir, sizeof(o->state_dir), "%s", arg);
		break;
	case OPT_NET:
		o->gp.net_present = 1;
		return options_parse_net(arg, &o->net, err, errlen);
	case OPT_OUTPUT_INTERVAL:
		if (!strcmp(arg, "off")) {
			o->output_interval_ns = 0;
			break;
		}
		if (parse_duration(arg, &v) < 0 || v < 100 * NS_PER_US || v > 60 * NS_PER_S)
			return options_fail(err, errlen,
					    "--output-interval: '%s' is not off or a duration of "
					    "100us..60s",
					    arg);
		o->output_interval_ns = v;
		break;
	case OPT_NET_HOLD_MAX:
		if (parse_size(arg, &v) < 0 || v < (64ULL << 10) || v > (1ULL << 30))
			return options_fail(err, errlen,
					    "--net-hold-max: '%s' is not a size between 64K and 1G",
					    arg);
		o->net.hold_max = v;
		break;
	case OPT_GUEST_IP:
		return options_parse_guest_ip(arg, &o->gp, err, errlen);
	case OPT_GUEST_GATEWAY:
		return options_parse_guest_gateway(arg, &o->gp, err, errlen);
	case OPT_KV_MAX_BYTES:
		if (parse_size(arg, &v) < 0 || v < (64ULL << 10))
			return options_fail(err, errlen,
					    "--kv-max-bytes: '%s' is not a size of at least 64K",
					    arg);
		o->gp.kv_max_bytes = v;
		break;
	case OPT_DEBUG_NO_DEVICE_DIRTY:
		o->no_device_dirty = true;
		break;
	case OPT_CONFIG:
		break; /* read before the command line (ftd_options_parse) */
	case OPT_CHECK_CONFIG:
		o->check_config = true;
		break;
	case OPT_HELP:
		o->help = true;
		break;
	case OPT_VERSION:
		o->version = true;
		break;
	}
	return r;
}

/*
 * --cluster-wait against corosync's own timeouts: after the survivor saw the
 * primary's node leave, that node can stay quorate (its guest running) for
 * the token timeout plus the qdevice's sync_timeout. Promoting sooner could
 * run the guest twice.
 */
static int options_cluster_wait(const struct ftd_options *o, char *err, size_t errlen)
{
	struct corosync_timeouts t;
	char why[256] = "";
	int r = corosync_conf_read(o->corosync_conf, &t, why, sizeof(why));
	uint64_t min_ms;

	if (r == -EINVAL)
		return options_fail(err, errlen, "--cluster: %s", why);
	if (r < 0)
		return options_fail(err, errlen,
				    "--cluster: cannot read corosync's configuration %s (to check "
				    "--cluster-wait against its timeouts): %s (give "
				    "--corosync-conf PATH)",
				    o->corosync_conf, strerror(-r));
	min_ms = corosync_isolation_ms(&t);
	if (o->cluster_wait_ns >= min_ms * NS_PER_MS)
		return 0;
	if (t.device)
		return options_fail(
			err, errlen,
			"--cluster-wait %.3gs is shorter than corosync's token timeout (%llu ms) "
			"plus "
			"the qdevice's %s (%llu ms) in %s: the node that left may still be "
			"quorate, "
			"its guest running, when this one promotes (make it at least %.3gs)",
			(double)o->cluster_wait_ns / NS_PER_S, (unsigned long long)t.token_ms,
			t.device_sync_ms >= t.device_timeout_ms ? "sync_timeout" : "timeout",
			(unsigned long long)(min_ms - t.token_ms), o->corosync_conf,
			(double)min_ms / 1000);
	return options_fail(
		err, errlen,
		"--cluster-wait %.3gs is shorter than corosync's token timeout (%llu ms) "
		"in %s: the node that left may still be quorate, its guest running, "
		"when this one promotes (make it at least %.3gs)",
		(double)o->cluster_wait_ns / NS_PER_S, (unsigned long long)t.token_ms,
		o->corosync_conf, (double)min_ms / 1000);
}

/* NAME of /dir/NAME.conf (or of /dir/NAME): the instance's name; -ENAMETOOLONG. */
static int config_name(const char *path, char *name, size_t len)
{
	const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
	size_t n = strlen(base);

	if (n > 5 && !strcmp(base + n - 5, ".conf"))
		n -= 5;
	if (n >= len)
		return -ENAMETOOLONG;
	snprintf(name, len, "%.*s", (int)n, base);
	return 0;
}

/* Whether name is this host's name, or its first label (host-a of host-a.example.org). */
static bool is_this_host(const char *name, const char *host)
{
	size_t n = strcspn(host, ".");

	return !strcmp(name, host) || (strlen(name) == n && !strncmp(name, host, n));
}

/*
 * The [node NAME] sections: both or none, distinct; this node is --node, or
 * the one named as this host. Role auto listens on this node's address and
 * protects towards the other's; explicit roles take them as defaults of
 * --listen and --peer.
 */
static int options_nodes(struct ftd_options *o, char *err, size_t errlen)
{
	const struct ftd_node *self = NULL, *other = NULL;
	char host[256] = "";

	if (!o->nr_nodes) {
		if (o->role == FTD_ROLE_AUTO)
			return options_fail(err, errlen,
					    "role auto needs the two nodes: a [node NAME] section "
					    "with an address for each");
		if (o->node[0])
			return options_fail(err, errlen,
					    "--node %s: the configuration names no [node] sections",
					    o->node);
		return 0;
	}
	if (o->nr_nodes != FTD_NODES)
		return options_fail(err, errlen,
				    "[node %s] is the only node: a guest is protected by two "
				    "([node NAME] with an address for each)",
				    o->nodes[0].name);
	for (unsigned int i = 0; i < FTD_NODES; i++)
		if (!o->nodes[i].address[0])
			return options_fail(err, errlen, "[node %s] has no address (HOST:PORT)",
					    o->nodes[i].name);
	if (!o->node[0] && gethostname(host, sizeof(host) - 1) < 0)
		return options_fail(err, errlen, "cannot read the host name: give --node NAME");
	for (unsigned int i = 0; i < FTD_NODES; i++) {
		bool me = o->node[0] ? !strcmp(o->nodes[i].name, o->node)
				     : is_this_host(o->nodes[i].name, host);

		if (me && self)
			return options_fail(err, errlen,
					    "this host '%s' matches both [node %s] and [node %s]: "
					    "give --node NAME",
					    host, o->nodes[0].name, o->nodes[1].name);
		if (me)
			self = &o->nodes[i];
		else
			other = &o->nodes[i];
	}
	if (!self && o->node[0])
		return options_fail(err, errlen, "--node %s is none of the nodes (%s, %s)", o->node,
				    o->nodes[0].name, o->nodes[1].name);
	if (!self)
		return options_fail(
			err, errlen,
			"this host '%s' is none of the nodes (%s, %s): give --node NAME", host,
			o->nodes[0].name, o->nodes[1].name);
	if (options_addr_same(self->address, other->address))
		return options_fail(err, errlen, "[node %s] and [node %s] have the same address %s",
				    self->name, other->name, self->address);
	snprintf(o->node, sizeof(o->node), "%s", self->name);
	if (o->role == FTD_ROLE_AUTO || o->role == FTD_ROLE_SECONDARY) {
		if (!o->listen[0])
			snprintf(o->listen, sizeof(o->listen), "%s", self->address);
	}
	if (o->role == FTD_ROLE_AUTO || o->role == FTD_ROLE_PRIMARY) {
		if (!o->peer[0])
			snprintf(o->peer, sizeof(o->peer), "%s", other->address);
	}
	if (o->role == FTD_ROLE_AUTO)
		snprintf(o->auto_peer, sizeof(o->auto_peer), "%s", o->peer);
	return 0;
}

int ftd_options_parse(int argc, char **argv, struct ftd_options *o, char *err, size_t errlen)
{
	int c, r, first = 1;

	options_defaults(o);
	/*
	 * The file first, so that the command line wins. getopt_long finds
	 * --config as the parse below reads it: --config=FILE, an abbreviation
	 * (--conf FILE), never the value of another option. Its errors wait for
	 * that parse.
	 */
	if (argc > 1 && argv[1][0] != '-')
		first = 2;
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc - first + 1, argv + first - 1, "+:h", options_long, NULL)) !=
	       -1) {
		if (c != OPT_CONFIG)
			continue;
		if (strlen(optarg) >= sizeof(o->config))
			return options_fail(err, errlen, "--config: a path of over %zu bytes",
					    sizeof(o->config) - 1);
		snprintf(o->config, sizeof(o->config), "%s", optarg);
		r = options_load_config(optarg, o, err, errlen);
		if (r < 0)
			return r;
	}
	if (o->config[0] && config_name(o->config, o->name, sizeof(o->name)) < 0)
		return options_fail(err, errlen,
				    "--config: an instance name (the file's base name without "
				    ".conf) of over %zu bytes: %s",
				    sizeof(o->name) - 1, o->config);
	if (argc > 1 && argv[1][0] != '-') {
		/* The subcommand, if given, wins over the file's role. */
		if (options_parse_role(argv[1], &o->role) < 0)
			return options_fail(
				err, errlen,
				"unknown command '%s' (expected run, primary, secondary or auto)",
				argv[1]);
		first = 2;
	}
	/* getopt_long parses argv[0 ..]: hand it a view that starts before the options. */
	optind = 0; /* a full getopt reset: options may be parsed more than once */
	opterr = 0;
	while ((c = getopt_long(argc - first + 1, argv + first - 1, "+:h", options_long, NULL)) !=
	       -1) {
		const char *bad = argv[first - 1 + optind - 1];

		if (c == 'h')
			c = OPT_HELP;
		if (c == '?')
			return options_fail(err, errlen, "unknown option '%s' (see ftd --help)",
					    bad);
		if (c == ':')
			return options_fail(err, errlen, "option %s needs a value", bad);
		r = options_apply(o, c, optarg, err, errlen);
		if (r < 0)
			return r;
	}
	if (optind < argc - first + 1)
		return options_fail(err, errlen, "unexpected argument '%s'",
				    argv[first - 1 + optind]);
	if (o->help || o->version)
		return 0;
	if (o->role == FTD_ROLE_NONE && o->nr_nodes)
		o->role = FTD_ROLE_AUTO; /* the default of a file that names both nodes */
	if (o->role == FTD_ROLE_NONE)
		return options_fail(err, errlen, "no command given (try ftd run --help)");
	r = options_nodes(o, err, errlen);
	if (r < 0)
		return r;
	if (o->kern.kernel[0] && o->guest_set)
		return options_fail(err, errlen,
				    "--guest and --kernel both name the guest: give one of them");
	if (!o->kern.kernel[0] && (o->kern.initrd[0] || o->kern.cmdline_set || o->kern.pvh))
		return options_fail(err, errlen, "--%s needs --kernel",
				    o->kern.initrd[0]	  ? "initrd"
				    : o->kern.cmdline_set ? "cmdline"
							  : "boot-protocol");
	if ((o->gp.net_ip || o->gp.net_gateway) && !o->net.enabled)
		return options_fail(err, errlen, "--%s needs --net (the guest has no NIC without)",
				    o->gp.net_ip ? "guest-ip" : "guest-gateway");
	if (o->gp.net_gateway && o->gp.net_ip &&
	    (o->gp.net_gateway & o->gp.net_mask) != (o->gp.net_ip & o->gp.net_mask))
		return options_fail(err, errlen,
				    "--guest-gateway is not in the subnet of --guest-ip (the "
				    "guest could not reach it)");
	if (o->role == FTD_ROLE_PRIMARY && !o->peer[0])
		return options_fail(err, errlen,
				    "ftd primary needs --peer HOST:PORT (the secondary)");
	if (o->output_interval_ns && !o->interval_auto && o->output_interval_ns >= o->interval_ns)
		return options_fail(
			err, errlen,
			"--output-interval %.3gms is not shorter than --interval %.3gms "
			"(it would never take a checkpoint sooner)",
			(double)o->output_interval_ns / NS_PER_MS,
			(double)o->interval_ns / NS_PER_MS);
	if (o->role == FTD_ROLE_SECONDARY && !o->listen[0])
		return options_fail(err, errlen, "ftd secondary needs --listen HOST:PORT");
	if (o->role != FTD_ROLE_PRIMARY && o->role != FTD_ROLE_AUTO && o->peer[0])
		return options_fail(err, errlen, "--peer is an option of ftd primary");
	if (o->role != FTD_ROLE_SECONDARY && o->role != FTD_ROLE_AUTO && o->listen[0])
		return options_fail(err, errlen, "--listen is an option of ftd secondary");
	if ((o->tls_cert[0] || o->tls_key[0] || o->tls_ca[0]) &&
	    !(o->tls_cert[0] && o->tls_key[0] && o->tls_ca[0]))
		return options_fail(err, errlen,
				    "TLS needs all of --tls-cert, --tls-key and --tls-ca");
	if (o->tls_peer[0] && !o->tls_cert[0])
		return options_fail(err, errlen,
				    "--tls-peer needs --tls-cert, --tls-key and --tls-ca");
	if (o->role == FTD_ROLE_RUN &&
	    (o->cluster[0] || o->fence_command[0] || o->metrics_listen[0]))
		return options_fail(err, errlen, "--%s is an option of ftd primary and secondary",
				    o->cluster[0]	  ? "cluster"
				    : o->fence_command[0] ? "fence-command"
							  : "metrics-listen");
	/*
	 * The primary must have dropped a silent secondary (--timeout) before
	 * that secondary may promote (--cluster-wait after the node left): else a
	 * quorum flap can resume a guest that runs elsewhere by then.
	 */
	if (o->cluster[0] && o->timeout_ns > o->cluster_wait_ns)
		return options_fail(
			err, errlen,
			"--timeout %.3gs is longer than --cluster-wait %.3gs: with --cluster the "
			"primary must drop a silent peer before that peer may promote "
			"(make --timeout at most --cluster-wait)",
			(double)o->timeout_ns / NS_PER_S, (double)o->cluster_wait_ns / NS_PER_S);
	/* The instance's name, as systemd's ftd@NAME runs it; else the role's. */
	if (o->cluster[0]) {
		r = options_cluster_wait(o, err, errlen);
		if (r < 0)
			return r;
	}
	if (!o->control[0] && o->role != FTD_ROLE_RUN)
		snprintf(o->control, sizeof(o->control), "/run/ftd/%s.sock",
			 o->name[0]		       ? o->name
			 : o->role == FTD_ROLE_PRIMARY ? "primary"
						       : "secondary");
	if (!o->state_dir[0] && o->role != FTD_ROLE_RUN) {
		/* /var/lib/ftd/NAME for control socket /run/ftd/NAME.sock. */
		const char *base = strrchr(o->control, '/') + 1;
		size_t n = strlen(base);

		if (n > 5 && !strcmp(base + n - 5, ".sock"))
			n -= 5;
		snprintf(o->state_dir, sizeof(o->state_dir), "/var/lib/ftd/%.*s", (int)n, base);
	}
	return 0;
}
