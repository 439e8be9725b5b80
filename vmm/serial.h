/* SPDX-License-Identifier: MIT */
/* A 16550A UART (8250 family) at COM1, transmit side wired to a console sink. */
#ifndef RINGFT_VMM_SERIAL_H
#define RINGFT_VMM_SERIAL_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/device.h"

/*
 * Receives every byte the guest transmits, in order, from whichever vCPU thread
 * wrote it. A whole `rep outsb` arrives in one call. The owner decides where the
 * bytes go (a file, stdout, an output-commit buffer).
 */
typedef void (*serial_sink_fn)(void *opaque, const uint8_t *buf, size_t len);

int serial_new(uint16_t port_base, serial_sink_fn sink, void *opaque, struct device **ret_dev);

/*
 * Wires the UART's interrupt to GSI `irq` of `vm` (4 for COM1): the line is high
 * while IIR reports a pending interrupt. Without it no line is driven.
 */
struct vm;
void serial_set_irq(struct device *dev, struct vm *vm, unsigned int irq);

#endif
