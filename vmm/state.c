/* SPDX-License-Identifier: MIT */
/*
 * Saving and loading the state KVM keeps for a vCPU (registers, MSRs, LAPIC, pending
 * events, ...) and for the VM (PIC, IOAPIC, PIT, kvmclock), as the plain data of
 * vmm/state.h.
 *
 * vCPU functions run on the vCPU's own thread while it is parked outside KVM_RUN (or
 * before its thread exists); several vCPUs save in parallel, so nothing here writes
 * to struct vm. VM functions run on the owner thread with every vCPU parked.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include <linux/kvm.h>

#include "vmm/state.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

#define MSR_IA32_TSC	      0x10
#define MSR_IA32_TSC_DEADLINE 0x6e0

/*
 * MSRs that KVM_GET_MSR_INDEX_LIST leaves out (KVM saves them through other paths in
 * QEMU, or only lists what the host CPU virtualises) but whose loss a guest notices:
 * the APIC base, MTRRs and PAT decide memory types, the segment bases and syscall
 * MSRs are live kernel state, SPEC_CTRL and MISC_ENABLE are guest-visible settings.
 * Listed first so that, if the cap is ever reached, KVM's optional extras (PMU
 * counters and the like) are what falls off. Read-only MSRs are left out: MTRRCAP
 * and MCG_CAP are KVM constants (MCG_CAP is set by KVM_X86_SETUP_MCE), and KVM
 * refuses them in KVM_SET_MSRS. IA32_XSS is in KVM's list when it can be saved.
 */
/* One MSR group per line. */
/* clang-format off */
static const uint32_t extra_msrs[] = {
	0x1b,                                   /* IA32_APIC_BASE */
	0x10,                                   /* IA32_TSC (saved, not loaded: see below) */
	0x3b,                                   /* IA32_TSC_ADJUST */
	0x3a,                                   /* IA32_FEATURE_CONTROL */
	0x48,                                   /* IA32_SPEC_CTRL */
	0x2ff,                                  /* IA32_MTRR_DEF_TYPE */
	0x250, 0x258, 0x259,                    /* fixed MTRRs 64K, 16K */
	0x268, 0x269, 0x26a, 0x26b,             /* fixed MTRRs 4K */
	0x26c, 0x26d, 0x26e, 0x26f,
	0x200, 0x201, 0x202, 0x203,             /* variable MTRRs */
	0x204, 0x205, 0x206, 0x207,
	0x208, 0x209, 0x20a, 0x20b,
	0x20c, 0x20d, 0x20e, 0x20f,
	0x277,                                  /* IA32_PAT */
	0x174, 0x175, 0x176,                    /* SYSENTER_CS/ESP/EIP */
	0xc0000081, 0xc0000082, 0xc0000083, 0xc0000084, /* STAR, LSTAR, CSTAR, SFMASK */
	0xc0000100, 0xc0000101, 0xc0000102,     /* FS_BASE, GS_BASE, KERNEL_GS_BASE */
	0xc0000103,                             /* TSC_AUX */
	0x1a0,                                  /* IA32_MISC_ENABLE */
	0x1d9,                                  /* IA32_DEBUGCTL */
	0x17a, 0x17b,                           /* MCG_STATUS, MCG_CTL */
	0x6e0,                                  /* IA32_TSC_DEADLINE (loaded after LAPIC) */
};
/* clang-format on */

struct msrs_buf {
	struct kvm_msrs hdr;
	struct kvm_msr_entry entries[VCPU_MAX_MSRS];
};

static int xioctl(int fd, unsigned long req, void *arg)
{
	int r = ioctl(fd, req, arg);

	return r < 0 ? -errno : r;
}

/* KVM_CAP_SREGS2 is a property of the kernel: ask once per process. 0 unknown. */
static int sregs2_cached; /* 1 yes, -1 no */

static bool have_sregs2(const struct vcpu *vcpu)
{
	int c = __atomic_load_n(&sregs2_cached, __ATOMIC_RELAXED);

	if (c == 0) {
		c = ioctl(vcpu->vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SREGS2) > 0 ? 1 : -1;
		__atomic_store_n(&sregs2_cached, c, __ATOMIC_RELAXED);
	}
	return c > 0;
}

/*
 * Bytes KVM_GET_XSAVE2 writes; 0 means the kernel lacks KVM_CAP_XSAVE2 and only the
 * 4096-byte KVM_GET_XSAVE exists. vm.c normally fills vm->xsave_size; when it has not,
 * ask here rather than write struct vm from a vCPU thread.
 */
