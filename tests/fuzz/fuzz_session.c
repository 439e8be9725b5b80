// SPDX-License-Identifier: MIT
/*
 * libFuzzer: the handshake and the small frames a primary receives
 * (proto/session.c): frames reassembled from arbitrary bytes, each decoded as
 * what its header says (HELLO compared field by field with a local HELLO,
 * ACK, REFUSE, GOODBYE). Nothing may crash or read out of bounds.
 */
#include <stdint.h>
#include <string.h>

#include "proto/session.h"
#include "proto/wire.h"

static void local_hello(struct hello_info *h)
{
	static const uint8_t cpuid[40];
	static const uint32_t msrs[] = { 0x10, 0x3b, 0xc0000080 };

	memset(h, 0, sizeof(*h));
	h->protocol_version = RINGFT_PROTOCOL_VERSION;
	h->role = HELLO_SECONDARY;
	h->mem_size = 64ULL << 20;
	h->nr_vcpus = 2;
	h->page_size = 4096;
	h->kvm_api_version = 12;
	h->xsave_size = 4096;
	h->tracking = "ring";
	h->ring_entries = 4096;
	h->cpuid = cpuid;
	h->cpuid_len = sizeof(cpuid);
	h->msrs = msrs;
	h->nr_msrs = 3;
	h->guest = "";
	h->devices[h->nr_devices++] = "serial";
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hello_info local;
	struct frame_rx fr;
	size_t at = 0;

	local_hello(&local);
	if (frame_rx_init(&fr) < 0)
		return 0;
	while (at < size) {
		size_t used = 0;
		int r = frame_rx_feed(&fr, data + at, size - at, &used);
		char text[256];

		if (r < 0 || used == 0)
			break;
		at += used;
		if (r == 0)
			continue;
		switch (fr.hdr.type) {
		case WIRE_HELLO: {
			struct hello_decoded d;
			struct hello_mismatch mm;

			if (hello_decode(fr.payload, fr.hdr.length, &d) == 0) {
				hello_compare(&local, &d.info, HELLO_PRIMARY, &mm);
				hello_decoded_free(&d);
			}
			break;
		}
		case WIRE_ACK: {
			uint64_t epoch;
			uint32_t verify;

			ack_decode(fr.payload, fr.hdr.length, &epoch, &verify);
			break;
		}
		case WIRE_REFUSE:
			refuse_describe(fr.payload, fr.hdr.length, text, sizeof(text));
			break;
		case WIRE_GOODBYE:
			goodbye_describe(fr.payload, fr.hdr.length, text, sizeof(text));
			break;
		default:
			break;
		}
	}
	frame_rx_free(&fr);
	return 0;
}
