// SPDX-License-Identifier: MIT
/*
 * Unit tests for the replication transport and its neighbours (no KVM needed):
 *
 *  - link (proto/link.c): two links on one netloop over a real loopback TCP
 *    connection, driven from this one thread. Large messages of many iovecs
 *    arrive byte-exact and in order (plain sendmsg and SENDMSG_ZC), copied small
 *    frames keep their place among them, the receiver may name a different
 *    buffer for every receive, and every callback (done, closed, connected,
 *    released) runs exactly once, in order, when links close, fail, close after
 *    sending, or never connect.
 *  - outbuf (primary/outbuf.c): output commit through a non-blocking pipe.
 *  - session (proto/session.c): HELLO comparison and round trip, the small
 *    frame reader and its refusals, ACK and heartbeat frames.
 *
 * The byte stream from one link to the other is a position-dependent pattern,
 * so a lost, duplicated, misplaced or reordered byte shows at its offset.
 * Deadlines only guard against hangs; nothing depends on timing.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "lib/clock.h"
#include "primary/outbuf.h"
#include "proto/link.h"
#include "proto/session.h"
#include "proto/wire.h"

#define MiB	    (1024u * 1024u)
#define DEADLINE_NS (20ULL * 1000000000ULL)
#define TICK_NS	    (20ULL * 1000000ULL)
#define NO_BAD	    UINT64_MAX

/* Drives the netloop until cond holds; a bug fails the test instead of hanging it. */
#define WAIT_FOR(nl, cond)                                                                         \
	do {                                                                                       \
		uint64_t dl_ = clock_now_ns() + DEADLINE_NS;                                       \
		while (!(cond)) {                                                                  \
			if (clock_now_ns() > dl_)                                                  \
				fail_msg("%s:%d: timed out waiting for %s", __FILE__, __LINE__,    \
					 #cond);                                                   \
			assert_int_equal(netloop_wait((nl), TICK_NS), 0);                          \
		}                                                                                  \
	} while (0)

/* Keeps dispatching for a while: a duplicate or late callback has time to show. */
static void settle(struct netloop *nl, uint64_t ns)
{
	uint64_t until = clock_now_ns() + ns;

	while (clock_now_ns() < until)
		assert_int_equal(netloop_wait(nl, TICK_NS), 0);
}

/* ---- the test stream ------------------------------------------------------ */

static uint64_t mix64(uint64_t x)
{
	x ^= x >> 33;
	x *= 0xff51afd7ed558ccdULL;
	x ^= x >> 33;
	x *= 0xc4ceb9fe1a85ec53ULL;
	x ^= x >> 33;
	return x;
}

/* Bytes [off, off + n) of the stream. */
static void pattern(uint8_t *dst, uint64_t off, size_t n)
{
	while (n) {
		uint64_t w = mix64((off >> 3) + 0x5eed);

		for (unsigned int s = off & 7; s < 8 && n; s++, n--, off++)
			*dst++ = (uint8_t)(w >> (8 * s));
	}
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;

	return x < y ? -1 : x > y;
}

static uint64_t rng(uint64_t *s)
{
	*s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
	return mix64(*s);
}

/* ---- one end of a connection ---------------------------------------------- */

#define MAX_RX	  6
#define MAX_ORDER 32

struct end {
	struct link *l;

	/* Receiving: recv_buf names these buffers in turn, each with its own size. */
	size_t rx_size[MAX_RX];
	uint8_t *rx_buf[MAX_RX];
	unsigned int nr_rx;
	unsigned int rx_turn; /* recv_buf calls */
	uint8_t *named;
	size_t named_len;
	uint64_t rx_bytes;     /* stream bytes received */
	uint64_t rx_first_bad; /* first stream offset that did not match, or NO_BAD */
	uint64_t rx_fail_at;   /* received() returns -1 once this many arrived (0: never) */
	unsigned int nr_bad_buf;
	uint64_t rx_at_closed;

	/* Callbacks, numbered in the order they ran. */
	int events;
	int nr_closed, closed_err, closed_seq;
	int nr_connected, connected_err, connected_seq;
	int nr_released;
	int nr_late; /* callbacks that must not have run */
	bool close_called;
	bool close_from_closed; /* the owner calls link_close() inside closed() */

	int done_order[MAX_ORDER];
	int nr_done_order;
};

static bool end_gone(const struct end *e)
{
	return e->close_called || e->nr_closed || e->nr_released;
}

static void end_recv_buf(void *opaque, uint8_t **ret_buf, size_t *ret_len)
{
	struct end *e = opaque;
	unsigned int t = e->rx_turn++ % e->nr_rx;

	if (end_gone(e))
		e->nr_late++;
	e->named = e->rx_buf[t];
	e->named_len = e->rx_size[t];
	*ret_buf = e->named;
	*ret_len = e->named_len;
}

static int end_received(void *opaque, uint8_t *buf, size_t n)
{
	struct end *e = opaque;
	uint8_t want[4096];

	if (end_gone(e))
		e->nr_late++;
	if (buf != e->named || !n || n > e->named_len) {
		e->nr_bad_buf++;
		return -1;
	}
	for (size_t at = 0; at < n && e->rx_first_bad == NO_BAD; at += sizeof(want)) {
		size_t chunk = n - at < sizeof(want) ? n - at : sizeof(want);

		pattern(want, e->rx_bytes + at, chunk);
		if (memcmp(want, buf + at, chunk))
			for (size_t i = 0; i < chunk; i++)
				if (want[i] != buf[at + i]) {
					e->rx_first_bad = e->rx_bytes + at + i;
					break;
				}
	}
	e->rx_bytes += n;
	if (e->rx_fail_at && e->rx_bytes >= e->rx_fail_at)
		return -1;
	return 0;
}

static void end_closed(void *opaque, int err)
{
	struct end *e = opaque;

	if (end_gone(e))
		e->nr_late++;
	e->nr_closed++;
	e->closed_err = err;
	e->closed_seq = ++e->events;
	e->rx_at_closed = e->rx_bytes;
	if (e->close_from_closed) {
		e->close_called = true;
		link_close(e->l);
	}
}

static void end_connected(void *opaque, int err)
{
	struct end *e = opaque;

	if (end_gone(e))
		e->nr_late++;
	e->nr_connected++;
	e->connected_err = err;
	e->connected_seq = ++e->events;
}

static void end_released(void *opaque)
{
	struct end *e = opaque;

	if (e->nr_released || !e->close_called)
		e->nr_late++;
	e->nr_released++;
}

static const struct link_ops end_ops = {
	.recv_buf = end_recv_buf,
	.received = end_received,
	.closed = end_closed,
	.connected = end_connected,
	.released = end_released,
};

static void end_init(struct end *e, const size_t *sizes, unsigned int nr)
{
	memset(e, 0, sizeof(*e));
	assert_true(nr > 0 && nr <= MAX_RX);
	e->nr_rx = nr;
	for (unsigned int i = 0; i < nr; i++) {
		e->rx_size[i] = sizes[i];
		e->rx_buf[i] = malloc(sizes[i]);
		assert_non_null(e->rx_buf[i]);
	}
	e->rx_first_bad = NO_BAD;
}

static void end_free(struct end *e)
{
	for (unsigned int i = 0; i < e->nr_rx; i++)
		free(e->rx_buf[i]);
}

/* The owner lets go of the link (exactly once). */
static void end_close(struct end *e)
{
	if (e->close_called || !e->l)
		return;
	e->close_called = true;
	link_close(e->l);
}

/* ---- messages ------------------------------------------------------------- */

struct tmsg {
	struct link_msg m;
	struct end *owner;
	int id;
	int nr_done;
	int err;
	unsigned int notifs_at_done;
	struct iovec *iov;
	unsigned int nr_iov;
	uint64_t off; /* where it starts in the stream */
	uint64_t len;
};

static void tmsg_done(struct link_msg *m, int err)
{
	struct tmsg *t = (struct tmsg *)m; /* its first member */
	struct end *e = t->owner;

	if (e->nr_released)
		e->nr_late++;
	t->nr_done++;
	t->err = err;
	t->notifs_at_done = m->notifs;
	if (e->nr_done_order < MAX_ORDER)
		e->done_order[e->nr_done_order++] = t->id;
}

/*
 * A message of nr iovecs, each in its own allocation, holding stream bytes
 * [off, off + total) cut at random points. With 8 or more iovecs, some are
 * degenerate: the first and the last empty, one in the middle empty, one a
 * single byte.
 */
static struct tmsg *tmsg_new(struct end *owner, int id, uint64_t off, uint64_t total,
			     unsigned int nr, uint64_t seed, bool zc)
{
	struct tmsg *t = calloc(1, sizeof(*t));
	uint64_t *cut = calloc(nr + 1, sizeof(*cut));
	uint64_t sum = 0;

	assert_non_null(t);
	assert_non_null(cut);
	t->iov = calloc(nr ? nr : 1, sizeof(*t->iov));
	assert_non_null(t->iov);
	cut[nr] = total;
	for (unsigned int i = 1; i < nr; i++)
		cut[i] = rng(&seed) % (total + 1);
	if (nr > 1)
		qsort(cut + 1, nr - 1, sizeof(*cut), cmp_u64);
	if (nr >= 8) {
		cut[1] = 0;
		cut[nr / 3] = cut[nr / 3 - 1];
		if (cut[nr / 2 - 1] + 1 <= cut[nr / 2 + 1])
			cut[nr / 2] = cut[nr / 2 - 1] + 1;
		cut[nr - 1] = total;
	}
	for (unsigned int i = 0; i < nr; i++) {
		size_t len = (size_t)(cut[i + 1] - cut[i]);

		assert_true(cut[i] <= cut[i + 1]);
		t->iov[i].iov_base = malloc(len ? len : 1);
		assert_non_null(t->iov[i].iov_base);
		t->iov[i].iov_len = len;
		pattern(t->iov[i].iov_base, off + sum, len);
		sum += len;
	}
	assert_true(sum == total);
	free(cut);
	t->owner = owner;
	t->id = id;
	t->nr_iov = nr;
	t->off = off;
	t->len = total;
	t->m = (struct link_msg){ .iov = t->iov, .nr_iov = nr, .zero_copy = zc, .done = tmsg_done };
	return t;
}

static void tmsg_free(struct tmsg *t)
{
	if (!t)
		return;
	for (unsigned int i = 0; i < t->nr_iov; i++)
		free(t->iov[i].iov_base);
	free(t->iov);
	free(t);
}

/* A small frame through link_send_copy: the source is scribbled on right after. */
static void send_copy(struct end *e, uint64_t off, size_t len)
{
	uint8_t buf[4096];

	assert_true(len <= sizeof(buf));
	pattern(buf, off, len);
	assert_int_equal(link_send_copy(e->l, buf, len), 0);
	memset(buf, 0xa5, sizeof(buf));
}

/* ---- two links on one netloop --------------------------------------------- */

struct pair {
	struct netloop nl;
	struct listener *ls;
	struct sockaddr_in addr;
	struct end a; /* link_connect */
	struct end b; /* accepted, link_open */
	int nr_accepted;
};

static void pair_accepted(void *opaque, int fd, const struct sockaddr *sa)
{
	struct pair *p = opaque;

	p->nr_accepted++;
	if (p->b.l || link_open(&p->nl, fd, NULL, &end_ops, &p->b, &p->b.l))
		close(fd);
}

static bool have_send_zc(void)
{
	struct io_uring_probe *probe;
	struct netloop nl;
	bool ok;

	assert_int_equal(netloop_init(&nl, true), 0);
	probe = io_uring_get_probe_ring(&nl.ring);
	ok = probe && io_uring_opcode_supported(probe, IORING_OP_SENDMSG_ZC);
	if (probe)
		io_uring_free_probe(probe);
	netloop_free(&nl);
	return ok;
}

/* Listens on 127.0.0.1 (an ephemeral port) and starts a's connect; b is accepted later. */
static struct pair *pair_open(bool zc, const size_t *rx_sizes, unsigned int nr_rx)
{
	struct pair *p = calloc(1, sizeof(*p));
	struct sockaddr_in any = { .sin_family = AF_INET };
	socklen_t sl = sizeof(p->addr);

	assert_non_null(p);
	end_init(&p->a, rx_sizes, nr_rx);
	end_init(&p->b, rx_sizes, nr_rx);
	assert_int_equal(netloop_init(&p->nl, zc), 0);
	any.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(listener_open(&p->nl, (struct sockaddr *)&any, sizeof(any), pair_accepted,
				       p, &p->ls),
			 0);
	assert_int_equal(getsockname(p->ls->fd, (struct sockaddr *)&p->addr, &sl), 0);
	assert_int_not_equal(p->addr.sin_port, 0);
	assert_int_equal(link_connect(&p->nl, (struct sockaddr *)&p->addr, sizeof(p->addr), NULL,
				      &end_ops, &p->a, &p->a.l),
			 0);
	return p;
}

static void pair_wait_up(struct pair *p)
{
	WAIT_FOR(&p->nl, p->a.nr_connected && p->b.l);
	assert_int_equal(p->a.nr_connected, 1);
	assert_int_equal(p->a.connected_err, 0);
	assert_int_equal(p->nr_accepted, 1);
}

/*
 * Closes whatever the test left open, waits until both links are released and
 * the ring holds nothing, and checks the callbacks that must have run once.
 */
static void pair_close(struct pair *p)
{
	end_close(&p->a);
	end_close(&p->b);
	WAIT_FOR(&p->nl, p->a.nr_released && (!p->b.l || p->b.nr_released));
	listener_close(p->ls);
	WAIT_FOR(&p->nl, p->nl.inflight == 0);
	settle(&p->nl, 20 * 1000000ULL);
	netloop_free(&p->nl);

	assert_int_equal(p->a.nr_released, 1);
	assert_int_equal(p->b.nr_released, p->b.l ? 1 : 0);
	assert_int_equal(p->a.nr_late, 0);
	assert_int_equal(p->b.nr_late, 0);
	assert_int_equal(p->a.nr_bad_buf, 0);
	assert_int_equal(p->b.nr_bad_buf, 0);
	assert_true(p->a.nr_closed <= 1 && p->b.nr_closed <= 1);
	end_free(&p->a);
	end_free(&p->b);
	free(p);
}

static void assert_done_once(const struct tmsg *t, int err)
{
	assert_int_equal(t->nr_done, 1);
	assert_int_equal(t->err, err);
	assert_int_equal(t->notifs_at_done, 0);
}

/* ---- link: data ----------------------------------------------------------- */

/*
 * 64 MiB in 300 iovecs, then a small second message, both queued before the
 * connection is up. No socket takes 64 MiB at once: sends are partial.
 */
static void large_messages(bool zc)
{
	const size_t rx[] = { 256 * 1024 };
	const uint64_t big = 64ULL * MiB, small = 3 * 100000 + 7;
	struct pair *p;
	struct tmsg *m1, *m2;

	if (zc && !have_send_zc())
		skip();
	p = pair_open(zc, rx, 1);
	m1 = tmsg_new(&p->a, 1, 0, big, 300, 1, zc);
	m2 = tmsg_new(&p->a, 2, big, small, 3, 2, zc);
	link_send(p->a.l, &m1->m);
	link_send(p->a.l, &m2->m);
	assert_true(link_queued(p->a.l) == big + small);
	pair_wait_up(p);

	WAIT_FOR(&p->nl, m1->nr_done && m2->nr_done && p->b.rx_bytes >= big + small);
	settle(&p->nl, 100 * 1000000ULL);

	assert_done_once(m1, 0);
	assert_done_once(m2, 0);
	assert_int_equal(p->a.nr_done_order, 2);
	if (!zc) {
		/* Zero copy completes on notifications, which may come in any order. */
		assert_int_equal(p->a.done_order[0], 1);
		assert_int_equal(p->a.done_order[1], 2);
	}
	assert_true(p->b.rx_bytes == big + small);
	assert_true(p->b.rx_first_bad == NO_BAD);
	assert_true(link_queued(p->a.l) == 0);
	assert_true(p->a.l->bytes_sent == big + small);
	assert_true(p->b.l->bytes_received == big + small);
	/* 300 iovecs need at least 5 sends of 64; more means partial sends happened. */
	assert_true(p->a.l->sends > 6);
	assert_int_equal(p->a.nr_closed, 0);
	assert_int_equal(p->b.nr_closed, 0);

	pair_close(p);
	tmsg_free(m1);
	tmsg_free(m2);
}

static void test_link_large_messages(void **state)
{
	large_messages(false);
}

static void test_link_large_messages_zc(void **state)
{
	large_messages(true);
}

/*
 * Copied frames between big messages (and an empty message) keep their place,
 * whether queued before the connection is up or while a big message is in
 * flight.
 */
static void test_link_copy_frames_interleaved(void **state)
{
	const size_t rx[] = { 65536 };
	struct pair *p = pair_open(false, rx, 1);
	uint64_t off = 0;
	struct tmsg *m1, *m2, *empty;
	static uint8_t junk[WIRE_HDR_SIZE + WIRE_MAX_MSG + 1];
	size_t queued;

	send_copy(&p->a, off, 100);
	off += 100;
	/*
	 * Larger than loopback TCP can buffer (send and receive buffers grow to
	 * 4 + 6 MiB by default), so m1 is still in flight when 1 MiB has arrived.
	 */
	m1 = tmsg_new(&p->a, 1, off, 64 * MiB, 40, 3, false);
	link_send(p->a.l, &m1->m);
	off += m1->len;
	send_copy(&p->a, off, 4096);
	off += 4096;
	empty = tmsg_new(&p->a, 2, off, 0, 0, 4, false);
	link_send(p->a.l, &empty->m);
	/* Beyond the copy limit: refused, nothing queued. */
	queued = link_queued(p->a.l);
	assert_true(link_send_copy(p->a.l, junk, sizeof(junk)) < 0);
	assert_true(link_queued(p->a.l) == queued);
	assert_true(queued == off);

	pair_wait_up(p);
	WAIT_FOR(&p->nl, p->b.rx_bytes >= MiB);
	assert_int_equal(m1->nr_done, 0);
	send_copy(&p->a, off, 1);
	off += 1;
	m2 = tmsg_new(&p->a, 3, off, 4 * MiB + 3, 17, 5, false);
	link_send(p->a.l, &m2->m);
	off += m2->len;
	send_copy(&p->a, off, 3000);
	off += 3000;

	WAIT_FOR(&p->nl, m2->nr_done && p->b.rx_bytes >= off);
	settle(&p->nl, 50 * 1000000ULL);
	assert_done_once(m1, 0);
	assert_done_once(empty, 0);
	assert_done_once(m2, 0);
	assert_int_equal(p->a.nr_done_order, 3);
	assert_int_equal(p->a.done_order[0], 1);
	assert_int_equal(p->a.done_order[1], 2);
	assert_int_equal(p->a.done_order[2], 3);
	assert_true(p->b.rx_bytes == off);
	assert_true(p->b.rx_first_bad == NO_BAD);
	assert_true(link_queued(p->a.l) == 0);

	pair_close(p);
	tmsg_free(m1);
	tmsg_free(empty);
	tmsg_free(m2);
}

/* The receiver names a different buffer, of a different size, for every receive. */
static void test_link_recv_buffers_vary(void **state)
{
	const size_t rx[] = { 7, MiB, 1, 65536, 4099, 7 };
	struct pair *p = pair_open(false, rx, 6);
	struct tmsg *m;
	uint64_t total;

	m = tmsg_new(&p->a, 1, 0, 16 * MiB, 50, 6, false);
	link_send(p->a.l, &m->m);
	send_copy(&p->a, m->len, 333);
	total = m->len + 333;
	pair_wait_up(p);

	WAIT_FOR(&p->nl, m->nr_done && p->b.rx_bytes >= total);
	settle(&p->nl, 50 * 1000000ULL);
	assert_done_once(m, 0);
	assert_true(p->b.rx_bytes == total);
	assert_true(p->b.rx_first_bad == NO_BAD);
	assert_int_equal(p->b.nr_bad_buf, 0);
	/* Every buffer size was used, the tiny ones included. */
	assert_true(p->b.rx_turn > 2 * 6);

	pair_close(p);
	tmsg_free(m);
}

/* ---- link: closing -------------------------------------------------------- */

/*
 * The sender closes while a big message is in the kernel's hands and more are
 * queued. Queued messages complete at once with -ECANCELED, the one in flight
 * when its send returns, each exactly once, all before released().
 */
static void close_with_queue(bool zc, bool progress)
{
	const size_t rx[] = { 256 * 1024 };
	struct pair *p;
	struct tmsg *a, *b, *c;
	uint64_t total;

	if (zc && !have_send_zc())
		skip();
	p = pair_open(zc, rx, 1);
	pair_wait_up(p);
	a = tmsg_new(&p->a, 1, 0, 32 * MiB, 100, 7, zc);
	b = tmsg_new(&p->a, 2, a->len, MiB, 5, 8, zc);
	c = tmsg_new(&p->a, 3, a->len + b->len + 200, 10, 1, 9, zc);
	total = a->len + b->len + 200 + c->len;
	link_send(p->a.l, &a->m);
	link_send(p->a.l, &b->m);
	send_copy(&p->a, a->len + b->len, 200);
	link_send(p->a.l, &c->m);
	if (progress) {
		WAIT_FOR(&p->nl, p->b.rx_bytes >= MiB);
		/* Socket buffers hold a few MiB: most of the 32 are still to go. */
		assert_int_equal(a->nr_done, 0);
	}

	end_close(&p->a);
	assert_done_once(b, -ECANCELED);
	assert_done_once(c, -ECANCELED);
	/* The kernel still holds a's iovecs: it completes when its send returns. */
	assert_int_equal(a->nr_done, 0);
	assert_int_equal(p->a.nr_released, 0);

	WAIT_FOR(&p->nl, p->a.nr_released && p->b.nr_closed);
	settle(&p->nl, 50 * 1000000ULL);
	assert_int_equal(a->nr_done, 1);
	assert_int_equal(a->notifs_at_done, 0);
	if (a->err != 0 && a->err != -ECANCELED)
		print_message("note: the message in flight completed with %d (%s)\n", a->err,
			      strerror(-a->err));
	assert_true(a->err == 0 || a->err == -ECANCELED || a->err == -EPIPE);
	assert_int_equal(b->nr_done, 1);
	assert_int_equal(c->nr_done, 1);
	/* b and c ran first, then a; nothing after released (checked in pair_close). */
	assert_int_equal(p->a.nr_done_order, 3);
	assert_int_equal(p->a.done_order[2], 1);
	/* The owner closed a: closed() does not run for it. */
	assert_int_equal(p->a.nr_closed, 0);
	assert_int_equal(p->a.nr_released, 1);
	/* The peer saw a byte-exact prefix, then the end of the connection. */
	assert_int_equal(p->b.nr_closed, 1);
	assert_true(p->b.closed_err <= 0);
	assert_true(p->b.rx_first_bad == NO_BAD);
	assert_true(p->b.rx_bytes < total);
	if (progress)
		assert_true(p->b.rx_bytes >= MiB);

	pair_close(p);
	tmsg_free(a);
	tmsg_free(b);
	tmsg_free(c);
}

static void test_link_close_in_flight(void **state)
{
	close_with_queue(false, true);
}

static void test_link_close_in_flight_zc(void **state)
{
	close_with_queue(true, true);
}

/* Closed right after queueing: the first send is prepared but not even submitted. */
static void test_link_close_queued_at_once(void **state)
{
	close_with_queue(false, false);
}

/*
 * The receiver closes while the sender is in the middle of a big message: the
 * sender sees closed() once with 0 or an error, the message in flight fails,
 * the queued ones are cancelled, each exactly once.
 */
static void test_link_peer_closes(void **state)
{
	const size_t rx[] = { 65536 };
	struct pair *p = pair_open(false, rx, 1);
	struct tmsg *a, *b, *c;

	pair_wait_up(p);
	a = tmsg_new(&p->a, 1, 0, 32 * MiB, 64, 10, false);
	b = tmsg_new(&p->a, 2, a->len, MiB, 4, 11, false);
	c = tmsg_new(&p->a, 3, a->len + b->len, 100, 2, 12, false);
	link_send(p->a.l, &a->m);
	link_send(p->a.l, &b->m);
	link_send(p->a.l, &c->m);
	WAIT_FOR(&p->nl, p->b.rx_bytes >= MiB);
	end_close(&p->b);

	WAIT_FOR(&p->nl, p->a.nr_closed && p->b.nr_released);
	assert_int_equal(p->a.nr_closed, 1);
	assert_true(p->a.closed_err <= 0);
	/* The message in flight cannot have gone whole: 32 MiB do not fit the buffers. */
	WAIT_FOR(&p->nl, a->nr_done);
	assert_int_equal(a->nr_done, 1);
	assert_true(a->err < 0);
	assert_int_equal(p->b.nr_closed, 0);

	pair_close(p);
	assert_done_once(b, -ECANCELED);
	assert_done_once(c, -ECANCELED);
	tmsg_free(a);
	tmsg_free(b);
	tmsg_free(c);
}

/* received() refusing the bytes closes the link with -EPROTO, once; no receive follows. */
static void test_link_received_refuses(void **state)
{
	const size_t rx[] = { 4096 };
	struct pair *p = pair_open(false, rx, 1);
	struct tmsg *m;

	pair_wait_up(p);
	p->b.rx_fail_at = 10000;
	m = tmsg_new(&p->a, 1, 0, 2 * MiB, 8, 13, false);
	link_send(p->a.l, &m->m);
	WAIT_FOR(&p->nl, p->b.nr_closed);
	assert_int_equal(p->b.closed_err, -EPROTO);
	assert_true(p->b.rx_bytes >= 10000 && p->b.rx_bytes < 10000 + 4096);
	end_close(&p->b);
	WAIT_FOR(&p->nl, p->a.nr_closed && m->nr_done);
	settle(&p->nl, 50 * 1000000ULL);
	assert_int_equal(p->b.nr_closed, 1);
	assert_int_equal(p->a.nr_closed, 1);
	assert_int_equal(m->nr_done, 1);
	assert_true(p->b.rx_first_bad == NO_BAD);

	pair_close(p);
	tmsg_free(m);
}

/*
 * link_close_after_send: what was queued before it arrives whole, then the peer
 * sees an orderly close. An empty queue closes at once.
 */
static void close_after_send(bool zc)
{
	const size_t rx[] = { 100000 };
	struct pair *p;
	struct tmsg *m;
	uint64_t total;

	if (zc && !have_send_zc())
		skip();
	p = pair_open(zc, rx, 1);
	pair_wait_up(p);
	send_copy(&p->a, 0, 3000);
	m = tmsg_new(&p->a, 1, 3000, 8 * MiB, 30, 14, zc);
	link_send(p->a.l, &m->m);
	send_copy(&p->a, 3000 + m->len, 100);
	total = 3000 + m->len + 100;
	p->a.close_called = true; /* the owner lets go: closed() and receives must not run */
	link_close_after_send(p->a.l);
	assert_int_equal(m->nr_done, 0);

	WAIT_FOR(&p->nl, p->b.nr_closed && p->a.nr_released);
	settle(&p->nl, 50 * 1000000ULL);
	assert_done_once(m, 0);
	assert_int_equal(p->a.nr_closed, 0);
	assert_int_equal(p->b.nr_closed, 1);
	assert_int_equal(p->b.closed_err, 0);
	assert_true(p->b.rx_at_closed == total);
	assert_true(p->b.rx_bytes == total);
	assert_true(p->b.rx_first_bad == NO_BAD);

	/* b has nothing queued: it closes at once (released once its receive returns). */
	p->b.close_called = true;
	link_close_after_send(p->b.l);
	WAIT_FOR(&p->nl, p->b.nr_released);

	pair_close(p);
	tmsg_free(m);
}

static void test_link_close_after_send(void **state)
{
	close_after_send(false);
}

static void test_link_close_after_send_zc(void **state)
{
	close_after_send(true);
}

/*
 * link_finish: what was queued arrives whole and the peer sees an orderly close
 * (0, not a reset), although it went on sending after the owner let go (bytes
 * left unread in a socket turn its close into a reset). The link lingers until
 * the peer closes too, and only then is released.
 */
static void test_link_finish(void **state)
{
	const size_t rx[] = { 100000 };
	struct pair *p = pair_open(false, rx, 1);
	struct tmsg *m;

	pair_wait_up(p);
	m = tmsg_new(&p->a, 1, 0, 8 * MiB, 30, 14, false);
	link_send(p->a.l, &m->m);
	p->a.close_called = true;
	link_finish(p->a.l);
	for (unsigned int i = 0; i < 64; i++)
		send_copy(&p->b, i * 4096ULL, 4096);

	/* b's orderly close (its socket shut down on the FIN) ends a's wait. */
	WAIT_FOR(&p->nl, p->b.nr_closed && p->a.nr_released);
	settle(&p->nl, 50 * 1000000ULL);
	assert_done_once(m, 0);
	assert_int_equal(p->b.closed_err, 0);
	assert_true(p->b.rx_bytes == m->len);
	assert_true(p->b.rx_first_bad == NO_BAD);
	assert_int_equal(p->a.nr_closed, 0);
	assert_int_equal(p->a.nr_late, 0);

	end_close(&p->b);
	pair_close(p);
	tmsg_free(m);
}

/* Closing before the connect has even been submitted: connected() never runs. */
static void test_link_close_while_connecting(void **state)
{
	const size_t rx[] = { 4096 };
	struct pair *p = pair_open(false, rx, 1);
	struct tmsg *m = tmsg_new(&p->a, 1, 0, 5000, 2, 15, false);

	link_send(p->a.l, &m->m);
	end_close(&p->a);
	assert_done_once(m, -ECANCELED);
	WAIT_FOR(&p->nl, p->a.nr_released);
	assert_int_equal(p->a.nr_connected, 0);
	assert_int_equal(p->a.nr_closed, 0);
	assert_int_equal(p->a.rx_turn, 0);
	/* The handshake may have completed in the kernel: then the peer sees it end. */
	settle(&p->nl, 100 * 1000000ULL);
	if (p->b.l) {
		WAIT_FOR(&p->nl, p->b.nr_closed);
		assert_true(p->b.closed_err <= 0);
		assert_true(p->b.rx_bytes == 0);
	}

	pair_close(p);
	tmsg_free(m);
}

/*
 * A port bound but not listening: connected(-ECONNREFUSED), then closed(); a
 * message queued while connecting is cancelled by link_close, one sent after
 * the failure is cancelled at once; released() after link_close. Once with the
 * owner closing after closed(), once from inside it.
 */
static void test_link_connect_refused(void **state)
{
	for (int inside = 0; inside < 2; inside++) {
		const size_t rx[] = { 4096 };
		struct sockaddr_in sa = { .sin_family = AF_INET };
		socklen_t sl = sizeof(sa);
		struct netloop nl;
		struct end e;
		struct tmsg *queued, *late;
		int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

		assert_true(s >= 0);
		sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		assert_int_equal(bind(s, (struct sockaddr *)&sa, sizeof(sa)), 0);
		assert_int_equal(getsockname(s, (struct sockaddr *)&sa, &sl), 0);

		end_init(&e, rx, 1);
		e.close_from_closed = inside;
		assert_int_equal(netloop_init(&nl, false), 0);
		assert_int_equal(link_connect(&nl, (struct sockaddr *)&sa, sizeof(sa), NULL,
					      &end_ops, &e, &e.l),
				 0);
		queued = tmsg_new(&e, 1, 0, 1000, 2, 16, false);
		late = tmsg_new(&e, 2, 1000, 10, 1, 17, false);
		link_send(e.l, &queued->m);

		WAIT_FOR(&nl, e.nr_closed);
		assert_int_equal(e.nr_connected, 1);
		assert_int_equal(e.connected_err, -ECONNREFUSED);
		assert_int_equal(e.nr_closed, 1);
		assert_true(e.closed_err < 0);
		assert_true(e.connected_seq < e.closed_seq);
		assert_int_equal(e.rx_turn, 0);

		if (!inside) {
			link_send(e.l, &late->m);
			assert_done_once(late, -ECANCELED);
			end_close(&e);
		}
		assert_done_once(queued, -ECANCELED);
		WAIT_FOR(&nl, e.nr_released);
		WAIT_FOR(&nl, nl.inflight == 0);
		settle(&nl, 20 * 1000000ULL);
		netloop_free(&nl);
		close(s);

		assert_int_equal(e.nr_released, 1);
		assert_int_equal(e.nr_closed, 1);
		assert_int_equal(e.nr_connected, 1);
		assert_int_equal(e.nr_late, 0);
		assert_int_equal(queued->nr_done, 1);
		assert_int_equal(late->nr_done, inside ? 0 : 1);
		end_free(&e);
		tmsg_free(queued);
		tmsg_free(late);
	}
}

/* ---- outbuf --------------------------------------------------------------- */

/* Reads everything the non-blocking pipe holds now. */
static size_t drain(int fd, uint8_t *buf, size_t cap)
{
	size_t have = 0;

	for (;;) {
		uint8_t sink[4096];
		ssize_t n = read(fd, buf ? buf + have : sink, buf ? cap - have : sizeof(sink));

		if (n < 0) {
			assert_int_equal(errno, EAGAIN);
			return have;
		}
		assert_true(n > 0);
		have += (size_t)n;
		if (buf && have == cap) {
			/* The caller expects at most cap bytes: there must be no more. */
			assert_int_equal(read(fd, sink, sizeof(sink)), -1);
			return have;
		}
	}
}

/*
 * A gap in the stream (a mirror that starts or jumps) ends an open line with
 * a newline of the sink's own; the stream positions after the gap stay exact.
 */
static void test_outbuf_end_line(void **state)
{
	struct outbuf ob;
	uint8_t got[64];
	int p[2];

	(void)state;
	assert_int_equal(outbuf_init(&ob, 64), 0);
	assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);

	/* Nothing written yet: no line is open. */
	outbuf_end_line(&ob);
	assert_true(outbuf_mark(&ob) == 0);
	outbuf_append(&ob, (const uint8_t *)"bank iter=1 ok\nbank it", 22);
	outbuf_end_line(&ob);
	assert_true(outbuf_mark(&ob) == 23);
	/* Closed already: a second gap adds nothing. */
	outbuf_end_line(&ob);
	assert_true(outbuf_mark(&ob) == 23);
	outbuf_rebase(&ob, 5000);
	outbuf_append(&ob, (const uint8_t *)"er=9 ok\n", 8);
	assert_true(outbuf_stream_pos(&ob, 23) == 5000);
	assert_true(outbuf_stream_pos(&ob, outbuf_mark(&ob)) == 5008);
	outbuf_allow(&ob, outbuf_mark(&ob));
	assert_int_equal(outbuf_flush(&ob, p[1]), 0);
	assert_int_equal(drain(p[0], got, sizeof(got)), 31);
	assert_memory_equal(got, "bank iter=1 ok\nbank it\ner=9 ok\n", 31);

	/* A file an earlier process left in mid-line. */
	outbuf_set_last(&ob, 'x');
	outbuf_end_line(&ob);
	assert_true(outbuf_mark(&ob) == 32);
	outbuf_set_last(&ob, '\n');
	outbuf_end_line(&ob);
	assert_true(outbuf_mark(&ob) == 32);

	close(p[0]);
	close(p[1]);
	outbuf_free(&ob);
}

