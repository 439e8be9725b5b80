// SPDX-License-Identifier: MIT
/*
 * Linux loader (linux_boot.h): a vmlinux ELF, an initrd and a command line, with
 * the machine description firmware leaves behind, and the bootstrap vCPU set up
 * at the kernel's entry the way the chosen boot protocol defines it.
 *
 * Unlike the built-in guests (loader.c, entered at CPL 3 for kvm_pvm's sake),
 * Linux is entered at CPL 0 as both protocols require; on kvm_pvm that code is
 * emulated, which is slow but correct.
 */
#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <asm/bootparam.h>
#include <linux/kvm.h>

#include "guest/guest_abi.h"
#include "vmm/linux_boot.h"
#include "vmm/mptable.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

#define KERNEL_FILE_MAX (512ULL << 20)
#define PAGE_4K		4096ULL
#define PAGE_2M		(2ULL << 20)

/* PVH: the note Linux emits with CONFIG_PVH (arch/x86/platform/pvh/head.S). */
#define XEN_ELFNOTE_PHYS32_ENTRY 18

/*
 * Xen's public arch-x86/hvm/start_info.h, version 1 (which adds the memory
 * map): what a PVH kernel finds at EBX. Defined here to keep Xen headers out.
 */
#define HVM_START_MAGIC 0x336ec578U
struct hvm_start_info {
	uint32_t magic;
	uint32_t version;
	uint32_t flags;
	uint32_t nr_modules;
	uint64_t modlist_paddr; /* struct hvm_modlist_entry[nr_modules] */
	uint64_t cmdline_paddr; /* NUL-terminated */
	uint64_t rsdp_paddr;	/* 0: no ACPI (the kernel then reads the MP table) */
	uint64_t memmap_paddr;	/* struct hvm_memmap_table_entry[memmap_entries] */
	uint32_t memmap_entries;
	uint32_t reserved;
};
struct hvm_modlist_entry {
	uint64_t paddr;
	uint64_t size;
	uint64_t cmdline_paddr;
	uint64_t reserved;
};
struct hvm_memmap_table_entry {
	uint64_t addr;
	uint64_t size;
	uint32_t type; /* e820 types */
	uint32_t reserved;
};
_Static_assert(sizeof(struct hvm_start_info) == 56, "hvm_start_info v1");
_Static_assert(sizeof(struct hvm_modlist_entry) == 32, "hvm_modlist_entry");
_Static_assert(sizeof(struct hvm_memmap_table_entry) == 24, "hvm_memmap_table_entry");
_Static_assert(LINUX_PVH_INFO_GPA + sizeof(struct hvm_start_info) <= LINUX_PVH_MODS_GPA &&
		       LINUX_PVH_MODS_GPA + sizeof(struct hvm_modlist_entry) <=
			       LINUX_PVH_MEMMAP_GPA &&
		       LINUX_PVH_MEMMAP_GPA +
				       LINUX_MEM_MAX * sizeof(struct hvm_memmap_table_entry) <=
			       LINUX_ZERO_PAGE_GPA,
	       "PVH structures fit below the zero page");

/* GDT: the boot protocol's selectors, then a TSS descriptor (16 bytes in long mode). */
#define GDT_TSS	    0x20
#define GDT_ENTRIES 6

#define PTE_P	  (1ULL << 0)
#define PTE_RW	  (1ULL << 1)
#define PTE_PWT	  (1ULL << 3)
#define PTE_PCD	  (1ULL << 4)
#define PTE_A	  (1ULL << 5)
#define PTE_D	  (1ULL << 6)
#define PTE_PS	  (1ULL << 7)
#define PT_NR_PDS 4 /* 4 GiB */
_Static_assert(LINUX_PT_GPA + (2 + PT_NR_PDS) * PAGE_4K <= LINUX_CMDLINE_GPA, "page tables");

#define CR0_PE	     (1ULL << 0)
#define CR0_ET	     (1ULL << 4)
#define CR0_NE	     (1ULL << 5)
#define CR0_PG	     (1ULL << 31)
#define CR4_PAE	     (1ULL << 5)
#define EFER_LME     (1ULL << 8)
#define EFER_LMA     (1ULL << 10)
#define RFLAGS_FIXED (1ULL << 1)
#define BOOT_STACK   0x8ff0ULL /* below the page tables; the kernel sets its own at once */

