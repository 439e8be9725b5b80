/* SPDX-License-Identifier: MIT */
/*
 * builtin:kv: lwIP with a poll-mode virtio-net driver, a Redis-protocol key-value
 * server on port 6379 and lwIP's iperf 2 server on port 5001 (guest/README.md).
 * vCPU 0 runs the network loop; the other vCPUs spin with pause.
 */
#include <errno.h>
#include <string.h>

#include "lwip/apps/lwiperf.h"
#include "lwip/etharp.h"
#include "lwip/init.h"
#include "lwip/netif.h"
#include "lwip/timeouts.h"
#include "netif/ethernet.h"

#include "guest/kv/aof.h"
#include "guest/kv/kv.h"

#define STATS_MS  10000
#define STATUS_MS 100

extern char __bss_start[], __bss_end[];

/* kv.ld repeats these two numbers (a linker script cannot include layout.h). */
_Static_assert(GUEST_KV_BSS_GPA == 0x800000 && GUEST_KV_BSS_MAX == 0x2800000,
	       "keep guest/kv/kv.ld in sync with guest/layout.h");
_Static_assert(GUEST_KV_BSS_GPA + GUEST_KV_BSS_MAX <= GUEST_KV_STORE_GPA,
	       "kv .bss below the store");

static struct netif kv_netif;

static void hex2(uint8_t b)
{
	static const char digits[] = "0123456789abcdef";
	char s[3] = { digits[b >> 4], digits[b & 15], 0 };

	kv_line_str(s);
}

static void iperf_report(void *arg, enum lwiperf_report_type type, const ip_addr_t *local_addr,
			 u16_t local_port, const ip_addr_t *remote_addr, u16_t remote_port,
			 u32_t bytes, u32_t ms, u32_t kbps)
{
	(void)arg;
	(void)local_addr;
	(void)local_port;
	(void)remote_port;
	kv_line_start("kv iperf from=");
	kv_line_ip(lwip_ntohl(ip4_addr_get_u32(ip_2_ip4(remote_addr))));
	kv_line_str(type == LWIPERF_TCP_DONE_SERVER ? " done" : " aborted");
	kv_line_str(" bytes=");
	kv_line_u64(bytes);
	kv_line_str(" ms=");
	kv_line_u64(ms);
	kv_line_str(" kbit_s=");
	kv_line_u64(kbps);
	kv_line_end();
}

static void print_stats(void)
{
	kv_line_start("kv stats s=");
	kv_line_u64(kv_now_ms() / 1000);
	kv_line_str(" clients=");
	kv_line_u64(kv_server_clients());
	kv_line_str(" keys=");
	kv_line_u64(kv_server_keys());
	kv_line_str(" cmds=");
	kv_line_u64(kv_server_commands());
	kv_line_str(" rx=");
	kv_line_u64(vnet_stats.rx_frames);
	kv_line_str(" tx=");
	kv_line_u64(vnet_stats.tx_frames);
	kv_line_str(" txbusy=");
	kv_line_u64(vnet_stats.tx_busy);
	kv_line_str(" rxdrop=");
	kv_line_u64(vnet_stats.rx_dropped);
	kv_line_end();
}

static const char *const stop_words[] = {
	[AOF_STOP_END] = "end",
	[AOF_STOP_ZERO] = "zero",
	[AOF_STOP_STALE] = "stale",
	[AOF_STOP_TORN] = "torn",
};

/* With a virtio-blk disk in its slot, the store is replayed from its log. */
static void open_disk(void)
{
	uint64_t gpa = GUEST_VIRTIO_MMIO_GPA + GUEST_VIRTIO_SLOT_BLK * GUEST_VIRTIO_MMIO_SIZE;
	const struct aof *log;
	int err;

	if (!vblk_present(gpa))
		return; /* no disk: memory only, as ever */
	vblk_init(gpa);
	err = kv_server_open_log(&vblk_ops, NULL, vblk_sectors(), &log);
	if (err == -EINVAL)
		kv_panic("the disk holds no kv log (sector 0 is neither zero nor a valid "
			 "superblock)");
	if (err == -ENOSPC)
		kv_panic("the disk is too small for the kv log (at least 3 MiB)");
	if (err == -ENOMEM)
		kv_panic("the disk log does not fit in kv_max_bytes");
	if (err)
		kv_panic("disk I/O error while opening the kv log");
	kv_line_start("kv disk sectors=");
	kv_line_u64(vblk_sectors());
	kv_line_str(log->formatted ? " log=new" : " log=existing");
	kv_line_str(" gen=");
	kv_line_u64(log->generation);
	kv_line_str(" boot=");
	kv_line_u64(log->boot);
	kv_line_str(" region=");
	kv_line_u64(log->current);
	kv_line_str(" replayed=");
	kv_line_u64(log->replayed);
	kv_line_str(" keys=");
	kv_line_u64(kv_server_keys());
	kv_line_str(" bytes=");
	kv_line_u64(log->tail);
	kv_line_str(" tail=");
	kv_line_str(stop_words[log->stop]);
	kv_line_str(vblk_flush_supported() ? " flush=1" : " flush=0");
	kv_line_end();
}

