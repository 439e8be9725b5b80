// SPDX-License-Identifier: MIT
/*
 * The receiving side of an epoch's framing (see proto/epoch.h): epoch_rx
 * consumes bytes as they arrive, checks each frame against the phase and the
 * receiving VM's shape, stages pages in place and disk records in a disk log,
 * and verifies the checksum.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <xxhash.h>

#include "proto/disk_wire.h"
#include "proto/epoch.h"
#include "proto/ringft.pb-c.h"
#include "proto/wire.h"

static int rx_fail(struct epoch_rx *rx, int err, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int rx_fail(struct epoch_rx *rx, int err, const char *fmt, ...)
{
	char what[160];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	snprintf(rx->error, sizeof(rx->error), "frame %llu (%s) of epoch %llu: %s",
		 (unsigned long long)rx->frames + 1, wire_type_name((uint16_t)rx->type),
		 (unsigned long long)rx->next_epoch, what);
	return err;
}

int epoch_rx_init(struct epoch_rx *rx, uint64_t guest_pages, const struct epoch_shape *shape)
{
	void *data;

	memset(rx, 0, sizeof(*rx));
	if (shape->nr_vcpus > EPOCH_MAX_VCPUS || shape->nr_devices > EPOCH_MAX_DEVICES)
		return -EINVAL;
	rx->guest_pages = guest_pages;
	rx->shape = *shape;
	rx->msg = malloc(WIRE_MAX_MSG);
	rx->msg_cap = WIRE_MAX_MSG;
	rx->console = malloc(EPOCH_CONSOLE_MAX);
	rx->hash = XXH3_createState();
	/*
	 * Staging for the most an epoch may carry (EPOCH_MAX_COPIES copies of
	 * guest memory), MAP_NORESERVE: resident only as used.
	 */
	data = mmap(NULL, EPOCH_MAX_COPIES * guest_pages * WIRE_PAGE_SIZE, PROT_READ | PROT_WRITE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	rx->data = data == MAP_FAILED ? NULL : data;
	if (!rx->msg || !rx->console || !rx->hash || !rx->data) {
		epoch_rx_free(rx);
		return -ENOMEM;
	}
	return 0;
}

void epoch_rx_free(struct epoch_rx *rx)
{
	if (!rx)
		return;
	free(rx->msg);
	if (rx->state_msg)
		ringft__state__free_unpacked(rx->state_msg, NULL);
	free(rx->console);
	free(rx->pages);
	free(rx->zero_pages);
	disk_log_free(&rx->disk);
	if (rx->hash)
		XXH3_freeState(rx->hash);
	if (rx->data)
		munmap(rx->data, EPOCH_MAX_COPIES * rx->guest_pages * WIRE_PAGE_SIZE);
	memset(rx, 0, sizeof(*rx));
}

void epoch_rx_set_disk(struct epoch_rx *rx, uint64_t disk_size)
{
	rx->disk_size = disk_size;
}

/*
 * A DISK frame: its record checked against the image and the epoch's bounds,
 * then staged (copied into the epoch's disk log: disk writes are a small part
 * of an epoch's bytes, so they take the bounce copy that pages avoid).
 */
static int rx_disk(struct epoch_rx *rx)
{
	static const char *const what[] = { "write", "zeroing", "flush" };
	struct disk_rec_hdr h;
	uint32_t data = rx->length - WIRE_DISK_HDR;
	const char *kind;
	int r;

	if (!rx->disk_size)
		return rx_fail(rx, -EPROTO, "a disk record, but no disk here");
	disk_rec_hdr_decode(rx->msg, &h);
	if (h.flags != 0 && h.flags != DISK_REC_ZERO && h.flags != DISK_REC_FLUSH)
		return rx_fail(rx, -EPROTO, "disk record flags 0x%x", h.flags);
	kind = what[h.flags];
	if (h.flags == DISK_REC_FLUSH
		    ? h.len || data
		    : !h.len || h.len > DISK_REC_MAX || data != (h.flags ? 0 : h.len))
		return rx_fail(rx, -EPROTO, "%s of %u bytes with %u bytes of data", kind, h.len,
			       data);
	if (h.flags != DISK_REC_FLUSH && (h.offset % DISK_SECTOR || h.len % DISK_SECTOR))
		return rx_fail(rx, -EPROTO,
			       "%s of %u bytes at %llu is not in whole %u-byte sectors", kind,
			       h.len, (unsigned long long)h.offset, DISK_SECTOR);
	if (h.flags != DISK_REC_FLUSH &&
	    (h.offset > rx->disk_size || h.len > rx->disk_size - h.offset))
		return rx_fail(rx, -ERANGE,
			       "%s of %u bytes at %llu is beyond the image (%llu bytes)", kind,
			       h.len, (unsigned long long)h.offset,
			       (unsigned long long)rx->disk_size);
	if (rx->disk.nr >= EPOCH_DISK_RECS_MAX || data > EPOCH_DISK_MAX - disk_log_bytes(&rx->disk))
		return rx_fail(rx, -EMSGSIZE,
			       "more than %u disk records or %u bytes of disk writes in one epoch",
			       EPOCH_DISK_RECS_MAX, EPOCH_DISK_MAX);
	/* A flush is a point in the log, not a range: staged at offset 0. */
	r = disk_log_append(&rx->disk, h.flags == DISK_REC_FLUSH ? 0 : h.offset,
			    rx->msg + WIRE_DISK_HDR, h.len, h.flags);
	if (r < 0)
		return rx_fail(rx, r, "cannot stage a %s of %u bytes: %s", kind, h.len,
			       strerror(-r));
	return 0;
}

