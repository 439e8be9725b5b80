/* SPDX-License-Identifier: MIT */
/*
 * Frames of the replication stream. Every frame is a fixed 24-byte header
 * followed by `length` payload bytes (all integers little endian):
 *
 *   0  u32  magic "RFT1" (WIRE_MAGIC)
 *   4  u16  type (enum wire_type)
 *   6  u16  flags (0; a receiver refuses anything else)
 *   8  u32  payload length
 *   12 u32  reserved (0)
 *   16 u64  epoch the frame belongs to (0 outside an epoch; 64 bits, so that
 *           1 ms epochs never wrap)
 *
 * The payload is a protobuf-c message (proto/ringft.proto) for every type but
 * WIRE_PAGES, whose payload is raw guest pages: they go from the staging buffer
 * to the socket and from the socket to staging without being copied into a
 * message, and the disk frames (WIRE_DISK, WIRE_DISK_SUMS: fixed little-endian
 * layouts, proto/disk_wire.h). The header is validated before a single payload byte is used: magic,
 * type, flags, and a length bound that depends on the type.
 *
 * The frame sequence and the receiver's state machine are in docs/protocol.md
 * (replication work); this file only owns the framing.
 */
#ifndef RINGFT_PROTO_WIRE_H
#define RINGFT_PROTO_WIRE_H

#include <stddef.h>
#include <stdint.h>

#define WIRE_MAGIC     0x31544652u /* "RFT1" */
#define WIRE_HDR_SIZE  24
#define WIRE_PAGE_SIZE 4096u
#define WIRE_MAX_MSG   (1u << 20) /* protobuf payloads */
/*
 * EPOCH_BEGIN carries the page lists: up to 11 bytes per page (a packed
 * varint and its share of the field), for a 64 GiB guest 176 MiB. A receiver
 * bounds it further by its own guest's size (epoch_rx).
 */
#define WIRE_MAX_PAGE_LIST	 (11u * (64u << 18) + 64u)
#define WIRE_MAX_PAGES_PER_FRAME 256u /* 1 MiB of page data per frame */
/*
 * WIRE_DISK: a 16-byte record header, then the record's data, at most
 * DISK_REC_MAX (lib/disklog.h) bytes. WIRE_DISK_SUMS: a 16-byte header, then
 * at most WIRE_MAX_DISK_SUMS block checksums of 8 bytes.
 */
#define WIRE_DISK_HDR	    16u
#define WIRE_MAX_DISK	    (WIRE_DISK_HDR + (1u << 20))
#define WIRE_MAX_DISK_SUMS  65536u
#define WIRE_MAX_DISK_SUMSZ (WIRE_DISK_HDR + 8u * WIRE_MAX_DISK_SUMS)

enum wire_type {
	WIRE_HELLO = 1,
	WIRE_REFUSE = 2,
	WIRE_EPOCH_BEGIN = 3, /* epoch number, page list */
	WIRE_PAGES = 4,	      /* raw pages, in page-list order */
	WIRE_STATE = 5,	      /* vCPU, VM and device state */
	WIRE_EPOCH_END = 6,   /* counts and checksum over the epoch */
	WIRE_ACK = 7,
	WIRE_HEARTBEAT = 8,
	WIRE_GOODBYE = 9,
	WIRE_LIVE_PAGES = 10, /* epoch number, page list of a live batch (before EPOCH_BEGIN) */
	WIRE_DISK = 11,	      /* protocol 4: one disk record of the epoch (after PAGES) */
	WIRE_DISK_SUMS = 12,  /* protocol 4: the secondary's disk block checksums */
	WIRE_TYPE_MAX = WIRE_DISK_SUMS,
};

struct wire_hdr {
	uint16_t type;
	uint16_t flags;
	uint32_t length;
	uint64_t epoch;
};

const char *wire_type_name(uint16_t type);

/* Writes the WIRE_HDR_SIZE header bytes. */
void wire_hdr_encode(uint8_t out[WIRE_HDR_SIZE], const struct wire_hdr *h);

/*
 * Validates and decodes a header. Returns 0, or
 *   -EBADMSG  wrong magic (not our protocol, or a stream out of step),
 *   -EPROTO   unknown type, non-zero flags or reserved bits,
 *   -EMSGSIZE length above the bound for the type (or not whole pages).
 */
int wire_hdr_decode(const uint8_t in[WIRE_HDR_SIZE], struct wire_hdr *ret);

/* One line saying why wire_hdr_decode() refused `in` with `err`, for logs. */
void wire_hdr_explain(const uint8_t in[WIRE_HDR_SIZE], int err, char *buf, size_t len);

#endif
