// SPDX-License-Identifier: MIT
/*
 * The sending side of an epoch's framing (see proto/epoch.h): epoch_pack()
 * and epoch_pack_live() describe the frames as iovecs over the sender's
 * staging, and struct epoch_sum carries the checksum across live batches.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "proto/disk_wire.h"
#include "proto/epoch.h"
#include "proto/ringft.pb-c.h"
#include "proto/wire.h"

static int tx_reserve(struct epoch_tx *tx, unsigned int iovs, size_t bytes)
{
	if (tx->nr_iov + iovs > tx->cap_iov) {
		unsigned int cap = (tx->nr_iov + iovs) * 2;
		struct iovec *iov = realloc(tx->iov, cap * sizeof(*iov));

		if (!iov)
			return -ENOMEM;
		tx->iov = iov;
		tx->cap_iov = cap;
	}
	if (tx->owned_len + bytes > tx->owned_cap) {
		/* iovecs point into `owned`: it is sized once per epoch, before use. */
		return -ENOBUFS;
	}
	return 0;
}

static void tx_add(struct epoch_tx *tx, const void *base, size_t len)
{
	tx->iov[tx->nr_iov++] = (struct iovec){ .iov_base = (void *)base, .iov_len = len };
	tx->bytes += len;
}

/* A header, then its payload (copied into `owned` when `copy`, else referenced). */
static uint8_t *tx_frame(struct epoch_tx *tx, uint16_t type, uint64_t epoch, uint32_t length)
{
	uint8_t *hdr = tx->owned + tx->owned_len;

	wire_hdr_encode(hdr, &(struct wire_hdr){ .type = type, .length = length, .epoch = epoch });
	tx->owned_len += WIRE_HDR_SIZE;
	tx_add(tx, hdr, WIRE_HDR_SIZE);
	return tx->owned + tx->owned_len;
}

static void tx_message(struct epoch_tx *tx, uint16_t type, uint64_t epoch,
		       const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *payload = tx_frame(tx, type, epoch, (uint32_t)len);

	protobuf_c_message_pack(m, payload);
	tx->owned_len += len;
	tx_add(tx, payload, len);
}

/* Empties tx and sizes it for `need` bytes of headers and messages and `iovs` iovecs. */
static int tx_start(struct epoch_tx *tx, size_t need, unsigned int iovs)
{
	if (need > tx->owned_cap) {
		uint8_t *o = realloc(tx->owned, need);

		if (!o)
			return -ENOMEM;
		tx->owned = o;
		tx->owned_cap = need;
	}
	tx->nr_iov = 0;
	tx->owned_len = 0;
	tx->bytes = 0;
	tx->disk_bytes = 0;
	return tx_reserve(tx, iovs, need);
}

static uint64_t page_frames(uint64_t nr_pages)
{
	return (nr_pages + WIRE_MAX_PAGES_PER_FRAME - 1) / WIRE_MAX_PAGES_PER_FRAME;
}

/* PAGES frames for nr_pages pages at data, whose data is sent from there. */
static void tx_pages(struct epoch_tx *tx, uint64_t epoch, uint64_t nr_pages, const uint8_t *data)
{
	for (uint64_t k = 0; k < nr_pages; k += WIRE_MAX_PAGES_PER_FRAME) {
		uint64_t n = nr_pages - k < WIRE_MAX_PAGES_PER_FRAME ? nr_pages - k
								     : WIRE_MAX_PAGES_PER_FRAME;

		tx_frame(tx, WIRE_PAGES, epoch, (uint32_t)(n * WIRE_PAGE_SIZE));
		tx_add(tx, data + k * WIRE_PAGE_SIZE, n * WIRE_PAGE_SIZE);
	}
}

