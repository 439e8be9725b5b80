/* SPDX-License-Identifier: MIT */
/*
 * TAP interfaces (Linux tun driver) for virtio-net's backend. Library code: no
 * logging, 0 or -errno.
 */
#ifndef RINGFT_VMM_TAP_H
#define RINGFT_VMM_TAP_H

#include <stdbool.h>

#include <net/if.h>

/*
 * Opens (or creates) TAP `name` with IFF_TAP | IFF_NO_PI, and IFF_VNET_HDR with
 * a 12-byte header (struct virtio_net_hdr_v1) if vnet_hdr. An existing
 * persistent TAP is attached to; an empty name lets the kernel pick one. The fd
 * is blocking (io_uring polls it) and close-on-exec; the interface's name is
 * stored in ret_name.
 */
int tap_open(const char *name, bool vnet_hdr, char ret_name[IFNAMSIZ], int *ret_fd);
/* Makes the TAP persistent (or not): it outlives its last fd. */
int tap_set_persist(int fd, bool persist);
/* Sets IFF_UP on the interface (in the caller's network namespace). */
int tap_set_up(const char *name);

#endif
