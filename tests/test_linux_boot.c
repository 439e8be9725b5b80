// SPDX-License-Identifier: MIT
/*
 * The Linux loader (vmm/linux_boot.c) and the MP table (vmm/mptable.c).
 *
 * Without KVM: the MP table's checksums, entries and place (where Linux's
 * mpparse.c scans), the memory map for 64 MiB, 3, 4 and 5 GiB, the command line
 * with virtio-mmio devices. With KVM: refusals (not ELF, truncated, too big,
 * no PVH note, initrd or command line too big) with their messages, and the
 * state a synthetic ELF leaves for both protocols (boot_params, start_info,
 * registers, LAPIC LVTs, APs waiting for INIT).
 *
 * With a built test kernel (FT_LINUX_KERNEL and FT_LINUX_INITRD, else what
 * scripts/linux-guest.sh --print names) on a machine built like ftd's (COM1
 * with IRQ 4, CMOS): PVH up to "Linux version"; and, through the 64-bit
 * protocol, restores into a fresh VM, once mid-kernel (50 ms after the
 * first console bytes) and once in userspace (after init line 5),
 * after which the joined console must have the init's lines consecutive and
 * ok and no kernel oops, BUG, panic, warning or lockup. Without a built kernel
 * those tests skip, or fail with FT_REQUIRE_KVM=1.
 *
 * Exit 0 pass, 77 skip (no /dev/kvm and FT_REQUIRE_KVM unset), else fail.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <elf.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <asm/bootparam.h>
#include <linux/kvm.h>

#include "tests/kvm_helpers.h"
#include "vmm/cmos.h"
#include "vmm/linux_boot.h"
#include "vmm/machine.h"
#include "vmm/mptable.h"
#include "vmm/serial.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

#define KERNEL_PADDR 0x1000000ULL
#define PVH_ENTRY    (KERNEL_PADDR + 0x40)
static bool have_kvm;

static uint8_t sum8(const uint8_t *p, size_t len)
{
	uint8_t s = 0;

	while (len--)
		s += *p++;
	return s;
}

/* --- MP table ------------------------------------------------------------- */

/* Linux's smp_scan_config(): 16-byte steps, "_MP_", length 1, spec 1 or 4, sum 0. */
static long scan_mpf(const uint8_t *mem, uint64_t base, uint64_t len)
{
	for (uint64_t off = 0; off + 16 <= len; off += 16) {
		const uint8_t *p = mem + base + off;

		if (!memcmp(p, "_MP_", 4) && p[8] == 1 && (p[9] == 1 || p[9] == 4) && !sum8(p, 16))
			return (long)(base + off);
	}
	return -1;
}

static void check_mptable(unsigned int ncpu)
{
	/* A model of the first MiB, the table placed where the loader places it. */
	uint8_t *mem = calloc(1, 1 << 20);
	unsigned int count[5] = { 0 }, bsp = 0;
	const uint8_t *mpc, *p, *end;
	uint32_t physptr, lapic, ioapic_addr = 0;
	int n;

	assert_non_null(mem);
	n = mptable_build(ncpu, LINUX_EBDA_GPA, mem + LINUX_EBDA_GPA, 1024);
	assert_int_equal(n, (int)mptable_size(ncpu));
	assert_true(LINUX_EBDA_GPA + (uint64_t)n <= 0xa0000);
	/* mpparse.c scans 0..1K, 639K..640K, then 0xf0000..0x100000. */
	assert_int_equal(scan_mpf(mem, 0, 0x400), -1);
	assert_int_equal(scan_mpf(mem, 639 * 0x400, 0x400), (long)LINUX_EBDA_GPA);

	memcpy(&physptr, mem + LINUX_EBDA_GPA + 4, 4);
	assert_int_equal(physptr, LINUX_EBDA_GPA + 16);
	mpc = mem + physptr;
	assert_memory_equal(mpc, "PCMP", 4);
	uint16_t len, entries;
	memcpy(&len, mpc + 4, 2);
	memcpy(&entries, mpc + 34, 2);
	memcpy(&lapic, mpc + 36, 4);
	assert_int_equal(mpc[6], 4);
	assert_int_equal(sum8(mpc, len), 0);
	assert_int_equal(lapic, 0xfee00000);
	assert_int_equal(entries, ncpu + 1 + 1 + 16 + 2);
	assert_int_equal(16 + len, n);

	end = mpc + len;
	for (p = mpc + 44; p < end;) {
		assert_true(p[0] <= 4);
		count[p[0]]++;
		switch (p[0]) {
		case 0:					      /* processor */
			assert_int_equal(p[1], count[0] - 1); /* APIC IDs 0..n-1 */
			assert_true(p[3] & 1);		      /* enabled */
			if (p[3] & 2)
				bsp++, assert_int_equal(p[1], 0);
			p += 20;
			break;
		case 1:
			assert_memory_equal(p + 2, "ISA   ", 6);
			p += 8;
			break;
		case 2:
			assert_int_equal(p[1], ncpu);
			assert_int_equal(p[2], 0x11);
			assert_int_equal(p[3], 1);
			memcpy(&ioapic_addr, p + 4, 4);
			p += 8;
			break;
		case 3: /* ISA IRQ i -> pin i of the IOAPIC (KVM's default routing) */
			assert_int_equal(p[1], 0);
			assert_int_equal(p[4], 0);
			assert_int_equal(p[5], count[3] - 1);
			assert_int_equal(p[6], ncpu);
			assert_int_equal(p[7], p[5]);
			p += 8;
			break;
		case 4: /* LINT0 ExtINT, LINT1 NMI, every LAPIC */
			assert_int_equal(p[1], count[4] == 1 ? 3 : 1);
			assert_int_equal(p[6], 0xff);
			assert_int_equal(p[7], count[4] - 1);
			p += 8;
			break;
		}
	}
	assert_ptr_equal(p, end);
	assert_int_equal(count[0], ncpu);
	assert_int_equal(count[1], 1);
	assert_int_equal(count[2], 1);
	assert_int_equal(count[3], 16);
	assert_int_equal(count[4], 2);
	assert_int_equal(bsp, 1);
	assert_int_equal(ioapic_addr, 0xfec00000);
	free(mem);
}

