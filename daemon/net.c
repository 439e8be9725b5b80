// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/net.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "primary/outbuf.h"
#include "vmm/virtio_net.h"
#include "vmm/vm.h"

#define ANNOUNCE_ROUNDS	   5
#define ANNOUNCE_FIRST_GAP (50 * NS_PER_MS)
#define ANNOUNCE_STEP	   (100 * NS_PER_MS)

int ftd_net_create(struct ftd_net *n, struct vm *vm, const struct ftd_options *o)
{
	struct virtio_net_config cfg = { .vnet_hdr = o->net.vnet_hdr };
	int r;

	memset(n, 0, sizeof(*n));
	n->o = &o->net;
	if (!o->net.enabled)
		return 0;
	snprintf(cfg.tap, sizeof(cfg.tap), "%s", o->net.tap);
	memcpy(cfg.mac, o->net.mac, sizeof(cfg.mac));
	r = virtio_net_create(vm, GUEST_VIRTIO_SLOT_NET, &cfg, &n->dev);
	if (r < 0) {
		log_error("Failed to add the virtio-net device: %s", strerror(-r));
		return r;
	}
	if (o->no_device_dirty) {
		log_warning("--debug-no-device-dirty: devices do not mark the pages they write; "
			    "replicas will differ (tests only)");
		vm_set_device_dirty_marking(vm, false);
	}
	return 0;
}

int ftd_net_attach(struct ftd_net *n, bool announce)
{
	const char *mac = n->o->mac_text;
	int r;

	if (!n->dev || n->attached)
		return 0;
	r = virtio_net_attach(n->dev);
	if (r < 0) {
		log_error("Failed to open TAP %s for the guest's NIC (%s): %s", n->o->tap, mac,
			  strerror(-r));
		return r;
	}
	n->attached = true;
	log_info("net: the guest's NIC %s is on TAP %s%s", mac, n->o->tap,
		 announce ? "; announcing it" : "");
	if (announce) {
		n->announce_left = ANNOUNCE_ROUNDS;
		n->announce_next_ns = clock_now_ns();
		n->announce_gap_ns = ANNOUNCE_FIRST_GAP;
	}
	return 0;
}

/* Output commit's sink: a frame waits for its checkpoint's ACK, or the queue stops. */
#define ATTACH_RETRY NS_PER_S

void ftd_net_attach_later(struct ftd_net *n)
{
	if (!n->dev || n->attached)
		return;
	log_error("The guest runs on WITHOUT its network: TAP %s would not open; trying again "
		  "every second",
		  n->o->tap);
	n->retry_ns = clock_now_ns() + ATTACH_RETRY;
}

static int net_record_sink(void *opaque, const uint8_t *frame, size_t len)
{
	struct ftd_net *n = opaque;
	uint64_t held = outbuf_held(n->held);
	/* Records count whole (a 4-byte length each); a frame alone always fits. */
	int r = held && held + 4 + len > n->o->hold_max ? -ENOSPC
							: outbuf_put_record(n->held, frame, len);

	if (r == -ENOSPC) {
		if (!n->stalled)
			n->stalls++;
		n->stalled = true;
		return -EAGAIN; /* the frame stays in the guest's queue */
	}
	return r;
}

void ftd_net_hold_in(struct ftd_net *n, struct outbuf *ob)
{
	if (!n->dev)
		return;
	n->held = ob;
	virtio_net_set_tx_sink(n->dev, net_record_sink, n);
}

static int net_release(void *opaque, const uint8_t *frame, size_t len)
{
	return virtio_net_transmit(opaque, frame, len);
}

