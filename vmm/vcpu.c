// SPDX-License-Identifier: MIT
/*
 * vCPUs: creation, the KVM_RUN loop on each vCPU's thread and exit dispatch. The
 * thread parks whenever the owner pauses the VM: pause.c holds that protocol.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "guest/guest_abi.h"
#include "guest/layout.h"
#include "lib/log.h"
#include "vmm/pause.h"
#include "vmm/vcpu.h"
#include "vmm/vm.h"

int vcpu_cpuid(struct vm *vm, unsigned int id, struct kvm_cpuid2 **ret)
{
	struct kvm_cpuid2 *cpuid;
	int nent = 128, r;

	for (;;) {
		cpuid = calloc(1, sizeof(*cpuid) + (size_t)nent * sizeof(struct kvm_cpuid_entry2));
		if (!cpuid)
			return -ENOMEM;
		cpuid->nent = (uint32_t)nent;
		if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, cpuid) == 0)
			break;
		r = -errno;
		free(cpuid);
		if (r != -E2BIG || nent >= 4096)
			return r;
		nent *= 2;
	}
	/*
	 * KVM reports the APIC ID of whichever host CPU ran the ioctl: replace it
	 * with the vCPU's own, so the guest sees consistent IDs and two hosts (or
	 * two runs) present the same CPUID.
	 */
	for (uint32_t i = 0; i < cpuid->nent; i++) {
		struct kvm_cpuid_entry2 *e = &cpuid->entries[i];

		if (e->function == 1)
			e->ebx = (e->ebx & 0x00ffffffu) | (id << 24);
		else if (e->function == 0xb || e->function == 0x1f)
			e->edx = id;
		else if (e->function == 0x8000001e)
			e->eax = id;
	}
	*ret = cpuid;
	return 0;
}

static int vcpu_set_cpuid(struct vcpu *v)
{
	struct kvm_cpuid2 *cpuid;
	int r = vcpu_cpuid(v->vm, v->id, &cpuid);

	if (r < 0)
		return r;
	r = ioctl(v->fd, KVM_SET_CPUID2, cpuid) < 0 ? -errno : 0;
	free(cpuid);
	return r;
}

int vcpu_create(struct vm *vm, unsigned int id, struct vcpu **ret_vcpu)
{
	struct vcpu *v;
	int r;

	v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	v->vm = vm;
	v->id = id;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, id);
	if (v->fd < 0) {
		r = -errno;
		goto fail;
	}
	v->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		v->run = NULL;
		r = -errno;
		goto fail;
	}
	v->saved = aligned_alloc(64, sizeof(*v->saved));
	if (!v->saved) {
		r = -ENOMEM;
		goto fail;
	}
	memset(v->saved, 0, sizeof(*v->saved));
	r = vcpu_set_cpuid(v);
	if (r < 0)
		goto fail;
	r = ioctl(vm->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_SYNC_REGS);
	if (r > 0 && (r & (KVM_SYNC_X86_REGS | KVM_SYNC_X86_EVENTS)) ==
			     (KVM_SYNC_X86_REGS | KVM_SYNC_X86_EVENTS)) {
		/* kvm_dirty_regs stays 0: KVM never loads state from this copy. */
		v->run->kvm_valid_regs = KVM_SYNC_X86_REGS | KVM_SYNC_X86_EVENTS;
		v->sync_regs = true;
	}
	if (vm->dirty->vcpu_init) {
		r = vm->dirty->vcpu_init(vm, v);
		if (r < 0)
			goto fail;
	}
	/*
	 * With the in-kernel irqchip, APs start in INIT_RECEIVED and KVM_RUN would
	 * block until a SIPI: our guests enter every vCPU directly.
	 */
	if (id > 0) {
		struct kvm_mp_state mp = { .mp_state = KVM_MP_STATE_RUNNABLE };

		if (ioctl(v->fd, KVM_SET_MP_STATE, &mp) < 0) {
			r = -errno;
			goto fail;
		}
	}
	*ret_vcpu = v;
	return 0;
fail:
	vcpu_free(v);
	return r;
}

void vcpu_free(struct vcpu *v)
{
	if (!v)
		return;
	if (v->vm->dirty->vcpu_free)
		v->vm->dirty->vcpu_free(v->vm, v);
	if (v->run)
		munmap(v->run, (size_t)v->vm->run_size);
	if (v->fd >= 0)
		close(v->fd);
	free(v->saved);
	free(v);
}