static int xsave_size(const struct vcpu *vcpu)
{
	int size = (int)vcpu->vm->xsave_size;

	if (size == 0) {
		size = ioctl(vcpu->vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
		if (size < 0)
			size = 0;
	}
	if (size > VCPU_XSAVE_MAX)
		return -E2BIG;
	return size;
}

static int get_index_list(int kvm_fd, struct kvm_msr_list **ret_list)
{
	struct kvm_msr_list probe = { .nmsrs = 0 };
	struct kvm_msr_list *list;
	uint32_t n;
	int r;

	/* The list can only be sized by asking with too small a buffer (E2BIG). */
	r = xioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe);
	if (r < 0 && r != -E2BIG)
		return r;
	n = probe.nmsrs;
	for (;;) {
		list = calloc(1, sizeof(*list) + (size_t)n * sizeof(uint32_t));
		if (!list)
			return -ENOMEM;
		list->nmsrs = n;
		r = xioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, list);
		if (r != -E2BIG)
			break;
		/* KVM wrote back the size it needs; the list does not grow today. */
		n = list->nmsrs;
		free(list);
	}
	if (r < 0) {
		free(list);
		return r;
	}
	*ret_list = list;
	return 0;
}

static bool contains(const uint32_t *v, uint32_t n, uint32_t x)
{
	for (uint32_t i = 0; i < n; i++)
		if (v[i] == x)
			return true;
	return false;
}

/*
 * 1 if `index` can be saved and loaded on this vCPU, 0 if not, or -errno. Reading is
 * not enough: KVM reads some MSRs it refuses to set (read-only ones such as MTRRCAP,
 * or ones a backend does not emulate), and one such MSR would make every load fail.
 * So the value read is written back: the same value, on a vCPU that has not run, is
 * a no-op. IA32_TSC is not written back (KVM would treat it as a TSC sync); it is
 * loaded on its own (vcpu_set_tsc), not with the others (see split_msrs).
 */
static int msr_usable(int vcpu_fd, uint32_t index)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} one = { .hdr.nmsrs = 1, .e.index = index };
	int r;

	r = xioctl(vcpu_fd, KVM_GET_MSRS, &one);
	if (r <= 0 || index == MSR_IA32_TSC)
		return r;
	return xioctl(vcpu_fd, KVM_SET_MSRS, &one);
}

/*
 * Hyper-V's synthetic MSRs: KVM lists the ones it emulates, but our guests are
 * never shown Hyper-V's CPUID leaves, so they cannot use them, and some of
 * them are clocks (0x40000020, the partition reference counter, moves between
 * a save and a load and cannot be loaded back).
 */
static bool is_hyperv_msr(uint32_t index)
{
	return index >= 0x40000000 && index <= 0x400001ff;
}

int vcpu_probe_msrs(struct vcpu *vcpu, uint32_t **ret_list, uint32_t *ret_nr)
{
	struct kvm_msr_list *kvm_list = NULL;
	uint32_t *out = NULL;
	uint32_t nr = 0;
	size_t nr_extra = sizeof(extra_msrs) / sizeof(extra_msrs[0]);
	int r;

	r = get_index_list(vcpu->vm->kvm_fd, &kvm_list);
	if (r < 0)
		goto out;
	out = calloc(VCPU_MAX_MSRS, sizeof(*out));
	if (!out) {
		r = -ENOMEM;
		goto out;
	}
	/*
	 * Extras first, then KVM's list; duplicates dropped, and only what this vCPU can
	 * read and write kept (the list names MSRs of features the guest CPUID may
	 * lack). Beyond
	 * VCPU_MAX_MSRS the rest is dropped: the saved state has no room for it.
	 */
	for (size_t i = 0; i < nr_extra + kvm_list->nmsrs && nr < VCPU_MAX_MSRS; i++) {
		uint32_t index = i < nr_extra ? extra_msrs[i] : kvm_list->indices[i - nr_extra];

		if (contains(out, nr, index) || is_hyperv_msr(index))
			continue;
		r = msr_usable(vcpu->fd, index);
		if (r < 0)
			goto out;
		if (r == 1)
			out[nr++] = index;
	}
	r = 0;
	*ret_list = out;
	*ret_nr = nr;
	out = NULL;
out:
	free(out);
	free(kvm_list);
	return r;
}

