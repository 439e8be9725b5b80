/* SPDX-License-Identifier: MIT */
/*
 * The disk writes of one epoch, in the order they happened: what the virtio-blk
 * device (vmm/virtio_blk.c) records while a secondary is attached, what an
 * epoch carries in its DISK frames (proto/epoch.h), and what the secondary
 * applies to its image (lib/diskimg.h) once the epoch is whole and verified.
 *
 * A record is a byte range of the image (offset and length multiples of
 * DISK_SECTOR) with its data copied into the log's own buffer, a range to be
 * zeroed (DISK_REC_ZERO, no data: the initial sync's all-zero blocks), or a
 * guest flush (DISK_REC_FLUSH, length 0): the epoch that carries a flush is
 * acknowledged only once the secondary's image is durable (fdatasync).
 *
 * Records keep their data as an offset into `data`, so the log can grow. The
 * owner of a log is whoever holds it: the device fills one, a checkpoint swaps
 * it out (disk_log_swap) into the staging slot that ships it, and clears it for
 * reuse once the epoch is acknowledged. Not thread-safe: the holder locks.
 */
#ifndef RINGFT_LIB_DISKLOG_H
#define RINGFT_LIB_DISKLOG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DISK_SECTOR 512u

#define DISK_REC_ZERO  1u /* zero [offset, offset + len): no data */
#define DISK_REC_FLUSH 2u /* a guest flush: len 0, no data */
#define DISK_REC_FLAGS (DISK_REC_ZERO | DISK_REC_FLUSH)

/* Largest record a DISK frame carries; longer writes are split into several. */
#define DISK_REC_MAX (1u << 20)

struct disk_rec {
	uint64_t offset;   /* bytes into the image */
	uint32_t len;	   /* bytes, <= DISK_REC_MAX */
	uint32_t flags;	   /* DISK_REC_* */
	uint64_t data_off; /* into disk_log.data (data records only) */
};

struct disk_log {
	struct disk_rec *recs;
	size_t nr, cap;
	uint8_t *data;
	size_t data_len, data_cap;
	bool flush; /* some record is a DISK_REC_FLUSH */
};

/*
 * Appends a record. A data record (flags 0) copies len bytes from data and is
 * split at DISK_REC_MAX; a zero record is split too; a flush record has len 0.
 * Returns 0, -EINVAL (unaligned, bad flags, a range past 2^64), or -ENOMEM
 * (nothing appended).
 */
int disk_log_append(struct disk_log *log, uint64_t offset, const void *data, uint64_t len,
		    uint32_t flags);
static inline const uint8_t *disk_rec_data(const struct disk_log *log, const struct disk_rec *r)
{
	return log->data + r->data_off;
}
/* Bytes of data the log holds (what a DISK frame carries besides headers). */
static inline size_t disk_log_bytes(const struct disk_log *log)
{
	return log->data_len;
}
/* Forgets the records, keeps the buffers. */
void disk_log_clear(struct disk_log *log);
void disk_log_swap(struct disk_log *a, struct disk_log *b);
void disk_log_free(struct disk_log *log);

#endif
