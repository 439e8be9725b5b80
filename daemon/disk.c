// SPDX-License-Identifier: MIT
/* The guest's disk (--disk): the device, its status and metrics (disk.h). */
#include <errno.h>
#include <string.h>

#include "daemon/disk.h"
#include "guest/guest_abi.h"
#include "lib/diskimg.h"
#include "lib/log.h"
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

void ftd_disk_status(const struct virtio_blk *d, const struct primary_stats *st,
		     struct json_object *r)
{
	struct json_object *j = json_object_new_object();
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
	if (st) {
		add_u64(j, "sync_blocks", st->disk_sync_blocks);
		add_u64(j, "sync_bytes", st->disk_sync_bytes);
		add_u64(j, "sync_ms", st->disk_sync_ms);
	}
	json_object_object_add(r, "disk", j);
}

void ftd_disk_metrics(const struct virtio_blk *d, FILE *f)
{
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
}
