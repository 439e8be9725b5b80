// SPDX-License-Identifier: MIT
/*
 * virtio-blk on a disk image (virtio_blk.h): the request queue handler, run by
 * the transport on the owner thread with the device locked, and the image's
 * io_uring, whose completions wake the owner through the VM's device eventfd.
 *
 * A request lives in one of VIRTIO_BLK_INFLIGHT_MAX slots from submission to
 * completion; io_uring user_data is the slot index + 1 (0: a NOP nobody
 * waits for). Guest memory is touched only under the device lock on the owner:
 * when a chain is started (header, OUT data copied to the log) and when its
 * completion is processed (status, used ring, dirty marks).
 *
 * The transport's save and load are wrapped (vdev.dops) to append the heads of
 * the chains in flight, which a loaded device re-executes (virtio_blk.h).
 */
#include <endian.h>
#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/diskimg.h"
#include "lib/disklog.h"
#include "lib/log.h"
#include "lib/stats.h"
#include "vmm/virtio_blk.h"
#include "vmm/virtio_mmio.h"
#include "vmm/vm.h"

#define BLK_Q		 0
#define BLK_RING_ENTRIES 128 /* > VIRTIO_BLK_INFLIGHT_MAX: a free SQE for every request */
#define BLK_CONFIG_LEN	 24  /* capacity, size_max, seg_max, geometry, blk_size */
/* The transport's blob for one queue (virtio_mmio.h: 56 + 32 * queues + config). */
#define BLK_TRANSPORT_SAVED (56 + 32 + BLK_CONFIG_LEN)
#define BLK_SAVED_MAX	    (BLK_TRANSPORT_SAVED + 2 + 2 * VIRTIO_BLK_INFLIGHT_MAX)

_Static_assert(BLK_SAVED_MAX <= DEVICE_STATE_MAX, "in-flight heads fit the device blob");
_Static_assert(BLK_RING_ENTRIES > VIRTIO_BLK_INFLIGHT_MAX, "an SQE for every request");
_Static_assert((uint64_t)VIRTIO_BLK_SEG_MAX *VIRTIO_BLK_SIZE_MAX <= VIRTIO_BLK_REQ_MAX,
	       "the largest request a driver may build is one the device takes");

struct blk_req {
	bool busy;
	bool orphan; /* the driver reset the device since: leave its queue alone */
	uint8_t type;
	uint16_t head;
	uint64_t seq;	   /* submission order */
	uint64_t start_ns; /* taken from the queue (latency) */
	uint64_t offset;
	uint32_t len; /* data bytes */
	uint8_t *status;
	uint64_t status_gpa;
	unsigned int niov;
	struct iovec iov[VQ_NUM_MAX];
	uint64_t gpa[VQ_NUM_MAX]; /* of each iovec, to mark read data dirty */
};

struct virtio_blk {
	struct virtio_dev vdev;
	bool vdev_init;
	struct diskimg img;
	char serial[VIRTIO_BLK_ID_BYTES];
	bool ring_init;
	struct io_uring ring;
	int (*transport_save)(struct device *dev, uint8_t *buf, size_t len);
	int (*transport_load)(struct device *dev, const uint8_t *buf, size_t len);

	/* Under vdev.lock. */
	struct blk_req *reqs; /* VIRTIO_BLK_INFLIGHT_MAX slots */
	unsigned int nr_inflight;
	uint64_t inflight_write_bytes; /* OUT data submitted, not completed: the log's, later */
	uint64_t next_seq;
	uint16_t replay[VIRTIO_BLK_INFLIGHT_MAX]; /* loaded heads still to re-execute */
	unsigned int nr_replay;
	bool closing;
	bool logging;
	bool log_lost; /* a write reached the image but not the log: take_log says so */
	bool stalled;  /* the log bound stopped the queue */
	bool warned;   /* a backend failure was logged */
	int backend_err;
	struct disk_log log;
	uint8_t *copy; /* OUT data for the log */
	size_t copy_cap;
	uint8_t *block; /* DISK_BLOCK, for the sync */
	struct virtio_blk_stats stats;
	struct histogram lat[VIRTIO_BLK_LAT_TYPES];	   /* us, the whole run */
	struct histogram lat_window[VIRTIO_BLK_LAT_TYPES]; /* us, since the last take */
	struct vq_chain chain;
};

