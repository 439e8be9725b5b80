// SPDX-License-Identifier: MIT
#include <errno.h>
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
	memcpy(ob->buf + used, data, len);
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
	else
		memcpy(dst, ob->buf + (from - ob->written), len);
	pthread_mutex_unlock(&ob->lock);
	return r;
}

void outbuf_rebase(struct outbuf *ob, uint64_t stream_pos)
{
	pthread_mutex_lock(&ob->lock);
	ob->stream_base = stream_pos - ob->produced;
	pthread_mutex_unlock(&ob->lock);
}

int outbuf_flush(struct outbuf *ob, int fd)
{
	int r = 0;

	pthread_mutex_lock(&ob->lock);
	while (ob->written < ob->allowed) {
		ssize_t n = write(fd, ob->buf, (size_t)(ob->allowed - ob->written));

		if (n < 0) {
			if (errno == EINTR)
				continue;
			r = errno == EAGAIN ? 0 : -errno;
			break;
		}
		/* The buffer always starts at `written`: move the rest down (small). */
		memmove(ob->buf, ob->buf + n, (size_t)(ob->produced - ob->written) - (size_t)n);
		ob->written += (uint64_t)n;
	}
	pthread_mutex_unlock(&ob->lock);
	return r;
}
