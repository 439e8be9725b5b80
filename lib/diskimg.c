// SPDX-License-Identifier: MIT
/* A disk image's size, block checksums, hash, and an epoch's writes applied (diskimg.h). */
#include <errno.h>
#include <fcntl.h>
#include <linux/falloc.h>
#include <linux/fs.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>

#include "lib/diskimg.h"

int diskimg_open(struct diskimg *d, const char *path)
{
	struct stat st;
	uint64_t size;
	int fd;

	memset(d, 0, sizeof(*d));
	d->fd = -1;
	snprintf(d->path, sizeof(d->path), "%s", path);
	fd = open(path, O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0)
		goto fail_errno;
	if (S_ISBLK(st.st_mode)) {
		if (ioctl(fd, BLKGETSIZE64, &size) < 0)
			goto fail_errno;
		d->blockdev = true;
	} else if (S_ISREG(st.st_mode)) {
		size = (uint64_t)st.st_size;
	} else {
		close(fd);
		return -EINVAL;
	}
	if (!size || size % DISK_SECTOR) {
		close(fd);
		return -EINVAL;
	}
	d->fd = fd;
	d->size = size;
	return 0;
fail_errno:
	size = (uint64_t)errno;
	close(fd);
	return -(int)size;
}

void diskimg_close(struct diskimg *d)
{
	if (d->fd >= 0)
		close(d->fd);
	d->fd = -1;
}

static bool all_zero(const uint8_t *p, size_t len)
{
	size_t i, n = len / 8;

	for (i = 0; i < n; i++) {
		uint64_t w;

		memcpy(&w, p + 8 * i, 8); /* any alignment: callers pass any buffer */
		if (w)
			return false;
	}
	for (i = n * 8; i < len; i++)
		if (p[i])
			return false;
	return true;
}

uint64_t diskimg_block_sum(const void *data, size_t len)
{
	uint64_t h;

	if (all_zero(data, len))
		return 0;
	h = XXH3_64bits(data, len);
	return h ? h : 1;
}

