/* SPDX-License-Identifier: MIT */
/* Unit test of the 16550A: register programming, transmit to the sink, save/load. */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <string.h>

#include "vmm/device.h"
#include "vmm/serial.h"

#define COM1 0x3f8

struct sink {
	uint8_t buf[256];
	size_t len;
	unsigned int calls;
};

static void sink_fn(void *opaque, const uint8_t *buf, size_t len)
{
	struct sink *k = opaque;

	assert_true(k->len + len <= sizeof(k->buf));
	memcpy(k->buf + k->len, buf, len);
	k->len += len;
	k->calls++;
}

struct fixture {
	struct sink sink;
	struct device *dev;
};

static int setup(void **state)
{
	static struct fixture f;

	memset(&f, 0, sizeof(f));
	if (serial_new(COM1, sink_fn, &f.sink, &f.dev) < 0)
		return -1;
	*state = &f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	f->dev->ops->free(f->dev);
	return 0;
}

static void outb(struct device *dev, unsigned int reg, uint8_t v)
{
	dev->ops->io(dev, COM1 + reg, 1, &v, 1, 1);
}

static uint8_t inb(struct device *dev, unsigned int reg)
{
	uint8_t v = 0;

	dev->ops->io(dev, COM1 + reg, 0, &v, 1, 1);
	return v;
}

static void test_new_rejects_bad_args(void **state)
{
	struct device *dev = NULL;

	(void)state;
	assert_int_equal(serial_new(COM1, NULL, NULL, &dev), -EINVAL);
	assert_int_equal(serial_new(0xfffc, sink_fn, NULL, &dev), -EINVAL);
	assert_null(dev);
}

static void test_registers(void **state)
{
	struct fixture *f = *state;
	struct device *d = f->dev;

	assert_string_equal(d->ops->name, "serial");
	assert_int_equal(d->port_base, COM1);
	assert_int_equal(d->port_len, 8);

	/* Divisor latch behind DLAB: 115200 baud = divisor 1, then 8N1. */
	outb(d, 3, 0x80);
	outb(d, 0, 0x01);
	outb(d, 1, 0x00);
	assert_int_equal(inb(d, 0), 0x01);
	assert_int_equal(inb(d, 1), 0x00);
	outb(d, 3, 0x03);
	assert_int_equal(inb(d, 3), 0x03);

	/* With DLAB clear, offset 1 is IER again and the divisor is unchanged. */
	outb(d, 1, 0x00);
	assert_int_equal(inb(d, 1), 0x00);
	outb(d, 3, 0x83);
	assert_int_equal(inb(d, 0), 0x01);
	outb(d, 3, 0x03);

	outb(d, 7, 0x5a);
	assert_int_equal(inb(d, 7), 0x5a);
	outb(d, 4, 0x0b);
	assert_int_equal(inb(d, 4), 0x0b);

	/* FIFO enabled shows as 16550A in IIR; no interrupt pending with IER 0. */
	outb(d, 2, 0x07);
	assert_int_equal(inb(d, 2), 0xc1);

	/* Loopback reflects MCR outputs in MSR (the Linux 8250 probe: 0x0a -> 0x90). */
	outb(d, 4, 0x10 | 0x0a);
	assert_int_equal(inb(d, 6) & 0xf0, 0x90);
	outb(d, 4, 0x03);
	assert_int_equal(f->sink.len, 0);
}

static void test_lsr_ready(void **state)
{
	struct fixture *f = *state;
	uint8_t lsr[4];

	assert_int_equal(inb(f->dev, 5), 0x60); /* THRE | TEMT, no data ready */
	f->dev->ops->io(f->dev, COM1 + 5, 0, lsr, 1, 4);
	for (int i = 0; i < 4; i++)
		assert_int_equal(lsr[i], 0x60);
	assert_int_equal(inb(f->dev, 0), 0); /* nothing received */
}

