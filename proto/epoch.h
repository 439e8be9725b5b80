/* SPDX-License-Identifier: MIT */
/*
 * One epoch on the wire, both directions of the framing:
 *
 *   LIVE_PAGES   {epoch, page list}   \  none or more live batches: pages
 *   PAGES * n    raw pages             /  collected while the guest ran
 *   EPOCH_BEGIN  {epoch, page list}
 *   PAGES * n    raw pages in page-list order, at most 256 per frame
 *   DISK * n     the epoch's disk records in log order (proto/disk_wire.h)
 *   STATE        {vCPU, VM and device state}
 *   EPOCH_END    {epoch, page count, XXH3-64 over every byte before it}
 *
 * Live batches go out while the guest still runs (primary/checkpoint.c, live
 * harvest), so the pause only has the rest to send. A page may be in several
 * batches and in the EPOCH_BEGIN list: the receiver stages every copy in
 * arrival order, so applying the list in order leaves the last copy, which is
 * the page's content at the checkpoint. Heartbeats may come between batches;
 * they are not part of the epoch.
 *
 * DISK frames (protocol 4) carry the virtio-blk writes the guest made since
 * the previous epoch, one record each, in the order the device logged them,
 * also in initial-sync epochs (the disk's initial copy, which may have no
 * pages at all). The receiver stages them whole into a struct disk_log; the
 * secondary writes them to its image only once the epoch is verified.
 *
 * epoch_pack() describes the frames as an iovec list whose page data points
 * straight into the sender's staging buffer. The epoch receiver (epoch_rx)
 * consumes bytes as they arrive, checks every frame before using it, writes
 * page data straight into its own staging, and reports an epoch only once it
 * arrived whole and its checksum matched. Anything else is an error that names
 * the frame and what was wrong; nothing partial is ever reported.
 */
#ifndef RINGFT_PROTO_EPOCH_H
#define RINGFT_PROTO_EPOCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "lib/disklog.h"

/*
 * Machine state crosses the wire as opaque blobs: the layout of a vCPU's, the
 * VM's and a device's state belongs to the VMM (vmm/state.h), which both ends
 * share; proto frames the blobs and checks each against the exact size the
 * receiving VM expects (struct epoch_shape), so a peer built with another
 * layout is refused, not misread.
 */
#define EPOCH_MAX_VCPUS	  8u
#define EPOCH_MAX_DEVICES 8u

struct epoch_blob {
	const void *data;
	size_t len;
};

struct epoch_device {
	const char *name;
	struct epoch_blob state;
};

/* A checkpoint's state, blobs pointing at the caller's (epoch_pack) or the receiver's memory. */
struct epoch_state {
	uint32_t nr_vcpus;
	uint32_t nr_devices;
	struct epoch_blob vm;
	struct epoch_blob vcpu[EPOCH_MAX_VCPUS];
	struct epoch_device dev[EPOCH_MAX_DEVICES];
};

/* What a receiver accepts: exactly these counts and sizes, device state up to a bound. */
struct epoch_shape {
	uint32_t nr_vcpus;
	uint32_t nr_devices;
	size_t vcpu_size;
	size_t vm_size;
	size_t device_max;	/* bytes of one device's state, at most */
	size_t device_name_max; /* a device's name is shorter than this */
};

struct epoch_tx {
	struct iovec *iov;
	unsigned int nr_iov;
	unsigned int cap_iov;
	uint8_t *owned; /* headers and packed messages, one allocation per epoch */
	size_t owned_len;
	size_t owned_cap;
	uint64_t bytes;	     /* every byte of the frames */
	uint64_t disk_bytes; /* of which disk record data (DISK frames' payload past the header) */
};

/*
 * What one epoch's disk records may hold: data bytes (writes) and records.
 * The receiver stages all of it before applying, so this bounds its memory; a
 * sender splits a larger backlog over several epochs.
 */
#define EPOCH_DISK_MAX	    (256u << 20)
#define EPOCH_DISK_RECS_MAX (1u << 18)

