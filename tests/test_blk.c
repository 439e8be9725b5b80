// SPDX-License-Identifier: MIT
/*
 * virtio-blk over virtio-mmio, with the test acting as the guest's driver
 * (virtio_driver.h, as in test_virtio.c): it calls the device's mmio op, writes
 * descriptor tables, rings and buffers straight into a real VM's memory, and
 * runs the owner's vm_devices_poll(). Images are sparse files in a mkdtemp
 * directory in /tmp.
 *
 * Registers, features and config space; write, read back (and the file has the
 * bytes), FLUSH, GET_ID; requests beyond the end, unaligned, unsupported or
 * malformed; the exact pages the device dirtied; the write log (records,
 * offsets, data, flush markers; nothing with logging off); the log bound's
 * stall and resume; the initial sync's block records and -EBUSY for a block
 * with a write in flight; a driver reset with I/O in flight; drain and hash;
 * and a save with requests in flight loaded into a second VM, whose device
 * re-executes them.
 *
 * Exit 0 pass, 77 skip (no /dev/kvm and FT_REQUIRE_KVM unset), anything else fails.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/diskimg.h"
#include "lib/disklog.h"
#include "lib/stats.h"
#include "tests/kvm_helpers.h"
#include "tests/virtio_driver.h"
#include "vmm/virtio_blk.h"
#include "vmm/virtio_mmio.h"
#include "vmm/vm.h"

#define SLOT	 GUEST_VIRTIO_SLOT_BLK
#define BLK_Q	 0 /* its one queue */
#define Q_DESC	 0x100000ULL
#define Q_AVL	 0x101000ULL
#define Q_USED	 0x102000ULL
#define HDRS	 0x200000ULL  /* header k at HDRS + 16 * k */
#define STATS	 0x210000ULL  /* status byte k at STATS + k */
#define WBUF	 0x300000ULL  /* data the driver writes */
#define RBUF	 0x380000ULL  /* buffers the device reads into */
#define BIG	 0x1000000ULL /* 4 MiB, for the log bound */
#define BIG_LEN	 (4u << 20)
#define IMG_SIZE ((8ULL << 20) + 4096) /* the last block is short */
#define SECTORS	 (IMG_SIZE / 512)

struct fixture {
	char dir[64];
	char path[96];
	struct vm *vm;
	struct virtio_blk *blk;
	struct device *dev;
	struct vdrv drv;
	unsigned int nr_req; /* header/status slot of the next request */
};

/* --- the driver side ------------------------------------------------------ */

static void drv_init(struct fixture *f)
{
	vdrv_init(&f->drv, (1ULL << VIRTIO_F_VERSION_1) | (1ULL << VIRTIO_BLK_F_FLUSH));
	f->nr_req = 0;
}

struct req {
	uint16_t head;
	unsigned int k; /* its header and status slot */
};

/*
 * A request: header (own descriptor), the data segments, status (own
 * descriptor, preset to 0xff). hdr_len and status_len let a test break them.
 */
static struct req add_req_raw(struct fixture *f, uint32_t type, uint64_t sector,
			      const struct vdrv_seg *data, unsigned int n, uint32_t hdr_len,
			      bool with_status)
{
	struct vdrv_seg s[8];
	unsigned int k = f->nr_req++ % 256, i = 0;
	uint8_t *h = vdrv_hva(f->vm, HDRS + 16 * k, 16);

	memset(h, 0, 16);
	memcpy(h, &type, 4);
	memcpy(h + 8, &sector, 8);
	*(uint8_t *)vdrv_hva(f->vm, STATS + k, 1) = 0xff;
	s[i++] = (struct vdrv_seg){ HDRS + 16 * k, hdr_len, false };
	for (unsigned int j = 0; j < n; j++)
		s[i++] = data[j];
	if (with_status)
		s[i++] = (struct vdrv_seg){ STATS + k, 1, true };
	return (struct req){ vdrv_add(&f->drv, BLK_Q, s, i), k };
}

static struct req add_req(struct fixture *f, uint32_t type, uint64_t sector,
			  const struct vdrv_seg *data, unsigned int n)
{
	return add_req_raw(f, type, sector, data, n, 16, true);
}

static uint8_t status_of(struct fixture *f, struct req r)
{
	return *(uint8_t *)vdrv_hva(f->vm, STATS + r.k, 1);
}

/* One request to completion: returns its status, checks the used element. */
static uint8_t run_req(struct fixture *f, uint32_t type, uint64_t sector,
		       const struct vdrv_seg *data, unsigned int n, uint32_t used_len)
{
	uint16_t before = vdrv_used_idx(&f->drv, BLK_Q);
	struct req r = add_req(f, type, sector, data, n);
	uint32_t id, len;

	vdrv_notify(&f->drv, BLK_Q);
	assert_true(vdrv_poll_used(&f->drv, BLK_Q, (uint16_t)(before + 1)));
	vdrv_used_elem(&f->drv, BLK_Q, before, &id, &len);
	assert_int_equal(id, r.head);
	assert_int_equal(len, used_len);
	return status_of(f, r);
}

