// SPDX-License-Identifier: MIT
/*
 * State round trip: run builtin:bank, pause, save every vCPU, the VM-wide state
 * and the devices, copy RAM into a fresh VM, load the state there and run it, for
 * several hops in a row (VM 1 -> VM 2 -> ...), with both tracking backends.
 *
 * The console a reader sees is VM 1's bytes followed by VM 2's and so on: a line
 * cut by the pause continues byte for byte in the next VM. Across that whole
 * stream every bank line says ok and each vCPU's iter goes up by exactly one, so
 * nothing was lost or repeated, and every new VM adds lines of its own.
 *
 * Every VM also has a virtio-net device (no TAP: the bank guest does not use
 * it), which the test drives like a guest's driver through its registers before
 * the first hop, so that its state (features, status, queue addresses and
 * sizes, the MAC) is not a fresh device's and must travel through every hop.
 */
#include <string.h>
#include <sys/ioctl.h>

#include "tests/kvm_helpers.h"
#include "vmm/loader.h"
#include "vmm/machine.h"
#include "vmm/vcpu.h"
#include "vmm/virtio_mmio.h"
#include "vmm/virtio_net.h"

#define HOPS 4

/* The stream so far: consoles of the finished VMs plus the running one's. */
static void parse_stream(const char *done, struct t_console *live, unsigned int vcpus,
			 struct t_bank *b)
{
	char *text = strdup(done);

	CHECK(text, "out of memory");
	t_console_append_raw(live, &text);
	t_bank_parse(text, vcpus, b);
	if (b->bad)
		fprintf(stderr, "console stream:\n%s\n", text);
	free(text);
	CHECK(!b->bad, "%s", b->first_bad);
}

static void wait_progress(const char *done, struct t_console *live, unsigned int vcpus,
			  const uint64_t *before, struct t_bank *b)
{
	uint64_t deadline = t_now_ns() + 20000000000ULL;

	for (;;) {
		bool enough = true;

		parse_stream(done, live, vcpus, b);
		for (unsigned int i = 0; i < vcpus; i++)
			enough &= b->lines[i] >= before[i] + 5;
		if (enough)
			return;
		CHECK(t_now_ns() < deadline, "the guest printed no new bank lines");
		t_sleep_ms(5);
	}
}

#define SAME(field, what)                                                                          \
	CHECK(!memcmp(&a->field, &b->field, sizeof(a->field)), "hop %u: %s differs", hop, what)

/*
 * A guest that runs on after a load proves little about state it does not use
 * (the bank guest runs with interrupts off), so compare what was loaded with
 * what the new VM reports. Legitimately different: the TSC (not loaded, it
 * follows the host), the APIC timer's current count (it counts down), and the
 * PIT's and kvmclock's time stamps.
 */
static void compare_state(const struct machine_state *a, const struct machine_state *b,
			  unsigned int hop)
{
	CHECK(a->nr_vcpus == b->nr_vcpus && a->nr_devices == b->nr_devices, "hop %u: shape", hop);
	for (unsigned int i = 0; i < a->nr_vcpus; i++) {
		const struct vcpu_state *x = &a->vcpu[i], *y = &b->vcpu[i];
		struct kvm_lapic_state lx = x->lapic, ly = y->lapic;

		SAME(vcpu[i].regs, "regs");
		SAME(vcpu[i].sregs, "sregs");
		SAME(vcpu[i].sregs2, "sregs2");
		SAME(vcpu[i].xcrs, "xcrs");
		SAME(vcpu[i].events, "vcpu events");
		SAME(vcpu[i].mp_state, "mp_state");
		SAME(vcpu[i].debugregs, "debugregs");
		CHECK(x->xsave_size == y->xsave_size && !memcmp(x->xsave, y->xsave, x->xsave_size),
		      "hop %u: vCPU %u xsave differs", hop, i);
		memset(lx.regs + 0x390, 0, 4); /* APIC timer current count */
		memset(ly.regs + 0x390, 0, 4);
		CHECK(!memcmp(&lx, &ly, sizeof(lx)), "hop %u: vCPU %u LAPIC differs", hop, i);
		CHECK(x->nr_msrs == y->nr_msrs && x->nr_msrs > 0, "hop %u: MSR count", hop);
		for (uint32_t m = 0; m < x->nr_msrs; m++) {
			CHECK(x->msrs[m].index == y->msrs[m].index, "hop %u: MSR order", hop);
			if (x->msrs[m].index == 0x10) /* IA32_TSC */
				continue;
			CHECK(x->msrs[m].data == y->msrs[m].data,
			      "hop %u: vCPU %u MSR 0x%x: saved 0x%llx, loaded 0x%llx", hop, i,
			      x->msrs[m].index, (unsigned long long)x->msrs[m].data,
			      (unsigned long long)y->msrs[m].data);
		}
	}
	SAME(vm.pic_master, "PIC master");
	SAME(vm.pic_slave, "PIC slave");
	SAME(vm.ioapic, "IOAPIC");
	for (unsigned int i = 0; i < a->nr_devices; i++)
		SAME(dev[i], "device state");
}

