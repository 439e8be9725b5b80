// SPDX-License-Identifier: MIT
/*
 * An epoch framed by epoch_pack() and read back by epoch_rx, whatever the
 * chunking of the byte stream; and every kind of bad stream refused with its
 * own error, never reported as an epoch.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "proto/epoch.h"
#include "proto/wire.h"
#include "vmm/state.h"

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

/*
 * proto carries state as blobs; the tests send the VMM's real structs, as the
 * primary does, so the sizes checked are the ones that matter.
 */
static const struct epoch_state *blobs(const struct machine_state *ms)
{
	static struct epoch_state st;

	memset(&st, 0, sizeof(st));
	st.nr_vcpus = ms->nr_vcpus;
	st.nr_devices = ms->nr_devices;
	st.vm = (struct epoch_blob){ &ms->vm, sizeof(ms->vm) };
	for (uint32_t i = 0; i < ms->nr_vcpus; i++)
		st.vcpu[i] = (struct epoch_blob){ &ms->vcpu[i], sizeof(ms->vcpu[i]) };
	for (uint32_t i = 0; i < ms->nr_devices; i++)
		st.dev[i] = (struct epoch_device){ ms->dev[i].name,
						   { ms->dev[i].data, ms->dev[i].len } };
	return &st;
}

/* A receiver for a VM of guest_pages pages, nr_vcpus vCPUs and nr_devices devices. */
static int rx_init(struct epoch_rx *rx, uint64_t guest_pages, uint32_t nr_vcpus,
		   uint32_t nr_devices)
{
	const struct epoch_shape shape = {
		.nr_vcpus = nr_vcpus,
		.nr_devices = nr_devices,
		.vcpu_size = sizeof(struct vcpu_state),
		.vm_size = sizeof(struct vm_state),
		.device_max = DEVICE_STATE_MAX,
		.device_name_max = sizeof(((struct device_state *)0)->name),
	};

	return epoch_rx_init(rx, guest_pages, &shape);
}

/* The received VM state's clock (the blob need not be aligned for the struct). */
static uint64_t rx_clock(const struct epoch_rx *rx)
{
	struct vm_state vm;

	assert_int_equal(rx->state.vm.len, sizeof(vm));
	memcpy(&vm, rx->state.vm.data, sizeof(vm));
	return vm.clock.clock;
}

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

	assert_int_equal(epoch_pack(&tx, epoch, f->pages, NR_PAGES, f->data, blobs(f->state), NULL),
			 0);
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
	assert_int_equal(rx->state.nr_vcpus, 2);
	assert_int_equal(rx->state.vcpu[1].len, sizeof(f->state->vcpu[1]));
	assert_memory_equal(rx->state.vcpu[1].data, &f->state->vcpu[1], sizeof(f->state->vcpu[1]));
	assert_true(rx_clock(rx) == 123456789);
	assert_string_equal(rx->state.dev[0].name, "serial");
	assert_int_equal(rx->state.dev[0].state.len, 9);
	assert_memory_equal(rx->state.dev[0].state.data, "\x01UARTregs", 9);
}

