/* SPDX-License-Identifier: MIT */
/*
 * virtio-blk (virtio 1.2, 5.2, device ID 2) on a disk image (lib/diskimg.h: a
 * raw file or a block device), over the virtio-mmio transport (virtio_mmio.h).
 * Features: VIRTIO_F_VERSION_1, VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_SEG_MAX,
 * VIRTIO_BLK_F_BLK_SIZE (512) and VIRTIO_BLK_F_FLUSH; one request queue (0).
 * Config space: capacity (le64, 512-byte sectors), size_max, seg_max, no
 * geometry, blk_size. size_max x seg_max stays within VIRTIO_BLK_REQ_MAX, so a
 * driver that keeps to them never sends a request the device must refuse
 * (Linux without size_max takes any segment size).
 *
 * Requests: a 16-byte header {le32 type, le32 reserved, le64 sector} the device
 * reads, the data, and a final status byte the device writes. Types IN, OUT,
 * FLUSH and GET_ID (the serial, up to 20 bytes, NUL padded); any other type is
 * answered VIRTIO_BLK_S_UNSUPP. IN/OUT data that is not a multiple of 512 bytes,
 * larger than VIRTIO_BLK_REQ_MAX or beyond the end of the image, a header
 * shorter than 16 bytes, or descriptors in the wrong direction (device-readable
 * data for IN, device-writable data for OUT, readable after writable) are
 * answered VIRTIO_BLK_S_IOERR without touching the image. A chain whose last
 * descriptor is not device-writable has no status byte: it is returned used
 * with length 0 and counted as an error. A chain the queue cannot even walk
 * (bad address, loop) breaks the queue (DEVICE_NEEDS_RESET), as in virtqueue.h.
 *
 * I/O: reads and writes are io_uring readv/writev whose iovecs point into guest
 * memory; a flush is an fdatasync (IORING_OP_FSYNC, DATASYNC) with IO_DRAIN so it
 * covers every request submitted before it. The ring's completions wake the
 * owner through the VM's device eventfd; the owner's vm_devices_poll() then
 * writes the status byte, returns the chain as used and interrupts. Every byte
 * the device writes into guest memory (read data, GET_ID, status, used ring) is
 * marked in the VM's VMM dirty set when the completion is processed: a read's
 * data may land in guest memory earlier (the kernel writes it), but the chain
 * is then still in flight and is re-executed after a failover (below). At most
 * VIRTIO_BLK_INFLIGHT_MAX requests are in flight; more wait in the avail ring.
 * A backend failure is answered IOERR and logged once (lib/log.h).
 *
 * Write log (replication): while logging is on, every OUT request that
 * completed OK on the image appends a data record to the device's current
 * struct disk_log, its data copied out of guest memory at completion (the
 * driver leaves a buffer alone until it sees the request used), and every FLUSH
 * that completed a DISK_REC_FLUSH record, in completion order, which is the
 * order they reached the image (a FLUSH drains every request before it). A
 * write that failed is in neither image; one that reached the image but not
 * the log makes the next take_log fail (-ENODATA: sync the peer again). A
 * checkpoint takes the log with
 * virtio_blk_take_log() while the guest is paused, so an epoch's log holds
 * exactly the writes that completed in that epoch; a write still in flight at
 * the checkpoint is in the next epoch's log and in the checkpoint's device
 * state (below). When the log's data and the writes in flight exceed
 * VIRTIO_BLK_LOG_MAX bytes, or its records and the requests in flight
 * VIRTIO_BLK_LOG_RECS_MAX, the device stops taking requests from the guest
 * (stats.log_stalls) until the next take_log, which kicks the queue. Not
 * logging, the same bound caps the writes in flight: all of them may land in
 * the first log once a sync switches logging on. So a log
 * taken holds at most VIRTIO_BLK_LOG_MAX + VIRTIO_BLK_REQ_MAX bytes and
 * VIRTIO_BLK_LOG_RECS_MAX + VIRTIO_BLK_REQ_MAX / DISK_REC_MAX records: one
 * epoch's worth (primary/sync.c asserts it against proto/epoch.h).
 *
 * In-flight requests at a checkpoint: the saved device state is the transport's
 * blob followed by le16 count and the head indexes of the chains in flight (in
 * submission order). A device loaded from it (the secondary after a failover,
 * or a test's second VM) re-executes those chains, re-reading their descriptors
 * from guest memory, once it is live and polled and before it pops anything
 * new from the avail ring: the guest saw none of them complete, and its memory
 * at the checkpoint holds their descriptors, the data of the writes and the
 * buffers of the reads. Re-executing is idempotent: the driver does not touch a
 * buffer while its request is in flight, so a write writes the same bytes again
 * (the checkpoint's log did not carry them: they had not completed), a read
 * reads them again. The
 * avail ring cannot be used for this: a slot of a request still in flight may
 * already hold a newer entry.
 *
 * Lifetime: virtio_blk_create() opens the image and registers the device; the
 * VM owns and frees it (vm_free), waiting for I/O still in flight.
 *
 * Threads: as virtio-net. Registers on vCPU threads under vdev->lock; queue
 * work, completions and every function here on the owner thread (the one that
 * calls vm_devices_poll).
 */
