/* SPDX-License-Identifier: MIT */
/*
 * builtin:kv's append-only log on a block device (Redis's appendonly with
 * appendfsync always). Every write's effect becomes a record (store.h's
 * kv_change: the entry as it now is, a deleted key, FLUSHALL); the server holds
 * the replies of a poll pass until aof_commit() has written the pass's records and
 * a flush has completed. At start the log is replayed into the store. When it has
 * grown enough, aof_maybe_rewrite() writes a snapshot of the store into the other
 * region and switches the superblock.
 *
 * Disk layout (512-byte sectors, little-endian):
 *
 *   sector 0        superblock: 0 u64 magic "RFTKVLOG", 8 u32 version 1,
 *                   12 u32 current region, 16 u64 generation (+1 per rewrite),
 *                   24 u32 boot (+1 per open), 32 u64 region sectors, 40 u64
 *                   region 0's first sector, 48 region 1's, 56 u64 first_seq of
 *                   the current region, 64 u64 log time, 72 u64 snapshot bytes,
 *                   80 u64 FNV-1a-64 of bytes 0..79, zeros
 *   sectors 8..     region 0, then region 1 (equal sizes, 4 KiB multiples)
 *
 * A region is a byte stream of records, no padding between them:
 *
 *   0 u32 magic "RKVR"   4 u16 type (1 SET, 2 DEL, 3 FLUSHALL)   6 u16 0
 *   8 u32 boot          12 u32 klen      16 u32 vlen             20 u32 0
 *  24 u64 seq           32 u64 time_ms   40 u64 expire_ms (0: none)
 *  48 u64 FNV-1a-64 of bytes 0..47 and the payload     56 key, then value
 *
 * Replay reads the superblock's current region from its start and applies
 * records while magic, type, sizes, checksum, seq (first_seq, then +1 each) and
 * boot (never decreasing, at most the superblock's) hold; the first record that
 * fails ends the log (a torn tail after a crash is normal), and appending resumes
 * there. Why boot: a crash can persist a later part of the last batch but not an
 * earlier one; the next boot's records may end exactly where such a leftover
 * starts, with the seq it expects. The open bumps boot in the superblock before
 * anything is appended, so a leftover of an older boot after newer records ends
 * the log. seq grows across regions, so what an older generation left in a region
 * never continues a newer log.
 *
 * Rewrite: the snapshot goes into the other region (then flush), then the
 * superblock names it (one sector, then flush). A crash before the superblock
 * write leaves the old superblock and the old region untouched and valid.
 *
 * Time: expire_ms is on the log's clock, which stands still while the guest is
 * off. The store's clock is the log clock: at open it resumes at the latest time
 * in the log (superblock or records), so a key keeps the time to live it had
 * left when the guest stopped (the guest has no wall clock to do better).
 *
 * Builds freestanding (the guest) and on the host (tests/test_resp.c), over any
 * block device given as struct aof_blk_ops. Functions return 0 or a negative
 * errno.
 */
#ifndef RINGFT_KV_AOF_H
#define RINGFT_KV_AOF_H

#include <stdint.h>

#include "guest/kv/store.h"

#define AOF_SECTOR	 512u
#define AOF_REC_HDR	 56u
#define AOF_REGION_FIRST 8u /* first sector of region 0 */
/* The buffer holds the largest record and a sector more; 1 MiB batches writes. */
#define AOF_BUF_MIN		(2u * (KV_MAX_BLOCK + AOF_REC_HDR + AOF_SECTOR))
#define AOF_REWRITE_MIN_DEFAULT (1u << 20)

enum aof_rec_type {
	AOF_REC_SET = 1,
	AOF_REC_DEL = 2,
	AOF_REC_FLUSHALL = 3,
};

/* Synchronous sector I/O: 0, or a negative errno (-EIO for a failed request). */
struct aof_blk_ops {
	int (*read)(void *ctx, uint64_t sector, void *buf, uint64_t count);
	int (*write)(void *ctx, uint64_t sector, const void *buf, uint64_t count);
	int (*flush)(void *ctx);
};

/* Why replay stopped. */
enum aof_stop {
	AOF_STOP_END,	/* end of the region */
	AOF_STOP_ZERO,	/* a zero magic: never written, or a batch's padding */
	AOF_STOP_STALE, /* a record of an older log or boot */
	AOF_STOP_TORN,	/* bad magic, type, size or checksum: an unfinished write */
};