int ftd_net_work(struct ftd_net *n, uint64_t now)
{
	int r;

	if (!n->dev)
		return 0;
	if (n->retry_ns && now >= n->retry_ns) {
		/* Quiet while it keeps failing: the first failure was logged. */
		n->retry_ns = virtio_net_attach(n->dev) < 0 ? now + ATTACH_RETRY : 0;
		if (!n->retry_ns) {
			n->attached = true;
			log_info("net: the guest's NIC %s is on TAP %s at last; announcing it",
				 n->o->mac_text, n->o->tap);
			n->announce_left = ANNOUNCE_ROUNDS;
			n->announce_next_ns = now;
			n->announce_gap_ns = ANNOUNCE_FIRST_GAP;
		}
	}
	if (n->held && n->attached) {
		r = outbuf_flush_records(n->held, net_release, n->dev);
		if (r < 0 && r != -EAGAIN) {
			log_error("Failed to send the guest's frames on %s: %s", n->o->tap,
				  strerror(-r));
			return r;
		}
		if (n->stalled && outbuf_held(n->held) <= n->o->hold_max / 2) {
			n->stalled = false;
			virtio_net_tx_resume(n->dev);
		}
	}
	if (n->announce_left && now >= n->announce_next_ns) {
		r = virtio_net_announce(n->dev);
		if (r < 0)
			log_warning("Failed to announce the guest's MAC on %s: %s", n->o->tap,
				    strerror(-r));
		n->announce_left--;
		n->announce_next_ns = now + n->announce_gap_ns;
		n->announce_gap_ns += ANNOUNCE_STEP;
	}
	return 0;
}

uint64_t ftd_net_next_due(const struct ftd_net *n)
{
	uint64_t due = n->announce_left ? n->announce_next_ns : UINT64_MAX;

	return n->retry_ns && n->retry_ns < due ? n->retry_ns : due;
}

void ftd_net_status(const struct ftd_net *n, struct outbuf *frames, struct json_object *r)
{
	struct json_object *j = json_object_new_object();
	struct virtio_net_stats st;

	virtio_net_get_stats(n->dev, &st);
	json_object_object_add(j, "tap", json_object_new_string(n->o->tap));
	json_object_object_add(j, "mac", json_object_new_string(n->o->mac_text));
	json_object_object_add(j, "attached", json_object_new_boolean(n->attached));
	json_object_object_add(
		j, "held_frames",
		json_object_new_uint64(frames->buf ? outbuf_records_held(frames) : 0));
	json_object_object_add(j, "held_bytes",
			       json_object_new_uint64(frames->buf ? outbuf_held(frames) : 0));
	json_object_object_add(j, "backpressured", json_object_new_boolean(n->stalled));
	json_object_object_add(j, "backpressure_events", json_object_new_uint64(n->stalls));
	json_object_object_add(j, "rx_frames", json_object_new_uint64(st.rx_frames));
	json_object_object_add(j, "rx_bytes", json_object_new_uint64(st.rx_bytes));
	json_object_object_add(j, "rx_dropped", json_object_new_uint64(st.rx_dropped));
	json_object_object_add(j, "tx_frames", json_object_new_uint64(st.tx_frames));
	json_object_object_add(j, "tx_bytes", json_object_new_uint64(st.tx_bytes));
	json_object_object_add(r, "net", j);
}

void ftd_net_metrics(const struct ftd_net *n, struct outbuf *frames, FILE *f)
{
	struct virtio_net_stats st;

	if (!n->dev)
		return;
	virtio_net_get_stats(n->dev, &st);
	fprintf(f,
		"# HELP ftd_net_held_frames Guest frames waiting for an acknowledgement.\n"
		"# TYPE ftd_net_held_frames gauge\nftd_net_held_frames %llu\n"
		"# HELP ftd_net_backpressure_total Times the guest's transmit queue was stopped "
		"because --net-hold-max was held.\n"
		"# TYPE ftd_net_backpressure_total counter\nftd_net_backpressure_total %llu\n"
		"# HELP ftd_net_rx_frames_total Frames delivered to the guest.\n"
		"# TYPE ftd_net_rx_frames_total counter\nftd_net_rx_frames_total %llu\n"
		"# HELP ftd_net_rx_dropped_total Frames dropped: the guest had no buffer.\n"
		"# TYPE ftd_net_rx_dropped_total counter\nftd_net_rx_dropped_total %llu\n"
		"# HELP ftd_net_tx_frames_total Frames the guest sent.\n"
		"# TYPE ftd_net_tx_frames_total counter\nftd_net_tx_frames_total %llu\n",
		(unsigned long long)(frames->buf ? outbuf_records_held(frames) : 0),
		(unsigned long long)n->stalls, (unsigned long long)st.rx_frames,
		(unsigned long long)st.rx_dropped, (unsigned long long)st.tx_frames);
}
