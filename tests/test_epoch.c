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
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib/diskimg.h"
#include "lib/disklog.h"
#include "proto/disk_wire.h"
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

/* ---- the replicated disk ----------------------------------------------------- */

#define DISK_SIZE (1ULL << 30)

/* Writes at several places, a zeroed range, a write split at DISK_REC_MAX, a flush. */
static void disk_log_fill(struct disk_log *log, uint8_t *buf, size_t buf_len)
{
	for (size_t i = 0; i < buf_len; i++)
		buf[i] = (uint8_t)next();
	assert_int_equal(disk_log_append(log, 0, buf, 512, 0), 0);
	assert_int_equal(disk_log_append(log, DISK_SIZE - 4096, buf + 512, 4096, 0), 0);
	assert_int_equal(disk_log_append(log, 1 << 20, NULL, 3u << 20, DISK_REC_ZERO), 0);
	assert_int_equal(disk_log_append(log, 7 * 512, buf + 8192, DISK_REC_MAX + 1024, 0), 0);
	assert_int_equal(disk_log_append(log, 0, NULL, 0, DISK_REC_FLUSH), 0);
	assert_int_equal(disk_log_append(log, 0, buf + 4608, 512, 0), 0); /* after the flush */
}

static void check_disk_equal(const struct disk_log *a, const struct disk_log *b)
{
	assert_int_equal(a->nr, b->nr);
	assert_int_equal(a->flush, b->flush);
	assert_int_equal(disk_log_bytes(a), disk_log_bytes(b));
	for (size_t i = 0; i < a->nr; i++) {
		const struct disk_rec *x = &a->recs[i], *y = &b->recs[i];

		assert_true(x->offset == y->offset);
		assert_int_equal(x->len, y->len);
		assert_int_equal(x->flags, y->flags);
		if (!x->flags)
			assert_memory_equal(disk_rec_data(a, x), disk_rec_data(b, y), x->len);
	}
}

/* A receiver with a disk of DISK_SIZE bytes (or none). */
static int rx_init_disk(struct epoch_rx *rx, uint64_t disk_size)
{
	int r = rx_init(rx, GUEST_PAGES, 2, 1);

	if (r == 0)
		epoch_rx_set_disk(rx, disk_size);
	return r;
}

/* Epoch `epoch` with the fixture's pages and state and this disk log, flattened. */
static uint8_t *pack_disk(struct fixture *f, uint64_t epoch, const struct disk_log *log,
			  uint64_t disk_hash, size_t *ret_len)
{
	struct epoch_opts opts = { .disk = log, .disk_hash = disk_hash };
	struct epoch_tx tx = { 0 };
	uint8_t *buf;

	assert_int_equal(
		epoch_pack(&tx, epoch, f->pages, NR_PAGES, f->data, blobs(f->state), &opts), 0);
	assert_int_equal(tx.disk_bytes, disk_log_bytes(log));
	buf = flatten(&tx);
	*ret_len = tx.bytes;
	epoch_tx_free(&tx);
	return buf;
}

/* The byte offset of the nth (from 0) frame of type `type` in a flat stream. */
static size_t frame_at(const uint8_t *s, size_t len, uint16_t type, unsigned int nth)
{
	for (size_t off = 0; off + WIRE_HDR_SIZE <= len;) {
		struct wire_hdr h;

		assert_int_equal(wire_hdr_decode(s + off, &h), 0);
		if (h.type == type && nth-- == 0)
			return off;
		off += WIRE_HDR_SIZE + h.length;
	}
	fail_msg("no frame of type %u", type);
	return 0;
}

/*
 * Disk records travel with the epoch's pages and state, byte for byte, in log
 * order, whatever the chunking; the next epoch's records replace them.
 */
static void test_disk_round_trip(void **state)
{
	size_t chunks[] = { 1, 7, 4096, SIZE_MAX / 2 };
	size_t buf_len = 2 * DISK_REC_MAX;
	uint8_t *buf = malloc(buf_len);
	struct disk_log log = { 0 }, log1 = { 0 };
	struct fixture f0, f1;

	assert_non_null(buf);
	disk_log_fill(&log, buf, buf_len);
	assert_int_equal(log.nr, 9); /* the long write and the zeroing came split */
	assert_int_equal(disk_log_append(&log1, 4096, buf, 1024, 0), 0);
	make(&f0, 0, 3);
	make(&f1, 1, 11);
	for (size_t c = 0; c < sizeof(chunks) / sizeof(chunks[0]); c++) {
		size_t len0, len1;
		uint8_t *s0 = pack_disk(&f0, 0, &log, 0x1234, &len0);
		uint8_t *s1 = pack_disk(&f1, 1, &log1, 0, &len1);
		struct epoch_rx rx;

		assert_int_equal(rx_init_disk(&rx, DISK_SIZE), 0);
		assert_int_equal(feed(&rx, s0, len0, chunks[c]), 1);
		check_staged(&rx, &f0, 0);
		check_disk_equal(&rx.disk, &log);
		assert_true(rx.disk_hash == 0x1234);
		assert_int_equal(feed(&rx, s1, len1, chunks[c]), 1);
		check_staged(&rx, &f1, 1);
		check_disk_equal(&rx.disk, &log1);
		assert_true(rx.disk_hash == 0);
		epoch_rx_free(&rx);
		free(s0);
		free(s1);
	}
	/* An epoch without records stages none, also after one with records. */
	{
		struct disk_log none = { 0 };
		size_t len0, len1;
		uint8_t *s0 = pack_disk(&f0, 0, &log, 0, &len0);
		uint8_t *s1 = pack_disk(&f1, 1, &none, 0, &len1);
		struct epoch_rx rx;

		assert_int_equal(rx_init_disk(&rx, DISK_SIZE), 0);
		assert_int_equal(feed(&rx, s0, len0, 65536), 1);
		assert_int_equal(feed(&rx, s1, len1, 65536), 1);
		assert_int_equal(rx.disk.nr, 0);
		assert_false(rx.disk.flush);
		epoch_rx_free(&rx);
		free(s0);
		free(s1);
	}
	drop(&f0);
	drop(&f1);
	disk_log_free(&log);
	disk_log_free(&log1);
	free(buf);
}