/* Appends a batch's page list to the epoch's (its data follows in PAGES frames). */
static int rx_add_pages(struct epoch_rx *rx, const uint64_t *list, size_t n)
{
	uint64_t *pages;

	if (n > EPOCH_MAX_COPIES * rx->guest_pages - rx->nr_pages)
		return rx_fail(rx, -ERANGE, "%llu pages in one epoch for a guest of %llu",
			       (unsigned long long)(rx->nr_pages + n),
			       (unsigned long long)rx->guest_pages);
	for (size_t k = 0; k < n; k++)
		if (list[k] >= rx->guest_pages)
			return rx_fail(rx, -ERANGE, "page %llu is outside guest memory",
				       (unsigned long long)list[k]);
	pages = realloc(rx->pages, (rx->nr_pages + n ? rx->nr_pages + n : 1) * sizeof(*pages));
	if (!pages)
		return rx_fail(rx, -ENOMEM, "no memory for a list of %zu pages", n);
	rx->pages = pages;
	if (n) /* an empty list may be NULL */
		memcpy(pages + rx->nr_pages, list, n * sizeof(*pages));
	rx->nr_pages += n;
	return 0;
}

static int rx_live(struct epoch_rx *rx)
{
	Ringft__LivePages *m = ringft__live_pages__unpack(NULL, rx->length, rx->msg);
	int r;

	if (!m)
		return rx_fail(rx, -EBADMSG, "undecodable message");
	if (m->epoch != rx->frame_epoch)
		r = rx_fail(rx, -EPROTO, "message says epoch %llu", (unsigned long long)m->epoch);
	else if (!m->n_pages)
		r = rx_fail(rx, -EPROTO, "an empty live batch");
	else
		r = rx_add_pages(rx, m->pages, m->n_pages);
	ringft__live_pages__free_unpacked(m, NULL);
	return r;
}

static int rx_begin(struct epoch_rx *rx)
{
	Ringft__EpochBegin *m = ringft__epoch_begin__unpack(NULL, rx->length, rx->msg);
	int r = 0;

	if (!m)
		return rx_fail(rx, -EBADMSG, "undecodable message");
	if (m->epoch != rx->frame_epoch)
		r = rx_fail(rx, -EPROTO, "message says epoch %llu", (unsigned long long)m->epoch);
	else if (m->n_pages > rx->guest_pages)
		r = rx_fail(rx, -ERANGE, "%zu pages for a guest of %llu", m->n_pages,
			    (unsigned long long)rx->guest_pages);
	else if (m->n_zero_pages && !m->initial_sync)
		r = rx_fail(rx, -EPROTO, "zero pages outside the initial sync");
	else if (m->initial_sync && rx->nr_pages)
		r = rx_fail(rx, -EPROTO, "live pages in an initial-sync epoch");
	else if (m->n_zero_pages > rx->guest_pages)
		r = rx_fail(rx, -ERANGE, "%zu zero pages for a guest of %llu", m->n_zero_pages,
			    (unsigned long long)rx->guest_pages);
	for (size_t k = 0; !r && k < m->n_zero_pages; k++)
		if (m->zero_pages[k] >= rx->guest_pages)
			r = rx_fail(rx, -ERANGE, "zero page %llu is outside guest memory",
				    (unsigned long long)m->zero_pages[k]);
	if (!r) {
		uint64_t *zero = realloc(rx->zero_pages,
					 (m->n_zero_pages ? m->n_zero_pages : 1) * sizeof(*zero));

		if (!zero)
			r = rx_fail(rx, -ENOMEM, "no memory for a list of %zu pages",
				    m->n_zero_pages);
		else
			rx->zero_pages = zero;
	}
	if (!r)
		r = rx_add_pages(rx, m->pages, m->n_pages);
	if (!r) {
		if (m->n_zero_pages)
			memcpy(rx->zero_pages, m->zero_pages, m->n_zero_pages * sizeof(uint64_t));
		rx->nr_zero = m->n_zero_pages;
		rx->initial_sync = m->initial_sync;
	}
	ringft__epoch_begin__free_unpacked(m, NULL);
	return r;
}

