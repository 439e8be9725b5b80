/* SPDX-License-Identifier: MIT */
/* The built-in guest images (images.S), by name. */
#include <string.h>

#include "guest/builtin.h"
#include "guest_sizes.h" /* generated: GUEST_<NAME>_SIZE, the size of each image */

extern const uint8_t guest_bank_image[];
extern const uint8_t guest_dirty_image[];
extern const uint8_t guest_touch_image[];
extern const uint8_t guest_kv_image[];

const struct builtin_guest builtin_guests[] = {
	{ "bank", "accounts moving money between pages; prints and checks the sum",
	  guest_bank_image, GUEST_BANK_SIZE },
	{ "dirty", "dirties K distinct pages per ms of a working set; reports stalls",
	  guest_dirty_image, GUEST_DIRTY_SIZE },
	{ "touch", "touches an exact page set per round, synchronised by port signals",
	  guest_touch_image, GUEST_TOUCH_SIZE },
	{ "kv", "lwIP: a Redis-protocol key-value server (6379) and iperf (5001) on virtio-net",
	  guest_kv_image, GUEST_KV_SIZE },
};

const unsigned int builtin_guests_count = sizeof(builtin_guests) / sizeof(builtin_guests[0]);

const struct builtin_guest *builtin_guest_find(const char *name)
{
	for (unsigned int i = 0; i < builtin_guests_count; i++)
		if (!strcmp(builtin_guests[i].name, name))
			return &builtin_guests[i];
	return NULL;
}