/* The disk's initial copy: sync epochs with records and no pages at all, or with some. */
static void test_disk_sync_epoch(void **state)
{
	const uint64_t pages[1] = { 5 };
	uint8_t *page = calloc(1, WIRE_PAGE_SIZE), *buf = malloc(2 * DISK_REC_MAX), *s;
	struct epoch_opts opts = { .initial_sync = true };
	struct disk_log log = { 0 };
	struct epoch_tx tx = { 0 };
	struct epoch_rx rx;

	assert_non_null(page);
	assert_non_null(buf);
	disk_log_fill(&log, buf, 2 * DISK_REC_MAX);
	opts.disk = &log;
	assert_int_equal(rx_init_disk(&rx, DISK_SIZE), 0);
	assert_int_equal(epoch_pack(&tx, 0, NULL, 0, NULL, NULL, &opts), 0);
	s = flatten(&tx);
	assert_int_equal(feed(&rx, s, tx.bytes, 3000), 1);
	free(s);
	assert_true(rx.initial_sync);
	assert_int_equal(rx.nr_pages, 0);
	check_disk_equal(&rx.disk, &log);
	/* The next sync epoch: a page, then records. */
	assert_int_equal(epoch_pack(&tx, 1, pages, 1, page, NULL, &opts), 0);
	s = flatten(&tx);
	assert_int_equal(feed(&rx, s, tx.bytes, 3000), 1);
	free(s);
	assert_int_equal(rx.nr_pages, 1);
	check_disk_equal(&rx.disk, &log);
	epoch_rx_free(&rx);
	epoch_tx_free(&tx);
	disk_log_free(&log);
	free(page);
	free(buf);
}

/*
 * Feeds a stream to a receiver with a disk of disk_size bytes: refused with err,
 * nothing reported; or, err 0, accepted as one epoch.
 */
static void expect_disk_refused(const uint8_t *s, size_t len, uint64_t disk_size, int err,
				const char *needle)
{
	struct epoch_rx rx;

	assert_int_equal(rx_init_disk(&rx, disk_size), 0);
	assert_int_equal(feed(&rx, s, len, 5000), err ? err : 1);
	if (!strstr(rx.error, needle))
		fail_msg("error '%s' lacks '%s'", rx.error, needle);
	epoch_rx_free(&rx);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	put32(p, (uint32_t)v);
	put32(p + 4, (uint32_t)(v >> 32));
}

/*
 * Every check of a DISK record, each with its message; and the checksum
 * covers the records' data. The stream's first DISK frame is patched.
 */
