// SPDX-License-Identifier: MIT
/* Unit tests for the frame header and the generated protobuf-c messages. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proto/disk_wire.h"
#include "proto/ringft.pb-c.h"
#include "proto/session.h"
#include "proto/wire.h"

static void test_header_round_trip(void **state)
{
	struct wire_hdr in = { .type = WIRE_PAGES,
			       .length = 3 * WIRE_PAGE_SIZE,
			       .epoch = 0x123456789abcULL };
	struct wire_hdr out;
	uint8_t buf[WIRE_HDR_SIZE];

	wire_hdr_encode(buf, &in);
	assert_memory_equal(buf, "RFT1", 4);
	assert_int_equal(wire_hdr_decode(buf, &out), 0);
	assert_int_equal(out.type, WIRE_PAGES);
	assert_int_equal(out.flags, 0);
	assert_int_equal(out.length, 3 * WIRE_PAGE_SIZE);
	assert_true(out.epoch == 0x123456789abcULL);
	assert_string_equal(wire_type_name(out.type), "pages");
}

static void expect(const struct wire_hdr *h, void (*corrupt)(uint8_t *), int err)
{
	uint8_t buf[WIRE_HDR_SIZE];
	struct wire_hdr out = { .type = 0xffff };

	wire_hdr_encode(buf, h);
	if (corrupt)
		corrupt(buf);
	assert_int_equal(wire_hdr_decode(buf, &out), err);
	/* A refused header leaves the output untouched. */
	if (err)
		assert_int_equal(out.type, 0xffff);
}

static void bad_magic(uint8_t *b)
{
	b[0] ^= 0x20;
}

static void set_flags(uint8_t *b)
{
	b[6] = 1;
}

static void set_reserved(uint8_t *b)
{
	b[13] = 1;
}

static void test_header_refusals(void **state)
{
	expect(&(struct wire_hdr){ .type = WIRE_ACK, .length = 8 }, bad_magic, -EBADMSG);
	expect(&(struct wire_hdr){ .type = 0, .length = 8 }, NULL, -EPROTO);
	expect(&(struct wire_hdr){ .type = WIRE_TYPE_MAX + 1, .length = 8 }, NULL, -EPROTO);
	expect(&(struct wire_hdr){ .type = WIRE_ACK, .length = 8 }, set_flags, -EPROTO);
	expect(&(struct wire_hdr){ .type = WIRE_ACK, .length = 8 }, set_reserved, -EPROTO);
	/* Length bounds depend on the type. */
	expect(&(struct wire_hdr){ .type = WIRE_ACK, .length = 65 }, NULL, -EMSGSIZE);
	expect(&(struct wire_hdr){ .type = WIRE_HELLO, .length = WIRE_MAX_MSG + 1 }, NULL,
	       -EMSGSIZE);
	expect(&(struct wire_hdr){ .type = WIRE_HELLO, .length = 0xffffffffu }, NULL, -EMSGSIZE);
	expect(&(struct wire_hdr){ .type = WIRE_PAGES, .length = 0 }, NULL, -EMSGSIZE);
	expect(&(struct wire_hdr){ .type = WIRE_PAGES, .length = WIRE_PAGE_SIZE + 1 }, NULL,
	       -EMSGSIZE);
	expect(&(struct wire_hdr){ .type = WIRE_PAGES,
				   .length = (WIRE_MAX_PAGES_PER_FRAME + 1) * WIRE_PAGE_SIZE },
	       NULL, -EMSGSIZE);
	expect(&(struct wire_hdr){ .type = WIRE_PAGES,
				   .length = WIRE_MAX_PAGES_PER_FRAME * WIRE_PAGE_SIZE },
	       NULL, 0);
}

