/* SPDX-License-Identifier: MIT */
/*
 * The disk frames' payloads (protocol 4). Both are fixed little-endian
 * layouts, not protobuf: a record's data goes from the sender's disk log to
 * the socket without being copied into a message.
 *
 *   WIRE_DISK (primary, inside an epoch, after its PAGES, before its STATE):
 *     0  u64  offset   bytes into the image, a multiple of DISK_SECTOR
 *     8  u32  len      bytes: written (flags 0), zeroed (DISK_REC_ZERO), 0 (DISK_REC_FLUSH)
 *     12 u32  flags    0, DISK_REC_ZERO or DISK_REC_FLUSH
 *     16      data     len bytes for a write, nothing otherwise
 *
 *   WIRE_DISK_SUMS (secondary -> primary, after its HELLO, when it has a disk):
 *     0  u64  first       the first block these sums are for
 *     8  u32  count       1..WIRE_MAX_DISK_SUMS
 *     12 u32  block_size  DISK_BLOCK
 *     16      sums        count u64, diskimg_sums() of blocks [first, first + count)
 *
 * The secondary sends DISK_SUMS frames in block order, from block 0 until all
 * diskimg_blocks(size) blocks are covered, right after its HELLO; the primary
 * syncs the blocks whose sums differ from its own (lib/diskimg.h).
 */
#ifndef RINGFT_PROTO_DISK_WIRE_H
#define RINGFT_PROTO_DISK_WIRE_H

#include <stddef.h>
#include <stdint.h>

#include "proto/wire.h"

struct disk_rec_hdr {
	uint64_t offset;
	uint32_t len;
	uint32_t flags;
};

void disk_rec_hdr_encode(uint8_t out[WIRE_DISK_HDR], const struct disk_rec_hdr *h);
void disk_rec_hdr_decode(const uint8_t in[WIRE_DISK_HDR], struct disk_rec_hdr *ret);

/* Bytes of a whole DISK_SUMS frame (header included) carrying count sums. */
static inline size_t disk_sums_frame_len(uint32_t count)
{
	return WIRE_HDR_SIZE + WIRE_DISK_HDR + 8 * (size_t)count;
}

/*
 * Writes a DISK_SUMS frame (header and payload) for blocks [first, first +
 * count) into buf. Returns its length, -EINVAL if count is 0 or above
 * WIRE_MAX_DISK_SUMS, -ENOBUFS if cap is less than disk_sums_frame_len(count).
 */
int disk_sums_frame(uint8_t *buf, size_t cap, uint64_t first, const uint64_t *sums, uint32_t count);

/*
 * Checks a DISK_SUMS payload (the frame's payload, header stripped) sent for
 * an image of nr_blocks blocks, when the next frame must start at block
 * expect_first: the length is the header plus count sums, count is
 * 1..WIRE_MAX_DISK_SUMS, the block size is DISK_BLOCK, first == expect_first
 * and first + count <= nr_blocks. Then stores the sums at sums[0..count) (room
 * for WIRE_MAX_DISK_SUMS, or for what is left of the image) and the count in
 * *ret_count. Returns 0, or -EBADMSG (length), -EPROTO (block size, order) or
 * -ERANGE (beyond the image) with why saying what, for the log, e.g.
 * "sums for blocks 16..32 of an image of 20 blocks".
 */
int disk_sums_parse(const uint8_t *payload, size_t len, uint64_t nr_blocks, uint64_t expect_first,
		    uint64_t *sums, uint32_t *ret_count, char *why, size_t why_len);

#endif
