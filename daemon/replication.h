/* SPDX-License-Identifier: MIT */
#ifndef RINGFT_DAEMON_REPLICATION_H
#define RINGFT_DAEMON_REPLICATION_H

#include <stdbool.h>

#include "daemon/options.h"

/* `ftd primary`: run the guest and protect it on --peer. Returns the exit status. */
int ftd_primary(const struct ftd_options *o);
/*
 * `ftd secondary`: keep a replica for the primary that connects to --listen.
 * Role auto starts here too (it waits as a secondary).
 */
int ftd_secondary(const struct ftd_options *o);
/* Whether the guest this process ran was handed over by a switchover (it runs on the peer now). */
bool ftd_primary_handed_over(void);

#endif