/* Protocol 4's disk frames: their bounds, and which reader takes them. */
static void test_disk_headers(void **state)
{
	size_t cap = disk_sums_frame_len(WIRE_MAX_DISK_SUMS);
	uint64_t *sums = calloc(WIRE_MAX_DISK_SUMS, sizeof(*sums));
	uint8_t *buf = malloc(cap), hdr[WIRE_HDR_SIZE];
	struct frame_rx f;
	size_t used;
	int len;

	assert_string_equal(wire_type_name(WIRE_DISK), "disk");
	assert_string_equal(wire_type_name(WIRE_DISK_SUMS), "disk-sums");
	/* DISK: a record header and at most DISK_REC_MAX bytes of data. */
	expect(&(struct wire_hdr){ .type = WIRE_DISK, .length = WIRE_DISK_HDR }, NULL, 0);
	expect(&(struct wire_hdr){ .type = WIRE_DISK, .length = WIRE_MAX_DISK }, NULL, 0);
	expect(&(struct wire_hdr){ .type = WIRE_DISK, .length = WIRE_MAX_DISK + 1 }, NULL,
	       -EMSGSIZE);
	expect(&(struct wire_hdr){ .type = WIRE_DISK, .length = WIRE_DISK_HDR - 1 }, NULL,
	       -EMSGSIZE);
	/* DISK_SUMS: a header and whole sums, at most WIRE_MAX_DISK_SUMS. */
	expect(&(struct wire_hdr){ .type = WIRE_DISK_SUMS, .length = WIRE_MAX_DISK_SUMSZ }, NULL,
	       0);
	expect(&(struct wire_hdr){ .type = WIRE_DISK_SUMS, .length = WIRE_MAX_DISK_SUMSZ + 8 },
	       NULL, -EMSGSIZE);
	expect(&(struct wire_hdr){ .type = WIRE_DISK_SUMS, .length = WIRE_DISK_HDR + 4 }, NULL,
	       -EMSGSIZE);
	expect(&(struct wire_hdr){ .type = WIRE_DISK_SUMS, .length = 8 }, NULL, -EMSGSIZE);
	{
		char why[128];

		wire_hdr_encode(hdr, &(struct wire_hdr){ .type = WIRE_DISK_SUMS, .length = 20 });
		wire_hdr_explain(hdr, -EMSGSIZE, why, sizeof(why));
		assert_string_equal(why, "disk-sums frame of 20 bytes: not a 16-byte header and "
					 "whole 8-byte sums");
	}

	/* The small-frame reader takes the largest DISK_SUMS frame, and no DISK frame. */
	assert_non_null(sums);
	assert_non_null(buf);
	len = disk_sums_frame(buf, cap, 0, sums, WIRE_MAX_DISK_SUMS);
	assert_int_equal(len, cap);
	assert_int_equal(frame_rx_init(&f), 0);
	assert_int_equal(frame_rx_feed(&f, buf, (size_t)len, &used), 1);
	assert_int_equal(used, len);
	assert_int_equal(f.hdr.type, WIRE_DISK_SUMS);
	frame_rx_free(&f);
	wire_hdr_encode(hdr, &(struct wire_hdr){ .type = WIRE_DISK, .length = WIRE_MAX_DISK });
	assert_int_equal(frame_rx_init(&f), 0);
	assert_int_equal(frame_rx_feed(&f, hdr, sizeof(hdr), &used), -EPROTO);
	assert_string_equal(f.error, "unexpected disk frame");
	frame_rx_free(&f);
	free(sums);
	free(buf);
}

static void test_epoch_begin_message(void **state)
{
	uint64_t pages[] = { 0, 1, 4096, 1ULL << 22 };
	Ringft__EpochBegin in = RINGFT__EPOCH_BEGIN__INIT, *out;
	uint8_t buf[256];
	size_t len;

	in.epoch = 42;
	in.n_pages = 4;
	in.pages = pages;
	len = ringft__epoch_begin__get_packed_size(&in);
	assert_true(len <= sizeof(buf));
	assert_int_equal(ringft__epoch_begin__pack(&in, buf), len);
	out = ringft__epoch_begin__unpack(NULL, len, buf);
	assert_non_null(out);
	assert_true(out->epoch == 42);
	assert_int_equal(out->n_pages, 4);
	assert_memory_equal(out->pages, pages, sizeof(pages));
	ringft__epoch_begin__free_unpacked(out, NULL);

	/* Truncated or garbage input is refused, never half-parsed. */
	assert_null(ringft__epoch_begin__unpack(NULL, len - 1, buf));
	memset(buf, 0xff, sizeof(buf));
	assert_null(ringft__epoch_begin__unpack(NULL, sizeof(buf), buf));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_header_round_trip),
		cmocka_unit_test(test_header_refusals),
		cmocka_unit_test(test_disk_headers),
		cmocka_unit_test(test_epoch_begin_message),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