static int save_msrs(struct vcpu *vcpu, struct vcpu_state *st)
{
	const struct vm *vm = vcpu->vm;
	struct msrs_buf buf;
	int r;

	if (!vm->msr_list)
		return -EINVAL;
	if (vm->nr_msrs > VCPU_MAX_MSRS)
		return -E2BIG;
	memset(&buf.hdr, 0, sizeof(buf.hdr));
	buf.hdr.nmsrs = vm->nr_msrs;
	for (uint32_t i = 0; i < vm->nr_msrs; i++)
		buf.entries[i] = (struct kvm_msr_entry){ .index = vm->msr_list[i] };
	r = xioctl(vcpu->fd, KVM_GET_MSRS, &buf);
	if (r < 0)
		return r;
	if ((uint32_t)r != vm->nr_msrs)
		return -EIO; /* stopped at an MSR the probe found readable */
	memcpy(st->msrs, buf.entries, vm->nr_msrs * sizeof(buf.entries[0]));
	memset(st->msrs + vm->nr_msrs, 0, (VCPU_MAX_MSRS - vm->nr_msrs) * sizeof(st->msrs[0]));
	st->nr_msrs = vm->nr_msrs;
	return 0;
}

int vcpu_save_state(struct vcpu *vcpu, struct vcpu_state *ret_state)
{
	struct vcpu_state *st = ret_state;
	int fd = vcpu->fd;
	int xsize;
	int r = 0;

	/* Zeroed so that unused parts (the other sregs, the xsave tail) are deterministic. */
	memset(st, 0, offsetof(struct vcpu_state, msrs));

	if (vcpu->run_state_fresh)
		memcpy(&st->regs, &vcpu->run->s.regs.regs, sizeof(st->regs));
	else
		r = xioctl(fd, KVM_GET_REGS, &st->regs);
	if (r < 0)
		return r;
	if (have_sregs2(vcpu)) {
		/* SREGS2 carries the PDPTRs, which SREGS would make KVM re-read from memory. */
		st->has_sregs2 = 1;
		r = xioctl(fd, KVM_GET_SREGS2, &st->sregs2);
	} else {
		r = xioctl(fd, KVM_GET_SREGS, &st->sregs);
	}
	if (r < 0)
		return r;

	xsize = xsave_size(vcpu);
	if (xsize < 0)
		return xsize;
	if (xsize > 0) {
		r = xioctl(fd, KVM_GET_XSAVE2, st->xsave);
	} else {
		xsize = sizeof(struct kvm_xsave);
		r = xioctl(fd, KVM_GET_XSAVE, st->xsave);
	}
	if (r < 0)
		return r;
	memset(st->xsave + xsize, 0, VCPU_XSAVE_MAX - xsize);
	st->xsave_size = xsize;

	r = xioctl(fd, KVM_GET_XCRS, &st->xcrs);
	if (r < 0)
		return r;
	r = save_msrs(vcpu, st);
	if (r < 0)
		return r;
	r = xioctl(fd, KVM_GET_LAPIC, &st->lapic);
	if (r < 0)
		return r;
	r = 0;
	if (vcpu->run_state_fresh)
		memcpy(&st->events, &vcpu->run->s.regs.events, sizeof(st->events));
	else
		r = xioctl(fd, KVM_GET_VCPU_EVENTS, &st->events);
	if (r < 0)
		return r;
	r = xioctl(fd, KVM_GET_MP_STATE, &st->mp_state);
	if (r < 0)
		return r;
	r = xioctl(fd, KVM_GET_DEBUGREGS, &st->debugregs);
	if (r < 0)
		return r;
	return 0;
}

/* sregs2 -> sregs for a kernel without SREGS2 (the PDPTRs are re-read from memory). */
static void sregs2_to_sregs(const struct kvm_sregs2 *s2, struct kvm_sregs *s)
{
	memset(s, 0, sizeof(*s));
	s->cs = s2->cs;
	s->ds = s2->ds;
	s->es = s2->es;
	s->fs = s2->fs;
	s->gs = s2->gs;
	s->ss = s2->ss;
	s->tr = s2->tr;
	s->ldt = s2->ldt;
	s->gdt = s2->gdt;
	s->idt = s2->idt;
	s->cr0 = s2->cr0;
	s->cr2 = s2->cr2;
	s->cr3 = s2->cr3;
	s->cr4 = s2->cr4;
	s->cr8 = s2->cr8;
	s->efer = s2->efer;
	s->apic_base = s2->apic_base;
	/* No interrupt_bitmap: with SREGS2 a pending interrupt travels in VCPU_EVENTS. */
}

