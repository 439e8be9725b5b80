// SPDX-License-Identifier: MIT
/*
 * An epoch framed by epoch_pack() and read back by epoch_rx, whatever the
 * chunking of the byte stream; and every kind of bad stream refused with its
 * own error, never reported as an epoch.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proto/epoch.h"
#include "proto/wire.h"

#define GUEST_PAGES 4096
#define NR_PAGES    600 /* three PAGES frames */

struct fixture {
	uint64_t pages[NR_PAGES];
	uint8_t *data;
	struct machine_state *state;
	uint8_t *stream;
	size_t len;
};

static uint64_t rng = 88172645463325252ULL;

static uint64_t next(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

static void make(struct fixture *f, uint64_t epoch, uint64_t page_base)
{
	struct epoch_tx tx = { 0 };

	f->data = malloc((size_t)NR_PAGES * WIRE_PAGE_SIZE);
	f->state = calloc(1, sizeof(*f->state));
	assert_non_null(f->data);
	assert_non_null(f->state);
	for (size_t i = 0; i < NR_PAGES; i++)
		f->pages[i] = (page_base + i * 7) % GUEST_PAGES;
	for (size_t i = 0; i < (size_t)NR_PAGES * WIRE_PAGE_SIZE; i++)
		f->data[i] = (uint8_t)next();
	f->state->nr_vcpus = 2;
	f->state->nr_devices = 1;
	for (size_t i = 0; i < sizeof(f->state->vcpu[0]); i++)
		((uint8_t *)&f->state->vcpu[1])[i] = (uint8_t)next();
	f->state->vm.clock.clock = 123456789;
	strcpy(f->state->dev[0].name, "serial");
	f->state->dev[0].len = 9;
	memcpy(f->state->dev[0].data, "\x01UARTregs", 9);

	assert_int_equal(epoch_pack(&tx, epoch, f->pages, NR_PAGES, f->data, f->state, NULL), 0);
	f->stream = malloc(tx.bytes);
	assert_non_null(f->stream);
	f->len = 0;
	for (unsigned int i = 0; i < tx.nr_iov; i++) {
		memcpy(f->stream + f->len, tx.iov[i].iov_base, tx.iov[i].iov_len);
		f->len += tx.iov[i].iov_len;
	}
	assert_int_equal(f->len, tx.bytes);
	epoch_tx_free(&tx);
}

static void drop(struct fixture *f)
{
	free(f->data);
	free(f->state);
	free(f->stream);
}

/* Feeds the stream in chunks of 1..max bytes; returns epochs seen or an error. */
static int feed(struct epoch_rx *rx, const uint8_t *s, size_t len, size_t max)
{
	size_t off = 0;
	int epochs = 0;

	while (off < len) {
		size_t n = 1 + next() % max, used;
		int r;

		if (n > len - off)
			n = len - off;
		r = epoch_rx_feed(rx, s + off, n, &used);
		if (r < 0)
			return r;
		epochs += r;
		off += used;
	}
	return epochs;
}

static void check_staged(struct epoch_rx *rx, struct fixture *f, uint64_t epoch)
{
	assert_true(rx->epoch == epoch);
	assert_int_equal(rx->nr_pages, NR_PAGES);
	assert_memory_equal(rx->pages, f->pages, sizeof(f->pages));
	assert_memory_equal(rx->data, f->data, (size_t)NR_PAGES * WIRE_PAGE_SIZE);
	assert_memory_equal(&rx->state->vcpu[1], &f->state->vcpu[1], sizeof(f->state->vcpu[1]));
	assert_true(rx->state->vm.clock.clock == 123456789);
	assert_string_equal(rx->state->dev[0].name, "serial");
	assert_memory_equal(rx->state->dev[0].data, "\x01UARTregs", 9);
}

static void test_round_trip_any_chunking(void **state)
{
	size_t chunks[] = { 1, 7, 4096, 100000, SIZE_MAX / 2 };

	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		struct fixture f0, f1;
		struct epoch_rx rx;

		make(&f0, 0, 3);
		make(&f1, 1, 11);
		assert_int_equal(epoch_rx_init(&rx, GUEST_PAGES, 2, 1), 0);
		assert_int_equal(feed(&rx, f0.stream, f0.len, chunks[c]), 1);
		check_staged(&rx, &f0, 0);
		assert_int_equal(feed(&rx, f1.stream, f1.len, chunks[c]), 1);
		check_staged(&rx, &f1, 1);
		epoch_rx_free(&rx);
		drop(&f0);
		drop(&f1);
	}
}

static void expect_refused(uint8_t *stream, size_t len, uint64_t guest_pages, int err,
			   const char *needle)
{
	struct epoch_rx rx;
	size_t used;

	assert_int_equal(epoch_rx_init(&rx, guest_pages, 2, 1), 0);
	assert_int_equal(feed(&rx, stream, len, 5000), err);
	if (!strstr(rx.error, needle))
		fail_msg("error '%s' lacks '%s'", rx.error, needle);
	/* A failed receiver takes nothing more. */
	assert_int_equal(epoch_rx_feed(&rx, stream, len, &used), -EPIPE);
	epoch_rx_free(&rx);
}