static void test_mptable(void **state)
{
	uint8_t buf[1024];

	(void)state;
	for (unsigned int n = 1; n <= VM_MAX_VCPUS; n++)
		check_mptable(n);
	assert_int_equal(mptable_build(0, LINUX_EBDA_GPA, buf, sizeof(buf)), -EINVAL);
	assert_int_equal(mptable_build(2, LINUX_EBDA_GPA, buf, mptable_size(2) - 1), -ENOSPC);
	assert_int_equal(mptable_build(2, 0xfffffff0ULL, buf, sizeof(buf)), -EINVAL);
}

/* --- memory map ----------------------------------------------------------- */

static void check_map(uint64_t mem, unsigned int want_n, uint64_t low_end)
{
	struct linux_mem_range m[LINUX_MEM_MAX];
	unsigned int n = linux_boot_memmap(mem, m);
	uint64_t ram = 0;

	assert_int_equal(n, want_n);
	assert_true(m[0].addr == 0 && m[0].size == 0x9fc00 && m[0].type == LINUX_MEM_RAM);
	assert_true(m[1].addr == 0x9fc00 && m[1].addr + m[1].size == 0x100000 &&
		    m[1].type == LINUX_MEM_RESERVED);
	assert_true(m[2].addr == 0x100000 && m[2].addr + m[2].size == low_end &&
		    m[2].type == LINUX_MEM_RAM);
	if (n == 4)
		assert_true(m[3].addr == 4ULL << 30 && m[3].type == LINUX_MEM_RAM);
	for (unsigned int i = 0; i < n; i++) {
		/* Nothing over the MMIO hole (virtio-mmio, IOAPIC, LAPIC). */
		assert_false(m[i].addr < 0xfee01000ULL && m[i].addr + m[i].size > 0xc0000000ULL);
		if (m[i].type == LINUX_MEM_RAM)
			ram += m[i].size;
	}
	assert_int_equal(ram, mem - (0x100000 - 0x9fc00));
}

static void test_memmap(void **state)
{
	(void)state;
	check_map(64ULL << 20, 3, 64ULL << 20);
	check_map(3ULL << 30, 3, 3ULL << 30);
	check_map(4ULL << 30, 4, 3ULL << 30);
	check_map(5ULL << 30, 4, 3ULL << 30);
}

/* --- command line --------------------------------------------------------- */

static const struct device_ops dummy_ops = { .name = "dummy" };

static void test_cmdline(void **state)
{
	struct vm *vm = calloc(1, sizeof(*vm)); /* only the device list is read */
	struct device d0 = { .ops = &dummy_ops, .mmio_base = 0xd0000000, .mmio_len = 0x1000 };
	struct device d3 = { .ops = &dummy_ops, .mmio_base = 0xd0003000, .mmio_len = 0x200 };
	struct device ser = { .ops = &dummy_ops, .port_base = 0x3f8, .port_len = 8 };
	struct device bad = { .ops = &dummy_ops, .mmio_base = 0xe0000000, .mmio_len = 0x1000 };
	char buf[LINUX_CMDLINE_MAX], *longline;
	int n;

	(void)state;
	assert_non_null(vm);
	n = linux_boot_cmdline(vm, "console=ttyS0", buf, sizeof(buf));
	assert_int_equal(n, strlen("console=ttyS0"));
	assert_string_equal(buf, "console=ttyS0");

	vm->devices[vm->nr_devices++] = &ser;
	vm->devices[vm->nr_devices++] = &d0;
	vm->devices[vm->nr_devices++] = &d3;
	n = linux_boot_cmdline(vm, "console=ttyS0", buf, sizeof(buf));
	assert_string_equal(buf, "console=ttyS0 virtio_mmio.device=4K@0xd0000000:5 "
				 "virtio_mmio.device=512@0xd0003000:8");
	assert_int_equal(n, strlen(buf));
	n = linux_boot_cmdline(vm, NULL, buf, sizeof(buf));
	assert_string_equal(buf, "virtio_mmio.device=4K@0xd0000000:5 "
				 "virtio_mmio.device=512@0xd0003000:8");

	/* The kernel keeps 2047 bytes: the user's line plus the devices must fit. */
	longline = malloc(LINUX_CMDLINE_MAX);
	assert_non_null(longline);
	memset(longline, 'x', LINUX_CMDLINE_MAX - 40);
	longline[LINUX_CMDLINE_MAX - 40] = 0;
	assert_int_equal(linux_boot_cmdline(vm, longline, buf, sizeof(buf)), -E2BIG);
	vm->nr_devices = 0;
	assert_int_equal(linux_boot_cmdline(vm, longline, buf, sizeof(buf)),
			 LINUX_CMDLINE_MAX - 40);
	free(longline);

	vm->devices[vm->nr_devices++] = &bad;
	assert_int_equal(linux_boot_cmdline(vm, "", buf, sizeof(buf)), -EINVAL);
	free(vm);
}

/* --- synthetic kernels ---------------------------------------------------- */

