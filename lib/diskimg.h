/* SPDX-License-Identifier: MIT */
/*
 * A disk image (a raw file or a block device) as both ends see it: its size,
 * the per-block checksums the initial sync and resync compare, a hash of the
 * whole image for --verify, and applying an epoch's disk writes (disklog.h).
 *
 * Block checksums: the image is cut into DISK_BLOCK blocks (the last may be
 * shorter); a block that is a hole (SEEK_DATA/SEEK_HOLE, not read at all) or
 * reads all zero sums to 0, any other block to its XXH3-64 (1 if that is 0).
 * Two images hold the same block exactly when the sums match (up to XXH3
 * collisions), so a sync sends only the blocks whose sums differ, and a zero
 * record where the sender's block is zero.
 */
#ifndef RINGFT_LIB_DISKIMG_H
#define RINGFT_LIB_DISKIMG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/disklog.h"

#define DISK_BLOCK (64u << 10)

struct diskimg {
	int fd;
	uint64_t size; /* bytes, a multiple of DISK_SECTOR */
	bool blockdev;
	char path[256];
};

static inline uint64_t diskimg_blocks(uint64_t size)
{
	return (size + DISK_BLOCK - 1) / DISK_BLOCK;
}

/*
 * Opens path read-write (O_CLOEXEC) and finds its size (st_size, or
 * BLKGETSIZE64 for a block device). -EINVAL if the size is 0 or not a multiple
 * of DISK_SECTOR; other -errno from open. d->fd is -1 after a failure.
 */
int diskimg_open(struct diskimg *d, const char *path);
void diskimg_close(struct diskimg *d);

/* Reads len bytes at off, all of them (retried): 0 or -errno (-EIO past the end). */
int diskimg_read(struct diskimg *d, void *buf, size_t len, uint64_t off);
/*
 * Whether [off, off + len) lies in a hole (reads as zeros without being read):
 * false where that cannot be known (a block device, no SEEK_DATA).
 */
bool diskimg_is_hole(struct diskimg *d, uint64_t off, uint64_t len);

/* The checksum of one block's bytes: 0 if all zero, else XXH3-64 (never 0). */
uint64_t diskimg_block_sum(const void *data, size_t len);
/*
 * Sums of blocks [first, first + nr) into sums[]: holes without reading.
 * 0 or -errno (-EIO from pread, -ERANGE beyond the image).
 */
int diskimg_sums(struct diskimg *d, uint64_t first, uint64_t nr, uint64_t *sums);
/* XXH3-64 over the whole image, holes read as zeros (--verify). */
int diskimg_hash(struct diskimg *d, uint64_t *ret);

/*
 * Applies a log's records in order. First it reserves every data range
 * (fallocate, where the file system supports it): -ENOSPC there has written
 * nothing. Then it writes each record (zero records punch a hole or write
 * zeros), then fdatasync()s when `durable` (an empty log too). -ERANGE if a record lies beyond
 * the image (nothing written: checked first; a flush record has no place).
 * On an error once any byte of the image may have changed (a write or a hole
 * that reached it, a failed fdatasync) *ret_torn is set: the image holds part
 * of the records and is no checkpoint any more.
 */
int diskimg_apply(struct diskimg *d, const struct disk_log *log, bool durable, bool *ret_torn);

#endif
