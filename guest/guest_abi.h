/* SPDX-License-Identifier: MIT */
/*
 * The contract between the built-in test guests and the VMM's loader.
 *
 * Included by freestanding guest code and by the host, so it uses only fixed-width
 * types and no libc. The loader enters every vCPU directly in 64-bit long mode at
 * CPL 3 with RFLAGS.IOPL=3 and IF=0 (no IDT: any exception is a triple fault,
 * reported by the VMM as the guest's crash), with
 *   RIP = GUEST_IMAGE_GPA (the image's _start),
 *   RDI = vCPU index, RSI = GUEST_PARAMS_GPA, RSP = top of that vCPU's stack.
 *
 * Guest physical layout (identity mapped with 2 MiB user pages, RAM below 3 GiB;
 * RAM beyond 3 GiB lives at 4 GiB and up, above the PCI hole):
 */
#ifndef RINGFT_GUEST_ABI_H
#define RINGFT_GUEST_ABI_H

#include <stdint.h>

#define GUEST_GDT_GPA	 0x1000ULL
#define GUEST_PARAMS_GPA 0x2000ULL /* struct guest_params, one page */
/*
 * 64-bit TSS with an I/O permission bitmap allowing every port, 0x3000..0x5069:
 * on kvm_pvm an `out` at CPL 3 faults without it, even with IOPL=3.
 */
#define GUEST_TSS_GPA	     0x3000ULL
#define GUEST_PT_GPA	     0x10000ULL /* PML4, PDPT, then PDs: up to 0x60000 */
#define GUEST_PT_END	     0x60000ULL
#define GUEST_IMAGE_GPA	     0x100000ULL /* flat image, linked here, at most 1 MiB */
#define GUEST_IMAGE_MAX	     0x100000ULL
#define GUEST_VCPU_AREA_GPA  0x200000ULL /* per vCPU: 64 KiB, stack grows down from its top */
#define GUEST_VCPU_AREA_SIZE 0x10000ULL
#define GUEST_DATA_GPA	     0x400000ULL /* workload data starts here (4 MiB) */

#define GUEST_MAX_VCPUS 8

/*
 * virtio-mmio devices (virtio 1.2, MMIO transport version 2), one 4 KiB window
 * per slot from GUEST_VIRTIO_MMIO_GPA, in the hole below 4 GiB. Slot s uses IRQ
 * line GUEST_VIRTIO_IRQ_BASE + s (reserved: today's guests poll). A Linux guest
 * finds them with virtio_mmio.device=4K@0xd0000000:5 and so on. The loader maps
 * the 2 MiB from GUEST_VIRTIO_MMIO_GPA as uncached user pages.
 */
#define GUEST_VIRTIO_MMIO_GPA	0xd0000000ULL
#define GUEST_VIRTIO_MMIO_SIZE	0x1000ULL
#define GUEST_VIRTIO_MMIO_SLOTS 8
#define GUEST_VIRTIO_IRQ_BASE	5
#define GUEST_VIRTIO_SLOT_NET	0 /* virtio-net (--net) */
#define GUEST_VIRTIO_SLOT_BLK	1 /* virtio-blk (--disk, the disk issue) */

/* Ports. 0x3f8..0x3ff is the 16550 console (COM1). */
#define GUEST_PORT_COM1 0x3f8
#define GUEST_IRQ_COM1	4 /* ISA IRQ of COM1 (interrupt-driven guests: Linux) */
/*
 * Writing a 32-bit value to GUEST_PORT_SIGNAL tells the VMM's owner something (the
 * VMM passes it to a hook with the vCPU index). Tests use it as a sync point.
 */
#define GUEST_PORT_SIGNAL  0xf4
#define GUEST_SIGNAL_READY 1 /* touch: set-up done, about to touch */
#define GUEST_SIGNAL_DONE  2 /* touch: one round of touching done */
#define GUEST_SIGNAL_PANIC 0xdead

#define GUEST_PARAMS_MAGIC 0x5446474eU /* "NGFT" */

enum guest_order {
	GUEST_ORDER_SEQUENTIAL = 0,
	GUEST_ORDER_RANDOM = 1,
};

/*
 * Filled by the loader before the vCPUs start. The guest only reads it, except
 * `go`, which the VMM bumps (a tracked VMM write) to release a waiting guest.
 */
struct guest_params {
	uint32_t magic;
	uint32_t nr_vcpus;
	uint64_t tsc_khz;  /* guest TSC ticks per millisecond */
	uint64_t mem_size; /* bytes of RAM */
	uint64_t data_gpa; /* first byte of workload data (GUEST_DATA_GPA) */
	uint64_t data_end; /* end of usable workload data (exclusive, below 3 GiB) */
	uint64_t seed;

	/* builtin:dirty */
	uint32_t dirty_pages_per_ms; /* K: distinct pages dirtied per ms, per vCPU */
	uint32_t dirty_order;	     /* enum guest_order */
	uint64_t dirty_wss_bytes;    /* W: working set per vCPU */
	uint32_t dirty_report_ms;    /* console line every so often */
	uint32_t pad0;

	/* builtin:bank */
	uint32_t bank_pages;	/* pages of accounts per vCPU */
	uint32_t bank_accounts; /* accounts per vCPU, spread over bank_pages */
	uint32_t bank_check_ms; /* sum check + console line period */
	uint32_t pad1;
	uint64_t bank_initial; /* initial balance of every account */

	/* builtin:touch (tests and benchmarks: an exactly known dirty set) */
	uint64_t touch_base_gpa; /* vCPU i touches pages in [base + i * span * 4096, ...) */
	uint32_t touch_count;	 /* pages per round, per vCPU; at most touch_span */
	uint32_t touch_span;	 /* power of two, pages */
	uint32_t touch_stride;	 /* odd: page k of a round is (k * stride) mod span */
	uint32_t touch_rounds;	 /* 0: forever */

	/*
	 * builtin:kv: IPv4 address, netmask and gateway in host byte order
	 * (a.b.c.d is a << 24 | b << 16 | c << 8 | d); 0: not set. The NIC is the
	 * virtio-net device in GUEST_VIRTIO_SLOT_NET (its MAC is in its config space).
	 */
	uint32_t net_ip;
	uint32_t net_mask;
	uint32_t net_gateway;
	uint32_t net_present;  /* 1: the VMM has a virtio-net device in its slot */
	uint64_t kv_max_bytes; /* bound of the key-value store's keys and values */

	/*
	 * Bumped by the VMM to start the next touch round. The guest spins reading it
	 * (reads do not dirty memory) after signalling GUEST_SIGNAL_DONE.
	 */
	volatile uint64_t go;
};

#endif
