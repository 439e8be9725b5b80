// SPDX-License-Identifier: MIT
/* TAP interfaces: open, persist, bring up (tap.h). */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/if_tun.h>

#include "vmm/tap.h"

#define TAP_VNET_HDR_LEN 12

int tap_open(const char *name, bool vnet_hdr, char ret_name[IFNAMSIZ], int *ret_fd)
{
	struct ifreq ifr = { .ifr_flags = IFF_TAP | IFF_NO_PI };
	int fd, r;

	if (strlen(name) >= IFNAMSIZ)
		return -ENAMETOOLONG;
	if (vnet_hdr)
		ifr.ifr_flags |= IFF_VNET_HDR;
	strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
	fd = open("/dev/net/tun", O_RDWR | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, TUNSETIFF, &ifr) < 0)
		goto fail;
	if (vnet_hdr && ioctl(fd, TUNSETVNETHDRSZ, &(int){ TAP_VNET_HDR_LEN }) < 0)
		goto fail;
	memcpy(ret_name, ifr.ifr_name, IFNAMSIZ);
	ret_name[IFNAMSIZ - 1] = 0;
	*ret_fd = fd;
	return 0;
fail:
	r = -errno;
	close(fd);
	return r;
}

int tap_set_persist(int fd, bool persist)
{
	return ioctl(fd, TUNSETPERSIST, (unsigned long)persist) < 0 ? -errno : 0;
}

int tap_set_up(const char *name)
{
	struct ifreq ifr = { 0 };
	int fd, r = 0;

	if (strlen(name) >= IFNAMSIZ)
		return -ENAMETOOLONG;
	strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
	fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (ioctl(fd, SIOCGIFFLAGS, &ifr) < 0) {
		r = -errno;
	} else if (!(ifr.ifr_flags & IFF_UP)) {
		ifr.ifr_flags |= IFF_UP;
		if (ioctl(fd, SIOCSIFFLAGS, &ifr) < 0)
			r = -errno;
	}
	close(fd);
	return r;
}
