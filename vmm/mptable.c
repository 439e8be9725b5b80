// SPDX-License-Identifier: MIT
/*
 * MP table (Intel MultiProcessor Specification 1.4), the layout Linux's
 * mpparse.c reads when there is no ACPI.
 *
 * Interrupt routing follows KVM's in-kernel irqchip as ringft leaves it: the VMM
 * never calls KVM_SET_GSI_ROUTING, so KVM's default routing applies
 * (kvm_setup_default_irq_routing()): GSI i drives I/O APIC pin i for i < 24 and
 * PIC input i for i < 16, and the in-kernel PIT raises GSI 0. The PIT therefore
 * arrives at pin 0, not at pin 2 as on PC chipsets (QEMU installs its own
 * routing, GSI 0 -> pin 2, and says so with an override; Firecracker keeps KVM's
 * default and maps ISA IRQ i to pin i, as done here). Telling the guest "IRQ 0 ->
 * pin 2" would leave its timer on a pin nothing raises.
 */
#include <errno.h>
#include <string.h>

#include "vmm/mptable.h"

#define MP_PROCESSOR 0
#define MP_BUS	     1
#define MP_IOAPIC    2
#define MP_INTSRC    3
#define MP_LINTSRC   4

#define MP_INT	  0 /* vectored interrupt through the I/O APIC */
#define MP_NMI	  1
#define MP_EXTINT 3 /* 8259-compatible (the PIC) */

#define CPU_ENABLED	   1
#define CPU_BOOTPROCESSOR  2
#define CPU_SIGNATURE	   0x600 /* family 6; the kernel takes the real one from CPUID */
#define CPU_FEATURE_FPU	   (1U << 0)
#define CPU_FEATURE_APIC   (1U << 9)
#define MPC_APIC_USABLE	   1
#define MP_ISA_BUS	   0
#define MP_LAPIC_ALL	   0xff
#define MP_IRQ_BUS_DEFAULT 0 /* polarity and trigger as the bus says: ISA is edge, high */

struct mpf_intel {
	char signature[4]; /* "_MP_" */
	uint32_t physptr;  /* configuration table */
	uint8_t length;	   /* in 16-byte units */
	uint8_t specification;
	uint8_t checksum;
	uint8_t feature[5]; /* feature[0] == 0: a configuration table is present */
} __attribute__((packed));

struct mpc_table {
	char signature[4]; /* "PCMP" */
	uint16_t length;   /* base table, header included */
	uint8_t spec;
	uint8_t checksum;
	char oem[8];
	char productid[12];
	uint32_t oemptr;
	uint16_t oemsize;
	uint16_t oemcount; /* number of entries */
	uint32_t lapic;
	uint16_t ext_length;
	uint8_t ext_checksum;
	uint8_t reserved;
} __attribute__((packed));

struct mpc_cpu {
	uint8_t type, apicid, apicver, cpuflag;
	uint32_t cpufeature, featureflag;
	uint32_t reserved[2];
} __attribute__((packed));

struct mpc_bus {
	uint8_t type, busid;
	char bustype[6];
} __attribute__((packed));

struct mpc_ioapic {
	uint8_t type, apicid, apicver, flags;
	uint32_t apicaddr;
} __attribute__((packed));

/* An I/O interrupt (MP_INTSRC) or local interrupt (MP_LINTSRC) assignment. */
struct mpc_irq {
	uint8_t type, irqtype;
	uint16_t irqflag;
	uint8_t srcbus, srcbusirq, dstapic, dstpin;
} __attribute__((packed));

_Static_assert(sizeof(struct mpf_intel) == 16, "MP floating pointer");
_Static_assert(sizeof(struct mpc_table) == 44, "MP configuration table header");
_Static_assert(sizeof(struct mpc_cpu) == 20, "MP processor entry");
_Static_assert(sizeof(struct mpc_bus) == 8 && sizeof(struct mpc_ioapic) == 8 &&
		       sizeof(struct mpc_irq) == 8,
	       "MP 8-byte entries");

size_t mptable_size(unsigned int nr_cpus)
{
	return sizeof(struct mpf_intel) + sizeof(struct mpc_table) +
	       nr_cpus * sizeof(struct mpc_cpu) + sizeof(struct mpc_bus) +
	       sizeof(struct mpc_ioapic) + (MPTABLE_ISA_IRQS + 2) * sizeof(struct mpc_irq);
}