static void test_outbuf_allow(void **state)
{
	struct outbuf ob;
	uint8_t got[64];
	int p[2];

	assert_int_equal(outbuf_init(&ob, 64), 0);
	assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);

	outbuf_append(&ob, (const uint8_t *)"0123456789", 10);
	assert_true(outbuf_mark(&ob) == 10);
	assert_true(outbuf_held(&ob) == 10);
	/* Nothing allowed: nothing leaves. */
	assert_int_equal(outbuf_flush(&ob, p[1]), 0);
	assert_int_equal(drain(p[0], got, sizeof(got)), 0);

	outbuf_allow(&ob, 4);
	assert_true(outbuf_held(&ob) == 6);
	assert_int_equal(outbuf_flush(&ob, p[1]), 0);
	assert_int_equal(drain(p[0], got, sizeof(got)), 4);
	assert_memory_equal(got, "0123", 4);
	assert_true(ob.written == 4);

	/* Never lowers. */
	outbuf_allow(&ob, 2);
	assert_true(ob.allowed == 4);
	assert_true(outbuf_held(&ob) == 6);
	assert_int_equal(outbuf_flush(&ob, p[1]), 0);
	assert_int_equal(drain(p[0], got, sizeof(got)), 0);

	outbuf_append(&ob, (const uint8_t *)"abcdef", 6);
	assert_true(outbuf_mark(&ob) == 16);
	assert_true(outbuf_held(&ob) == 12);
	outbuf_allow(&ob, 10);
	assert_true(outbuf_held(&ob) == 6);
	assert_int_equal(outbuf_flush(&ob, p[1]), 0);
	assert_int_equal(drain(p[0], got, sizeof(got)), 6);
	assert_memory_equal(got, "456789", 6);

	/* Allowing past what was produced does not let future bytes out. */
	outbuf_allow(&ob, 1000);
	assert_true(ob.allowed == 16);
	assert_true(outbuf_held(&ob) == 0);
	outbuf_append(&ob, (const uint8_t *)"xyz", 3);
	assert_true(outbuf_held(&ob) == 3);
	assert_int_equal(outbuf_flush(&ob, p[1]), 0);
	assert_int_equal(drain(p[0], got, sizeof(got)), 6);
	assert_memory_equal(got, "abcdef", 6);
	assert_true(ob.written == 16);
	outbuf_allow(&ob, outbuf_mark(&ob));
	assert_int_equal(outbuf_flush(&ob, p[1]), 0);
	assert_int_equal(drain(p[0], got, sizeof(got)), 3);
	assert_memory_equal(got, "xyz", 3);
	assert_true(ob.written == 19 && ob.produced == 19 && ob.dropped == 0);

	close(p[0]);
	close(p[1]);
	outbuf_free(&ob);
	outbuf_free(&ob); /* twice is harmless */
}

