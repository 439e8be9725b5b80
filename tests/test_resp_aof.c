/* SPDX-License-Identifier: MIT */
/*
 * Unit test of builtin:kv's disk log (guest/kv/aof.c), part of test_resp: records,
 * replay of a log image over a fake block device (a byte array), a torn tail,
 * a leftover of an older boot, rewrite (its result equals the store, a crash at
 * any step leaves a valid log), write errors and the log clock.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest/kv/aof.h"
#include "guest/kv/resp.h"

#define STORE_BYTES (4u << 20)
#define BUF_CAP	    ((AOF_BUF_MIN + AOF_SECTOR - 1) & ~(AOF_SECTOR - 1))
#define DISK_SECT   (16384u) /* 8 MiB */

struct disk {
	uint8_t *b;
	uint64_t sectors;
	int fail_in;	/* > 0: the fail_in-th write from now fails (once) */
	int fail_super; /* writes to sector 0 fail */
	int fail_flush;
	uint64_t writes, flushes;
};

static int d_read(void *ctx, uint64_t sector, void *buf, uint64_t count)
{
	struct disk *d = ctx;

	assert_true(sector + count <= d->sectors);
	memcpy(buf, d->b + sector * AOF_SECTOR, count * AOF_SECTOR);
	return 0;
}

static int d_write(void *ctx, uint64_t sector, const void *buf, uint64_t count)
{
	struct disk *d = ctx;

	assert_true(sector + count <= d->sectors);
	if ((d->fail_super && sector == 0) || (d->fail_in > 0 && --d->fail_in == 0))
		return -EIO;
	memcpy(d->b + sector * AOF_SECTOR, buf, count * AOF_SECTOR);
	d->writes++;
	return 0;
}

static int d_flush(void *ctx)
{
	struct disk *d = ctx;

	if (d->fail_flush)
		return -EIO;
	d->flushes++;
	return 0;
}

static const struct aof_blk_ops d_ops = { d_read, d_write, d_flush };

static struct disk *disk_new(uint64_t sectors)
{
	struct disk *d = calloc(1, sizeof(*d));

	assert_non_null(d);
	d->b = calloc(sectors, AOF_SECTOR);
	assert_non_null(d->b);
	d->sectors = sectors;
	return d;
}

static void disk_free(struct disk *d)
{
	free(d->b);
	free(d);
}

/* A kv server whose writes go to the log on d: what the guest runs. */
struct node {
	struct kv_server *s;
	struct kv_client *c;
	void *mem;
	uint8_t *buf;
	struct aof a;
};

static int __node_open(struct node *n, struct disk *d, uint64_t store_bytes)
{
	int err;

	memset(n, 0, sizeof(*n));
	n->s = calloc(1, sizeof(*n->s));
	n->c = calloc(1, sizeof(*n->c));
	n->mem = aligned_alloc(64, (kv_store_footprint(store_bytes) + 63) & ~63ULL);
	n->buf = aligned_alloc(AOF_SECTOR, BUF_CAP);
	assert_true(n->s && n->c && n->mem && n->buf);
	kv_server_init(n->s, n->mem, store_bytes, 0);
	kv_client_reset(n->c);
	err = aof_open(&n->a, &d_ops, d, d->sectors, n->buf, BUF_CAP, &n->s->store);
	n->s->store.journal = aof_journal;
	n->s->store.journal_arg = &n->a;
	return err;
}

static void node_open(struct node *n, struct disk *d)
{
	assert_int_equal(__node_open(n, d, STORE_BYTES), 0);
}

static void node_close(struct node *n)
{
	free(n->s);
	free(n->c);
	free(n->mem);
	free(n->buf);
}

/* Runs one request (printf-style, inline protocol) and returns its reply. */
static const char *run(struct node *n, const char *fmt, ...)
{
	static char reply[KV_OUT_CAP + 1];
	va_list ap;
	int len;

	va_start(ap, fmt);
	len = vsnprintf(n->c->in, KV_IN_CAP, fmt, ap);
	va_end(ap);
	assert_true(len > 0 && len + 2 < (int)KV_IN_CAP);
	memcpy(n->c->in + len, "\r\n", 2);
	n->c->in_len = (uint32_t)len + 2;
	assert_int_equal(kv_client_process(n->s, n->c), 1);
	memcpy(reply, n->c->out, n->c->out_len);
	reply[n->c->out_len] = 0;
	n->c->out_len = 0;
	return reply;
}