static void test_refusals(void **state)
{
	struct fixture f;
	uint8_t *s;
	struct epoch_rx rx;

	make(&f, 0, 3);
	s = malloc(f.len);
	assert_non_null(s);

	/* A flipped bit in page data: the checksum catches it. */
	memcpy(s, f.stream, f.len);
	s[f.len / 2] ^= 0x10;
	expect_refused(s, f.len, GUEST_PAGES, -EILSEQ, "checksum");

	/* Garbage instead of a stream. */
	memset(s, 0x5a, 64);
	expect_refused(s, 64, GUEST_PAGES, -EBADMSG, "bad magic");

	/* A huge length in the first header. */
	memcpy(s, f.stream, f.len);
	s[8] = s[9] = s[10] = s[11] = 0xff;
	expect_refused(s, f.len, GUEST_PAGES, -EMSGSIZE, "exceeds its bound");

	/* The page list names pages beyond a smaller guest. */
	expect_refused(f.stream, f.len, 1000, -ERANGE, "outside guest memory");

	/* Frames out of order: a state frame where the pages should be. */
	{
		struct fixture g;
		size_t begin_len =
			WIRE_HDR_SIZE + (f.stream[8] | f.stream[9] << 8 | f.stream[10] << 16);

		make(&g, 0, 3);
		/* EPOCH_BEGIN, then skip the 3 PAGES frames: STATE comes early. */
		memcpy(s, f.stream, begin_len);
		memcpy(s + begin_len,
		       f.stream + begin_len + 3 * WIRE_HDR_SIZE + NR_PAGES * WIRE_PAGE_SIZE,
		       f.len - begin_len - 3 * WIRE_HDR_SIZE - NR_PAGES * WIRE_PAGE_SIZE);
		expect_refused(s, f.len - 3 * WIRE_HDR_SIZE - NR_PAGES * WIRE_PAGE_SIZE,
			       GUEST_PAGES, -EPROTO, "expected pages");
		drop(&g);
	}

	/* A replayed epoch: 0 again after 0. */
	assert_int_equal(epoch_rx_init(&rx, GUEST_PAGES, 2, 1), 0);
	assert_int_equal(feed(&rx, f.stream, f.len, 65536), 1);
	assert_int_equal(feed(&rx, f.stream, f.len, 65536), -EPROTO);
	assert_non_null(strstr(rx.error, "epoch 0 out of order"));
	epoch_rx_free(&rx);

	/* A stream cut short reports nothing: no partial epoch exists. */
	assert_int_equal(epoch_rx_init(&rx, GUEST_PAGES, 2, 1), 0);
	assert_int_equal(feed(&rx, f.stream, f.len - 1, 4096), 0);
	assert_int_equal(rx.phase, EPOCH_RX_END);
	epoch_rx_free(&rx);

	/* State for a VM of another shape. */
	assert_int_equal(epoch_rx_init(&rx, GUEST_PAGES, 4, 1), 0);
	assert_int_equal(feed(&rx, f.stream, f.len, 65536), -EPROTO);
	assert_non_null(strstr(rx.error, "2 vCPUs and 1 devices, expected 4 and 1"));
	epoch_rx_free(&rx);

	free(s);
	drop(&f);
}

/* An epoch in which the guest dirtied nothing still carries its state. */
static void test_empty_epoch(void **state)
{
	struct machine_state *ms = calloc(1, sizeof(*ms));
	struct epoch_tx tx = { 0 };
	struct epoch_rx rx;
	int epochs = 0;

	assert_non_null(ms);
	ms->nr_vcpus = 2;
	ms->nr_devices = 1;
	ms->vm.clock.clock = 42;
	assert_int_equal(epoch_pack(&tx, 0, NULL, 0, NULL, ms, NULL), 0);
	assert_int_equal(epoch_rx_init(&rx, GUEST_PAGES, 2, 1), 0);
	for (unsigned int i = 0; i < tx.nr_iov; i++) {
		size_t used;
		int r = epoch_rx_feed(&rx, tx.iov[i].iov_base, tx.iov[i].iov_len, &used);

		assert_true(r >= 0);
		assert_int_equal(used, tx.iov[i].iov_len);
		epochs += r;
	}
	assert_int_equal(epochs, 1);
	assert_int_equal(rx.nr_pages, 0);
	assert_true(rx.state->vm.clock.clock == 42);
	epoch_rx_free(&rx);
	epoch_tx_free(&tx);
	free(ms);
}