/* A full pipe keeps the rest in the buffer; flushes after draining deliver it exactly. */
static void test_outbuf_full_pipe(void **state)
{
	enum { N = 100000 };
	static uint8_t want[N], got[N];
	uint8_t junk[4096];
	struct outbuf ob;
	size_t have = 0, junk_len = 0;
	int p[2], rounds = 0;

	assert_int_equal(outbuf_init(&ob, 256 * 1024), 0);
	assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);
	fcntl(p[1], F_SETPIPE_SZ, 4096); /* smallest; the test holds whatever it is */
	memset(junk, 'j', sizeof(junk));
	for (size_t chunk = sizeof(junk); chunk;) {
		ssize_t n = write(p[1], junk, chunk);

		if (n < 0) {
			assert_int_equal(errno, EAGAIN);
			chunk /= 2;
			continue;
		}
		junk_len += (size_t)n;
	}
	assert_true(junk_len > 0);

	pattern(want, 0, N);
	outbuf_append(&ob, want, N);
	outbuf_allow(&ob, outbuf_mark(&ob));
	assert_int_equal(outbuf_flush(&ob, p[1]), 0);
	assert_true(ob.written == 0);
	assert_true(outbuf_held(&ob) == 0);
	assert_int_equal(drain(p[0], NULL, 0), junk_len);

	while (have < N) {
		assert_true(++rounds < 10000);
		assert_int_equal(outbuf_flush(&ob, p[1]), 0);
		assert_true(ob.written <= N);
		if (rounds == 1)
			assert_true(ob.written < N); /* the pipe holds far less */
		have += drain(p[0], got + have, N - have);
		assert_true(have == ob.written);
	}
	assert_true(rounds > 1);
	assert_memory_equal(got, want, N);
	assert_int_equal(outbuf_flush(&ob, p[1]), 0);
	assert_int_equal(drain(p[0], NULL, 0), 0);
	assert_true(ob.dropped == 0);

	/* A sink that is gone: an error, and the bytes stay. */
	{
		struct sigaction ign = { .sa_handler = SIG_IGN }, old;

		assert_int_equal(sigaction(SIGPIPE, &ign, &old), 0);
		outbuf_append(&ob, want, 10);
		outbuf_allow(&ob, outbuf_mark(&ob));
		close(p[0]);
		assert_int_equal(outbuf_flush(&ob, p[1]), -EPIPE);
		assert_true(ob.written == N);
		assert_true(outbuf_held(&ob) == 0);
		assert_int_equal(sigaction(SIGPIPE, &old, NULL), 0);
	}
	close(p[1]);
	outbuf_free(&ob);
}

