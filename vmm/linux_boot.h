/* SPDX-License-Identifier: MIT */
/*
 * Loading a Linux kernel (a vmlinux ELF) into a created, not yet started VM,
 * through the 64-bit boot protocol (Documentation/arch/x86/boot.rst) or the PVH
 * entry (the XEN_ELFNOTE_PHYS32_ENTRY note, Xen's hvm_start_info), with the
 * machine description a firmware would leave: an e820 map (or the PVH memory
 * map), an MP table, LAPIC LINT0/LINT1 wired as ExtINT/NMI, and the application
 * processors waiting for INIT/SIPI.
 *
 * Guest-physical layout (below 1 MiB; the kernel loads at its ELF p_paddr,
 * 16 MiB for a default x86-64 build):
 *   0x0500  GDT (null, null, 0x10 code, 0x18 data, 0x20 TSS)
 *   0x6000  PVH: hvm_start_info, its module list (0x6100) and memory map (0x6200)
 *   0x7000  64-bit protocol: boot_params (the "zero page")
 *   0x9000  64-bit protocol: page tables (PML4, PDPT, 4 PDs: 4 GiB in 2 MiB pages)
 *   0x20000 command line (at most LINUX_CMDLINE_MAX bytes with its NUL)
 *   0x9fc00 MP table, in the reserved range 0x9fc00..0x100000 (where Linux scans)
 * The initrd goes page-aligned at the top of low RAM, below 2 GiB.
 * Every byte is written through vm_write_guest(): a replica receives it all.
 */
#ifndef RINGFT_VMM_LINUX_BOOT_H
#define RINGFT_VMM_LINUX_BOOT_H

#include <stddef.h>
#include <stdint.h>

struct vm;

#define LINUX_GDT_GPA	     0x500ULL
#define LINUX_PVH_INFO_GPA   0x6000ULL
#define LINUX_PVH_MODS_GPA   0x6100ULL
#define LINUX_PVH_MEMMAP_GPA 0x6200ULL
#define LINUX_ZERO_PAGE_GPA  0x7000ULL
#define LINUX_PT_GPA	     0x9000ULL
#define LINUX_CMDLINE_GPA    0x20000ULL
#define LINUX_CMDLINE_MAX    2048	/* x86 COMMAND_LINE_SIZE, NUL included */
#define LINUX_EBDA_GPA	     0x9fc00ULL /* MP table; reserved up to 1 MiB */
#define LINUX_HIGH_START     0x100000ULL
#define LINUX_INITRD_MAX     0x7fffffffULL /* initrd_addr_max of modern kernels */
#define LINUX_BOOT_CS	     0x10	   /* __BOOT_CS */
#define LINUX_BOOT_DS	     0x18	   /* __BOOT_DS */

enum linux_boot_protocol {
	LINUX_BOOT_64BIT, /* boot_params in RSI, 64-bit mode, paging on */
	LINUX_BOOT_PVH,	  /* hvm_start_info in EBX, 32-bit protected mode, paging off */
};

struct linux_boot_config {
	const char *kernel;  /* vmlinux (ELF64, x86-64) */
	const char *initrd;  /* NULL: none */
	const char *cmdline; /* NULL: empty; virtio_mmio.device= entries are appended */
	enum linux_boot_protocol protocol;
};

/*
 * Loads the kernel, initrd, command line and machine description into vm and
 * sets every vCPU's registers (vCPU 0 at the kernel's entry; the others waiting
 * for INIT/SIPI). Call after the devices are added, before vm_start(). Returns
 * 0 or -errno, with a message for a human in err (bad ELF, does not fit, no PVH
 * note, command line too long, ...).
 */
int linux_boot_load(struct vm *vm, const struct linux_boot_config *cfg, char *err, size_t errlen);

/* One range of the guest's physical memory map, as e820 and PVH both describe it. */
struct linux_mem_range {
	uint64_t addr;
	uint64_t size;
	uint32_t type; /* LINUX_MEM_RAM or LINUX_MEM_RESERVED (e820 and PVH agree) */
};
#define LINUX_MEM_RAM	   1
#define LINUX_MEM_RESERVED 2
#define LINUX_MEM_MAX	   4

/*
 * The memory map of a VM with mem_size bytes of RAM (vm.h's layout): RAM below
 * the EBDA, the EBDA and BIOS area reserved, RAM from 1 MiB to the end of low
 * RAM, and RAM from 4 GiB when there is more than 3 GiB. Nothing covers the
 * MMIO hole (virtio-mmio, IOAPIC, LAPIC). Returns the number of ranges.
 */
unsigned int linux_boot_memmap(uint64_t mem_size, struct linux_mem_range out[LINUX_MEM_MAX]);

/*
 * The command line the kernel gets: user (may be NULL) followed by one
 * "virtio_mmio.device=<size>@<base>:<irq>" per device of vm with an MMIO window.
 * Returns its length (without NUL), -E2BIG if it needs LINUX_CMDLINE_MAX bytes or
 * more (or len), -EINVAL for an MMIO device outside the virtio-mmio slots.
 */
int linux_boot_cmdline(const struct vm *vm, const char *user, char *buf, size_t len);

#endif