#ifndef RINGFT_VMM_VIRTIO_BLK_H
#define RINGFT_VMM_VIRTIO_BLK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct vm;
struct virtio_blk;
struct disk_log;
struct histogram;

#define VIRTIO_BLK_DEVICE_ID  2
#define VIRTIO_BLK_F_SIZE_MAX 1
#define VIRTIO_BLK_F_SEG_MAX  2
#define VIRTIO_BLK_F_BLK_SIZE 6
#define VIRTIO_BLK_F_FLUSH    9

#define VIRTIO_BLK_T_IN	    0
#define VIRTIO_BLK_T_OUT    1
#define VIRTIO_BLK_T_FLUSH  4
#define VIRTIO_BLK_T_GET_ID 8

#define VIRTIO_BLK_S_OK	    0
#define VIRTIO_BLK_S_IOERR  1
#define VIRTIO_BLK_S_UNSUPP 2

#define VIRTIO_BLK_HDR_LEN	16
#define VIRTIO_BLK_ID_BYTES	20
#define VIRTIO_BLK_SECTOR	512u
#define VIRTIO_BLK_SEG_MAX	254u /* data descriptors: a queue of 256 less header and status */
#define VIRTIO_BLK_SIZE_MAX	(64u << 10) /* bytes per data descriptor */
#define VIRTIO_BLK_REQ_MAX	(16u << 20) /* largest IN/OUT data (Linux: max_sectors_kb, 1-4 MiB) */
#define VIRTIO_BLK_LOG_MAX	(64ULL << 20)
#define VIRTIO_BLK_LOG_RECS_MAX 65536u /* flushes carry no data: bound them too */
/* Requests in flight: their heads must fit the saved state (DEVICE_STATE_MAX). */
#define VIRTIO_BLK_INFLIGHT_MAX 64

struct virtio_blk_config {
	const char *path;   /* image: a raw file or a block device */
	const char *serial; /* GET_ID answer, at most 20 bytes; NULL: "ringft" */
};

struct virtio_blk_stats {
	uint64_t reads, read_bytes;   /* IN requests completed OK */
	uint64_t writes, write_bytes; /* OUT requests completed OK */
	uint64_t flushes;	      /* FLUSH requests completed OK */
	uint64_t errors;	      /* requests answered IOERR or UNSUPP, chains without status */
	uint64_t log_stalls;	      /* times the log bound stopped the queue */
	uint64_t inflight;	      /* requests submitted and not completed, now */
	uint64_t logged_bytes;	      /* data bytes ever appended to the log (writes, sync) */
};

/*
 * Opens the image and adds the device in `slot` to the VM (before vm_start);
 * the VM owns it. -EINVAL (serial too long), or -errno from the image, the
 * io_uring or vm_add_device. Prints nothing.
 */