/* A guest that outruns the buffer loses the excess, never the earliest bytes. */
static void test_outbuf_overflow(void **state)
{
	struct outbuf ob;
	uint8_t got[64], big[40];
	int p[2];

	assert_int_equal(outbuf_init(&ob, 16), 0);
	assert_int_equal(pipe2(p, O_NONBLOCK | O_CLOEXEC), 0);

	outbuf_append(&ob, (const uint8_t *)"ABCDEFGHIJ", 10);
	outbuf_append(&ob, (const uint8_t *)"abcdefghij", 10);
	assert_true(ob.dropped == 4);
	assert_true(outbuf_mark(&ob) == 16);
	assert_true(outbuf_held(&ob) == 16);
	outbuf_allow(&ob, outbuf_mark(&ob));
	assert_int_equal(outbuf_flush(&ob, p[1]), 0);
	assert_int_equal(drain(p[0], got, sizeof(got)), 16);
	assert_memory_equal(got, "ABCDEFGHIJabcdef", 16);

	/* Written bytes free their room. */
	outbuf_append(&ob, (const uint8_t *)"12345", 5);
	assert_true(ob.dropped == 4);
	/* Held bytes do not: 11 more fit, 29 are dropped. */
	pattern(big, 0, sizeof(big));
	outbuf_append(&ob, big, sizeof(big));
	assert_true(ob.dropped == 4 + 29);
	assert_true(outbuf_mark(&ob) == 32);
	outbuf_allow(&ob, outbuf_mark(&ob));
	assert_int_equal(outbuf_flush(&ob, p[1]), 0);
	assert_int_equal(drain(p[0], got, sizeof(got)), 16);
	assert_memory_equal(got, "12345", 5);
	assert_memory_equal(got + 5, big, 11);

	close(p[0]);
	close(p[1]);
	outbuf_free(&ob);
}