/*
 * An epoch, at most, carries every page this many times: once in a live batch
 * and once more in the pause (the sender's staging holds that much, and so
 * does the receiver's).
 */
#define EPOCH_MAX_COPIES 2u

/*
 * The running checksum of an epoch whose live batches are packed already:
 * epoch_pack() continues it (opts->sum), so EPOCH_END covers them too.
 */
struct epoch_sum {
	void *state; /* XXH3 state, allocated at the first batch */
	uint64_t epoch;
	uint64_t pages; /* in live batches so far */
	bool open;	/* live batches of `epoch` are packed, its EPOCH_BEGIN is not */
};

struct epoch_opts {
	bool initial_sync;	    /* pages of the initial copy: no state (state is NULL) */
	uint64_t memory_hash;	    /* --verify: hash of all guest memory at the checkpoint, or 0 */
	const uint64_t *zero_pages; /* initial sync: all-zero pages, listed without data */
	uint64_t nr_zero;
	/* A checkpoint's console bytes and their stream position (see ringft.proto). */
	const uint8_t *console;
	size_t console_len;
	uint64_t console_offset;
	uint64_t console_end;  /* stream position after the checkpoint's output */
	struct epoch_sum *sum; /* live batches of this epoch sent before, or NULL */
	/*
	 * The epoch's disk writes (NULL or empty: none), sent from the log's own
	 * buffer: it must stay unchanged until the epoch is sent. At most
	 * EPOCH_DISK_MAX data bytes and EPOCH_DISK_RECS_MAX records.
	 */
	const struct disk_log *disk;
	uint64_t disk_hash; /* --verify: XXH3 of the whole image at the checkpoint, or 0 */
};

/* Console bytes one checkpoint may carry; a guest that writes more loses the
 * excess from the secondary's copy, but console_end still says where the
 * checkpoint's output ends (a promoted guest continues there). */
#define EPOCH_CONSOLE_MAX (256u << 10)

/*
 * Frames epoch `epoch`: nr_pages pages (indexes in pages[], data at
 * data[k * 4096]), the disk records of opts->disk and the state (NULL for
 * initial-sync pages). The iovecs stay valid until the next epoch_pack() or
 * epoch_tx_free() and until the data buffer or the disk log changes; the state
 * is copied. opts may be NULL (a checkpoint, no memory hash, no disk). Returns
 * 0, -EINVAL, -EMSGSIZE (a disk log beyond the epoch bounds) or -ENOMEM.
 */
int epoch_pack(struct epoch_tx *tx, uint64_t epoch, const uint64_t *pages, uint64_t nr_pages,
	       const uint8_t *data, const struct epoch_state *state, const struct epoch_opts *opts);
void epoch_tx_free(struct epoch_tx *tx);

/*
 * Frames a live batch of epoch `epoch` (nr_pages > 0 pages, data at
 * data[k * 4096]) into tx and adds it to the epoch's running checksum. The
 * epoch's epoch_pack() must pass the same sum in its opts.
 */
int epoch_pack_live(struct epoch_tx *tx, struct epoch_sum *sum, uint64_t epoch,
		    const uint64_t *pages, uint64_t nr_pages, const uint8_t *data);
void epoch_sum_free(struct epoch_sum *sum);

enum epoch_rx_phase {
	EPOCH_RX_IDLE,	/* between epochs: LIVE_PAGES, EPOCH_BEGIN or HEARTBEAT */
	EPOCH_RX_LIVE,	/* PAGES of a live batch until its list is complete */
	EPOCH_RX_OPEN,	/* after live batches: LIVE_PAGES, EPOCH_BEGIN or HEARTBEAT */
	EPOCH_RX_PAGES, /* PAGES until the page list is complete */
	EPOCH_RX_STATE, /* DISK records, then STATE */
	EPOCH_RX_END,	/* EPOCH_END */
};

struct epoch_rx {
	/* Limits of the receiving VM. */
	uint64_t guest_pages;
	struct epoch_shape shape;

