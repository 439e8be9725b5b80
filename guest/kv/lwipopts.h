/* SPDX-License-Identifier: MIT */
/*
 * lwIP configuration of builtin:kv: NO_SYS (no threads, raw API, polled by vCPU 0),
 * IPv4 + ARP + ICMP + TCP over Ethernet, static address, no DHCP/DNS/UDP apps.
 * Sized for throughput: MSS 1460, a scaled 64-segment receive window. All of lwIP's
 * memory (heap, pools) is static, in the image's .bss (guest/kv/kv.ld places it in
 * the data area, guest/README.md).
 */
#ifndef RINGFT_KV_LWIPOPTS_H
#define RINGFT_KV_LWIPOPTS_H

#define NO_SYS		     1
#define SYS_LIGHTWEIGHT_PROT 0
#define LWIP_SOCKET	     0
#define LWIP_NETCONN	     0
#define LWIP_NETIF_API	     0
#define LWIP_TIMERS	     1

#define LWIP_IPV4		      1
#define LWIP_IPV6		      0
#define LWIP_ARP		      1
#define LWIP_ETHERNET		      1
#define LWIP_ICMP		      1
#define LWIP_RAW		      0
#define LWIP_UDP		      0
#define LWIP_TCP		      1
#define LWIP_DHCP		      0
#define LWIP_AUTOIP		      0
#define LWIP_DNS		      0
#define LWIP_IGMP		      0
#define LWIP_ACD		      0
#define IP_REASSEMBLY		      0
#define IP_FRAG			      0
#define ETHARP_SUPPORT_STATIC_ENTRIES 0
#define ARP_TABLE_SIZE		      32
#define ARP_QUEUEING		      1
#define ETH_PAD_SIZE		      0

/* Memory: the heap holds TX copies (tcp_write with TCP_WRITE_FLAG_COPY). */
#define MEM_LIBC_MALLOC		0
#define MEMP_MEM_MALLOC		0
#define MEM_ALIGNMENT		8
#define MEM_SIZE		(6 * 1024 * 1024)
#define MEMP_NUM_PBUF		256
#define MEMP_NUM_TCP_PCB	192
#define MEMP_NUM_TCP_PCB_LISTEN 4
#define MEMP_NUM_TCP_SEG	4096
#define MEMP_NUM_REASSDATA	0
#define MEMP_NUM_ARP_QUEUE	64
#define MEMP_NUM_SYS_TIMEOUT	(LWIP_NUM_SYS_TIMEOUT_INTERNAL + 2)
#define PBUF_POOL_SIZE		2048
#define PBUF_POOL_BUFSIZE                                                                          \
	LWIP_MEM_ALIGN_SIZE(TCP_MSS + 40 + PBUF_LINK_ENCAPSULATION_HLEN + PBUF_LINK_HLEN)

/* TCP. */
#define TCP_MSS		    1460
#define LWIP_WND_SCALE	    1
#define TCP_RCV_SCALE	    2
#define TCP_WND		    (64 * TCP_MSS)
#define TCP_SND_BUF	    (64 * TCP_MSS)
#define TCP_SND_QUEUELEN    (4 * TCP_SND_BUF / TCP_MSS)
#define TCP_SNDLOWAT	    (TCP_SND_BUF / 2)
#define TCP_QUEUE_OOSEQ	    1
#define TCP_OOSEQ_MAX_PBUFS 64
#define TCP_LISTEN_BACKLOG  0
#define LWIP_TCP_KEEPALIVE  0
#define TCP_OVERSIZE	    TCP_MSS
#define LWIP_TCP_TIMESTAMPS 0
#define LWIP_CALLBACK_API   1
#define TCP_TMR_INTERVAL    50

/* Checksums in software (the device offers no offloads we accept). */
#define CHECKSUM_GEN_IP	      1
#define CHECKSUM_GEN_TCP      1
#define CHECKSUM_CHECK_IP     1
#define CHECKSUM_CHECK_TCP    1
#define LWIP_CHECKSUM_ON_COPY 1

#define LWIP_NETIF_STATUS_CALLBACK 0
#define LWIP_NETIF_LINK_CALLBACK   0
#define LWIP_NETIF_HOSTNAME	   0
#define LWIP_SINGLE_NETIF	   1
#define LWIP_HAVE_LOOPIF	   0
#define LWIP_NETIF_LOOPBACK	   0

#define LWIP_STATS	   0
#define LWIP_STATS_DISPLAY 0
#define LWIP_DEBUG	   0
#define LWIP_PERF	   0
#define LWIP_PROVIDE_ERRNO 1

/* lwiperf (apps/lwiperf): the iperf 2 TCP server. */
#define LWIPERF_CHECK_RX_DATA 0

#endif
