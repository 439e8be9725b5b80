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
#include "guest/kv/virtio_mmio.h"

#define VIRTIO_ID_BLK 2

#define F_BLK_RO    5
#define F_BLK_FLUSH 9

#define T_IN	0
#define T_OUT	1
#define T_FLUSH 4
#define S_OK	0

#define QSIZE	       64
#define SLOTS	       (QSIZE / 3)
#define CHUNK	       (64u * 1024) /* one data descriptor per request */
#define REQ_TIMEOUT_MS 30000

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

static struct vmmio mmio;
static uint64_t capacity;
static int has_flush;
struct vblk_stats vblk_stats;

int vblk_present(uint64_t mmio_gpa)
{
	/* An empty slot reads as all ones (vmm/vcpu.c); a device of another kind is no disk. */
	return vmmio_probe(mmio_gpa, VIRTIO_ID_BLK) == VMMIO_FOUND;
}

static void setup_queue(void)
{
	uint32_t max = vmmio_queue_max(&mmio, 0);

	if (max < 3)
		kv_panic("virtio-blk: queue too small (QueueNumMax < 3)");
	q.num = QSIZE;
	while (q.num > max)
		q.num >>= 1;
	q.slots = q.num / 3 < SLOTS ? q.num / 3 : SLOTS;
	if (!q.slots)
		q.slots = 1;
	vmmio_queue_ready(&mmio, q.num, q.desc, &q.avail, &q.used);
}

void vblk_init(uint64_t mmio_gpa)
{
	uint64_t features = vmmio_begin(&mmio, mmio_gpa, "virtio-blk");
	uint32_t lo, hi, gen;

	if (features & (1u << F_BLK_RO))
		kv_panic("virtio-blk: the disk is read-only (VIRTIO_BLK_F_RO)");
	has_flush = !!(features & (1u << F_BLK_FLUSH));
	vmmio_set_features(&mmio, 1ULL << F_VERSION_1 | (has_flush ? 1u << F_BLK_FLUSH : 0));

	/* capacity: le64 in 512-byte sectors, read twice 32 bits under the generation. */
	do {
		gen = vmmio_rd(&mmio, VM_CONFIG_GEN);
		lo = vmmio_rd(&mmio, VM_CONFIG);
		hi = vmmio_rd(&mmio, VM_CONFIG + 4);
	} while (gen != vmmio_rd(&mmio, VM_CONFIG_GEN));
	capacity = (uint64_t)hi << 32 | lo;

	setup_queue();
	vmmio_driver_ok(&mmio);
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

	vmmio_notify(&mmio, 0, &q.used.flags);
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
