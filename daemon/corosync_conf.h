/* SPDX-License-Identifier: MIT */
/*
 * The corosync timeouts that bound --cluster-wait (docs/failover.md): read
 * from corosync.conf(5), whose nested `name { key: value }` sections are
 * simple enough to read here without corosync's own parser.
 */
#ifndef RINGFT_DAEMON_COROSYNC_CONF_H
#define RINGFT_DAEMON_COROSYNC_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define COROSYNC_CONF_DEFAULT "/etc/corosync/corosync.conf"

struct corosync_timeouts {
	uint64_t token_ms;	    /* totem.token (corosync's default 3000) */
	bool device;		    /* quorum.device: a qdevice (corosync-qnetd) breaks ties */
	uint64_t device_timeout_ms; /* quorum.device.timeout (default 10000) */
	uint64_t device_sync_ms;    /* quorum.device.sync_timeout (default 30000) */
};

/*
 * Reads path's timeouts into *t (defaults for what it leaves out). Returns 0,
 * -errno if it cannot be read, or -EINVAL for a malformed line (its number
 * and the reason in err).
 */
int corosync_conf_read(const char *path, struct corosync_timeouts *t, char *err, size_t errlen);

/*
 * How long after the survivor saw the other node leave that node may still
 * be quorate (and its guest running): the token timeout, plus the qdevice's
 * sync_timeout (or timeout, if longer) when there is one.
 */
uint64_t corosync_isolation_ms(const struct corosync_timeouts *t);

#endif
