/* SPDX-License-Identifier: MIT */
/*
 * Loader for the built-in guests (guest/guest_abi.h, guest/layout.h).
 *
 * Every vCPU enters the image directly in 64-bit mode at CPL 3: on kvm_pvm only
 * 64-bit CPL 3 code runs at native speed, and entering there through SET_SREGS
 * skips the real-mode/32-bit/CPL 0 boot path that would be emulated one
 * instruction at a time. RFLAGS.IOPL = 3 lets `out` reach the VMM instead of
 * faulting; IF = 0. Exceptions go through an IDT to the image's handler at CPL 0,
 * each vCPU on a stack of its own (its TSS's RSP0; guest/guest_abi.h says what
 * the handler does).
 *
 * All writes go through vm_write_guest(), so the pages they touch are in the
 * VMM's own dirty set for the next harvest.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/kvm.h>

#include "guest/builtin.h"
#include "guest/layout.h"
#include "vmm/loader.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

#define BUILTIN_PREFIX "builtin:"

/* GDT entries (selector = index * 8 | RPL). */
#define GDT_KERNEL_CODE 1
#define GDT_KERNEL_DATA 2
#define GDT_USER_DATA	3
#define GDT_USER_CODE	4
#define GDT_TSS		5 /* vCPU i's 16-byte TSS descriptor: entries 5 + 2i and 6 + 2i */
#define GDT_ENTRIES	(GDT_TSS + 2 * GUEST_MAX_VCPUS)
#define SEL_KERNEL_CODE (GDT_KERNEL_CODE * 8)
#define SEL_USER_DATA	(GDT_USER_DATA * 8 | 3)
#define SEL_USER_CODE	(GDT_USER_CODE * 8 | 3)
#define SEL_TSS(i)	((GDT_TSS + 2 * (i)) * 8)

/*
 * The 64-bit TSSes, one per vCPU (for its own exception stack), in the free
 * pages between the parameter page and the page tables, all pointing at one I/O
 * permission bitmap that allows every port. IOPL = 3 should make the bitmap
 * irrelevant, but on kvm_pvm every `out` at CPL 3 faulted (a triple fault)
 * without it: kvm_pvm runs the guest at host CPL 3 without IOPL, and its port
 * I/O emulation evidently consults the bitmap. The bitmap ends with the 0xff
 * byte the architecture requires after it; each TSS's limit reaches that byte.
 */
#define TSS_GPA(i)	(GUEST_TSS_GPA + (i)*GUEST_TSS_SIZE)
#define TSS_IOMAP_BYTES (65536 / 8)
#define TSS_LIMIT(i)	(GUEST_IOMAP_GPA + TSS_IOMAP_BYTES - TSS_GPA(i))
#define TSS_RSP0	4    /* offset of RSP0 in the TSS */
#define TSS_IOMAP_BASE	0x66 /* offset of the bitmap's offset in the TSS */
_Static_assert(TSS_GPA(GUEST_MAX_VCPUS) <= GUEST_IOMAP_GPA, "the TSSes end before the bitmap");
_Static_assert(GUEST_IOMAP_GPA + TSS_IOMAP_BYTES + 1 <= GUEST_IDT_GPA,
	       "the bitmap ends before the IDT");
_Static_assert(GUEST_IDT_GPA + GUEST_EXC_VECTORS * 16 <= GUEST_EXC_STACK_GPA,
	       "the IDT ends before the stacks");
_Static_assert(GUEST_EXC_STACK_GPA + GUEST_MAX_VCPUS * GUEST_PAGE_SIZE <= GUEST_PT_GPA,
	       "the exception stacks end before the page tables");
_Static_assert(GDT_ENTRIES * 8 <= GUEST_PAGE_SIZE, "the GDT fits its page");

/*
 * Page-table entry bits. Accessed and dirty are set up front: otherwise the
 * first access to a 2 MiB page would make the CPU (or KVM's shadow MMU) write the
 * page tables, an extra dirty page that builtin:touch promises not to produce.
 */
