/* SPDX-License-Identifier: MIT */
/*
 * A poll-mode virtio-net driver for builtin:kv: virtio 1.2 over MMIO (transport
 * version 2), split virtqueues, features VIRTIO_F_VERSION_1 and VIRTIO_NET_F_MAC
 * only. Queue 0 (RX) is kept full of 2 KiB device-writable buffers; queue 1 (TX)
 * takes one descriptor per frame (the 12-byte virtio_net_hdr_v1, zeroed, then the
 * frame). QueueNotify is an MMIO write, an exit to the VMM: one per queue per
 * poll pass at most, and only when buffers were added. A device that stops
 * consuming TX (the VMM holding output) makes linkoutput return ERR_MEM: lwIP
 * keeps the TCP segments queued and sends them later; nothing is dropped here.
 * Rings and buffers are static (.bss, guest/kv/kv.ld).
 */
#include <string.h>

#include "lwip/etharp.h"
#include "lwip/netif.h"
#include "lwip/pbuf.h"
#include "lwip/priv/tcp_priv.h"
#include "netif/ethernet.h"

#include "guest/kv/kv.h"
#include "guest/kv/virtio_mmio.h"

#define VIRTIO_ID_NET 1

#define F_NET_MAC 5

#define QSIZE	    256
#define BUF_SIZE    2048
#define NET_HDR_LEN 12 /* struct virtio_net_hdr_v1 */
#define FRAME_MAX   1514
#ifndef TX_INFLIGHT_MAX
#define TX_INFLIGHT_MAX QSIZE /* a smaller value (-D) exercises backpressure */
#endif

struct vq_avail {
	uint16_t flags;
	uint16_t idx;
	uint16_t ring[QSIZE];
	uint16_t used_event;
};

struct vq_used_elem {
	uint32_t id;
	uint32_t len;
};

struct vq_used {
	uint16_t flags;
	uint16_t idx;
	struct vq_used_elem ring[QSIZE];
	uint16_t avail_event;
};

struct vq {
	struct vq_desc desc[QSIZE] __attribute__((aligned(4096)));
	struct vq_avail avail __attribute__((aligned(4096)));
	struct vq_used used __attribute__((aligned(4096)));
	uint8_t buf[QSIZE][BUF_SIZE] __attribute__((aligned(4096)));
	uint16_t num;	    /* queue size in use */
	uint16_t avail_idx; /* next avail index (ours) */
	uint16_t used_seen; /* used entries consumed */
	uint16_t free_head; /* TX: free descriptor list */
	uint16_t nr_free;
	uint16_t added; /* added since the last notify */
	uint16_t next_free[QSIZE];
};

static struct vq rxq, txq;
static struct vmmio mmio;
static int tx_stalled; /* linkoutput said ERR_MEM: retry TCP output once there is room */
static uint8_t mac_addr[6];
struct vnet_stats vnet_stats;

static void setup_queue(unsigned int index, struct vq *q)
{
	uint32_t max = vmmio_queue_max(&mmio, index);

	if (!max)
		kv_panic("virtio-net: queue not available (QueueNumMax 0)");
	q->num = max < QSIZE ? (uint16_t)max : QSIZE;
	if (q->num & (q->num - 1))
		kv_panic("virtio-net: QueueNumMax is not a power of two");
	vmmio_queue_ready(&mmio, q->num, q->desc, &q->avail, &q->used);
}

static void notify(unsigned int index, struct vq *q)
{
	if (!q->added)
		return;
	q->added = 0;
	if (vmmio_notify(&mmio, index, &q->used.flags))
		vnet_stats.notifies++;
}

static void rx_post(uint16_t id)
{
	struct vq *q = &rxq;

	q->desc[id].addr = (uint64_t)(uintptr_t)q->buf[id];
	q->desc[id].len = BUF_SIZE;
	q->desc[id].flags = DESC_F_WRITE;
	q->desc[id].next = 0;
	q->avail.ring[q->avail_idx & (q->num - 1)] = id;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	q->avail_idx++;
	__atomic_store_n(&q->avail.idx, q->avail_idx, __ATOMIC_RELEASE);
	q->added++;
}

void vnet_init(uint64_t mmio_gpa)
{
	uint64_t features;

	switch (vmmio_probe(mmio_gpa, VIRTIO_ID_NET)) {
	case VMMIO_FOUND:
		break;
	case VMMIO_BAD_MAGIC:
		kv_panic("no virtio-net device (bad virtio-mmio magic)");
	case VMMIO_BAD_VERSION:
		kv_panic("virtio-net: virtio-mmio version is not 2");
	case VMMIO_OTHER_DEVICE:
		kv_panic("no virtio-net device (device id is not 1)");
	}

	features = vmmio_begin(&mmio, mmio_gpa, "virtio-net");
	if (!(features & (1u << F_NET_MAC)))
		kv_panic("virtio-net: device lacks VIRTIO_NET_F_MAC");
	vmmio_set_features(&mmio, 1ULL << F_VERSION_1 | 1u << F_NET_MAC);

	for (unsigned int i = 0; i < 6; i++)
		mac_addr[i] = mmio.base[VM_CONFIG + i];

	setup_queue(0, &rxq);
	setup_queue(1, &txq);

	for (uint16_t i = 0; i < rxq.num; i++)
		rx_post(i);
	txq.free_head = 0;
	txq.nr_free = txq.num < TX_INFLIGHT_MAX ? txq.num : TX_INFLIGHT_MAX;
	for (uint16_t i = 0; i < txq.num; i++)
		txq.next_free[i] = (uint16_t)(i + 1);

	vmmio_driver_ok(&mmio);
	notify(0, &rxq);
}