struct elf_spec {
	uint64_t paddr, filesz, memsz, entry;
	bool pvh_note;
	size_t truncate; /* nonzero: cut the file to this many bytes */
};

#define ELF_DATA_OFF 4096

/* A minimal vmlinux look-alike: one PT_LOAD, optionally a PT_NOTE with the PVH entry. */
static char *make_elf(const struct elf_spec *s)
{
	char path[] = "/tmp/ft-linux-boot-XXXXXX";
	size_t size = ELF_DATA_OFF + s->filesz;
	uint8_t *f = calloc(1, size);
	Elf64_Ehdr *eh = (Elf64_Ehdr *)f;
	Elf64_Phdr *ph = (Elf64_Phdr *)(f + sizeof(*eh));
	size_t note_off = sizeof(*eh) + 2 * sizeof(*ph);
	int fd;

	assert_non_null(f);
	memcpy(eh->e_ident, ELFMAG, SELFMAG);
	eh->e_ident[EI_CLASS] = ELFCLASS64;
	eh->e_ident[EI_DATA] = ELFDATA2LSB;
	eh->e_ident[EI_VERSION] = EV_CURRENT;
	eh->e_type = ET_EXEC;
	eh->e_machine = EM_X86_64;
	eh->e_version = EV_CURRENT;
	eh->e_entry = s->entry;
	eh->e_phoff = sizeof(*eh);
	eh->e_ehsize = sizeof(*eh);
	eh->e_phentsize = sizeof(*ph);
	eh->e_phnum = s->pvh_note ? 2 : 1;
	ph[0] = (Elf64_Phdr){ .p_type = PT_LOAD,
			      .p_flags = PF_R | PF_X,
			      .p_offset = ELF_DATA_OFF,
			      .p_vaddr = 0xffffffff80000000ULL + s->paddr,
			      .p_paddr = s->paddr,
			      .p_filesz = s->filesz,
			      .p_memsz = s->memsz,
			      .p_align = 4096 };
	for (uint64_t i = 0; i < s->filesz; i++)
		f[ELF_DATA_OFF + i] = (uint8_t)(i * 7 + 1);
	if (s->pvh_note) {
		Elf64_Nhdr nh = { .n_namesz = 4, .n_descsz = 8, .n_type = 18 };
		uint64_t entry = PVH_ENTRY;

		memcpy(f + note_off, &nh, sizeof(nh));
		memcpy(f + note_off + sizeof(nh), "Xen", 4);
		memcpy(f + note_off + sizeof(nh) + 4, &entry, 8);
		ph[1] = (Elf64_Phdr){ .p_type = PT_NOTE,
				      .p_offset = note_off,
				      .p_filesz = sizeof(nh) + 4 + 8,
				      .p_align = 4 };
	}
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, f, s->truncate ? s->truncate : size),
			 (ssize_t)(s->truncate ? s->truncate : size));
	close(fd);
	free(f);
	return strdup(path);
}

static char *make_file(const char *text, size_t len)
{
	char path[] = "/tmp/ft-linux-boot-XXXXXX";
	int fd = mkstemp(path);

	assert_true(fd >= 0);
	if (text) {
		assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	} else {
		assert_int_equal(ftruncate(fd, (off_t)len), 0);
	}
	close(fd);
	return strdup(path);
}

static struct vm *new_vm(uint64_t mem, unsigned int ncpu)
{
	struct vm_config cfg = { .mem_size = mem, .nr_vcpus = ncpu, .tracking = DIRTY_RING };
	struct vm *vm = NULL;

	assert_int_equal(vm_create(&cfg, &vm), 0);
	return vm;
}

static int try_load(struct vm *vm, const char *kernel, const char *initrd, const char *cmdline,
		    enum linux_boot_protocol proto, char *err, size_t errlen)
{
	struct linux_boot_config c = {
		.kernel = kernel, .initrd = initrd, .cmdline = cmdline, .protocol = proto
	};

	return linux_boot_load(vm, &c, err, errlen);
}

static void expect_refusal(const struct elf_spec *s, const char *initrd, const char *cmdline,
			   enum linux_boot_protocol proto, int want, const char *want_text)
{
	struct vm *vm = new_vm(64ULL << 20, 1);
	char *path = make_elf(s), err[256];
	int r = try_load(vm, path, initrd, cmdline, proto, err, sizeof(err));

	printf("  refused (%s): %s\n", strerror(-r), err);
	assert_int_equal(r, want);
	assert_non_null(strstr(err, want_text));
	unlink(path);
	free(path);
	vm_free(vm);
}