static void test_disk_refusals(void **state)
{
	uint8_t data[4096];
	struct disk_log log = { 0 };
	struct epoch_state *st;
	struct machine_state *ms = calloc(1, sizeof(*ms));
	struct epoch_tx tx = { 0 };
	struct epoch_rx rx;
	uint8_t *s, *p;
	size_t len, at;

	assert_non_null(ms);
	ms->nr_vcpus = 2;
	ms->nr_devices = 1;
	st = (struct epoch_state *)blobs(ms);
	memset(data, 0x3c, sizeof(data));
	/* EPOCH_BEGIN (frame 1, no pages), DISK (frame 2), STATE, EPOCH_END. */
	assert_int_equal(disk_log_append(&log, DISK_SIZE, data, 4096, 0), 0);
	assert_int_equal(
		epoch_pack(&tx, 0, NULL, 0, NULL, st, &(struct epoch_opts){ .disk = &log }), 0);
	s = flatten(&tx);
	len = tx.bytes;
	at = frame_at(s, len, WIRE_DISK, 0) + WIRE_HDR_SIZE; /* the record header */
	p = s + at;

	/* Beyond the image: the exact message, and no epoch reported. */
	assert_int_equal(rx_init_disk(&rx, DISK_SIZE), 0);
	assert_int_equal(feed(&rx, s, len, 5000), -ERANGE);
	assert_string_equal(rx.error, "frame 2 (disk) of epoch 0: write of 4096 bytes at "
				      "1073741824 is beyond the image (1073741824 bytes)");
	assert_int_equal(rx.phase, EPOCH_RX_STATE);
	epoch_rx_free(&rx);
	/* Ending inside the image, it is accepted... */
	expect_disk_refused(s, len, DISK_SIZE + 4096, 0, "");
	/* ...past it by a sector, not; and a zeroing is checked the same way. */
	expect_disk_refused(s, len, DISK_SIZE + 3584, -ERANGE, "is beyond the image");
	put64(p, UINT64_MAX - 511); /* offset + len wraps */
	expect_disk_refused(s, len, DISK_SIZE, -ERANGE, "is beyond the image");
	put64(p, DISK_SIZE);

	/* Unaligned offset, lengths that do not match the data. */
	put64(p, DISK_SIZE - 4096 + 1);
	expect_disk_refused(s, len, DISK_SIZE, -EPROTO,
			    "write of 4096 bytes at 1073737729 is not in whole 512-byte sectors");
	put64(p, 0);
	put32(p + 8, 4000);
	expect_disk_refused(s, len, DISK_SIZE, -EPROTO, "write of 4000 bytes with 4096");
	put32(p + 8, 0);
	expect_disk_refused(s, len, DISK_SIZE, -EPROTO, "write of 0 bytes with 4096");
	put32(p + 8, 4096);
	put64(p, DISK_SIZE);
	{
		/* A whole frame of 1000 bytes of data: consistent, but not whole sectors. */
		struct disk_log odd = { 0 };
		uint8_t *s2;

		odd.recs = &(struct disk_rec){ .offset = 0, .len = 1000 };
		odd.nr = 1;
		odd.data = data;
		odd.data_len = 1000;
		assert_int_equal(
			epoch_pack(&tx, 0, NULL, 0, NULL, st, &(struct epoch_opts){ .disk = &odd }),
			0);
		s2 = flatten(&tx);
		expect_disk_refused(s2, tx.bytes, DISK_SIZE, -EPROTO,
				    "write of 1000 bytes at 0 is not in whole 512-byte sectors");
		free(s2);
	}

	/* Bad flags; data where none belongs. */
	put32(p + 12, 4);
	expect_disk_refused(s, len, DISK_SIZE, -EPROTO, "disk record flags 0x4");
	put32(p + 12, DISK_REC_ZERO | DISK_REC_FLUSH);
	expect_disk_refused(s, len, DISK_SIZE, -EPROTO, "disk record flags 0x3");
	put32(p + 12, DISK_REC_ZERO);
	expect_disk_refused(s, len, DISK_SIZE, -EPROTO, "zeroing of 4096 bytes with 4096 bytes");
	put32(p + 12, DISK_REC_FLUSH);
	expect_disk_refused(s, len, DISK_SIZE, -EPROTO, "flush of 4096 bytes");
	put32(p + 12, 0);

	/* A receiver without a disk refuses any record. */
	expect_disk_refused(s, len, DISK_SIZE + 4096, 0, "");
	expect_disk_refused(s, len, 0, -EPROTO,
			    "frame 2 (disk) of epoch 0: a disk record, but no disk here");

	/* A flipped data byte: the checksum catches it at EPOCH_END. */
	p[WIRE_DISK_HDR + 100] ^= 0x01;
	expect_disk_refused(s, len, DISK_SIZE + 4096, -EILSEQ, "checksum");
	p[WIRE_DISK_HDR + 100] ^= 0x01;
	expect_disk_refused(s, len, DISK_SIZE + 4096, 0, "");

	/* Out of order: after STATE, before EPOCH_BEGIN, amid the pages. */
	{
		size_t st_at = frame_at(s, len, WIRE_STATE, 0);
		size_t end = frame_at(s, len, WIRE_EPOCH_END, 0);
		size_t disk_len = st_at - (at - WIRE_HDR_SIZE);
		uint8_t *o = malloc(len + 2 * WIRE_PAGE_SIZE);
		struct fixture f;

		assert_non_null(o);
		/* BEGIN, STATE, DISK, END */
		memcpy(o, s, at - WIRE_HDR_SIZE);
		memcpy(o + (at - WIRE_HDR_SIZE), s + st_at, end - st_at);
		memcpy(o + (at - WIRE_HDR_SIZE) + (end - st_at), s + at - WIRE_HDR_SIZE, disk_len);
		memcpy(o + end, s + end, len - end);
		expect_disk_refused(o, len, DISK_SIZE, -EPROTO,
				    "frame 3 (disk) of epoch 0: out of order: expected epoch-end");
		/* DISK first */
		expect_disk_refused(s + at - WIRE_HDR_SIZE, len - (at - WIRE_HDR_SIZE), DISK_SIZE,
				    -EPROTO,
				    "frame 1 (disk) of epoch 0: out of order: expected "
				    "epoch-begin");
		free(o);
		/* BEGIN (600 pages), DISK where the first PAGES belongs */
		make(&f, 0, 3);
		{
			size_t pages = frame_at(f.stream, f.len, WIRE_PAGES, 0);

			o = malloc(pages + disk_len);
			assert_non_null(o);
			memcpy(o, f.stream, pages);
			memcpy(o + pages, s + at - WIRE_HDR_SIZE, disk_len);
			expect_disk_refused(o, pages + disk_len, DISK_SIZE, -EPROTO,
					    "out of order: expected pages");
			free(o);
		}
		drop(&f);
	}
	free(s);

	/* The sender refuses a log beyond an epoch's bounds. */
	{
		struct disk_log big = { .data_len = (size_t)EPOCH_DISK_MAX + 1 };

		assert_int_equal(
			epoch_pack(&tx, 0, NULL, 0, NULL, st, &(struct epoch_opts){ .disk = &big }),
			-EMSGSIZE);
		big = (struct disk_log){ .nr = EPOCH_DISK_RECS_MAX + 1 };
		assert_int_equal(
			epoch_pack(&tx, 0, NULL, 0, NULL, st, &(struct epoch_opts){ .disk = &big }),
			-EMSGSIZE);
	}
	epoch_tx_free(&tx);
	disk_log_free(&log);
	free(ms);
}

/* Feeds a packed tx iovec by iovec (no flat copy); returns epochs or the error. */
static int feed_tx(struct epoch_rx *rx, const struct epoch_tx *tx)
{
	int epochs = 0;

	for (unsigned int i = 0; i < tx->nr_iov; i++) {
		const uint8_t *p = tx->iov[i].iov_base;
		size_t left = tx->iov[i].iov_len, used;

		while (left) {
			int r = epoch_rx_feed(rx, p, left, &used);

			if (r < 0)
				return r;
			epochs += r;
			p += used;
			left -= used;
		}
	}
	return epochs;
}

/*
 * What one epoch may stage: EPOCH_DISK_MAX bytes of writes (a hand-made log
 * whose records all send the same 1 MiB) and EPOCH_DISK_RECS_MAX records.
 */
