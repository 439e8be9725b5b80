/* SPDX-License-Identifier: MIT */
/*
 * Unit test of builtin:kv's Redis protocol layer (guest/kv/resp.c, store.c),
 * compiled for the host from the guest's own sources: requests whole, pipelined,
 * split across packets, inline and malformed, oversize input, output
 * backpressure, OOM, and Redis's exact error strings. The disk log (aof.c) has
 * its own file in this executable: test_resp_aof.c.
 */
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "guest/kv/resp.h"

struct fx {
	struct kv_server *s;
	struct kv_client *c;
	void *mem;
	uint64_t max;
};

static struct fx *fx_new(uint64_t max_bytes)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->s = calloc(1, sizeof(*f->s));
	f->c = calloc(1, sizeof(*f->c));
	f->max = max_bytes;
	f->mem = aligned_alloc(64, (kv_store_footprint(max_bytes) + 63) & ~63ULL);
	assert_non_null(f->s);
	assert_non_null(f->c);
	assert_non_null(f->mem);
	kv_server_init(f->s, f->mem, max_bytes, 1000);
	kv_client_reset(f->c);
	return f;
}

static int setup(void **state)
{
	*state = fx_new(1 << 20);
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	free(f->mem);
	free(f->c);
	free(f->s);
	free(f);
	return 0;
}

/* Appends bytes to the input and runs what is complete. */
static unsigned int feed_n(struct fx *f, const char *p, size_t n)
{
	assert_true(n <= kv_client_in_room(f->c));
	memcpy(f->c->in + f->c->in_len, p, n);
	f->c->in_len += (uint32_t)n;
	return kv_client_process(f->s, f->c);
}

static unsigned int feed(struct fx *f, const char *s)
{
	return feed_n(f, s, strlen(s));
}

/* The output so far, as a string (then cleared). */
static const char *out(struct fx *f)
{
	static char buf[KV_OUT_CAP + 1];

	memcpy(buf, f->c->out, f->c->out_len);
	buf[f->c->out_len] = 0;
	f->c->out_len = 0;
	return buf;
}

/* One request as redis-cli sends it: a multibulk array (in one of 4 buffers). */
static const char *req(int argc, ...)
{
	static char bufs[4][KV_IN_CAP];
	static unsigned int next;
	char *buf = bufs[next++ % 4];
	va_list ap;
	int n = snprintf(buf, KV_IN_CAP, "*%d\r\n", argc);

	va_start(ap, argc);
	for (int i = 0; i < argc; i++) {
		const char *a = va_arg(ap, const char *);

		n += snprintf(buf + n, KV_IN_CAP - n, "$%zu\r\n%s\r\n", strlen(a), a);
	}
	va_end(ap);
	return buf;
}

#define CHECK(f, request, reply)                                                                   \
	do {                                                                                       \
		feed((f), (request));                                                              \
		assert_string_equal(out(f), (reply));                                              \
		assert_int_equal((f)->c->in_len, 0);                                               \
	} while (0)

static void test_basic(void **state)
{
	struct fx *f = *state;

	CHECK(f, req(1, "PING"), "+PONG\r\n");
	CHECK(f, req(2, "ping", "hello"), "$5\r\nhello\r\n");
	CHECK(f, req(2, "ECHO", ""), "$0\r\n\r\n");
	CHECK(f, req(3, "SET", "k", "v1"), "+OK\r\n");
	CHECK(f, req(2, "GET", "k"), "$2\r\nv1\r\n");
	CHECK(f, req(2, "GET", "nope"), "$-1\r\n");
	CHECK(f, req(3, "set", "k", "longer value"), "+OK\r\n");
	CHECK(f, req(2, "get", "k"), "$12\r\nlonger value\r\n");
	CHECK(f, req(5, "MSET", "a", "1", "b", "2"), "+OK\r\n");
	CHECK(f, req(4, "MGET", "a", "x", "b"), "*3\r\n$1\r\n1\r\n$-1\r\n$1\r\n2\r\n");
	CHECK(f, req(5, "EXISTS", "a", "a", "x", "k"), ":3\r\n");
	CHECK(f, req(1, "DBSIZE"), ":3\r\n");
	CHECK(f, req(4, "DEL", "a", "x", "b"), ":2\r\n");
	CHECK(f, req(1, "DBSIZE"), ":1\r\n");
	CHECK(f, req(1, "FLUSHALL"), "+OK\r\n");
	CHECK(f, req(1, "DBSIZE"), ":0\r\n");
	CHECK(f, req(2, "COMMAND", "DOCS"), "*0\r\n");
	CHECK(f, req(2, "SELECT", "0"), "+OK\r\n");
	CHECK(f, req(2, "SELECT", "1"), "-ERR DB index is out of range\r\n");
	assert_int_equal(f->s->commands, 19);
}

