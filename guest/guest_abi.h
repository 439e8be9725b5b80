/* SPDX-License-Identifier: MIT */
/*
 * The contract between the built-in test guests and the VMM's loader.
 *
 * Included by freestanding guest code and by the host, so it uses only fixed-width
 * types and no libc. The loader enters every vCPU directly in 64-bit long mode at
 * CPL 3 with RFLAGS.IOPL=3 and IF=0. Exceptions go through an IDT to the image's
 * handler at CPL 0, on a stack of the vCPU's own (its TSS's RSP0): a page fault
 * at an address that the guest's page tables map after all (a spurious fault) is
 * reported (GUEST_SIGNAL_FAULT_RETRIED) and retried; any other exception is
 * reported (GUEST_SIGNAL_EXCEPTION) and stops the vCPU. An exception inside the
 * handler, or where the IDT may not be used (kvm_pvm: not verified), is a
 * triple fault, reported by the VMM as the guest's crash. Entry is with
 *   RIP = GUEST_IMAGE_GPA (the image's _start),
 *   RDI = vCPU index, RSI = GUEST_PARAMS_GPA, RSP = top of that vCPU's stack.
 *
 * Guest physical layout (identity mapped with 2 MiB user pages, RAM below 3 GiB;
 * RAM beyond 3 GiB lives at 4 GiB and up, above the PCI hole):
 */
#ifndef RINGFT_GUEST_ABI_H
#define RINGFT_GUEST_ABI_H

#ifndef __ASSEMBLER__
#include <stdint.h>
#endif

#define GUEST_GDT_GPA	 0x1000ULL
#define GUEST_PARAMS_GPA 0x2000ULL /* struct guest_params, one page */
/*
 * 64-bit TSSes, one per vCPU (GUEST_TSS_SIZE apart from GUEST_TSS_GPA), all with
 * the one I/O permission bitmap that follows them and allows every port: on
 * kvm_pvm an `out` at CPL 3 faults without it, even with IOPL=3.
 */
#define GUEST_TSS_GPA	     0x3000ULL
#define GUEST_TSS_SIZE	     0x68ULL
#define GUEST_IOMAP_GPA	     0x3400ULL	/* 8 KiB and a closing 0xff byte: to 0x5401 */
#define GUEST_IDT_GPA	     0x5800ULL	/* GUEST_EXC_VECTORS interrupt gates */
#define GUEST_EXC_STACK_GPA  0x6000ULL	/* vCPU i: one page from here + i * 4 KiB */
#define GUEST_PT_GPA	     0x10000ULL /* PML4, PDPT, then PDs: up to 0x60000 */
#define GUEST_PT_PDPT_GPA    (GUEST_PT_GPA + 0x1000)
#define GUEST_PT_PD_GPA	     (GUEST_PT_GPA + 0x2000) /* one PD per GiB: 3 for RAM, the 4th for MMIO */
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
/* The exception handler (see the top): its report is in the vCPU's exception page. */
#define GUEST_SIGNAL_EXCEPTION	   0xe0
#define GUEST_SIGNAL_FAULT_RETRIED 0xe1

/*
 * Exception entry points: vector v enters the image at GUEST_EXC_ENTRY_OFFSET +
 * v * GUEST_EXC_ENTRY_SIZE (guest/start.S), at CPL 0, through an interrupt gate.
 */
#define GUEST_EXC_ENTRY_OFFSET 0x40
#define GUEST_EXC_ENTRY_SIZE   16
#define GUEST_EXC_VECTORS      32

#ifndef __ASSEMBLER__
/* At the bottom of vCPU i's exception page, written before each signal above. */
struct guest_exception_report {
	uint64_t vector;
	uint64_t error; /* the error code, 0 for vectors without one */
	uint64_t rip;
	uint64_t rsp;
	uint64_t cs;	/* CPL 0: the exception came inside the handler */
	uint64_t cr2;	/* page faults */
	uint64_t walk;	/* page faults: the guest's walk of cr2 (GUEST_WALK_*) */
	uint64_t count; /* faults retried so far on this vCPU */
	/* The handler's own: the last retried fault, and how often it came back at once. */
	uint64_t last_rip, last_cr2, last_tsc, repeats;
};

/* What the handler's walk of the guest's own page tables found for cr2. */
#define GUEST_WALK_MAPPED    0 /* present with the rights the access needed */
#define GUEST_WALK_ABSENT    1 /* an entry on the way is not present */
#define GUEST_WALK_DENIED    2 /* present, but without write or user rights */
#define GUEST_WALK_BAD_TABLE 3 /* a table outside RAM: not looked at */

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
#endif /* !__ASSEMBLER__ */

#endif