/* The byte that makes the sum of [p, p + len) zero. */
static uint8_t mp_checksum(const uint8_t *p, size_t len)
{
	uint8_t sum = 0;

	while (len--)
		sum += *p++;
	return (uint8_t)-sum;
}

int mptable_build(unsigned int nr_cpus, uint64_t gpa, void *buf, size_t len)
{
	size_t size = mptable_size(nr_cpus);
	uint8_t *out = buf, *p;
	struct mpf_intel *mpf = buf;
	struct mpc_table *mpc;
	uint8_t ioapic_id = (uint8_t)nr_cpus;
	unsigned int entries = 0;

	if (nr_cpus < 1 || nr_cpus > MPTABLE_MAX_CPUS || gpa + size > (1ULL << 32))
		return -EINVAL;
	if (len < size)
		return -ENOSPC;
	memset(out, 0, size);
	mpc = (struct mpc_table *)(out + sizeof(*mpf));
	p = out + sizeof(*mpf) + sizeof(*mpc);

	for (unsigned int i = 0; i < nr_cpus; i++, entries++) {
		struct mpc_cpu cpu = {
			.type = MP_PROCESSOR,
			.apicid = (uint8_t)i,
			.apicver = MPTABLE_LAPIC_VER,
			.cpuflag = CPU_ENABLED | (i == 0 ? CPU_BOOTPROCESSOR : 0),
			.cpufeature = CPU_SIGNATURE,
			.featureflag = CPU_FEATURE_FPU | CPU_FEATURE_APIC,
		};

		memcpy(p, &cpu, sizeof(cpu));
		p += sizeof(cpu);
	}
	{
		struct mpc_bus bus = { .type = MP_BUS, .busid = MP_ISA_BUS };

		memcpy(bus.bustype, "ISA   ", sizeof(bus.bustype));
		memcpy(p, &bus, sizeof(bus));
		p += sizeof(bus);
		entries++;
	}
	{
		struct mpc_ioapic io = {
			.type = MP_IOAPIC,
			.apicid = ioapic_id,
			.apicver = MPTABLE_IOAPIC_VER,
			.flags = MPC_APIC_USABLE,
			.apicaddr = MPTABLE_IOAPIC_GPA,
		};

		memcpy(p, &io, sizeof(io));
		p += sizeof(io);
		entries++;
	}
	/* ISA IRQ i -> pin i: KVM's default GSI routing (see the head of this file). */
	for (unsigned int i = 0; i < MPTABLE_ISA_IRQS; i++, entries++) {
		struct mpc_irq irq = {
			.type = MP_INTSRC,
			.irqtype = MP_INT,
			.irqflag = MP_IRQ_BUS_DEFAULT,
			.srcbus = MP_ISA_BUS,
			.srcbusirq = (uint8_t)i,
			.dstapic = ioapic_id,
			.dstpin = (uint8_t)i,
		};

		memcpy(p, &irq, sizeof(irq));
		p += sizeof(irq);
	}
	/* As firmware wires a PC: the PIC on LINT0, NMI on LINT1, of every local APIC. */
	for (unsigned int lint = 0; lint < 2; lint++, entries++) {
		struct mpc_irq irq = {
			.type = MP_LINTSRC,
			.irqtype = lint ? MP_NMI : MP_EXTINT,
			.irqflag = MP_IRQ_BUS_DEFAULT,
			.srcbus = MP_ISA_BUS,
			.dstapic = MP_LAPIC_ALL,
			.dstpin = (uint8_t)lint,
		};

		memcpy(p, &irq, sizeof(irq));
		p += sizeof(irq);
	}

	memcpy(mpc->signature, "PCMP", 4);
	mpc->length = (uint16_t)(p - (uint8_t *)mpc);
	mpc->spec = 4;
	memcpy(mpc->oem, "RINGFT  ", sizeof(mpc->oem));
	memcpy(mpc->productid, "VMM         ", sizeof(mpc->productid));
	mpc->oemcount = (uint16_t)entries;
	mpc->lapic = MPTABLE_LAPIC_GPA;
	mpc->checksum = mp_checksum((const uint8_t *)mpc, mpc->length);

	memcpy(mpf->signature, "_MP_", 4);
	mpf->physptr = (uint32_t)(gpa + sizeof(*mpf));
	mpf->length = 1;
	mpf->specification = 4;
	mpf->checksum = mp_checksum(out, sizeof(*mpf));
	return (int)size;
}
