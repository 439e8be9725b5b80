/* SPDX-License-Identifier: MIT */
/*
 * The guest's NIC as the daemon runs it (--net): the virtio-net device in its
 * slot, its TAP, and where the frames the guest sends go.
 *
 *   ftd run                  frames leave at once (no checkpoint to wait for)
 *   ftd primary / promoted   frames go to a record channel of output commit
 *                            (primary/commit.h): they leave when the secondary
 *                            acknowledged the checkpoint after which they were
 *                            sent, with the console; past --net-hold-max held,
 *                            the guest's transmit queue stops (backpressure)
 *                            until an ACK makes room: never dropped, never early
 *   ftd secondary            the device exists (its state is replicated) but
 *                            its TAP stays closed until promotion: the primary
 *                            owns the address until then. Once promoted it
 *                            opens the TAP and announces the MAC (RARP, five
 *                            frames 50 ms, 150 ms, ... apart, as QEMU's
 *                            announce-self), so switches learn the new port.
 *
 * Everything here runs on the owner thread, which also pauses the VM: device
 * work (vm_devices_poll) never overlaps a checkpoint.
 */
#ifndef RINGFT_DAEMON_NET_H
#define RINGFT_DAEMON_NET_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include <json-c/json.h>

#include "daemon/options.h"

struct outbuf;
struct virtio_net;
struct vm;

struct ftd_net {
	struct virtio_net *dev; /* owned by the VM; NULL without --net */
	const struct ftd_net_options *o;
	bool attached;
	struct outbuf *held; /* the commit channel frames wait in; NULL: they leave at once */
	bool stalled;	     /* the channel was full: the guest's transmit queue is stopped */
	uint64_t stalls;     /* times the guest was backpressured */
	uint64_t retry_ns;   /* a promoted guest whose TAP would not open: try again then */
	unsigned int announce_left;
	uint64_t announce_next_ns;
	uint64_t announce_gap_ns;
};

/* Adds the device (before the guest is loaded or state arrives). Logs; 0 or -errno. */
int ftd_net_create(struct ftd_net *n, struct vm *vm, const struct ftd_options *o);
/* Opens the TAP; announce: also tell the network the MAC moved here. Logs; 0 or -errno. */
int ftd_net_attach(struct ftd_net *n, bool announce);
/*
 * A promoted guest is the only running copy: a TAP that will not open must not
 * stop it. It runs on without its network (frames wait, up to the bound) and
 * ftd_net_work tries the TAP again every second, announcing once it opens.
 */
void ftd_net_attach_later(struct ftd_net *n);
/* From now on frames wait in ob (a commit channel) until output commit lets them go. */
void ftd_net_hold_in(struct ftd_net *n, struct outbuf *ob);
/*
 * The NIC's regular work, after the devices were polled (ftd_devices_work):
 * frames the output commit let go, the transmit queue restarted when there is
 * room again, announcements due, a TAP that would not open tried again. 0 or
 * -errno (logged).
 */
int ftd_net_work(struct ftd_net *n, uint64_t now);
/* When the next announcement is due, UINT64_MAX: none. */
uint64_t ftd_net_next_due(const struct ftd_net *n);
/* `ftctl status`: r.net = the NIC, its counters and what output commit holds of it. */
void ftd_net_status(const struct ftd_net *n, struct outbuf *frames, struct json_object *r);
/* Prometheus text lines for `ftctl metrics`. */
void ftd_net_metrics(const struct ftd_net *n, struct outbuf *frames, FILE *f);

#endif