static void test_refusals(void **state)
{
	struct elf_spec ok = { KERNEL_PADDR, 8192, 8192, KERNEL_PADDR, false, 0 };
	struct elf_spec s;
	char err[256], *path, *initrd, *longline;
	struct vm *vm;

	(void)state;
	if (!have_kvm)
		skip();
	/* Not an ELF at all. */
	vm = new_vm(64ULL << 20, 1);
	path = make_file("this is a bzImage? no, just text\n", 0);
	assert_int_equal(try_load(vm, path, NULL, "", LINUX_BOOT_64BIT, err, sizeof(err)),
			 -ENOEXEC);
	assert_non_null(strstr(err, "not an ELF"));
	unlink(path);
	free(path);
	assert_int_equal(
		try_load(vm, "/nonexistent/vmlinux", NULL, "", LINUX_BOOT_64BIT, err, sizeof(err)),
		-ENOENT);
	assert_non_null(strstr(err, "cannot read kernel"));
	vm_free(vm);

	/* Truncated: the segment's bytes are not in the file. */
	s = ok;
	s.truncate = ELF_DATA_OFF + 100;
	expect_refusal(&s, NULL, "", LINUX_BOOT_64BIT, -ENOEXEC, "truncated");
	/* Truncated inside the program headers. */
	s.truncate = sizeof(Elf64_Ehdr) + 10;
	expect_refusal(&s, NULL, "", LINUX_BOOT_64BIT, -ENOEXEC, "program headers");
	/* Does not fit: 16 MiB + 64 MiB of bss in a 64 MiB VM. */
	s = ok;
	s.memsz = 64ULL << 20;
	expect_refusal(&s, NULL, "", LINUX_BOOT_64BIT, -E2BIG, "kernel does not fit");
	/* Below 1 MiB: over the boot structures. */
	s = ok;
	s.paddr = s.entry = 0x8000;
	expect_refusal(&s, NULL, "", LINUX_BOOT_64BIT, -E2BIG, "kernel does not fit");
	/* Entry outside the image. */
	s = ok;
	s.entry = 0x4000000;
	expect_refusal(&s, NULL, "", LINUX_BOOT_64BIT, -ENOEXEC, "entry");
	/* PVH without the note. */
	expect_refusal(&ok, NULL, "", LINUX_BOOT_PVH, -ENOENT, "no PVH note");
	/* An initrd that does not fit between the kernel's end (56 MiB) and 64 MiB. */
	s = ok;
	s.memsz = 40ULL << 20;
	initrd = make_file(NULL, 16ULL << 20);
	expect_refusal(&s, initrd, "", LINUX_BOOT_64BIT, -E2BIG, "initrd does not fit");
	unlink(initrd);
	free(initrd);
	/* A command line of 3000 bytes. */
	longline = malloc(3001);
	assert_non_null(longline);
	memset(longline, 'y', 3000);
	longline[3000] = 0;
	expect_refusal(&ok, NULL, longline, LINUX_BOOT_64BIT, -E2BIG, "command line too long");
	free(longline);
}

static void *gpa(struct vm *vm, uint64_t addr, uint64_t len)
{
	void *p = vm_gpa_to_hva(vm, addr, len);

	assert_non_null(p);
	return p;
}

static void check_common(struct vm *vm, uint64_t initrd_gpa, uint64_t initrd_len)
{
	struct kvm_lapic_state lapic;
	struct kvm_mp_state mp;
	const uint8_t *k = gpa(vm, KERNEL_PADDR, 8192);
	uint32_t lvt0, lvt1;

	for (unsigned int i = 0; i < 8192; i++)
		assert_int_equal(k[i], (uint8_t)(i * 7 + 1));
	assert_non_null(strstr(gpa(vm, LINUX_CMDLINE_GPA, 64), "console=ttyS0"));
	assert_memory_equal(gpa(vm, LINUX_EBDA_GPA, 4), "_MP_", 4);
	assert_int_equal(initrd_gpa & 4095, 0);
	assert_true(initrd_gpa + initrd_len <= vm->mem_size);
	assert_true(initrd_gpa + initrd_len > vm->mem_size - 4096);
	assert_int_equal(((uint8_t *)gpa(vm, initrd_gpa, 1))[0], 'I');
	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		assert_int_equal(ioctl(vm->vcpus[i]->fd, KVM_GET_LAPIC, &lapic), 0);
		memcpy(&lvt0, lapic.regs + 0x350, 4);
		memcpy(&lvt1, lapic.regs + 0x360, 4);
		assert_int_equal(lvt0 & 0x700, 0x700);
		assert_int_equal(lvt1 & 0x700, 0x400);
		assert_int_equal(ioctl(vm->vcpus[i]->fd, KVM_GET_MP_STATE, &mp), 0);
		assert_int_equal(mp.mp_state,
				 i ? KVM_MP_STATE_UNINITIALIZED : KVM_MP_STATE_RUNNABLE);
	}
}

static void test_load_64bit(void **state)
{
	struct elf_spec s = { KERNEL_PADDR, 8192, 3 << 20, KERNEL_PADDR + 0x200, false, 0 };
	char err[256], *path, *initrd;
	const struct boot_params *bp;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct vm *vm;

	(void)state;
	if (!have_kvm)
		skip();
	vm = new_vm(64ULL << 20, 2);
	path = make_elf(&s);
	initrd = make_file("INITRD-CONTENTS", 0);
	assert_int_equal(
		try_load(vm, path, initrd, "console=ttyS0", LINUX_BOOT_64BIT, err, sizeof(err)), 0);
	bp = gpa(vm, LINUX_ZERO_PAGE_GPA, sizeof(*bp));
	assert_int_equal(bp->hdr.boot_flag, 0xaa55);
	assert_int_equal(bp->hdr.header, 0x53726448);
	assert_int_equal(bp->hdr.type_of_loader, 0xff);
	assert_int_equal(bp->hdr.cmd_line_ptr, LINUX_CMDLINE_GPA);
	assert_int_equal(bp->e820_entries, 3);
	assert_int_equal(bp->e820_table[2].addr + bp->e820_table[2].size, 64ULL << 20);
	assert_int_equal(bp->hdr.ramdisk_size, strlen("INITRD-CONTENTS"));
	check_common(vm, bp->hdr.ramdisk_image, bp->hdr.ramdisk_size);

	assert_int_equal(ioctl(vm->vcpus[0]->fd, KVM_GET_REGS, &regs), 0);
	assert_int_equal(ioctl(vm->vcpus[0]->fd, KVM_GET_SREGS, &sregs), 0);
	assert_int_equal(regs.rip, KERNEL_PADDR + 0x200);
	assert_int_equal(regs.rsi, LINUX_ZERO_PAGE_GPA);
	assert_int_equal(regs.rflags, 2);
	assert_int_equal(sregs.cs.selector, 0x10);
	assert_int_equal(sregs.cs.l, 1);
	assert_int_equal(sregs.cs.dpl, 0);
	assert_int_equal(sregs.ds.selector, 0x18);
	assert_int_equal(sregs.ss.selector, 0x18);
	assert_true(sregs.efer & (1 << 10));
	assert_true(sregs.cr0 & (1ULL << 31));
	assert_int_equal(sregs.cr3, LINUX_PT_GPA);
	/* The identity map covers 4 GiB: the 2 MiB entry for 0xfee00000 is there. */
	assert_int_equal(((uint64_t *)gpa(vm, LINUX_PT_GPA + 2 * 4096, 4 * 4096))[0x7f7] &
				 ~0xfffULL,
			 0xfee00000ULL & ~0x1fffffULL);
	unlink(path);
	unlink(initrd);
	free(path);
	free(initrd);
	vm_free(vm);
}