static void test_disk_bounds(void **state)
{
	const uint32_t n = EPOCH_DISK_MAX / DISK_REC_MAX;
	struct disk_log log = { 0 };
	struct disk_rec *recs = calloc(EPOCH_DISK_RECS_MAX + 1, sizeof(*recs));
	uint8_t *data = calloc(1, DISK_REC_MAX);
	struct machine_state *ms = calloc(1, sizeof(*ms));
	const struct epoch_state *st;
	struct epoch_tx tx = { 0 };
	struct epoch_rx rx;

	assert_non_null(recs);
	assert_non_null(data);
	assert_non_null(ms);
	ms->nr_vcpus = 2;
	ms->nr_devices = 1;
	st = blobs(ms);
	for (uint32_t i = 0; i <= n; i++)
		recs[i] = (struct disk_rec){ .offset = (uint64_t)i * DISK_REC_MAX,
					     .len = DISK_REC_MAX };
	log.recs = recs;
	log.data = data;
	log.data_len = DISK_REC_MAX;

	/* Exactly the bound: accepted. */
	log.nr = n;
	assert_int_equal(
		epoch_pack(&tx, 0, NULL, 0, NULL, st, &(struct epoch_opts){ .disk = &log }), 0);
	assert_true(tx.disk_bytes == EPOCH_DISK_MAX);
	assert_int_equal(rx_init_disk(&rx, DISK_SIZE), 0);
	assert_int_equal(feed_tx(&rx, &tx), 1);
	assert_true(disk_log_bytes(&rx.disk) == EPOCH_DISK_MAX);
	epoch_rx_free(&rx);
	/* A record more: refused at that record. */
	log.nr = n + 1;
	assert_int_equal(
		epoch_pack(&tx, 0, NULL, 0, NULL, st, &(struct epoch_opts){ .disk = &log }), 0);
	assert_int_equal(rx_init_disk(&rx, DISK_SIZE), 0);
	assert_int_equal(feed_tx(&rx, &tx), -EMSGSIZE);
	assert_non_null(strstr(rx.error, "frame 258 (disk) of epoch 0: more than"));
	epoch_rx_free(&rx);

	/* Records without data: EPOCH_DISK_RECS_MAX of them, then one more. */
	for (uint32_t i = 0; i <= EPOCH_DISK_RECS_MAX; i++)
		recs[i] = (struct disk_rec){ .offset = 0, .len = 512, .flags = DISK_REC_ZERO };
	log.data_len = 0;
	log.nr = EPOCH_DISK_RECS_MAX;
	assert_int_equal(
		epoch_pack(&tx, 0, NULL, 0, NULL, st, &(struct epoch_opts){ .disk = &log }), 0);
	assert_int_equal(rx_init_disk(&rx, DISK_SIZE), 0);
	assert_int_equal(feed_tx(&rx, &tx), 1);
	assert_int_equal(rx.disk.nr, EPOCH_DISK_RECS_MAX);
	/* The bound is the epoch's: the next may carry as many again. */
	assert_int_equal(
		epoch_pack(&tx, 1, NULL, 0, NULL, st, &(struct epoch_opts){ .disk = &log }), 0);
	assert_int_equal(feed_tx(&rx, &tx), 1);
	assert_int_equal(rx.disk.nr, EPOCH_DISK_RECS_MAX);
	epoch_rx_free(&rx);
	assert_int_equal(
		epoch_pack(&tx, 0, NULL, 0, NULL, st, &(struct epoch_opts){ .disk = &log }), 0);
	{
		/* The extra record goes in before STATE (the sender would not pack it). */
		uint8_t *s = flatten(&tx), *o = malloc(tx.bytes + WIRE_HDR_SIZE + WIRE_DISK_HDR);
		size_t st_at = frame_at(s, tx.bytes, WIRE_STATE, 0);
		size_t one = WIRE_HDR_SIZE + WIRE_DISK_HDR;

		assert_non_null(o);
		memcpy(o, s, st_at);
		memcpy(o + st_at, s + st_at - one, one);
		memcpy(o + st_at + one, s + st_at, tx.bytes - st_at);
		expect_disk_refused(o, tx.bytes + one, DISK_SIZE, -EMSGSIZE,
				    "more than 262144 disk records");
		free(o);
		free(s);
	}
	epoch_tx_free(&tx);
	free(recs);
	free(data);
	free(ms);
}

/* One epoch without pages carrying these hand-made records (data at their data_off), flat. */
static uint8_t *pack_recs(uint64_t epoch, const struct disk_rec *recs, size_t nr,
			  const uint8_t *data, size_t data_len, size_t *ret_len)
{
	struct disk_log log = { .recs = (struct disk_rec *)recs,
				.nr = nr,
				.data = (uint8_t *)data,
				.data_len = data_len };
	struct machine_state *ms = calloc(1, sizeof(*ms));
	struct epoch_tx tx = { 0 };
	uint8_t *s;

	assert_non_null(ms);
	ms->nr_vcpus = 2;
	ms->nr_devices = 1;
	assert_int_equal(epoch_pack(&tx, epoch, NULL, 0, NULL, blobs(ms),
				    &(struct epoch_opts){ .disk = &log }),
			 0);
	s = flatten(&tx);
	*ret_len = tx.bytes;
	epoch_tx_free(&tx);
	free(ms);
	return s;
}

/*
 * A receiver with a disk of DISK_SIZE bytes refuses the stream with err and
 * exactly this message (frame 2: the epoch's first record), reports no epoch,
 * and takes nothing more.
 */
