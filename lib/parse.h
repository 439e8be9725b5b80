/* SPDX-License-Identifier: MIT */
/* Sizes, durations and counts as people type them. Each returns 0 or -EINVAL / -ERANGE. */
#ifndef RINGFT_LIB_PARSE_H
#define RINGFT_LIB_PARSE_H

#include <stdint.h>

/* "4096", "64K", "512M", "1G", "16GiB", "2T": binary units. */
int parse_size(const char *s, uint64_t *ret_bytes);
/* "500us", "10ms", "2s", "1500ns", "1m"; a bare number means seconds (systemd.time(7)). */
int parse_duration(const char *s, uint64_t *ret_ns);
/* A decimal number in [min, max]. */
int parse_uint(const char *s, uint64_t min, uint64_t max, uint64_t *ret);

#endif