struct hvm_start_info_view {
	uint32_t magic, version, flags, nr_modules;
	uint64_t modlist_paddr, cmdline_paddr, rsdp_paddr, memmap_paddr;
	uint32_t memmap_entries, reserved;
};

static void test_load_pvh(void **state)
{
	struct elf_spec s = { KERNEL_PADDR, 8192, 8192, KERNEL_PADDR, true, 0 };
	char err[256], *path, *initrd;
	const struct hvm_start_info_view *si;
	const uint64_t *mod, *mm;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	struct vm *vm;

	(void)state;
	if (!have_kvm)
		skip();
	vm = new_vm(5ULL << 30, 2);
	path = make_elf(&s);
	initrd = make_file("INITRD", 0);
	assert_int_equal(
		try_load(vm, path, initrd, "console=ttyS0", LINUX_BOOT_PVH, err, sizeof(err)), 0);
	si = gpa(vm, LINUX_PVH_INFO_GPA, sizeof(*si));
	assert_int_equal(si->magic, 0x336ec578);
	assert_int_equal(si->version, 1);
	assert_int_equal(si->cmdline_paddr, LINUX_CMDLINE_GPA);
	assert_int_equal(si->nr_modules, 1);
	assert_int_equal(si->memmap_entries, 4);
	mod = gpa(vm, si->modlist_paddr, 32);
	mm = gpa(vm, si->memmap_paddr, 4 * 24);
	assert_int_equal(mod[1], 6);
	assert_int_equal(mm[9], 4ULL << 30); /* entry 3's address */
	assert_int_equal(mm[10], 2ULL << 30);
	/* The initrd sits below 2 GiB (initrd_addr_max), not at the top of low RAM. */
	assert_true(mod[0] + mod[1] <= 0x80000000ULL && mod[0] + mod[1] > 0x80000000ULL - 4096);
	assert_int_equal(((uint8_t *)gpa(vm, mod[0], 1))[0], 'I');

	assert_int_equal(ioctl(vm->vcpus[0]->fd, KVM_GET_REGS, &regs), 0);
	assert_int_equal(ioctl(vm->vcpus[0]->fd, KVM_GET_SREGS, &sregs), 0);
	assert_int_equal(regs.rip, PVH_ENTRY);
	assert_int_equal(regs.rbx, LINUX_PVH_INFO_GPA);
	assert_int_equal(sregs.cs.l, 0);
	assert_int_equal(sregs.cs.db, 1);
	assert_int_equal(sregs.cs.limit, 0xffffffff);
	assert_int_equal(sregs.cr0 & ((1ULL << 31) | 1), 1);
	assert_int_equal(sregs.efer & (1 << 10), 0);
	unlink(path);
	unlink(initrd);
	free(path);
	free(initrd);
	vm_free(vm);
}

/* --- a real kernel -------------------------------------------------------- */

/*
 * The test kernel and initramfs of scripts/linux-guest.sh, booted on a machine
 * built like ftd's (daemon/run.c): COM1 with its IRQ, then the CMOS. Its /init
 * prints "ringft-init: line N ok ..." every period_ms, consecutive from 1.
 */
#ifndef FT_SOURCE_DIR
#define FT_SOURCE_DIR "."
#endif
/* What this host's emulator needs (tests/linux/README.md); harmless on VMX/SVM. */
#define REAL_CMDLINE                                                                               \
	"console=ttyS0 noxsave clearcpuid=308,151,141,297,580 io_delay=none tsc=reliable "         \
	"no_timer_check panic=-1 reboot=t ringft.period_ms=100"
#define REAL_MEM (128ULL << 20)
#define NS_PER_S 1000000000ULL
/* Harvest period, as ftd's checkpoints. */
#define POLL_MS 10
/* Generous: other KVM tests may share this host's 2 cores. */
#define TO_VERSION_S 60
#define TO_INIT_S    180
#define TO_LINES_S   60

static char kernel_path[4096], initrd_path[4096];
static int kernel_found; /* 0: not looked yet, 1: found, -1: none built */

static int copy_path(char *dst, size_t len, const char *src)
{
	size_t n = strlen(src);

	if (n >= len)
		return -ENAMETOOLONG;
	memcpy(dst, src, n + 1);
	return 0;
}