/* ---- session -------------------------------------------------------------- */

static const uint32_t msrs_base[] = { 0x10, 0x174, 0xc0000080 };
static uint8_t cpuid_base[64];

static void hello_base(struct hello_info *h, uint32_t role)
{
	for (unsigned int i = 0; i < sizeof(cpuid_base); i++)
		cpuid_base[i] = (uint8_t)(i * 7 + 1);
	*h = (struct hello_info){
		.protocol_version = RINGFT_PROTOCOL_VERSION,
		.protocol_min = RINGFT_PROTOCOL_MIN,
		.software_version = "0.1.0",
		.role = role,
		.mem_size = 1ULL << 30,
		.nr_vcpus = 2,
		.page_size = 4096,
		.kvm_api_version = 12,
		.xsave_size = 4096,
		.tracking = "dirty-ring",
		.ring_entries = 4096,
		.cpuid = cpuid_base,
		.cpuid_len = sizeof(cpuid_base),
		.msrs = msrs_base,
		.nr_msrs = 3,
		.guest = "guest.bin",
		.devices = { "serial", "virtio-blk" },
		.nr_devices = 2,
		.verify = true,
		.net_mac = "52:54:00:12:34:56",
		.disk_size = 1ULL << 20,
	};
}

static void expect_mismatch(const struct hello_info *local, const struct hello_info *remote,
			    const char *field, const char *lv, const char *rv)
{
	struct hello_mismatch mm;

	assert_int_equal(hello_compare(local, remote, HELLO_PRIMARY, &mm), -EPROTO);
	assert_string_equal(mm.field, field);
	if (!strstr(mm.local, lv) || !strstr(mm.remote, rv))
		fail_msg("%s: local '%s' (wanted '%s'), remote '%s' (wanted '%s')", field, mm.local,
			 lv, mm.remote, rv);
}