static int load_sregs(struct vcpu *vcpu, const struct vcpu_state *st)
{
	struct kvm_sregs sregs;

	if (!st->has_sregs2)
		return xioctl(vcpu->fd, KVM_SET_SREGS, (void *)&st->sregs);
	if (have_sregs2(vcpu))
		return xioctl(vcpu->fd, KVM_SET_SREGS2, (void *)&st->sregs2);
	sregs2_to_sregs(&st->sregs2, &sregs);
	return xioctl(vcpu->fd, KVM_SET_SREGS, &sregs);
}

static int set_msrs(int fd, struct msrs_buf *buf)
{
	int r;

	if (buf->hdr.nmsrs == 0)
		return 0;
	/* KVM_SET_MSRS stops at the first MSR it refuses and returns how many it set. */
	r = xioctl(fd, KVM_SET_MSRS, buf);
	if (r < 0)
		return r;
	return (uint32_t)r == buf->hdr.nmsrs ? 0 : -EIO;
}

/*
 * Splits the saved MSRs into what is loaded before the LAPIC and TSC_DEADLINE, which
 * is loaded after it: KVM arms the deadline timer only if the LAPIC's LVT timer is
 * already in TSC-deadline mode, and KVM_SET_LAPIC would cancel a timer armed earlier.
 */
static int split_msrs(const struct vcpu_state *st, struct msrs_buf *main_msrs,
		      struct msrs_buf *late_msrs)
{
	if (st->nr_msrs > VCPU_MAX_MSRS)
		return -EINVAL;
	memset(&main_msrs->hdr, 0, sizeof(main_msrs->hdr));
	memset(&late_msrs->hdr, 0, sizeof(late_msrs->hdr));
	for (uint32_t i = 0; i < st->nr_msrs; i++) {
		const struct kvm_msr_entry *e = &st->msrs[i];

		/*
		 * IA32_TSC is loaded by machine_load, one value for every vCPU
		 * (vcpu_set_tsc), not from each vCPU's own save: the saves are
		 * microseconds apart, and KVM keeps the vCPUs' TSCs in step only when
		 * userspace writes them the same value.
		 */
		if (e->index == MSR_IA32_TSC)
			continue;
		if (e->index == MSR_IA32_TSC_DEADLINE)
			late_msrs->entries[late_msrs->hdr.nmsrs++] = *e;
		else
			main_msrs->entries[main_msrs->hdr.nmsrs++] = *e;
	}
	return 0;
}

int vcpu_saved_tsc(const struct vcpu_state *st, uint64_t *ret_tsc)
{
	for (uint32_t i = 0; i < st->nr_msrs && i < VCPU_MAX_MSRS; i++)
		if (st->msrs[i].index == MSR_IA32_TSC) {
			*ret_tsc = st->msrs[i].data;
			return 0;
		}
	return -ENOENT;
}

/*
 * A restored guest's TSC goes on from its checkpoint's. On ordinary KVM a new
 * vCPU's TSC starts near 0 when it is created, so a secondary that started
 * after its primary would give the promoted guest a TSC that jumped back, and
 * a Linux guest's timers then wait for the time it already had (seen on SVM:
 * the restored kernel stopped after a few lines). KVM treats this host write
 * as setting the offset so that the guest reads `tsc` now; kvm_pvm ignores it
 * (its guest TSC follows the host's). Time the guest was down is not added:
 * its TSC stands still across the failover, as across a pause.
 */
int vcpu_set_tsc(struct vcpu *vcpu, uint64_t tsc)
{
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e;
	} one = { .hdr.nmsrs = 1, .e = { .index = MSR_IA32_TSC, .data = tsc } };
	int r = xioctl(vcpu->fd, KVM_SET_MSRS, &one);

	return r < 0 ? r : r == 1 ? 0 : -EIO;
}

/* Only the flags KVM reported at save time, and only ones this code understands. */
#define EVENTS_FLAGS                                                                               \
	(KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR |                       \
	 KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM | KVM_VCPUEVENT_VALID_PAYLOAD |      \
	 KVM_VCPUEVENT_VALID_TRIPLE_FAULT)

