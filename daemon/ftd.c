// SPDX-License-Identifier: MIT
/* ftd: the ringft daemon. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "daemon/disk.h"
#include "daemon/options.h"
#include "daemon/reload.h"
#include "daemon/replication.h"
#include "daemon/run.h"
#include "lib/log.h"

#define FTD_EXIT_USAGE 2

int main(int argc, char **argv)
{
	struct ftd_options *o = calloc(1, sizeof(*o));
	char err[1024] = ""; /* a file:line, a 255-byte value and the reason */
	int r;

	if (!o)
		return 1;
	if (ftd_options_parse(argc, argv, o, err, sizeof(err)) < 0) {
		log_error("%s", err);
		free(o);
		return FTD_EXIT_USAGE;
	}
	ftd_reload_init(o, argc, argv);
	if (o->help) {
		ftd_usage(stdout);
		free(o);
		return 0;
	}
	if (o->check_config) {
		/* Everything was parsed and checked, file and command line together. */
		if (o->disk[0] && ftd_disk_check(o->disk) < 0) {
			free(o);
			return FTD_EXIT_USAGE;
		}
		printf("configuration ok\n");
		free(o);
		return 0;
	}
	if (o->version) {
		printf("ftd (ringft) " RINGFT_VERSION "\n");
		free(o);
		return 0;
	}
	switch (o->role) {
	case FTD_ROLE_RUN:
		r = ftd_run(o);
		break;
	case FTD_ROLE_PRIMARY:
		r = ftd_primary(o);
		break;
	default:
		r = ftd_secondary(o);
		break;
	}
	if (o->role == FTD_ROLE_AUTO && r == 0 && ftd_primary_handed_over()) {
		/*
		 * Role auto after a switchover: the guest runs on the other node, which
		 * protects it towards this one. This node starts again, as it started
		 * (the same command line and file), and so becomes that secondary.
		 */
		log_info("auto: the guest runs on the other node now: starting again to become "
			 "its secondary");
		execv("/proc/self/exe", argv);
		log_error("Cannot start again (%s): start ftd again to protect the guest",
			  strerror(errno));
		r = 1;
	}
	free(o);
	return r;
}
