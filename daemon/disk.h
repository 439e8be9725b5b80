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
struct virtio_blk;
struct vm;

/* --check-config: the image opens and has a usable size. Logs; 0 or -errno. */
int ftd_disk_check(const char *path);
/* Adds the device when --disk is given (*ret NULL otherwise). Logs; 0 or -errno. */
int ftd_disk_create(struct vm *vm, const struct ftd_options *o, struct virtio_blk **ret);
/* "disk": {path, size, requests, bytes, errors, in flight, the last disk sync}. */
void ftd_disk_status(const struct virtio_blk *d, const struct primary_stats *st,
		     struct json_object *r);
void ftd_disk_metrics(const struct virtio_blk *d, FILE *f);

#endif