static uint64_t live_keys(const struct kv_store *s)
{
	uint64_t n = 0;

	for (uint64_t b = 0; b < s->nbuckets; b++)
		for (const struct kv_entry *e = s->buckets[b]; e; e = e->next)
			n += !e->expire_ms || e->expire_ms > s->now_ms;
	return n;
}

/* Every live entry of a is in b with the same value and expiry, and no more. */
static void assert_same_store(struct kv_store *a, struct kv_store *b)
{
	assert_int_equal(live_keys(a), live_keys(b));
	for (uint64_t i = 0; i < a->nbuckets; i++)
		for (const struct kv_entry *e = a->buckets[i]; e; e = e->next) {
			const struct kv_entry *f;

			if (e->expire_ms && e->expire_ms <= a->now_ms)
				continue;
			f = kv_lookup(b, kv_key(e), e->klen);
			assert_non_null(f);
			assert_int_equal(f->vlen, e->vlen);
			assert_memory_equal(kv_value(f), kv_value(e), e->vlen);
			assert_int_equal(f->expire_ms, e->expire_ms);
		}
}

static void test_aof_record(void **state)
{
	uint8_t rec[AOF_REC_HDR + 16];
	struct aof_rec r;

	(void)state;
	aof_encode(rec, AOF_REC_SET, 3, 42, 1000, 5000, "key", 3, "value", 5);
	assert_int_equal(aof_decode(rec, sizeof(rec), &r), AOF_REC_HDR + 8);
	assert_int_equal(r.type, AOF_REC_SET);
	assert_int_equal(r.boot, 3);
	assert_int_equal(r.seq, 42);
	assert_int_equal(r.time_ms, 1000);
	assert_int_equal(r.expire_ms, 5000);
	assert_memory_equal(r.key, "key", 3);
	assert_memory_equal(r.val, "value", 5);
	assert_int_equal(aof_decode(rec, AOF_REC_HDR + 7, &r), -EAGAIN);
	assert_int_equal(aof_decode(rec, 10, &r), -EAGAIN);
	for (unsigned int i = 0; i < AOF_REC_HDR + 8; i++) { /* any flipped bit is caught */
		rec[i] ^= 0x10;
		assert_true(aof_decode(rec, sizeof(rec), &r) < 0);
		rec[i] ^= 0x10;
	}
	aof_encode(rec, AOF_REC_DEL, 1, 1, 0, 0, "k", 1, NULL, 0);
	assert_int_equal(aof_decode(rec, sizeof(rec), &r), AOF_REC_HDR + 1);
	assert_int_equal(r.type, AOF_REC_DEL);
	memset(rec, 0, sizeof(rec));
	assert_int_equal(aof_decode(rec, sizeof(rec), &r), 0);
}