#define PTE_P	  (1ULL << 0)
#define PTE_RW	  (1ULL << 1)
#define PTE_US	  (1ULL << 2)
#define PTE_A	  (1ULL << 5)
#define PTE_D	  (1ULL << 6)
#define PTE_PWT	  (1ULL << 3)
#define PTE_PCD	  (1ULL << 4)
#define PTE_PS	  (1ULL << 7)
#define PTE_TABLE (PTE_P | PTE_RW | PTE_US | PTE_A)
#define PTE_2M	  (PTE_TABLE | PTE_D | PTE_PS)
#define PTE_2M_UC (PTE_2M | PTE_PWT | PTE_PCD) /* uncached: the virtio-mmio window */

#define PT_PML4_GPA GUEST_PT_GPA
#define PT_NR_PDS   4ULL

#define CR0_PE	     (1ULL << 0)
#define CR0_MP	     (1ULL << 1)
#define CR0_ET	     (1ULL << 4)
#define CR0_NE	     (1ULL << 5)
#define CR0_WP	     (1ULL << 16)
#define CR0_PG	     (1ULL << 31)
#define CR4_PAE	     (1ULL << 5)
#define EFER_SCE     (1ULL << 0)
#define EFER_LME     (1ULL << 8)
#define EFER_LMA     (1ULL << 10)
#define RFLAGS_FIXED (1ULL << 1)
#define RFLAGS_IOPL3 (3ULL << 12)

void loader_default_params(struct guest_params *p)
{
	memset(p, 0, sizeof(*p));
	p->seed = 1;

	p->dirty_pages_per_ms = 100;
	p->dirty_order = GUEST_ORDER_SEQUENTIAL;
	p->dirty_wss_bytes = 64ULL << 20;
	p->dirty_report_ms = 1000;

	p->bank_pages = 256;
	p->bank_accounts = 4096;
	p->bank_check_ms = 10;
	p->bank_initial = 1000000;

	p->touch_base_gpa = GUEST_DATA_GPA;
	p->touch_count = 100;
	p->touch_span = 1024;
	p->touch_stride = (0x9e3779b1u & (1024 - 1)) | 1;
	p->touch_rounds = 0;

	p->kv_max_bytes = GUEST_KV_DEFAULT_BYTES;
}

/* A netmask is contiguous ones from the top (0 included): ~mask is 0...01...1. */
static int mask_ok(uint32_t mask)
{
	uint32_t inv = ~mask;

	return !(inv & (inv + 1));
}

/* RAM the guests may use: low RAM, identity mapped, below the PCI hole. */
static uint64_t low_ram_end(const struct vm *vm)
{
	return vm->mem_size < VM_LOW_MEM_END ? vm->mem_size : VM_LOW_MEM_END;
}

/* Returns 0, -EINVAL for nonsense parameters, or -E2BIG if the data does not fit. */
static int check_workload(const char *name, const struct guest_params *p)
{
	uint64_t n = p->nr_vcpus, end;

	if (p->data_end < GUEST_WORK_GPA)
		return -E2BIG;
	if (!strcmp(name, "bank")) {
		if (p->bank_pages < 2 || p->bank_accounts < p->bank_pages ||
		    p->bank_accounts > (uint64_t)p->bank_pages * GUEST_BANK_ACCOUNTS_PER_PAGE ||
		    !p->bank_check_ms)
			return -EINVAL;
		end = guest_bank_base(p, 0) + n * p->bank_pages * GUEST_PAGE_SIZE;
	} else if (!strcmp(name, "dirty")) {
		if (!guest_dirty_pages(p) || p->dirty_pages_per_ms > guest_dirty_pages(p) ||
		    p->dirty_order > GUEST_ORDER_RANDOM || !p->dirty_report_ms)
			return -EINVAL;
		if (guest_dirty_pages(p) > p->data_end / GUEST_PAGE_SIZE)
			return -E2BIG;
		end = guest_dirty_base(p, 0) + n * guest_dirty_pages(p) * GUEST_PAGE_SIZE;
	} else if (!strcmp(name, "touch")) {
		if (!p->touch_span || (p->touch_span & (p->touch_span - 1)) ||
		    !(p->touch_stride & 1) || p->touch_count > p->touch_span ||
		    p->touch_base_gpa < GUEST_DATA_GPA ||
		    (p->touch_base_gpa & (GUEST_PAGE_SIZE - 1)))
			return -EINVAL;
		if (p->touch_base_gpa >= p->data_end)
			return -E2BIG;
		end = guest_touch_base(p, 0) + n * p->touch_span * GUEST_PAGE_SIZE;
	} else if (!strcmp(name, "kv")) {
		/* No NIC or no address is the guest's to report (a console line, a panic). */
		if (p->kv_max_bytes < GUEST_KV_MIN_BYTES || p->kv_max_bytes > (2ULL << 30) ||
		    !mask_ok(p->net_mask) || (p->net_ip && !p->net_mask))
			return -EINVAL;
		end = guest_kv_store_end(p);
	} else {
		return -ENOENT;
	}
	return end <= p->data_end ? 0 : -E2BIG;
}