static struct virtio_blk *to_blk(struct virtio_dev *vdev)
{
	return (struct virtio_blk *)vdev;
}

static struct virtio_blk *dev_to_blk(struct device *dev)
{
	return to_blk(dev->priv);
}

static void blk_warn_once(struct virtio_blk *b, const char *what, int err)
{
	if (b->warned)
		return;
	b->warned = true;
	log_warning("virtio-blk: %s on %s failed: %s (the guest sees I/O errors)", what,
		    b->img.path, strerror(-err));
}

/* The chain's bytes of one direction from `skip`, `len` of them, as iovecs. */
static void blk_build_iov(struct blk_req *q, const struct vq_chain *c, bool write, uint64_t skip,
			  uint64_t len)
{
	q->niov = 0;
	for (unsigned int i = 0; i < c->nr && len; i++) {
		const struct vq_seg *s = &c->seg[i];
		uint64_t n;

		if (s->write != write)
			continue;
		if (skip >= s->len) {
			skip -= s->len;
			continue;
		}
		n = s->len - skip < len ? s->len - skip : len;
		q->iov[q->niov] = (struct iovec){ .iov_base = s->hva + skip, .iov_len = n };
		q->gpa[q->niov++] = s->gpa + skip;
		len -= n;
		skip = 0;
	}
}

/* Lock held: answers a chain at once. */
static void blk_answer(struct virtio_blk *b, const struct vq_chain *c, uint8_t status,
		       uint32_t written, bool *used)
{
	const struct vq_seg *last = &c->seg[c->nr - 1];
	struct vm *vm = b->vdev.vm;

	if (status != VIRTIO_BLK_S_OK)
		b->stats.errors++;
	last->hva[last->len - 1] = status;
	vm_mark_device_dirty(vm, last->gpa + last->len - 1, 1);
	if (vq_push(&b->vdev.vq[BLK_Q], vm, c->head, written + 1) == 0)
		*used = true;
}

static struct io_uring_sqe *blk_get_sqe(struct virtio_blk *b)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&b->ring);

	if (!sqe) {
		io_uring_submit(&b->ring);
		sqe = io_uring_get_sqe(&b->ring); /* NULL cannot happen: BLK_RING_ENTRIES */
	}
	return sqe;
}

/* Fills a request's SQE. */
static void blk_prep(struct virtio_blk *b, struct blk_req *q, struct io_uring_sqe *sqe)
{
	switch (q->type) {
	case VIRTIO_BLK_T_IN:
		io_uring_prep_readv(sqe, b->img.fd, q->iov, q->niov, q->offset);
		break;
	case VIRTIO_BLK_T_OUT:
		io_uring_prep_writev(sqe, b->img.fd, q->iov, q->niov, q->offset);
		break;
	default:
		/* IO_DRAIN: starts once everything submitted before it has completed. */
		io_uring_prep_fsync(sqe, b->img.fd, IORING_FSYNC_DATASYNC);
		io_uring_sqe_set_flags(sqe, IOSQE_IO_DRAIN);
		break;
	}
	io_uring_sqe_set_data64(sqe, (uint64_t)(q - b->reqs) + 1);
}

/* Submits a request again (after -EAGAIN): false if no SQE. */
static bool blk_resubmit(struct virtio_blk *b, struct blk_req *q)
{
	struct io_uring_sqe *sqe = blk_get_sqe(b);

	if (sqe)
		blk_prep(b, q, sqe);
	return sqe;
}

/* Lock held: records a completed OUT or FLUSH in the log (its data copied now). */
static int blk_log_req(struct virtio_blk *b, const struct blk_req *q)
{
	size_t done = 0;
	int r;

	if (!b->logging || q->type == VIRTIO_BLK_T_IN)
		return 0;
	if (q->type == VIRTIO_BLK_T_FLUSH)
		return disk_log_append(&b->log, 0, NULL, 0, DISK_REC_FLUSH);
	if (q->len > b->copy_cap) {
		uint8_t *p = realloc(b->copy, q->len);

		if (!p)
			return -ENOMEM;
		b->copy = p;
		b->copy_cap = q->len;
	}
	for (unsigned int i = 0; i < q->niov; i++) {
		memcpy(b->copy + done, q->iov[i].iov_base, q->iov[i].iov_len);
		done += q->iov[i].iov_len;
	}
	r = disk_log_append(&b->log, q->offset, b->copy, q->len, 0);
	if (r == 0)
		b->stats.logged_bytes += q->len;
	return r;
}