/* FT_LINUX_KERNEL (and FT_LINUX_INITRD), else what linux-guest.sh --print says. */
static bool find_kernel(void)
{
	const char *k = getenv("FT_LINUX_KERNEL"), *i = getenv("FT_LINUX_INITRD");
	char line[4200];
	FILE *f;

	if (kernel_found)
		return kernel_found > 0;
	kernel_found = -1;
	if (k && *k) {
		if (copy_path(kernel_path, sizeof(kernel_path), k) ||
		    copy_path(initrd_path, sizeof(initrd_path), i ? i : ""))
			return false;
		kernel_found = 1;
		return true;
	}
	f = popen("'" FT_SOURCE_DIR "/scripts/linux-guest.sh' --print 2>/dev/null", "r");
	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (!strncmp(line, "vmlinux=", 8))
			copy_path(kernel_path, sizeof(kernel_path), line + 8);
		else if (!strncmp(line, "initramfs=", 10))
			copy_path(initrd_path, sizeof(initrd_path), line + 10);
	}
	if (pclose(f) == 0 && kernel_path[0] && initrd_path[0])
		kernel_found = 1;
	return kernel_found > 0;
}

static void require_kernel(void)
{
	const char *req = getenv("FT_REQUIRE_KVM");

	if (!have_kvm)
		skip();
	if (find_kernel())
		return;
	if (req && !strcmp(req, "1"))
		fail_msg("FT_REQUIRE_KVM=1 but no Linux test kernel is built: run "
			 "scripts/linux-guest.sh (or set FT_LINUX_KERNEL and FT_LINUX_INITRD)");
	printf("  skipped: no Linux test kernel built (run scripts/linux-guest.sh)\n");
	skip();
}

/* What a console says so far: the init's numbered lines, and trouble. */
struct init_log {
	bool version;			  /* "Linux version" */
	bool started;			  /* "ringft-init: started" */
	unsigned long first, last, lines; /* init line numbers; lines: how many */
	unsigned long bad;		  /* not ok, BAD, malformed, or not consecutive */
	char first_bad[200];
	char trouble[200]; /* the first line of a kernel oops, BUG, panic, ... */
};

static const char *const kernel_trouble[] = {
	"Oops", "BUG:", "Kernel panic", "soft lockup", "WARNING: CPU", "Call Trace",
};

static void log_bad(struct init_log *il, const char *why, const char *line)
{
	if (!il->bad++)
		snprintf(il->first_bad, sizeof(il->first_bad), "%s: %.160s", why, line);
}

/* Complete lines of text, which begins with the guest's first output. */
static void parse_console(const char *text, struct init_log *il)
{
	const char *p, *eol, *m;
	char line[512];
	unsigned long n;

	memset(il, 0, sizeof(*il));
	for (p = text; (eol = strchr(p, '\n')); p = eol + 1) {
		size_t len = (size_t)(eol - p);

		if (len && p[len - 1] == '\r')
			len--;
		if (len >= sizeof(line))
			len = sizeof(line) - 1;
		memcpy(line, p, len);
		line[len] = 0;
		for (size_t i = 0; i < sizeof(kernel_trouble) / sizeof(*kernel_trouble); i++)
			if (!il->trouble[0] && strstr(line, kernel_trouble[i]))
				snprintf(il->trouble, sizeof(il->trouble), "%.190s", line);
		il->version |= strstr(line, "Linux version") != NULL;
		il->started |= strstr(line, "ringft-init: started") != NULL;
		m = strstr(line, "ringft-init: line ");
		if (!m) {
			if (strstr(line, "ringft-init:") && strstr(line, "BAD"))
				log_bad(il, "BAD", line);
			continue;
		}
		if (sscanf(m, "ringft-init: line %lu", &n) != 1) {
			log_bad(il, "malformed", line);
			continue;
		}
		if (il->lines && n != il->last + 1)
			log_bad(il, "not consecutive", line);
		if (!strstr(m, " ok ") || strstr(m, "BAD"))
			log_bad(il, "not ok", line);
		if (!il->lines++)
			il->first = n;
		il->last = n;
	}
}

/* One running Linux guest of this test. */
struct guest {
	const char *name;
	struct vm *vm;
	struct t_console con;
	struct dirty_set dirty; /* harvested and dropped: nobody else empties the rings */
	char *prefix;		/* console of the VM it was restored from, or NULL */
	uint64_t t0;		/* vm_start() */
	bool live;
};

/* Freed by the teardown too, so a failed test leaves no vCPU threads behind. */
static struct guest guests[2];

static void guest_free(struct guest *g)
{
	if (!g->live)
		return;
	vm_free(g->vm); /* joins the vCPU threads: nothing writes the console after */
	t_console_free(&g->con);
	dirty_set_free(&g->dirty);
	free(g->prefix);
	memset(g, 0, sizeof(*g));
}

static int guests_teardown(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(guests) / sizeof(*guests); i++)
		guest_free(&guests[i]);
	return 0;
}

static void guest_notice(void *opaque, const char *msg)
{
	printf("  %s: notice: %s\n", (const char *)opaque, msg);
}

/* A VM as ftd builds it for a Linux guest, not loaded; the devices in ftd's order. */
static void guest_new(struct guest *g, const char *name)
{
	/*
	 * The bitmap, as ftd requires for a Linux guest on kvm_pvm: there every
	 * store of the emulated kernel is a dirty ring entry (about 2 million a
	 * second) and an emulation batch can overrun the ring (docs/linux.md).
	 */
	struct vm_config cfg = { .mem_size = REAL_MEM, .nr_vcpus = 1, .tracking = DIRTY_BITMAP };
	struct device *ser = NULL, *cmos = NULL;

	memset(g, 0, sizeof(*g));
	g->name = name;
	t_console_init(&g->con);
	assert_int_equal(vm_create(&cfg, &g->vm), 0);
	g->live = true;
	assert_int_equal(dirty_set_init(&g->dirty, g->vm->nr_pages), 0);
	assert_int_equal(serial_new(GUEST_PORT_COM1, t_console_sink, &g->con, &ser), 0);
	assert_int_equal(vm_add_device(g->vm, ser), 0);
	serial_set_irq(ser, g->vm, GUEST_IRQ_COM1);
	assert_int_equal(cmos_new(&cmos), 0);
	assert_int_equal(vm_add_device(g->vm, cmos), 0);
	vm_set_notice_hook(g->vm, guest_notice, (void *)name);
}