/* Whether a device (added before loading) answers at guest-physical gpa. */
static int has_mmio_device(const struct vm *vm, uint64_t gpa)
{
	for (unsigned int i = 0; i < vm->nr_devices; i++) {
		const struct device *d = vm->devices[i];

		if (d->mmio_len && d->mmio_base <= gpa && gpa - d->mmio_base < d->mmio_len)
			return 1;
	}
	return 0;
}

static uint64_t gdt_entry(uint32_t base, uint32_t limit, uint16_t flags)
{
	/* flags: access byte in bits 0-7, flags nibble (G, D/B, L, AVL) in bits 12-15. */
	return (uint64_t)(limit & 0xffff) | (uint64_t)(base & 0xffffff) << 16 |
	       (uint64_t)(flags & 0xff) << 40 | (uint64_t)((limit >> 16) & 0xf) << 48 |
	       (uint64_t)((flags >> 12) & 0xf) << 52 | (uint64_t)(base >> 24) << 56;
}

static int write_gdt(struct vm *vm)
{
	uint64_t page[GUEST_PAGE_SIZE / 8] = { 0 };

	page[GDT_KERNEL_CODE] = gdt_entry(0, 0xfffff, 0xa09b);
	page[GDT_KERNEL_DATA] = gdt_entry(0, 0xfffff, 0xc093);
	page[GDT_USER_DATA] = gdt_entry(0, 0xfffff, 0xc0f3);
	page[GDT_USER_CODE] = gdt_entry(0, 0xfffff, 0xa0fb);
	/* Busy 64-bit TSSes (type 11), matching what each vCPU's TR holds. */
	for (unsigned int i = 0; i < GUEST_MAX_VCPUS; i++)
		page[GDT_TSS + 2 * i] = gdt_entry(TSS_GPA(i), TSS_LIMIT(i), 0x008b);
	return vm_write_guest(vm, GUEST_GDT_GPA, page, sizeof(page));
}

