/* SPDX-License-Identifier: MIT */
/*
 * What ftd reports about itself, for both roles: the statistics line on
 * stderr once a second, `ftctl status` (the schema is in ctl/README.md),
 * `ftctl metrics` (Prometheus text) and the summary logged at exit.
 */
#ifndef RINGFT_DAEMON_STATUS_H
#define RINGFT_DAEMON_STATUS_H

#include <stdint.h>

#include <json-c/json.h>

struct active;
struct primary;
struct secondary;
struct standby;

/* The statistics line's window: rates are over the time since the last line. */
struct pwindow {
	uint64_t start_ns;
	uint64_t checkpoints;
	uint64_t bytes;
};

struct swindow {
	uint64_t start_ns;
	uint64_t bytes;
	uint64_t epochs;
	uint64_t apply_ns;
};

/* One "ftd: stats ..." line; starts the next window (and resets the samples). */
void active_stats_line(struct primary *p, struct pwindow *w, uint64_t now);
void standby_stats_line(struct secondary *s, struct swindow *w, uint64_t now);

/* `ftctl status`, into r. */
void active_status(struct active *a, struct json_object *r);
void standby_status(struct standby *sb, uint64_t now, struct json_object *r);
/* `ftctl metrics`: Prometheus text exposition, in the reply's "text". */
void active_metrics(struct active *a, struct json_object *r);

/* The "summary:" lines at exit. */
void active_summary(struct active *a);
void standby_summary(const struct secondary *s);

#endif
