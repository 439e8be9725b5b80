/* SPDX-License-Identifier: MIT */
/*
 * Everything on a replication connection besides the epochs: the handshake
 * (HELLO both ways, REFUSE naming the field that does not match), ACK,
 * HEARTBEAT, GOODBYE, and a reader for these small frames.
 */
#ifndef RINGFT_PROTO_SESSION_H
#define RINGFT_PROTO_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/generation.h"
#include "proto/wire.h"

/*
 * 2: HELLO carries the guest's identity and data generation (fields 15-19).
 * A version-1 peer says nothing about which guest it runs or holds, so it is
 * refused by the version check rather than trusted as "no guest".
 * 3: an epoch may open with live batches (WIRE_LIVE_PAGES, proto/epoch.h).
 * 4: a replicated disk: HELLO's disk_size, DISK records inside epochs, the
 * secondary's DISK_SUMS after its HELLO (proto/disk_wire.h), EpochEnd's
 * disk_hash. A version-3 secondary would read "no disk" and refuse the first
 * DISK frame mid-session; the version check refuses it up front.
 */
/*
 * 5: HELLO carries a range of versions, the newest (protocol_version) and the
 * oldest (protocol_min) the sender speaks, and its software_version. Both
 * sides then use the highest version in both ranges (hello_compare), so a
 * release may speak its predecessor's version too and nodes can be upgraded
 * one at a time. A peer without protocol_min (before 5) speaks exactly its
 * protocol_version. This code speaks 5 only: 4 lacks nothing it could do
 * without, but nothing was written to speak it either.
 */
#define RINGFT_PROTOCOL_VERSION 5
#define RINGFT_PROTOCOL_MIN	5
#define HELLO_MAX_DEVICES	8

enum hello_role {
	HELLO_PRIMARY = 1,
	HELLO_SECONDARY = 2,
};

/* Hello.holds: what a secondary's copy is. */
enum hello_holds {
	HOLDS_NOTHING = 0,    /* no checkpoint that counts: it may be synced by anyone */
	HOLDS_CHECKPOINT = 1, /* a checkpoint of gen.uuid */
	HOLDS_RUNNING = 2,    /* promoted: it runs the guest */
};

/* What each side says about itself. Pointers are borrowed, not owned. */
struct hello_info {
	uint32_t protocol_version;    /* the newest version spoken */
	uint32_t protocol_min;	      /* the oldest; 0: protocol_version only */
	const char *software_version; /* "0.1.0", or NULL/"" (not compared) */
	uint32_t role;
	uint64_t mem_size;
	uint32_t nr_vcpus;
	uint32_t page_size;
	uint32_t kvm_api_version;
	uint32_t xsave_size;
	const char *tracking;
	uint32_t ring_entries;
	const uint8_t *cpuid;
	size_t cpuid_len;
	const uint32_t *msrs;
	size_t nr_msrs;
	const char *guest;
	const char *devices[HELLO_MAX_DEVICES];
	uint32_t nr_devices;
	bool verify;
	struct gen_state gen; /* the guest run (primary) or held (secondary) */
	uint32_t holds;	      /* enum hello_holds, secondary only */
	bool stale;	      /* secondary: its checkpoint was moved past */
	const char *net_mac;  /* "52:54:00:12:34:56", or NULL/"" without a NIC */
	uint64_t disk_size;   /* the replicated disk image's bytes, 0 without one */
};

/* A decoded HELLO; hello_decoded_free() releases it. */
struct hello_decoded {
	struct hello_info info;
	void *msg;
};

/* Frames are built into malloc'ed buffers: *ret_buf holds header and payload. */
int hello_frame(const struct hello_info *h, uint8_t **ret_buf, size_t *ret_len);
int hello_decode(const uint8_t *payload, size_t len, struct hello_decoded *ret);
void hello_decoded_free(struct hello_decoded *d);

struct hello_mismatch {
	char field[32];
	char local[96];
	char remote[96];
};

/*
 * Compares what must match for the remote side's state to load here, after
 * agreeing on a protocol version: the highest both ranges contain. Returns
 * that version (> 0), or -EPROTO with *ret naming the first field that differs
 * and both values (for the version: field "protocol_version", both ranges as
 * "MIN..MAX"). expect_role is the role the remote must have.
 */
int hello_compare(const struct hello_info *local, const struct hello_info *remote,
		  uint32_t expect_role, struct hello_mismatch *ret);

int refuse_frame(const char *field, const char *local, const char *remote, const char *reason,
		 uint8_t **ret_buf, size_t *ret_len);
/* Small frames fit a fixed buffer: they return the frame length. */
#define SMALL_FRAME_MAX (WIRE_HDR_SIZE + 64)
size_t ack_frame(uint8_t buf[SMALL_FRAME_MAX], uint64_t epoch, uint32_t verify);
size_t heartbeat_frame(uint8_t buf[SMALL_FRAME_MAX], uint64_t sent_ns);
/* switchover: the checkpoint a planned hand-over stops at, or UINT64_MAX. */
int goodbye_frame(const char *reason, uint64_t switchover, uint8_t **ret_buf, size_t *ret_len);

/*
 * Reassembles small frames (never PAGES or DISK: those only come inside an
 * epoch, which epoch_rx reads) from a byte stream. DISK_SUMS (at most
 * WIRE_MAX_DISK_SUMSZ) is one: proto/disk_wire.h parses it.
 */
struct frame_rx {
	uint8_t hdr_buf[WIRE_HDR_SIZE];
	size_t hdr_have;
	bool in_payload;
	struct wire_hdr hdr;
	uint8_t *payload; /* WIRE_MAX_MSG bytes */
	size_t have;
	char error[128];
};

int frame_rx_init(struct frame_rx *f);
void frame_rx_free(struct frame_rx *f);
/*
 * Consumes bytes until one frame is complete. Returns 1 with f->hdr and
 * f->payload describing it (valid until the next call), 0 when everything was
 * consumed without completing one, or a negative errno with f->error set.
 */
int frame_rx_feed(struct frame_rx *f, const uint8_t *buf, size_t len, size_t *ret_used);

/* Decoded messages the primary receives. Return 0 or -EBADMSG. */
int ack_decode(const uint8_t *payload, size_t len, uint64_t *ret_epoch, uint32_t *ret_verify);
/* The field a REFUSE names ("" for none, e.g. busy) into buf. */
void refuse_field(const uint8_t *payload, size_t len, char *buf, size_t buflen);
/* REFUSE and GOODBYE as one line of text for the log. */
void refuse_describe(const uint8_t *payload, size_t len, char *buf, size_t buflen);
/* The reason into buf; returns the switchover checkpoint, or UINT64_MAX if none. */
uint64_t goodbye_describe(const uint8_t *payload, size_t len, char *buf, size_t buflen);

#endif