struct aof {
	const struct aof_blk_ops *ops;
	void *ctx;
	struct kv_store *store;
	uint8_t *buf; /* the tail sector's written bytes, then pending records */
	uint32_t buf_cap;
	uint32_t buf_len;
	uint32_t buf_head; /* bytes at buf's start already on disk: tail % 512 */
	uint32_t pending;  /* records in buf not yet written */
	uint8_t tail_sector[AOF_SECTOR];

	uint64_t disk_sectors;
	uint64_t region_start[2];
	uint64_t region_sectors;
	uint32_t current;
	uint32_t boot;
	uint64_t generation;
	uint64_t first_seq;
	uint64_t seq;		 /* of the next record */
	uint64_t tail;		 /* bytes of log in the current region */
	uint64_t snapshot_bytes; /* the snapshot at the start of the current region */
	uint64_t time_ms;	 /* log time of the newest record */
	uint64_t rewrite_min;	 /* rewrite at max(rewrite_min, 2 * snapshot_bytes) */
	uint64_t rewrite_at;

	int err;	  /* first error since the last aof_commit() */
	int need_rewrite; /* a write failed: the disk lags the store until a rewrite */

	/* Replay (aof_open) and counters. */
	int formatted; /* the disk was blank: a new log */
	enum aof_stop stop;
	uint64_t replayed;
	uint64_t records, commits, rewrites, write_errors;
	uint64_t last_rewrite_keys, last_rewrite_old_bytes;
};

/*
 * Opens the log on a disk of `sectors` sectors (formats a disk whose sector 0 is
 * all zero) and replays it into `store` (kv_store_init'ed, empty, journal NULL).
 * buf: at least AOF_BUF_MIN bytes, a multiple of 512, owned by the log from now on.
 * Sets store->now_ms to the log clock. Returns -EINVAL for a disk that holds
 * something else or a bad superblock, -ENOSPC for a disk too small, -ENOMEM when
 * the log does not fit the store, or an I/O error.
 */
int aof_open(struct aof *a, const struct aof_blk_ops *ops, void *ctx, uint64_t sectors,
	     uint8_t *buf, uint32_t buf_cap, struct kv_store *store);

/*
 * Records one change (a kv_journal_fn: pass the aof as arg). The record's time is
 * store->now_ms. If the buffer is full, writes what is pending first; an error is
 * kept for the next aof_commit().
 */
void aof_journal(void *arg, enum kv_change op, const struct kv_entry *e, const void *key,
		 uint32_t klen);

/*
 * Makes every change recorded so far durable: writes them and waits for a flush
 * (or, if the region is full or an earlier write failed, rewrites the log from
 * the store). Returns 0, or the first error since the last call: then some of
 * those changes may be lost at the next start.
 */
int aof_commit(struct aof *a);

/* Whether records are waiting for aof_commit(). */
static inline int aof_pending(const struct aof *a)
{
	return a->pending || a->err;
}

/* Whether aof_maybe_rewrite() would rewrite now. */
static inline int aof_rewrite_due(const struct aof *a)
{
	return !a->pending && !a->need_rewrite && a->tail >= a->rewrite_at;
}

/*
 * Rewrites the log from the store if it has grown past rewrite_at. Call only
 * after a successful aof_commit() with nothing pending. Returns 1 if it rewrote,
 * 0 if not due, or an error (the old log stays in use).
 */
int aof_maybe_rewrite(struct aof *a);

/* Writes a snapshot of the store into the other region and switches to it. */
int aof_rewrite(struct aof *a);

/* Encodes a record at p (AOF_REC_HDR + klen + vlen bytes); exposed for tests. */
void aof_encode(uint8_t *p, enum aof_rec_type type, uint32_t boot, uint64_t seq, uint64_t time_ms,
		uint64_t expire_ms, const void *key, uint32_t klen, const void *val, uint32_t vlen);

struct aof_rec {
	enum aof_rec_type type;
	uint32_t boot, klen, vlen;
	uint64_t seq, time_ms, expire_ms;
	const uint8_t *key, *val;
};

/*
 * Decodes the record at p, len bytes available. Returns its size, 0 for a zero
 * magic (nothing written there), -EAGAIN if len is too short for it, -EBADMSG if it is not a
 * valid record (seq and boot are the caller's to check).
 */
long aof_decode(const uint8_t *p, uint64_t len, struct aof_rec *r);

#endif