	enum epoch_rx_phase phase;
	uint64_t next_epoch; /* the only epoch number accepted next */
	uint64_t frames;     /* frames accepted in this epoch, for messages */

	/* The frame being read. */
	uint8_t hdr_buf[24];
	size_t hdr_have;
	bool in_payload;
	uint32_t type, length;
	uint64_t frame_epoch;
	uint8_t *msg; /* WIRE_MAX_MSG bytes, grown for long page lists */
	size_t msg_cap;
	size_t have;

	/* The epoch being staged. */
	uint64_t epoch;
	uint64_t *pages;     /* live batches' lists, then EPOCH_BEGIN's: apply in order */
	uint64_t nr_pages;   /* announced so far */
	uint64_t pages_have; /* arrived so far (page k at data[k * 4096]) */
	uint8_t *data;
	/*
	 * The checkpoint's state, shaped as epoch_rx_init() was told: blobs in
	 * state_msg, valid until the next epoch's state arrives or epoch_rx_free().
	 */
	struct epoch_state state;
	void *state_msg;
	void *hash;
	bool initial_sync;    /* the staged epoch is initial-sync pages: no state */
	uint64_t *zero_pages; /* initial sync: pages to be zeroed, no data */
	uint64_t nr_zero;
	uint64_t memory_hash; /* from EPOCH_END, 0 if none */
	uint8_t *console;     /* EPOCH_CONSOLE_MAX bytes */
	size_t console_len;
	uint64_t console_offset;
	uint64_t console_end; /* >= console_offset + console_len */
	/*
	 * The epoch's disk records, checked against the image (epoch_rx_set_disk)
	 * and staged whole; cleared when the next epoch begins.
	 */
	uint64_t disk_size; /* bytes of the receiver's image, 0: no disk */
	struct disk_log disk;
	uint64_t disk_hash; /* from EPOCH_END, 0 if none */

	char goodbye[128]; /* the peer's reason, after EPOCH_RX_GOODBYE */
	bool switchover;   /* ... a hand-over at checkpoint switchover_checkpoint */
	uint64_t switchover_checkpoint;
	char error[192];
};

/* epoch_rx_feed() results besides errors. */
#define EPOCH_RX_MORE	 0 /* everything consumed, nothing complete yet */
#define EPOCH_RX_READY	 1 /* an epoch is staged and verified */
#define EPOCH_RX_GOODBYE 2 /* the peer said goodbye (between epochs) */

/* A receiver for a VM of guest_pages pages whose state has this shape. 0, -EINVAL or -ENOMEM. */
int epoch_rx_init(struct epoch_rx *rx, uint64_t guest_pages, const struct epoch_shape *shape);
void epoch_rx_free(struct epoch_rx *rx);
/*
 * The receiver's disk image is disk_size bytes (0: none, the default, and a
 * DISK frame is refused). Call after epoch_rx_init(), before the first epoch.
 */
void epoch_rx_set_disk(struct epoch_rx *rx, uint64_t disk_size);

/*
 * Consumes len bytes. Returns EPOCH_RX_MORE, EPOCH_RX_READY (it stops after an
 * epoch's end so the caller can apply it, with *ret_used telling how much was
 * consumed), EPOCH_RX_GOODBYE, or a negative errno with rx->error set
 * (-EBADMSG, -EPROTO, -EMSGSIZE, -ERANGE, -EILSEQ checksum). After an error the
 * receiver is unusable: the connection must be closed.
 */
int epoch_rx_feed(struct epoch_rx *rx, const uint8_t *buf, size_t len, size_t *ret_used);

/*
 * Where the next bytes belong if they are page data: inside a PAGES payload it
 * returns the place in staging and how many bytes are still due, so a socket
 * can receive straight into it (then pass that pointer to epoch_rx_feed, which
 * does not copy bytes already in place). Returns NULL elsewhere.
 */
uint8_t *epoch_rx_direct(struct epoch_rx *rx, size_t *ret_len);

#endif
