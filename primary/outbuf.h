/* SPDX-License-Identifier: MIT */
/*
 * Output commit (DESIGN.md, "The checkpoint", step 7): guest output is held
 * until the checkpoint that produced it is acknowledged.
 *
 * Byte positions are absolute counts since start: `produced` bytes have come
 * from the guest, `allowed` may leave, `written` have left. A device appends
 * from its vCPU thread; the owner marks checkpoint boundaries while paused,
 * raises `allowed` to a mark when that epoch is acknowledged (or to `produced`
 * while unprotected), and writes to the sink without ever blocking: a sink
 * that cannot take more keeps the bytes here. A guest that outruns the buffer
 * loses the excess, counted in `dropped`, rather than stalling its vCPU.
 */
#ifndef RINGFT_PRIMARY_OUTBUF_H
#define RINGFT_PRIMARY_OUTBUF_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct outbuf {
	pthread_mutex_t lock;
	uint8_t *buf; /* bytes [written, produced) */
	size_t cap;
	uint64_t produced;
	uint64_t allowed;
	uint64_t written;
	uint64_t dropped;
};

int outbuf_init(struct outbuf *ob, size_t cap);
void outbuf_free(struct outbuf *ob);
/* A device's bytes (any thread). */
void outbuf_append(struct outbuf *ob, const uint8_t *data, size_t len);
/* Bytes produced so far: the boundary of a checkpoint taken now. */
uint64_t outbuf_mark(struct outbuf *ob);
/* Lets bytes up to `upto` leave (never lowers it). */
void outbuf_allow(struct outbuf *ob, uint64_t upto);
/* Writes allowed bytes to a non-blocking fd. Returns 0 or -errno (not -EAGAIN). */
int outbuf_flush(struct outbuf *ob, int fd);
/* Bytes produced but not yet allowed out. */
uint64_t outbuf_held(struct outbuf *ob);

#endif
