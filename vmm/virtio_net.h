/* SPDX-License-Identifier: MIT */
/*
 * virtio-net (device ID 1) on a TAP, over the virtio-mmio transport
 * (virtio_mmio.h). Features: VIRTIO_F_VERSION_1, VIRTIO_NET_F_MAC and
 * VIRTIO_NET_F_STATUS (link always up); one RX queue (0) and one TX queue (1);
 * every buffer starts with the 12-byte struct virtio_net_hdr_v1, no offloads.
 *
 * Received frames: io_uring reads stay posted on the TAP; each completion is
 * copied (by vm_devices_poll on the owner thread) into the guest's next RX
 * chain after a header that is all zero but num_buffers = 1 (5.1.6.4.1). A
 * frame larger than the chain is dropped and the chain kept for the next. While
 * the guest has no RX buffers up to NET_RX_BACKLOG frames wait; beyond that the
 * oldest is dropped (stats.rx_dropped). A driver that adds RX buffers after
 * running out notifies the RX queue, which delivers what waits.
 *
 * Transmitted frames: chains are popped on the owner thread, the header is
 * skipped and the frame is handed to the TX sink (the output commit). Without a
 * sink it goes to the TAP at once. A sink that refuses (-EAGAIN) leaves the
 * chain in the avail ring and stops the queue until virtio_net_tx_resume().
 *
 * Lifetime: virtio_net_create() registers the device with the VM, which owns
 * and frees it (vm_free). virtio_net_attach() opens the TAP; until then TX
 * chains wait in the ring. A secondary attaches only at promotion: the primary
 * owns the guest's address until then.
 *
 * Threads: everything here is for the owner thread (the one that calls
 * vm_devices_poll), except virtio_net_tx_resume(), which any thread may call.
 */
#ifndef RINGFT_VMM_VIRTIO_NET_H
#define RINGFT_VMM_VIRTIO_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <net/if.h>

struct vm;
struct virtio_net;

#define VIRTIO_NET_DEVICE_ID 1
#define VIRTIO_NET_HDR_LEN   12 /* struct virtio_net_hdr_v1 */
#define VIRTIO_NET_RXQ	     0
#define VIRTIO_NET_TXQ	     1
#define VIRTIO_NET_FRAME_MAX 65536 /* largest frame either way, without header */
#define VIRTIO_NET_F_MAC     5
#define VIRTIO_NET_F_STATUS  16
#define VIRTIO_NET_S_LINK_UP 1
#define NET_RX_BACKLOG	     8 /* frames waiting for guest RX buffers */

struct virtio_net_config {
	char tap[IFNAMSIZ]; /* interface name; empty: the kernel picks one */
	uint8_t mac[6];
	bool vnet_hdr; /* open the TAP with IFF_VNET_HDR (12-byte headers on the TAP) */
};

struct virtio_net_stats {
	uint64_t rx_frames, rx_bytes; /* delivered to the guest */
	uint64_t rx_dropped;	      /* no room in the guest: backlog full, chain too small */
	uint64_t tx_frames, tx_bytes; /* taken from the guest (by the sink or the TAP) */
	uint64_t tx_held;	      /* sink refusals (-EAGAIN): the queue stopped */
	uint64_t tx_errors;	      /* malformed chains, failed TAP writes, sink errors */
};

/*
 * The output commit: gets every frame the guest transmits, without the virtio
 * header; `frame` is valid during the call only. Returns 0 (taken: the chain is
 * used), -EAGAIN (full: the chain stays, TX stops until virtio_net_tx_resume())
 * or another -errno (the frame is dropped and counted). Called on the owner
 * thread with the device locked: it must not call into the device, except
 * virtio_net_transmit() and virtio_net_tx_resume().
 */
typedef int (*virtio_net_tx_fn)(void *opaque, const uint8_t *frame, size_t len);

/* Creates the device in `slot` and adds it to the VM (before vm_start). */
int virtio_net_create(struct vm *vm, unsigned int slot, const struct virtio_net_config *cfg,
		      struct virtio_net **ret_net);
/*
 * Opens the TAP and its io_uring, posts the RX reads, and releases TX chains
 * that waited for a backend. -EALREADY if attached.
 */
int virtio_net_attach(struct virtio_net *net);
bool virtio_net_attached(const struct virtio_net *net);
/* The TAP's name (after attach: the kernel's, if cfg->tap was empty). */
const char *virtio_net_ifname(const struct virtio_net *net);

void virtio_net_set_tx_sink(struct virtio_net *net, virtio_net_tx_fn fn, void *opaque);
/* Restarts TX after a sink refusal (wakes the owner). Any thread. */
void virtio_net_tx_resume(struct virtio_net *net);
/*
 * Writes one frame to the TAP now (the output commit releases held frames with
 * this). The frame is copied. -ENOTCONN before attach, -EMSGSIZE if too big.
 */
int virtio_net_transmit(struct virtio_net *net, const uint8_t *frame, size_t len);
/*
 * Sends one RARP announcement for the guest's MAC to the TAP (as QEMU's
 * announce-self does after a migration): switches learn the new port. The
 * caller repeats it with backoff.
 */
int virtio_net_announce(struct virtio_net *net);

void virtio_net_get_stats(const struct virtio_net *net, struct virtio_net_stats *ret);
void virtio_net_get_mac(const struct virtio_net *net, uint8_t ret_mac[6]);
/* "52:54:00:12:34:56" (or with '-'): 0, or -EINVAL (also for multicast or zero). */
int virtio_net_parse_mac(const char *s, uint8_t ret_mac[6]);

#endif