static void test_incr(void **state)
{
	struct fx *f = *state;

	CHECK(f, req(2, "INCR", "n"), ":1\r\n");
	CHECK(f, req(3, "INCRBY", "n", "41"), ":42\r\n");
	CHECK(f, req(2, "DECR", "n"), ":41\r\n");
	CHECK(f, req(3, "DECRBY", "n", "50"), ":-9\r\n");
	CHECK(f, req(2, "GET", "n"), "$2\r\n-9\r\n");
	CHECK(f, req(3, "SET", "s", "abc"), "+OK\r\n");
	CHECK(f, req(2, "INCR", "s"), "-ERR value is not an integer or out of range\r\n");
	CHECK(f, req(3, "INCRBY", "n", "1.5"), "-ERR value is not an integer or out of range\r\n");
	CHECK(f, req(3, "INCRBY", "n", " 1"), "-ERR value is not an integer or out of range\r\n");
	CHECK(f, req(3, "SET", "m", "9223372036854775807"), "+OK\r\n");
	CHECK(f, req(2, "INCR", "m"), "-ERR increment or decrement would overflow\r\n");
	CHECK(f, req(3, "SET", "z", "007"), "+OK\r\n");
	CHECK(f, req(2, "INCR", "z"), "-ERR value is not an integer or out of range\r\n");
	CHECK(f, req(3, "DECRBY", "n", "-9223372036854775808"),
	      "-ERR decrement would overflow\r\n");
}

static void test_set_options(void **state)
{
	struct fx *f = *state;

	CHECK(f, req(4, "SET", "k", "1", "NX"), "+OK\r\n");
	CHECK(f, req(4, "SET", "k", "2", "nx"), "$-1\r\n");
	CHECK(f, req(4, "SET", "x", "2", "XX"), "$-1\r\n");
	CHECK(f, req(2, "EXISTS", "x"), ":0\r\n");
	CHECK(f, req(4, "SET", "k", "3", "XX"), "+OK\r\n");
	CHECK(f, req(5, "SET", "k", "4", "XX", "GET"), "$1\r\n3\r\n");
	CHECK(f, req(5, "SET", "k", "5", "NX", "XX"), "-ERR syntax error\r\n");
	CHECK(f, req(4, "SET", "k", "5", "BOGUS"), "-ERR syntax error\r\n");
	CHECK(f, req(4, "SET", "k", "5", "EX"), "-ERR syntax error\r\n");
	CHECK(f, req(7, "SET", "k", "5", "EX", "1", "PX", "1"), "-ERR syntax error\r\n");
	CHECK(f, req(5, "SET", "k", "5", "EX", "x"),
	      "-ERR value is not an integer or out of range\r\n");
	CHECK(f, req(5, "SET", "k", "5", "EX", "0"),
	      "-ERR invalid expire time in 'set' command\r\n");
	CHECK(f, req(5, "SET", "k", "5", "PX", "-1"),
	      "-ERR invalid expire time in 'set' command\r\n");
	CHECK(f, req(2, "GET", "k"), "$1\r\n4\r\n");

	/* Expiry runs on the server's clock (sys_now in the guest). */
	CHECK(f, req(5, "SET", "t", "v", "EX", "2"), "+OK\r\n");
	CHECK(f, req(5, "SET", "p", "v", "PX", "1500"), "+OK\r\n");
	kv_server_set_time(f->s, 1000 + 1499);
	CHECK(f, req(3, "EXISTS", "t", "p"), ":2\r\n");
	CHECK(f, req(4, "SET", "t", "w", "KEEPTTL"), "+OK\r\n");
	kv_server_set_time(f->s, 1000 + 1500);
	CHECK(f, req(2, "GET", "p"), "$-1\r\n");
	CHECK(f, req(2, "GET", "t"), "$1\r\nw\r\n");
	kv_server_set_time(f->s, 1000 + 2000);
	CHECK(f, req(2, "GET", "t"), "$-1\r\n");
	/* A plain SET clears the TTL. */
	CHECK(f, req(5, "SET", "q", "v", "PX", "10"), "+OK\r\n");
	CHECK(f, req(3, "SET", "q", "v2"), "+OK\r\n");
	kv_server_set_time(f->s, 1000 + 5000);
	CHECK(f, req(2, "GET", "q"), "$2\r\nv2\r\n");
	assert_int_equal(f->s->store.expires, 0);
	/* The sweep removes expired keys nobody reads. */
	CHECK(f, req(5, "SET", "e", "v", "PX", "1"), "+OK\r\n");
	assert_int_equal(f->s->store.keys, 3);
	kv_server_set_time(f->s, 1000 + 6000);
	kv_expire_sweep(&f->s->store, (unsigned int)f->s->store.nbuckets);
	assert_int_equal(f->s->store.keys, 2);
}

