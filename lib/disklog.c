// SPDX-License-Identifier: MIT
/* An epoch's disk writes in order (disklog.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/disklog.h"

static int grow(void **buf, size_t *cap, size_t need, size_t unit)
{
	size_t n = *cap ? *cap : 16;
	void *p;

	if (need <= *cap)
		return 0;
	while (n < need)
		n *= 2;
	p = realloc(*buf, n * unit);
	if (!p)
		return -ENOMEM;
	*buf = p;
	*cap = n;
	return 0;
}

static int push(struct disk_log *log, uint64_t offset, const void *data, uint32_t len,
		uint32_t flags)
{
	struct disk_rec *r;
	size_t dlen = flags ? 0 : len;

	if (grow((void **)&log->recs, &log->cap, log->nr + 1, sizeof(*log->recs)) < 0 ||
	    grow((void **)&log->data, &log->data_cap, log->data_len + dlen, 1) < 0)
		return -ENOMEM;
	r = &log->recs[log->nr++];
	r->offset = offset;
	r->len = len;
	r->flags = flags;
	r->data_off = log->data_len;
	if (dlen) {
		memcpy(log->data + log->data_len, data, dlen);
		log->data_len += dlen;
	}
	if (flags & DISK_REC_FLUSH)
		log->flush = true;
	return 0;
}

int disk_log_append(struct disk_log *log, uint64_t offset, const void *data, uint64_t len,
		    uint32_t flags)
{
	const uint8_t *p = data;
	size_t nr = log->nr, data_len = log->data_len;
	int r;

	if (flags & ~DISK_REC_FLAGS || flags == DISK_REC_FLAGS || offset % DISK_SECTOR ||
	    len % DISK_SECTOR)
		return -EINVAL;
	if (flags & DISK_REC_FLUSH)
		return len ? -EINVAL : push(log, offset, NULL, 0, flags);
	if (!len || (!flags && !data) || len > UINT64_MAX - offset)
		return -EINVAL; /* the last: a range past 2^64 would split into wrapped records */
	while (len) {
		uint32_t n = len > DISK_REC_MAX ? DISK_REC_MAX : (uint32_t)len;

		r = push(log, offset, p, n, flags);
		if (r < 0) {
			/* All or nothing: the device fails the whole request to the guest. */
			log->nr = nr;
			log->data_len = data_len;
			return r;
		}
		offset += n;
		len -= n;
		if (p)
			p += n;
	}
	return 0;
}

void disk_log_clear(struct disk_log *log)
{
	log->nr = 0;
	log->data_len = 0;
	log->flush = false;
}

void disk_log_swap(struct disk_log *a, struct disk_log *b)
{
	struct disk_log t = *a;

	*a = *b;
	*b = t;
}

void disk_log_free(struct disk_log *log)
{
	free(log->recs);
	free(log->data);
	memset(log, 0, sizeof(*log));
}