static void expect_rec_refused(const uint8_t *s, size_t len, int err, const char *what)
{
	struct epoch_rx rx;
	char want[256];
	size_t used;

	assert_int_equal(rx_init_disk(&rx, DISK_SIZE), 0);
	assert_int_equal(feed(&rx, s, len, 5000), err);
	snprintf(want, sizeof(want), "frame 2 (disk) of epoch 0: %s", what);
	assert_string_equal(rx.error, want);
	assert_int_equal(rx.phase, EPOCH_RX_STATE);
	assert_int_equal(epoch_rx_feed(&rx, s, len, &used), -EPIPE);
	epoch_rx_free(&rx);
}

/* The same for an epoch of the one record r (a write sends data[0..len)). */
static void expect_one_refused(struct disk_rec r, const uint8_t *data, int err, const char *what)
{
	size_t len;
	uint8_t *s = pack_recs(0, &r, 1, data, r.flags ? 0 : r.len, &len);

	expect_rec_refused(s, len, err, what);
	free(s);
}

/*
 * A DISK record at each edge: 1 MiB exactly at the image's end taken whole, a
 * sector beyond it or past 2^64 refused; zeroings checked as writes are; a
 * flush's offset means nothing; bad frame lengths, a foreign epoch number and a
 * DISK frame inside a live batch, each with its message.
 */
static void test_disk_edges(void **state)
{
	const uint64_t end = DISK_SIZE - DISK_REC_MAX;
	uint8_t *data = malloc(DISK_REC_MAX), *s;
	struct disk_rec recs[3];
	struct epoch_rx rx;
	size_t len, at;

	assert_non_null(data);
	for (size_t i = 0; i < DISK_REC_MAX; i++)
		data[i] = (uint8_t)next();

	/* A 1 MiB write and a 1 MiB zeroing ending at the image's last byte, a flush. */
	recs[0] = (struct disk_rec){ .offset = end, .len = DISK_REC_MAX };
	recs[1] = (struct disk_rec){ .offset = end, .len = DISK_REC_MAX, .flags = DISK_REC_ZERO };
	recs[2] = (struct disk_rec){ .offset = DISK_SIZE + 1, .flags = DISK_REC_FLUSH };
	s = pack_recs(0, recs, 3, data, DISK_REC_MAX, &len);
	assert_int_equal(rx_init_disk(&rx, DISK_SIZE), 0);
	assert_int_equal(feed(&rx, s, len, 100000), 1);
	assert_int_equal(rx.disk.nr, 3);
	assert_true(disk_log_bytes(&rx.disk) == DISK_REC_MAX);
	assert_true(rx.disk.flush);
	assert_true(rx.disk.recs[0].offset == end && rx.disk.recs[0].len == DISK_REC_MAX);
	assert_int_equal(rx.disk.recs[0].flags, 0);
	assert_memory_equal(disk_rec_data(&rx.disk, &rx.disk.recs[0]), data, DISK_REC_MAX);
	assert_true(rx.disk.recs[1].offset == end && rx.disk.recs[1].len == DISK_REC_MAX);
	assert_int_equal(rx.disk.recs[1].flags, DISK_REC_ZERO);
	/* A flush is a point in the log: staged at 0, whatever offset it came with. */
	assert_true(rx.disk.recs[2].offset == 0 && rx.disk.recs[2].len == 0);
	assert_int_equal(rx.disk.recs[2].flags, DISK_REC_FLUSH);
	epoch_rx_free(&rx);
	free(s);

	/* A sector beyond the end, at the end, and a range that wraps past 2^64. */
	expect_one_refused((struct disk_rec){ .offset = end + 512, .len = DISK_REC_MAX }, data,
			   -ERANGE,
			   "write of 1048576 bytes at 1072693760 is beyond the image (1073741824 "
			   "bytes)");
	expect_one_refused((struct disk_rec){ .offset = end + 512,
					      .len = DISK_REC_MAX,
					      .flags = DISK_REC_ZERO },
			   NULL, -ERANGE,
			   "zeroing of 1048576 bytes at 1072693760 is beyond the image (1073741824 "
			   "bytes)");
	expect_one_refused((struct disk_rec){ .offset = DISK_SIZE, .len = 512 }, data, -ERANGE,
			   "write of 512 bytes at 1073741824 is beyond the image (1073741824 "
			   "bytes)");
	expect_one_refused(
		(struct disk_rec){ .offset = UINT64_MAX - 511, .len = 512, .flags = DISK_REC_ZERO },
		NULL, -ERANGE,
		"zeroing of 512 bytes at 18446744073709551104 is beyond the image "
		"(1073741824 bytes)");
	/* Zeroings: whole sectors, not empty. Writes: not empty. */
	expect_one_refused((struct disk_rec){ .offset = 100, .len = 512, .flags = DISK_REC_ZERO },
			   NULL, -EPROTO,
			   "zeroing of 512 bytes at 100 is not in whole 512-byte sectors");
	expect_one_refused((struct disk_rec){ .offset = 0, .len = 1000, .flags = DISK_REC_ZERO },
			   NULL, -EPROTO,
			   "zeroing of 1000 bytes at 0 is not in whole 512-byte sectors");
	expect_one_refused((struct disk_rec){ .offset = 0, .len = 0, .flags = DISK_REC_ZERO }, NULL,
			   -EPROTO, "zeroing of 0 bytes with 0 bytes of data");
	expect_one_refused((struct disk_rec){ .offset = 0, .len = 0 }, data, -EPROTO,
			   "write of 0 bytes with 0 bytes of data");

	/* Patched record headers: a zeroing over 1 MiB, a flush with data. */
	s = pack_recs(0, &(struct disk_rec){ .offset = 0, .len = 512 }, 1, data, 512, &len);
	at = frame_at(s, len, WIRE_DISK, 0);
	put32(s + at + WIRE_HDR_SIZE + 12, DISK_REC_ZERO);
	put32(s + at + WIRE_HDR_SIZE + 8, DISK_REC_MAX + 512);
	expect_rec_refused(s, len, -EPROTO, "zeroing of 1049088 bytes with 512 bytes of data");
	put32(s + at + WIRE_HDR_SIZE + 12, DISK_REC_FLUSH);
	put32(s + at + WIRE_HDR_SIZE + 8, 0);
	expect_rec_refused(s, len, -EPROTO, "flush of 0 bytes with 512 bytes of data");
	put32(s + at + WIRE_HDR_SIZE + 12, 0);
	put32(s + at + WIRE_HDR_SIZE + 8, 512);
	expect_disk_refused(s, len, DISK_SIZE, 0, "");

	/* Frame headers: shorter than a record header, longer than 1 MiB of data, another epoch. */
	put32(s + at + 8, 8);
	expect_rec_refused(s, len, -EMSGSIZE, "disk frame of 8 bytes: not a 16-byte header");
	put32(s + at + 8, WIRE_MAX_DISK + 512);
	expect_rec_refused(s, len, -EMSGSIZE, "disk frame of 1049104 bytes exceeds its bound");
	put32(s + at + 8, WIRE_DISK_HDR + 512);
	put64(s + at + 16, 7);
	expect_rec_refused(s, len, -EPROTO, "frame of epoch 7 inside epoch 0");
	put64(s + at + 16, 0);

	/* Inside a live batch's pages, and between the batch and its EPOCH_BEGIN. */
	{
		struct epoch_sum sum = { 0 };
		struct epoch_tx tx = { 0 };
		uint8_t *o = NULL, *page = calloc(1, WIRE_PAGE_SIZE);
		const uint64_t pages[1] = { 1 };
		size_t olen = 0, disk_len = frame_at(s, len, WIRE_STATE, 0) - at, live;

		assert_non_null(page);
		assert_int_equal(epoch_pack_live(&tx, &sum, 0, pages, 1, page), 0);
		append(&o, &olen, &tx);
		live = frame_at(o, olen, WIRE_PAGES, 0);
		o = realloc(o, olen + disk_len);
		assert_non_null(o);
		memcpy(o + olen, s + at, disk_len);
		expect_disk_refused(o, olen + disk_len, DISK_SIZE, -EPROTO,
				    "frame 3 (disk) of epoch 0: out of order: expected live-pages "
				    "or epoch-begin");
		memcpy(o + live, s + at, disk_len);
		expect_disk_refused(o, live + disk_len, DISK_SIZE, -EPROTO,
				    "frame 2 (disk) of epoch 0: out of order: expected pages");
		epoch_tx_free(&tx);
		epoch_sum_free(&sum);
		free(page);
		free(o);
	}

	/*
	 * After a whole epoch, a DISK frame before the next one's EPOCH_BEGIN: out
	 * of order, and that epoch's records (already applied) stay as they were.
	 */
	assert_int_equal(rx_init_disk(&rx, DISK_SIZE), 0);
	assert_int_equal(feed(&rx, s, len, 5000), 1);
	put64(s + at + 16, 1);
	assert_int_equal(feed(&rx, s + at, len - at, 5000), -EPROTO);
	/* Counted from the epoch's first frame: this is the first since epoch 0 ended. */
	assert_non_null(
		strstr(rx.error, "frame 1 (disk) of epoch 1: out of order: expected epoch-begin"));
	assert_int_equal(rx.disk.nr, 1);
	epoch_rx_free(&rx);
	free(s);
	free(data);
}