/*
 * Lock held: checks the header and the chain's shape. Returns the status to
 * answer at once, or -1 if the request goes to the image (q filled in).
 */
static int blk_parse(struct virtio_blk *b, const struct vq_chain *c, struct blk_req *q,
		     uint32_t *ret_written)
{
	uint8_t hdr[VIRTIO_BLK_HDR_LEN];
	uint32_t type;
	uint64_t sector, len;
	bool seen_write = false;

	*ret_written = 0;
	for (unsigned int i = 0; i < c->nr; i++) {
		if (!c->seg[i].write && seen_write)
			return VIRTIO_BLK_S_IOERR; /* readable after writable */
		seen_write |= c->seg[i].write;
	}
	if (c->out_len < VIRTIO_BLK_HDR_LEN)
		return VIRTIO_BLK_S_IOERR;
	vq_chain_read(c, 0, hdr, sizeof(hdr));
	memcpy(&type, hdr, 4);
	memcpy(&sector, hdr + 8, 8);
	type = le32toh(type);
	sector = le64toh(sector);

	switch (type) {
	case VIRTIO_BLK_T_IN:
		if (c->out_len != VIRTIO_BLK_HDR_LEN)
			return VIRTIO_BLK_S_IOERR; /* data the device would read */
		len = c->in_len - 1;
		break;
	case VIRTIO_BLK_T_OUT:
		if (c->in_len != 1)
			return VIRTIO_BLK_S_IOERR; /* data the device would write */
		len = c->out_len - VIRTIO_BLK_HDR_LEN;
		break;
	case VIRTIO_BLK_T_FLUSH:
		q->type = VIRTIO_BLK_T_FLUSH;
		q->len = 0;
		q->niov = 0;
		return -1;
	case VIRTIO_BLK_T_GET_ID: {
		uint8_t id[VIRTIO_BLK_ID_BYTES];
		size_t n = c->in_len - 1 < sizeof(id) ? c->in_len - 1 : sizeof(id);

		memcpy(id, b->serial, sizeof(id));
		*ret_written = (uint32_t)vq_chain_write(c, b->vdev.vm, 0, id, n);
		return VIRTIO_BLK_S_OK;
	}
	default:
		return VIRTIO_BLK_S_UNSUPP;
	}
	if (len % VIRTIO_BLK_SECTOR || len > VIRTIO_BLK_REQ_MAX ||
	    sector > b->img.size / VIRTIO_BLK_SECTOR ||
	    len > b->img.size - sector * VIRTIO_BLK_SECTOR)
		return VIRTIO_BLK_S_IOERR;
	if (!len)
		return VIRTIO_BLK_S_OK;
	q->type = (uint8_t)type;
	q->offset = sector * VIRTIO_BLK_SECTOR;
	q->len = (uint32_t)len;
	if (type == VIRTIO_BLK_T_IN)
		blk_build_iov(q, c, true, 0, len);
	else
		blk_build_iov(q, c, false, VIRTIO_BLK_HDR_LEN, len);
	return -1;
}

static struct blk_req *blk_free_slot(struct virtio_blk *b)
{
	for (unsigned int i = 0; i < VIRTIO_BLK_INFLIGHT_MAX; i++)
		if (!b->reqs[i].busy)
			return &b->reqs[i];
	return NULL; /* callers check nr_inflight first */
}

