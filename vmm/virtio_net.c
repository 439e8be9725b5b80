// SPDX-License-Identifier: MIT
/*
 * virtio-net on a TAP (virtio_net.h): the RX and TX queue handlers, run by the
 * transport on the owner thread with the device locked, and the TAP backend
 * driven by an io_uring whose completions wake the owner through the VM's
 * device eventfd.
 *
 * io_uring user_data: an RX slot is (index << 1) | 1; a TX write is the
 * address of its heap buffer (even). Reaping completions only records them
 * (net_reap): guest memory is written when the owner delivers, in
 * virtio_net's queue handlers, never from virtio_net_transmit().
 */
#include <errno.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "vmm/tap.h"
#include "vmm/virtio_mmio.h"
#include "vmm/virtio_net.h"
#include "vmm/vm.h"

#define NET_RING_ENTRIES 64
#define NET_RX_SLOTS	 16
#define NET_RX_BUF	 (VIRTIO_NET_HDR_LEN + VIRTIO_NET_FRAME_MAX)
#define NET_TX_INFLIGHT	 32
#define NET_CONFIG_LEN	 8 /* mac[6], le16 status */

enum rx_slot_state {
	RX_IDLE,
	RX_POSTED, /* a read is in the ring */
	RX_FILLED, /* holds a frame, in the FIFO */
};

struct rx_slot {
	enum rx_slot_state state;
	uint32_t len;
	uint8_t *buf;
};

struct tx_buf {
	size_t len;
	uint8_t data[];
};

struct virtio_net {
	struct virtio_dev vdev;
	struct virtio_net_config cfg;
	char ifname[IFNAMSIZ];

	/* Owner only. */
	bool attached;
	int tap_fd;
	bool ring_init;
	struct io_uring ring;
	bool backend_dead; /* a read failed for good: reads are not posted again */
	bool closing;	   /* net_backend_close() is cancelling: nothing is posted again */
	int backend_err;   /* that failure, reported once by the next poll */
	struct rx_slot rx[NET_RX_SLOTS];
	unsigned int rx_fifo[NET_RX_SLOTS]; /* filled slots in arrival order */
	unsigned int rx_head, rx_count;
	unsigned int rx_posted;
	unsigned int tx_inflight;
	bool tx_blocked; /* sink refused, or no backend yet */
	bool tx_resume;	 /* atomic: virtio_net_tx_resume() was called */
	virtio_net_tx_fn sink;
	void *sink_opaque;
	struct virtio_net_stats stats;

	/* Scratch for the queue handlers (under the device lock). */
	struct vq_chain chain;
	uint8_t frame[VIRTIO_NET_FRAME_MAX];
};

static struct virtio_net *to_net(struct virtio_dev *vdev)
{
	return (struct virtio_net *)vdev;
}

static struct io_uring_sqe *net_get_sqe(struct virtio_net *net)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(&net->ring);

	if (!sqe) {
		io_uring_submit(&net->ring);
		sqe = io_uring_get_sqe(&net->ring);
	}
	return sqe;
}

static void net_post_rx(struct virtio_net *net, unsigned int i)
{
	struct io_uring_sqe *sqe = net_get_sqe(net);

	if (!sqe) {
		net->rx[i].state =
			RX_IDLE; /* cannot happen after a submit: retried at the next poll */
		return;
	}
	io_uring_prep_read(sqe, net->tap_fd, net->rx[i].buf, NET_RX_BUF, 0);
	io_uring_sqe_set_data64(sqe, ((uint64_t)i << 1) | 1);
	net->rx[i].state = RX_POSTED;
	net->rx_posted++;
}

/* Queues a TAP write of a copy of frame; the caller submits. */
static int net_tap_write(struct virtio_net *net, const uint8_t *frame, size_t len)
{
	size_t hdr = net->cfg.vnet_hdr ? VIRTIO_NET_HDR_LEN : 0;
	struct io_uring_sqe *sqe;
	struct tx_buf *b = malloc(sizeof(*b) + hdr + len);

	if (!b)
		return -ENOMEM;
	sqe = net_get_sqe(net);
	if (!sqe) {
		free(b);
		return -EBUSY;
	}
	b->len = hdr + len;
	memset(b->data, 0, hdr);
	memcpy(b->data + hdr, frame, len);
	io_uring_prep_write(sqe, net->tap_fd, b->data, (unsigned int)b->len, 0);
	io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)b);
	net->tx_inflight++;
	return 0;
}

