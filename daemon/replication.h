/* SPDX-License-Identifier: MIT */
#ifndef RINGFT_DAEMON_REPLICATION_H
#define RINGFT_DAEMON_REPLICATION_H

#include "daemon/options.h"

/* `ftd primary`: run the guest and protect it on --peer. Returns the exit status. */
int ftd_primary(const struct ftd_options *o);
/* `ftd secondary`: keep a replica for the primary that connects to --listen. */
int ftd_secondary(const struct ftd_options *o);

#endif