#define APIC_LVT0      0x350
#define APIC_LVT1      0x360
#define APIC_MODE_NMI  0x4
#define APIC_MODE_EXT  0x7
#define APIC_MODE_MASK 0x700

/* Setup header values (boot.rst). */
#define BOOT_FLAG	0xaa55
#define HDRS_MAGIC	0x53726448 /* "HdrS" */
#define BOOT_PROTO_VER	0x020f
#define LOADER_UNDEF	0xff
#define KERNEL_ALIGN_2M 0x200000

struct kernel_image {
	uint8_t *file;
	size_t len;
	const Elf64_Ehdr *eh;
	const Elf64_Phdr *ph;
	uint64_t start, end; /* physical range of the loaded segments */
	uint64_t entry;	     /* physical: startup_64, or the PVH entry */
};

static int fail(char *err, size_t errlen, int ret, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static int fail(char *err, size_t errlen, int ret, const char *fmt, ...)
{
	va_list ap;

	if (err && errlen) {
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return ret;
}

static uint64_t low_ram_end(uint64_t mem_size)
{
	return mem_size < VM_LOW_MEM_END ? mem_size : VM_LOW_MEM_END;
}

static int read_file(const char *path, uint64_t max, uint8_t **ret_buf, size_t *ret_len)
{
	struct stat st;
	uint8_t *buf;
	size_t done = 0;
	int fd, r = 0;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = -EINVAL;
		goto out;
	}
	if ((uint64_t)st.st_size > max) {
		r = -EFBIG;
		goto out;
	}
	buf = malloc(st.st_size ? (size_t)st.st_size : 1);
	if (!buf) {
		r = -ENOMEM;
		goto out;
	}
	while (done < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + done, (size_t)st.st_size - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			r = n < 0 ? -errno : -EIO;
			free(buf);
			goto out;
		}
		done += (size_t)n;
	}
	*ret_buf = buf;
	*ret_len = done;
out:
	close(fd);
	return r;
}

unsigned int linux_boot_memmap(uint64_t mem_size, struct linux_mem_range out[LINUX_MEM_MAX])
{
	uint64_t low = low_ram_end(mem_size);
	unsigned int n = 0;

	out[n++] = (struct linux_mem_range){ 0, LINUX_EBDA_GPA, LINUX_MEM_RAM };
	/* EBDA (the MP table), VGA hole and BIOS area, as on a PC. */
	out[n++] = (struct linux_mem_range){ LINUX_EBDA_GPA, LINUX_HIGH_START - LINUX_EBDA_GPA,
					     LINUX_MEM_RESERVED };
	out[n++] =
		(struct linux_mem_range){ LINUX_HIGH_START, low - LINUX_HIGH_START, LINUX_MEM_RAM };
	if (mem_size > low)
		out[n++] =
			(struct linux_mem_range){ VM_HIGH_MEM_GPA, mem_size - low, LINUX_MEM_RAM };
	return n;
}

int linux_boot_cmdline(const struct vm *vm, const char *user, char *buf, size_t len)
{
	size_t max = len < LINUX_CMDLINE_MAX ? len : LINUX_CMDLINE_MAX;
	int n = snprintf(buf, max, "%s", user ? user : "");

	if (n < 0 || (size_t)n >= max)
		return -E2BIG;
	for (unsigned int i = 0; i < vm->nr_devices; i++) {
		const struct device *d = vm->devices[i];
		uint64_t off = d->mmio_base - GUEST_VIRTIO_MMIO_GPA;
		unsigned long long size = d->mmio_len;
		int m;

		if (!d->mmio_len)
			continue;
		if (d->mmio_base < GUEST_VIRTIO_MMIO_GPA || off % GUEST_VIRTIO_MMIO_SIZE ||
		    off / GUEST_VIRTIO_MMIO_SIZE >= GUEST_VIRTIO_MMIO_SLOTS)
			return -EINVAL;
		/* memparse() takes K; a window that is not whole KiB goes in bytes. */
		m = snprintf(buf + n, max - (size_t)n, "%svirtio_mmio.device=%llu%s@0x%llx:%u",
			     n ? " " : "", size % 1024 ? size : size / 1024, size % 1024 ? "" : "K",
			     (unsigned long long)d->mmio_base,
			     GUEST_VIRTIO_IRQ_BASE + (unsigned int)(off / GUEST_VIRTIO_MMIO_SIZE));
		if (m < 0 || (size_t)m >= max - (size_t)n)
			return -E2BIG;
		n += m;
	}
	return n;
}

