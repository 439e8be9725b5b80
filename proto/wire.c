// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "proto/wire.h"

static const char *const type_names[] = {
	[WIRE_HELLO] = "hello",
	[WIRE_REFUSE] = "refuse",
	[WIRE_EPOCH_BEGIN] = "epoch-begin",
	[WIRE_PAGES] = "pages",
	[WIRE_STATE] = "state",
	[WIRE_EPOCH_END] = "epoch-end",
	[WIRE_ACK] = "ack",
	[WIRE_HEARTBEAT] = "heartbeat",
	[WIRE_GOODBYE] = "goodbye",
	[WIRE_LIVE_PAGES] = "live-pages",
	[WIRE_DISK] = "disk",
	[WIRE_DISK_SUMS] = "disk-sums",
};

const char *wire_type_name(uint16_t type)
{
	if (type == 0 || type > WIRE_TYPE_MAX)
		return "unknown";
	return type_names[type];
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put_le32(uint8_t *p, uint32_t v)
{
	put_le16(p, (uint16_t)v);
	put_le16(p + 2, (uint16_t)(v >> 16));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32(p + 4, (uint32_t)(v >> 32));
}

static uint16_t get_le16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get_le32(const uint8_t *p)
{
	return get_le16(p) | (uint32_t)get_le16(p + 2) << 16;
}

static uint64_t get_le64(const uint8_t *p)
{
	return get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

void wire_hdr_encode(uint8_t out[WIRE_HDR_SIZE], const struct wire_hdr *h)
{
	put_le32(out, WIRE_MAGIC);
	put_le16(out + 4, h->type);
	put_le16(out + 6, h->flags);
	put_le32(out + 8, h->length);
	put_le32(out + 12, 0);
	put_le64(out + 16, h->epoch);
}

/* The largest payload a frame of this type may carry. */
static uint32_t max_length(uint16_t type)
{
	switch (type) {
	case WIRE_PAGES:
		return WIRE_MAX_PAGES_PER_FRAME * WIRE_PAGE_SIZE;
	case WIRE_ACK:
	case WIRE_HEARTBEAT:
		return 64;
	case WIRE_EPOCH_BEGIN:
		return WIRE_MAX_PAGE_LIST;
	case WIRE_DISK:
		return WIRE_MAX_DISK;
	case WIRE_DISK_SUMS:
		return WIRE_MAX_DISK_SUMSZ;
	default:
		return WIRE_MAX_MSG;
	}
}

int wire_hdr_decode(const uint8_t in[WIRE_HDR_SIZE], struct wire_hdr *ret)
{
	struct wire_hdr h = {
		.type = get_le16(in + 4),
		.flags = get_le16(in + 6),
		.length = get_le32(in + 8),
		.epoch = get_le64(in + 16),
	};

	if (get_le32(in) != WIRE_MAGIC)
		return -EBADMSG;
	if (h.type == 0 || h.type > WIRE_TYPE_MAX || h.flags || get_le32(in + 12))
		return -EPROTO;
	if (h.length > max_length(h.type))
		return -EMSGSIZE;
	if (h.type == WIRE_PAGES && (h.length == 0 || h.length % WIRE_PAGE_SIZE))
		return -EMSGSIZE;
	/* The disk frames' fixed headers: shorter cannot be one. */
	if ((h.type == WIRE_DISK || h.type == WIRE_DISK_SUMS) &&
	    (h.length < WIRE_DISK_HDR || (h.type == WIRE_DISK_SUMS && h.length % 8)))
		return -EMSGSIZE;
	*ret = h;
	return 0;
}

void wire_hdr_explain(const uint8_t in[WIRE_HDR_SIZE], int err, char *buf, size_t len)
{
	uint16_t type = (uint16_t)(in[4] | in[5] << 8);
	uint32_t length = (uint32_t)in[8] | (uint32_t)in[9] << 8 | (uint32_t)in[10] << 16 |
			  (uint32_t)in[11] << 24;

	if (err == -EBADMSG)
		snprintf(buf, len,
			 "bad magic %02x%02x%02x%02x (not a ringft stream, or out of step)", in[0],
			 in[1], in[2], in[3]);
	else if (err == -EMSGSIZE && (type == WIRE_DISK || type == WIRE_DISK_SUMS) &&
		 length <= max_length(type))
		snprintf(buf, len, "%s frame of %u bytes: not a 16-byte header%s",
			 wire_type_name(type), length,
			 type == WIRE_DISK_SUMS ? " and whole 8-byte sums" : "");
	else if (err == -EMSGSIZE)
		snprintf(buf, len, "%s frame of %u bytes exceeds its bound", wire_type_name(type),
			 length);
	else
		snprintf(buf, len, "bad header: type %u, flags 0x%x, or reserved bits not zero",
			 type, (unsigned)(in[6] | in[7] << 8));
}
