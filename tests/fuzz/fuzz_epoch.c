// SPDX-License-Identifier: MIT
/*
 * libFuzzer: the epoch receiver (proto/epoch_rx.c) on arbitrary bytes, fed in
 * chunks whose sizes the input's first bytes choose, through both entry points
 * (epoch_rx_feed, and receiving page data in place via epoch_rx_direct). It
 * must never crash, read or write out of bounds, or report an epoch that did
 * not arrive whole and verified.
 */
#include <stdint.h>
#include <string.h>

#include "proto/epoch.h"
#include "vmm/state.h"

#define GUEST_PAGES 64
#define VCPUS	    2
#define DEVICES	    1

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* The shape the secondary gives its receiver (secondary_state_shape). */
	static const struct epoch_shape shape = {
		.nr_vcpus = VCPUS,
		.nr_devices = DEVICES,
		.vcpu_size = sizeof(struct vcpu_state),
		.vm_size = sizeof(struct vm_state),
		.device_max = DEVICE_STATE_MAX,
		.device_name_max = sizeof(((struct device_state *)0)->name),
	};
	struct epoch_rx rx;
	uint8_t chunking;
	size_t at = 1;

	if (size < 1 || epoch_rx_init(&rx, GUEST_PAGES, &shape) < 0)
		return 0;
	/* A 1 MiB image: DISK records within it are staged, beyond it refused. */
	epoch_rx_set_disk(&rx, 1u << 20);
	chunking = data[0];
	while (at < size) {
		size_t n = size - at, used = 0, room = 0;
		uint8_t *direct = epoch_rx_direct(&rx, &room);
		int r;

		if (chunking & 0x80) /* small pieces: every split point gets exercised */
			n = n < (size_t)(chunking & 0x3f) + 1 ? n : (size_t)(chunking & 0x3f) + 1;
		if (direct && (chunking & 0x40)) {
			/* As a socket would: bytes land in staging, then are fed in place. */
			n = n < room ? n : room;
			memcpy(direct, data + at, n);
			r = epoch_rx_feed(&rx, direct, n, &used);
		} else {
			r = epoch_rx_feed(&rx, data + at, n, &used);
		}
		if (r < 0)
			break; /* refused: the connection would close */
		if (r == EPOCH_RX_READY && !rx.initial_sync &&
		    (rx.state.nr_vcpus != VCPUS || rx.state.vcpu[0].len != shape.vcpu_size ||
		     rx.state.vm.len != shape.vm_size))
			__builtin_trap(); /* a checkpoint of the wrong shape got through */
		if (r == EPOCH_RX_GOODBYE)
			break;
		if (used == 0 && r == EPOCH_RX_MORE)
			break;
		at += used;
	}
	epoch_rx_free(&rx);
	return 0;
}