static void test_round_trip_any_chunking(void **state)
{
	size_t chunks[] = { 1, 7, 4096, 100000, SIZE_MAX / 2 };

	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		struct fixture f0, f1;
		struct epoch_rx rx;

		make(&f0, 0, 3);
		make(&f1, 1, 11);
		assert_int_equal(rx_init(&rx, GUEST_PAGES, 2, 1), 0);
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

	assert_int_equal(rx_init(&rx, guest_pages, 2, 1), 0);
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
	assert_int_equal(rx_init(&rx, GUEST_PAGES, 2, 1), 0);
	assert_int_equal(feed(&rx, f.stream, f.len, 65536), 1);
	assert_int_equal(feed(&rx, f.stream, f.len, 65536), -EPROTO);
	assert_non_null(strstr(rx.error, "epoch 0 out of order"));
	epoch_rx_free(&rx);

	/* A stream cut short reports nothing: no partial epoch exists. */
	assert_int_equal(rx_init(&rx, GUEST_PAGES, 2, 1), 0);
	assert_int_equal(feed(&rx, f.stream, f.len - 1, 4096), 0);
	assert_int_equal(rx.phase, EPOCH_RX_END);
	epoch_rx_free(&rx);

	/* State for a VM of another shape. */
	assert_int_equal(rx_init(&rx, GUEST_PAGES, 4, 1), 0);
	assert_int_equal(feed(&rx, f.stream, f.len, 65536), -EPROTO);
	assert_non_null(strstr(rx.error, "2 vCPUs and 1 devices, expected 4 and 1"));
	epoch_rx_free(&rx);

	/* State of another layout (a peer built with other vmm/state.h structs). */
	{
		struct epoch_shape shape = {
			.nr_vcpus = 2,
			.nr_devices = 1,
			.vcpu_size = sizeof(struct vcpu_state) + 64,
			.vm_size = sizeof(struct vm_state),
			.device_max = DEVICE_STATE_MAX,
			.device_name_max = 16,
		};
		char want[96];

		assert_int_equal(epoch_rx_init(&rx, GUEST_PAGES, &shape), 0);
		assert_int_equal(feed(&rx, f.stream, f.len, 65536), -EPROTO);
		snprintf(want, sizeof(want), "vCPU 0 state of %zu bytes, expected %zu",
			 sizeof(struct vcpu_state), sizeof(struct vcpu_state) + 64);
		if (!strstr(rx.error, want))
			fail_msg("error '%s' lacks '%s'", rx.error, want);
		epoch_rx_free(&rx);
		/* ...and no receiver for more vCPUs than an epoch carries. */
		shape.nr_vcpus = EPOCH_MAX_VCPUS + 1;
		assert_int_equal(epoch_rx_init(&rx, GUEST_PAGES, &shape), -EINVAL);
	}

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
	assert_int_equal(epoch_pack(&tx, 0, NULL, 0, NULL, blobs(ms), NULL), 0);
	assert_int_equal(rx_init(&rx, GUEST_PAGES, 2, 1), 0);
	for (unsigned int i = 0; i < tx.nr_iov; i++) {
		size_t used;
		int r = epoch_rx_feed(&rx, tx.iov[i].iov_base, tx.iov[i].iov_len, &used);

		assert_true(r >= 0);
		assert_int_equal(used, tx.iov[i].iov_len);
		epochs += r;
	}
	assert_int_equal(epochs, 1);
	assert_int_equal(rx.nr_pages, 0);
	assert_true(rx_clock(&rx) == 42);
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
	assert_int_equal(rx_init(&rx, GUEST_PAGES, 2, 1), 0);
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
	assert_int_equal(epoch_pack(&tx, 0, pages, 2, data, blobs(ms), &opts), -EINVAL);
	/* ...and the receiver a zero page outside guest memory. */
	opts = (struct epoch_opts){ .initial_sync = true, .zero_pages = bad_zero, .nr_zero = 1 };
	assert_int_equal(epoch_pack(&tx, 0, pages, 2, data, NULL, &opts), 0);
	buf = flatten(&tx);
	assert_int_equal(rx_init(&rx, GUEST_PAGES, 2, 1), 0);
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
	assert_int_equal(rx_init(&rx, guest, 2, 1), 0);
	assert_int_equal(feed(&rx, buf, tx.bytes, 1 << 16), 1);
	assert_int_equal(rx.nr_zero, nr);
	assert_memory_equal(rx.zero_pages, zero, nr * sizeof(*zero));
	epoch_rx_free(&rx);

	assert_int_equal(rx_init(&rx, GUEST_PAGES, 2, 1), 0);
	assert_int_equal(feed(&rx, buf, tx.bytes, 1 << 16), -EMSGSIZE);
	assert_non_null(strstr(rx.error, "bytes of page lists for a guest of"));
	epoch_rx_free(&rx);
	free(buf);
	epoch_tx_free(&tx);
	free(zero);
}

/* Appends a packed tx to a growing stream. */
static void append(uint8_t **stream, size_t *len, const struct epoch_tx *tx)
{
	uint8_t *flat = flatten(tx);

	*stream = realloc(*stream, *len + tx->bytes);
	assert_non_null(*stream);
	memcpy(*stream + *len, flat, tx->bytes);
	*len += tx->bytes;
	free(flat);
}

static void append_heartbeat(uint8_t **stream, size_t *len, uint64_t epoch)
{
	*stream = realloc(*stream, *len + WIRE_HDR_SIZE);
	assert_non_null(*stream);
	wire_hdr_encode(*stream + *len,
			&(struct wire_hdr){ .type = WIRE_HEARTBEAT, .length = 0, .epoch = epoch });
	*len += WIRE_HDR_SIZE;
}

#define LIVE_PAGES 300 /* the fixture's first 300 pages go live... */
#define PAUSE_FROM 200 /* ...and its pages from 200 on in the pause: 100 sent twice */

/*
 * Epoch `epoch` as a primary with live harvest sends it: a live batch (with a
 * heartbeat after it when `beat`), then the pause's pages and the state. The
 * live copies of the pages sent twice hold other (older) data.
 */
static void live_epoch(struct fixture *f, uint8_t *old, uint64_t epoch, bool beat,
		       struct epoch_sum *sum, uint8_t **stream, size_t *len)
{
	struct epoch_tx tx = { 0 };

