/* SPDX-License-Identifier: MIT */
#ifndef RINGFT_DAEMON_RUN_H
#define RINGFT_DAEMON_RUN_H

#include "daemon/options.h"

/* `ftd run`: one VM, the local checkpoint cycle, no peer. Returns the exit status. */
int ftd_run(const struct ftd_options *o);

#endif