/* Finds the PVH entry point in the PT_NOTE segments. Returns 0 or -ENOENT. */
static int find_pvh_entry(const struct kernel_image *k, uint64_t *ret_entry)
{
	for (unsigned int i = 0; i < k->eh->e_phnum; i++) {
		const Elf64_Phdr *ph = &k->ph[i];
		uint64_t off = ph->p_offset, end = ph->p_offset + ph->p_filesz;

		if (ph->p_type != PT_NOTE || end > k->len || end < off)
			continue;
		while (end - off >= sizeof(Elf64_Nhdr)) {
			Elf64_Nhdr nh;
			uint64_t name, desc, next;

			memcpy(&nh, k->file + off, sizeof(nh));
			name = off + sizeof(nh);
			desc = name + ((nh.n_namesz + 3ULL) & ~3ULL);
			next = desc + ((nh.n_descsz + 3ULL) & ~3ULL);
			if (next > end)
				break;
			if (nh.n_type == XEN_ELFNOTE_PHYS32_ENTRY && nh.n_namesz == 4 &&
			    !memcmp(k->file + name, "Xen", 4) &&
			    (nh.n_descsz == 4 || nh.n_descsz == 8)) {
				uint32_t entry; /* a 32-bit address, in a 4- or 8-byte field */

				memcpy(&entry, k->file + desc, sizeof(entry));
				*ret_entry = entry;
				return 0;
			}
			off = next;
		}
	}
	return -ENOENT;
}

/* Checks the ELF and its segments against the VM's RAM; fills start, end, entry. */
static int parse_kernel(struct vm *vm, struct kernel_image *k, enum linux_boot_protocol proto,
			char *err, size_t errlen)
{
	const Elf64_Ehdr *eh = (const Elf64_Ehdr *)k->file;
	uint64_t phend, low = low_ram_end(vm->mem_size);
	bool entry_ok = false;

	if (k->len < sizeof(*eh) || memcmp(eh->e_ident, ELFMAG, SELFMAG))
		return fail(err, errlen, -ENOEXEC, "not an ELF file (a vmlinux is needed)");
	if (eh->e_ident[EI_CLASS] != ELFCLASS64 || eh->e_ident[EI_DATA] != ELFDATA2LSB ||
	    eh->e_machine != EM_X86_64 || eh->e_type != ET_EXEC)
		return fail(err, errlen, -ENOEXEC, "not an x86-64 executable ELF64");
	phend = eh->e_phoff + (uint64_t)eh->e_phnum * sizeof(Elf64_Phdr);
	if (eh->e_phentsize != sizeof(Elf64_Phdr) || !eh->e_phnum || eh->e_phoff > k->len ||
	    phend > k->len)
		return fail(err, errlen, -ENOEXEC, "bad ELF program headers (truncated file?)");
	k->eh = eh;
	k->ph = (const Elf64_Phdr *)(k->file + eh->e_phoff);
	k->start = UINT64_MAX;
	k->end = 0;
	for (unsigned int i = 0; i < eh->e_phnum; i++) {
		const Elf64_Phdr *ph = &k->ph[i];

		if (ph->p_type != PT_LOAD || !ph->p_memsz)
			continue;
		if (ph->p_filesz > ph->p_memsz || ph->p_offset > k->len ||
		    ph->p_filesz > k->len - ph->p_offset)
			return fail(err, errlen, -ENOEXEC,
				    "ELF segment %u lies beyond the end of the file (truncated?)",
				    i);
		if (ph->p_paddr < LINUX_HIGH_START || ph->p_paddr + ph->p_memsz < ph->p_paddr ||
		    ph->p_paddr + ph->p_memsz > low)
			return fail(err, errlen, -E2BIG,
				    "kernel does not fit: segment %u at 0x%llx..0x%llx is outside "
				    "low RAM 1 MiB..0x%llx",
				    i, (unsigned long long)ph->p_paddr,
				    (unsigned long long)(ph->p_paddr + ph->p_memsz),
				    (unsigned long long)low);
		if (ph->p_paddr < k->start)
			k->start = ph->p_paddr;
		if (ph->p_paddr + ph->p_memsz > k->end)
			k->end = ph->p_paddr + ph->p_memsz;
		/* x86-64 vmlinux: ENTRY(phys_startup_64), a physical address. */
		if (eh->e_entry >= ph->p_paddr && eh->e_entry - ph->p_paddr < ph->p_filesz)
			entry_ok = true;
	}
	if (!k->end)
		return fail(err, errlen, -ENOEXEC, "ELF has no loadable segment");
	if (proto == LINUX_BOOT_PVH) {
		if (find_pvh_entry(k, &k->entry) < 0)
			return fail(err, errlen, -ENOENT,
				    "no PVH note (XEN_ELFNOTE_PHYS32_ENTRY): kernel built "
				    "without CONFIG_PVH?");
		if (k->entry < k->start || k->entry >= k->end)
			return fail(err, errlen, -ENOEXEC,
				    "PVH entry 0x%llx is outside the kernel 0x%llx..0x%llx",
				    (unsigned long long)k->entry, (unsigned long long)k->start,
				    (unsigned long long)k->end);
		return 0;
	}
	if (!entry_ok)
		return fail(err, errlen, -ENOEXEC,
			    "ELF entry 0x%llx is not a physical address inside the kernel",
			    (unsigned long long)eh->e_entry);
	k->entry = eh->e_entry;
	return 0;
}