/* Lock held, a slot free: answers a chain or starts its I/O. */
static void blk_start(struct virtio_blk *b, const struct vq_chain *c, bool *used)
{
	const struct vq_seg *last = &c->seg[c->nr - 1];
	struct blk_req *q = blk_free_slot(b);
	struct io_uring_sqe *sqe;
	uint32_t written;
	int status;

	if (!last->write || !last->len) {
		/* No status byte to answer in: give the chain back, written nothing. */
		b->stats.errors++;
		if (vq_push(&b->vdev.vq[BLK_Q], b->vdev.vm, c->head, 0) == 0)
			*used = true;
		return;
	}
	status = blk_parse(b, c, q, &written);
	if (status >= 0) {
		blk_answer(b, c, (uint8_t)status, written, used);
		return;
	}
	q->head = c->head;
	q->status = last->hva + last->len - 1;
	q->status_gpa = last->gpa + last->len - 1;
	q->orphan = false;
	sqe = blk_get_sqe(b);
	if (!sqe) {
		blk_answer(b, c, VIRTIO_BLK_S_IOERR, 0, used);
		return;
	}
	blk_prep(b, q, sqe);
	q->busy = true;
	q->start_ns = clock_now_ns();
	q->seq = b->next_seq++;
	b->nr_inflight++;
	if (q->type == VIRTIO_BLK_T_OUT)
		b->inflight_write_bytes += q->len;
}

/* Lock held: a request answered OK, from the queue to the used ring. */
static void blk_account_latency(struct virtio_blk *b, const struct blk_req *q)
{
	unsigned int t = q->type == VIRTIO_BLK_T_IN    ? VIRTIO_BLK_LAT_READ
			 : q->type == VIRTIO_BLK_T_OUT ? VIRTIO_BLK_LAT_WRITE
						       : VIRTIO_BLK_LAT_FLUSH;
	uint64_t us = (clock_now_ns() - q->start_ns) / NS_PER_US;

	histogram_add(&b->lat[t], us);
	histogram_add(&b->lat_window[t], us);
}

/* Lock held: one request's completion. */
static void blk_finish(struct virtio_blk *b, struct blk_req *q, int res, bool *used)
{
	struct vm *vm = b->vdev.vm;
	uint8_t status = VIRTIO_BLK_S_OK;
	uint32_t written = 0;

	q->busy = false;
	b->nr_inflight--;
	if (q->type == VIRTIO_BLK_T_OUT)
		b->inflight_write_bytes -= q->len;
	if (b->closing)
		return;
	/* The kernel wrote these, whatever the result, and perhaps before a checkpoint. */
	if (q->type == VIRTIO_BLK_T_IN)
		for (unsigned int i = 0; i < q->niov; i++)
			vm_mark_device_dirty(vm, q->gpa[i], q->iov[i].iov_len);
	if (res < 0 || (q->type != VIRTIO_BLK_T_FLUSH && (uint32_t)res != q->len)) {
		status = VIRTIO_BLK_S_IOERR;
		b->stats.errors++;
		blk_warn_once(b, q->type == VIRTIO_BLK_T_FLUSH ? "a flush" : "I/O",
			      res < 0 ? res : -EIO);
	} else if (q->type == VIRTIO_BLK_T_IN) {
		written = q->len;
		b->stats.reads++;
		b->stats.read_bytes += q->len;
	} else if (q->type == VIRTIO_BLK_T_OUT) {
		b->stats.writes++;
		b->stats.write_bytes += q->len;
	} else {
		b->stats.flushes++;
	}
	/*
	 * Logged once on the image, in completion order: a failed write is in
	 * neither image, and a write still in flight at a checkpoint is in the
	 * next epoch's log (and the checkpoint's device state, which completes
	 * it again on a restored device).
	 */
	if (status == VIRTIO_BLK_S_OK && q->orphan && q->type == VIRTIO_BLK_T_OUT) {
		/* After a driver reset the buffer may hold other bytes than the image. */
		b->log_lost |= b->logging;
	} else if (status == VIRTIO_BLK_S_OK) {
		int r = blk_log_req(b, q);

		if (r < 0) {
			/* On this image, but not in the log: the next take_log says so. */
			b->log_lost = true;
			blk_warn_once(b, "logging a write", r);
		}
	} else if (q->type == VIRTIO_BLK_T_OUT && res > 0) {
		b->log_lost |= b->logging; /* a short write: part of it is on this image */
	}
	if (q->orphan)
		return;
	if (status == VIRTIO_BLK_S_OK)
		blk_account_latency(b, q);
	*q->status = status;
	vm_mark_device_dirty(vm, q->status_gpa, 1);
	if (vq_push(&b->vdev.vq[BLK_Q], vm, q->head, written + 1) == 0)
		*used = true;
}