/*
 * Give the source VM state that differs from a fresh VM's but that the bank
 * guest (interrupts off, no debug registers, no rdtscp) does not notice, so a
 * load that skipped it shows in compare_state(). VM paused.
 */
static struct device *net_device(struct vm *vm)
{
	for (unsigned int i = 0; i < vm->nr_devices; i++)
		if (vm->devices[i]->mmio_len)
			return vm->devices[i];
	CHECK(0, "the VM has no virtio-net device");
	return NULL;
}

static void mmio_write(struct device *d, uint64_t reg, uint32_t v)
{
	d->ops->mmio(d, d->mmio_base + reg, 1, (uint8_t *)&v, sizeof(v));
}

static uint32_t mmio_read(struct device *d, uint64_t reg)
{
	uint32_t v = 0;

	d->ops->mmio(d, d->mmio_base + reg, 0, (uint8_t *)&v, sizeof(v));
	return v;
}

static void add_net(struct vm *vm)
{
	struct virtio_net_config cfg = { .tap = "unused0", .mac = { 2, 0, 0, 0x12, 0x34, 0x56 } };
	struct virtio_net *net;

	CHECK_OK(virtio_net_create(vm, GUEST_VIRTIO_SLOT_NET, &cfg, &net));
}

/* A driver's set-up of both queues (virtio 1.2, 3.1.1), rings high in RAM. */
static void drive_net(struct vm *vm)
{
	struct device *d = net_device(vm);

	CHECK(mmio_read(d, VIRTIO_MMIO_MAGIC_VALUE) == VIRTIO_MMIO_MAGIC, "magic");
	mmio_write(d, VIRTIO_MMIO_STATUS, VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER);
	mmio_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 1);
	mmio_write(d, VIRTIO_MMIO_DRIVER_FEATURES, 1); /* VIRTIO_F_VERSION_1 */
	mmio_write(d, VIRTIO_MMIO_DRIVER_FEATURES_SEL, 0);
	mmio_write(d, VIRTIO_MMIO_DRIVER_FEATURES, 1u << 5); /* VIRTIO_NET_F_MAC */
	mmio_write(d, VIRTIO_MMIO_STATUS,
		   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK);
	CHECK(mmio_read(d, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_FEATURES_OK, "FEATURES_OK");
	for (uint32_t q = 0; q < 2; q++) {
		uint64_t base = (96ULL << 20) + q * 0x10000;

		mmio_write(d, VIRTIO_MMIO_QUEUE_SEL, q);
		mmio_write(d, VIRTIO_MMIO_QUEUE_NUM, 64 >> q);
		mmio_write(d, VIRTIO_MMIO_QUEUE_DESC_LOW, (uint32_t)base);
		mmio_write(d, VIRTIO_MMIO_QUEUE_AVAIL_LOW, (uint32_t)base + 0x1000);
		mmio_write(d, VIRTIO_MMIO_QUEUE_USED_LOW, (uint32_t)base + 0x2000);
		mmio_write(d, VIRTIO_MMIO_QUEUE_READY, 1);
	}
	mmio_write(d, VIRTIO_MMIO_STATUS,
		   VIRTIO_STATUS_ACKNOWLEDGE | VIRTIO_STATUS_DRIVER | VIRTIO_STATUS_FEATURES_OK |
			   VIRTIO_STATUS_DRIVER_OK);
}