static int write_zeroes(struct vm *vm, uint64_t gpa, uint64_t len)
{
	static const uint8_t zero[64 << 10];

	while (len) {
		uint64_t n = len < sizeof(zero) ? len : sizeof(zero);
		int r = vm_write_guest(vm, gpa, zero, n);

		if (r < 0)
			return r;
		gpa += n;
		len -= n;
	}
	return 0;
}

static int load_segments(struct vm *vm, const struct kernel_image *k)
{
	for (unsigned int i = 0; i < k->eh->e_phnum; i++) {
		const Elf64_Phdr *ph = &k->ph[i];
		int r;

		if (ph->p_type != PT_LOAD || !ph->p_memsz)
			continue;
		r = vm_write_guest(vm, ph->p_paddr, k->file + ph->p_offset, ph->p_filesz);
		if (!r)
			r = write_zeroes(vm, ph->p_paddr + ph->p_filesz,
					 ph->p_memsz - ph->p_filesz);
		if (r < 0)
			return r;
	}
	return 0;
}

/* Reads the initrd to the top of low RAM (below LINUX_INITRD_MAX), above the kernel. */
static int load_initrd(struct vm *vm, const char *path, uint64_t kernel_end, uint64_t *ret_addr,
		       uint64_t *ret_size, char *err, size_t errlen)
{
	uint64_t top = low_ram_end(vm->mem_size), addr;
	uint8_t *buf;
	size_t len;
	int r;

	if (top > LINUX_INITRD_MAX + 1)
		top = LINUX_INITRD_MAX + 1;
	r = read_file(path, top, &buf, &len);
	if (r == -EFBIG)
		return fail(err, errlen, -E2BIG, "initrd %s does not fit below 0x%llx", path,
			    (unsigned long long)top);
	if (r < 0)
		return fail(err, errlen, r, "cannot read initrd %s: %s", path, strerror(-r));
	addr = (top - len) & ~(PAGE_4K - 1);
	if (!len || addr < ((kernel_end + PAGE_4K - 1) & ~(PAGE_4K - 1))) {
		free(buf);
		if (!len)
			return fail(err, errlen, -EINVAL, "initrd %s is empty", path);
		return fail(err, errlen, -E2BIG,
			    "initrd does not fit: %zu bytes between the kernel end 0x%llx and "
			    "0x%llx",
			    len, (unsigned long long)kernel_end, (unsigned long long)top);
	}
	r = vm_write_guest(vm, addr, buf, len);
	free(buf);
	if (r < 0)
		return fail(err, errlen, r, "cannot write the initrd: %s", strerror(-r));
	*ret_addr = addr;
	*ret_size = len;
	return 0;
}