static void fill(uint8_t *p, size_t len, uint8_t seed)
{
	for (size_t i = 0; i < len; i++)
		p[i] = (uint8_t)(seed + i * 13 + (i >> 9));
}

static void file_read(const char *path, uint64_t off, void *buf, size_t len)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void file_write(const char *path, uint64_t off, const void *buf, size_t len)
{
	int fd = open(path, O_WRONLY | O_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(pwrite(fd, buf, len, (off_t)off), (ssize_t)len);
	close(fd);
}

static void make_image(const char *path)
{
	int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)IMG_SIZE), 0);
	close(fd);
}

/* --- fixtures -------------------------------------------------------------- */

static int new_vm(struct fixture *f, const char *path)
{
	struct vm_config cfg = { .mem_size = VM_MIN_MEM, .nr_vcpus = 1, .tracking = DIRTY_RING };
	struct virtio_blk_config bc = { .path = path };
	int r;

	r = vm_create(&cfg, &f->vm);
	if (r < 0)
		return r;
	r = virtio_blk_create(f->vm, SLOT, &bc, &f->blk);
	if (r < 0)
		return r;
	f->dev = vdrv_attach(&f->drv, f->vm, 1);
	f->drv.q[BLK_Q] = (struct vdrv_queue){ .desc = Q_DESC, .avail = Q_AVL, .used = Q_USED };
	return 0;
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/ringft-blk-XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	snprintf(f->path, sizeof(f->path), "%s/disk.img", f->dir);
	make_image(f->path);
	if (new_vm(f, f->path) < 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	char p[128];

	vm_free(f->vm);
	unlink(f->path);
	snprintf(p, sizeof(p), "%s/second.img", f->dir);
	unlink(p);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* --- tests ----------------------------------------------------------------- */

static void test_registers(void **state)
{
	struct fixture *f = *state;
	struct device *dev = f->dev;
	struct virtio_blk *other;
	uint8_t cfg[24];
	uint64_t cap;
	uint32_t v;

	assert_string_equal(dev->ops->name, "virtio-blk");
	assert_int_equal(dev->mmio_base, GUEST_VIRTIO_MMIO_GPA + SLOT * GUEST_VIRTIO_MMIO_SIZE);
	assert_int_equal(vdrv_rd(dev, VIRTIO_MMIO_MAGIC_VALUE), VIRTIO_MMIO_MAGIC);
	assert_int_equal(vdrv_rd(dev, VIRTIO_MMIO_DEVICE_ID), VIRTIO_BLK_DEVICE_ID);
	vdrv_wr(dev, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 0);
	assert_int_equal(vdrv_rd(dev, VIRTIO_MMIO_DEVICE_FEATURES),
			 (1u << VIRTIO_BLK_F_SIZE_MAX) | (1u << VIRTIO_BLK_F_SEG_MAX) |
				 (1u << VIRTIO_BLK_F_BLK_SIZE) | (1u << VIRTIO_BLK_F_FLUSH));
	vdrv_wr(dev, VIRTIO_MMIO_DEVICE_FEATURES_SEL, 1);
	assert_int_equal(vdrv_rd(dev, VIRTIO_MMIO_DEVICE_FEATURES), 1); /* VERSION_1 */
	vdrv_wr(dev, VIRTIO_MMIO_QUEUE_SEL, 1);
	assert_int_equal(vdrv_rd(dev, VIRTIO_MMIO_QUEUE_NUM_MAX), 0); /* one queue */
	for (unsigned int i = 0; i < sizeof(cfg); i++)
		dev->ops->mmio(dev, dev->mmio_base + VIRTIO_MMIO_CONFIG + i, 0, &cfg[i], 1);
	memcpy(&cap, cfg, 8);
	assert_int_equal(cap, SECTORS);
	memcpy(&v, cfg + 8, 4);
	assert_int_equal(v, VIRTIO_BLK_SIZE_MAX);
	memcpy(&v, cfg + 12, 4);
	assert_int_equal(v, VIRTIO_BLK_SEG_MAX);
	memcpy(&v, cfg + 20, 4);
	assert_int_equal(v, 512);
	/* Linux reads the capacity as two words. */
	assert_int_equal(vdrv_rd(dev, VIRTIO_MMIO_CONFIG), (uint32_t)SECTORS);
	assert_int_equal(vdrv_rd(dev, VIRTIO_MMIO_CONFIG + 4), 0);
	assert_int_equal(virtio_blk_size(f->blk), IMG_SIZE);
	assert_string_equal(virtio_blk_path(f->blk), f->path);

	/* Refused: a taken slot, a serial too long, a missing or unaligned image. */
	struct virtio_blk_config bc = { .path = f->path };
	char odd[128];

	assert_int_equal(virtio_blk_create(f->vm, SLOT, &bc, &other), -EEXIST);
	bc.serial = "123456789012345678901";
	assert_int_equal(virtio_blk_create(f->vm, SLOT + 1, &bc, &other), -EINVAL);
	bc = (struct virtio_blk_config){ .path = "/nonexistent/disk.img" };
	assert_int_equal(virtio_blk_create(f->vm, SLOT + 1, &bc, &other), -ENOENT);
	snprintf(odd, sizeof(odd), "%s/second.img", f->dir);
	make_image(odd);
	assert_int_equal(truncate(odd, 1000), 0);
	bc.path = odd;
	assert_int_equal(virtio_blk_create(f->vm, SLOT + 1, &bc, &other), -EINVAL);
	assert_int_equal(f->vm->nr_devices, 1);
}

static void test_rw(void **state)
{
	struct fixture *f = *state;
	uint8_t want[8192], got[8192], id[20];
	struct virtio_blk_stats st;
	struct dirty_set ds;
	struct pollfd p = { .fd = vm_device_fd(f->vm), .events = POLLIN };

	assert_int_equal(dirty_set_init(&ds, f->vm->nr_pages), 0);
	drv_init(f);
	assert_int_equal(vm_devices_poll(f->vm), 0);
	vdrv_harvest(f->vm, &ds);

	/* Write 8 KiB at sector 8 from two buffers. */
	fill(want, sizeof(want), 1);
	memcpy(vdrv_hva(f->vm, WBUF, 4096), want, 4096);
	memcpy(vdrv_hva(f->vm, WBUF + 0x2000, 4096), want + 4096, 4096);
	{
		struct vdrv_seg d[2] = { { WBUF, 4096, false }, { WBUF + 0x2000, 4096, false } };
		struct req r = add_req(f, VIRTIO_BLK_T_OUT, 8, d, 2);
		uint32_t uid, ulen;

		vdrv_notify(&f->drv, BLK_Q);
		assert_int_equal(vm_devices_poll(f->vm), 0); /* submitted */
		/* The completion wakes the owner through the device eventfd. */
		assert_int_equal(poll(&p, 1, 5000), 1);
		assert_true(vdrv_poll_used(&f->drv, BLK_Q, 1));
		vdrv_used_elem(&f->drv, BLK_Q, 0, &uid, &ulen);
		assert_int_equal(uid, r.head);
		assert_int_equal(ulen, 1);
		assert_int_equal(status_of(f, r), VIRTIO_BLK_S_OK);
	}
	file_read(f->path, 8 * 512, got, sizeof(got));
	assert_memory_equal(got, want, sizeof(want));
	assert_true(vdrv_rd(f->dev, VIRTIO_MMIO_INTERRUPT_STATUS) & VIRTIO_MMIO_INT_VRING);
	vdrv_wr(f->dev, VIRTIO_MMIO_INTERRUPT_ACK, VIRTIO_MMIO_INT_VRING);
	vdrv_harvest(f->vm, &ds);
	vdrv_assert_pages(&ds, (const uint64_t[]){ Q_USED >> 12, STATS >> 12 }, 2);

	/* Read it back into 1 KiB + 7 KiB buffers, the second across a page boundary. */
	memset(vdrv_hva(f->vm, RBUF, 0x4000), 0, 0x4000);
	{
		struct vdrv_seg d[2] = { { RBUF, 1024, true }, { RBUF + 0x2000, 7168, true } };

		assert_int_equal(run_req(f, VIRTIO_BLK_T_IN, 8, d, 2, 8193), VIRTIO_BLK_S_OK);
	}
	assert_memory_equal(vdrv_hva(f->vm, RBUF, 1024), want, 1024);
	assert_memory_equal(vdrv_hva(f->vm, RBUF + 0x2000, 7168), want + 1024, 7168);
	vdrv_harvest(f->vm, &ds);
	vdrv_assert_pages(&ds,
			  (const uint64_t[]){ Q_USED >> 12, STATS >> 12, RBUF >> 12,
					      (RBUF >> 12) + 2, (RBUF >> 12) + 3 },
			  5);

	/* FLUSH, and GET_ID: the default serial, NUL padded to 20 bytes. */
	assert_int_equal(run_req(f, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, 1), VIRTIO_BLK_S_OK);
	memset(vdrv_hva(f->vm, RBUF, 20), 0xee, 20);
	{
		struct vdrv_seg d = { RBUF, 20, true };

		assert_int_equal(run_req(f, VIRTIO_BLK_T_GET_ID, 0, &d, 1, 21), VIRTIO_BLK_S_OK);
	}
	memset(id, 0, sizeof(id));
	memcpy(id, "ringft", 6);
	assert_memory_equal(vdrv_hva(f->vm, RBUF, 20), id, 20);
	vdrv_harvest(f->vm, &ds);
	vdrv_assert_pages(&ds, (const uint64_t[]){ Q_USED >> 12, STATS >> 12, RBUF >> 12 }, 3);

	virtio_blk_get_stats(f->blk, &st);
	assert_int_equal(st.writes, 1);
	assert_int_equal(st.write_bytes, 8192);
	assert_int_equal(st.reads, 1);
	assert_int_equal(st.read_bytes, 8192);
	assert_int_equal(st.flushes, 1);
	assert_int_equal(st.errors, 0);
	assert_int_equal(st.inflight, 0);
	assert_int_equal(st.logged_bytes, 0);

	/*
	 * Latency: one sample per request answered OK that went to the image (GET_ID
	 * does not); the window holds the same until it is taken, then starts empty.
	 */
	{
		struct histogram *lat = calloc(2 * VIRTIO_BLK_LAT_TYPES, sizeof(*lat));
		struct histogram *win = lat + VIRTIO_BLK_LAT_TYPES;

		assert_non_null(lat);
		virtio_blk_get_latency(f->blk, lat);
		assert_int_equal(lat[VIRTIO_BLK_LAT_READ].n, 1);
		assert_int_equal(lat[VIRTIO_BLK_LAT_WRITE].n, 1);
		assert_int_equal(lat[VIRTIO_BLK_LAT_FLUSH].n, 1);
		/* Measured from the request's start, not from 0: well under the test's run. */
		for (unsigned int t = 0; t < VIRTIO_BLK_LAT_TYPES; t++)
			assert_true(lat[t].max < 10 * 1000 * 1000);
		virtio_blk_take_latency_window(f->blk, win);
		for (unsigned int t = 0; t < VIRTIO_BLK_LAT_TYPES; t++) {
			assert_int_equal(win[t].n, 1);
			assert_int_equal(win[t].sum, lat[t].sum);
		}
		virtio_blk_take_latency_window(f->blk, win);
		for (unsigned int t = 0; t < VIRTIO_BLK_LAT_TYPES; t++)
			assert_int_equal(win[t].n, 0);
		virtio_blk_get_latency(f->blk, lat); /* the whole run's stay */
		assert_int_equal(lat[VIRTIO_BLK_LAT_FLUSH].n, 1);
		free(lat);
	}
	dirty_set_free(&ds);
}

static void test_bad_requests(void **state)
{
	struct fixture *f = *state;
	static uint8_t before[IMG_SIZE], after[IMG_SIZE];
	struct virtio_blk_stats st;
	struct vdrv_seg w1k = { WBUF, 1024, false }, r1k = { RBUF, 1024, true };
	uint16_t n = 0;

	drv_init(f);
	fill(vdrv_hva(f->vm, WBUF, 4096), 4096, 7);
	file_write(f->path, IMG_SIZE - 4096, vdrv_hva(f->vm, WBUF, 4096), 4096);
	file_read(f->path, 0, before, IMG_SIZE);

	/* Beyond the end: the last sector plus one more, and a sector far out. */
	assert_int_equal(run_req(f, VIRTIO_BLK_T_OUT, SECTORS - 1, &w1k, 1, 1), VIRTIO_BLK_S_IOERR);
	assert_int_equal(run_req(f, VIRTIO_BLK_T_OUT, UINT64_MAX / 256, &w1k, 1, 1),
			 VIRTIO_BLK_S_IOERR);
	assert_int_equal(run_req(f, VIRTIO_BLK_T_IN, SECTORS, &r1k, 1, 1), VIRTIO_BLK_S_IOERR);
	/* Not a multiple of 512. */
	{
		struct vdrv_seg w = { WBUF, 1000, false };

		assert_int_equal(run_req(f, VIRTIO_BLK_T_OUT, 0, &w, 1, 1), VIRTIO_BLK_S_IOERR);
	}
	/* Unsupported: DISCARD (11), WRITE_ZEROES (13). */
	assert_int_equal(run_req(f, 11, 0, &w1k, 1, 1), VIRTIO_BLK_S_UNSUPP);
	assert_int_equal(run_req(f, 13, 0, &w1k, 1, 1), VIRTIO_BLK_S_UNSUPP);
	/* Wrong directions: IN with readable data, OUT with writable data. */
	assert_int_equal(run_req(f, VIRTIO_BLK_T_IN, 0, &w1k, 1, 1), VIRTIO_BLK_S_IOERR);
	assert_int_equal(run_req(f, VIRTIO_BLK_T_OUT, 0, &r1k, 1, 1), VIRTIO_BLK_S_IOERR);
	n = 8;
	/* A header too short. */
	{
		struct req r = add_req_raw(f, VIRTIO_BLK_T_OUT, 0, &w1k, 0, 8, true);

		vdrv_notify(&f->drv, BLK_Q);
		assert_true(vdrv_poll_used(&f->drv, BLK_Q, ++n));
		assert_int_equal(status_of(f, r), VIRTIO_BLK_S_IOERR);
	}
	/* No status byte: the chain comes back with nothing written. */
	{
		struct req r = add_req_raw(f, VIRTIO_BLK_T_OUT, 0, &w1k, 1, 16, false);
		uint32_t id, len;

		vdrv_notify(&f->drv, BLK_Q);
		assert_true(vdrv_poll_used(&f->drv, BLK_Q, ++n));
		vdrv_used_elem(&f->drv, BLK_Q, (uint16_t)(n - 1), &id, &len);
		assert_int_equal(id, r.head);
		assert_int_equal(len, 0);
		assert_int_equal(status_of(f, r), 0xff);
	}
	/* The device still works. */
	assert_int_equal(run_req(f, VIRTIO_BLK_T_IN, SECTORS - 2, &r1k, 1, 1025), VIRTIO_BLK_S_OK);
	assert_memory_equal(vdrv_hva(f->vm, RBUF, 1024), before + IMG_SIZE - 1024, 1024);
	assert_false(vdrv_rd(f->dev, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	file_read(f->path, 0, after, IMG_SIZE);
	assert_memory_equal(before, after, IMG_SIZE);
	virtio_blk_get_stats(f->blk, &st);
	assert_int_equal(st.errors, 10);
	assert_int_equal(st.writes, 0);
	assert_int_equal(st.reads, 1);

	/* A chain that loops breaks the queue (virtqueue.h), as for virtio-net. */
	{
		uint16_t head = add_req(f, VIRTIO_BLK_T_IN, 0, &r1k, 1).head;
		uint8_t *table = vdrv_hva(f->vm, Q_DESC, 16 * VDRV_QNUM);
		uint16_t last = (uint16_t)((head + 2) % VDRV_QNUM), flags = 3;

		memcpy(table + 16 * last + 12, &flags, 2);
		memcpy(table + 16 * last + 14, &head, 2);
	}
	vdrv_notify(&f->drv, BLK_Q);
	assert_int_equal(vm_devices_poll(f->vm), 0);
	assert_true(vdrv_rd(f->dev, VIRTIO_MMIO_STATUS) & VIRTIO_STATUS_DEVICE_NEEDS_RESET);
	assert_int_equal(vdrv_used_idx(&f->drv, BLK_Q), n + 1);
}

/* Checks record i of the log. */
static void check_rec(const struct disk_log *log, size_t i, uint64_t offset, uint32_t len,
		      uint32_t flags, const void *data)
{
	const struct disk_rec *r = &log->recs[i];

	assert_true(i < log->nr);
	assert_int_equal(r->offset, offset);
	assert_int_equal(r->len, len);
	assert_int_equal(r->flags, flags);
	if (data)
		assert_memory_equal(disk_rec_data(log, r), data, len);
}

static void test_log(void **state)
{
	struct fixture *f = *state;
	struct disk_log log = { 0 };
	uint8_t a[4096], b[1536];
	struct virtio_blk_stats st;
	struct vdrv_seg wa = { WBUF, 4096, false };
	struct vdrv_seg wb[2] = { { WBUF + 0x1000, 512, false }, { WBUF + 0x2000, 1024, false } };

	drv_init(f);
	fill(a, sizeof(a), 31);
	fill(b, sizeof(b), 32);
	memcpy(vdrv_hva(f->vm, WBUF, 4096), a, 4096);
	memcpy(vdrv_hva(f->vm, WBUF + 0x1000, 512), b, 512);
	memcpy(vdrv_hva(f->vm, WBUF + 0x2000, 1024), b + 512, 1024);

	/* Off: nothing is recorded. */
	assert_int_equal(run_req(f, VIRTIO_BLK_T_OUT, 16, &wa, 1, 1), VIRTIO_BLK_S_OK);
	assert_int_equal(run_req(f, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, 1), VIRTIO_BLK_S_OK);
	assert_int_equal(virtio_blk_take_log(f->blk, &log), 0);
	assert_int_equal(log.nr, 0);

	/* On: writes with their data, flushes as markers, reads not at all, in order. */
	virtio_blk_set_logging(f->blk, true);
	assert_int_equal(run_req(f, VIRTIO_BLK_T_OUT, 16, &wa, 1, 1), VIRTIO_BLK_S_OK);
	assert_int_equal(run_req(f, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, 1), VIRTIO_BLK_S_OK);
	{
		struct vdrv_seg r = { RBUF, 4096, true };

		assert_int_equal(run_req(f, VIRTIO_BLK_T_IN, 16, &r, 1, 4097), VIRTIO_BLK_S_OK);
	}
	assert_int_equal(run_req(f, VIRTIO_BLK_T_OUT, 0, wb, 2, 1), VIRTIO_BLK_S_OK);
	/* Refused writes are not logged. */
	assert_int_equal(run_req(f, VIRTIO_BLK_T_OUT, SECTORS, &wa, 1, 1), VIRTIO_BLK_S_IOERR);
	assert_int_equal(virtio_blk_take_log(f->blk, &log), 0);
	assert_int_equal(log.nr, 3);
	check_rec(&log, 0, 16 * 512, 4096, 0, a);
	check_rec(&log, 1, 0, 0, DISK_REC_FLUSH, NULL);
	check_rec(&log, 2, 0, 1536, 0, b);
	assert_true(log.flush);
	assert_int_equal(disk_log_bytes(&log), 4096 + 1536);
	virtio_blk_get_stats(f->blk, &st);
	assert_int_equal(st.logged_bytes, 4096 + 1536);

	/* The device goes on with the caller's old (cleared) buffers. */
	disk_log_clear(&log);
	assert_int_equal(virtio_blk_take_log(f->blk, &log), 0);
	assert_int_equal(log.nr, 0);
	/* Switching off forgets what was logged. */
	assert_int_equal(run_req(f, VIRTIO_BLK_T_OUT, 16, &wa, 1, 1), VIRTIO_BLK_S_OK);
	virtio_blk_set_logging(f->blk, false);
	assert_int_equal(virtio_blk_take_log(f->blk, &log), 0);
	assert_int_equal(log.nr, 0);
	disk_log_free(&log);
}

static void test_log_stall(void **state)
{
	struct fixture *f = *state;
	struct disk_log log = { 0 };
	struct virtio_blk_stats st;
	struct vdrv_seg big = { BIG, BIG_LEN, false };
	const unsigned int fit = VIRTIO_BLK_LOG_MAX / BIG_LEN + 1; /* the last one exceeds */

	drv_init(f);
	fill(vdrv_hva(f->vm, BIG, BIG_LEN), BIG_LEN, 5);
	virtio_blk_set_logging(f->blk, true);
	for (unsigned int i = 0; i < fit; i++)
		assert_int_equal(run_req(f, VIRTIO_BLK_T_OUT, 0, &big, 1, 1), VIRTIO_BLK_S_OK);
	/* Over the bound: the next request waits in the avail ring. */
	add_req(f, VIRTIO_BLK_T_OUT, 2048, &big, 1);
	vdrv_notify(&f->drv, BLK_Q);
	for (unsigned int i = 0; i < 20; i++) {
		struct pollfd p = { .fd = vm_device_fd(f->vm), .events = POLLIN };

		poll(&p, 1, 10);
		assert_int_equal(vm_devices_poll(f->vm), 0);
	}
	assert_int_equal(vdrv_used_idx(&f->drv, BLK_Q), fit);
	virtio_blk_get_stats(f->blk, &st);
	assert_int_equal(st.log_stalls, 1);
	assert_int_equal(st.inflight, 0);

	/* The checkpoint takes the log: the queue goes again. */
	assert_int_equal(virtio_blk_take_log(f->blk, &log), 0);
	assert_int_equal(disk_log_bytes(&log), (size_t)fit * BIG_LEN);
	assert_int_equal(log.nr, (size_t)fit * (BIG_LEN / DISK_REC_MAX));
	assert_true(vdrv_poll_used(&f->drv, BLK_Q, (uint16_t)(fit + 1)));
	disk_log_clear(&log);
	assert_int_equal(virtio_blk_take_log(f->blk, &log), 0);
	assert_int_equal(disk_log_bytes(&log), BIG_LEN);
	check_rec(&log, 0, 2048 * 512, DISK_REC_MAX, 0, vdrv_hva(f->vm, BIG, DISK_REC_MAX));
	virtio_blk_get_stats(f->blk, &st);
	assert_int_equal(st.log_stalls, 1);
	assert_int_equal(st.writes, fit + 1);
	disk_log_free(&log);
}

static void test_sync_block(void **state)
{
	struct fixture *f = *state;
	static uint8_t blk0[DISK_BLOCK], zero[DISK_BLOCK], last[4096];
	const uint64_t nblocks = diskimg_blocks(IMG_SIZE);
	struct disk_log log = { 0 };
	struct vdrv_seg w = { WBUF, 4096, false };
	bool sent;

	fill(blk0, sizeof(blk0), 41);
	fill(last, sizeof(last), 42);
	file_write(f->path, 0, blk0, sizeof(blk0));
	file_write(f->path, 2 * DISK_BLOCK, zero, sizeof(zero)); /* zeros, not a hole */
	file_write(f->path, IMG_SIZE - 4096, last, sizeof(last));
	assert_int_equal(nblocks, 129);

	assert_int_equal(virtio_blk_sync_block(f->blk, 0, 5, &sent), -EINVAL); /* logging off */
	virtio_blk_set_logging(f->blk, true);
	assert_int_equal(virtio_blk_sync_block(f->blk, nblocks, 5, &sent), -EINVAL);
	/* Equal sums: nothing. */
	assert_int_equal(
		virtio_blk_sync_block(f->blk, 0, diskimg_block_sum(blk0, DISK_BLOCK), &sent), 0);
	assert_false(sent);
	assert_int_equal(virtio_blk_sync_block(f->blk, 1, 0, &sent), 0); /* a hole */
	assert_false(sent);
	assert_int_equal(virtio_blk_sync_block(f->blk, 2, 0, &sent), 0); /* written zeros */
	assert_false(sent);
	/* Different: data, a zero record for our zero blocks, the short last block. */
	assert_int_equal(virtio_blk_sync_block(f->blk, 0, 5, &sent), 0);
	assert_true(sent);
	assert_int_equal(virtio_blk_sync_block(f->blk, 1, 5, &sent), 0);
	assert_true(sent);
	assert_int_equal(virtio_blk_sync_block(f->blk, 2, 6, &sent), 0);
	assert_true(sent);
	assert_int_equal(virtio_blk_sync_block(f->blk, nblocks - 1, 7, &sent), 0);
	assert_true(sent);

	/* A write in flight to block 3: busy until its completion is processed. */
	drv_init(f);
	fill(vdrv_hva(f->vm, WBUF, 4096), 4096, 43);
	add_req(f, VIRTIO_BLK_T_OUT, 3 * DISK_BLOCK / 512 + 8, &w, 1);
	vdrv_notify(&f->drv, BLK_Q);
	assert_int_equal(vm_devices_poll(f->vm), 0); /* submitted, not reaped */
	assert_int_equal(virtio_blk_sync_block(f->blk, 3, 5, &sent), -EBUSY);
	assert_false(sent);
	assert_int_equal(virtio_blk_sync_block(f->blk, 4, 5, &sent), 0); /* a hole: zero record */
	assert_true(sent);
	assert_true(vdrv_poll_used(&f->drv, BLK_Q, 1));
	assert_int_equal(virtio_blk_sync_block(f->blk, 3, 5, &sent), 0);
	assert_true(sent);

	assert_int_equal(virtio_blk_take_log(f->blk, &log), 0);
	assert_int_equal(log.nr, 7);
	check_rec(&log, 0, 0, DISK_BLOCK, 0, blk0);
	check_rec(&log, 1, DISK_BLOCK, DISK_BLOCK, DISK_REC_ZERO, NULL);
	check_rec(&log, 2, 2 * DISK_BLOCK, DISK_BLOCK, DISK_REC_ZERO, NULL);
	check_rec(&log, 3, (nblocks - 1) * DISK_BLOCK, 4096, 0, last);
	check_rec(&log, 4, 4 * DISK_BLOCK, DISK_BLOCK, DISK_REC_ZERO, NULL);
	/* The write, logged when it completed: before the block read after it. */
	check_rec(&log, 5, 3 * DISK_BLOCK + 4096, 4096, 0, vdrv_hva(f->vm, WBUF, 4096));
	{
		static uint8_t b3[DISK_BLOCK];

		memcpy(b3 + 4096, vdrv_hva(f->vm, WBUF, 4096), 4096);
		check_rec(&log, 6, 3 * DISK_BLOCK, DISK_BLOCK, 0, b3);
	}
	assert_false(log.flush);
	disk_log_free(&log);
}

static void test_reset_inflight(void **state)
{
	struct fixture *f = *state;
	struct virtio_blk_stats st;
	struct vdrv_seg w = { WBUF, 4096, false };
	struct req r;
	uint8_t got[4096];

	drv_init(f);
	fill(vdrv_hva(f->vm, WBUF, 4096), 4096, 51);
	virtio_blk_set_logging(f->blk, true);
	r = add_req(f, VIRTIO_BLK_T_OUT, 100, &w, 1);
	vdrv_notify(&f->drv, BLK_Q);
	assert_int_equal(vm_devices_poll(f->vm), 0);
	virtio_blk_get_stats(f->blk, &st);
	assert_int_equal(st.inflight, 1);
	/* The driver resets the device: the write lands, its chain is left alone. */
	vdrv_wr(f->dev, VIRTIO_MMIO_STATUS, 0);
	for (unsigned int i = 0; i < 200 && st.inflight; i++) {
		struct pollfd p = { .fd = vm_device_fd(f->vm), .events = POLLIN };

		poll(&p, 1, 10);
		assert_int_equal(vm_devices_poll(f->vm), 0);
		virtio_blk_get_stats(f->blk, &st);
	}
	assert_int_equal(st.inflight, 0);
	assert_int_equal(vdrv_used_idx(&f->drv, BLK_Q), 0);
	assert_int_equal(status_of(f, r), 0xff);
	file_read(f->path, 100 * 512, got, sizeof(got));
	assert_memory_equal(got, vdrv_hva(f->vm, WBUF, 4096), 4096);
	/*
	 * The guest may have reused the orphan's buffer: it is not logged from
	 * it, and the next take says the log lost a write (the peer resyncs).
	 */
	{
		struct disk_log log = { 0 };

		assert_int_equal(virtio_blk_take_log(f->blk, &log), -ENODATA);
		assert_int_equal(log.nr, 0);
		disk_log_clear(&log);
		assert_int_equal(virtio_blk_take_log(f->blk, &log), 0);
		disk_log_free(&log);
	}
	virtio_blk_set_logging(f->blk, false);
	/* A new driver starts from scratch. */
	drv_init(f);
	assert_int_equal(run_req(f, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, 1), VIRTIO_BLK_S_OK);
}

static void test_drain_hash(void **state)
{
	struct fixture *f = *state;
	struct virtio_blk_stats st;
	struct vdrv_seg w = { WBUF, 8192, false };
	struct diskimg d;
	uint64_t h1, h2;
	struct req r;

	drv_init(f);
	fill(vdrv_hva(f->vm, WBUF, 8192), 8192, 61);
	r = add_req(f, VIRTIO_BLK_T_OUT, 200, &w, 1);
	vdrv_notify(&f->drv, BLK_Q);
	assert_int_equal(vm_devices_poll(f->vm), 0);
	assert_int_equal(virtio_blk_drain(f->blk), 0);
	virtio_blk_get_stats(f->blk, &st);
	assert_int_equal(st.inflight, 0);
	assert_int_equal(vdrv_used_idx(&f->drv, BLK_Q), 1);
	assert_int_equal(status_of(f, r), VIRTIO_BLK_S_OK);
	assert_int_equal(virtio_blk_hash(f->blk, &h1), 0);
	assert_int_equal(diskimg_open(&d, f->path), 0);
	assert_int_equal(diskimg_hash(&d, &h2), 0);
	diskimg_close(&d);
	assert_true(h1 == h2);
}

static void test_save_load(void **state)
{
	struct fixture *f = *state, g = { 0 };
	uint8_t blob[DEVICE_STATE_MAX], blob2[DEVICE_STATE_MAX];
	static uint8_t pattern[8192], got[16384];
	struct vdrv_seg w = { WBUF, 16384, false }, rd8k = { RBUF + 0x1000, 8192, true };
	struct dirty_set ds;
	struct req rw, rr;
	uint32_t id[2], len[2];
	int n;

	drv_init(f);
	fill(vdrv_hva(f->vm, WBUF, 16384), 16384, 71);
	rw = add_req(f, VIRTIO_BLK_T_OUT, 512, &w, 1);
	rr = add_req(f, VIRTIO_BLK_T_IN, 64, &rd8k, 1);
	vdrv_notify(&f->drv, BLK_Q);
	assert_int_equal(vm_devices_poll(f->vm), 0); /* both in flight */
	n = f->dev->ops->save(f->dev, blob, sizeof(blob));
	assert_int_equal(n, 56 + 32 + 24 + 2 + 2 * 2);
	assert_int_equal(blob[n - 6] | blob[n - 5] << 8, 2);
	assert_int_equal(blob[n - 4] | blob[n - 3] << 8, rw.head);
	assert_int_equal(blob[n - 2] | blob[n - 1] << 8, rr.head);

	/* The second VM: its own image (the secondary's copy) with data where the read goes. */
	snprintf(g.path, sizeof(g.path), "%s/second.img", f->dir);
	make_image(g.path);
	fill(pattern, sizeof(pattern), 72);
	file_write(g.path, 64 * 512, pattern, sizeof(pattern));
	assert_int_equal(new_vm(&g, g.path), 0);
	g.drv.q[BLK_Q] = f->drv.q[BLK_Q]; /* the driver's state is in the copied memory */
	g.nr_req = f->nr_req;
	memcpy(vdrv_hva(g.vm, 0, 8 << 20), vdrv_hva(f->vm, 0, 8 << 20), 8 << 20);
	/* The read buffer as the checkpoint had it: the first VM's read may have landed. */
	memset(vdrv_hva(g.vm, RBUF + 0x1000, 8192), 0, 8192);
	assert_int_equal(g.dev->ops->load(g.dev, blob, (size_t)n), 0);
	assert_int_equal(g.dev->ops->save(g.dev, blob2, sizeof(blob2)), n);
	assert_memory_equal(blob, blob2, (size_t)n);
	/* Corrupt blobs are refused. */
	assert_int_equal(g.dev->ops->load(g.dev, blob, (size_t)n - 1), -EINVAL);
	memcpy(blob2, blob, (size_t)n);
	blob2[n - 6] = 200;
	assert_int_equal(g.dev->ops->load(g.dev, blob2, (size_t)n), -EINVAL);
	assert_int_equal(dirty_set_init(&ds, g.vm->nr_pages), 0);
	vdrv_harvest(g.vm, &ds);

	/* Polled: the device re-executes both chains from guest memory. */
	assert_true(vdrv_poll_used(&g.drv, BLK_Q, 2));
	vdrv_used_elem(&g.drv, BLK_Q, 0, &id[0], &len[0]);
	vdrv_used_elem(&g.drv, BLK_Q, 1, &id[1], &len[1]);
	assert_true((id[0] == rw.head && len[0] == 1 && id[1] == rr.head && len[1] == 8193) ||
		    (id[1] == rw.head && len[1] == 1 && id[0] == rr.head && len[0] == 8193));
	assert_int_equal(status_of(&g, rw), VIRTIO_BLK_S_OK);
	assert_int_equal(status_of(&g, rr), VIRTIO_BLK_S_OK);
	file_read(g.path, 512 * 512, got, 16384);
	assert_memory_equal(got, vdrv_hva(f->vm, WBUF, 16384), 16384);
	assert_memory_equal(vdrv_hva(g.vm, RBUF + 0x1000, 8192), pattern, 8192);
	vdrv_harvest(g.vm, &ds);
	vdrv_assert_pages(
		&ds,
		(const uint64_t[]){ Q_USED >> 12, STATS >> 12, (RBUF >> 12) + 1, (RBUF >> 12) + 2 },
		4);
	/* And goes on with new requests. */
	assert_int_equal(run_req(&g, VIRTIO_BLK_T_FLUSH, 0, NULL, 0, 1), VIRTIO_BLK_S_OK);
	dirty_set_free(&ds);
	vm_free(g.vm);
	/* The first VM's requests complete too. */
	assert_true(vdrv_poll_used(&f->drv, BLK_Q, 2));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_registers, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rw, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_requests, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_stall, setup, teardown),
		cmocka_unit_test_setup_teardown(test_sync_block, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reset_inflight, setup, teardown),
		cmocka_unit_test_setup_teardown(test_drain_hash, setup, teardown),
		cmocka_unit_test_setup_teardown(test_save_load, setup, teardown),
	};

	t_require_kvm();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