static void guest_start(struct guest *g)
{
	g->t0 = t_now_ns();
	assert_int_equal(vm_start(g->vm), 0);
}

static void guest_boot(struct guest *g, const char *name, enum linux_boot_protocol proto,
		       const char *cmdline)
{
	char err[256] = "";
	int r;

	guest_new(g, name);
	r = try_load(g->vm, kernel_path, initrd_path[0] ? initrd_path : NULL, cmdline, proto, err,
		     sizeof(err));
	if (r < 0)
		fail_msg("linux_boot_load(%s): %s (%s)", kernel_path, err, strerror(-r));
	guest_start(g);
}

/* Everything this guest printed, after what its predecessor printed. */
static char *guest_text(struct guest *g)
{
	char *own = NULL, *text;
	size_t n = g->prefix ? strlen(g->prefix) : 0;

	t_console_append_raw(&g->con, &own);
	text = malloc(n + strlen(own) + 1);
	assert_non_null(text);
	memcpy(text, g->prefix ? g->prefix : "", n);
	strcpy(text + n, own);
	free(own);
	return text;
}

/* The last `lines` lines of text, for a failure report. */
static const char *tail(const char *text, unsigned int lines)
{
	const char *p = text + strlen(text);

	while (p > text && lines) {
		p--;
		if (*p == '\n' && p[1])
			lines--;
	}
	return p == text ? p : p + 1;
}

static void guest_fail(struct guest *g, const char *why)
{
	char *text = guest_text(g);
	const struct vcpu *v = g->vm->vcpus[0];

	printf("--- %s console, last lines:\n%s\n---\n", g->name, tail(text, 40));
	free(text);
	fail_msg("%s: %s (vCPU 0: %s)", g->name, why,
		 v->status == VCPU_RUNNING ? "running" : v->fail_reason);
}

/*
 * Keeps the guest going: empties its dirty rings (a vCPU parks on a full ring
 * until someone does) and fails at once if its vCPU stopped.
 */
static void guest_service(struct guest *g)
{
	unsigned int ev = vm_take_events(g->vm);
	char why[200];
	int r;

	if (ev & VM_EVENT_STOPPED)
		guest_fail(g, "the vCPU stopped");
	if (ev & VM_EVENT_RING_FULL)
		r = vm_harvest_paused(g->vm, &g->dirty);
	else
		r = vm_harvest(g->vm, &g->dirty, NULL);
	if (r < 0) {
		snprintf(why, sizeof(why), "harvest: %s%s%s", strerror(-r), r == -EIO ? ": " : "",
			 r == -EIO ? g->vm->dirty_error : "");
		guest_fail(g, why);
	}
	dirty_set_clear(&g->dirty);
}

static void guest_run_for(struct guest *g, unsigned int ms)
{
	uint64_t end = t_now_ns() + ms * 1000000ULL;

	while (t_now_ns() < end) {
		guest_service(g);
		t_sleep_ms(POLL_MS);
	}
}

/*
 * Until the console has some output, and `needle` if not NULL, and init line
 * `line` (0: none needed). Fails at once on kernel trouble or a bad init line.
 * Returns the seconds since vm_start().
 */
static double guest_wait(struct guest *g, const char *needle, unsigned long line,
			 unsigned int timeout_s, struct init_log *il)
{
	uint64_t end = t_now_ns() + timeout_s * NS_PER_S;
	char why[400];

	for (;;) {
		char *text;
		bool done;

		guest_service(g);
		text = guest_text(g);
		parse_console(text, il);
		done = text[0] && (!needle || strstr(text, needle)) && il->last >= line;
		free(text);
		if (il->trouble[0]) {
			snprintf(why, sizeof(why), "kernel trouble: %s", il->trouble);
			guest_fail(g, why);
		}
		if (il->bad) {
			snprintf(why, sizeof(why), "%lu bad init line(s), first %s", il->bad,
				 il->first_bad);
			guest_fail(g, why);
		}
		if (done)
			return (t_now_ns() - g->t0) / 1e9;
		if (t_now_ns() > end) {
			snprintf(why, sizeof(why), "no %s%s%s%.0lu after %u s",
				 needle ? needle
				 : line ? ""
					: "output",
				 needle && line ? ", " : "", line ? "init line " : "", line,
				 timeout_s);
			guest_fail(g, why);
		}
		t_sleep_ms(POLL_MS);
	}
}

static void test_boot_pvh(void **state)
{
	struct guest *g = &guests[0];
	struct init_log il;

	(void)state;
	require_kernel();
	/* The early console prints "Linux version" at once, not ~15 s later. */
	guest_boot(g, "PVH", LINUX_BOOT_PVH, "earlyprintk=serial,ttyS0,115200 " REAL_CMDLINE);
	printf("  PVH: \"Linux version\" after %.2f s\n",
	       guest_wait(g, "Linux version", 0, TO_VERSION_S, &il));
	guest_free(g);
}

/* lines of text from p on, the last one even without its newline */
static void print_lines(const char *title, const char *p, unsigned int lines)
{
	printf("  %s:\n", title);
	for (const char *eol; *p && lines--; p = eol + 1) {
		eol = strchr(p, '\n');
		if (!eol) {
			printf("    | %s(no newline yet)\n", p);
			break;
		}
		printf("    | %.*s\n", (int)(eol - p - (eol > p && eol[-1] == '\r')), p);
	}
}