/* Lock held: processes the completions the ring holds. */
static void blk_reap(struct virtio_blk *b, bool *used)
{
	struct io_uring_cqe *cqe;

	while (io_uring_peek_cqe(&b->ring, &cqe) == 0) {
		uint64_t ud = io_uring_cqe_get_data64(cqe);
		int res = cqe->res;
		struct blk_req *q;

		io_uring_cqe_seen(&b->ring, cqe);
		if (!ud || ud > VIRTIO_BLK_INFLIGHT_MAX)
			continue;
		q = &b->reqs[ud - 1];
		if ((res == -EAGAIN || res == -EINTR) && blk_resubmit(b, q))
			continue;
		blk_finish(b, q, res, used);
	}
}

static void blk_submit(struct virtio_blk *b)
{
	int r = io_uring_submit(&b->ring);

	/* Transient failures leave the SQEs queued for the next poll's submit. */
	if (r < 0 && r != -EAGAIN && r != -EBUSY && r != -EINTR && !b->backend_err)
		b->backend_err = r;
}

/*
 * Lock held: whether the log, with what the requests in flight will add to it,
 * is over its bound (VIRTIO_BLK_LOG_MAX bytes, VIRTIO_BLK_LOG_RECS_MAX records:
 * each write in flight may add one record per DISK_REC_MAX of its data).
 */
static bool blk_log_full(const struct virtio_blk *b)
{
	uint64_t recs = b->log.nr + b->nr_inflight + b->inflight_write_bytes / DISK_REC_MAX;

	return disk_log_bytes(&b->log) + b->inflight_write_bytes > VIRTIO_BLK_LOG_MAX ||
	       recs > VIRTIO_BLK_LOG_RECS_MAX;
}

static bool blk_can_pop(struct virtio_blk *b)
{
	const struct virtqueue *vq = &b->vdev.vq[BLK_Q];

	return b->nr_inflight < VIRTIO_BLK_INFLIGHT_MAX && virtio_dev_live(&b->vdev) && vq->ready &&
	       !vq->broken;
}

/* Lock held: re-executes loaded chains, then starts what the driver made available. */
static void blk_process(struct virtio_blk *b)
{
	struct virtio_dev *vdev = &b->vdev;
	struct virtqueue *vq = &vdev->vq[BLK_Q];
	bool used = false;

	while (b->nr_replay && blk_can_pop(b)) {
		uint16_t head = b->replay[0];

		b->nr_replay--;
		memmove(b->replay, b->replay + 1, b->nr_replay * sizeof(b->replay[0]));
		if (vq_chain_at(vq, vdev->vm, head, &b->chain) < 0)
			break;
		blk_start(b, &b->chain, &used);
	}
	while (!b->nr_replay && blk_can_pop(b)) {
		/*
		 * Logging or not (the log is empty then): writes in flight when a
		 * sync switches logging on all land in its first epoch's log.
		 */
		if (blk_log_full(b)) {
			/*
			 * Requests wait in the avail ring until the checkpoint takes the
			 * log, or (not logging) until writes in flight complete.
			 */
			if (b->logging && !b->stalled && vq_has_avail(vq, vdev->vm)) {
				b->stalled = true;
				b->stats.log_stalls++;
			}
			break;
		}
		if (vq_pop(vq, vdev->vm, &b->chain) <= 0)
			break;
		blk_start(b, &b->chain, &used);
	}
	if (used)
		virtio_dev_used(vdev, BLK_Q);
	blk_submit(b);
}

static void blk_queue_notify(struct virtio_dev *vdev, unsigned int q)
{
	(void)q;
	blk_process(to_blk(vdev));
}

static int blk_poll(struct virtio_dev *vdev)
{
	struct virtio_blk *b = to_blk(vdev);
	bool used = false;
	int r;

	blk_reap(b, &used);
	if (used)
		virtio_dev_used(vdev, BLK_Q);
	blk_process(b); /* slots freed, a restarted queue, loaded chains; submits */
	if (vdev->vq[BLK_Q].broken)
		virtio_dev_needs_reset(vdev);
	r = b->backend_err;
	b->backend_err = 0;
	return r;
}