/* Whether a disk log fits one epoch (epoch.h's bounds, which the receiver enforces). */
static int disk_check(const struct disk_log *d)
{
	if (!d)
		return 0;
	if (d->nr > EPOCH_DISK_RECS_MAX || disk_log_bytes(d) > EPOCH_DISK_MAX)
		return -EMSGSIZE;
	for (size_t i = 0; i < d->nr; i++)
		if (d->recs[i].len > DISK_REC_MAX ||
		    (!d->recs[i].flags && d->recs[i].data_off + d->recs[i].len > d->data_len))
			return -EINVAL;
	return 0;
}

/*
 * One DISK frame per record: header and record header in `owned`, a write's
 * data sent from the log's buffer itself.
 */
static void tx_disk(struct epoch_tx *tx, uint64_t epoch, const struct disk_log *d)
{
	for (size_t i = 0; d && i < d->nr; i++) {
		const struct disk_rec *r = &d->recs[i];
		uint32_t data = r->flags ? 0 : r->len;
		uint8_t *p = tx_frame(tx, WIRE_DISK, epoch, WIRE_DISK_HDR + data);

		disk_rec_hdr_encode(p, &(struct disk_rec_hdr){ r->offset, r->len, r->flags });
		tx->owned_len += WIRE_DISK_HDR;
		tx_add(tx, p, WIRE_DISK_HDR);
		if (data) {
			tx_add(tx, disk_rec_data(d, r), data);
			tx->disk_bytes += data;
		}
	}
}

static void tx_hash(const struct epoch_tx *tx, XXH3_state_t *h)
{
	for (unsigned int i = 0; i < tx->nr_iov; i++)
		XXH3_64bits_update(h, tx->iov[i].iov_base, tx->iov[i].iov_len);
}

int epoch_pack_live(struct epoch_tx *tx, struct epoch_sum *sum, uint64_t epoch,
		    const uint64_t *pages, uint64_t nr_pages, const uint8_t *data)
{
	Ringft__LivePages live = RINGFT__LIVE_PAGES__INIT;
	size_t need;
	int r;

	if (!nr_pages || (sum->open && sum->epoch != epoch))
		return -EINVAL;
	if (!sum->state) {
		sum->state = XXH3_createState();
		if (!sum->state)
			return -ENOMEM;
	}
	live.epoch = epoch;
	live.n_pages = nr_pages;
	live.pages = (uint64_t *)pages;
	need = WIRE_HDR_SIZE * (1 + page_frames(nr_pages)) +
	       ringft__live_pages__get_packed_size(&live);
	r = tx_start(tx, need, (unsigned int)(2 * page_frames(nr_pages) + 2));
	if (r < 0)
		return r;
	tx_message(tx, WIRE_LIVE_PAGES, epoch, &live.base);
	tx_pages(tx, epoch, nr_pages, data);
	if (!sum->open) {
		XXH3_64bits_reset(sum->state);
		sum->epoch = epoch;
		sum->pages = 0;
		sum->open = true;
	}
	tx_hash(tx, sum->state);
	sum->pages += nr_pages;
	return 0;
}

void epoch_sum_free(struct epoch_sum *sum)
{
	if (sum && sum->state)
		XXH3_freeState(sum->state);
	if (sum)
		memset(sum, 0, sizeof(*sum));
}

