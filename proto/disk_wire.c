// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "lib/diskimg.h"
#include "lib/disklog.h"
#include "proto/disk_wire.h"

_Static_assert(WIRE_MAX_DISK == WIRE_DISK_HDR + DISK_REC_MAX, "a DISK frame carries one record");

static void put_le32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put_le64(uint8_t *p, uint64_t v)
{
	put_le32(p, (uint32_t)v);
	put_le32(p + 4, (uint32_t)(v >> 32));
}

static uint32_t get_le32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p)
{
	return get_le32(p) | (uint64_t)get_le32(p + 4) << 32;
}

void disk_rec_hdr_encode(uint8_t out[WIRE_DISK_HDR], const struct disk_rec_hdr *h)
{
	put_le64(out, h->offset);
	put_le32(out + 8, h->len);
	put_le32(out + 12, h->flags);
}

void disk_rec_hdr_decode(const uint8_t in[WIRE_DISK_HDR], struct disk_rec_hdr *ret)
{
	ret->offset = get_le64(in);
	ret->len = get_le32(in + 8);
	ret->flags = get_le32(in + 12);
}

int disk_sums_frame(uint8_t *buf, size_t cap, uint64_t first, const uint64_t *sums, uint32_t count)
{
	size_t len = disk_sums_frame_len(count);
	uint8_t *p = buf + WIRE_HDR_SIZE;

	if (!count || count > WIRE_MAX_DISK_SUMS)
		return -EINVAL;
	if (cap < len)
		return -ENOBUFS;
	wire_hdr_encode(buf, &(struct wire_hdr){ .type = WIRE_DISK_SUMS,
						 .length = (uint32_t)(len - WIRE_HDR_SIZE) });
	put_le64(p, first);
	put_le32(p + 8, count);
	put_le32(p + 12, DISK_BLOCK);
	for (uint32_t i = 0; i < count; i++)
		put_le64(p + WIRE_DISK_HDR + 8 * (size_t)i, sums[i]);
	return (int)len;
}

int disk_sums_parse(const uint8_t *payload, size_t len, uint64_t nr_blocks, uint64_t expect_first,
		    uint64_t *sums, uint32_t *ret_count, char *why, size_t why_len)
{
	uint64_t first;
	uint32_t count, bs;

	if (len < WIRE_DISK_HDR) {
		snprintf(why, why_len, "disk sums of %zu bytes, shorter than their header", len);
		return -EBADMSG;
	}
	first = get_le64(payload);
	count = get_le32(payload + 8);
	bs = get_le32(payload + 12);
	if (!count || count > WIRE_MAX_DISK_SUMS || len != WIRE_DISK_HDR + 8 * (size_t)count) {
		snprintf(why, why_len, "disk sums frame of %zu bytes claims %u sums", len, count);
		return -EBADMSG;
	}
	if (bs != DISK_BLOCK) {
		snprintf(why, why_len, "disk sums of %u-byte blocks, expected %u", bs, DISK_BLOCK);
		return -EPROTO;
	}
	if (first != expect_first) {
		snprintf(why, why_len, "disk sums from block %llu, expected block %llu",
			 (unsigned long long)first, (unsigned long long)expect_first);
		return -EPROTO;
	}
	if (first > nr_blocks || count > nr_blocks - first) {
		snprintf(why, why_len, "sums for blocks %llu..%llu of an image of %llu blocks",
			 (unsigned long long)first, (unsigned long long)(first + count),
			 (unsigned long long)nr_blocks);
		return -ERANGE;
	}
	for (uint32_t i = 0; i < count; i++)
		sums[i] = get_le64(payload + WIRE_DISK_HDR + 8 * (size_t)i);
	*ret_count = count;
	return 0;
}