static int write_zero_page(struct vm *vm, uint64_t initrd, uint64_t initrd_size)
{
	struct linux_mem_range map[LINUX_MEM_MAX];
	unsigned int n = linux_boot_memmap(vm->mem_size, map);
	struct boot_params *bp = calloc(1, sizeof(*bp));
	int r;

	if (!bp)
		return -ENOMEM;
	bp->hdr.boot_flag = BOOT_FLAG;
	bp->hdr.header = HDRS_MAGIC;
	bp->hdr.version = BOOT_PROTO_VER;
	bp->hdr.type_of_loader = LOADER_UNDEF;
	bp->hdr.loadflags = LOADED_HIGH;
	bp->hdr.cmd_line_ptr = (uint32_t)LINUX_CMDLINE_GPA;
	bp->hdr.cmdline_size = LINUX_CMDLINE_MAX - 1;
	bp->hdr.kernel_alignment = KERNEL_ALIGN_2M;
	bp->hdr.initrd_addr_max = (uint32_t)LINUX_INITRD_MAX;
	bp->hdr.ramdisk_image = (uint32_t)initrd;
	bp->hdr.ramdisk_size = (uint32_t)initrd_size;
	bp->ext_ramdisk_image = (uint32_t)(initrd >> 32);
	bp->ext_ramdisk_size = (uint32_t)(initrd_size >> 32);
	for (unsigned int i = 0; i < n; i++) {
		bp->e820_table[i].addr = map[i].addr;
		bp->e820_table[i].size = map[i].size;
		bp->e820_table[i].type = map[i].type;
	}
	bp->e820_entries = (uint8_t)n;
	r = vm_write_guest(vm, LINUX_ZERO_PAGE_GPA, bp, sizeof(*bp));
	free(bp);
	return r;
}

static int write_pvh_info(struct vm *vm, uint64_t initrd, uint64_t initrd_size)
{
	struct linux_mem_range map[LINUX_MEM_MAX];
	struct hvm_memmap_table_entry mm[LINUX_MEM_MAX] = { 0 };
	unsigned int n = linux_boot_memmap(vm->mem_size, map);
	struct hvm_modlist_entry mod = { .paddr = initrd, .size = initrd_size };
	struct hvm_start_info si = {
		.magic = HVM_START_MAGIC,
		.version = 1,
		.nr_modules = initrd_size ? 1 : 0,
		.modlist_paddr = initrd_size ? LINUX_PVH_MODS_GPA : 0,
		.cmdline_paddr = LINUX_CMDLINE_GPA,
		.memmap_paddr = LINUX_PVH_MEMMAP_GPA,
		.memmap_entries = n,
	};
	int r;

	for (unsigned int i = 0; i < n; i++)
		mm[i] = (struct hvm_memmap_table_entry){ map[i].addr, map[i].size, map[i].type, 0 };
	r = vm_write_guest(vm, LINUX_PVH_INFO_GPA, &si, sizeof(si));
	if (!r && initrd_size)
		r = vm_write_guest(vm, LINUX_PVH_MODS_GPA, &mod, sizeof(mod));
	if (!r)
		r = vm_write_guest(vm, LINUX_PVH_MEMMAP_GPA, mm, n * sizeof(mm[0]));
	return r;
}

static uint64_t gdt_entry(uint32_t base, uint32_t limit, uint16_t flags)
{
	/* flags: access byte in bits 0-7, G, D/B, L, AVL in bits 12-15. */
	return (uint64_t)(limit & 0xffff) | (uint64_t)(base & 0xffffff) << 16 |
	       (uint64_t)(flags & 0xff) << 40 | (uint64_t)((limit >> 16) & 0xf) << 48 |
	       (uint64_t)((flags >> 12) & 0xf) << 52 | (uint64_t)(base >> 24) << 56;
}

static int write_gdt(struct vm *vm, enum linux_boot_protocol proto)
{
	uint64_t gdt[GDT_ENTRIES] = { 0 };

	/* Flat 4 GiB: 64-bit code (L) for the 64-bit protocol, 32-bit code (D) for PVH. */
	gdt[LINUX_BOOT_CS / 8] = gdt_entry(0, 0xfffff, proto == LINUX_BOOT_PVH ? 0xc09b : 0xa09b);
	gdt[LINUX_BOOT_DS / 8] = gdt_entry(0, 0xfffff, 0xc093);
	/* A busy TSS only to satisfy VM entry; the kernel loads its own TR. */
	gdt[GDT_TSS / 8] = gdt_entry(0, 0x67, 0x008b);
	return vm_write_guest(vm, LINUX_GDT_GPA, gdt, sizeof(gdt));
}