/* The log itself: what it refuses, where it splits, what clear, swap and free keep. */
static void test_disk_log(void **state)
{
	size_t buf_len = 2 * DISK_REC_MAX + 512;
	struct disk_log log = { 0 }, other = { 0 };
	uint8_t *buf = malloc(buf_len);
	struct disk_rec *recs;
	size_t cap, data_cap;

	assert_non_null(buf);
	for (size_t i = 0; i < buf_len; i++)
		buf[i] = (uint8_t)next();
	/* Refused, and nothing logged. */
	assert_int_equal(disk_log_append(&log, 1, buf, 512, 0), -EINVAL);
	assert_int_equal(disk_log_append(&log, 0, buf, 1000, 0), -EINVAL);
	assert_int_equal(disk_log_append(&log, 0, buf, 0, 0), -EINVAL);
	assert_int_equal(disk_log_append(&log, 0, NULL, 512, 0), -EINVAL);
	assert_int_equal(disk_log_append(&log, 0, NULL, 0, DISK_REC_ZERO), -EINVAL);
	assert_int_equal(disk_log_append(&log, 0, NULL, 512, 4), -EINVAL);
	assert_int_equal(disk_log_append(&log, 0, NULL, 512, DISK_REC_FLAGS), -EINVAL);
	assert_int_equal(disk_log_append(&log, 0, NULL, 512, DISK_REC_FLUSH), -EINVAL);
	assert_int_equal(log.nr, 0);
	assert_int_equal(disk_log_bytes(&log), 0);
	assert_false(log.flush);

	/* Exactly DISK_REC_MAX is one record; a sector more is two. */
	assert_int_equal(disk_log_append(&log, 4096, buf, DISK_REC_MAX, 0), 0);
	assert_int_equal(log.nr, 1);
	assert_int_equal(disk_log_append(&log, 0, buf, DISK_REC_MAX + 512, 0), 0);
	assert_int_equal(log.nr, 3);
	assert_true(log.recs[1].offset == 0 && log.recs[1].len == DISK_REC_MAX);
	assert_true(log.recs[1].data_off == DISK_REC_MAX);
	assert_true(log.recs[2].offset == DISK_REC_MAX && log.recs[2].len == 512);
	assert_true(log.recs[2].data_off == 2 * DISK_REC_MAX);
	assert_memory_equal(disk_rec_data(&log, &log.recs[0]), buf, DISK_REC_MAX);
	assert_memory_equal(disk_rec_data(&log, &log.recs[2]), buf + DISK_REC_MAX, 512);
	assert_true(disk_log_bytes(&log) == 2 * DISK_REC_MAX + 512);
	/* A zeroing splits the same way and holds no data; a flush is a point. */
	assert_int_equal(disk_log_append(&log, 0, NULL, 2 * DISK_REC_MAX + 512, DISK_REC_ZERO), 0);
	assert_int_equal(log.nr, 6);
	assert_true(log.recs[5].offset == 2 * DISK_REC_MAX && log.recs[5].len == 512);
	assert_int_equal(log.recs[5].flags, DISK_REC_ZERO);
	assert_true(disk_log_bytes(&log) == 2 * DISK_REC_MAX + 512);
	assert_false(log.flush);
	assert_int_equal(disk_log_append(&log, 0, NULL, 0, DISK_REC_FLUSH), 0);
	assert_int_equal(log.nr, 7);
	assert_true(log.flush);
	assert_int_equal(log.recs[6].len, 0);
	assert_int_equal(log.recs[6].flags, DISK_REC_FLUSH);

	/* Clear forgets the records, flush included, and keeps the buffers. */
	recs = log.recs;
	cap = log.cap;
	data_cap = log.data_cap;
	disk_log_clear(&log);
	assert_int_equal(log.nr, 0);
	assert_int_equal(disk_log_bytes(&log), 0);
	assert_false(log.flush);
	assert_int_equal(disk_log_append(&log, 512, buf + 512, 512, 0), 0);
	assert_ptr_equal(log.recs, recs);
	assert_int_equal(log.cap, cap);
	assert_int_equal(log.data_cap, data_cap);
	assert_true(log.recs[0].data_off == 0);
	assert_memory_equal(disk_rec_data(&log, &log.recs[0]), buf + 512, 512);

	/* Swap hands the whole log over; free leaves a zeroed log and may come twice. */
	disk_log_swap(&log, &other);
	assert_int_equal(log.nr, 0);
	assert_null(log.recs);
	assert_int_equal(other.nr, 1);
	assert_ptr_equal(other.recs, recs);
	disk_log_free(&other);
	assert_null(other.recs);
	assert_null(other.data);
	assert_int_equal(other.nr + other.cap + other.data_len + other.data_cap, 0);
	disk_log_free(&other);
	disk_log_free(&log);
	free(buf);
}

