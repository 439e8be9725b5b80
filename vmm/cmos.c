// SPDX-License-Identifier: MIT
/*
 * The PC's CMOS RAM and real-time clock at ports 0x70 (index) and 0x71 (data),
 * as much as a kernel reads: 128 bytes of RAM, the time registers in BCD from the
 * host's UTC clock, and status registers that say the clock is valid and never
 * mid-update. No alarm, no periodic interrupt (IRQ 8 is never raised).
 *
 * Linux on KVM takes its wall clock from kvmclock; it still probes the RTC and
 * reads the CMOS at boot, and without a device every read returns 0xff, which it
 * takes for an RTC forever in the middle of an update.
 *
 * Threads: io() on any vCPU thread, save/load/reset on the owner with the vCPUs
 * parked. One mutex covers the index and the RAM.
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "vmm/cmos.h"

#define CMOS_NR_PORTS 2
#define CMOS_RAM_SIZE 128

/* RTC registers. */
#define RTC_SECONDS   0x00
#define RTC_MINUTES   0x02
#define RTC_HOURS     0x04
#define RTC_WEEKDAY   0x06
#define RTC_DAY	      0x07
#define RTC_MONTH     0x08
#define RTC_YEAR      0x09
#define RTC_STATUS_A  0x0a
#define RTC_STATUS_B  0x0b
#define RTC_STATUS_C  0x0c
#define RTC_STATUS_D  0x0d
#define RTC_CENTURY   0x32
#define RTC_A_DEFAULT 0x26 /* 32.768 kHz time base, 1024 Hz rate; UIP (0x80) never set */
#define RTC_B_24H     0x02 /* 24-hour mode, BCD, no interrupts enabled */
#define RTC_D_VRT     0x80 /* valid RAM and time */
#define INDEX_MASK    0x7f /* bit 7 of the index port gates NMI on a PC: ignored */

#define CMOS_STATE_VERSION 1

struct cmos_saved {
	uint8_t version;
	uint8_t index;
	uint8_t ram[CMOS_RAM_SIZE];
};

struct cmos {
	struct device dev;
	pthread_mutex_t lock;
	uint8_t index;		    /* under lock */
	uint8_t ram[CMOS_RAM_SIZE]; /* under lock; time registers are read live */
};

static struct cmos *to_cmos(struct device *dev)
{
	return dev->priv;
}

static uint8_t bcd(int v)
{
	return (uint8_t)(((v / 10) << 4) | (v % 10));
}

/* The time registers read the host's UTC time now: a guest that checks never sees UIP. */
static int rtc_read(unsigned int reg, uint8_t *v)
{
	struct tm tm;
	time_t now = time(NULL);

	if (!gmtime_r(&now, &tm))
		return -EINVAL;
	switch (reg) {
	case RTC_SECONDS:
		*v = bcd(tm.tm_sec > 59 ? 59 : tm.tm_sec);
		return 0;
	case RTC_MINUTES:
		*v = bcd(tm.tm_min);
		return 0;
	case RTC_HOURS:
		*v = bcd(tm.tm_hour);
		return 0;
	case RTC_WEEKDAY:
		*v = bcd(tm.tm_wday + 1);
		return 0;
	case RTC_DAY:
		*v = bcd(tm.tm_mday);
		return 0;
	case RTC_MONTH:
		*v = bcd(tm.tm_mon + 1);
		return 0;
	case RTC_YEAR:
		*v = bcd(tm.tm_year % 100);
		return 0;
	case RTC_CENTURY:
		*v = bcd(19 + tm.tm_year / 100);
		return 0;
	}
	return -ENOENT;
}

static uint8_t read_locked(struct cmos *c)
{
	uint8_t v;

	if (rtc_read(c->index, &v) == 0)
		return v;
	switch (c->index) {
	case RTC_STATUS_A:
		return RTC_A_DEFAULT;
	case RTC_STATUS_C:
		return 0; /* no interrupt flags: nothing is ever raised */
	case RTC_STATUS_D:
		return RTC_D_VRT;
	}
	return c->ram[c->index];
}

