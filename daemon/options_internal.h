/* SPDX-License-Identifier: MIT */
/*
 * Private to ftd's option parsing: the option table, which the command line
 * (options.c) and the configuration file (options_config.c) share, and the
 * calls between them.
 */
#ifndef RINGFT_DAEMON_OPTIONS_INTERNAL_H
#define RINGFT_DAEMON_OPTIONS_INTERNAL_H

#include <getopt.h>
#include <stddef.h>

#include "daemon/options.h"

enum {
	OPT_GUEST = 256,
	OPT_MEM,
	OPT_VCPUS,
	OPT_TRACKING,
	OPT_RING_ENTRIES,
	OPT_INTERVAL,
	OPT_DURATION,
	OPT_CONSOLE,
	OPT_QUIET,
	OPT_REALTIME,
	OPT_NO_REALTIME,
	OPT_SEED,
	OPT_BANK_PAGES,
	OPT_BANK_ACCOUNTS,
	OPT_BANK_CHECK_MS,
	OPT_DIRTY_PAGES_PER_MS,
	OPT_DIRTY_WSS,
	OPT_DIRTY_ORDER,
	OPT_DIRTY_REPORT_MS,
	OPT_PEER,
	OPT_LISTEN,
	OPT_VERIFY,
	OPT_PREALLOC,
	OPT_TIMEOUT,
	OPT_SEND_ZC,
	OPT_LIVE_HARVEST,
	OPT_AUTO_OVERHEAD,
	OPT_AUTO_MAX_HOLD,
	OPT_CONTROL,
	OPT_FENCE_COMMAND,
	OPT_FENCE_TIMEOUT,
	OPT_NOTIFY_COMMAND,
	OPT_CLUSTER,
	OPT_CLUSTER_WAIT,
	OPT_TLS_CERT,
	OPT_TLS_KEY,
	OPT_TLS_CA,
	OPT_TLS_PEER,
	OPT_INSECURE,
	OPT_STATE_DIR,
	OPT_NET,
	OPT_OUTPUT_INTERVAL,
	OPT_NET_HOLD_MAX,
	OPT_GUEST_IP,
	OPT_GUEST_GATEWAY,
	OPT_KV_MAX_BYTES,
	OPT_DEBUG_NO_DEVICE_DIRTY,
	OPT_KERNEL,
	OPT_INITRD,
	OPT_CMDLINE,
	OPT_BOOT_PROTOCOL,
	OPT_DISK,
	OPT_METRICS_LISTEN,
	OPT_NODE,
	OPT_COROSYNC_CONF,
	OPT_CONFIG,
	OPT_CHECK_CONFIG,
	OPT_HELP,
	OPT_VERSION,
};

/* The long options; the configuration file's keys are their names. */
extern const struct option options_long[];

/* Writes the message into err; returns -EINVAL. */
int options_fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* One option (OPT_*) and its value (NULL for a flag): 0, or -EINVAL with err set. */
int options_apply(struct ftd_options *o, int c, const char *arg, char *err, size_t errlen);
/* options_net.c: --net tap=NAME[,mac=MAC][,vnet-hdr=on|off]; 0 or -EINVAL with err set. */
int options_parse_net(const char *arg, struct ftd_net_options *n, char *err, size_t errlen);
/* --guest-ip ADDR/PREFIX and --guest-gateway ADDR into guest_params. */
int options_parse_guest_ip(const char *arg, struct guest_params *gp, char *err, size_t errlen);
int options_parse_guest_gateway(const char *arg, struct guest_params *gp, char *err, size_t errlen);
/* run, primary or secondary: 0, else -EINVAL. */
int options_parse_role(const char *word, enum ftd_role *ret);
/* A replication or metrics address ftd can use: HOST:PORT (lib/netaddr.h). */
bool options_addr_ok(const char *s);
/* Both name the same socket address ("[::1]:1" and "[0::1]:1" do); false if either is bad. */
bool options_addr_same(const char *a, const char *b);
/* --config FILE: applies its keys to *o; 0, or -EINVAL naming the file and line. */
int options_load_config(const char *path, struct ftd_options *o, char *err, size_t errlen);

#endif