int epoch_pack(struct epoch_tx *tx, uint64_t epoch, const uint64_t *pages, uint64_t nr_pages,
	       const uint8_t *data, const struct epoch_state *state, const struct epoch_opts *opts)
{
	static const struct epoch_state no_state;
	static const struct epoch_opts no_opts;
	Ringft__EpochBegin begin = RINGFT__EPOCH_BEGIN__INIT;
	Ringft__State st = RINGFT__STATE__INIT;
	Ringft__EpochEnd end = RINGFT__EPOCH_END__INIT;
	ProtobufCBinaryData vcpus[EPOCH_MAX_VCPUS];
	Ringft__DeviceState devs[EPOCH_MAX_DEVICES], *devp[EPOCH_MAX_DEVICES];
	struct epoch_sum *sum;
	size_t need, nr_disk;
	XXH3_state_t *h;
	int r;

	if (!opts)
		opts = &no_opts;
	if (!state)
		state = &no_state;
	sum = opts->sum && opts->sum->open ? opts->sum : NULL;
	if (state->nr_vcpus > EPOCH_MAX_VCPUS || state->nr_devices > EPOCH_MAX_DEVICES ||
	    (!opts->initial_sync && !state->nr_vcpus) ||
	    (sum && (sum->epoch != epoch || opts->initial_sync)))
		return -EINVAL;
	begin.epoch = epoch;
	begin.initial_sync = opts->initial_sync;
	if (opts->nr_zero && !opts->initial_sync)
		return -EINVAL;
	begin.n_zero_pages = opts->nr_zero;
	begin.zero_pages = (uint64_t *)opts->zero_pages;
	begin.n_pages = nr_pages;
	begin.pages = (uint64_t *)pages;
	for (uint32_t i = 0; i < state->nr_vcpus; i++)
		vcpus[i] =
			(ProtobufCBinaryData){ state->vcpu[i].len, (uint8_t *)state->vcpu[i].data };
	for (uint32_t i = 0; i < state->nr_devices; i++) {
		ringft__device_state__init(&devs[i]);
		devs[i].name = (char *)(state->dev[i].name ? state->dev[i].name : "");
		devs[i].data = (ProtobufCBinaryData){ state->dev[i].state.len,
						      (uint8_t *)state->dev[i].state.data };
		devp[i] = &devs[i];
	}
	st.n_vcpu = state->nr_vcpus;
	st.vcpu = vcpus;
	if (!opts->initial_sync)
		st.vm = (ProtobufCBinaryData){ state->vm.len, (uint8_t *)state->vm.data };
	st.n_device = state->nr_devices;
	st.device = devp;
	if (opts->console_len > EPOCH_CONSOLE_MAX || (opts->console_len && opts->initial_sync))
		return -EINVAL;
	st.console = (ProtobufCBinaryData){ opts->console_len, (uint8_t *)opts->console };
	st.console_offset = opts->console_offset;
	st.console_end = opts->console_end;
	end.epoch = epoch;
	/* The END counts what the live batches sent too. */
	end.nr_pages = nr_pages + (sum ? sum->pages : 0);
	end.memory_hash = opts->memory_hash;
	end.disk_hash = opts->disk_hash;
	r = disk_check(opts->disk);
	if (r < 0)
		return r;
	nr_disk = opts->disk ? opts->disk->nr : 0;

	need = WIRE_HDR_SIZE * (3 + page_frames(nr_pages)) +
	       ringft__epoch_begin__get_packed_size(&begin) + ringft__state__get_packed_size(&st) +
	       WIRE_HDR_SIZE + 64 + nr_disk * (WIRE_HDR_SIZE + WIRE_DISK_HDR);
	r = tx_start(tx, need, (unsigned int)(2 * page_frames(nr_pages) + 3 * nr_disk + 8));
	if (r < 0)
		return r;

	tx_message(tx, WIRE_EPOCH_BEGIN, epoch, &begin.base);
	/* Page data is sent from the staging buffer itself. */
	tx_pages(tx, epoch, nr_pages, data);
	tx_disk(tx, epoch, opts->disk);
	tx_message(tx, WIRE_STATE, epoch, &st.base);

	if (sum) {
		h = sum->state; /* the live batches are hashed already */
	} else {
		h = XXH3_createState();
		if (!h)
			return -ENOMEM;
		XXH3_64bits_reset(h);
	}
	tx_hash(tx, h);
	end.checksum = XXH3_64bits_digest(h);
	if (sum)
		sum->open = false;
	else
		XXH3_freeState(h);
	tx_message(tx, WIRE_EPOCH_END, epoch, &end.base);
	return 0;
}

void epoch_tx_free(struct epoch_tx *tx)
{
	if (!tx)
		return;
	free(tx->iov);
	free(tx->owned);
	memset(tx, 0, sizeof(*tx));
}