/* The TSSes, the bitmap after them, the IDT and the exception stacks, in one write. */
static int write_exception_area(struct vm *vm)
{
	size_t size = GUEST_EXC_STACK_GPA + GUEST_MAX_VCPUS * GUEST_PAGE_SIZE - GUEST_TSS_GPA;
	uint8_t *area = calloc(1, size);
	int ret;

	if (!area)
		return -ENOMEM;
	for (unsigned int i = 0; i < GUEST_MAX_VCPUS; i++) {
		uint8_t *tss = area + (TSS_GPA(i) - GUEST_TSS_GPA);
		uint64_t rsp0 = GUEST_EXC_STACK_GPA + (i + 1) * GUEST_PAGE_SIZE;
		uint16_t iomap = (uint16_t)(GUEST_IOMAP_GPA - TSS_GPA(i));

		memcpy(tss + TSS_RSP0, &rsp0, sizeof(rsp0));
		memcpy(tss + TSS_IOMAP_BASE, &iomap, sizeof(iomap));
	}
	area[GUEST_IOMAP_GPA + TSS_IOMAP_BYTES - GUEST_TSS_GPA] = 0xff;
	for (unsigned int v = 0; v < GUEST_EXC_VECTORS; v++) {
		uint64_t entry =
			GUEST_IMAGE_GPA + GUEST_EXC_ENTRY_OFFSET + v * GUEST_EXC_ENTRY_SIZE;
		uint8_t *gate = area + (GUEST_IDT_GPA - GUEST_TSS_GPA) + v * 16;
		uint16_t lo = (uint16_t)entry, mid = (uint16_t)(entry >> 16), sel = SEL_KERNEL_CODE;
		uint32_t hi = (uint32_t)(entry >> 32);

		/* A present 64-bit interrupt gate, DPL 0, no IST. */
		memcpy(gate, &lo, 2);
		memcpy(gate + 2, &sel, 2);
		gate[5] = 0x8e;
		memcpy(gate + 6, &mid, 2);
		memcpy(gate + 8, &hi, 4);
	}
	ret = vm_write_guest(vm, GUEST_TSS_GPA, area, size);
	free(area);
	return ret;
}

/*
 * Identity map [0, end) with 2 MiB user pages: PML4 -> PDPT -> one PD per GiB,
 * and the 2 MiB from GUEST_VIRTIO_MMIO_GPA (in the 4th GiB, the hole below 4 GiB)
 * as uncached user pages, for every guest.
 */
static int write_page_tables(struct vm *vm, uint64_t end)
{
	uint64_t nr_pds = PT_NR_PDS;
	uint64_t words = (2 + nr_pds) * (GUEST_PAGE_SIZE / 8);
	uint64_t *pt = calloc(words, sizeof(*pt));
	uint64_t *pdpt = pt + 512, *pd = pt + 1024;
	int ret;

	if (!pt)
		return -ENOMEM;
	pt[0] = GUEST_PT_PDPT_GPA | PTE_TABLE;
	for (uint64_t i = 0; i < nr_pds; i++)
		pdpt[i] = (GUEST_PT_PD_GPA + i * GUEST_PAGE_SIZE) | PTE_TABLE;
	for (uint64_t gpa = 0; gpa < end; gpa += 2ULL << 20)
		pd[gpa >> 21] = gpa | PTE_2M;
	_Static_assert(GUEST_VIRTIO_MMIO_GPA >= VM_LOW_MEM_END &&
			       GUEST_VIRTIO_MMIO_GPA < (PT_NR_PDS << 30) &&
			       !(GUEST_VIRTIO_MMIO_GPA & ((2ULL << 20) - 1)) &&
			       GUEST_VIRTIO_MMIO_SLOTS * GUEST_VIRTIO_MMIO_SIZE <= (2ULL << 20),
		       "the virtio-mmio window is one 2 MiB page in the 4th GiB");
	_Static_assert(GUEST_PT_PD_GPA + PT_NR_PDS * GUEST_PAGE_SIZE <= GUEST_PT_END,
		       "page tables fit");
	pd[GUEST_VIRTIO_MMIO_GPA >> 21] = GUEST_VIRTIO_MMIO_GPA | PTE_2M_UC;
	ret = vm_write_guest(vm, PT_PML4_GPA, pt, words * sizeof(*pt));
	free(pt);
	return ret;
}

static void set_segment(struct kvm_segment *s, uint16_t sel, uint8_t type, uint8_t db, uint8_t l)
{
	*s = (struct kvm_segment){
		.base = 0,
		.limit = 0xffffffff,
		.selector = sel,
		.type = type,
		.present = 1,
		.dpl = 3,
		.db = db,
		.s = 1,
		.l = l,
		.g = 1,
	};
}

