/* SPDX-License-Identifier: MIT */
/*
 * A 16550A UART, transmit side only: the transmitter is always ready (every byte
 * written to THR goes to the sink at once), nothing is ever received.
 *
 * IIR reports a THR-empty interrupt when IER enables it, with the 8250 rules
 * (pending after THR is written or ETBEI is set, cleared by reading IIR). With an
 * IRQ line (serial_set_irq) the line follows IIR: high while an interrupt is
 * pending, through KVM_IRQ_LINE to the in-kernel PIC and IOAPIC. Linux needs it:
 * its 8250 driver writes userspace's console output from the THR-empty interrupt.
 * The built-in guests run with IF=0 and poll LSR, so for them the line is inert.
 *
 * Threads: io() runs on any vCPU thread, save/load/reset on the owner while the
 * vCPUs are parked. One mutex covers the registers and the sink call, so bytes from
 * several vCPUs reach the sink whole per io() call and in the order they were
 * written. The sink must not call back into the device.
 */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "vmm/serial.h"
#include "vmm/vm.h"

#define SERIAL_NR_PORTS 8

/* Register offsets (DLAB selects DLL/DLM at 0/1). */
#define REG_RBR_THR 0
#define REG_IER	    1
#define REG_IIR_FCR 2
#define REG_LCR	    3
#define REG_MCR	    4
#define REG_LSR	    5
#define REG_MSR	    6
#define REG_SCR	    7

#define IER_ETBEI	 0x02 /* THR-empty interrupt enable */
#define IER_MASK	 0x0f
#define IIR_NO_INT	 0x01
#define IIR_THRI	 0x02
#define IIR_FIFO_ENABLED 0xc0
#define FCR_FIFO_ENABLE	 0x01
#define FCR_CLEAR_MASK	 0x06 /* clear RX/TX FIFO: self-clearing, not stored */
#define LCR_DLAB	 0x80
#define MCR_MASK	 0x1f
#define MCR_LOOP	 0x10
#define LSR_THRE	 0x20
#define LSR_TEMT	 0x40
#define MSR_CTS		 0x10
#define MSR_DSR		 0x20
#define MSR_RI		 0x40
#define MSR_DCD		 0x80

#define SERIAL_STATE_VERSION 1

/* The saved form: one byte each, version first, so the blob has no padding. */
struct serial_saved {
	uint8_t version;
	uint8_t dll;
	uint8_t dlm;
	uint8_t ier;
	uint8_t fcr;
	uint8_t lcr;
	uint8_t mcr;
	uint8_t scr;
	uint8_t thri_pending;
};

struct serial {
	struct device dev;
	pthread_mutex_t lock;
	serial_sink_fn sink;
	void *opaque;

	/* Under lock. */
	uint8_t dll, dlm, ier, fcr, lcr, mcr, scr;
	bool thri_pending;
	/* The IRQ line (serial_set_irq): vm NULL means none. level: last driven, -1 unknown. */
	struct vm *vm;
	unsigned int irq;
	int level;
};

static struct serial *to_serial(struct device *dev)
{
	return dev->priv;
}

static void serial_reset_locked(struct serial *s)
{
	s->dll = 12; /* 9600 baud: registers have no defined value at power-on */
	s->dlm = 0;
	s->ier = 0;
	s->fcr = 0;
	s->lcr = 0x03; /* 8N1 */
	s->mcr = 0;
	s->scr = 0;
	s->thri_pending = false;
}

static uint8_t iir_locked(const struct serial *s)
{
	uint8_t iir = (s->ier & IER_ETBEI) && s->thri_pending ? IIR_THRI : IIR_NO_INT;

	if (s->fcr & FCR_FIFO_ENABLE)
		iir |= IIR_FIFO_ENABLED;
	return iir;
}

/* Drives the IRQ line to match IIR, only on a change (one ioctl per edge). */
static void update_irq_locked(struct serial *s)
{
	int level = (iir_locked(s) & IIR_NO_INT) ? 0 : 1;

	if (!s->vm || level == s->level)
		return;
	/* Cannot fail for a valid GSI on a VM with an in-kernel irqchip. */
	vm_irq_line(s->vm, s->irq, level);
	s->level = level;
}