/* Identity map of the first 4 GiB in 2 MiB pages; the hole above 3 GiB uncached. */
static int write_page_tables(struct vm *vm)
{
	uint64_t words = (2 + PT_NR_PDS) * (PAGE_4K / 8);
	uint64_t *pt = calloc(words, sizeof(*pt));
	uint64_t *pdpt = pt + 512, *pd = pt + 1024;
	int r;

	if (!pt)
		return -ENOMEM;
	pt[0] = (LINUX_PT_GPA + PAGE_4K) | PTE_P | PTE_RW | PTE_A;
	for (uint64_t i = 0; i < PT_NR_PDS; i++)
		pdpt[i] = (LINUX_PT_GPA + (2 + i) * PAGE_4K) | PTE_P | PTE_RW | PTE_A;
	for (uint64_t i = 0; i < PT_NR_PDS * 512; i++) {
		uint64_t gpa = i * PAGE_2M;

		pd[i] = gpa | PTE_P | PTE_RW | PTE_A | PTE_D | PTE_PS;
		if (gpa >= VM_LOW_MEM_END)
			pd[i] |= PTE_PWT | PTE_PCD;
	}
	r = vm_write_guest(vm, LINUX_PT_GPA, pt, words * sizeof(*pt));
	free(pt);
	return r;
}

static void flat_segment(struct kvm_segment *s, uint16_t sel, uint8_t type, bool code64)
{
	*s = (struct kvm_segment){
		.base = 0,
		.limit = 0xffffffff,
		.selector = sel,
		.type = type,
		.present = 1,
		.dpl = 0,
		.db = !code64,
		.s = 1,
		.l = code64,
		.g = 1,
	};
}

static int setup_bsp(struct vm *vm, enum linux_boot_protocol proto, uint64_t entry)
{
	int fd = vm->vcpus[0]->fd;
	bool lm = proto == LINUX_BOOT_64BIT;
	struct kvm_sregs sregs;
	struct kvm_regs regs = { .rflags = RFLAGS_FIXED, .rip = entry };

	if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	flat_segment(&sregs.cs, LINUX_BOOT_CS, 0xb, lm);
	flat_segment(&sregs.ds, LINUX_BOOT_DS, 0x3, false);
	sregs.es = sregs.fs = sregs.gs = sregs.ss = sregs.ds;
	sregs.tr = (struct kvm_segment){
		.selector = GDT_TSS, .limit = 0x67, .type = 11, .present = 1
	};
	sregs.ldt = (struct kvm_segment){ .type = 2, .unusable = 1 };
	sregs.gdt.base = LINUX_GDT_GPA;
	sregs.gdt.limit = GDT_ENTRIES * 8 - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;
	if (lm) {
		/* boot.rst, 64-bit boot protocol: paging on, identity mapped, IF off. */
		sregs.cr0 = CR0_PE | CR0_ET | CR0_NE | CR0_PG;
		sregs.cr3 = LINUX_PT_GPA;
		sregs.cr4 = CR4_PAE;
		sregs.efer = EFER_LME | EFER_LMA;
		regs.rsi = LINUX_ZERO_PAGE_GPA;
		regs.rsp = BOOT_STACK;
	} else {
		/* PVH: protected mode, paging off, every other writable CR0 bit clear. */
		sregs.cr0 = CR0_PE | CR0_ET;
		sregs.cr3 = 0;
		sregs.cr4 = 0;
		sregs.efer = 0;
		regs.rbx = LINUX_PVH_INFO_GPA;
	}
	if (ioctl(fd, KVM_SET_SREGS, &sregs) < 0 || ioctl(fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}

static void lvt_mode(struct kvm_lapic_state *l, unsigned int reg, uint32_t mode)
{
	uint32_t v;

	memcpy(&v, l->regs + reg, sizeof(v));
	v = (v & ~APIC_MODE_MASK) | mode << 8;
	memcpy(l->regs + reg, &v, sizeof(v));
}

/*
 * What firmware leaves: LINT0 delivers the PIC (ExtINT) and LINT1 NMIs on every
 * local APIC, and the application processors wait for the kernel's INIT/SIPI.
 * vcpu_create() made them runnable for the built-in guests; KVM creates APs
 * UNINITIALIZED with the in-kernel LAPIC, an INIT moves them to INIT_RECEIVED
 * and only there does a SIPI start them, so UNINITIALIZED is the state to
 * restore.
 */
static int setup_vcpu_lapics(struct vm *vm)
{
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		int fd = vm->vcpus[i]->fd;
		struct kvm_lapic_state lapic;

		if (ioctl(fd, KVM_GET_LAPIC, &lapic) < 0)
			return -errno;
		lvt_mode(&lapic, APIC_LVT0, APIC_MODE_EXT);
		lvt_mode(&lapic, APIC_LVT1, APIC_MODE_NMI);
		if (ioctl(fd, KVM_SET_LAPIC, &lapic) < 0)
			return -errno;
		if (i > 0) {
			struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_UNINITIALIZED };

			if (ioctl(fd, KVM_SET_MP_STATE, &mp) < 0)
				return -errno;
		}
	}
	return 0;
}