	assert_int_equal(epoch_pack_live(&tx, sum, epoch, f->pages, LIVE_PAGES, old), 0);
	append(stream, len, &tx);
	if (beat)
		append_heartbeat(stream, len, epoch);
	assert_int_equal(epoch_pack(&tx, epoch, f->pages + PAUSE_FROM, NR_PAGES - PAUSE_FROM,
				    f->data + (size_t)PAUSE_FROM * WIRE_PAGE_SIZE, blobs(f->state),
				    &(struct epoch_opts){ .sum = sum }),
			 0);
	append(stream, len, &tx);
	epoch_tx_free(&tx);
}

/*
 * Live batches: pages sent while the guest ran come before the epoch's
 * EPOCH_BEGIN, a page may come twice, and applying the staged list in order
 * leaves each page's last copy. The checksum covers the live frames.
 */
static void test_live_batches(void **state)
{
	size_t chunks[] = { 1, 4096, SIZE_MAX / 2 };
	uint8_t *old = malloc((size_t)LIVE_PAGES * WIRE_PAGE_SIZE);
	uint8_t *mem = calloc(GUEST_PAGES, WIRE_PAGE_SIZE);
	uint8_t *want = calloc(GUEST_PAGES, WIRE_PAGE_SIZE);
	struct epoch_sum sum = { 0 };
	struct fixture f;

	assert_non_null(old);
	assert_non_null(mem);
	assert_non_null(want);
	make(&f, 0, 3);
	for (size_t i = 0; i < (size_t)LIVE_PAGES * WIRE_PAGE_SIZE; i++)
		old[i] = (uint8_t)next();
	/* What the guest's memory is at the checkpoint: the newest copy of each page. */
	for (size_t k = 0; k < NR_PAGES; k++)
		memcpy(want + f.pages[k] * WIRE_PAGE_SIZE,
		       k < PAUSE_FROM ? old + k * WIRE_PAGE_SIZE : f.data + k * WIRE_PAGE_SIZE,
		       WIRE_PAGE_SIZE);

	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		uint8_t *stream = NULL;
		size_t len = 0;
		struct epoch_rx rx;

		/* Two epochs in a row, each with its live batch: the sum starts afresh. */
		live_epoch(&f, old, 0, true, &sum, &stream, &len);
		live_epoch(&f, old, 1, false, &sum, &stream, &len);
		assert_int_equal(rx_init(&rx, GUEST_PAGES, 2, 1), 0);
		for (uint64_t e = 0; e < 2; e++) {
			size_t off = 0, used;
			int r = 0;

			memset(mem, 0, (size_t)GUEST_PAGES * WIRE_PAGE_SIZE);
			/* Fed up to the end of one epoch: feed() stops at READY. */
			while (r == 0) {
				size_t n = len - off < chunks[c] ? len - off : chunks[c];

				assert_true(n > 0);
				r = epoch_rx_feed(&rx, stream + off, n, &used);
				assert_true(r >= 0);
				off += used;
			}
			assert_int_equal(r, EPOCH_RX_READY);
			assert_true(rx.epoch == e);
			assert_int_equal(rx.nr_pages, LIVE_PAGES + NR_PAGES - PAUSE_FROM);
			for (uint64_t k = 0; k < rx.nr_pages; k++)
				memcpy(mem + rx.pages[k] * WIRE_PAGE_SIZE,
				       rx.data + k * WIRE_PAGE_SIZE, WIRE_PAGE_SIZE);
			assert_memory_equal(mem, want, (size_t)GUEST_PAGES * WIRE_PAGE_SIZE);
			memmove(stream, stream + off, len - off);
			len -= off;
		}
		assert_int_equal(len, 0);
		epoch_rx_free(&rx);
		free(stream);
	}

	/* The sender refuses to mix epochs. */
	{
		struct epoch_tx tx = { 0 };

		assert_int_equal(epoch_pack_live(&tx, &sum, 5, f.pages, 1, old), 0);
		assert_int_equal(epoch_pack_live(&tx, &sum, 6, f.pages, 1, old), -EINVAL);
		assert_int_equal(epoch_pack(&tx, 6, f.pages, 1, f.data, blobs(f.state),
					    &(struct epoch_opts){ .sum = &sum }),
				 -EINVAL);
		assert_int_equal(epoch_pack_live(&tx, &sum, 5, f.pages, 0, old), -EINVAL);
		sum.open = false;
		epoch_tx_free(&tx);
	}
	epoch_sum_free(&sum);
	drop(&f);
	free(old);
	free(mem);
	free(want);
}