static int rx_state(struct epoch_rx *rx)
{
	Ringft__State *m = ringft__state__unpack(NULL, rx->length, rx->msg);
	const struct epoch_shape *shape = &rx->shape;
	struct epoch_state *st = &rx->state;
	int r = 0;

	if (!m)
		return rx_fail(rx, -EBADMSG, "undecodable message");
	if (rx->initial_sync) {
		/* Initial-sync pages come without state. */
		if (m->n_vcpu || m->n_device || m->vm.len || m->console.len)
			r = rx_fail(rx, -EPROTO, "state in an initial-sync epoch");
		ringft__state__free_unpacked(m, NULL);
		return r;
	}
	if (m->n_vcpu != shape->nr_vcpus || m->n_device != shape->nr_devices)
		r = rx_fail(rx, -EPROTO, "%zu vCPUs and %zu devices, expected %u and %u", m->n_vcpu,
			    m->n_device, shape->nr_vcpus, shape->nr_devices);
	else if (m->vm.len != shape->vm_size)
		r = rx_fail(rx, -EPROTO, "VM state of %zu bytes, expected %zu", m->vm.len,
			    shape->vm_size);
	for (size_t i = 0; !r && i < m->n_vcpu; i++)
		if (m->vcpu[i].len != shape->vcpu_size)
			r = rx_fail(rx, -EPROTO, "vCPU %zu state of %zu bytes, expected %zu", i,
				    m->vcpu[i].len, shape->vcpu_size);
	if (!r && m->console.len > EPOCH_CONSOLE_MAX)
		r = rx_fail(rx, -EPROTO, "%zu console bytes, at most %u allowed", m->console.len,
			    EPOCH_CONSOLE_MAX);
	/* Stream positions wrap modulo 2^64: compare distances. */
	if (!r && m->console_end && m->console_end - m->console_offset < (uint64_t)m->console.len)
		r = rx_fail(rx, -EPROTO, "console ends at %llu, before its %zu bytes from %llu",
			    (unsigned long long)m->console_end, m->console.len,
			    (unsigned long long)m->console_offset);
	for (size_t i = 0; !r && i < m->n_device; i++)
		if (m->device[i]->data.len > shape->device_max || !m->device[i]->name ||
		    strlen(m->device[i]->name) >= shape->device_name_max)
			r = rx_fail(rx, -EPROTO, "device %zu state does not fit", i);
	if (r) {
		ringft__state__free_unpacked(m, NULL);
		return r;
	}
	/*
	 * The blobs stay in the unpacked message, kept until the next state:
	 * the caller copies them once, into its own machine state.
	 */
	if (rx->state_msg)
		ringft__state__free_unpacked(rx->state_msg, NULL);
	rx->state_msg = m;
	memset(st, 0, sizeof(*st));
	st->nr_vcpus = (uint32_t)m->n_vcpu;
	st->nr_devices = (uint32_t)m->n_device;
	st->vm = (struct epoch_blob){ m->vm.data, m->vm.len };
	for (size_t i = 0; i < m->n_vcpu; i++)
		st->vcpu[i] = (struct epoch_blob){ m->vcpu[i].data, m->vcpu[i].len };
	for (size_t i = 0; i < m->n_device; i++)
		st->dev[i] = (struct epoch_device){
			.name = m->device[i]->name,
			.state = { m->device[i]->data.data, m->device[i]->data.len },
		};
	rx->console_len = m->console.len;
	rx->console_offset = m->console_offset;
	rx->console_end = m->console_end ? m->console_end : m->console_offset + m->console.len;
	if (rx->console_len)
		memcpy(rx->console, m->console.data, rx->console_len);
	return 0;
}