static uint32_t prefix_len(uint32_t mask)
{
	uint32_t n = 0;

	while (n < 32 && (mask & (0x80000000u >> n)))
		n++;
	return n;
}

void guest_main(unsigned int vcpu, const struct guest_params *p)
{
	ip4_addr_t ip, mask, gw;
	uint8_t mac[6];
	struct deadline stats, status;
	uint64_t now;

	if (vcpu != 0)
		for (;;)
			cpu_relax();
	memset(__bss_start, 0, (size_t)(__bss_end - __bss_start));
	kv_params = p;
	guest_check_params(vcpu, p);
	kv_now_ms();

	kv_line_start("kv starting vcpus=");
	kv_line_u64(p->nr_vcpus);
	kv_line_str(" mem_mib=");
	kv_line_u64(p->mem_size >> 20);
	kv_line_str(" kv_max_bytes=");
	kv_line_u64(p->kv_max_bytes);
	kv_line_end();

	if (!p->net_present)
		kv_panic("no virtio-net device (ftd run --net tap=NAME)");
	if (!p->net_ip)
		kv_panic("no IPv4 address (ftd run --guest-ip ADDR/PREFIX)");
	if (p->kv_max_bytes < GUEST_KV_MIN_BYTES || guest_kv_store_end(p) > p->data_end)
		kv_panic("kv_max_bytes does not fit in guest RAM");

	vnet_init(GUEST_VIRTIO_MMIO_GPA + GUEST_VIRTIO_SLOT_NET * GUEST_VIRTIO_MMIO_SIZE);
	vnet_mac(mac);

	lwip_init();
	ip4_addr_set_u32(&ip, lwip_htonl(p->net_ip));
	ip4_addr_set_u32(&mask, lwip_htonl(p->net_mask));
	ip4_addr_set_u32(&gw, lwip_htonl(p->net_gateway));
	if (!netif_add(&kv_netif, &ip, &mask, &gw, NULL, vnet_netif_init, ethernet_input))
		kv_panic("netif_add failed");
	netif_set_default(&kv_netif);
	netif_set_up(&kv_netif);
	netif_set_link_up(&kv_netif);

	kv_server_start(GUEST_KV_STORE_GPA, p->kv_max_bytes);
	open_disk();
	if (!lwiperf_start_tcp_server_default(iperf_report, NULL))
		kv_panic("cannot start the iperf server on port 5001");

	kv_line_start("kv ip=");
	kv_line_ip(p->net_ip);
	kv_line_str("/");
	kv_line_u64(prefix_len(p->net_mask));
	if (p->net_gateway) {
		kv_line_str(" gw=");
		kv_line_ip(p->net_gateway);
	}
	kv_line_str(" mac=");
	for (int i = 0; i < 6; i++) {
		if (i)
			kv_line_str(":");
		hex2(mac[i]);
	}
	kv_line_str(" port=6379 iperf=5001 ready");
	kv_line_end();

	now = rdtsc();
	deadline_start(&stats, now, STATS_MS * p->tsc_khz);
	deadline_start(&status, now, STATUS_MS * p->tsc_khz);
	for (;;) {
		vnet_poll(&kv_netif);
		sys_check_timeouts();
		kv_server_poll();
		vnet_tx_flush();
		now = rdtsc();
		if (deadline_passed(&status, now))
			vnet_check();
		if (deadline_passed(&stats, now))
			print_stats();
	}
}