int vcpu_load_state(struct vcpu *vcpu, const struct vcpu_state *state)
{
	const struct vcpu_state *st = state;
	struct kvm_vcpu_events events;
	struct kvm_debugregs dbg;
	/* ~8 KiB of stack: vCPU threads have megabytes, and this runs once per failover. */
	struct msrs_buf main_msrs, late_msrs;
	int fd = vcpu->fd;
	int r;

	if (st->xsave_size > VCPU_XSAVE_MAX)
		return -EINVAL;
	vcpu->run_state_fresh = false; /* KVM_RUN's copy is about to be out of date */
	r = split_msrs(st, &main_msrs, &late_msrs);
	if (r < 0)
		return r;

	/* Control registers and EFER first: the rest is checked against the mode. */
	r = load_sregs(vcpu, st);
	if (r < 0)
		return r;
	r = xioctl(fd, KVM_SET_REGS, (void *)&st->regs);
	if (r < 0)
		return r;
	/* KVM_SET_XSAVE reads the kernel's KVM_CAP_XSAVE2 size; the buffer is the max. */
	r = xioctl(fd, KVM_SET_XSAVE, (void *)st->xsave);
	if (r < 0)
		return r;
	r = xioctl(fd, KVM_SET_XCRS, (void *)&st->xcrs);
	if (r < 0)
		return r;
	r = set_msrs(fd, &main_msrs);
	if (r < 0)
		return r;
	r = xioctl(fd, KVM_SET_LAPIC, (void *)&st->lapic);
	if (r < 0)
		return r;
	r = set_msrs(fd, &late_msrs);
	if (r < 0)
		return r;

	/*
	 * Without VALID_NMI_PENDING KVM would keep its own nmi.pending, without
	 * VALID_SIPI_VECTOR its own sipi_vector, without VALID_SHADOW drop an STI/MOV SS
	 * interrupt shadow. KVM reports all three on every get; keep what it reported
	 * and nothing else, so SMM and payload state go back only where they came from.
	 */
	events = st->events;
	events.flags &= EVENTS_FLAGS;
	r = xioctl(fd, KVM_SET_VCPU_EVENTS, &events);
	if (r < 0)
		return r;
	r = xioctl(fd, KVM_SET_MP_STATE, (void *)&st->mp_state);
	if (r < 0)
		return r;
	dbg = st->debugregs;
	dbg.flags = 0; /* KVM rejects any flag on set */
	r = xioctl(fd, KVM_SET_DEBUGREGS, &dbg);
	if (r < 0)
		return r;
	return 0;
}

int vm_save_state(struct vm *vm, struct vm_state *ret_state)
{
	struct vm_state *st = ret_state;
	int r;

	memset(st, 0, sizeof(*st));
	st->pic_master.chip_id = KVM_IRQCHIP_PIC_MASTER;
	st->pic_slave.chip_id = KVM_IRQCHIP_PIC_SLAVE;
	st->ioapic.chip_id = KVM_IRQCHIP_IOAPIC;
	r = xioctl(vm->vm_fd, KVM_GET_IRQCHIP, &st->pic_master);
	if (r < 0)
		return r;
	r = xioctl(vm->vm_fd, KVM_GET_IRQCHIP, &st->pic_slave);
	if (r < 0)
		return r;
	r = xioctl(vm->vm_fd, KVM_GET_IRQCHIP, &st->ioapic);
	if (r < 0)
		return r;
	r = xioctl(vm->vm_fd, KVM_GET_PIT2, &st->pit);
	if (r < 0)
		return r;
	r = xioctl(vm->vm_fd, KVM_GET_CLOCK, &st->clock);
	if (r < 0)
		return r;
	return 0;
}

int vm_load_state(struct vm *vm, const struct vm_state *state)
{
	struct kvm_clock_data clock = { .clock = state->clock.clock };
	int r;

	/*
	 * kvmclock resumes at the checkpoint's value (flags 0): guest time stands still
	 * across the failover gap, as in QEMU's default. KVM_CLOCK_REALTIME would advance
	 * it by the wall time elapsed, but needs realtime/host_tsc from the same clock
	 * source on both hosts; not used yet.
	 */
	r = xioctl(vm->vm_fd, KVM_SET_CLOCK, &clock);
	if (r < 0)
		return r;
	/* Chip ids travel inside the saved structs. */
	r = xioctl(vm->vm_fd, KVM_SET_IRQCHIP, (void *)&state->pic_master);
	if (r < 0)
		return r;
	r = xioctl(vm->vm_fd, KVM_SET_IRQCHIP, (void *)&state->pic_slave);
	if (r < 0)
		return r;
	r = xioctl(vm->vm_fd, KVM_SET_IRQCHIP, (void *)&state->ioapic);
	if (r < 0)
		return r;
	r = xioctl(vm->vm_fd, KVM_SET_PIT2, (void *)&state->pit);
	if (r < 0)
		return r;
	return 0;
}