static int rx_end(struct epoch_rx *rx)
{
	Ringft__EpochEnd *m = ringft__epoch_end__unpack(NULL, rx->length, rx->msg);
	uint64_t sum = XXH3_64bits_digest(rx->hash);
	int r = 0;

	if (!m)
		return rx_fail(rx, -EBADMSG, "undecodable message");
	if (m->epoch != rx->epoch || m->nr_pages != rx->nr_pages)
		r = rx_fail(rx, -EPROTO, "closes epoch %llu with %llu pages",
			    (unsigned long long)m->epoch, (unsigned long long)m->nr_pages);
	else if (m->checksum != sum)
		r = rx_fail(rx, -EILSEQ, "checksum %016llx, computed %016llx",
			    (unsigned long long)m->checksum, (unsigned long long)sum);
	rx->memory_hash = m->memory_hash;
	rx->disk_hash = m->disk_hash;
	ringft__epoch_end__free_unpacked(m, NULL);
	return r;
}

/* Checks a complete header against the phase: what may come next, and how big. */
static int rx_header(struct epoch_rx *rx)
{
	struct wire_hdr h;
	int r = wire_hdr_decode(rx->hdr_buf, &h);

	/* For messages: the raw type, also when the header did not decode. */
	rx->type = (uint32_t)(rx->hdr_buf[4] | rx->hdr_buf[5] << 8);
	if (r < 0) {
		char why[128];

		wire_hdr_explain(rx->hdr_buf, r, why, sizeof(why));
		return rx_fail(rx, r, "%s", why);
	}
	rx->length = h.length;
	rx->frame_epoch = h.epoch;
	if (h.type == WIRE_EPOCH_BEGIN || h.type == WIRE_LIVE_PAGES) {
		/* Two page lists of this guest's size at most (see WIRE_MAX_PAGE_LIST). */
		uint64_t bound = 22 * rx->guest_pages + 64;

		if (h.length > bound)
			return rx_fail(rx, -EMSGSIZE,
				       "%u bytes of page lists for a guest of %llu pages", h.length,
				       (unsigned long long)rx->guest_pages);
	}
	/* Long page lists and a DISK frame's record do not fit the usual message buffer. */
	if (h.type != WIRE_PAGES && h.length > rx->msg_cap) {
		uint8_t *m = realloc(rx->msg, h.length);

		if (!m)
			return rx_fail(rx, -ENOMEM, "no memory for a %u-byte frame", h.length);
		rx->msg = m;
		rx->msg_cap = h.length;
	}
	switch (rx->phase) {
	case EPOCH_RX_IDLE:
		if (h.type == WIRE_HEARTBEAT || h.type == WIRE_GOODBYE)
			return 0;
		if (h.type != WIRE_EPOCH_BEGIN && h.type != WIRE_LIVE_PAGES)
			return rx_fail(rx, -EPROTO, "out of order: expected epoch-begin");
		if (h.epoch != rx->next_epoch)
			return rx_fail(rx, -EPROTO, "epoch %llu out of order",
				       (unsigned long long)h.epoch);
		/* A new epoch: its first frame opens the checksum and the page list. */
		XXH3_64bits_reset(rx->hash);
		rx->frames = 0;
		rx->epoch = h.epoch;
		rx->nr_pages = 0;
		rx->pages_have = 0;
		disk_log_clear(&rx->disk);
		break;
	case EPOCH_RX_OPEN:
		if (h.type == WIRE_HEARTBEAT || h.type == WIRE_GOODBYE)
			return 0;
		if (h.type != WIRE_EPOCH_BEGIN && h.type != WIRE_LIVE_PAGES)
			return rx_fail(rx, -EPROTO,
				       "out of order: expected live-pages or epoch-begin");
		break;
	case EPOCH_RX_PAGES:
	case EPOCH_RX_LIVE:
		if (h.type != WIRE_PAGES)
			return rx_fail(rx, -EPROTO, "out of order: expected pages");
		if (h.length / WIRE_PAGE_SIZE > rx->nr_pages - rx->pages_have)
			return rx_fail(rx, -EMSGSIZE, "more pages than the page list holds");
		break;
	case EPOCH_RX_STATE:
		/* Disk records come after the epoch's last page, before its state. */
		if (h.type != WIRE_STATE && h.type != WIRE_DISK)
			return rx_fail(rx, -EPROTO, "out of order: expected state");
		break;
	case EPOCH_RX_END:
		if (h.type != WIRE_EPOCH_END)
			return rx_fail(rx, -EPROTO, "out of order: expected epoch-end");
		break;
	}
	if (rx->phase != EPOCH_RX_IDLE && h.epoch != rx->epoch)
		return rx_fail(rx, -EPROTO, "frame of epoch %llu inside epoch %llu",
			       (unsigned long long)h.epoch, (unsigned long long)rx->epoch);
	if (h.type != WIRE_EPOCH_END)
		XXH3_64bits_update(rx->hash, rx->hdr_buf, WIRE_HDR_SIZE);
	return 0;
}

