/* SPDX-License-Identifier: MIT */
/*
 * A poll-mode virtio-blk driver for builtin:kv's disk log (aof.c): virtio 1.2
 * section 5.2 over MMIO (transport version 2), one split virtqueue, features
 * VIRTIO_F_VERSION_1 and, if offered, VIRTIO_BLK_F_FLUSH (without it the device
 * promises nothing about a volatile cache, and flush is a no-op here). I/O is
 * synchronous: a transfer is cut into requests of at most CHUNK bytes, up to
 * SLOTS of them go to the device with one QueueNotify, and the driver polls the
 * used ring until all are back, then checks every status byte. A request is three
 * descriptors: header (device-readable), data, status (device-writable). A device
 * that does not answer within REQ_TIMEOUT_MS is a panic: its descriptors are still
 * its own, nothing here could reuse them safely.
 */
#include <errno.h>
#include <string.h>

#include "guest/kv/aof.h"
#include "guest/kv/kv.h"

/* MMIO registers (virtio 1.2, 4.2.2), the same as virtio_net.c's. */
#define VM_MAGIC	  0x000
#define VM_VERSION	  0x004
#define VM_DEVICE_ID	  0x008
#define VM_DEV_FEATURES	  0x010
#define VM_DEV_FEAT_SEL	  0x014
#define VM_DRV_FEATURES	  0x020
#define VM_DRV_FEAT_SEL	  0x024
#define VM_QUEUE_SEL	  0x030
#define VM_QUEUE_NUM_MAX  0x034
#define VM_QUEUE_NUM	  0x038
#define VM_QUEUE_READY	  0x044
#define VM_QUEUE_NOTIFY	  0x050
#define VM_STATUS	  0x070
#define VM_QUEUE_DESC_LO  0x080
#define VM_QUEUE_DESC_HI  0x084
#define VM_QUEUE_AVAIL_LO 0x090
#define VM_QUEUE_AVAIL_HI 0x094
#define VM_QUEUE_USED_LO  0x0a0
#define VM_QUEUE_USED_HI  0x0a4
#define VM_CONFIG_GEN	  0x0fc
#define VM_CONFIG	  0x100

#define MMIO_MAGIC    0x74726976 /* "virt" */
#define VIRTIO_ID_BLK 2

#define ST_ACKNOWLEDGE	      1
#define ST_DRIVER	      2
#define ST_DRIVER_OK	      4
#define ST_FEATURES_OK	      8
#define ST_DEVICE_NEEDS_RESET 64
#define ST_FAILED	      128

#define F_BLK_RO    5
#define F_BLK_FLUSH 9
#define F_VERSION_1 32

#define T_IN	0
#define T_OUT	1
#define T_FLUSH 4
#define S_OK	0

#define DESC_F_NEXT	     1
#define DESC_F_WRITE	     2
#define AVAIL_F_NO_INTERRUPT 1
#define USED_F_NO_NOTIFY     1

#define QSIZE	       64
#define SLOTS	       (QSIZE / 3)
#define CHUNK	       (64u * 1024) /* one data descriptor per request */
#define REQ_TIMEOUT_MS 30000

struct vq_desc {
	uint64_t addr;
	uint32_t len;
	uint16_t flags;
	uint16_t next;
};

struct blk_req_hdr {
	uint32_t type;
	uint32_t reserved;
	uint64_t sector;
};

static struct {
	struct vq_desc desc[QSIZE] __attribute__((aligned(4096)));
	struct {
		uint16_t flags;
		uint16_t idx;
		uint16_t ring[QSIZE];
		uint16_t used_event;
	} avail __attribute__((aligned(4096)));
	struct {
		uint16_t flags;
		uint16_t idx;
		struct {
			uint32_t id;
			uint32_t len;
		} ring[QSIZE];
		uint16_t avail_event;
	} used __attribute__((aligned(4096)));
	struct blk_req_hdr hdr[SLOTS];
	volatile uint8_t status[SLOTS];
	uint16_t num;
	uint16_t avail_idx;
	uint16_t used_seen;
	uint16_t slots;
} q;

static volatile uint8_t *mmio;
static uint64_t capacity;
static int has_flush;
struct vblk_stats vblk_stats;

static uint32_t rd(uint32_t off)
{
	return *(volatile uint32_t *)(mmio + off);
}

static void wr(uint32_t off, uint32_t v)
{
	*(volatile uint32_t *)(mmio + off) = v;
}