/*
 * The remote differs in every field; the comparison names them one at a time,
 * in its order, as each is made to match.
 */
static void test_hello_compare(void **state)
{
	static const uint32_t msrs_other[] = { 0x10, 0x175, 0xc0000080 };
	static const uint32_t msrs_short[] = { 0x10, 0x174 };
	struct hello_info local, remote;
	struct hello_mismatch mm;
	uint8_t cpuid_other[64];

	hello_base(&local, HELLO_SECONDARY); /* we are the secondary; the remote must be primary */
	hello_base(&remote, HELLO_PRIMARY);
	assert_int_equal(hello_compare(&local, &remote, HELLO_PRIMARY, &mm),
			 RINGFT_PROTOCOL_VERSION);
	assert_string_equal(mm.field, "");

	memcpy(cpuid_other, cpuid_base, sizeof(cpuid_other));
	cpuid_other[40] ^= 1;
	remote.protocol_min = RINGFT_PROTOCOL_VERSION + 1; /* a newer peer that dropped ours */
	remote.protocol_version = RINGFT_PROTOCOL_VERSION + 1;
	remote.role = HELLO_SECONDARY;
	remote.page_size = 65536;
	remote.mem_size = 2ULL << 30;
	remote.nr_vcpus = 4;
	remote.tracking = "bitmap";
	remote.ring_entries = 8192;
	remote.kvm_api_version = 13;
	remote.xsave_size = 2696;
	remote.nr_devices = 1;
	remote.cpuid = cpuid_other;
	remote.msrs = msrs_other;

	{
		char l[32], r[32];

		snprintf(l, sizeof(l), "%u..%u", RINGFT_PROTOCOL_MIN, RINGFT_PROTOCOL_VERSION);
		snprintf(r, sizeof(r), "%u..%u", RINGFT_PROTOCOL_VERSION + 1,
			 RINGFT_PROTOCOL_VERSION + 1);
		expect_mismatch(&local, &remote, "protocol_version", l, r);
	}
	remote.protocol_min = RINGFT_PROTOCOL_MIN;
	remote.protocol_version = RINGFT_PROTOCOL_VERSION;
	expect_mismatch(&local, &remote, "role", "secondary", "secondary");
	assert_int_equal(hello_compare(&local, &remote, HELLO_PRIMARY, &mm), -EPROTO);
	assert_non_null(strstr(mm.local, "primary")); /* what it expected */
	remote.role = HELLO_PRIMARY;
	expect_mismatch(&local, &remote, "page_size", "4096", "65536");
	remote.page_size = 4096;
	expect_mismatch(&local, &remote, "mem_size", "1073741824", "2147483648");
	remote.mem_size = 1ULL << 30;
	expect_mismatch(&local, &remote, "nr_vcpus", "2", "4");
	remote.nr_vcpus = 2;
	expect_mismatch(&local, &remote, "tracking", "dirty-ring", "bitmap");
	remote.tracking = "dirty-ring";
	expect_mismatch(&local, &remote, "ring_entries", "4096", "8192");
	remote.ring_entries = 4096;
	expect_mismatch(&local, &remote, "kvm_api_version", "12", "13");
	remote.kvm_api_version = 12;
	expect_mismatch(&local, &remote, "xsave_size", "4096", "2696");
	remote.xsave_size = 4096;
	expect_mismatch(&local, &remote, "devices", "serial,virtio-blk", "serial");
	assert_int_equal(hello_compare(&local, &remote, HELLO_PRIMARY, &mm), -EPROTO);
	assert_null(strstr(mm.remote, "virtio-blk"));
	remote.nr_devices = 0;
	expect_mismatch(&local, &remote, "devices", "serial,virtio-blk", "none");
	remote.nr_devices = 2;
	remote.devices[1] = "virtio-net";
	expect_mismatch(&local, &remote, "devices", "serial,virtio-blk", "serial,virtio-net");
	remote.devices[1] = "virtio-blk";
	/* The replicated disk: images of one size, or none on both ends. */
	remote.disk_size = 2ULL << 20;
	expect_mismatch(&local, &remote, "disk_size", "1048576", "2097152");
	assert_int_equal(hello_compare(&local, &remote, HELLO_PRIMARY, &mm), -EPROTO);
	assert_string_equal(mm.local, "1048576");
	assert_string_equal(mm.remote, "2097152");
	remote.disk_size = 0;
	expect_mismatch(&local, &remote, "disk_size", "1048576", "no disk");
	remote.disk_size = 1ULL << 20;
	/* The NIC's MAC is the VM's identity too. */
	remote.net_mac = "52:54:00:12:34:57";
	expect_mismatch(&local, &remote, "net_mac", "52:54:00:12:34:56", "52:54:00:12:34:57");
	remote.net_mac = "";
	expect_mismatch(&local, &remote, "net_mac", "52:54:00:12:34:56", "no NIC");
	remote.net_mac = "52:54:00:12:34:56";
	expect_mismatch(&local, &remote, "cpuid", "64 bytes", "64 bytes");
	assert_int_equal(hello_compare(&local, &remote, HELLO_PRIMARY, &mm), -EPROTO);
	assert_string_not_equal(mm.local, mm.remote); /* the hashes differ */
	remote.cpuid_len = 63;
	remote.cpuid = cpuid_base;
	expect_mismatch(&local, &remote, "cpuid", "64 bytes", "63 bytes");
	remote.cpuid_len = 64;
	expect_mismatch(&local, &remote, "msrs", "0x174", "0x175");
	expect_mismatch(&local, &remote, "msrs", "3 MSRs", "3 MSRs");
	remote.msrs = msrs_short;
	remote.nr_msrs = 2;
	expect_mismatch(&local, &remote, "msrs", "3 MSRs", "2 MSRs");
	remote.msrs = msrs_base;
	remote.nr_msrs = 3;
	assert_int_equal(hello_compare(&local, &remote, HELLO_PRIMARY, &mm),
			 RINGFT_PROTOCOL_VERSION);

	/* Fields that need not match: the guest name, verify. */
	remote.guest = "other.bin";
	remote.verify = false;
	assert_int_equal(hello_compare(&local, &remote, HELLO_PRIMARY, &mm),
			 RINGFT_PROTOCOL_VERSION);
}

