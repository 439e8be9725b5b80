// SPDX-License-Identifier: MIT
/*
 * The network options: --net tap=NAME[,mac=MAC][,vnet-hdr=on|off], the
 * guest's static IPv4 configuration (--guest-ip ADDR/PREFIX, --guest-gateway),
 * and the checks of ftd's own addresses (--peer, --listen, [node] address).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon/options_internal.h"
#include "lib/netaddr.h"
#include "vmm/virtio_net.h"

int options_parse_net(const char *arg, struct ftd_net_options *n, char *err, size_t errlen)
{
	struct ftd_net_options v = { .enabled = true,
				     .mac = FTD_NET_DEFAULT_MAC,
				     .hold_max = n->hold_max };
	char buf[256], *save = NULL;

	if (strlen(arg) >= sizeof(buf))
		return options_fail(err, errlen, "--net: '%s' is too long", arg);
	snprintf(buf, sizeof(buf), "%s", arg);
	for (char *kv = strtok_r(buf, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
		char *val = strchr(kv, '=');

		if (!val)
			return options_fail(err, errlen, "--net: '%s' is not KEY=VALUE", kv);
		*val++ = '\0';
		if (!strcmp(kv, "tap")) {
			if (!*val || strlen(val) >= sizeof(v.tap) || strchr(val, '/'))
				return options_fail(err, errlen,
						    "--net: tap '%s' is not an interface name of "
						    "1..15 bytes",
						    val);
			snprintf(v.tap, sizeof(v.tap), "%s", val);
		} else if (!strcmp(kv, "mac")) {
			if (virtio_net_parse_mac(val, v.mac) < 0)
				return options_fail(err, errlen,
						    "--net: mac '%s' is not a unicast MAC address "
						    "like 52:54:00:12:34:56",
						    val);
		} else if (!strcmp(kv, "vnet-hdr")) {
			if (strcmp(val, "on") && strcmp(val, "off"))
				return options_fail(err, errlen,
						    "--net: vnet-hdr '%s' is not on or off", val);
			v.vnet_hdr = !strcmp(val, "on");
		} else {
			return options_fail(err, errlen,
					    "--net: unknown key '%s' (expected tap, mac, vnet-hdr)",
					    kv);
		}
	}
	if (!v.tap[0])
		return options_fail(err, errlen, "--net: '%s' names no TAP (use tap=NAME)", arg);
	snprintf(v.mac_text, sizeof(v.mac_text), "%02x:%02x:%02x:%02x:%02x:%02x", v.mac[0],
		 v.mac[1], v.mac[2], v.mac[3], v.mac[4], v.mac[5]);
	*n = v;
	return 0;
}

static int parse_ipv4(const char *s, uint32_t *ret)
{
	struct in_addr a;

	if (inet_pton(AF_INET, s, &a) != 1)
		return -EINVAL;
	*ret = ntohl(a.s_addr);
	return 0;
}

int options_parse_guest_ip(const char *arg, struct guest_params *gp, char *err, size_t errlen)
{
	char buf[32], *slash, *end;
	unsigned long prefix;
	uint32_t ip;

	if (strlen(arg) >= sizeof(buf) || !(slash = strchr(strcpy(buf, arg), '/')))
		return options_fail(err, errlen,
				    "--guest-ip: '%s' is not ADDR/PREFIX (e.g. 10.77.0.2/24)", arg);
	*slash++ = '\0';
	errno = 0;
	prefix = strtoul(slash, &end, 10);
	if (parse_ipv4(buf, &ip) < 0 || !*slash || *end || errno || prefix < 1 || prefix > 30)
		return options_fail(err, errlen,
				    "--guest-ip: '%s' is not ADDR/PREFIX with a prefix of 1..30",
				    arg);
	gp->net_ip = ip;
	gp->net_mask = ~0U << (32 - prefix);
	if ((ip & ~gp->net_mask) == 0 || (ip & ~gp->net_mask) == ~gp->net_mask)
		return options_fail(err, errlen,
				    "--guest-ip: %s is the network or broadcast address of its "
				    "subnet",
				    arg);
	return 0;
}

int options_parse_guest_gateway(const char *arg, struct guest_params *gp, char *err, size_t errlen)
{
	if (parse_ipv4(arg, &gp->net_gateway) < 0)
		return options_fail(err, errlen, "--guest-gateway: '%s' is not an IPv4 address",
				    arg);
	return 0;
}

bool options_addr_ok(const char *s)
{
	struct sockaddr_storage ss;
	socklen_t len;
	char err[160];

	return net_parse_addr(s, &ss, &len, err, sizeof(err)) == 0;
}

bool options_addr_same(const char *a, const char *b)
{
	struct sockaddr_storage sa = { 0 }, sb = { 0 };
	socklen_t la, lb;
	char err[160];

	return net_parse_addr(a, &sa, &la, err, sizeof(err)) == 0 &&
	       net_parse_addr(b, &sb, &lb, err, sizeof(err)) == 0 && la == lb &&
	       !memcmp(&sa, &sb, la);
}