int vblk_present(uint64_t mmio_gpa)
{
	volatile uint8_t *m = (volatile uint8_t *)(uintptr_t)mmio_gpa;

	/* An empty slot reads as all ones (vmm/vcpu.c); a device of another kind is no disk. */
	return *(volatile uint32_t *)(m + VM_MAGIC) == MMIO_MAGIC &&
	       *(volatile uint32_t *)(m + VM_VERSION) == 2 &&
	       *(volatile uint32_t *)(m + VM_DEVICE_ID) == VIRTIO_ID_BLK;
}

static void setup_queue(void)
{
	uint32_t max;
	uint64_t a;

	wr(VM_QUEUE_SEL, 0);
	if (rd(VM_QUEUE_READY))
		kv_panic("virtio-blk: queue already ready after reset");
	max = rd(VM_QUEUE_NUM_MAX);
	if (max < 3)
		kv_panic("virtio-blk: queue too small (QueueNumMax < 3)");
	q.num = QSIZE;
	while (q.num > max)
		q.num >>= 1;
	q.slots = q.num / 3 < SLOTS ? q.num / 3 : SLOTS;
	if (!q.slots)
		q.slots = 1;
	wr(VM_QUEUE_NUM, q.num);
	a = (uint64_t)(uintptr_t)q.desc;
	wr(VM_QUEUE_DESC_LO, (uint32_t)a);
	wr(VM_QUEUE_DESC_HI, (uint32_t)(a >> 32));
	a = (uint64_t)(uintptr_t)&q.avail;
	wr(VM_QUEUE_AVAIL_LO, (uint32_t)a);
	wr(VM_QUEUE_AVAIL_HI, (uint32_t)(a >> 32));
	a = (uint64_t)(uintptr_t)&q.used;
	wr(VM_QUEUE_USED_LO, (uint32_t)a);
	wr(VM_QUEUE_USED_HI, (uint32_t)(a >> 32));
	q.avail.flags = AVAIL_F_NO_INTERRUPT; /* polled */
	wr(VM_QUEUE_READY, 1);
}

void vblk_init(uint64_t mmio_gpa)
{
	uint32_t lo, hi, gen;

	mmio = (volatile uint8_t *)(uintptr_t)mmio_gpa;
	wr(VM_STATUS, 0);
	while (rd(VM_STATUS))
		cpu_relax();
	wr(VM_STATUS, ST_ACKNOWLEDGE);
	wr(VM_STATUS, ST_ACKNOWLEDGE | ST_DRIVER);

	wr(VM_DEV_FEAT_SEL, 0);
	lo = rd(VM_DEV_FEATURES);
	wr(VM_DEV_FEAT_SEL, 1);
	hi = rd(VM_DEV_FEATURES);
	if (!(hi & (1u << (F_VERSION_1 - 32))))
		kv_panic("virtio-blk: device lacks VIRTIO_F_VERSION_1");
	if (lo & (1u << F_BLK_RO))
		kv_panic("virtio-blk: the disk is read-only (VIRTIO_BLK_F_RO)");
	has_flush = !!(lo & (1u << F_BLK_FLUSH));
	wr(VM_DRV_FEAT_SEL, 0);
	wr(VM_DRV_FEATURES, has_flush ? 1u << F_BLK_FLUSH : 0);
	wr(VM_DRV_FEAT_SEL, 1);
	wr(VM_DRV_FEATURES, 1u << (F_VERSION_1 - 32));
	wr(VM_STATUS, ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK);
	if (!(rd(VM_STATUS) & ST_FEATURES_OK)) {
		wr(VM_STATUS, ST_FAILED);
		kv_panic("virtio-blk: device refused our features (FEATURES_OK did not stick)");
	}

	/* capacity: le64 in 512-byte sectors, read twice 32 bits under the generation. */
	do {
		gen = rd(VM_CONFIG_GEN);
		lo = rd(VM_CONFIG);
		hi = rd(VM_CONFIG + 4);
	} while (gen != rd(VM_CONFIG_GEN));
	capacity = (uint64_t)hi << 32 | lo;

	setup_queue();
	wr(VM_STATUS, ST_ACKNOWLEDGE | ST_DRIVER | ST_FEATURES_OK | ST_DRIVER_OK);
	if (rd(VM_STATUS) & ST_DEVICE_NEEDS_RESET)
		kv_panic("virtio-blk: device needs reset (DEVICE_NEEDS_RESET)");
}

uint64_t vblk_sectors(void)
{
	return capacity;
}

int vblk_flush_supported(void)
{
	return has_flush;
}

/*
 * Queues request `slot`: header at descriptor 3 * slot, data (none for a flush)
 * at the next, status at the one after.
 */