static void test_errors(void **state)
{
	struct fx *f = *state;
	char big[400], exp[600];

	CHECK(f, req(3, "foo", "a", "b"),
	      "-ERR unknown command 'foo', with args beginning with: 'a' 'b' \r\n");
	CHECK(f, req(1, "foo"), "-ERR unknown command 'foo', with args beginning with: \r\n");
	CHECK(f, req(2, "foo", "a\r\nb"),
	      "-ERR unknown command 'foo', with args beginning with: 'a  b' \r\n");
	/* Arguments are cut at 128 bytes in all, as Redis does. */
	memset(big, 'x', 300);
	big[300] = 0;
	snprintf(exp, sizeof(exp),
		 "-ERR unknown command 'foo', with args beginning with: '%.128s' \r\n", big);
	CHECK(f, req(3, "foo", big, "b"), exp);
	CHECK(f, req(1, "GET"), "-ERR wrong number of arguments for 'get' command\r\n");
	CHECK(f, req(3, "GET", "a", "b"), "-ERR wrong number of arguments for 'get' command\r\n");
	CHECK(f, req(2, "SET", "a"), "-ERR wrong number of arguments for 'set' command\r\n");
	CHECK(f, req(4, "MSET", "a", "1", "b"),
	      "-ERR wrong number of arguments for 'mset' command\r\n");
	CHECK(f, req(3, "PING", "a", "b"), "-ERR wrong number of arguments for 'ping' command\r\n");
	CHECK(f, req(1, "INCR"), "-ERR wrong number of arguments for 'incr' command\r\n");
	CHECK(f, req(1, "DEL"), "-ERR wrong number of arguments for 'del' command\r\n");
	CHECK(f, req(1, "CONFIG"), "-ERR wrong number of arguments for 'config' command\r\n");
	CHECK(f, req(2, "CONFIG", "GET"),
	      "-ERR wrong number of arguments for 'config|get' command\r\n");
	CHECK(f, req(3, "CONFIG", "SET", "x"),
	      "-ERR unknown subcommand 'SET'. Try CONFIG HELP.\r\n");
	assert_false(f->c->close_after);
}