/*
 * Saves a running guest (A) and restores it into a fresh VM (B) built the same
 * way: every byte of RAM, then the machine state. B's console must go on where
 * A's stopped: mid-kernel, B still reaches the init, whose first 10 lines are
 * consecutive and ok; in userspace, the init's lines continue from A's next one.
 */
static void restore_fresh(bool userspace)
{
	struct guest *a = &guests[0], *b = &guests[1];
	struct vm_pause_stats ps = { 0 };
	struct init_log il_a, il;
	struct machine_state *ms = calloc(1, sizeof(*ms));
	const struct vcpu_state *vs;
	double t_cut, t_done;
	uint64_t t, pause_ns, copy_ns, load_ns;
	unsigned long want;
	char *text_a, *text;
	const char *init;

	require_kernel();
	assert_non_null(ms);
	guest_boot(a, "A", LINUX_BOOT_64BIT, REAL_CMDLINE);
	if (userspace) {
		guest_wait(a, NULL, 5, TO_INIT_S, &il_a);
	} else {
		printf("  A: first console bytes after %.2f s\n",
		       guest_wait(a, NULL, 0, TO_VERSION_S, &il_a));
		/*
		 * Still inside the kernel on any host: this kernel reaches its init
		 * in 40-90 s on kvm_pvm (emulated) but about 2 s on SVM KVM under
		 * QEMU's emulator, and faster on hardware.
		 */
		guest_run_for(a, 50);
	}
	guest_service(a);

	t = t_now_ns();
	t_cut = (t - a->t0) / 1e9;
	assert_int_equal(vm_pause(a->vm, VM_PAUSE_SAVE_STATE, &ps), 0);
	assert_int_equal(machine_save_vm(a->vm, ms), 0);
	machine_collect_vcpus(a->vm, ms);
	pause_ns = t_now_ns() - t;
	/* Paused: A's console is final. */
	text_a = guest_text(a);
	parse_console(text_a, &il_a);
	vs = &ms->vcpu[0];
	printf("  A: saved at %.2f s (pause %.2f ms, of which kick %.2f ms, save %.2f ms): "
	       "RIP %#llx, CS %#x (DPL %u), init line %lu\n",
	       t_cut, pause_ns / 1e6, ps.kick_ns / 1e6, ps.save_ns / 1e6,
	       (unsigned long long)vs->regs.rip,
	       vs->has_sregs2 ? vs->sregs2.cs.selector : vs->sregs.cs.selector,
	       vs->has_sregs2 ? vs->sregs2.cs.dpl : vs->sregs.cs.dpl, il_a.last);
	if (!userspace && (il_a.started || il_a.lines))
		fail_msg("A reached the init before the mid-kernel cut (%.2f s)", t_cut);
	if (userspace)
		assert_true(il_a.last >= 5);

	t = t_now_ns();
	guest_new(b, "B");
	memcpy(b->vm->mem, a->vm->mem, a->vm->mem_size);
	copy_ns = t_now_ns() - t;
	t = t_now_ns();
	assert_int_equal(machine_load(b->vm, ms), 0);
	load_ns = t_now_ns() - t;
	b->prefix = text_a;
	guest_free(a);
	guest_start(b);
	printf("  B: created and RAM copied (%llu MiB) in %.1f ms, state loaded in %.2f ms\n",
	       (unsigned long long)(REAL_MEM >> 20), copy_ns / 1e6, load_ns / 1e6);

	want = userspace ? 15 : 10;
	t_done = guest_wait(b, NULL, want, userspace ? TO_LINES_S : TO_INIT_S, &il);
	text = guest_text(b);
	print_lines("A's console before the cut", tail(text_a, 4), 4);
	print_lines("B's console after it", text + strlen(text_a), 4);
	init = strstr(text + strlen(text_a), "ringft-init: started");
	if (!userspace && init)
		print_lines("B's init", init, 4);
	free(text);
	printf("  B: init line %lu after %.2f s (lines %lu..%lu of the joined console)\n", want,
	       t_done, il.first, il.last);
	assert_true(il.started);
	assert_int_equal(il.first, 1);
	assert_int_equal(il.lines, il.last);
	if (userspace)
		assert_true(il.last > il_a.last);
	guest_free(b);
	free(ms);
}

static void test_restore_mid_kernel(void **state)
{
	(void)state;
	restore_fresh(false);
}

static void test_restore_userspace(void **state)
{
	(void)state;
	restore_fresh(true);
}

int main(void)
{
	const char *req = getenv("FT_REQUIRE_KVM");
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_mptable),
		cmocka_unit_test(test_memmap),
		cmocka_unit_test(test_cmdline),
		cmocka_unit_test(test_refusals),
		cmocka_unit_test(test_load_64bit),
		cmocka_unit_test(test_load_pvh),
		cmocka_unit_test_teardown(test_boot_pvh, guests_teardown),
		cmocka_unit_test_teardown(test_restore_mid_kernel, guests_teardown),
		cmocka_unit_test_teardown(test_restore_userspace, guests_teardown),
	};
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC), r;

	setvbuf(stdout, NULL, _IOLBF, 0);
	have_kvm = fd >= 0;
	if (fd >= 0)
		close(fd);
	if (!have_kvm && req && !strcmp(req, "1")) {
		fprintf(stderr, "FT_REQUIRE_KVM=1 but /dev/kvm cannot be opened\n");
		return T_EXIT_FAIL;
	}
	r = cmocka_run_group_tests(tests, NULL, NULL);
	if (!r && !have_kvm)
		return T_EXIT_SKIP;
	return r;
}