static void vcpu_stop(struct vcpu *v, enum vcpu_status status, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void vcpu_stop(struct vcpu *v, enum vcpu_status status, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(v->fail_reason, sizeof(v->fail_reason), fmt, ap);
	va_end(ap);
	v->status = status;
	vcpu_report(v, VM_EVENT_STOPPED);
}

static const char *const exception_names[GUEST_EXC_VECTORS] = {
	"#DE", "#DB", "NMI", "#BP", "#OF", "#BR", "#UD", "#NM", "#DF", NULL,  "#TS",
	"#NP", "#SS", "#GP", "#PF", NULL,  "#MF", "#AC", "#MC", "#XM", "#VE", "#CP",
};

static const char *walk_verdict(uint64_t walk)
{
	switch (walk) {
	case GUEST_WALK_MAPPED:
		return "mapped by the guest's page tables";
	case GUEST_WALK_ABSENT:
		return "not present in the guest's page tables";
	case GUEST_WALK_DENIED:
		return "mapped without the rights the access needed";
	default:
		return "not walked";
	}
}

/*
 * The built-in guests' exception handler (guest/lib.c) reports through the
 * signal port, with the details on the vCPU's exception page: a spurious page
 * fault it retried (counted and logged: a correct CPU and hypervisor never
 * raise one), or an exception that stops the vCPU, as a crash.
 */
static void vcpu_guest_exception(struct vcpu *v, bool retried)
{
	uint64_t gpa = GUEST_EXC_STACK_GPA + v->id * GUEST_PAGE_SIZE;
	const void *page = vm_gpa_to_hva(v->vm, gpa, sizeof(struct guest_exception_report));
	struct guest_exception_report r;
	const char *name;
	char what[32];

	if (!page) {
		vcpu_stop(v, VCPU_FAILED, "guest exception signal without a report (0x%llx)",
			  (unsigned long long)gpa);
		return;
	}
	memcpy(&r, page, sizeof(r));
	name = r.vector < GUEST_EXC_VECTORS ? exception_names[r.vector] : NULL;
	if (name)
		snprintf(what, sizeof(what), "%s", name);
	else
		snprintf(what, sizeof(what), "vector %llu", (unsigned long long)r.vector);
	if (retried) {
		v->exits.faults_retried++;
		log_warning("vCPU %u: spurious page fault, retried (%llu so far): rip=0x%llx "
			    "address 0x%llx error 0x%llx, %s",
			    v->id, (unsigned long long)r.count, (unsigned long long)r.rip,
			    (unsigned long long)r.cr2, (unsigned long long)r.error,
			    walk_verdict(r.walk));
		return;
	}
	memset(&v->crash_regs, 0, sizeof(v->crash_regs));
	memset(&v->crash_sregs, 0, sizeof(v->crash_sregs));
	v->crash_regs.rip = r.rip;
	v->crash_regs.rsp = r.rsp;
	v->crash_sregs.cr2 = r.cr2;
	v->crash_regs_lost = true;
	if (!(r.cs & 3))
		vcpu_stop(v, VCPU_CRASHED,
			  "guest exception %s (error 0x%llx) inside its exception handler at "
			  "rip=0x%llx",
			  what, (unsigned long long)r.error, (unsigned long long)r.rip);
	else if (r.vector == 14)
		vcpu_stop(v, VCPU_CRASHED,
			  "guest exception #PF (error 0x%llx) at rip=0x%llx rsp=0x%llx: "
			  "address 0x%llx %s%s",
			  (unsigned long long)r.error, (unsigned long long)r.rip,
			  (unsigned long long)r.rsp, (unsigned long long)r.cr2,
			  walk_verdict(r.walk),
			  r.walk == GUEST_WALK_MAPPED ? ", yet the fault came straight back" : "");
	else
		vcpu_stop(v, VCPU_CRASHED,
			  "guest exception %s (error 0x%llx) at rip=0x%llx rsp=0x%llx", what,
			  (unsigned long long)r.error, (unsigned long long)r.rip,
			  (unsigned long long)r.rsp);
}

static void vcpu_io(struct vcpu *v)
{
	struct vm *vm = v->vm;
	struct kvm_run *run = v->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	uint16_t port = run->io.port;
	int is_write = run->io.direction == KVM_EXIT_IO_OUT;

	v->exits.io++;
	if (port == GUEST_PORT_SIGNAL && is_write) {
		uint32_t value = 0;

		memcpy(&value, data, run->io.size < 4 ? run->io.size : 4);
		if (value == GUEST_SIGNAL_PANIC)
			vcpu_stop(v, VCPU_FAILED, "guest panic signal");
		else if (value == GUEST_SIGNAL_EXCEPTION || value == GUEST_SIGNAL_FAULT_RETRIED)
			vcpu_guest_exception(v, value == GUEST_SIGNAL_FAULT_RETRIED);
		else if (vm->signal_fn)
			vm->signal_fn(vm->signal_opaque, v->id, value);
		return;
	}
	for (unsigned int i = 0; i < vm->nr_devices; i++) {
		struct device *d = vm->devices[i];

		if (port >= d->port_base && port < d->port_base + d->port_len) {
			d->ops->io(d, port, is_write, data, run->io.size, run->io.count);
			return;
		}
	}
	/* No device: reads float high, writes vanish, as on a real bus. */
	if (!is_write)
		memset(data, 0xff, (size_t)run->io.size * run->io.count);
}

static void vcpu_mmio(struct vcpu *v)
{
	struct vm *vm = v->vm;
	struct kvm_run *run = v->run;
	uint64_t gpa = run->mmio.phys_addr;
	uint32_t len = run->mmio.len;

	v->exits.other++;
	for (unsigned int i = 0; len <= sizeof(run->mmio.data) && i < vm->nr_devices; i++) {
		struct device *d = vm->devices[i];

		if (d->mmio_len && gpa >= d->mmio_base && gpa - d->mmio_base < d->mmio_len &&
		    len <= d->mmio_len - (gpa - d->mmio_base)) {
			d->ops->mmio(d, gpa, run->mmio.is_write, run->mmio.data, len);
			return;
		}
	}
	/* Unclaimed: reads return all ones, writes are dropped. */
	if (!run->mmio.is_write)
		memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
}

/*
 * On AMD SVM, KVM reinitialises the VMCB at a shutdown intercept (its state is
 * undefined after one) and resets the vCPU before KVM_RUN returns: what
 * KVM_GET_REGS then reads is the reset state, not the faulting instruction's.
 * Our machines have no firmware at the reset vector, so a guest is only ever
 * there through that reset.
 */
static bool vcpu_is_reset_state(const struct kvm_regs *regs, const struct kvm_sregs *sregs)
{
	return regs->rip == 0xfff0 && sregs->cs.selector == 0xf000 &&
	       sregs->cs.base == 0xffff0000ULL;
}

static void vcpu_crash(struct vcpu *v)
{
	ioctl(v->fd, KVM_GET_REGS, &v->crash_regs);
	ioctl(v->fd, KVM_GET_SREGS, &v->crash_sregs);
	v->crash_regs_lost = vcpu_is_reset_state(&v->crash_regs, &v->crash_sregs);
	if (v->crash_regs_lost)
		vcpu_stop(v, VCPU_CRASHED,
			  "triple fault (KVM_EXIT_SHUTDOWN); registers unknown: "
			  "KVM reset the vCPU at the shutdown (as on AMD SVM)");
	else
		vcpu_stop(v, VCPU_CRASHED,
			  "triple fault (KVM_EXIT_SHUTDOWN) at rip=0x%llx rsp=0x%llx cr2=0x%llx",
			  (unsigned long long)v->crash_regs.rip,
			  (unsigned long long)v->crash_regs.rsp,
			  (unsigned long long)v->crash_sregs.cr2);
}

static unsigned long long vcpu_rip(struct vcpu *v)
{
	struct kvm_regs regs;

	if (v->run_state_fresh)
		return v->run->s.regs.regs.rip;
	return ioctl(v->fd, KVM_GET_REGS, &regs) == 0 ? regs.rip : 0;
}

/* The instruction at the guest's RIP, from the exit or from guest memory. */
static int vcpu_insn_byte(struct vcpu *v, const struct kvm_regs *regs, uint8_t *ret)
{
	struct kvm_run *run = v->run;
	struct kvm_translation tr = { .linear_address = regs->rip };
	const uint8_t *p;

	if (run->emulation_failure.ndata >= 3 &&
	    (run->emulation_failure.flags & KVM_INTERNAL_ERROR_EMULATION_FLAG_INSTRUCTION_BYTES) &&
	    run->emulation_failure.insn_size >= 1) {
		*ret = run->emulation_failure.insn_bytes[0];
		return 0;
	}
	if (ioctl(v->fd, KVM_TRANSLATE, &tr) < 0)
		return -errno;
	if (!tr.valid)
		return -EFAULT;
	p = vm_gpa_to_hva(v->vm, tr.physical_address, 1);
	if (!p)
		return -EFAULT;
	*ret = *p;
	return 0;
}

/*
 * Instructions this host's emulator fails on, done here instead (kvm_pvm emulates
 * all CPL-0 code and has no case for these; ordinary VMX/SVM never exits for them,
 * so this never runs there):
 * - int3 at CPL 0 (Linux executes one in its boot self-test and while patching
 *   code): skip it and inject #BP, a trap, so the handler sees RIP after the int3
 *   exactly as if the CPU had executed it;
 * - fwait (0x9b) with no x87 exception pending: a no-op.
 * Returns true if the vCPU can go on.
 */
static bool vcpu_emulation_fallback(struct vcpu *v)
{
	struct kvm_vcpu_events ev;
	struct kvm_sregs sregs;
	struct kvm_regs regs;
	uint8_t insn = 0;

	if (v->run->internal.suberror != KVM_INTERNAL_ERROR_EMULATION ||
	    ioctl(v->fd, KVM_GET_REGS, &regs) < 0 || ioctl(v->fd, KVM_GET_SREGS, &sregs) < 0 ||
	    vcpu_insn_byte(v, &regs, &insn) < 0)
		return false;
	v->run_state_fresh = false; /* KVM_RUN's copy of the registers is about to be stale */
	if (insn == 0xcc && (sregs.cs.selector & 3) == 0) {
		if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) < 0 || ev.exception.injected ||
		    ev.exception.pending)
			return false;
		regs.rip++;
		ev.exception.injected = 1;
		ev.exception.nr = 3; /* #BP */
		ev.exception.has_error_code = 0;
		ev.flags = 0;
		if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0 ||
		    ioctl(v->fd, KVM_SET_VCPU_EVENTS, &ev) < 0)
			return false;
		v->exits.int3_fallback++;
		vm_notice_once(v->vm, VM_NOTICE_INT3,
			       "the host could not emulate a kernel int3: injecting #BP "
			       "(instruction fallback)");
		return true;
	}
	if (insn == 0x9b) {
		regs.rip++;
		if (ioctl(v->fd, KVM_SET_REGS, &regs) < 0)
			return false;
		v->exits.fwait_fallback++;
		vm_notice_once(v->vm, VM_NOTICE_FWAIT,
			       "the host could not emulate fwait: skipping it (instruction "
			       "fallback)");
		return true;
	}
	return false;
}