/* Commands through resp.c, a group commit each, then a cold start replays them. */
static void test_aof_replay(void **state)
{
	struct disk *d = disk_new(DISK_SECT);
	struct node n, m;
	uint64_t flushes;

	(void)state;
	node_open(&n, d);
	assert_int_equal(n.a.formatted, 1);
	assert_int_equal(n.a.boot, 1);
	assert_string_equal(run(&n, "SET a 1"), "+OK\r\n");
	assert_string_equal(run(&n, "SET gone x"), "+OK\r\n");
	assert_string_equal(run(&n, "FLUSHALL"), "+OK\r\n");
	assert_string_equal(run(&n, "INCR a"), ":1\r\n");
	assert_string_equal(run(&n, "INCRBY a 41"), ":42\r\n");
	assert_string_equal(run(&n, "APPEND s hello"), ":5\r\n");
	assert_string_equal(run(&n, "APPEND s _world"), ":11\r\n");
	assert_string_equal(run(&n, "MSET m1 x m2 y m3 z"), "+OK\r\n");
	assert_string_equal(run(&n, "DEL m2 nothere"), ":1\r\n");
	assert_string_equal(run(&n, "GETDEL m3"), "$1\r\nz\r\n");
	flushes = d->flushes;
	assert_int_equal(n.a.pending, 12);
	assert_int_equal(aof_commit(&n.a), 0); /* one write, one flush for all */
	assert_int_equal(d->flushes, flushes + 1);
	assert_int_equal(aof_pending(&n.a), 0);
	assert_string_equal(run(&n, "GET a"), "$2\r\n42\r\n"); /* reads log nothing */
	assert_int_equal(aof_pending(&n.a), 0);
	assert_int_equal(aof_commit(&n.a), 0);
	assert_int_equal(d->flushes, flushes + 1);

	node_open(&m, d);
	assert_int_equal(m.a.formatted, 0);
	assert_int_equal(m.a.boot, 2);
	assert_int_equal(m.a.replayed, 12);
	assert_int_equal(m.a.stop, AOF_STOP_ZERO);
	assert_same_store(&n.s->store, &m.s->store);
	assert_string_equal(run(&m, "GET s"), "$11\r\nhello_world\r\n");
	assert_string_equal(run(&m, "DBSIZE"), ":3\r\n");
	/* Appending resumes after the replayed records, across a sector boundary. */
	for (int i = 0; i < 100; i++)
		assert_string_equal(run(&m, "SET k%d value%d", i, i), "+OK\r\n");
	assert_int_equal(aof_commit(&m.a), 0);
	node_close(&n);
	node_open(&n, d);
	assert_int_equal(n.a.replayed, 112);
	assert_same_store(&n.s->store, &m.s->store);
	node_close(&n);
	node_close(&m);
	disk_free(d);
}

/* The byte offset in region 0 of the record with sequence number seq. */
static uint64_t rec_offset(struct disk *d, uint64_t seq)
{
	const uint8_t *r = d->b + AOF_REGION_FIRST * AOF_SECTOR;
	uint64_t off = 0;
	struct aof_rec rec;
	long n;

	while ((n = aof_decode(r + off, 1 << 20, &rec)) > 0) {
		if (rec.seq == seq)
			return off;
		off += (uint64_t)n;
	}
	fail();
	return 0;
}

static void test_aof_torn_tail(void **state)
{
	struct disk *d = disk_new(DISK_SECT);
	struct node n, m;

	(void)state;
	node_open(&n, d);
	for (int i = 0; i < 3; i++) {
		run(&n, "SET k%d v%d", i, i);
		assert_int_equal(aof_commit(&n.a), 0);
	}
	node_close(&n);
	/* The third write half done: its last byte never made it. */
	d->b[AOF_REGION_FIRST * AOF_SECTOR + rec_offset(d, 3) + AOF_REC_HDR + 3] ^= 1;
	node_open(&n, d);
	assert_int_equal(n.a.replayed, 2);
	assert_int_equal(n.a.stop, AOF_STOP_TORN);
	assert_string_equal(run(&n, "GET k2"), "$-1\r\n");
	assert_string_equal(run(&n, "GET k1"), "$2\r\nv1\r\n");
	run(&n, "SET after torn");
	assert_int_equal(aof_commit(&n.a), 0);
	node_open(&m, d);
	assert_int_equal(m.a.replayed, 3);
	assert_int_equal(m.a.stop, AOF_STOP_ZERO);
	assert_same_store(&n.s->store, &m.s->store);
	node_close(&n);
	node_close(&m);
	disk_free(d);
}

/*
 * A crash kept the end of the last batch but not its middle; the next boot's
 * record ends exactly where the leftover starts, and the leftover has the seq
 * that comes next. Its older boot ends the log.
 */
