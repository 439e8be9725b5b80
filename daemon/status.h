/* SPDX-License-Identifier: MIT */
/*
 * What ftd reports about itself, for both roles: the statistics line on
 * stderr once a second, `ftctl status` (the schema is in ctl/README.md),
 * `ftctl metrics` (Prometheus text) and the summary logged at exit.
 */
#ifndef RINGFT_DAEMON_STATUS_H
#define RINGFT_DAEMON_STATUS_H

#include <stddef.h>
#include <stdint.h>

#include <json-c/json.h>

#include "daemon/disk.h"

struct ftd_primary;
struct histogram;
struct outbuf;
struct primary;
struct samples;
struct secondary;
struct ftd_secondary;

/*
 * The statistics line, for every role: "ftd: stats" and then fields in order,
 * each " key=value", a group of them under a name as " name k1=v1 k2=v2"
 * ("pause_us p50=.. p99=.. max=.."). bench/checkpoint and the tests parse it:
 * keys and units are part of the interface. Written with one write at the end.
 */
struct stats_line {
	char buf[1024]; /* 21 fields of 20 digits fit */
	size_t len;
};

void stats_begin(struct stats_line *l);
void stats_str(struct stats_line *l, const char *key, const char *v);
void stats_u64(struct stats_line *l, const char *key, uint64_t v);
/* key=N/s, N over secs (0 without a window). */
void stats_rate(struct stats_line *l, const char *key, uint64_t n, double secs);
void stats_mbps(struct stats_line *l, const char *key, double mbps); /* key=%.1f */
void stats_group(struct stats_line *l, const char *name);	     /* " name", keys follow */
/* A group of percentiles of s, those of STATS_P50 | STATS_P99 | STATS_MAX in that order. */
#define STATS_P50 1u
#define STATS_P99 2u
#define STATS_MAX 4u
void stats_samples(struct stats_line *l, const char *name, struct samples *s, unsigned int which);
/* The same of a histogram (lib/stats.h: each within about 3%). */
void stats_hist(struct stats_line *l, const char *name, const struct histogram *h,
		unsigned int which);
void stats_end(struct stats_line *l); /* the line, on stderr */

/* The statistics line's window: rates are over the time since the last line. */
struct pwindow {
	uint64_t start_ns;
	uint64_t checkpoints;
	uint64_t bytes;
	struct ftd_disk_window disk;
};

struct swindow {
	uint64_t start_ns;
	uint64_t bytes;
	uint64_t epochs;
	uint64_t apply_ns;
};

/* One "ftd: stats ..." line; starts the next window (and resets the samples). */
/* frames: the guest's held frames (--net), or NULL; disk: the guest's disk, or NULL. */
void ftd_primary_stats_line(struct primary *p, struct outbuf *frames, struct virtio_blk *disk,
			    struct pwindow *w, uint64_t now);
void ftd_secondary_stats_line(struct secondary *s, struct swindow *w, uint64_t now);

/* `ftctl status`, into r. */
void ftd_primary_status(struct ftd_primary *a, struct json_object *r);
void ftd_secondary_status(struct ftd_secondary *sb, uint64_t now, struct json_object *r);
/*
 * `ftctl metrics` and --metrics-listen: Prometheus text exposition in the
 * reply's "text" (ftd_build_info, ftd_role and ftd_state first, then the
 * role's own), the guest's name in "guest": daemon/metrics_http.c gives every
 * sample it serves that label.
 */
void ftd_primary_metrics(struct ftd_primary *a, struct json_object *r);
void ftd_secondary_metrics(struct ftd_secondary *sb, uint64_t now, struct json_object *r);

/* The "summary:" lines at exit. */
void ftd_primary_summary(struct ftd_primary *a);
void ftd_secondary_summary(const struct secondary *s);

#endif