/* The process's address space in bytes, 0 if unknown. */
static uint64_t vm_size(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long pages = 0;

	if (!f)
		return 0;
	if (fscanf(f, "%lu", &pages) != 1)
		pages = 0;
	fclose(f);
	return (uint64_t)pages * (uint64_t)sysconf(_SC_PAGESIZE);
}

/*
 * In a child: a write longer than twice the address space in use (so no free
 * heap left by earlier tests can hold it) appended to a log whose buffer holds
 * 1 MiB, with the address space limited to a few MiB more. Exits 0 if it
 * failed leaving the log empty, 1 if it failed otherwise, 77 if this cannot
 * be set up here (no /proc; ASan's reserved address space, too big to double).
 */
static int disk_log_short_of_memory(void)
{
	uint64_t vm = vm_size(), len = (2 * vm / DISK_REC_MAX + 4) * DISK_REC_MAX;
	uint8_t *src = vm && len < (1ULL << 32) ? calloc(1, len) : NULL; /* zero pages */
	struct disk_log log = { 0 };
	struct rlimit rl;
	int r, ret = 77;

	if (!src || disk_log_append(&log, 0, src, DISK_REC_MAX, 0) < 0)
		goto out;
	disk_log_clear(&log);
	if (getrlimit(RLIMIT_AS, &rl) < 0)
		goto out;
	rl.rlim_cur = vm_size() + 5 * DISK_REC_MAX / 2;
	if (setrlimit(RLIMIT_AS, &rl) < 0)
		goto out;
	r = disk_log_append(&log, 0, src, len, 0);
	if (r < 0) /* else the limit is not enforced here */
		ret = r == -ENOMEM && log.nr == 0 && disk_log_bytes(&log) == 0 ? 0 : 1;
out:
	disk_log_free(&log);
	free(src);
	return ret;
}

/*
 * A write the log cannot take whole takes none of it: the device answers the
 * guest IOERR for it, so no part of it may reach the secondary's image.
 */
static void test_disk_log_enomem(void **state)
{
	pid_t pid = fork();
	int status;

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(disk_log_short_of_memory());
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	if (WEXITSTATUS(status) == 77) {
		print_message("No allocation failure to be had here: not tested\n");
		skip();
	}
	assert_int_equal(WEXITSTATUS(status), 0);
}