static int pread_all(int fd, uint8_t *buf, size_t len, uint64_t off)
{
	while (len) {
		ssize_t n = pread(fd, buf, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO; /* the image shrank under us */
		buf += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/* Writes all of buf at off; *wrote (if given) is set once any byte reached the file. */
static int pwrite_all(int fd, const uint8_t *buf, size_t len, uint64_t off, bool *wrote)
{
	while (len) {
		ssize_t n = pwrite(fd, buf, len, (off_t)off);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (n == 0)
			return -EIO;
		if (wrote)
			*wrote = true;
		buf += n;
		len -= (size_t)n;
		off += (uint64_t)n;
	}
	return 0;
}

/*
 * The start of the first data extent at or after `from`: the image's size if
 * only a hole follows, `from` itself where holes cannot be found (a block
 * device, a file system without SEEK_DATA).
 */
static uint64_t next_data(const struct diskimg *d, uint64_t from)
{
	off_t o;

	if (d->blockdev)
		return from;
	o = lseek(d->fd, (off_t)from, SEEK_DATA);
	if (o < 0)
		return errno == ENXIO ? d->size : from;
	return (uint64_t)o;
}

int diskimg_read(struct diskimg *d, void *buf, size_t len, uint64_t off)
{
	return pread_all(d->fd, buf, len, off);
}

bool diskimg_is_hole(struct diskimg *d, uint64_t off, uint64_t len)
{
	return !d->blockdev && next_data(d, off) >= off + len;
}

int diskimg_sums(struct diskimg *d, uint64_t first, uint64_t nr, uint64_t *sums)
{
	uint64_t b, data = 0, hole = 0;
	uint8_t *buf;
	int r = 0;

	if (first + nr < first || first + nr > diskimg_blocks(d->size))
		return -ERANGE;
	buf = malloc(DISK_BLOCK);
	if (!buf)
		return -ENOMEM;
	for (b = 0; b < nr; b++) {
		uint64_t start = (first + b) * DISK_BLOCK;
		uint64_t len = d->size - start < DISK_BLOCK ? d->size - start : DISK_BLOCK;

		/* [data, hole) is the data extent last found; past it, find the next. */
		if (start >= hole) {
			off_t o;

			data = next_data(d, start);
			o = data < d->size && !d->blockdev ? lseek(d->fd, (off_t)data, SEEK_HOLE)
							   : -1;
			hole = o < 0 ? d->size : (uint64_t)o;
		}
		if (data >= start + len) {
			sums[b] = 0;
			continue;
		}
		r = pread_all(d->fd, buf, len, start);
		if (r < 0)
			break;
		sums[b] = diskimg_block_sum(buf, len);
	}
	free(buf);
	return r;
}

int diskimg_hash(struct diskimg *d, uint64_t *ret)
{
	XXH3_state_t *st = XXH3_createState();
	size_t chunk = 1u << 20;
	uint8_t *buf = malloc(chunk);
	uint64_t off;
	int r = 0;

	if (!st || !buf) {
		r = -ENOMEM;
		goto out;
	}
	XXH3_64bits_reset(st);
	for (off = 0; off < d->size; off += chunk) {
		size_t n = d->size - off < chunk ? d->size - off : chunk;

		r = pread_all(d->fd, buf, n, off);
		if (r < 0)
			goto out;
		XXH3_64bits_update(st, buf, n);
	}
	*ret = XXH3_64bits_digest(st);
out:
	free(buf);
	XXH3_freeState(st);
	return r;
}

/* Zeros [off, off + len): a hole where the file system can punch one. *wrote as pwrite_all's. */
static int write_zeros(struct diskimg *d, uint64_t off, uint64_t len, bool *wrote)
{
	static const uint8_t zeros[DISK_BLOCK];
	int r;

	if (!d->blockdev && fallocate(d->fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)off,
				      (off_t)len) == 0) {
		*wrote = true;
		return 0;
	}
	while (len) {
		uint64_t n = len < sizeof(zeros) ? len : sizeof(zeros);

		r = pwrite_all(d->fd, zeros, n, off, wrote);
		if (r < 0)
			return r;
		off += n;
		len -= n;
	}
	return 0;
}

int diskimg_apply(struct diskimg *d, const struct disk_log *log, bool durable, bool *ret_torn)
{
	bool reserve = !d->blockdev, wrote = false;
	size_t i;
	int r;

	*ret_torn = false;
	for (i = 0; i < log->nr; i++) {
		const struct disk_rec *rec = &log->recs[i];

		if (rec->flags & DISK_REC_FLUSH)
			continue; /* a point in the order, at no place of the image */
		if (rec->offset > d->size || rec->len > d->size - rec->offset)
			return -ERANGE;
	}
	/* Space first: running out here has changed no byte of the image. */
	for (i = 0; reserve && i < log->nr; i++) {
		const struct disk_rec *rec = &log->recs[i];

		if (rec->flags || !rec->len)
			continue;
		if (fallocate(d->fd, 0, (off_t)rec->offset, (off_t)rec->len) < 0) {
			if (errno == EOPNOTSUPP) {
				reserve = false;
				break;
			}
			return -errno;
		}
	}
	for (i = 0; i < log->nr; i++) {
		const struct disk_rec *rec = &log->recs[i];

		if (rec->flags & DISK_REC_FLUSH)
			continue;
		if (rec->flags & DISK_REC_ZERO)
			r = write_zeros(d, rec->offset, rec->len, &wrote);
		else
			r = pwrite_all(d->fd, disk_rec_data(log, rec), rec->len, rec->offset,
				       &wrote);
		if (r < 0) {
			/* Without a reservation (a block device, no fallocate) even the first may
			 * tear. */
			*ret_torn = wrote;
			return r;
		}
	}
	if (durable && fdatasync(d->fd) < 0) {
		*ret_torn = true;
		return -errno;
	}
	return 0;
}