/* Records completions: frames into the FIFO, for net_deliver_rx(). */
static void net_reap(struct virtio_net *net)
{
	struct io_uring_cqe *cqe;

	while (io_uring_peek_cqe(&net->ring, &cqe) == 0) {
		uint64_t ud = io_uring_cqe_get_data64(cqe);
		int res = cqe->res;

		io_uring_cqe_seen(&net->ring, cqe);
		if (!(ud & 1)) {
			free((void *)(uintptr_t)ud);
			net->tx_inflight--;
			if (res < 0)
				net->stats.tx_errors++; /* -EIO: the interface is down */
			continue;
		}
		unsigned int i = (unsigned int)(ud >> 1);

		net->rx_posted--;
		net->rx[i].state = RX_IDLE;
		if (res == -ECANCELED)
			continue; /* teardown */
		if (res < 0 && res != -EINTR && res != -EAGAIN) {
			if (!net->backend_dead) {
				net->backend_dead = true;
				net->backend_err = res;
			}
			continue; /* the slot stays idle: the TAP is gone */
		}
		if (res <= 0) {
			/*
			 * A cancel that meets a read already running in io-wq
			 * ends it with -EINTR: posting it again then would keep
			 * the TAP's file in the ring past its close.
			 */
			if (!net->closing)
				net_post_rx(net, i);
			continue;
		}
		net->rx[i].state = RX_FILLED;
		net->rx[i].len = (uint32_t)res;
		net->rx_fifo[(net->rx_head + net->rx_count++) % NET_RX_SLOTS] = i;
	}
}

/*
 * After delivery: what the guest had no room for waits, up to NET_RX_BACKLOG
 * frames; older ones are dropped, so reads stay posted and the TAP drains.
 */
static void net_trim_backlog(struct virtio_net *net)
{
	while (net->rx_count > NET_RX_BACKLOG) {
		unsigned int old = net->rx_fifo[net->rx_head];

		net->rx_head = (net->rx_head + 1) % NET_RX_SLOTS;
		net->rx_count--;
		net->stats.rx_dropped++;
		net_post_rx(net, old);
	}
}

/* Lock held: copies waiting frames into the guest's RX chains. */
static void net_deliver_rx(struct virtio_net *net)
{
	struct virtio_dev *vdev = &net->vdev;
	struct virtqueue *vq = &vdev->vq[VIRTIO_NET_RXQ];
	size_t tap_hdr = net->cfg.vnet_hdr ? VIRTIO_NET_HDR_LEN : 0;
	/* virtio_net_hdr_v1: no flags, no GSO, num_buffers (le16 at 10) = 1. */
	static const uint8_t hdr[VIRTIO_NET_HDR_LEN] = { [10] = 1 };
	bool used = false;

	while (net->rx_count && virtio_dev_live(vdev) && vq->ready && !vq->broken) {
		unsigned int i = net->rx_fifo[net->rx_head];
		struct rx_slot *s = &net->rx[i];
		size_t len = s->len > tap_hdr ? s->len - tap_hdr : 0;

		if (len) {
			int r = vq_pop(vq, vdev->vm, &net->chain);

			if (r <= 0)
				break; /* no buffers (or the queue broke: the transport sees it) */
			if (net->chain.in_len < VIRTIO_NET_HDR_LEN + len) {
				vq_unpop(vq); /* too small for this frame; the next may fit */
				net->stats.rx_dropped++;
			} else {
				vq_chain_write(&net->chain, vdev->vm, 0, hdr, sizeof(hdr));
				vq_chain_write(&net->chain, vdev->vm, sizeof(hdr), s->buf + tap_hdr,
					       len);
				if (vq_push(vq, vdev->vm, net->chain.head,
					    (uint32_t)(VIRTIO_NET_HDR_LEN + len)) < 0)
					break;
				used = true;
				net->stats.rx_frames++;
				net->stats.rx_bytes += len;
			}
		}
		net->rx_head = (net->rx_head + 1) % NET_RX_SLOTS;
		net->rx_count--;
		net_post_rx(net, i);
	}
	if (used)
		virtio_dev_used(vdev, VIRTIO_NET_RXQ);
}