/* The version both sides use for local MIN..MAX and remote MIN..MAX (MIN 0: unsaid). */
static int agree(uint32_t lmin, uint32_t lmax, uint32_t rmin, uint32_t rmax,
		 struct hello_mismatch *mm)
{
	struct hello_info local, remote;

	hello_base(&local, HELLO_SECONDARY);
	hello_base(&remote, HELLO_PRIMARY);
	local.protocol_min = lmin;
	local.protocol_version = lmax;
	remote.protocol_min = rmin;
	remote.protocol_version = rmax;
	return hello_compare(&local, &remote, HELLO_PRIMARY, mm);
}

/*
 * Version negotiation: the highest version in both ranges; disjoint ranges
 * are refused naming both; a peer before protocol 5 (no protocol_min) speaks
 * its protocol_version only.
 */
static void test_hello_protocol_range(void **state)
{
	struct hello_mismatch mm;

	/* Equal ranges. */
	assert_int_equal(agree(5, 5, 5, 5, &mm), 5);
	assert_int_equal(agree(3, 7, 3, 7, &mm), 7);
	assert_string_equal(mm.field, "");
	/* Overlapping: the highest common version, whichever side is newer. */
	assert_int_equal(agree(3, 7, 5, 9, &mm), 7);
	assert_int_equal(agree(5, 9, 3, 7, &mm), 7);
	assert_int_equal(agree(1, 10, 4, 6, &mm), 6);
	assert_int_equal(agree(4, 6, 1, 10, &mm), 6);
	assert_int_equal(agree(5, 6, 6, 8, &mm), 6); /* touching at one version */
	/* Disjoint: refused, both ranges named. */
	assert_int_equal(agree(5, 5, 3, 4, &mm), -EPROTO);
	assert_string_equal(mm.field, "protocol_version");
	assert_string_equal(mm.local, "5..5");
	assert_string_equal(mm.remote, "3..4");
	assert_int_equal(agree(3, 4, 5, 9, &mm), -EPROTO);
	assert_string_equal(mm.local, "3..4");
	assert_string_equal(mm.remote, "5..9");
	/* A peer without protocol_min speaks exactly its protocol_version. */
	assert_int_equal(agree(3, 5, 0, 4, &mm), 4);
	assert_int_equal(agree(3, 5, 0, 5, &mm), 5);
	assert_int_equal(agree(5, 5, 0, 4, &mm), -EPROTO);
	assert_string_equal(mm.local, "5..5");
	assert_string_equal(mm.remote, "4..4");
	assert_int_equal(agree(5, 5, 0, 6, &mm), -EPROTO);
	assert_string_equal(mm.remote, "6..6");
	/* ... and so does this side when it does not say. */
	assert_int_equal(agree(0, 5, 3, 9, &mm), 5);
	/* Nothing is version 0. */
	assert_int_equal(agree(0, 0, 0, 0, &mm), -EPROTO);
	assert_string_equal(mm.local, "0..0");
	/* A version disagreement comes before every other field. */
	{
		struct hello_info local, remote;

		hello_base(&local, HELLO_SECONDARY);
		hello_base(&remote, HELLO_SECONDARY); /* the wrong role, too */
		remote.protocol_min = 0;
		remote.protocol_version = 4;
		assert_int_equal(hello_compare(&local, &remote, HELLO_PRIMARY, &mm), -EPROTO);
		assert_string_equal(mm.field, "protocol_version");
	}
}

static void check_hello_equal(const struct hello_info *a, const struct hello_info *b)
{
	assert_int_equal(a->protocol_version, b->protocol_version);
	assert_int_equal(a->protocol_min, b->protocol_min);
	assert_string_equal(a->software_version, b->software_version);
	assert_int_equal(a->role, b->role);
	assert_true(a->mem_size == b->mem_size);
	assert_int_equal(a->nr_vcpus, b->nr_vcpus);
	assert_int_equal(a->page_size, b->page_size);
	assert_int_equal(a->kvm_api_version, b->kvm_api_version);
	assert_int_equal(a->xsave_size, b->xsave_size);
	assert_string_equal(a->tracking, b->tracking);
	assert_int_equal(a->ring_entries, b->ring_entries);
	assert_int_equal(a->cpuid_len, b->cpuid_len);
	assert_memory_equal(a->cpuid, b->cpuid, a->cpuid_len);
	assert_int_equal(a->nr_msrs, b->nr_msrs);
	assert_memory_equal(a->msrs, b->msrs, a->nr_msrs * sizeof(*a->msrs));
	assert_string_equal(a->guest, b->guest);
	assert_int_equal(a->nr_devices, b->nr_devices);
	for (uint32_t i = 0; i < a->nr_devices; i++)
		assert_string_equal(a->devices[i], b->devices[i]);
	assert_int_equal(a->verify, b->verify);
	assert_string_equal(a->net_mac, b->net_mac);
	assert_true(a->disk_size == b->disk_size);
}

/* hello_frame -> frame_rx_feed (whole, and a byte at a time) -> hello_decode -> compare. */
static void test_hello_round_trip(void **state)
{
	struct hello_info local, primary;
	struct hello_decoded d;
	struct hello_mismatch mm;
	struct frame_rx f;
	uint8_t *frame;
	size_t len, used;

	hello_base(&local, HELLO_SECONDARY);
	hello_base(&primary, HELLO_PRIMARY);
	assert_int_equal(hello_frame(&primary, &frame, &len), 0);
	assert_true(len > WIRE_HDR_SIZE);
	assert_int_equal(frame_rx_init(&f), 0);

	for (int piecewise = 0; piecewise < 2; piecewise++) {
		if (!piecewise) {
			assert_int_equal(frame_rx_feed(&f, frame, len, &used), 1);
			assert_int_equal(used, len);
		} else {
			for (size_t i = 0; i < len; i++) {
				assert_int_equal(frame_rx_feed(&f, frame + i, 1, &used),
						 i + 1 == len ? 1 : 0);
				assert_int_equal(used, 1);
			}
		}
		assert_int_equal(f.hdr.type, WIRE_HELLO);
		assert_int_equal(f.hdr.length, len - WIRE_HDR_SIZE);
		assert_true(f.hdr.epoch == 0);
		assert_string_equal(f.error, "");
		assert_int_equal(hello_decode(f.payload, f.hdr.length, &d), 0);
		check_hello_equal(&d.info, &primary);
		assert_int_equal(hello_compare(&local, &d.info, HELLO_PRIMARY, &mm),
				 RINGFT_PROTOCOL_VERSION);
		hello_decoded_free(&d);
		hello_decoded_free(&d); /* twice is harmless */
	}

	/* Two frames in one buffer: the first stops exactly at its end. */
	{
		uint8_t *two = malloc(2 * len);

		assert_non_null(two);
		memcpy(two, frame, len);
		memcpy(two + len, frame, len);
		assert_int_equal(frame_rx_feed(&f, two, 2 * len, &used), 1);
		assert_int_equal(used, len);
		assert_int_equal(frame_rx_feed(&f, two + len, len, &used), 1);
		assert_int_equal(used, len);
		assert_int_equal(hello_decode(f.payload, f.hdr.length, &d), 0);
		check_hello_equal(&d.info, &primary);
		hello_decoded_free(&d);
		free(two);
	}

	/* A truncated payload does not decode. */
	{
		uint8_t garbage[32];

		memset(garbage, 0xff, sizeof(garbage));
		assert_int_equal(hello_decode(garbage, sizeof(garbage), &d), -EBADMSG);
		hello_decoded_free(&d);
	}
	frame_rx_free(&f);
	free(frame);
}