static uint8_t msr_locked(const struct serial *s)
{
	uint8_t m = 0;

	if (!(s->mcr & MCR_LOOP))
		return MSR_DCD | MSR_DSR | MSR_CTS; /* a terminal is always attached */
	/* Loopback: the modem outputs feed the modem inputs (RTS->CTS, DTR->DSR, ...). */
	if (s->mcr & 0x02)
		m |= MSR_CTS;
	if (s->mcr & 0x01)
		m |= MSR_DSR;
	if (s->mcr & 0x04)
		m |= MSR_RI;
	if (s->mcr & 0x08)
		m |= MSR_DCD;
	return m;
}

static uint8_t read_locked(struct serial *s, unsigned int reg)
{
	bool dlab = s->lcr & LCR_DLAB;
	uint8_t v;

	switch (reg) {
	case REG_RBR_THR:
		return dlab ? s->dll : 0; /* nothing is ever received */
	case REG_IER:
		return dlab ? s->dlm : s->ier;
	case REG_IIR_FCR:
		v = iir_locked(s);
		/* Reading IIR while it reports THR empty acknowledges that interrupt. */
		if ((v & 0x0f) == IIR_THRI)
			s->thri_pending = false;
		return v;
	case REG_LCR:
		return s->lcr;
	case REG_MCR:
		return s->mcr;
	case REG_LSR:
		return LSR_THRE | LSR_TEMT;
	case REG_MSR:
		return msr_locked(s);
	case REG_SCR:
		return s->scr;
	}
	return 0xff;
}

/* Writes to every register but a transmitting THR (see serial_io). */
static void write_locked(struct serial *s, unsigned int reg, uint8_t v)
{
	bool dlab = s->lcr & LCR_DLAB;

	switch (reg) {
	case REG_RBR_THR:
		if (dlab) {
			s->dll = v;
		} else {
			/* In loopback the byte goes to the (absent) receiver, not the line. */
			s->thri_pending = true;
		}
		break;
	case REG_IER:
		if (dlab) {
			s->dlm = v;
		} else {
			/* Enabling ETBEI with THR empty raises the interrupt at once (8250). */
			if ((v & IER_ETBEI) && !(s->ier & IER_ETBEI))
				s->thri_pending = true;
			s->ier = v & IER_MASK;
		}
		break;
	case REG_IIR_FCR:
		s->fcr = v & ~FCR_CLEAR_MASK;
		break;
	case REG_LCR:
		s->lcr = v;
		break;
	case REG_MCR:
		s->mcr = v & MCR_MASK;
		break;
	case REG_SCR:
		s->scr = v;
		break;
	default:
		break; /* LSR and MSR are read-only */
	}
}

static bool transmits_locked(const struct serial *s, unsigned int reg)
{
	return reg == REG_RBR_THR && !(s->lcr & LCR_DLAB) && !(s->mcr & MCR_LOOP);
}

/*
 * Each access of `size` bytes is `size` byte accesses to consecutive registers, as
 * on the ISA bus. Transmitted bytes are passed to the sink in runs straight out of
 * `data`: a `rep outsb` of N bytes to THR is one run, one sink call.
 */
