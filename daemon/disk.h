/* SPDX-License-Identifier: MIT */
/*
 * The guest's disk as the daemon runs it (--disk, docs/disk.md): the
 * virtio-blk device in GUEST_VIRTIO_SLOT_BLK on the image, and what status and
 * metrics say about it. Replication of its writes is the primary engine's
 * (primary/sync.c, primary/checkpoint.c) and the secondary's (secondary/).
 */
#ifndef RINGFT_DAEMON_DISK_H
#define RINGFT_DAEMON_DISK_H

#include <stdio.h>

#include <json-c/json.h>

#include "daemon/options.h"

struct primary_stats;
struct stats_line;
struct virtio_blk;
struct vm;

/* The statistics line's window of the disk: rates are since the last line. */
struct ftd_disk_window {
	uint64_t write_bytes;
	uint64_t flushes;
};

/* --check-config: the image opens and has a usable size. Logs; 0 or -errno. */
int ftd_disk_check(const char *path);
/* Adds the device when --disk is given (*ret NULL otherwise). Logs; 0 or -errno. */
int ftd_disk_create(struct vm *vm, const struct ftd_options *o, struct virtio_blk **ret);
/*
 * "disk": {path, size, requests, bytes, errors, in flight, latency_us {read,
 * write, flush: count, p50, p99, max over the whole run}, the last disk sync}.
 */
void ftd_disk_status(struct virtio_blk *d, const struct primary_stats *st, struct json_object *r);
/* Counters, and ftd_disk_request_duration_seconds{type} (nothing without a disk). */
void ftd_disk_metrics(struct virtio_blk *d, FILE *f);
/*
 * The disk's fields of the statistics line (nothing without a disk), over the
 * `secs` since the previous line: " disk_MBps=X disk_flushes=N/s disk_write_us
 * p50=.. p99=.. disk_flush_us p50=.. p99=.. max=..", the guest's writes as
 * they completed on this image and the device's latency (vmm/virtio_blk.h).
 */
void ftd_disk_stats(struct virtio_blk *d, struct ftd_disk_window *w, double secs,
		    struct stats_line *l);

#endif