static void write_locked(struct cmos *c, uint8_t v)
{
	switch (c->index) {
	case RTC_STATUS_B:
		/* Keep 24-hour BCD: the time registers always read that way. */
		c->ram[RTC_STATUS_B] = (uint8_t)((v & ~0x06) | RTC_B_24H);
		return;
	case RTC_STATUS_C:
	case RTC_STATUS_D:
		return; /* read-only */
	}
	if (rtc_read(c->index, &(uint8_t){ 0 }) == 0)
		return; /* setting the clock is ignored: it follows the host */
	c->ram[c->index] = v;
}

static void cmos_io(struct device *dev, uint16_t port, int is_write, uint8_t *data, uint32_t size,
		    uint32_t count)
{
	struct cmos *c = to_cmos(dev);
	size_t total = (size_t)size * count;

	pthread_mutex_lock(&c->lock);
	for (size_t i = 0; i < total; i++) {
		unsigned int reg = (unsigned int)(port - dev->port_base) + i % size;

		if (reg == 0) {
			if (is_write)
				c->index = data[i] & INDEX_MASK;
			else
				data[i] = 0xff; /* the index port is write-only */
		} else if (reg == 1) {
			if (is_write)
				write_locked(c, data[i]);
			else
				data[i] = read_locked(c);
		} else if (!is_write) {
			data[i] = 0xff;
		}
	}
	pthread_mutex_unlock(&c->lock);
}

static void cmos_reset_locked(struct cmos *c)
{
	memset(c->ram, 0, sizeof(c->ram));
	c->ram[RTC_STATUS_B] = RTC_B_24H;
	c->index = 0;
}

static void cmos_reset(struct device *dev)
{
	struct cmos *c = to_cmos(dev);

	pthread_mutex_lock(&c->lock);
	cmos_reset_locked(c);
	pthread_mutex_unlock(&c->lock);
}

static int cmos_save(struct device *dev, uint8_t *buf, size_t len)
{
	struct cmos *c = to_cmos(dev);
	struct cmos_saved v = { .version = CMOS_STATE_VERSION };

	if (len < sizeof(v))
		return -ENOSPC;
	pthread_mutex_lock(&c->lock);
	v.index = c->index;
	memcpy(v.ram, c->ram, sizeof(v.ram));
	pthread_mutex_unlock(&c->lock);
	memcpy(buf, &v, sizeof(v));
	return sizeof(v);
}

static int cmos_load(struct device *dev, const uint8_t *buf, size_t len)
{
	struct cmos *c = to_cmos(dev);
	struct cmos_saved v;

	if (len < sizeof(v))
		return -EINVAL;
	memcpy(&v, buf, sizeof(v));
	if (v.version != CMOS_STATE_VERSION)
		return -EINVAL;
	pthread_mutex_lock(&c->lock);
	c->index = v.index & INDEX_MASK;
	memcpy(c->ram, v.ram, sizeof(c->ram));
	pthread_mutex_unlock(&c->lock);
	return 0;
}

static void cmos_free(struct device *dev)
{
	struct cmos *c;

	if (!dev)
		return;
	c = to_cmos(dev);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

static const struct device_ops cmos_ops = {
	.name = "cmos",
	.io = cmos_io,
	.reset = cmos_reset,
	.save = cmos_save,
	.load = cmos_load,
	.free = cmos_free,
};

int cmos_new(struct device **ret_dev)
{
	struct cmos *c = calloc(1, sizeof(*c));
	int r;

	if (!c)
		return -ENOMEM;
	r = -pthread_mutex_init(&c->lock, NULL);
	if (r < 0) {
		free(c);
		return r;
	}
	c->dev = (struct device){
		.ops = &cmos_ops,
		.port_base = CMOS_PORT_BASE,
		.port_len = CMOS_NR_PORTS,
		.priv = c,
	};
	cmos_reset_locked(c);
	*ret_dev = &c->dev;
	return 0;
}