static int setup_vcpu(struct vm *vm, unsigned int i)
{
	int fd = vm->vcpus[i]->fd;
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	if (ioctl(fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	sregs.cr0 = CR0_PE | CR0_MP | CR0_ET | CR0_NE | CR0_WP | CR0_PG;
	sregs.cr3 = PT_PML4_GPA;
	sregs.cr4 = CR4_PAE; /* no OSFXSR/OSXSAVE: the guests use no SSE */
	sregs.efer = EFER_LME | EFER_LMA | EFER_SCE;

	set_segment(&sregs.cs, SEL_USER_CODE, 0xb, 0, 1);
	set_segment(&sregs.ds, SEL_USER_DATA, 0x3, 1, 0);
	sregs.es = sregs.ss = sregs.fs = sregs.gs = sregs.ds;

	sregs.tr = (struct kvm_segment){
		.base = TSS_GPA(i),
		.limit = TSS_LIMIT(i),
		.selector = SEL_TSS(i),
		.type = 11, /* 64-bit TSS, busy */
		.present = 1,
	};
	sregs.ldt = (struct kvm_segment){ .type = 2, .unusable = 1 };
	sregs.gdt.base = GUEST_GDT_GPA;
	sregs.gdt.limit = GDT_ENTRIES * 8 - 1;
	sregs.idt.base = GUEST_IDT_GPA;
	sregs.idt.limit = GUEST_EXC_VECTORS * 16 - 1;
	if (ioctl(fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;

	regs = (struct kvm_regs){
		.rflags = RFLAGS_FIXED | RFLAGS_IOPL3,
		.rip = GUEST_IMAGE_GPA,
		.rsp = guest_vcpu_area(i) + GUEST_VCPU_AREA_SIZE,
		.rdi = i,
		.rsi = GUEST_PARAMS_GPA,
	};
	if (ioctl(fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}

int loader_load(struct vm *vm, const char *spec, const struct guest_params *params)
{
	const struct builtin_guest *g;
	uint8_t params_page[GUEST_PAGE_SIZE] = { 0 };
	uint8_t zero_page[GUEST_PAGE_SIZE] = { 0 };
	struct guest_params p = *params;
	uint64_t end = low_ram_end(vm);
	int ret;

	if (strncmp(spec, BUILTIN_PREFIX, strlen(BUILTIN_PREFIX)))
		return -ENOENT;
	g = builtin_guest_find(spec + strlen(BUILTIN_PREFIX));
	if (!g)
		return -ENOENT;
	if (g->size > GUEST_IMAGE_MAX || !vm->nr_vcpus || vm->nr_vcpus > GUEST_MAX_VCPUS)
		return -EINVAL;
	if (!vm->tsc_khz)
		return -EINVAL; /* the guests pace themselves by the TSC */

	p.magic = GUEST_PARAMS_MAGIC;
	p.nr_vcpus = vm->nr_vcpus;
	p.tsc_khz = vm->tsc_khz;
	p.mem_size = vm->mem_size;
	p.data_gpa = GUEST_DATA_GPA;
	p.data_end = end;
	p.net_present = has_mmio_device(vm, GUEST_VIRTIO_MMIO_GPA +
						    GUEST_VIRTIO_SLOT_NET * GUEST_VIRTIO_MMIO_SIZE);
	ret = check_workload(g->name, &p);
	if (ret < 0)
		return ret;

	memcpy(params_page, &p, sizeof(p));
	ret = write_gdt(vm);
	if (!ret)
		ret = write_exception_area(vm);
	if (!ret)
		ret = write_page_tables(vm, end);
	if (!ret)
		ret = vm_write_guest(vm, GUEST_IMAGE_GPA, g->image, g->size);
	if (!ret)
		ret = vm_write_guest(vm, GUEST_PARAMS_GPA, params_page, sizeof(params_page));
	/* The console lock must start free, whatever the RAM held before. */
	if (!ret)
		ret = vm_write_guest(vm, GUEST_LOCKS_GPA, zero_page, sizeof(zero_page));
	for (unsigned int i = 0; !ret && i < vm->nr_vcpus; i++)
		ret = setup_vcpu(vm, i);
	return ret;
}