/* What the loaded device answers, register by register, against the original. */
static void compare_net(struct vm *a, struct vm *b, unsigned int hop)
{
	static const uint64_t regs[] = { VIRTIO_MMIO_STATUS,	      VIRTIO_MMIO_QUEUE_NUM,
					 VIRTIO_MMIO_QUEUE_READY,     VIRTIO_MMIO_QUEUE_DESC_LOW,
					 VIRTIO_MMIO_QUEUE_AVAIL_LOW, VIRTIO_MMIO_QUEUE_USED_LOW,
					 VIRTIO_MMIO_CONFIG,	      VIRTIO_MMIO_CONFIG + 4 };
	struct device *da = net_device(a), *db = net_device(b);

	for (uint32_t q = 0; q < 2; q++) {
		mmio_write(da, VIRTIO_MMIO_QUEUE_SEL, q);
		mmio_write(db, VIRTIO_MMIO_QUEUE_SEL, q);
		for (size_t i = 0; i < sizeof(regs) / sizeof(regs[0]); i++)
			CHECK(mmio_read(da, regs[i]) == mmio_read(db, regs[i]),
			      "hop %u: virtio-net register 0x%llx of queue %u differs", hop,
			      (unsigned long long)regs[i], q);
	}
	CHECK(mmio_read(db, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DRIVER_OK,
	      "hop %u: the loaded device forgot DRIVER_OK", hop);
}

static void perturb(struct vm *vm)
{
	struct kvm_irqchip pic = { .chip_id = KVM_IRQCHIP_PIC_MASTER };

	for (unsigned int i = 0; i < vm->nr_vcpus; i++) {
		int fd = vm->vcpus[i]->fd;
		struct kvm_debugregs dbg;
		struct kvm_lapic_state lapic;
		struct {
			struct kvm_msrs hdr;
			struct kvm_msr_entry e;
		} msr = { .hdr.nmsrs = 1, .e = { .index = 0xc0000103, .data = 0x77 + i } };

		CHECK(!ioctl(fd, KVM_GET_DEBUGREGS, &dbg), "GET_DEBUGREGS");
		dbg.db[0] = 0x10000 * (i + 1);
		CHECK(!ioctl(fd, KVM_SET_DEBUGREGS, &dbg), "SET_DEBUGREGS");
		CHECK(!ioctl(fd, KVM_GET_LAPIC, &lapic), "GET_LAPIC");
		lapic.regs[0x3e0] = 0x0b; /* timer divide configuration: divide by 1 */
		CHECK(!ioctl(fd, KVM_SET_LAPIC, &lapic), "SET_LAPIC");
		CHECK(ioctl(fd, KVM_SET_MSRS, &msr) == 1, "SET_MSRS TSC_AUX");
	}
	CHECK(!ioctl(vm->vm_fd, KVM_GET_IRQCHIP, &pic), "GET_IRQCHIP");
	pic.chip.pic.imr = 0xfa;
	CHECK(!ioctl(vm->vm_fd, KVM_SET_IRQCHIP, &pic), "SET_IRQCHIP");
}

static void round_trip(enum dirty_mode mode, unsigned int vcpus)
{
	struct vm_config cfg = { .mem_size = 128ULL << 20, .nr_vcpus = vcpus, .tracking = mode };
	struct machine_state *ms = calloc(1, sizeof(*ms)), *back = calloc(1, sizeof(*back));
	struct t_console console[HOPS + 1];
	uint64_t before[GUEST_MAX_VCPUS] = { 0 };
	char *done = strdup("");
	struct guest_params gp;
	struct t_bank b;
	struct vm *vm;

	CHECK(ms && back && done, "out of memory");
	loader_default_params(&gp);
	gp.bank_check_ms = 2;
	t_console_init(&console[0]);
	vm = t_vm_new(&cfg, "builtin:bank", &gp, &console[0]);
	add_net(vm);
	CHECK_OK(vm_start(vm));
	wait_progress(done, &console[0], vcpus, before, &b);

	for (unsigned int hop = 1; hop <= HOPS; hop++) {
		struct vm *fresh;

		if (hop == 1) {
			/* The state then travels through every later hop. */
			CHECK_OK(vm_pause(vm, 0, NULL));
			perturb(vm);
			drive_net(vm);
		}
		CHECK_OK(vm_pause(vm, VM_PAUSE_SAVE_STATE, NULL));
		CHECK_OK(machine_save_vm(vm, ms));
		machine_collect_vcpus(vm, ms);
		/* Paused: this VM's console is final. */
		parse_stream(done, &console[hop - 1], vcpus, &b);
		t_console_append_raw(&console[hop - 1], &done);
		memcpy(before, b.lines, sizeof(before));

		/* A fresh VM built like the first, no guest loaded: memory and state move. */
		t_console_init(&console[hop]);
		fresh = t_vm_new(&cfg, NULL, NULL, &console[hop]);
		add_net(fresh);
		memcpy(fresh->mem, vm->mem, vm->mem_size);
		CHECK_OK(machine_load(fresh, ms));
		/* Everything loaded reads back as saved, before the new VM runs. */
		CHECK_OK(vm_pause(fresh, VM_PAUSE_SAVE_STATE, NULL));
		CHECK_OK(machine_save_vm(fresh, back));
		machine_collect_vcpus(fresh, back);
		compare_state(ms, back, hop);
		compare_net(vm, fresh, hop);
		vm_free(vm);
		vm = fresh;
		CHECK_OK(vm_start(vm));
		wait_progress(done, &console[hop], vcpus, before, &b);
		printf("ok: %s, %u vCPU(s), hop %u: bank went on from iter", dirty_mode_name(mode),
		       vcpus, hop);
		for (unsigned int i = 0; i < vcpus; i++)
			printf(" %llu", (unsigned long long)before[i]);
		printf(", all ok, none lost or repeated\n");
	}
	vm_free(vm);
	for (unsigned int i = 0; i <= HOPS; i++)
		t_console_free(&console[i]);
	free(done);
	free(back);
	free(ms);
}

int main(void)
{
	t_require_kvm();
	round_trip(DIRTY_RING, 2);
	round_trip(DIRTY_BITMAP, 2);
	round_trip(DIRTY_RING, 1);
	round_trip(DIRTY_RING, 4);
	return T_EXIT_PASS;
}
