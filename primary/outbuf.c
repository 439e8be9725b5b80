// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "primary/outbuf.h"

int outbuf_init(struct outbuf *ob, size_t cap)
{
	memset(ob, 0, sizeof(*ob));
	ob->buf = malloc(cap);
	if (!ob->buf)
		return -ENOMEM;
	ob->cap = cap;
	ob->last = '\n';
	pthread_mutex_init(&ob->lock, NULL);
	return 0;
}

void outbuf_free(struct outbuf *ob)
{
	if (!ob->buf)
		return;
	pthread_mutex_destroy(&ob->lock);
	free(ob->buf);
	ob->buf = NULL;
}

/*
 * The buffer is a ring: the byte at position x lives at buf[x % cap]. Nothing
 * ever moves, so the owner writes to the sink without the lock (a slow console
 * file must not stall a vCPU appending) while appenders fill the free part.
 */
static void ring_put(struct outbuf *ob, uint64_t pos, const uint8_t *src, size_t len)
{
	size_t at = (size_t)(pos % ob->cap), first = len < ob->cap - at ? len : ob->cap - at;

	memcpy(ob->buf + at, src, first);
	memcpy(ob->buf, src + first, len - first);
}

static void ring_get(const struct outbuf *ob, uint64_t pos, uint8_t *dst, size_t len)
{
	size_t at = (size_t)(pos % ob->cap), first = len < ob->cap - at ? len : ob->cap - at;

	memcpy(dst, ob->buf + at, first);
	memcpy(dst + first, ob->buf, len - first);
}

void outbuf_append(struct outbuf *ob, const uint8_t *data, size_t len)
{
	size_t used, room;

	pthread_mutex_lock(&ob->lock);
	used = (size_t)(ob->produced - ob->written);
	room = ob->cap - used;
	if (len > room) {
		ob->dropped += len - room;
		len = room;
	}
	if (len) {
		ring_put(ob, ob->produced, data, len);
		ob->last = data[len - 1];
	}
	ob->produced += len;
	pthread_mutex_unlock(&ob->lock);
}

uint64_t outbuf_mark(struct outbuf *ob)
{
	uint64_t m;

	pthread_mutex_lock(&ob->lock);
	m = ob->produced;
	pthread_mutex_unlock(&ob->lock);
	return m;
}

void outbuf_allow(struct outbuf *ob, uint64_t upto)
{
	pthread_mutex_lock(&ob->lock);
	if (upto > ob->produced)
		upto = ob->produced;
	if (upto > ob->allowed)
		ob->allowed = upto;
	pthread_mutex_unlock(&ob->lock);
}

uint64_t outbuf_held(struct outbuf *ob)
{
	uint64_t h;

	pthread_mutex_lock(&ob->lock);
	h = ob->produced - ob->allowed;
	pthread_mutex_unlock(&ob->lock);
	return h;
}

uint64_t outbuf_allowed(struct outbuf *ob)
{
	uint64_t a;

	pthread_mutex_lock(&ob->lock);
	a = ob->allowed;
	pthread_mutex_unlock(&ob->lock);
	return a;
}

int outbuf_copy(struct outbuf *ob, uint64_t from, size_t len, uint8_t *dst)
{
	int r = 0;

	pthread_mutex_lock(&ob->lock);
	if (from < ob->written || from + len > ob->produced)
		r = -ERANGE;
	else if (len)
		ring_get(ob, from, dst, len);
	pthread_mutex_unlock(&ob->lock);
	return r;
}

void outbuf_set_last(struct outbuf *ob, uint8_t last)
{
	pthread_mutex_lock(&ob->lock);
	ob->last = last;
	pthread_mutex_unlock(&ob->lock);
}

void outbuf_end_line(struct outbuf *ob)
{
	bool open_line;

	pthread_mutex_lock(&ob->lock);
	open_line = ob->last != '\n';
	pthread_mutex_unlock(&ob->lock);
	if (open_line)
		outbuf_append(ob, (const uint8_t *)"\n", 1);
}

void outbuf_rebase(struct outbuf *ob, uint64_t stream_pos)
{
	pthread_mutex_lock(&ob->lock);
	ob->stream_base = stream_pos - ob->produced;
	pthread_mutex_unlock(&ob->lock);
}

/*
 * Owner thread only (it alone advances `written`): bytes [written, allowed)
 * cannot change under it, so write() runs unlocked.
 */
int outbuf_flush(struct outbuf *ob, int fd)
{
	for (;;) {
		uint64_t from, upto;
		size_t at, len;
		ssize_t n;

		pthread_mutex_lock(&ob->lock);
		from = ob->written;
		upto = ob->allowed;
		pthread_mutex_unlock(&ob->lock);
		if (from >= upto)
			return 0;
		at = (size_t)(from % ob->cap);
		len = (size_t)(upto - from) < ob->cap - at ? (size_t)(upto - from) : ob->cap - at;
		n = write(fd, ob->buf + at, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errno == EAGAIN ? 0 : -errno;
		}
		pthread_mutex_lock(&ob->lock);
		ob->written += (uint64_t)n;
		pthread_mutex_unlock(&ob->lock);
	}
}

size_t outbuf_room(struct outbuf *ob)
{
	size_t room;

	pthread_mutex_lock(&ob->lock);
	room = ob->cap - (size_t)(ob->produced - ob->written);
	pthread_mutex_unlock(&ob->lock);
	return room;
}

int outbuf_put_record(struct outbuf *ob, const uint8_t *data, size_t len)
{
	uint32_t hdr = (uint32_t)len;
	int r = 0;

	if (len > OUTBUF_RECORD_MAX)
		return -EMSGSIZE;
	pthread_mutex_lock(&ob->lock);
	if (sizeof(hdr) + len > ob->cap - (size_t)(ob->produced - ob->written)) {
		r = -ENOSPC;
	} else {
		ring_put(ob, ob->produced, (const uint8_t *)&hdr, sizeof(hdr));
		ring_put(ob, ob->produced + sizeof(hdr), data, len);
		ob->produced += sizeof(hdr) + len;
		ob->records_in++;
	}
	pthread_mutex_unlock(&ob->lock);
	return r;
}

/*
 * Owner thread only, like outbuf_flush: [written, allowed) cannot change under
 * it. A record that wraps around the ring's end is copied out whole first.
 */
int outbuf_flush_records(struct outbuf *ob, outbuf_record_fn fn, void *opaque)
{
	static _Thread_local uint8_t frame[OUTBUF_RECORD_MAX];

	for (;;) {
		uint64_t from, upto;
		uint32_t len;
		int r;

		pthread_mutex_lock(&ob->lock);
		from = ob->written;
		upto = ob->allowed;
		pthread_mutex_unlock(&ob->lock);
		if (upto - from < sizeof(len))
			return 0;
		ring_get(ob, from, (uint8_t *)&len, sizeof(len));
		if (upto - from < sizeof(len) + len)
			return 0; /* allowed ends inside a record: cannot happen with marks */
		ring_get(ob, from + sizeof(len), frame, len);
		r = fn(opaque, frame, len);
		if (r < 0)
			return r;
		pthread_mutex_lock(&ob->lock);
		ob->written += sizeof(len) + len;
		ob->records_out++;
		pthread_mutex_unlock(&ob->lock);
	}
}

uint64_t outbuf_records_held(struct outbuf *ob)
{
	uint64_t n;

	pthread_mutex_lock(&ob->lock);
	n = ob->records_in - ob->records_out;
	pthread_mutex_unlock(&ob->lock);
	return n;
}
