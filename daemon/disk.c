// SPDX-License-Identifier: MIT
/* The guest's disk (--disk): the device, its status and metrics (disk.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/disk.h"
#include "daemon/status.h"
#include "guest/guest_abi.h"
#include "lib/diskimg.h"
#include "lib/log.h"
#include "lib/stats.h"
#include "primary/replicate.h"
#include "vmm/virtio_blk.h"

static void disk_error(const char *path, int r)
{
	log_error("Cannot use disk image %s: %s", path,
		  r == -EINVAL ? "not a regular file or block device whose size is a non-zero "
				 "multiple of 512 bytes"
			       : strerror(-r));
}

int ftd_disk_check(const char *path)
{
	struct diskimg img;
	int r = diskimg_open(&img, path);

	if (r < 0)
		disk_error(path, r);
	else
		diskimg_close(&img);
	return r;
}

int ftd_disk_create(struct vm *vm, const struct ftd_options *o, struct virtio_blk **ret)
{
	struct virtio_blk_config cfg = { .path = o->disk };
	int r;

	*ret = NULL;
	if (!o->disk[0])
		return 0;
	r = virtio_blk_create(vm, GUEST_VIRTIO_SLOT_BLK, &cfg, ret);
	if (r < 0)
		disk_error(o->disk, r);
	return r;
}

static void add_u64(struct json_object *o, const char *k, uint64_t v)
{
	json_object_object_add(o, k, json_object_new_uint64(v));
}

static const char *const lat_names[VIRTIO_BLK_LAT_TYPES] = { "read", "write", "flush" };

/* The whole run's latency histograms, or NULL (out of memory: status goes without). */
static struct histogram *disk_latency(struct virtio_blk *d)
{
	struct histogram *lat = calloc(VIRTIO_BLK_LAT_TYPES, sizeof(*lat));

	if (lat)
		virtio_blk_get_latency(d, lat);
	return lat;
}

void ftd_disk_status(struct virtio_blk *d, const struct primary_stats *st, struct json_object *r)
{
	struct json_object *j = json_object_new_object();
	struct histogram *lat = disk_latency(d);
	struct virtio_blk_stats s;

	virtio_blk_get_stats(d, &s);
	json_object_object_add(j, "path", json_object_new_string(virtio_blk_path(d)));
	add_u64(j, "size", virtio_blk_size(d));
	add_u64(j, "reads", s.reads);
	add_u64(j, "writes", s.writes);
	add_u64(j, "flushes", s.flushes);
	add_u64(j, "read_bytes", s.read_bytes);
	add_u64(j, "write_bytes", s.write_bytes);
	add_u64(j, "errors", s.errors);
	add_u64(j, "inflight", s.inflight);
	add_u64(j, "log_stalls", s.log_stalls);
	if (lat) {
		struct json_object *l = json_object_new_object();

		for (unsigned int t = 0; t < VIRTIO_BLK_LAT_TYPES; t++) {
			struct json_object *h = json_object_new_object();

			add_u64(h, "count", lat[t].n);
			add_u64(h, "p50", histogram_percentile(&lat[t], 50));
			add_u64(h, "p99", histogram_percentile(&lat[t], 99));
			add_u64(h, "max", lat[t].max);
			json_object_object_add(l, lat_names[t], h);
		}
		json_object_object_add(j, "latency_us", l);
		free(lat);
	}
	if (st) {
		add_u64(j, "sync_blocks", st->disk_sync_blocks);
		add_u64(j, "sync_bytes", st->disk_sync_bytes);
		add_u64(j, "sync_ms", st->disk_sync_ms);
	}
	json_object_object_add(r, "disk", j);
}

void ftd_disk_metrics(struct virtio_blk *d, FILE *f)
{
	struct histogram *lat;
	struct virtio_blk_stats s;

	if (!d)
		return;
	virtio_blk_get_stats(d, &s);
	fprintf(f,
		"# HELP ftd_disk_requests_total Guest disk requests completed, by type.\n"
		"# TYPE ftd_disk_requests_total counter\n"
		"ftd_disk_requests_total{type=\"read\"} %llu\n"
		"ftd_disk_requests_total{type=\"write\"} %llu\n"
		"ftd_disk_requests_total{type=\"flush\"} %llu\n"
		"# HELP ftd_disk_bytes_total Guest disk bytes, by direction.\n"
		"# TYPE ftd_disk_bytes_total counter\n"
		"ftd_disk_bytes_total{direction=\"read\"} %llu\n"
		"ftd_disk_bytes_total{direction=\"write\"} %llu\n"
		"# HELP ftd_disk_errors_total Guest disk requests answered with an error.\n"
		"# TYPE ftd_disk_errors_total counter\nftd_disk_errors_total %llu\n"
		"# HELP ftd_disk_log_stalls_total Times the guest's disk queue waited for a "
		"checkpoint to take the write log.\n"
		"# TYPE ftd_disk_log_stalls_total counter\nftd_disk_log_stalls_total %llu\n",
		(unsigned long long)s.reads, (unsigned long long)s.writes,
		(unsigned long long)s.flushes, (unsigned long long)s.read_bytes,
		(unsigned long long)s.write_bytes, (unsigned long long)s.errors,
		(unsigned long long)s.log_stalls);
	lat = disk_latency(d);
	if (!lat)
		return;
	fprintf(f,
		"# HELP ftd_disk_request_duration_seconds Guest disk requests completed OK, from "
		"the queue to the used ring, by type.\n"
		"# TYPE ftd_disk_request_duration_seconds histogram\n");
	for (unsigned int t = 0; t < VIRTIO_BLK_LAT_TYPES; t++) {
		char label[32];

		snprintf(label, sizeof(label), "type=\"%s\"", lat_names[t]);
		histogram_prometheus(f, "ftd_disk_request_duration_seconds", label, &lat[t]);
	}
	free(lat);
}

void ftd_disk_stats(struct virtio_blk *d, struct ftd_disk_window *w, double secs,
		    struct stats_line *l)
{
	struct histogram *lat;
	struct virtio_blk_stats s;

	if (!d)
		return;
	virtio_blk_get_stats(d, &s);
	stats_mbps(l, "disk_MBps",
		   secs > 0 ? (double)(s.write_bytes - w->write_bytes) / secs / 1e6 : 0.0);
	stats_rate(l, "disk_flushes", s.flushes - w->flushes, secs);
	w->write_bytes = s.write_bytes;
	w->flushes = s.flushes;
	lat = calloc(VIRTIO_BLK_LAT_TYPES, sizeof(*lat));
	if (!lat)
		return;
	virtio_blk_take_latency_window(d, lat);
	stats_hist(l, "disk_write_us", &lat[VIRTIO_BLK_LAT_WRITE], STATS_P50 | STATS_P99);
	stats_hist(l, "disk_flush_us", &lat[VIRTIO_BLK_LAT_FLUSH],
		   STATS_P50 | STATS_P99 | STATS_MAX);
	free(lat);
}