int virtio_blk_create(struct vm *vm, unsigned int slot, const struct virtio_blk_config *cfg,
		      struct virtio_blk **ret);

/* Image size in bytes, and its path. */
uint64_t virtio_blk_size(const struct virtio_blk *b);
const char *virtio_blk_path(const struct virtio_blk *b);
void virtio_blk_get_stats(const struct virtio_blk *b, struct virtio_blk_stats *ret);

/*
 * Request latency, in microseconds from the moment the device takes a request
 * from the queue (or a restored device re-executes it) to the moment it puts
 * it in the used ring: the host's I/O and the device's own work, what the
 * guest waits for less the notify and the interrupt. Only requests answered
 * VIRTIO_BLK_S_OK count. Callers pass an array of VIRTIO_BLK_LAT_TYPES
 * histograms (lib/stats.h, 16 KiB each), indexed by enum virtio_blk_lat.
 */
enum virtio_blk_lat {
	VIRTIO_BLK_LAT_READ,
	VIRTIO_BLK_LAT_WRITE,
	VIRTIO_BLK_LAT_FLUSH,
	VIRTIO_BLK_LAT_TYPES
};

/* The whole run's latencies, copied into ret[VIRTIO_BLK_LAT_TYPES]. */
void virtio_blk_get_latency(struct virtio_blk *b, struct histogram *ret);
/*
 * Those since the previous call (or the start), copied into
 * ret[VIRTIO_BLK_LAT_TYPES]; the next window starts empty. For one caller (the
 * once-a-second statistics line).
 */
void virtio_blk_take_latency_window(struct virtio_blk *b, struct histogram *ret);

/* Starts or stops recording writes; stopping forgets what the log holds. */
void virtio_blk_set_logging(struct virtio_blk *b, bool on);
/*
 * While the guest is paused at a checkpoint: swaps the device's log into
 * `into`, which the caller passes cleared; the device keeps the caller's old
 * buffers (cleared). Restarts a queue the log bound stopped. Returns 0, or
 * -ENODATA when, since logging began or the last take, a write reached the
 * image without reaching the log (a short write, a log out of memory, a
 * write completing after a driver reset, whose buffer the guest may have
 * reused): the peer's copy can no longer follow from logs; sync it again.
 */
int virtio_blk_take_log(struct virtio_blk *b, struct disk_log *into);

/*
 * The initial sync, one DISK_BLOCK block at a time (lib/diskimg.h), while the
 * guest runs and logs: compares our block's sum with the peer's `their_sum`
 * and, if they differ, appends the block to the log (a DISK_REC_ZERO record if
 * ours is all zero) and sets *ret_sent. A hole is not read when their_sum is 0.
 * Returns 0, -EINVAL (logging off, block beyond the image), -EBUSY (a write to
 * the block is in flight: try again after a poll), -ENOMEM, or -errno (pread).
 *
 * Why the copy is right: writes are logged when they complete, a block record
 * when the block is read, into one ordered log that the peer applies in order.
 * A write that completed before the read is in the bytes read, and its record
 * comes earlier (in this log or an earlier epoch's): the peer applies it, then
 * the block, and ends with the block as read. A write that completes after the
 * read is logged after the block record and lands over it, as it did here,
 * unless it was already in flight during the read: then the read may have seen
 * all, part or none of it while its record still comes after the block, and
 * the two images would agree only by luck of timing. -EBUSY refuses exactly
 * that case: no write to the block is in flight while it is read.
 */
int virtio_blk_sync_block(struct virtio_blk *b, uint64_t block, uint64_t their_sum, bool *ret_sent);

/*
 * vCPUs paused: waits for every request in flight and processes its completion
 * (status, used ring, interrupt), so the image holds every write the guest
 * has seen submitted. Chains waiting for re-execution after a load are not
 * started. 0 or -errno from io_uring.
 */
int virtio_blk_drain(struct virtio_blk *b);
/* virtio_blk_drain(), then the XXH3-64 of the whole image (diskimg_hash). */
int virtio_blk_hash(struct virtio_blk *b, uint64_t *ret);

#endif