static void test_aof_leftover_of_older_boot(void **state)
{
	struct disk *d = disk_new(DISK_SECT);
	char va[301], vb[99], reply[128];
	struct node n, m;

	(void)state;
	/* Records a and b fill sector 0 of the region exactly: c starts sector 1. */
	memset(va, 'a', 300);
	va[300] = 0;
	memset(vb, 'b', 98);
	vb[98] = 0;
	node_open(&n, d);
	run(&n, "SET a %s", va);
	run(&n, "SET b %s", vb);
	run(&n, "SET c 3");
	assert_int_equal(aof_commit(&n.a), 0);
	node_close(&n);
	assert_int_equal(rec_offset(d, 3), AOF_SECTOR);
	d->b[AOF_REGION_FIRST * AOF_SECTOR + rec_offset(d, 2) + AOF_REC_HDR] ^= 1; /* b torn */
	node_open(&n, d);
	assert_int_equal(n.a.replayed, 1);
	memset(vb, 'B', 98);
	run(&n, "SET b %s", vb); /* the torn record's size and seq */
	assert_int_equal(aof_commit(&n.a), 0);
	node_open(&m, d);
	assert_int_equal(m.a.replayed, 2);
	assert_int_equal(m.a.stop, AOF_STOP_STALE);
	assert_string_equal(run(&m, "GET c"), "$-1\r\n"); /* never acknowledged */
	snprintf(reply, sizeof(reply), "$98\r\n%s\r\n", vb);
	assert_string_equal(run(&m, "GET b"), reply);
	node_close(&n);
	node_close(&m);
	disk_free(d);
}

static void fill(struct node *n, int keys, int rounds)
{
	for (int r = 0; r < rounds; r++) {
		for (int i = 0; i < keys; i++)
			run(n, "SET key:%d round%d-%0*d", i, r, 20 + i % 50, i);
		for (int i = 0; i < keys; i += 7)
			run(n, "DEL key:%d", i + r % 7);
		run(n, "PEXPIRE key:1 100000");
		assert_int_equal(aof_commit(&n->a), 0);
	}
}

static void test_aof_rewrite(void **state)
{
	struct disk *d = disk_new(DISK_SECT);
	struct node n, m;
	uint64_t old_tail;

	(void)state;
	node_open(&n, d);
	fill(&n, 300, 10);
	old_tail = n.a.tail;
	assert_int_equal(aof_rewrite(&n.a), 0);
	assert_int_equal(n.a.current, 1);
	assert_int_equal(n.a.generation, 2);
	assert_true(n.a.tail < old_tail / 5);
	assert_int_equal(n.a.last_rewrite_keys, live_keys(&n.s->store));
	node_open(&m, d);
	assert_int_equal(m.a.current, 1);
	assert_int_equal(m.a.replayed, n.a.last_rewrite_keys);
	assert_same_store(&n.s->store, &m.s->store);
	/* Appends go on in the new region; a second rewrite goes back to region 0. */
	fill(&n, 100, 2);
	assert_int_equal(aof_rewrite(&n.a), 0);
	assert_int_equal(n.a.current, 0);
	run(&n, "SET last one");
	assert_int_equal(aof_commit(&n.a), 0);
	node_close(&m);
	node_open(&m, d);
	assert_int_equal(m.a.generation, 3);
	assert_same_store(&n.s->store, &m.s->store);
	node_close(&n);
	node_close(&m);
	disk_free(d);
}

/* A crash anywhere in a rewrite (a write that never happens) keeps the old log. */
static void test_aof_rewrite_crash(void **state)
{
	struct disk *d = disk_new(DISK_SECT);
	struct node n, m;

	(void)state;
	node_open(&n, d);
	fill(&n, 200, 5);
	d->fail_super = 1; /* snapshot written and flushed, superblock not switched */
	assert_int_equal(aof_rewrite(&n.a), -EIO);
	assert_int_equal(n.a.current, 0);
	d->fail_super = 0;
	node_open(&m, d);
	assert_int_equal(m.a.current, 0);
	assert_int_equal(m.a.generation, 1);
	assert_same_store(&n.s->store, &m.s->store);
	node_close(&m);
	/* The failed rewrite left the live log usable: appending goes on. */
	run(&n, "SET more data");
	assert_int_equal(aof_commit(&n.a), 0);
	d->fail_in = 2; /* the snapshot's second write */
	assert_int_equal(aof_rewrite(&n.a), -EIO);
	node_open(&m, d);
	assert_same_store(&n.s->store, &m.s->store);
	node_close(&m);
	node_close(&n);
	disk_free(d);
}

