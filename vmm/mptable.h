/* SPDX-License-Identifier: MIT */
/*
 * The Intel MultiProcessor Specification 1.4 table that tells a guest kernel
 * without ACPI (Linux: arch/x86/kernel/mpparse.c) its CPUs, its I/O APIC and how
 * the ISA interrupts reach it. A pure function: the caller writes the bytes
 * into guest memory at the address it passed.
 */
#ifndef RINGFT_VMM_MPTABLE_H
#define RINGFT_VMM_MPTABLE_H

#include <stddef.h>
#include <stdint.h>

#define MPTABLE_LAPIC_GPA  0xfee00000U
#define MPTABLE_IOAPIC_GPA 0xfec00000U
#define MPTABLE_IOAPIC_VER 0x11 /* KVM's in-kernel IOAPIC reports version 0x11 */
#define MPTABLE_LAPIC_VER  0x14
#define MPTABLE_ISA_IRQS   16
#define MPTABLE_MAX_CPUS   254 /* APIC IDs 0..n-1; the IOAPIC takes ID n */

/*
 * Bytes the table takes for nr_cpus CPUs: the 16-byte floating pointer, then
 * the configuration table right after it.
 */
size_t mptable_size(unsigned int nr_cpus);

/*
 * Writes the floating pointer ("_MP_") and the configuration table ("PCMP")
 * into buf, for guest-physical address gpa (the pointer holds the table's
 * absolute address): one enabled processor per CPU with APIC ID 0..nr_cpus-1
 * (0 the bootstrap processor), one ISA bus (ID 0), one I/O APIC (ID nr_cpus,
 * at MPTABLE_IOAPIC_GPA), ISA IRQ i -> I/O APIC pin i for i = 0..15, and LINT0 =
 * ExtINT, LINT1 = NMI on every local APIC. Returns the number of bytes written,
 * -EINVAL for nr_cpus outside 1..MPTABLE_MAX_CPUS or a gpa above 4 GiB, or
 * -ENOSPC when len is smaller than mptable_size().
 */
int mptable_build(unsigned int nr_cpus, uint64_t gpa, void *buf, size_t len);

#endif