/* Collects a packed epoch into one buffer. */
static uint8_t *flatten(const struct epoch_tx *tx)
{
	uint8_t *buf = malloc(tx->bytes);
	size_t off = 0;

	assert_non_null(buf);
	for (unsigned int i = 0; i < tx->nr_iov; i++) {
		memcpy(buf + off, tx->iov[i].iov_base, tx->iov[i].iov_len);
		off += tx->iov[i].iov_len;
	}
	return buf;
}

/*
 * An initial-sync epoch: pages with data, all-zero pages as a bare list, no
 * state. A zero list in a checkpoint, or pointing outside memory, is refused.
 */
static void test_initial_sync_epoch(void **state)
{
	const uint64_t pages[2] = { 5, 9 }, zero[3] = { 1, 2, GUEST_PAGES - 1 };
	const uint64_t bad_zero[1] = { GUEST_PAGES };
	uint8_t *data = calloc(2, WIRE_PAGE_SIZE), *buf;
	struct machine_state *ms = calloc(1, sizeof(*ms));
	struct epoch_opts opts = { .initial_sync = true, .zero_pages = zero, .nr_zero = 3 };
	struct epoch_tx tx = { 0 };
	struct epoch_rx rx;

	assert_non_null(data);
	assert_non_null(ms);
	memset(data, 0xa5, 2 * WIRE_PAGE_SIZE);
	assert_int_equal(epoch_pack(&tx, 0, pages, 2, data, NULL, &opts), 0);
	buf = flatten(&tx);
	assert_int_equal(epoch_rx_init(&rx, GUEST_PAGES, 2, 1), 0);
	assert_int_equal(feed(&rx, buf, tx.bytes, 100), 1);
	assert_true(rx.initial_sync);
	assert_int_equal(rx.nr_pages, 2);
	assert_int_equal(rx.nr_zero, 3);
	assert_memory_equal(rx.zero_pages, zero, sizeof(zero));
	assert_memory_equal(rx.data, data, 2 * WIRE_PAGE_SIZE);
	epoch_rx_free(&rx);
	free(buf);

	/* The sender refuses a zero list in a checkpoint... */
	ms->nr_vcpus = 2;
	ms->nr_devices = 1;
	opts.initial_sync = false;
	assert_int_equal(epoch_pack(&tx, 0, pages, 2, data, ms, &opts), -EINVAL);
	/* ...and the receiver a zero page outside guest memory. */
	opts = (struct epoch_opts){ .initial_sync = true, .zero_pages = bad_zero, .nr_zero = 1 };
	assert_int_equal(epoch_pack(&tx, 0, pages, 2, data, NULL, &opts), 0);
	buf = flatten(&tx);
	assert_int_equal(epoch_rx_init(&rx, GUEST_PAGES, 2, 1), 0);
	assert_int_equal(feed(&rx, buf, tx.bytes, 100), -ERANGE);
	assert_non_null(strstr(rx.error, "zero page"));
	assert_non_null(strstr(rx.error, "outside guest memory"));
	epoch_rx_free(&rx);
	free(buf);
	epoch_tx_free(&tx);
	free(data);
	free(ms);
}

/*
 * Page lists beyond the 1 MiB message bound: 400000 zero pages (3-byte
 * varints) in one EPOCH_BEGIN, received by a 4 GiB guest; a 64 MiB guest
 * refuses the same frame by its size before reading it.
 */
static void test_long_page_list(void **state)
{
	const uint64_t nr = 400000, guest = 1ULL << 20;
	uint64_t *zero = malloc(nr * sizeof(*zero));
	struct epoch_opts opts = { .initial_sync = true, .nr_zero = nr };
	struct epoch_tx tx = { 0 };
	struct epoch_rx rx;
	uint8_t *buf;

	assert_non_null(zero);
	for (uint64_t k = 0; k < nr; k++)
		zero[k] = (k * 2 + 100000) % guest;
	opts.zero_pages = zero;
	assert_int_equal(epoch_pack(&tx, 0, NULL, 0, NULL, NULL, &opts), 0);
	assert_true(tx.iov[1].iov_len > WIRE_MAX_MSG);
	buf = flatten(&tx);
	assert_int_equal(epoch_rx_init(&rx, guest, 2, 1), 0);
	assert_int_equal(feed(&rx, buf, tx.bytes, 1 << 16), 1);
	assert_int_equal(rx.nr_zero, nr);
	assert_memory_equal(rx.zero_pages, zero, nr * sizeof(*zero));
	epoch_rx_free(&rx);

	assert_int_equal(epoch_rx_init(&rx, GUEST_PAGES, 2, 1), 0);
	assert_int_equal(feed(&rx, buf, tx.bytes, 1 << 16), -EMSGSIZE);
	assert_non_null(strstr(rx.error, "bytes of page lists for a guest of"));
	epoch_rx_free(&rx);
	free(buf);
	epoch_tx_free(&tx);
	free(zero);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_any_chunking),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_empty_epoch),
		cmocka_unit_test(test_initial_sync_epoch),
		cmocka_unit_test(test_long_page_list),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