/* A failed commit is reported; the next one rewrites, so the disk catches up. */
static void test_aof_write_error(void **state)
{
	struct disk *d = disk_new(DISK_SECT);
	struct node n, m;

	(void)state;
	node_open(&n, d);
	run(&n, "SET a 1");
	assert_int_equal(aof_commit(&n.a), 0);
	run(&n, "SET b 2");
	d->fail_flush = 1;
	assert_int_equal(aof_commit(&n.a), -EIO);
	assert_int_equal(n.a.need_rewrite, 1);
	d->fail_flush = 0;
	run(&n, "SET c 3");
	assert_int_equal(aof_commit(&n.a), 0);
	assert_int_equal(n.a.need_rewrite, 0);
	assert_int_equal(n.a.rewrites, 1);
	node_open(&m, d);
	assert_same_store(&n.s->store, &m.s->store);
	assert_string_equal(run(&m, "GET b"), "$1\r\n2\r\n");
	node_close(&m);
	node_close(&n);
	disk_free(d);
}

/* Past the buffer a commit happens on its own; past the region, a rewrite. */
static void test_aof_full(void **state)
{
	/* The smallest disk: regions of about 1 MiB. */
	struct disk *d = disk_new(AOF_REGION_FIRST + 2 * (4 * AOF_BUF_MIN / AOF_SECTOR) + 8);
	static char big[60001];
	struct node n, m;

	(void)state;
	node_open(&n, d);
	memset(big, 'x', sizeof(big) - 1);
	for (int i = 0; i < 40; i++) {
		big[i] = 'a' + i % 26;
		assert_string_equal(run(&n, "SET big%d %s", i % 4, big), "+OK\r\n");
	}
	assert_int_equal(aof_commit(&n.a), 0);
	assert_true(n.a.commits + n.a.rewrites >= 9);
	assert_true(n.a.rewrites >= 1);
	node_open(&m, d);
	assert_same_store(&n.s->store, &m.s->store);
	node_close(&m);
	node_close(&n);
	disk_free(d);
}

/* Expiries are on the log's clock: a key keeps its time to live across a stop. */
static void test_aof_clock(void **state)
{
	struct disk *d = disk_new(DISK_SECT);
	struct node n, m;

	(void)state;
	node_open(&n, d);
	kv_server_set_time(n.s, 1000000);
	run(&n, "SET t v PX 5000");
	run(&n, "SET dead v PX 10");
	kv_server_set_time(n.s, 1000100);
	run(&n, "SET other v");
	assert_int_equal(aof_commit(&n.a), 0);
	node_open(&m, d); /* a cold start: the guest's clock began at 0 again */
	assert_int_equal(m.s->store.now_ms, 1000100);
	assert_string_equal(run(&m, "PTTL t"), ":4900\r\n");
	assert_string_equal(run(&m, "GET dead"), "$-1\r\n");
	kv_server_set_time(m.s, 1000100 + 4900);
	assert_string_equal(run(&m, "GET t"), "$-1\r\n");
	node_close(&m);
	node_close(&n);
	disk_free(d);
}

static void test_aof_not_a_log(void **state)
{
	struct disk *d = disk_new(DISK_SECT);
	struct node n;

	(void)state;
	memcpy(d->b, "something else", 14);
	assert_int_equal(__node_open(&n, d, STORE_BYTES), -EINVAL);
	node_close(&n);
	disk_free(d);
	d = disk_new(1000);
	assert_int_equal(__node_open(&n, d, STORE_BYTES), -ENOSPC);
	node_close(&n);
	disk_free(d);
}

int test_aof_run(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_aof_record),
		cmocka_unit_test(test_aof_replay),
		cmocka_unit_test(test_aof_torn_tail),
		cmocka_unit_test(test_aof_leftover_of_older_boot),
		cmocka_unit_test(test_aof_rewrite),
		cmocka_unit_test(test_aof_rewrite_crash),
		cmocka_unit_test(test_aof_write_error),
		cmocka_unit_test(test_aof_full),
		cmocka_unit_test(test_aof_clock),
		cmocka_unit_test(test_aof_not_a_log),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