static void blk_reset(struct virtio_dev *vdev)
{
	struct virtio_blk *b = to_blk(vdev);

	/* I/O cannot be taken back: it completes, but its chains are not the driver's now. */
	for (unsigned int i = 0; i < VIRTIO_BLK_INFLIGHT_MAX; i++)
		if (b->reqs[i].busy)
			b->reqs[i].orphan = true;
	b->nr_replay = 0;
}

/* Waits (a second at most) for the I/O still in flight, then closes everything. */
static void blk_destroy(struct virtio_blk *b)
{
	if (b->ring_init) {
		struct __kernel_timespec ts = { .tv_sec = 1 };
		bool used = false;

		b->closing = true;
		while (b->nr_inflight) {
			struct io_uring_cqe *cqe;

			if (io_uring_submit_and_wait_timeout(&b->ring, &cqe, 1, &ts, NULL) < 0)
				break;
			blk_reap(b, &used);
		}
		io_uring_queue_exit(&b->ring);
	}
	diskimg_close(&b->img);
	disk_log_free(&b->log);
	free(b->copy);
	free(b->block);
	free(b->reqs);
	if (b->vdev_init)
		virtio_dev_destroy(&b->vdev);
	free(b);
}

static void blk_free(struct virtio_dev *vdev)
{
	blk_destroy(to_blk(vdev));
}

/* Transport blob, le16 count, le16 heads: loaded chains not yet re-executed, then in flight. */
static int blk_save(struct device *dev, uint8_t *buf, size_t len)
{
	struct virtio_blk *b = dev_to_blk(dev);
	const struct blk_req *order[VIRTIO_BLK_INFLIGHT_MAX];
	unsigned int n = 0, count;
	uint16_t v;
	int t = b->transport_save(dev, buf, len);
	uint8_t *p;

	if (t < 0)
		return t;
	pthread_mutex_lock(&b->vdev.lock);
	for (unsigned int i = 0; i < VIRTIO_BLK_INFLIGHT_MAX; i++) {
		const struct blk_req *q = &b->reqs[i];
		unsigned int j;

		if (!q->busy || q->orphan)
			continue;
		/* Insertion by submission order: a few dozen at most. */
		for (j = n++; j && order[j - 1]->seq > q->seq; j--)
			order[j] = order[j - 1];
		order[j] = q;
	}
	count = b->nr_replay + n;
	if ((size_t)t + 2 + 2 * count > len || count > VIRTIO_BLK_INFLIGHT_MAX) {
		pthread_mutex_unlock(&b->vdev.lock);
		return -ENOSPC;
	}
	p = buf + t;
	v = htole16((uint16_t)count);
	memcpy(p, &v, 2);
	p += 2;
	for (unsigned int i = 0; i < count; i++, p += 2) {
		v = htole16(i < b->nr_replay ? b->replay[i] : order[i - b->nr_replay]->head);
		memcpy(p, &v, 2);
	}
	pthread_mutex_unlock(&b->vdev.lock);
	return t + 2 + 2 * (int)count;
}

static int blk_load(struct device *dev, const uint8_t *buf, size_t len)
{
	struct virtio_blk *b = dev_to_blk(dev);
	struct virtqueue *vq = &b->vdev.vq[BLK_Q];
	uint16_t count, heads[VIRTIO_BLK_INFLIGHT_MAX];
	bool busy;
	int r;

	if (len < BLK_TRANSPORT_SAVED + 2)
		return -EINVAL;
	memcpy(&count, buf + BLK_TRANSPORT_SAVED, 2);
	count = le16toh(count);
	if (count > VIRTIO_BLK_INFLIGHT_MAX || len != BLK_TRANSPORT_SAVED + 2 + 2u * count)
		return -EINVAL;
	for (unsigned int i = 0; i < count; i++) {
		memcpy(&heads[i], buf + BLK_TRANSPORT_SAVED + 2 + 2 * i, 2);
		heads[i] = le16toh(heads[i]);
	}
	pthread_mutex_lock(&b->vdev.lock);
	busy = b->nr_inflight != 0;
	pthread_mutex_unlock(&b->vdev.lock);
	if (busy)
		return -EBUSY; /* loads go into devices that never ran */
	r = b->transport_load(dev, buf, BLK_TRANSPORT_SAVED);
	if (r < 0)
		return r;
	pthread_mutex_lock(&b->vdev.lock);
	b->nr_replay = 0;
	for (unsigned int i = 0; i < count; i++) {
		if (!vq->ready || heads[i] >= vq->num) {
			vq->broken = true; /* the transport's poll asks for a reset */
			break;
		}
		b->replay[b->nr_replay++] = heads[i];
	}
	pthread_mutex_unlock(&b->vdev.lock);
	return 0;
}