static void queue_req(uint16_t slot, uint32_t type, uint64_t sector, void *data, uint32_t len)
{
	uint16_t d = (uint16_t)(slot * 3);

	q.hdr[slot].type = type;
	q.hdr[slot].reserved = 0;
	q.hdr[slot].sector = sector;
	q.status[slot] = 0xff;
	q.desc[d].addr = (uint64_t)(uintptr_t)&q.hdr[slot];
	q.desc[d].len = sizeof(q.hdr[slot]);
	q.desc[d].flags = DESC_F_NEXT;
	q.desc[d].next = (uint16_t)(data ? d + 1 : d + 2);
	q.desc[d + 1].addr = (uint64_t)(uintptr_t)data;
	q.desc[d + 1].len = len;
	q.desc[d + 1].flags = DESC_F_NEXT | (type == T_IN ? DESC_F_WRITE : 0);
	q.desc[d + 1].next = (uint16_t)(d + 2);
	q.desc[d + 2].addr = (uint64_t)(uintptr_t)&q.status[slot];
	q.desc[d + 2].len = 1;
	q.desc[d + 2].flags = DESC_F_WRITE;
	q.desc[d + 2].next = 0;
	q.avail.ring[q.avail_idx & (q.num - 1)] = d;
	__atomic_thread_fence(__ATOMIC_RELEASE);
	q.avail_idx++;
	__atomic_store_n(&q.avail.idx, q.avail_idx, __ATOMIC_RELEASE);
}

/*
 * Notifies, then polls until the used ring has caught up with every request.
 * The timeout counts polling time only: a TSC jump (a checkpoint pause, a
 * failover to a host whose TSC is far ahead or behind) adds at most 10 ms.
 */
static int run_reqs(uint16_t n)
{
	uint64_t step = 10 * kv_params->tsc_khz,
		 limit = (uint64_t)REQ_TIMEOUT_MS * kv_params->tsc_khz;
	uint64_t last = rdtsc(), waited = 0;
	int err = 0;

	__atomic_thread_fence(__ATOMIC_SEQ_CST);
	if (!(__atomic_load_n(&q.used.flags, __ATOMIC_RELAXED) & USED_F_NO_NOTIFY))
		wr(VM_QUEUE_NOTIFY, 0);
	vblk_stats.notifies++;
	while (q.used_seen != q.avail_idx) {
		uint16_t used = __atomic_load_n(&q.used.idx, __ATOMIC_ACQUIRE);
		uint64_t now;

		if (used != q.used_seen) {
			q.used_seen = used;
			continue;
		}
		now = rdtsc();
		waited += now > last ? (now - last < step ? now - last : step) : 0;
		last = now;
		if (waited > limit)
			kv_panic("virtio-blk: no answer from the device in 30 s");
		cpu_relax();
	}
	for (uint16_t i = 0; i < n; i++) {
		vblk_stats.requests++;
		if (q.status[i] != S_OK) {
			vblk_stats.errors++;
			err = -EIO;
		}
	}
	return err;
}

static int transfer(uint32_t type, uint64_t sector, uint8_t *buf, uint64_t count)
{
	uint64_t bytes = count * AOF_SECTOR;
	int err = 0;

	if (sector > capacity || count > capacity - sector)
		return -EINVAL;
	while (bytes) {
		uint16_t n = 0;

		while (bytes && n < q.slots) {
			uint32_t len = bytes > CHUNK ? CHUNK : (uint32_t)bytes;

			queue_req(n++, type, sector, buf, len);
			sector += len / AOF_SECTOR;
			buf += len;
			bytes -= len;
		}
		err = run_reqs(n);
		if (err)
			return err;
	}
	return 0;
}

static int vblk_read(void *ctx, uint64_t sector, void *buf, uint64_t count)
{
	(void)ctx;
	vblk_stats.read_bytes += count * AOF_SECTOR;
	return transfer(T_IN, sector, buf, count);
}

static int vblk_write(void *ctx, uint64_t sector, const void *buf, uint64_t count)
{
	(void)ctx;
	vblk_stats.write_bytes += count * AOF_SECTOR;
	return transfer(T_OUT, sector, (uint8_t *)(uintptr_t)buf, count);
}

/* Only after the writes it covers have completed (virtio 1.2, 5.2.6.2). */
static int vblk_flush(void *ctx)
{
	(void)ctx;
	if (!has_flush)
		return 0;
	vblk_stats.flushes++;
	queue_req(0, T_FLUSH, 0, NULL, 0);
	return run_reqs(1);
}

const struct aof_blk_ops vblk_ops = {
	.read = vblk_read,
	.write = vblk_write,
	.flush = vblk_flush,
};