/* Lock held: one popped TX chain to the sink or the TAP. False: stop the queue. */
static bool net_tx_one(struct virtio_net *net, struct virtqueue *vq)
{
	const struct vq_chain *c = &net->chain;
	size_t len;
	int r;

	if (c->out_len < VIRTIO_NET_HDR_LEN ||
	    c->out_len - VIRTIO_NET_HDR_LEN > VIRTIO_NET_FRAME_MAX) {
		net->stats.tx_errors++;
		return vq_push(vq, net->vdev.vm, c->head, 0) == 0;
	}
	len = vq_chain_read(c, VIRTIO_NET_HDR_LEN, net->frame, c->out_len - VIRTIO_NET_HDR_LEN);
	if (net->sink)
		r = net->sink(net->sink_opaque, net->frame, len);
	else if (net->attached)
		r = net_tap_write(net, net->frame, len);
	else
		r = -EAGAIN; /* no backend yet: wait for attach */
	if (r == -EAGAIN) {
		vq_unpop(vq);
		net->tx_blocked = true;
		if (net->sink)
			net->stats.tx_held++;
		return false;
	}
	if (r < 0) {
		net->stats.tx_errors++;
	} else {
		net->stats.tx_frames++;
		net->stats.tx_bytes += len;
	}
	return vq_push(vq, net->vdev.vm, c->head, 0) == 0;
}

/* Lock held: transmits what the guest made available, until something stops it. */
static void net_process_tx(struct virtio_net *net)
{
	struct virtio_dev *vdev = &net->vdev;
	struct virtqueue *vq = &vdev->vq[VIRTIO_NET_TXQ];
	bool used = false;

	while (!net->tx_blocked && net->tx_inflight < NET_TX_INFLIGHT && virtio_dev_live(vdev) &&
	       vq->ready && !vq->broken) {
		int r = vq_pop(vq, vdev->vm, &net->chain);

		if (r <= 0)
			break;
		if (!net_tx_one(net, vq))
			break;
		used = true;
	}
	if (used)
		virtio_dev_used(vdev, VIRTIO_NET_TXQ);
	if (net->ring_init)
		io_uring_submit(&net->ring);
}

static void net_queue_notify(struct virtio_dev *vdev, unsigned int q)
{
	struct virtio_net *net = to_net(vdev);

	if (q == VIRTIO_NET_RXQ)
		net_deliver_rx(net);
	else
		net_process_tx(net);
}

static int net_poll(struct virtio_dev *vdev)
{
	struct virtio_net *net = to_net(vdev);
	int r;

	if (__atomic_exchange_n(&net->tx_resume, false, __ATOMIC_ACQ_REL))
		net->tx_blocked = false;
	if (!net->ring_init)
		return 0;
	net_reap(net);
	for (unsigned int i = 0; i < NET_RX_SLOTS; i++)
		if (net->rx[i].state == RX_IDLE && !net->backend_dead)
			net_post_rx(net, i);
	net_deliver_rx(net);
	net_trim_backlog(net);
	net_process_tx(net); /* after a resume or freed TX slots; submits */
	for (unsigned int q = 0; q < 2; q++)
		if (vdev->vq[q].broken)
			virtio_dev_needs_reset(vdev);
	r = net->backend_err;
	net->backend_err = 0;
	return r;
}

static void net_reset(struct virtio_dev *vdev)
{
	/* Frames waiting for the guest stay: a re-initialised driver gets them. */
	to_net(vdev)->tx_blocked = false;
}