static int write_mptable(struct vm *vm)
{
	uint8_t buf[1024];
	int n = mptable_build(vm->nr_vcpus, LINUX_EBDA_GPA, buf, sizeof(buf));

	_Static_assert(LINUX_EBDA_GPA + sizeof(buf) <= 0xa0000, "MP table in the EBDA KiB");
	if (n < 0)
		return n;
	return vm_write_guest(vm, LINUX_EBDA_GPA, buf, (uint64_t)n);
}

int linux_boot_load(struct vm *vm, const struct linux_boot_config *cfg, char *err, size_t errlen)
{
	struct kernel_image k = { 0 };
	char cmdline[LINUX_CMDLINE_MAX];
	uint64_t initrd = 0, initrd_size = 0;
	int r, n;

	if (err && errlen)
		err[0] = 0;
	if (vm->started)
		return fail(err, errlen, -EBUSY, "the VM is already running");
	if (cfg->protocol != LINUX_BOOT_64BIT && cfg->protocol != LINUX_BOOT_PVH)
		return fail(err, errlen, -EINVAL, "unknown boot protocol %d", cfg->protocol);
	n = linux_boot_cmdline(vm, cfg->cmdline, cmdline, sizeof(cmdline));
	if (n == -E2BIG)
		return fail(err, errlen, n,
			    "command line too long: at most %d bytes with the virtio_mmio.device= "
			    "entries",
			    LINUX_CMDLINE_MAX - 1);
	if (n < 0)
		return fail(err, errlen, n, "a device's MMIO window is not a virtio-mmio slot");

	r = read_file(cfg->kernel, KERNEL_FILE_MAX, &k.file, &k.len);
	if (r < 0)
		return fail(err, errlen, r, "cannot read kernel %s: %s", cfg->kernel, strerror(-r));
	r = parse_kernel(vm, &k, cfg->protocol, err, errlen);
	if (r < 0)
		goto out;
	r = load_segments(vm, &k);
	if (r < 0) {
		fail(err, errlen, r, "cannot write the kernel: %s", strerror(-r));
		goto out;
	}
	if (cfg->initrd) {
		r = load_initrd(vm, cfg->initrd, k.end, &initrd, &initrd_size, err, errlen);
		if (r < 0)
			goto out;
	}
	r = vm_write_guest(vm, LINUX_CMDLINE_GPA, cmdline, (uint64_t)n + 1);
	if (!r)
		r = write_mptable(vm);
	if (!r)
		r = write_gdt(vm, cfg->protocol);
	if (!r && cfg->protocol == LINUX_BOOT_64BIT)
		r = write_zero_page(vm, initrd, initrd_size);
	if (!r && cfg->protocol == LINUX_BOOT_64BIT)
		r = write_page_tables(vm);
	if (!r && cfg->protocol == LINUX_BOOT_PVH)
		r = write_pvh_info(vm, initrd, initrd_size);
	if (r < 0) {
		fail(err, errlen, r, "cannot write the boot structures: %s", strerror(-r));
		goto out;
	}
	r = setup_vcpu_lapics(vm);
	if (!r)
		r = setup_bsp(vm, cfg->protocol, k.entry);
	if (r < 0)
		fail(err, errlen, r, "cannot set up the vCPUs: %s", strerror(-r));
out:
	free(k.file);
	return r;
}