static void expect_rx_refusal(const uint8_t hdr[WIRE_HDR_SIZE], int err, const char *what)
{
	struct frame_rx f;
	size_t used;

	assert_int_equal(frame_rx_init(&f), 0);
	assert_int_equal(frame_rx_feed(&f, hdr, WIRE_HDR_SIZE, &used), err);
	if (!strstr(f.error, what))
		fail_msg("error '%s' does not mention '%s'", f.error, what);
	/* The stream is out of step for good. */
	assert_int_equal(frame_rx_feed(&f, hdr, WIRE_HDR_SIZE, &used), -EPIPE);
	assert_int_equal(used, 0);
	frame_rx_free(&f);
}

static void test_frame_rx_refusals(void **state)
{
	uint8_t hdr[WIRE_HDR_SIZE];

	wire_hdr_encode(hdr, &(struct wire_hdr){ .type = WIRE_PAGES, .length = WIRE_PAGE_SIZE });
	expect_rx_refusal(hdr, -EPROTO, "pages");

	wire_hdr_encode(hdr, &(struct wire_hdr){ .type = WIRE_ACK, .length = 8 });
	hdr[0] ^= 0x20;
	expect_rx_refusal(hdr, -EBADMSG, "bad magic");

	wire_hdr_encode(hdr, &(struct wire_hdr){ .type = WIRE_HELLO, .length = WIRE_MAX_MSG + 1 });
	expect_rx_refusal(hdr, -EMSGSIZE, "1048577");

	wire_hdr_encode(hdr, &(struct wire_hdr){ .type = WIRE_ACK, .length = 65 });
	expect_rx_refusal(hdr, -EMSGSIZE, "65");

	/* The wire allows long page lists; a reader of small frames does not. */
	wire_hdr_encode(hdr, &(struct wire_hdr){ .type = WIRE_EPOCH_BEGIN, .length = 100u << 20 });
	expect_rx_refusal(hdr, -EMSGSIZE, "exceeds its bound here");

	/* A good frame, then a PAGES header in the same buffer. */
	{
		uint8_t buf[SMALL_FRAME_MAX + WIRE_HDR_SIZE];
		size_t n = ack_frame(buf, 7, 9), used;
		struct frame_rx f;

		wire_hdr_encode(buf + n,
				&(struct wire_hdr){ .type = WIRE_PAGES, .length = WIRE_PAGE_SIZE });
		assert_int_equal(frame_rx_init(&f), 0);
		assert_int_equal(frame_rx_feed(&f, buf, n + WIRE_HDR_SIZE, &used), 1);
		assert_int_equal(used, n);
		assert_int_equal(f.hdr.type, WIRE_ACK);
		assert_int_equal(frame_rx_feed(&f, buf + n, WIRE_HDR_SIZE, &used), -EPROTO);
		assert_non_null(strstr(f.error, "pages"));
		frame_rx_free(&f);
	}
}

static void test_ack_round_trip(void **state)
{
	static const struct {
		uint64_t epoch;
		uint32_t verify;
	} cases[] = {
		{ 0, 0 }, { 1, 0xdeadbeef }, { 0x123456789abcULL, 1 }, { UINT64_MAX, 0xffffffff }
	};
	struct frame_rx f;

	assert_int_equal(frame_rx_init(&f), 0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint8_t buf[SMALL_FRAME_MAX];
		size_t n = ack_frame(buf, cases[i].epoch, cases[i].verify), used;
		uint64_t epoch = 1;
		uint32_t verify = 1;

		assert_true(n >= WIRE_HDR_SIZE && n <= SMALL_FRAME_MAX);
		assert_int_equal(frame_rx_feed(&f, buf, n, &used), 1);
		assert_int_equal(used, n);
		assert_int_equal(f.hdr.type, WIRE_ACK);
		assert_true(f.hdr.epoch == cases[i].epoch);
		assert_int_equal(f.hdr.length, n - WIRE_HDR_SIZE);
		assert_int_equal(ack_decode(f.payload, f.hdr.length, &epoch, &verify), 0);
		assert_true(epoch == cases[i].epoch);
		assert_int_equal(verify, cases[i].verify);
	}

	/* A heartbeat of 0 has an empty payload: the header alone completes it. */
	{
		uint8_t buf[SMALL_FRAME_MAX];
		size_t n = heartbeat_frame(buf, 0), used;

		assert_int_equal(frame_rx_feed(&f, buf, n, &used), 1);
		assert_int_equal(used, n);
		assert_int_equal(f.hdr.type, WIRE_HEARTBEAT);
		assert_int_equal(f.hdr.length, n - WIRE_HDR_SIZE);
	}
	{
		uint8_t garbage[16];
		uint64_t epoch;
		uint32_t verify;

		memset(garbage, 0xff, sizeof(garbage));
		assert_int_equal(ack_decode(garbage, sizeof(garbage), &epoch, &verify), -EBADMSG);
	}
	frame_rx_free(&f);
}

/* REFUSE and GOODBYE carry their text to the log line. */
static void test_refuse_goodbye(void **state)
{
	struct frame_rx f;
	char line[512];
	uint8_t *buf;
	size_t len, used;

	assert_int_equal(frame_rx_init(&f), 0);
	assert_int_equal(
		refuse_frame("mem_size", "1073741824", "2147483648", "sizes differ", &buf, &len),
		0);
	assert_int_equal(frame_rx_feed(&f, buf, len, &used), 1);
	assert_int_equal(f.hdr.type, WIRE_REFUSE);
	refuse_describe(f.payload, f.hdr.length, line, sizeof(line));
	assert_non_null(strstr(line, "mem_size"));
	assert_non_null(strstr(line, "1073741824"));
	assert_non_null(strstr(line, "2147483648"));
	assert_non_null(strstr(line, "sizes differ"));
	free(buf);

	assert_int_equal(goodbye_frame("operator asked", UINT64_MAX, &buf, &len), 0);
	assert_int_equal(frame_rx_feed(&f, buf, len, &used), 1);
	assert_int_equal(f.hdr.type, WIRE_GOODBYE);
	assert_true(goodbye_describe(f.payload, f.hdr.length, line, sizeof(line)) == UINT64_MAX);
	assert_string_equal(line, "operator asked");
	free(buf);

	/* A switchover names its checkpoint, 0 included. */
	for (uint64_t ck = 0; ck < 43; ck += 42) {
		assert_int_equal(goodbye_frame("switchover", ck, &buf, &len), 0);
		assert_int_equal(frame_rx_feed(&f, buf, len, &used), 1);
		assert_true(goodbye_describe(f.payload, f.hdr.length, line, sizeof(line)) == ck);
		assert_string_equal(line, "switchover");
		free(buf);
	}
	frame_rx_free(&f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_link_large_messages),
		cmocka_unit_test(test_link_large_messages_zc),
		cmocka_unit_test(test_link_copy_frames_interleaved),
		cmocka_unit_test(test_link_recv_buffers_vary),
		cmocka_unit_test(test_link_close_in_flight),
		cmocka_unit_test(test_link_close_in_flight_zc),
		cmocka_unit_test(test_link_close_queued_at_once),
		cmocka_unit_test(test_link_peer_closes),
		cmocka_unit_test(test_link_received_refuses),
		cmocka_unit_test(test_link_close_after_send),
		cmocka_unit_test(test_link_close_after_send_zc),
		cmocka_unit_test(test_link_finish),
		cmocka_unit_test(test_link_close_while_connecting),
		cmocka_unit_test(test_link_connect_refused),
		cmocka_unit_test(test_outbuf_allow),
		cmocka_unit_test(test_outbuf_end_line),
		cmocka_unit_test(test_outbuf_full_pipe),
		cmocka_unit_test(test_outbuf_overflow),
		cmocka_unit_test(test_hello_compare),
		cmocka_unit_test(test_hello_protocol_range),
		cmocka_unit_test(test_hello_round_trip),
		cmocka_unit_test(test_frame_rx_refusals),
		cmocka_unit_test(test_ack_round_trip),
		cmocka_unit_test(test_refuse_goodbye),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