static void serial_io(struct device *dev, uint16_t port, int is_write, uint8_t *data, uint32_t size,
		      uint32_t count)
{
	struct serial *s = to_serial(dev);
	size_t total = (size_t)size * count;
	size_t run_start = 0, run_len = 0;

	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < total; i++) {
		unsigned int reg = (unsigned int)(port - dev->port_base) + i % size;

		if (reg >= SERIAL_NR_PORTS) {
			if (!is_write)
				data[i] = 0xff;
			continue;
		}
		if (!is_write) {
			data[i] = read_locked(s, reg);
			continue;
		}
		if (transmits_locked(s, reg)) {
			if (run_len && run_start + run_len != i) {
				s->sink(s->opaque, data + run_start, run_len);
				run_len = 0;
			}
			if (!run_len)
				run_start = i;
			run_len++;
			s->thri_pending = true;
			continue;
		}
		/* Flush first: a register write (LCR, MCR) may change where later bytes go. */
		if (run_len) {
			s->sink(s->opaque, data + run_start, run_len);
			run_len = 0;
		}
		write_locked(s, reg, data[i]);
	}
	if (run_len)
		s->sink(s->opaque, data + run_start, run_len);
	update_irq_locked(s);
	pthread_mutex_unlock(&s->lock);
}

static void serial_reset(struct device *dev)
{
	struct serial *s = to_serial(dev);

	pthread_mutex_lock(&s->lock);
	serial_reset_locked(s);
	update_irq_locked(s);
	pthread_mutex_unlock(&s->lock);
}

static int serial_save(struct device *dev, uint8_t *buf, size_t len)
{
	struct serial *s = to_serial(dev);
	struct serial_saved v;

	if (len < sizeof(v))
		return -ENOSPC;
	pthread_mutex_lock(&s->lock);
	v = (struct serial_saved){
		.version = SERIAL_STATE_VERSION,
		.dll = s->dll,
		.dlm = s->dlm,
		.ier = s->ier,
		.fcr = s->fcr,
		.lcr = s->lcr,
		.mcr = s->mcr,
		.scr = s->scr,
		.thri_pending = s->thri_pending,
	};
	pthread_mutex_unlock(&s->lock);
	memcpy(buf, &v, sizeof(v));
	return sizeof(v);
}

static int serial_load(struct device *dev, const uint8_t *buf, size_t len)
{
	struct serial *s = to_serial(dev);
	struct serial_saved v;

	if (len < sizeof(v))
		return -EINVAL;
	memcpy(&v, buf, sizeof(v));
	if (v.version != SERIAL_STATE_VERSION)
		return -EINVAL;
	pthread_mutex_lock(&s->lock);
	s->dll = v.dll;
	s->dlm = v.dlm;
	s->ier = v.ier & IER_MASK;
	s->fcr = v.fcr & ~FCR_CLEAR_MASK;
	s->lcr = v.lcr;
	s->mcr = v.mcr & MCR_MASK;
	s->scr = v.scr;
	s->thri_pending = v.thri_pending != 0;
	/* The irqchip's state came with the checkpoint; drive the line to match it. */
	s->level = -1;
	update_irq_locked(s);
	pthread_mutex_unlock(&s->lock);
	return 0;
}

static void serial_free(struct device *dev)
{
	struct serial *s;

	if (!dev)
		return;
	s = to_serial(dev);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static const struct device_ops serial_ops = {
	.name = "serial",
	.io = serial_io,
	.reset = serial_reset,
	.save = serial_save,
	.load = serial_load,
	.free = serial_free,
};

int serial_new(uint16_t port_base, serial_sink_fn sink, void *opaque, struct device **ret_dev)
{
	struct serial *s;
	int r;

	if (!sink || (uint32_t)port_base + SERIAL_NR_PORTS > 0x10000)
		return -EINVAL;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	r = -pthread_mutex_init(&s->lock, NULL);
	if (r < 0) {
		free(s);
		return r;
	}
	s->sink = sink;
	s->opaque = opaque;
	s->dev = (struct device){
		.ops = &serial_ops,
		.port_base = port_base,
		.port_len = SERIAL_NR_PORTS,
		.priv = s,
	};
	s->level = -1;
	serial_reset_locked(s);
	*ret_dev = &s->dev;
	return 0;
}

void serial_set_irq(struct device *dev, struct vm *vm, unsigned int irq)
{
	struct serial *s = to_serial(dev);

	pthread_mutex_lock(&s->lock);
	s->vm = vm;
	s->irq = irq;
	s->level = -1;
	update_irq_locked(s);
	pthread_mutex_unlock(&s->lock);
}