/* What a receiver refuses around live batches, each with its own message. */
static void test_live_refusals(void **state)
{
	struct epoch_opts sync = { .initial_sync = true };
	struct epoch_sum sum = { 0 }, other = { 0 };
	struct epoch_tx tx = { 0 };
	uint8_t *stream = NULL, *old = calloc(LIVE_PAGES, WIRE_PAGE_SIZE);
	size_t len = 0;
	struct epoch_rx rx;
	struct fixture f;

	assert_non_null(old);
	make(&f, 0, 3);

	/* An END that does not count the live batch (a sender that forgot it). */
	assert_int_equal(epoch_pack_live(&tx, &sum, 0, f.pages, LIVE_PAGES, old), 0);
	append(&stream, &len, &tx);
	sum.open = false;
	assert_int_equal(epoch_pack(&tx, 0, f.pages, NR_PAGES, f.data, blobs(f.state), NULL), 0);
	append(&stream, &len, &tx);
	expect_refused(stream, len, GUEST_PAGES, -EPROTO, "closes epoch 0 with 600 pages");

	/* A flipped bit in live page data: the END's checksum covers the batch. */
	len = 0;
	live_epoch(&f, old, 0, false, &sum, &stream, &len);
	stream[len / 4] ^= 0x01;
	expect_refused(stream, len, GUEST_PAGES, -EILSEQ, "checksum");

	/* Cut after the live batch: nothing reported, the epoch stays open. */
	len = 0;
	assert_int_equal(epoch_pack_live(&tx, &sum, 0, f.pages, LIVE_PAGES, old), 0);
	append(&stream, &len, &tx);
	sum.open = false;
	assert_int_equal(rx_init(&rx, GUEST_PAGES, 2, 1), 0);
	assert_int_equal(feed(&rx, stream, len, 4096), 0);
	assert_int_equal(rx.phase, EPOCH_RX_OPEN);
	epoch_rx_free(&rx);

	/* ...and an initial-sync epoch may not follow it. */
	assert_int_equal(epoch_pack(&tx, 0, f.pages, 10, f.data, NULL, &sync), 0);
	append(&stream, &len, &tx);
	expect_refused(stream, len, GUEST_PAGES, -EPROTO, "live pages in an initial-sync epoch");

	/* A live batch of the wrong epoch. */
	len = 0;
	assert_int_equal(epoch_pack_live(&tx, &other, 1, f.pages, 10, old), 0);
	append(&stream, &len, &tx);
	expect_refused(stream, len, GUEST_PAGES, -EPROTO, "epoch 1 out of order");

	/* A live batch naming a page outside guest memory. */
	{
		struct epoch_tx t0 = { 0 };
		uint8_t *s0;

		other.open = false;
		assert_int_equal(epoch_pack_live(&t0, &other, 0, (uint64_t[]){ 5, 1500 }, 2, old),
				 0);
		s0 = flatten(&t0);
		expect_refused(s0, t0.bytes, 1000, -ERANGE, "outside guest memory");
		free(s0);
		epoch_tx_free(&t0);
	}

	/* A live batch inside an epoch's pages: out of order. */
	{
		size_t begin_len =
			WIRE_HDR_SIZE + (f.stream[8] | f.stream[9] << 8 | f.stream[10] << 16);
		uint8_t *s = malloc(begin_len + tx.bytes);
		uint8_t *live = flatten(&tx);

		assert_non_null(s);
		memcpy(s, f.stream, begin_len);
		memcpy(s + begin_len, live, tx.bytes);
		/* The live batch claims epoch 1: the frame's own epoch is checked first. */
		expect_refused(s, begin_len + tx.bytes, GUEST_PAGES, -EPROTO, "expected pages");
		free(live);
		free(s);
	}

	/* More copies than an epoch may carry (EPOCH_MAX_COPIES of guest memory). */
	len = 0;
	other.open = false;
	for (unsigned int i = 0; i < 3; i++) {
		uint64_t pages[100];

		for (unsigned int k = 0; k < 100; k++)
			pages[k] = k;
		assert_int_equal(epoch_pack_live(&tx, &other, 0, pages, 100, old), 0);
		append(&stream, &len, &tx);
	}
	expect_refused(stream, len, 140, -ERANGE, "300 pages in one epoch for a guest of 140");

	epoch_tx_free(&tx);
	epoch_sum_free(&sum);
	epoch_sum_free(&other);
	free(stream);
	free(old);
	drop(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip_any_chunking),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_empty_epoch),
		cmocka_unit_test(test_initial_sync_epoch),
		cmocka_unit_test(test_long_page_list),
		cmocka_unit_test(test_live_batches),
		cmocka_unit_test(test_live_refusals),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