enum exit_action {
	EXIT_CONTINUE,
	EXIT_PARK, /* wait for the owner (full dirty ring) */
	EXIT_STOP, /* the vCPU cannot go on */
};

static enum exit_action vcpu_handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		vcpu_io(v);
		return v->status == VCPU_RUNNING ? EXIT_CONTINUE : EXIT_STOP;
	case KVM_EXIT_MMIO:
		vcpu_mmio(v);
		return EXIT_CONTINUE;
	case KVM_EXIT_DIRTY_RING_FULL:
		/* Not an error: park until the owner harvested and reset the rings. */
		v->exits.ring_full++;
		vcpu_report(v, VM_EVENT_RING_FULL);
		return EXIT_PARK;
	case KVM_EXIT_INTR:
		v->exits.intr++;
		return EXIT_CONTINUE;
	case KVM_EXIT_SHUTDOWN:
		vcpu_crash(v);
		return EXIT_STOP;
	case KVM_EXIT_HLT:
		vcpu_stop(v, VCPU_FAILED, "guest halted");
		return EXIT_STOP;
	case KVM_EXIT_FAIL_ENTRY:
		vcpu_stop(v, VCPU_FAILED, "entry failed, hardware reason 0x%llx",
			  (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return EXIT_STOP;
	case KVM_EXIT_INTERNAL_ERROR:
		if (vcpu_emulation_fallback(v))
			return EXIT_CONTINUE;
		vcpu_stop(v, VCPU_FAILED, "KVM internal error, suberror %u at rip=0x%llx",
			  run->internal.suberror, (unsigned long long)vcpu_rip(v));
		return EXIT_STOP;
	default:
		vcpu_stop(v, VCPU_FAILED, "unhandled exit reason %u", run->exit_reason);
		return EXIT_STOP;
	}
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	char name[16];

	vcpu_unblock_kick();
	snprintf(name, sizeof(name), "vcpu%u", v->id);
	pthread_setname_np(pthread_self(), name);
	for (;;) {
		int run = ioctl(v->fd, KVM_RUN, 0);

		/* Every return, EINTR included, stored the synced registers. */
		v->run_state_fresh = v->sync_regs;
		if (run < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				if (vcpu_park(v, false))
					break;
				continue;
			}
			vcpu_stop(v, VCPU_FAILED, "KVM_RUN failed: %s", strerror(errno));
			break;
		}
		switch (vcpu_handle_exit(v)) {
		case EXIT_CONTINUE:
			continue;
		case EXIT_PARK:
			if (vcpu_park(v, false))
				return NULL;
			continue;
		case EXIT_STOP:
			break;
		}
		break;
	}
	/* Stopped for good: keep acknowledging pauses until the VM goes away. */
	vcpu_park(v, true);
	return NULL;
}

int vcpu_start(struct vcpu *v, const pthread_attr_t *attr)
{
	int r = pthread_create(&v->thread, attr, vcpu_thread, v);

	if (r)
		return -r;
	v->thread_started = true;
	return 0;
}