void vnet_mac(uint8_t mac[6])
{
	memcpy(mac, mac_addr, 6);
}

static void tx_reclaim(void)
{
	struct vq *q = &txq;
	uint16_t used = __atomic_load_n(&q->used.idx, __ATOMIC_ACQUIRE);

	while (q->used_seen != used) {
		uint32_t id = q->used.ring[q->used_seen & (q->num - 1)].id;

		if (id >= q->num)
			kv_panic("virtio-net: bad TX used id");
		q->next_free[id] = q->free_head;
		q->free_head = (uint16_t)id;
		q->nr_free++;
		q->used_seen++;
	}
}

static err_t vnet_linkoutput(struct netif *netif, struct pbuf *p)
{
	struct vq *q = &txq;
	uint16_t id;

	(void)netif;
	if (p->tot_len > FRAME_MAX)
		return ERR_BUF;
	if (!q->nr_free)
		tx_reclaim();
	if (!q->nr_free) {
		vnet_stats.tx_busy++; /* backpressure: lwIP keeps the segment */
		tx_stalled = 1;
		return ERR_MEM;
	}
	id = q->free_head;
	q->free_head = q->next_free[id];
	q->nr_free--;
	memset(q->buf[id], 0, NET_HDR_LEN);
	pbuf_copy_partial(p, q->buf[id] + NET_HDR_LEN, p->tot_len, 0);
	q->desc[id].addr = (uint64_t)(uintptr_t)q->buf[id];
	q->desc[id].len = NET_HDR_LEN + p->tot_len;
	q->desc[id].flags = 0;
	q->desc[id].next = 0;
	q->avail.ring[q->avail_idx & (q->num - 1)] = id;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	q->avail_idx++;
	__atomic_store_n(&q->avail.idx, q->avail_idx, __ATOMIC_RELEASE);
	q->added++;
	vnet_stats.tx_frames++;
	vnet_stats.tx_bytes += p->tot_len;
	return ERR_OK;
}

err_t vnet_netif_init(struct netif *netif)
{
	netif->name[0] = 'v';
	netif->name[1] = 'n';
	netif->mtu = 1500;
	netif->hwaddr_len = 6;
	memcpy(netif->hwaddr, mac_addr, 6);
	netif->flags =
		NETIF_FLAG_BROADCAST | NETIF_FLAG_ETHARP | NETIF_FLAG_ETHERNET | NETIF_FLAG_LINK_UP;
	netif->output = etharp_output;
	netif->linkoutput = vnet_linkoutput;
	return ERR_OK;
}

void vnet_poll(struct netif *netif)
{
	struct vq *q = &rxq;
	uint16_t used = __atomic_load_n(&q->used.idx, __ATOMIC_ACQUIRE);
	unsigned int budget = q->num;

	while (q->used_seen != used && budget--) {
		struct vq_used_elem *e = &q->used.ring[q->used_seen & (q->num - 1)];
		uint32_t id = e->id, len = e->len;
		struct pbuf *p;

		if (id >= q->num)
			kv_panic("virtio-net: bad RX used id");
		q->used_seen++;
		if (len > NET_HDR_LEN && len <= BUF_SIZE) {
			len -= NET_HDR_LEN;
			p = pbuf_alloc(PBUF_RAW, (u16_t)len, PBUF_POOL);
			if (p) {
				pbuf_take(p, q->buf[id] + NET_HDR_LEN, (u16_t)len);
				vnet_stats.rx_frames++;
				vnet_stats.rx_bytes += len;
				if (netif->input(p, netif) != ERR_OK)
					pbuf_free(p);
			} else {
				vnet_stats.rx_dropped++;
			}
		} else {
			vnet_stats.rx_dropped++;
		}
		rx_post((uint16_t)id);
		if (q->used_seen == used)
			used = __atomic_load_n(&q->used.idx, __ATOMIC_ACQUIRE);
	}
	notify(0, q);
}

void vnet_tx_flush(void)
{
	tx_reclaim();
	if (tx_stalled && txq.nr_free) {
		/*
		 * TCP segments that met a full queue sit in lwIP's unsent queues with
		 * TF_NAGLEMEMERR and no timer: send them now that there is room.
		 */
		tx_stalled = 0;
		tcp_txnow();
	}
	notify(1, &txq);
}

/* Called now and then (not every pass: a status read is an exit). */
void vnet_check(void)
{
	vmmio_check(&mmio);
}