/* The secondary's block checksums: framed, parsed, and every bad frame refused. */
static void test_disk_sums(void **state)
{
	const uint64_t blocks = WIRE_MAX_DISK_SUMS + 10;
	size_t cap = disk_sums_frame_len(WIRE_MAX_DISK_SUMS);
	uint64_t *sums = malloc(blocks * sizeof(*sums)), *got = malloc(blocks * sizeof(*got));
	uint8_t *buf = malloc(cap);
	struct wire_hdr h;
	uint32_t count;
	char why[128];
	uint64_t at;
	int len;

	assert_non_null(sums);
	assert_non_null(got);
	assert_non_null(buf);
	for (uint64_t i = 0; i < blocks; i++)
		sums[i] = i % 3 ? next() : 0;
	/* A whole image in order: a full frame, then the rest. */
	for (at = 0; at < blocks; at += count) {
		uint32_t n = blocks - at < WIRE_MAX_DISK_SUMS ? (uint32_t)(blocks - at)
							      : WIRE_MAX_DISK_SUMS;

		len = disk_sums_frame(buf, cap, at, sums + at, n);
		assert_int_equal(len, disk_sums_frame_len(n));
		assert_int_equal(wire_hdr_decode(buf, &h), 0);
		assert_int_equal(h.type, WIRE_DISK_SUMS);
		assert_int_equal(h.length, len - WIRE_HDR_SIZE);
		assert_int_equal(disk_sums_parse(buf + WIRE_HDR_SIZE, h.length, blocks, at,
						 got + at, &count, why, sizeof(why)),
				 0);
		assert_int_equal(count, n);
	}
	assert_memory_equal(got, sums, blocks * sizeof(*sums));

	/* The sender: no empty frame, none too long, none beyond its buffer. */
	assert_int_equal(disk_sums_frame(buf, cap, 0, sums, 0), -EINVAL);
	assert_int_equal(disk_sums_frame(buf, cap, 0, sums, WIRE_MAX_DISK_SUMS + 1), -EINVAL);
	assert_int_equal(disk_sums_frame(buf, disk_sums_frame_len(4) - 1, 0, sums, 4), -ENOBUFS);

	/* The receiver: out of order, beyond the image, another block size, bad lengths. */
	len = disk_sums_frame(buf, cap, 16, sums, 16);
	assert_int_equal(disk_sums_parse(buf + WIRE_HDR_SIZE, len - WIRE_HDR_SIZE, 20, 0, got,
					 &count, why, sizeof(why)),
			 -EPROTO);
	assert_string_equal(why, "disk sums from block 16, expected block 0");
	assert_int_equal(disk_sums_parse(buf + WIRE_HDR_SIZE, len - WIRE_HDR_SIZE, 20, 16, got,
					 &count, why, sizeof(why)),
			 -ERANGE);
	assert_string_equal(why, "sums for blocks 16..32 of an image of 20 blocks");
	assert_int_equal(disk_sums_parse(buf + WIRE_HDR_SIZE, len - WIRE_HDR_SIZE, 32, 16, got,
					 &count, why, sizeof(why)),
			 0);
	assert_int_equal(disk_sums_parse(buf + WIRE_HDR_SIZE, len - WIRE_HDR_SIZE - 8, 32, 16, got,
					 &count, why, sizeof(why)),
			 -EBADMSG);
	assert_int_equal(
		disk_sums_parse(buf + WIRE_HDR_SIZE, 12, 32, 16, got, &count, why, sizeof(why)),
		-EBADMSG);
	put32(buf + WIRE_HDR_SIZE + 8, 0); /* count 0 */
	assert_int_equal(disk_sums_parse(buf + WIRE_HDR_SIZE, WIRE_DISK_HDR, 32, 16, got, &count,
					 why, sizeof(why)),
			 -EBADMSG);
	put32(buf + WIRE_HDR_SIZE + 8, 16);
	put32(buf + WIRE_HDR_SIZE + 12, 4096); /* another block size */
	assert_int_equal(disk_sums_parse(buf + WIRE_HDR_SIZE, len - WIRE_HDR_SIZE, 32, 16, got,
					 &count, why, sizeof(why)),
			 -EPROTO);
	assert_string_equal(why, "disk sums of 4096-byte blocks, expected 65536");
	put32(buf + WIRE_HDR_SIZE + 12, DISK_BLOCK);

	/* The messages of bad lengths; one frame more once the image is covered. */
	assert_int_equal(disk_sums_parse(buf + WIRE_HDR_SIZE, len - WIRE_HDR_SIZE - 8, 32, 16, got,
					 &count, why, sizeof(why)),
			 -EBADMSG);
	assert_string_equal(why, "disk sums frame of 136 bytes claims 16 sums");
	assert_int_equal(
		disk_sums_parse(buf + WIRE_HDR_SIZE, 12, 32, 16, got, &count, why, sizeof(why)),
		-EBADMSG);
	assert_string_equal(why, "disk sums of 12 bytes, shorter than their header");
	assert_int_equal(disk_sums_parse(buf + WIRE_HDR_SIZE, len - WIRE_HDR_SIZE, 16, 16, got,
					 &count, why, sizeof(why)),
			 -ERANGE);
	assert_string_equal(why, "sums for blocks 16..32 of an image of 16 blocks");
	assert_int_equal(disk_sums_parse(buf + WIRE_HDR_SIZE, len - WIRE_HDR_SIZE, 0, 16, got,
					 &count, why, sizeof(why)),
			 -ERANGE);
	/* More sums than a frame holds, even with the length to match. */
	{
		size_t big = disk_sums_frame_len(WIRE_MAX_DISK_SUMS + 1) - WIRE_HDR_SIZE;
		uint8_t *p = calloc(1, big);

		assert_non_null(p);
		put32(p + 8, WIRE_MAX_DISK_SUMS + 1);
		put32(p + 12, DISK_BLOCK);
		assert_int_equal(
			disk_sums_parse(p, big, UINT64_MAX, 0, got, &count, why, sizeof(why)),
			-EBADMSG);
		assert_string_equal(why, "disk sums frame of 524312 bytes claims 65537 sums");
		free(p);
	}
	free(sums);
	free(got);
	free(buf);
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
		cmocka_unit_test(test_disk_round_trip),
		cmocka_unit_test(test_disk_sync_epoch),
		cmocka_unit_test(test_disk_refusals),
		cmocka_unit_test(test_disk_bounds),
		cmocka_unit_test(test_disk_edges),
		cmocka_unit_test(test_disk_log),
		cmocka_unit_test(test_disk_log_enomem),
		cmocka_unit_test(test_disk_sums),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