/* Cancels outstanding I/O and waits for it (at most a second) before freeing buffers. */
static void net_backend_close(struct virtio_net *net)
{
	if (net->ring_init) {
		struct io_uring_sqe *sqe = net_get_sqe(net);
		struct __kernel_timespec ts = { .tv_sec = 1 };

		net->closing = true;
		if (sqe) {
			io_uring_prep_cancel64(sqe, 0,
					       IORING_ASYNC_CANCEL_ANY | IORING_ASYNC_CANCEL_ALL);
			io_uring_sqe_set_data64(sqe, 0); /* even and NULL: see net_reap */
			net->tx_inflight++;
		}
		while (net->rx_posted || net->tx_inflight) {
			struct io_uring_cqe *cqe;

			if (io_uring_submit_and_wait_timeout(&net->ring, &cqe, 1, &ts, NULL) < 0)
				break;
			net_reap(net);
		}
		io_uring_queue_exit(&net->ring);
		net->ring_init = false;
		net->closing = false;
	}
	if (net->tap_fd >= 0)
		close(net->tap_fd);
	net->tap_fd = -1;
	net->attached = false;
}

static void net_free(struct virtio_dev *vdev)
{
	struct virtio_net *net = to_net(vdev);

	net_backend_close(net);
	for (unsigned int i = 0; i < NET_RX_SLOTS; i++)
		free(net->rx[i].buf);
	virtio_dev_destroy(vdev);
	free(net);
}

static const struct virtio_dev_ops net_ops = {
	.name = "virtio-net",
	.device_id = VIRTIO_NET_DEVICE_ID,
	.features = (1ULL << VIRTIO_NET_F_MAC) | (1ULL << VIRTIO_NET_F_STATUS),
	.nr_queues = 2,
	.config_len = NET_CONFIG_LEN,
	.queue_notify = net_queue_notify,
	.poll = net_poll,
	.reset = net_reset,
	.free = net_free,
};

int virtio_net_create(struct vm *vm, unsigned int slot, const struct virtio_net_config *cfg,
		      struct virtio_net **ret_net)
{
	struct virtio_net *net;
	int r;

	if (strnlen(cfg->tap, IFNAMSIZ) >= IFNAMSIZ || (cfg->mac[0] & 1))
		return -EINVAL;
	net = calloc(1, sizeof(*net));
	if (!net)
		return -ENOMEM;
	net->tap_fd = -1;
	net->cfg = *cfg;
	memcpy(net->ifname, cfg->tap, IFNAMSIZ);
	r = virtio_dev_init(&net->vdev, vm, slot, &net_ops);
	if (r < 0) {
		free(net);
		return r;
	}
	memcpy(net->vdev.config, cfg->mac, 6);
	net->vdev.config[6] = VIRTIO_NET_S_LINK_UP;
	for (unsigned int i = 0; i < NET_RX_SLOTS; i++) {
		net->rx[i].buf = malloc(NET_RX_BUF);
		if (!net->rx[i].buf) {
			net_free(&net->vdev);
			return -ENOMEM;
		}
	}
	r = vm_add_device(vm, &net->vdev.dev);
	if (r < 0) {
		net_free(&net->vdev);
		return r;
	}
	*ret_net = net;
	return 0;
}

int virtio_net_attach(struct virtio_net *net)
{
	int r;

	if (net->attached)
		return -EALREADY;
	r = tap_open(net->cfg.tap, net->cfg.vnet_hdr, net->ifname, &net->tap_fd);
	if (r < 0)
		return r;
	r = io_uring_queue_init(NET_RING_ENTRIES, &net->ring, 0);
	if (r < 0)
		goto fail;
	net->ring_init = true;
	r = io_uring_register_eventfd(&net->ring, vm_device_fd(net->vdev.vm));
	if (r < 0)
		goto fail;
	net->backend_dead = false;
	net->backend_err = 0;
	for (unsigned int i = 0; i < NET_RX_SLOTS; i++)
		net_post_rx(net, i);
	r = io_uring_submit(&net->ring);
	if (r < 0)
		goto fail;
	net->attached = true;
	/* TX chains that waited for a backend go now. */
	pthread_mutex_lock(&net->vdev.lock);
	net->tx_blocked = false;
	pthread_mutex_unlock(&net->vdev.lock);
	virtio_dev_kick(&net->vdev, VIRTIO_NET_TXQ);
	return 0;
fail:
	net_backend_close(net);
	return r;
}