static const struct virtio_dev_ops blk_ops = {
	.name = "virtio-blk",
	.device_id = VIRTIO_BLK_DEVICE_ID,
	.features = (1ULL << VIRTIO_BLK_F_SIZE_MAX) | (1ULL << VIRTIO_BLK_F_SEG_MAX) |
		    (1ULL << VIRTIO_BLK_F_BLK_SIZE) | (1ULL << VIRTIO_BLK_F_FLUSH),
	.nr_queues = 1,
	.config_len = BLK_CONFIG_LEN,
	.queue_notify = blk_queue_notify,
	.poll = blk_poll,
	.reset = blk_reset,
	.free = blk_free,
};

static void put_le32(uint8_t *p, uint32_t v)
{
	v = htole32(v);
	memcpy(p, &v, 4);
}

int virtio_blk_create(struct vm *vm, unsigned int slot, const struct virtio_blk_config *cfg,
		      struct virtio_blk **ret)
{
	const char *serial = cfg->serial ? cfg->serial : "ringft";
	struct virtio_blk *b;
	uint64_t cap;
	int r;

	if (!cfg->path || strlen(serial) > VIRTIO_BLK_ID_BYTES)
		return -EINVAL;
	b = calloc(1, sizeof(*b));
	if (!b)
		return -ENOMEM;
	b->img.fd = -1;
	strncpy(b->serial, serial, sizeof(b->serial)); /* NUL padded, not terminated at 20 */
	b->reqs = calloc(VIRTIO_BLK_INFLIGHT_MAX, sizeof(*b->reqs));
	b->block = malloc(DISK_BLOCK);
	r = -ENOMEM;
	if (!b->reqs || !b->block)
		goto fail;
	r = diskimg_open(&b->img, cfg->path);
	if (r < 0)
		goto fail;
	r = io_uring_queue_init(BLK_RING_ENTRIES, &b->ring, 0);
	if (r < 0)
		goto fail;
	b->ring_init = true;
	r = io_uring_register_eventfd(&b->ring, vm_device_fd(vm));
	if (r < 0)
		goto fail;
	r = virtio_dev_init(&b->vdev, vm, slot, &blk_ops);
	if (r < 0)
		goto fail;
	b->vdev_init = true;
	cap = htole64(b->img.size / VIRTIO_BLK_SECTOR);
	memcpy(b->vdev.config, &cap, 8);
	put_le32(b->vdev.config + 8, VIRTIO_BLK_SIZE_MAX);
	put_le32(b->vdev.config + 12, VIRTIO_BLK_SEG_MAX);
	put_le32(b->vdev.config + 20, VIRTIO_BLK_SECTOR);
	b->transport_save = b->vdev.dops.save;
	b->transport_load = b->vdev.dops.load;
	b->vdev.dops.save = blk_save;
	b->vdev.dops.load = blk_load;
	r = vm_add_device(vm, &b->vdev.dev);
	if (r < 0)
		goto fail;
	*ret = b;
	return 0;
fail:
	blk_destroy(b);
	return r;
}

uint64_t virtio_blk_size(const struct virtio_blk *b)
{
	return b->img.size;
}

const char *virtio_blk_path(const struct virtio_blk *b)
{
	return b->img.path;
}

void virtio_blk_get_stats(const struct virtio_blk *b, struct virtio_blk_stats *ret)
{
	*ret = b->stats;
	ret->inflight = b->nr_inflight;
}

