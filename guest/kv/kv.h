/* SPDX-License-Identifier: MIT */
/* builtin:kv's guest-side pieces: console, clock, the NIC and the servers. */
#ifndef RINGFT_KV_KV_H
#define RINGFT_KV_KV_H

#include <stdint.h>

#include "guest/lib.h"

struct netif;

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

/* RESP server on lwIP (server.c). */
void kv_server_start(uint64_t store_gpa, uint64_t max_bytes);
void kv_server_poll(void);
uint64_t kv_server_clients(void);
uint64_t kv_server_commands(void);
uint64_t kv_server_keys(void);

#endif
