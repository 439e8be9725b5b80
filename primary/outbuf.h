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
	uint8_t *buf; /* a ring: bytes [written, produced), position x at buf[x % cap] */
	size_t cap;
	uint64_t produced;
	uint64_t allowed;
	uint64_t written;
	uint64_t dropped;
	uint8_t last; /* the last byte produced ('\n' before the first) */
	/*
	 * Position of byte 0 of this process in the guest's output stream, which
	 * outlives processes: a promoted secondary continues the stream where the
	 * checkpoint it runs from left it (positions wrap modulo 2^64).
	 */
	uint64_t stream_base;
	/* Record channels (packets): records appended and written out. */
	uint64_t records_in;
	uint64_t records_out;
};

int outbuf_init(struct outbuf *ob, size_t cap);
void outbuf_free(struct outbuf *ob);
/* A device's bytes (any thread). */
void outbuf_append(struct outbuf *ob, const uint8_t *data, size_t len);
/* Bytes produced so far: the boundary of a checkpoint taken now. */
uint64_t outbuf_mark(struct outbuf *ob);
/* Lets bytes up to `upto` leave (never lowers it). */
void outbuf_allow(struct outbuf *ob, uint64_t upto);
/*
 * Writes allowed bytes to fd (non-blocking, or a file): one thread only. The
 * lock is not held across write(), so appenders never wait for the sink.
 * Returns 0 or -errno (not -EAGAIN).
 */
int outbuf_flush(struct outbuf *ob, int fd);
/* Bytes produced but not yet allowed out. */
uint64_t outbuf_held(struct outbuf *ob);
/* The first byte not yet allowed out. */
uint64_t outbuf_allowed(struct outbuf *ob);
/*
 * Copies bytes [from, from + len) (positions of this process) to dst. Returns
 * 0, or -ERANGE if some have already been written out or not produced yet.
 */
int outbuf_copy(struct outbuf *ob, uint64_t from, size_t len, uint8_t *dst);
/*
 * Record channels (guest frames): each record is a 4-byte length and its
 * bytes, appended and written whole. outbuf_put_record appends all or
 * nothing: -ENOSPC when it does not fit in what is free (the caller applies
 * backpressure; a held frame is never dropped), -EMSGSIZE beyond 64 KiB.
 * Marks taken by the thread that appends always fall between records.
 */
#define OUTBUF_RECORD_MAX 65536
int outbuf_put_record(struct outbuf *ob, const uint8_t *data, size_t len);
/* Free bytes: records up to this size minus 4 fit now. */
size_t outbuf_room(struct outbuf *ob);
/*
 * Hands every allowed whole record to fn, in order, and counts it written; fn
 * returns 0, or a negative errno to stop there (the record stays, and is
 * handed over again next time). One thread only. Returns 0 or fn's error.
 */
typedef int (*outbuf_record_fn)(void *opaque, const uint8_t *data, size_t len);
int outbuf_flush_records(struct outbuf *ob, outbuf_record_fn fn, void *opaque);
/* Records appended and not yet written out. */
uint64_t outbuf_records_held(struct outbuf *ob);

/* Makes the next byte produced sit at `stream_pos` in the guest's stream. */
void outbuf_rebase(struct outbuf *ob, uint64_t stream_pos);
/*
 * A sink that already holds bytes (a console file from an earlier process):
 * its last byte, so that outbuf_end_line knows whether a line is open.
 */
void outbuf_set_last(struct outbuf *ob, uint8_t last);
/*
 * Before a gap in the stream (a mirror that starts or jumps): ends the line
 * the sink was left in, if any, with a '\n' of this process's own, so the
 * cut line is never joined to the text after the gap.
 */
void outbuf_end_line(struct outbuf *ob);
/* Stream position of byte `pos` of this process. */
static inline uint64_t outbuf_stream_pos(const struct outbuf *ob, uint64_t pos)
{
	return ob->stream_base + pos;
}

#endif