static void test_thr_empty_interrupt(void **state)
{
	struct fixture *f = *state;

	outb(f->dev, 1, 0x02); /* ETBEI */
	assert_int_equal(inb(f->dev, 2) & 0x0f, 0x02);
	assert_int_equal(inb(f->dev, 2) & 0x0f, 0x01); /* acknowledged by the read */
	outb(f->dev, 0, 'x');
	assert_int_equal(inb(f->dev, 2) & 0x0f, 0x02);
	outb(f->dev, 1, 0x00);
	assert_int_equal(inb(f->dev, 2) & 0x0f, 0x01);
}

static void test_transmit(void **state)
{
	struct fixture *f = *state;
	uint8_t line[] = "hello, world\n";

	outb(f->dev, 0, 'a');
	outb(f->dev, 0, 'b');
	assert_int_equal(f->sink.calls, 2);

	/* rep outsb: one io() call, one sink call with every byte. */
	f->dev->ops->io(f->dev, COM1, 1, line, 1, sizeof(line) - 1);
	assert_int_equal(f->sink.calls, 3);
	assert_int_equal(f->sink.len, 2 + sizeof(line) - 1);
	assert_memory_equal(f->sink.buf, "abhello, world\n", f->sink.len);

	/* Writing the divisor latch or in loopback transmits nothing. */
	outb(f->dev, 3, 0x83);
	outb(f->dev, 0, 0x0c);
	outb(f->dev, 3, 0x03);
	outb(f->dev, 4, 0x10);
	outb(f->dev, 0, 'z');
	outb(f->dev, 4, 0x00);
	assert_int_equal(f->sink.len, 2 + sizeof(line) - 1);

	/* A 16-bit write at THR is THR then IER, as on the ISA bus. */
	uint8_t w[2] = { 'c', 0x02 };
	f->dev->ops->io(f->dev, COM1, 1, w, 2, 1);
	assert_int_equal(f->sink.buf[f->sink.len - 1], 'c');
	assert_int_equal(inb(f->dev, 1), 0x02);
}

static void test_save_load(void **state)
{
	struct fixture *f = *state;
	struct device *d = f->dev;
	uint8_t saved[DEVICE_STATE_MAX], again[DEVICE_STATE_MAX];
	int n, m;

	outb(d, 3, 0x80);
	outb(d, 0, 0x30);
	outb(d, 1, 0x01);
	outb(d, 3, 0x1b);
	outb(d, 1, 0x03);
	outb(d, 2, 0x81);
	outb(d, 4, 0x0b);
	outb(d, 7, 0xa5);

	n = d->ops->save(d, saved, sizeof(saved));
	assert_true(n > 1 && n <= DEVICE_STATE_MAX);
	assert_int_equal(saved[0], 1); /* version */
	assert_int_equal(d->ops->save(d, saved, 1), -ENOSPC);

	/* Change everything, then load the saved registers back. */
	d->ops->reset(d);
	outb(d, 7, 0x00);
	outb(d, 4, 0x00);
	assert_int_equal(inb(d, 7), 0x00);
	assert_int_equal(d->ops->load(d, saved, n), 0);

	m = d->ops->save(d, again, sizeof(again));
	assert_int_equal(m, n);
	assert_memory_equal(again, saved, n);
	assert_int_equal(inb(d, 3), 0x1b);
	assert_int_equal(inb(d, 1), 0x03);
	assert_int_equal(inb(d, 4), 0x0b);
	assert_int_equal(inb(d, 7), 0xa5);
	assert_int_equal(inb(d, 2) & 0xc0, 0xc0);
	outb(d, 3, 0x9b);
	assert_int_equal(inb(d, 0), 0x30);
	assert_int_equal(inb(d, 1), 0x01);

	/* Bad blobs are refused and change nothing. */
	assert_int_equal(d->ops->load(d, saved, 1), -EINVAL);
	saved[0] = 99;
	assert_int_equal(d->ops->load(d, saved, n), -EINVAL);
	assert_int_equal(inb(d, 7), 0xa5);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_rejects_bad_args),
		cmocka_unit_test_setup_teardown(test_registers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_lsr_ready, setup, teardown),
		cmocka_unit_test_setup_teardown(test_thr_empty_interrupt, setup, teardown),
		cmocka_unit_test_setup_teardown(test_transmit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