void virtio_blk_get_latency(struct virtio_blk *b, struct histogram *ret)
{
	pthread_mutex_lock(&b->vdev.lock);
	memcpy(ret, b->lat, sizeof(b->lat));
	pthread_mutex_unlock(&b->vdev.lock);
}

void virtio_blk_take_latency_window(struct virtio_blk *b, struct histogram *ret)
{
	pthread_mutex_lock(&b->vdev.lock);
	memcpy(ret, b->lat_window, sizeof(b->lat_window));
	memset(b->lat_window, 0, sizeof(b->lat_window));
	pthread_mutex_unlock(&b->vdev.lock);
}

/* Lock held: a queue the log bound stopped goes again (the caller kicks it). */
static bool blk_unstall(struct virtio_blk *b)
{
	bool was = b->stalled;

	b->stalled = false;
	return was;
}

void virtio_blk_set_logging(struct virtio_blk *b, bool on)
{
	bool kick;

	pthread_mutex_lock(&b->vdev.lock);
	b->logging = on;
	b->log_lost = false;
	if (!on)
		disk_log_clear(&b->log);
	kick = blk_unstall(b);
	pthread_mutex_unlock(&b->vdev.lock);
	if (kick)
		virtio_dev_kick(&b->vdev, BLK_Q);
}

int virtio_blk_take_log(struct virtio_blk *b, struct disk_log *into)
{
	bool kick, lost;

	pthread_mutex_lock(&b->vdev.lock);
	disk_log_swap(&b->log, into);
	disk_log_clear(&b->log);
	lost = b->log_lost;
	b->log_lost = false;
	kick = blk_unstall(b);
	pthread_mutex_unlock(&b->vdev.lock);
	if (kick)
		virtio_dev_kick(&b->vdev, BLK_Q);
	return lost ? -ENODATA : 0;
}

int virtio_blk_sync_block(struct virtio_blk *b, uint64_t block, uint64_t their_sum, bool *ret_sent)
{
	uint64_t off, len, sum;
	int r = 0;

	*ret_sent = false;
	pthread_mutex_lock(&b->vdev.lock);
	if (!b->logging || block >= diskimg_blocks(b->img.size)) {
		r = -EINVAL;
		goto out;
	}
	off = block * DISK_BLOCK;
	len = b->img.size - off < DISK_BLOCK ? b->img.size - off : DISK_BLOCK;
	for (unsigned int i = 0; i < VIRTIO_BLK_INFLIGHT_MAX; i++) {
		const struct blk_req *q = &b->reqs[i];

		/* Orphans too: their writes still land. */
		if (q->busy && q->type == VIRTIO_BLK_T_OUT && q->offset < off + len &&
		    off < q->offset + q->len) {
			r = -EBUSY;
			goto out;
		}
	}
	if (!their_sum && diskimg_is_hole(&b->img, off, len))
		goto out;
	r = diskimg_read(&b->img, b->block, len, off);
	if (r < 0)
		goto out;
	sum = diskimg_block_sum(b->block, len);
	if (sum == their_sum)
		goto out;
	if (sum) {
		r = disk_log_append(&b->log, off, b->block, len, 0);
		if (r == 0)
			b->stats.logged_bytes += len;
	} else {
		r = disk_log_append(&b->log, off, NULL, len, DISK_REC_ZERO);
	}
	*ret_sent = r == 0;
out:
	pthread_mutex_unlock(&b->vdev.lock);
	return r;
}

int virtio_blk_drain(struct virtio_blk *b)
{
	bool used = false;
	int r = 0;

	pthread_mutex_lock(&b->vdev.lock);
	while (b->nr_inflight) {
		r = io_uring_submit_and_wait(&b->ring, 1);
		if (r < 0 && r != -EINTR)
			break;
		r = 0;
		blk_reap(b, &used);
	}
	if (used)
		virtio_dev_used(&b->vdev, BLK_Q);
	pthread_mutex_unlock(&b->vdev.lock);
	return r;
}

int virtio_blk_hash(struct virtio_blk *b, uint64_t *ret)
{
	int r = virtio_blk_drain(b);

	return r < 0 ? r : diskimg_hash(&b->img, ret);
}
