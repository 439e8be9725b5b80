/* SPDX-License-Identifier: MIT */
/* builtin:kv's guest-side pieces: console, clock, the NIC and the servers. */
#ifndef RINGFT_KV_KV_H
#define RINGFT_KV_KV_H

#include <stdint.h>

#include "guest/lib.h"

struct netif;
struct aof;
struct aof_blk_ops;

extern const struct guest_params *kv_params;

/* Milliseconds since boot, monotonic even if the TSC jumps back (another host). */
uint64_t kv_now_ms(void);

/* Console lines: kv_print("a", "b", NULL) style pieces, and numbers. */
void kv_line_start(const char *s);
void kv_line_str(const char *s);
void kv_line_u64(uint64_t v);
void kv_line_ip(uint32_t ip_host_order);
void kv_line_end(void);
/* Prints "kv: <msg>" and signals GUEST_SIGNAL_PANIC. */
__attribute__((noreturn)) void kv_panic(const char *msg);

/* virtio-net (virtio_net.c). */
void vnet_init(uint64_t mmio_gpa);
void vnet_mac(uint8_t mac[6]);
/* lwIP netif init function: MTU, MAC, linkoutput. */
int8_t vnet_netif_init(struct netif *netif);
/* Receives what the device put in the RX queue into lwIP, reposts the buffers. */
void vnet_poll(struct netif *netif);
/* Reclaims sent frames; one TX notify if frames were added since the last one. */
void vnet_tx_flush(void);
/* Panics if the device set DEVICE_NEEDS_RESET (reads Status: an exit). */
void vnet_check(void);

struct vnet_stats {
	uint64_t rx_frames, rx_bytes, rx_dropped;
	uint64_t tx_frames, tx_bytes, tx_busy;
	uint64_t notifies;
};
extern struct vnet_stats vnet_stats;

/* virtio-blk (virtio_blk.c): the disk of the write log. */
/* Whether a virtio-blk device answers at mmio_gpa (an empty slot reads all ones). */
int vblk_present(uint64_t mmio_gpa);
/* Panics on a device it cannot use (no VERSION_1, read-only, FEATURES_OK refused). */
void vblk_init(uint64_t mmio_gpa);
uint64_t vblk_sectors(void);
/* Whether the device offered VIRTIO_BLK_F_FLUSH (without it a flush is a no-op). */
int vblk_flush_supported(void);
extern const struct aof_blk_ops vblk_ops;

struct vblk_stats {
	uint64_t requests, errors, flushes, notifies;
	uint64_t read_bytes, write_bytes;
};
extern struct vblk_stats vblk_stats;

/* RESP server on lwIP (server.c). */
void kv_server_start(uint64_t store_gpa, uint64_t max_bytes);
/*
 * Opens the write log on a disk (aof.h) and replays it into the store; from then
 * on replies wait for their writes to be on disk. Call after kv_server_start(),
 * before the first poll. *ret_log: the log, for its counters.
 */
int kv_server_open_log(const struct aof_blk_ops *ops, void *ctx, uint64_t sectors,
		       const struct aof **ret_log);
void kv_server_poll(void);
uint64_t kv_server_clients(void);
uint64_t kv_server_commands(void);
uint64_t kv_server_keys(void);

#endif