bool virtio_net_attached(const struct virtio_net *net)
{
	return net->attached;
}

const char *virtio_net_ifname(const struct virtio_net *net)
{
	return net->ifname;
}

void virtio_net_set_tx_sink(struct virtio_net *net, virtio_net_tx_fn fn, void *opaque)
{
	pthread_mutex_lock(&net->vdev.lock);
	net->sink = fn;
	net->sink_opaque = opaque;
	pthread_mutex_unlock(&net->vdev.lock);
}

void virtio_net_tx_resume(struct virtio_net *net)
{
	__atomic_store_n(&net->tx_resume, true, __ATOMIC_RELEASE);
	virtio_dev_kick(&net->vdev, VIRTIO_NET_TXQ);
}

int virtio_net_transmit(struct virtio_net *net, const uint8_t *frame, size_t len)
{
	int r;

	if (!net->attached)
		return -ENOTCONN;
	if (len > VIRTIO_NET_FRAME_MAX)
		return -EMSGSIZE;
	while (net->tx_inflight >= NET_TX_INFLIGHT) {
		struct io_uring_cqe *cqe;

		r = io_uring_submit_and_wait(&net->ring, 1);
		if (r < 0 && r != -EINTR)
			return r;
		if (io_uring_peek_cqe(&net->ring, &cqe) == 0)
			net_reap(net);
	}
	r = net_tap_write(net, frame, len);
	if (r < 0)
		return r;
	r = io_uring_submit(&net->ring);
	return r < 0 ? r : 0;
}

int virtio_net_announce(struct virtio_net *net)
{
	uint8_t f[60] = { 0 }; /* the minimum Ethernet frame, without FCS */
	const uint8_t *mac = net->cfg.mac;

	memset(f, 0xff, 6);	    /* broadcast */
	memcpy(f + 6, mac, 6);	    /* from the guest */
	f[12] = 0x80, f[13] = 0x35; /* RARP */
	f[14] = 0x00, f[15] = 0x01; /* hardware: Ethernet */
	f[16] = 0x08, f[17] = 0x00; /* protocol: IPv4 */
	f[18] = 6, f[19] = 4;
	f[20] = 0x00, f[21] = 0x03; /* reverse request */
	memcpy(f + 22, mac, 6);	    /* sender hardware; sender IP 0 */
	memcpy(f + 32, mac, 6);	    /* target hardware; target IP 0 */
	return virtio_net_transmit(net, f, sizeof(f));
}

void virtio_net_get_stats(const struct virtio_net *net, struct virtio_net_stats *ret)
{
	*ret = net->stats;
}

void virtio_net_get_mac(const struct virtio_net *net, uint8_t ret_mac[6])
{
	memcpy(ret_mac, net->cfg.mac, 6);
}

int virtio_net_parse_mac(const char *s, uint8_t ret_mac[6])
{
	unsigned int b[6];
	char sep[5], end;
	uint8_t mac[6];
	int n;

	n = sscanf(s, "%2x%c%2x%c%2x%c%2x%c%2x%c%2x%c", &b[0], &sep[0], &b[1], &sep[1], &b[2],
		   &sep[2], &b[3], &sep[3], &b[4], &sep[4], &b[5], &end);
	if (n != 11 || strlen(s) != 17)
		return -EINVAL;
	for (int i = 0; i < 5; i++)
		if (sep[i] != sep[0] || (sep[0] != ':' && sep[0] != '-'))
			return -EINVAL;
	for (int i = 0; i < 6; i++)
		mac[i] = (uint8_t)b[i];
	if ((mac[0] & 1) || !(mac[0] | mac[1] | mac[2] | mac[3] | mac[4] | mac[5]))
		return -EINVAL;
	memcpy(ret_mac, mac, 6);
	return 0;
}