static void test_config_info(void **state)
{
	struct fx *f = *state;
	const char *o;

	CHECK(f, req(3, "CONFIG", "GET", "save"), "*2\r\n$4\r\nsave\r\n$0\r\n\r\n");
	CHECK(f, req(3, "CONFIG", "GET", "appendonly"), "*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
	CHECK(f, req(3, "config", "get", "nosuch"), "*0\r\n");
	CHECK(f, req(3, "CONFIG", "GET", "maxmemory"),
	      "*2\r\n$9\r\nmaxmemory\r\n$7\r\n1048576\r\n");
	CHECK(f, req(4, "CONFIG", "GET", "save", "appendonly"),
	      "*4\r\n$4\r\nsave\r\n$0\r\n\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
	CHECK(f, req(3, "CONFIG", "GET", "maxmemory*"),
	      "*4\r\n$9\r\nmaxmemory\r\n$7\r\n1048576\r\n$16\r\nmaxmemory-policy\r\n$"
	      "10\r\nnoeviction\r\n");

	CHECK(f, req(3, "SET", "a", "b"), "+OK\r\n");
	f->s->clients = 3;
	feed(f, req(1, "INFO"));
	o = out(f);
	assert_true(o[0] == '$');
	assert_non_null(strstr(o, "\r\n# Server\r\nredis_version:" KV_VERSION "\r\n"));
	assert_non_null(strstr(o, "\r\nuptime_in_seconds:0\r\n"));
	assert_non_null(strstr(o, "\r\nconnected_clients:3\r\n"));
	assert_non_null(strstr(o, "\r\nused_memory:64\r\n"));
	assert_non_null(strstr(o, "\r\nmaxmemory:1048576\r\n"));
	assert_non_null(strstr(o, "\r\ndb0:keys=1,expires=0,avg_ttl=0\r\n"));
	/* The bulk length matches the body. */
	assert_int_equal(atoi(o + 1) + (int)(strchr(o, '\n') - o) + 1 + 2, (int)strlen(o));
}

static void test_more_commands(void **state)
{
	struct fx *f = *state;
	char *val = malloc(3001);

	CHECK(f, req(2, "STRLEN", "s"), ":0\r\n");
	CHECK(f, req(3, "APPEND", "s", "ab"), ":2\r\n");
	CHECK(f, req(3, "APPEND", "s", "cde"), ":5\r\n");
	/* Growing past the entry's block moves it. */
	memset(val, 'z', 3000);
	val[3000] = 0;
	CHECK(f, req(3, "APPEND", "s", val), ":3005\r\n");
	CHECK(f, req(2, "STRLEN", "s"), ":3005\r\n");
	feed(f, req(2, "GET", "s"));
	assert_int_equal(f->c->out_len, 7 + 3005 + 2);
	assert_memory_equal(f->c->out, "$3005\r\nabcdezz", 14);
	out(f);
	CHECK(f, req(3, "SETNX", "s", "x"), ":0\r\n");
	CHECK(f, req(3, "SETNX", "n", "x"), ":1\r\n");
	CHECK(f, req(3, "GETSET", "n", "y"), "$1\r\nx\r\n");
	CHECK(f, req(3, "GETSET", "m", "y"), "$-1\r\n");
	CHECK(f, req(2, "GETDEL", "m"), "$1\r\ny\r\n");
	CHECK(f, req(2, "GETDEL", "m"), "$-1\r\n");
	CHECK(f, req(2, "TYPE", "n"), "+string\r\n");
	CHECK(f, req(2, "TYPE", "m"), "+none\r\n");
	CHECK(f, req(2, "TTL", "m"), ":-2\r\n");
	CHECK(f, req(2, "TTL", "n"), ":-1\r\n");
	CHECK(f, req(3, "EXPIRE", "n", "10"), ":1\r\n");
	CHECK(f, req(3, "EXPIRE", "m", "10"), ":0\r\n");
	CHECK(f, req(3, "APPEND", "n", "z"), ":2\r\n");
	kv_server_set_time(f->s, 1000 + 2400);
	CHECK(f, req(2, "TTL", "n"), ":8\r\n");
	CHECK(f, req(2, "PTTL", "n"), ":7600\r\n");
	CHECK(f, req(2, "PERSIST", "n"), ":1\r\n");
	CHECK(f, req(2, "PERSIST", "n"), ":0\r\n");
	CHECK(f, req(2, "TTL", "n"), ":-1\r\n");
	CHECK(f, req(3, "PEXPIRE", "n", "5"), ":1\r\n");
	kv_server_set_time(f->s, 1000 + 2405);
	CHECK(f, req(2, "GET", "n"), "$-1\r\n");
	CHECK(f, req(3, "EXPIRE", "s", "0"), ":1\r\n");
	CHECK(f, req(2, "EXISTS", "s"), ":0\r\n");
	CHECK(f, req(3, "EXPIRE", "s", "x"), "-ERR value is not an integer or out of range\r\n");
	CHECK(f, req(4, "EXPIRE", "s", "1", "NX"), "-ERR Unsupported option NX\r\n");
	CHECK(f, req(3, "EXPIRE", "s", "9223372036854775807"),
	      "-ERR invalid expire time in 'expire' command\r\n");
	assert_int_equal(f->s->store.expires, 0);
	assert_int_equal(f->s->store.keys, 0);
	free(val);
}

static void test_pipeline(void **state)
{
	struct fx *f = *state;
	char buf[2048];

	snprintf(buf, sizeof(buf), "%s%s", req(3, "SET", "k", "v"), req(2, "GET", "k"));
	strcat(buf, req(2, "INCR", "n"));
	strcat(buf, "PING\r\n");
	strcat(buf, req(2, "INCR", "n"));
	assert_int_equal(feed(f, buf), 5);
	assert_string_equal(out(f), "+OK\r\n$1\r\nv\r\n:1\r\n+PONG\r\n:2\r\n");
	assert_int_equal(f->c->in_len, 0);
}

static void test_split(void **state)
{
	struct fx *f = *state;
	char buf[256];
	size_t n;

	/* Two requests fed one byte at a time: a reply only once each is whole. */
	snprintf(buf, sizeof(buf), "%s%s", req(3, "SET", "key", "hello world"),
		 req(2, "GET", "key"));
	n = strlen(buf);
	for (size_t i = 0; i < n; i++) {
		unsigned int ran = feed_n(f, buf + i, 1);
		size_t first = strlen(req(3, "SET", "key", "hello world"));

		if (i + 1 == first || i + 1 == n)
			assert_int_equal(ran, 1);
		else
			assert_int_equal(ran, 0);
	}
	assert_string_equal(out(f), "+OK\r\n$11\r\nhello world\r\n");
	assert_int_equal(f->c->in_len, 0);

	/* Split inside the length line, the CRLF, the payload. */
	feed(f, "*2\r\n$3\r\nGE");
	feed(f, "T\r");
	assert_string_equal(out(f), "");
	feed(f, "\n$3\r\nkey\r");
	assert_string_equal(out(f), "");
	feed(f, "\n");
	assert_string_equal(out(f), "$11\r\nhello world\r\n");
	assert_int_equal(f->c->in_len, 0);
}

static void test_inline(void **state)
{
	struct fx *f = *state;

	CHECK(f, "PING\r\n", "+PONG\r\n");
	CHECK(f, "ping\n", "+PONG\r\n");
	CHECK(f, "  set   k   \"a b\\x41\\n\"  \r\n", "+OK\r\n");
	CHECK(f, "GET k\r\n", "$5\r\na bA\n\r\n");
	CHECK(f, "set q 'it\\'s'\n", "+OK\r\n");
	CHECK(f, "get q\n", "$4\r\nit's\r\n");
	CHECK(f, "\r\n", "");
	CHECK(f, "   \n", "");
	CHECK(f, "nosuch x\n", "-ERR unknown command 'nosuch', with args beginning with: 'x' \r\n");
	feed(f, "GET k");
	assert_string_equal(out(f), "");
	CHECK(f, "\r\n", "$5\r\na bA\n\r\n");
	feed(f, "set k \"abc\n");
	assert_string_equal(out(f), "-ERR Protocol error: unbalanced quotes in request\r\n");
	assert_true(f->c->close_after);
	/* After a protocol error nothing more runs. */
	assert_int_equal(feed(f, "PING\r\n"), 0);
	assert_string_equal(out(f), "");
}

static void test_malformed(void **state)
{
	struct fx *f = *state;
	static const struct {
		const char *in, *out;
	} cases[] = {
		{ "*abc\r\n", "-ERR Protocol error: invalid multibulk length\r\n" },
		{ "*2000000\r\n", "-ERR Protocol error: invalid multibulk length\r\n" },
		{ "*20000\r\n", "-ERR Protocol error: invalid multibulk length\r\n" },
		{ "*1\r\n+PING\r\n", "-ERR Protocol error: expected '$', got '+'\r\n" },
		{ "*1\r\n$-1\r\n", "-ERR Protocol error: invalid bulk length\r\n" },
		{ "*1\r\n$x\r\n", "-ERR Protocol error: invalid bulk length\r\n" },
		{ "*1\r\n$100000\r\n", "-ERR Protocol error: invalid bulk length\r\n" },
	};

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		kv_client_reset(f->c);
		feed(f, cases[i].in);
		assert_string_equal(out(f), cases[i].out);
		assert_true(f->c->close_after);
	}
	/* Empty and negative counts are no request at all, as in Redis. */
	kv_client_reset(f->c);
	CHECK(f, "*0\r\n*-1\r\n", "");
	CHECK(f, req(1, "PING"), "+PONG\r\n");
	assert_false(f->c->close_after);
}

static void test_oversize(void **state)
{
	struct fx *f = *state;
	char *buf = malloc(KV_IN_CAP);

	/* An inline request without a newline that fills the buffer. */
	memset(buf, 'a', KV_IN_CAP);
	feed_n(f, buf, KV_IN_CAP);
	assert_string_equal(out(f), "-ERR Protocol error: too big inline request\r\n");
	assert_true(f->c->close_after);

	/* A multibulk request longer than the buffer. */
	kv_client_reset(f->c);
	memset(buf, 'b', KV_IN_CAP);
	memcpy(buf, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$65519\r\n", 28);
	feed_n(f, buf, KV_IN_CAP);
	assert_string_equal(
		out(f), "-ERR Protocol error: request larger than the 65536-byte input buffer\r\n");
	assert_true(f->c->close_after);

	/* The largest value that fits is stored and read back. */
	kv_client_reset(f->c);
	{
		uint32_t vlen = KV_IN_CAP - 64, n;

		n = (uint32_t)snprintf(buf, KV_IN_CAP, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$%u\r\n",
				       vlen);
		memset(buf + n, 'v', vlen);
		memcpy(buf + n + vlen, "\r\n", 2);
		assert_int_equal(feed_n(f, buf, n + vlen + 2), 1);
		assert_string_equal(out(f), "+OK\r\n");
		assert_int_equal(feed(f, req(2, "GET", "k")), 1);
		assert_int_equal(f->c->out_len, 8 + vlen + 2); /* "$65472\r\n" value "\r\n" */
		assert_memory_equal(f->c->out + f->c->out_len - 4, "vv\r\n", 4);
		f->c->out_len = 0;
		/* Two of them (130 KB) cannot fit in the output buffer: a clear error. */
		assert_int_equal(feed(f, req(3, "MGET", "k", "k")), 1);
		assert_string_equal(out(f), "-ERR reply larger than the guest's output buffer\r\n");
		CHECK(f, req(2, "EXISTS", "k"), ":1\r\n");
	}
	free(buf);
}

static void test_backpressure(void **state)
{
	struct fx *f = *state;
	const uint32_t vlen = KV_OUT_CAP / 2 - 100, rlen = vlen + 10; /* "$NNNNN\r\n...\r\n" */
	char *val = malloc(vlen + 1), buf[256];
	uint32_t before;

	memset(val, 'x', vlen);
	val[vlen] = 0;
	CHECK(f, req(3, "SET", "big", val), "+OK\r\n");
	snprintf(buf, sizeof(buf), "%s", req(2, "GET", "big"));
	strcat(buf, req(2, "GET", "big"));
	strcat(buf, req(2, "GET", "big"));
	strcat(buf, req(1, "PING"));
	/* Two replies fit; the third waits for the output to drain. */
	assert_int_equal(feed(f, buf), 2);
	before = f->c->out_len;
	assert_int_equal(before, 2 * rlen);
	assert_true(f->c->in_len > 0);
	assert_int_equal(kv_client_process(f->s, f->c), 0);
	kv_client_out_consume(f->c, 5000);
	assert_int_equal(f->c->out_len, before - 5000);
	assert_int_equal(kv_client_process(f->s, f->c), 0);
	kv_client_out_consume(f->c, before - 5000);
	assert_int_equal(kv_client_process(f->s, f->c), 2);
	assert_int_equal(f->c->out_len, rlen + 7);
	assert_memory_equal(f->c->out + rlen, "+PONG\r\n", 7);
	assert_int_equal(f->c->in_len, 0);
	free(val);
}

static void test_oom(void **state)
{
	struct fx *f = fx_new(64 << 10);
	char key[32], val[200];
	int i, ok = 0;

	(void)state;
	memset(val, 'v', sizeof(val) - 1);
	val[sizeof(val) - 1] = 0;
	for (i = 0; i < 1000; i++) {
		const char *o;

		snprintf(key, sizeof(key), "key:%d", i);
		feed(f, req(3, "SET", key, val));
		o = out(f);
		if (strcmp(o, "+OK\r\n")) {
			assert_string_equal(
				o, "-OOM command not allowed when used memory > 'maxmemory'.\r\n");
			break;
		}
		ok++;
	}
	/* 232-byte entries take 256-byte blocks: 64 KiB holds 256 of them. */
	assert_int_equal(ok, 256);
	assert_true(f->s->store.used <= f->max);
	/* The old value survives a failed overwrite with a bigger one. */
	CHECK(f, req(3, "SET", "key:0", "short"), "+OK\r\n");
	CHECK(f, req(2, "GET", "key:0"), "$5\r\nshort\r\n");
	/* Deleting frees a block that the same size can reuse. */
	CHECK(f, req(2, "DEL", "key:1"), ":1\r\n");
	CHECK(f, req(3, "SET", "again", val), "+OK\r\n");
	CHECK(f, req(2, "INCR", "n"),
	      "-OOM command not allowed when used memory > 'maxmemory'.\r\n");
	CHECK(f, req(1, "FLUSHALL"), "+OK\r\n");
	assert_int_equal(f->s->store.used, 0);
	CHECK(f, req(3, "SET", "k", val), "+OK\r\n");
	CHECK(f, req(2, "INCR", "n"), ":1\r\n");
	teardown((void **)&f);
}

static void test_quit(void **state)
{
	struct fx *f = *state;
	char buf[256];

	snprintf(buf, sizeof(buf), "%s%s", req(1, "QUIT"), req(1, "PING"));
	assert_int_equal(feed(f, buf), 1);
	assert_string_equal(out(f), "+OK\r\n");
	assert_true(f->c->close_after);
}

static void test_many_keys(void **state)
{
	struct fx *f = *state;
	char key[32], val[32], exp[64];

	for (int i = 0; i < 5000; i++) {
		snprintf(key, sizeof(key), "k%d", i);
		snprintf(val, sizeof(val), "v%d", i * 7);
		CHECK(f, req(3, "SET", key, val), "+OK\r\n");
	}
	CHECK(f, req(1, "DBSIZE"), ":5000\r\n");
	for (int i = 0; i < 5000; i += 7) {
		snprintf(key, sizeof(key), "k%d", i);
		snprintf(val, sizeof(val), "v%d", i * 7);
		snprintf(exp, sizeof(exp), "$%zu\r\n%s\r\n", strlen(val), val);
		CHECK(f, req(2, "GET", key), exp);
	}
	for (int i = 0; i < 5000; i += 2) {
		snprintf(key, sizeof(key), "k%d", i);
		CHECK(f, req(2, "DEL", key), ":1\r\n");
	}
	CHECK(f, req(1, "DBSIZE"), ":2500\r\n");
	CHECK(f, req(2, "GET", "k2"), "$-1\r\n");
	CHECK(f, req(2, "GET", "k3"), "$3\r\nv21\r\n");
}

int test_aof_run(void); /* test_resp_aof.c */

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_basic, setup, teardown),
		cmocka_unit_test_setup_teardown(test_incr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_options, setup, teardown),
		cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_config_info, setup, teardown),
		cmocka_unit_test_setup_teardown(test_more_commands, setup, teardown),
		cmocka_unit_test_setup_teardown(test_pipeline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_split, setup, teardown),
		cmocka_unit_test_setup_teardown(test_inline, setup, teardown),
		cmocka_unit_test_setup_teardown(test_malformed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_oversize, setup, teardown),
		cmocka_unit_test_setup_teardown(test_backpressure, setup, teardown),
		cmocka_unit_test(test_oom),
		cmocka_unit_test_setup_teardown(test_quit, setup, teardown),
		cmocka_unit_test_setup_teardown(test_many_keys, setup, teardown),
	};

	int failed = cmocka_run_group_tests(tests, NULL, NULL);

	return failed | test_aof_run();
}