/* A whole frame has arrived: act on it. Returns 1 when an epoch is complete. */
static int rx_frame(struct epoch_rx *rx)
{
	int r = 0;

	switch (rx->type) {
	case WIRE_HEARTBEAT:
		return 0;
	case WIRE_GOODBYE: {
		Ringft__Goodbye *m = ringft__goodbye__unpack(NULL, rx->length, rx->msg);

		snprintf(rx->goodbye, sizeof(rx->goodbye), "%s",
			 m && m->reason ? m->reason : "(no reason given)");
		rx->switchover = m && m->switchover;
		rx->switchover_checkpoint = m ? m->checkpoint : 0;
		if (m)
			ringft__goodbye__free_unpacked(m, NULL);
		return EPOCH_RX_GOODBYE;
	}
	case WIRE_LIVE_PAGES:
		r = rx_live(rx);
		rx->phase = EPOCH_RX_LIVE;
		break;
	case WIRE_EPOCH_BEGIN:
		r = rx_begin(rx);
		rx->phase = rx->pages_have < rx->nr_pages ? EPOCH_RX_PAGES : EPOCH_RX_STATE;
		break;
	case WIRE_PAGES:
		rx->pages_have += rx->length / WIRE_PAGE_SIZE;
		if (rx->pages_have == rx->nr_pages)
			rx->phase = rx->phase == EPOCH_RX_LIVE ? EPOCH_RX_OPEN : EPOCH_RX_STATE;
		break;
	case WIRE_DISK:
		r = rx_disk(rx);
		break;
	case WIRE_STATE:
		r = rx_state(rx);
		rx->phase = EPOCH_RX_END;
		break;
	case WIRE_EPOCH_END:
		r = rx_end(rx);
		if (r < 0)
			return r;
		rx->phase = EPOCH_RX_IDLE;
		rx->next_epoch = rx->epoch + 1;
		rx->frames = 0; /* a refusal before the next epoch's first frame counts from 1 */
		return 1;
	}
	rx->frames++;
	return r;
}

int epoch_rx_feed(struct epoch_rx *rx, const uint8_t *buf, size_t len, size_t *ret_used)
{
	size_t used = 0;
	int r = 0;

	if (rx->error[0])
		return -EPIPE;
	while (used < len && r == 0) {
		if (!rx->in_payload) {
			size_t n = WIRE_HDR_SIZE - rx->hdr_have;

			n = n < len - used ? n : len - used;
			memcpy(rx->hdr_buf + rx->hdr_have, buf + used, n);
			rx->hdr_have += n;
			used += n;
			if (rx->hdr_have < WIRE_HDR_SIZE)
				break;
			r = rx_header(rx);
			if (r < 0)
				break;
			rx->hdr_have = 0;
			rx->in_payload = true;
			rx->have = 0;
		}
		{
			size_t n = rx->length - rx->have;
			uint8_t *dst;

			n = n < len - used ? n : len - used;
			/* Pages go straight to their place in staging; messages to msg. */
			dst = rx->type == WIRE_PAGES
				      ? rx->data + rx->pages_have * WIRE_PAGE_SIZE + rx->have
				      : rx->msg + rx->have;
			if (dst != buf + used) /* else received in place (epoch_rx_direct) */
				memcpy(dst, buf + used, n);
			if (rx->type != WIRE_EPOCH_END && rx->type != WIRE_HEARTBEAT &&
			    rx->type != WIRE_GOODBYE)
				XXH3_64bits_update(rx->hash, buf + used, n);
			rx->have += n;
			used += n;
			if (rx->have < rx->length)
				break;
			rx->in_payload = false;
			r = rx_frame(rx);
		}
	}
	*ret_used = used;
	return r;
}

uint8_t *epoch_rx_direct(struct epoch_rx *rx, size_t *ret_len)
{
	if (rx->error[0] || !rx->in_payload || rx->type != WIRE_PAGES || rx->have >= rx->length)
		return NULL;
	*ret_len = rx->length - rx->have;
	return rx->data + rx->pages_have * WIRE_PAGE_SIZE + rx->have;
}
