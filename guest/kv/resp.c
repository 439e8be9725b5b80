/* SPDX-License-Identifier: MIT */
/*
 * RESP2 requests and the commands of builtin:kv (resp.h). Parsing follows Redis's
 * processMultibulkBuffer()/processInlineBuffer(), and the error strings are
 * Redis 7's, byte for byte.
 */
#include <string.h>

#include "guest/kv/resp.h"

#define LLONG_MAX_ ((int64_t)0x7fffffffffffffffLL)
#define LLONG_MIN_ (-LLONG_MAX_ - 1)
#define MBULK_MAX  (1024 * 1024) /* Redis's limit on the element count */

struct ctx {
	struct kv_server *s;
	struct kv_client *c;
	int overflow;
	int argc;
	struct kv_arg *argv;
};

/* Output. A reply that does not fit sets overflow and writes nothing more. */

static void put(struct ctx *x, const void *p, uint32_t n)
{
	struct kv_client *c = x->c;

	if (x->overflow)
		return;
	if (n > KV_OUT_CAP - c->out_len) {
		x->overflow = 1;
		return;
	}
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
}

static void put_str(struct ctx *x, const char *s)
{
	put(x, s, (uint32_t)strlen(s));
}

static uint32_t fmt_u64(char *buf, uint64_t v)
{
	char tmp[20];
	uint32_t n = 0, i = 0;

	do {
		tmp[n++] = (char)('0' + v % 10);
		v /= 10;
	} while (v);
	while (n)
		buf[i++] = tmp[--n];
	return i;
}

static uint32_t fmt_i64(char *buf, int64_t v)
{
	if (v < 0) {
		buf[0] = '-';
		return 1 + fmt_u64(buf + 1, (uint64_t)0 - (uint64_t)v);
	}
	return fmt_u64(buf, (uint64_t)v);
}

static void put_prefixed(struct ctx *x, char type, int64_t v)
{
	char buf[32];
	uint32_t n;

	buf[0] = type;
	n = 1 + fmt_i64(buf + 1, v);
	buf[n++] = '\r';
	buf[n++] = '\n';
	put(x, buf, n);
}

static void reply_int(struct ctx *x, int64_t v)
{
	put_prefixed(x, ':', v);
}

static void reply_array(struct ctx *x, int64_t n)
{
	put_prefixed(x, '*', n);
}

static void reply_bulk(struct ctx *x, const void *p, uint32_t n)
{
	put_prefixed(x, '$', n);
	put(x, p, n);
	put(x, "\r\n", 2);
}

static void reply_null(struct ctx *x)
{
	put(x, "$-1\r\n", 5);
}

static void reply_ok(struct ctx *x)
{
	put(x, "+OK\r\n", 5);
}

/* Error text, with CR and LF turned into spaces as Redis does. */
static void put_err_text(struct ctx *x, const char *p, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++) {
		char ch = p[i] == '\r' || p[i] == '\n' ? ' ' : p[i];

		put(x, &ch, 1);
	}
}

static void reply_error(struct ctx *x, const char *msg)
{
	put(x, "-", 1);
	put_err_text(x, msg, (uint32_t)strlen(msg));
	put(x, "\r\n", 2);
}

/* Protocol errors close the connection once the reply is out. */
static void protocol_error(struct ctx *x, const char *msg)
{
	put_str(x, "-ERR Protocol error: ");
	put_str(x, msg);
	put(x, "\r\n", 2);
	x->c->close_after = 1;
}

static char lower(char ch)
{
	return ch >= 'A' && ch <= 'Z' ? (char)(ch + 32) : ch;
}

static int arg_is(const struct kv_arg *a, const char *lname)
{
	uint32_t i;

	for (i = 0; i < a->len; i++)
		if (!lname[i] || lower(a->p[i]) != lname[i])
			return 0;
	return !lname[i];
}

/* Redis's string2ll(): optional '-', digits, no leading zeros, no spaces or '+'. */
static int str2ll(const char *p, uint32_t n, int64_t *ret)
{
	uint64_t v = 0;
	int neg = 0;
	uint32_t i = 0;

	if (n == 0 || n > 20)
		return 0;
	if (n == 1 && p[0] == '0') {
		*ret = 0;
		return 1;
	}
	if (p[0] == '-') {
		neg = 1;
		i = 1;
		if (n == 1)
			return 0;
	}
	if (p[i] < '1' || p[i] > '9')
		return 0;
	for (; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return 0;
		if (v > UINT64_MAX / 10)
			return 0;
		v *= 10;
		if (v > UINT64_MAX - (uint64_t)(p[i] - '0'))
			return 0;
		v += (uint64_t)(p[i] - '0');
	}
	if (neg) {
		if (v > (uint64_t)LLONG_MAX_ + 1)
			return 0;
		*ret = (int64_t)(0 - v);
	} else {
		if (v > (uint64_t)LLONG_MAX_)
			return 0;
		*ret = (int64_t)v;
	}
	return 1;
}

static const char *memchr_(const char *p, char ch, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (p[i] == ch)
			return p + i;
	return NULL;
}

/*
 * Request parsing. Returns 1 with x->argc/argv set and *used bytes of input,
 * 0 when the request is incomplete, -1 after a protocol error reply. argc may be
 * 0 (an empty request: consume and go on).
 */
static int parse_multibulk(struct ctx *x, const char *b, uint32_t len, int full, uint32_t *used)
{
	const char *nl;
	uint32_t pos;
	int64_t count, bl;

	nl = memchr_(b, '\r', len);
	if (!nl) {
		if (full) {
			protocol_error(x, "too big mbulk count string");
			return -1;
		}
		return 0;
	}
	if ((uint32_t)(nl - b) + 2 > len)
		return 0;
	if (!str2ll(b + 1, (uint32_t)(nl - b - 1), &count) || count > MBULK_MAX) {
		protocol_error(x, "invalid multibulk length");
		return -1;
	}
	pos = (uint32_t)(nl - b) + 2;
	x->argc = 0;
	if (count <= 0) {
		*used = pos;
		return 1;
	}
	if (count > KV_MAX_ARGS) {
		protocol_error(x, "invalid multibulk length");
		return -1;
	}
	while (x->argc < count) {
		nl = memchr_(b + pos, '\r', len - pos);
		if (!nl || (uint32_t)(nl - b) + 2 > len)
			goto incomplete;
		if (b[pos] != '$') {
			char msg[] = "expected '$', got ' '";

			msg[sizeof(msg) - 3] = b[pos];
			protocol_error(x, msg);
			return -1;
		}
		if (!str2ll(b + pos + 1, (uint32_t)(nl - b - pos - 1), &bl) || bl < 0 ||
		    bl > (int64_t)KV_IN_CAP - 16) {
			protocol_error(x, "invalid bulk length");
			return -1;
		}
		pos = (uint32_t)(nl - b) + 2;
		if ((uint64_t)len - pos < (uint64_t)bl + 2)
			goto incomplete;
		x->argv[x->argc].p = b + pos;
		x->argv[x->argc].len = (uint32_t)bl;
		x->argc++;
		pos += (uint32_t)bl + 2;
	}
	*used = pos;
	return 1;
incomplete:
	if (full) {
		/* Redis would take it; this guest's input buffer cannot. */
		protocol_error(x, "request larger than the 65536-byte input buffer");
		return -1;
	}
	return 0;
}

static int is_space(char ch)
{
	return ch == ' ' || ch == '\n' || ch == '\r' || ch == '\t' || ch == '\v' || ch == '\f';
}

static int hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	ch = lower(ch);
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	return -1;
}

/* Redis's sdssplitargs(): words, "double quoted" with escapes, 'single quoted'. */
static int split_inline(struct ctx *x, const char *p, const char *end, char *out)
{
	x->argc = 0;
	for (;;) {
		int inq = 0, insq = 0, done = 0;
		char *w = out;

		while (p < end && is_space(*p))
			p++;
		if (p >= end)
			return 0;
		if (x->argc >= (int)KV_MAX_ARGS)
			return -1;
		while (!done) {
			if (inq) {
				if (p >= end)
					return -1;
				if (*p == '\\' && p + 3 < end && p[1] == 'x' && hexval(p[2]) >= 0 &&
				    hexval(p[3]) >= 0) {
					*w++ = (char)(hexval(p[2]) * 16 + hexval(p[3]));
					p += 3;
				} else if (*p == '\\' && p + 1 < end) {
					char ch;

					p++;
					switch (*p) {
					case 'n':
						ch = '\n';
						break;
					case 'r':
						ch = '\r';
						break;
					case 't':
						ch = '\t';
						break;
					case 'b':
						ch = '\b';
						break;
					case 'a':
						ch = '\a';
						break;
					default:
						ch = *p;
						break;
					}
					*w++ = ch;
				} else if (*p == '"') {
					if (p + 1 < end && !is_space(p[1]))
						return -1;
					done = 1;
				} else {
					*w++ = *p;
				}
			} else if (insq) {
				if (p >= end)
					return -1;
				if (*p == '\\' && p + 1 < end && p[1] == '\'') {
					p++;
					*w++ = '\'';
				} else if (*p == '\'') {
					if (p + 1 < end && !is_space(p[1]))
						return -1;
					done = 1;
				} else {
					*w++ = *p;
				}
			} else {
				if (p >= end)
					break;
				switch (*p) {
				case ' ':
				case '\n':
				case '\r':
				case '\t':
				case '\0':
					done = 1;
					break;
				case '"':
					inq = 1;
					break;
				case '\'':
					insq = 1;
					break;
				default:
					*w++ = *p;
					break;
				}
			}
			if (p < end)
				p++;
		}
		x->argv[x->argc].p = out;
		x->argv[x->argc].len = (uint32_t)(w - out);
		x->argc++;
		out = w;
	}
}

static int parse_inline(struct ctx *x, const char *b, uint32_t len, int full, char *scratch,
			uint32_t *used)
{
	const char *nl = memchr_(b, '\n', len), *end;

	if (!nl) {
		if (full) {
			protocol_error(x, "too big inline request");
			return -1;
		}
		return 0;
	}
	end = nl;
	if (end > b && end[-1] == '\r')
		end--;
	if (split_inline(x, b, end, scratch) < 0) {
		protocol_error(x, "unbalanced quotes in request");
		return -1;
	}
	*used = (uint32_t)(nl - b) + 1;
	return 1;
}

/* Commands. */

static void err_arity(struct ctx *x, const char *name)
{
	put_str(x, "-ERR wrong number of arguments for '");
	put_str(x, name);
	put_str(x, "' command\r\n");
}

static void err_not_int(struct ctx *x)
{
	reply_error(x, "ERR value is not an integer or out of range");
}

static void err_oom(struct ctx *x)
{
	reply_error(x, "OOM command not allowed when used memory > 'maxmemory'.");
}

static void err_syntax(struct ctx *x)
{
	reply_error(x, "ERR syntax error");
}

static struct kv_entry *lookup(struct ctx *x, const struct kv_arg *k)
{
	return kv_lookup(&x->s->store, k->p, k->len);
}

static struct kv_entry *store(struct ctx *x, const struct kv_arg *k, const void *v, uint32_t vlen,
			      uint64_t expire_ms, int keep_ttl)
{
	if (!kv_fits_block(k->len, vlen))
		return NULL;
	return kv_set(&x->s->store, k->p, k->len, v, vlen, expire_ms, keep_ttl);
}

static void cmd_ping(struct ctx *x)
{
	if (x->argc > 2)
		err_arity(x, "ping");
	else if (x->argc == 2)
		reply_bulk(x, x->argv[1].p, x->argv[1].len);
	else
		put_str(x, "+PONG\r\n");
}

static void cmd_echo(struct ctx *x)
{
	reply_bulk(x, x->argv[1].p, x->argv[1].len);
}

#define SET_NX	    1
#define SET_XX	    2
#define SET_GET	    4
#define SET_KEEPTTL 8
#define SET_EX	    16
#define SET_PX	    32

static void cmd_set(struct ctx *x)
{
	struct kv_arg *a = x->argv;
	int flags = 0;
	int64_t t = 0;
	uint64_t expire = 0;
	struct kv_entry *old;

	for (int j = 3; j < x->argc; j++) {
		int has_next = j + 1 < x->argc;

		if (arg_is(&a[j], "nx") && !(flags & SET_XX)) {
			flags |= SET_NX;
		} else if (arg_is(&a[j], "xx") && !(flags & SET_NX)) {
			flags |= SET_XX;
		} else if (arg_is(&a[j], "get")) {
			flags |= SET_GET;
		} else if (arg_is(&a[j], "keepttl") && !(flags & (SET_EX | SET_PX))) {
			flags |= SET_KEEPTTL;
		} else if (arg_is(&a[j], "ex") && !(flags & (SET_KEEPTTL | SET_PX | SET_EX)) &&
			   has_next) {
			flags |= SET_EX;
			j++;
			if (!str2ll(a[j].p, a[j].len, &t))
				return err_not_int(x);
		} else if (arg_is(&a[j], "px") && !(flags & (SET_KEEPTTL | SET_PX | SET_EX)) &&
			   has_next) {
			flags |= SET_PX;
			j++;
			if (!str2ll(a[j].p, a[j].len, &t))
				return err_not_int(x);
		} else {
			return err_syntax(x);
		}
	}
	if (flags & (SET_EX | SET_PX)) {
		if (t <= 0 || ((flags & SET_EX) && t > LLONG_MAX_ / 1000))
			return reply_error(x, "ERR invalid expire time in 'set' command");
		if (flags & SET_EX)
			t *= 1000;
		if ((uint64_t)t > UINT64_MAX - x->s->store.now_ms - 1)
			return reply_error(x, "ERR invalid expire time in 'set' command");
		expire = x->s->store.now_ms + (uint64_t)t;
	}
	old = lookup(x, &a[1]);
	if (((flags & SET_NX) && old) || ((flags & SET_XX) && !old)) {
		if ((flags & SET_GET) && old)
			return reply_bulk(x, kv_value(old), old->vlen);
		return reply_null(x);
	}
	if (flags & SET_GET) {
		/* The old value goes out first: the reply must fit before the write. */
		uint32_t mark = x->c->out_len;

		if (old)
			reply_bulk(x, kv_value(old), old->vlen);
		else
			reply_null(x);
		if (x->overflow)
			return;
		if (!store(x, &a[1], a[2].p, a[2].len, expire, flags & SET_KEEPTTL)) {
			x->c->out_len = mark;
			err_oom(x);
		}
		return;
	}
	if (!store(x, &a[1], a[2].p, a[2].len, expire, flags & SET_KEEPTTL))
		return err_oom(x);
	reply_ok(x);
}

static void cmd_get(struct ctx *x)
{
	struct kv_entry *e = lookup(x, &x->argv[1]);

	if (e)
		reply_bulk(x, kv_value(e), e->vlen);
	else
		reply_null(x);
}

static void cmd_del(struct ctx *x)
{
	int64_t n = 0;

	for (int i = 1; i < x->argc; i++)
		n += kv_del(&x->s->store, x->argv[i].p, x->argv[i].len);
	reply_int(x, n);
}

static void cmd_exists(struct ctx *x)
{
	int64_t n = 0;

	for (int i = 1; i < x->argc; i++)
		n += lookup(x, &x->argv[i]) != NULL;
	reply_int(x, n);
}

static void incr_by(struct ctx *x, int64_t by)
{
	struct kv_entry *e = lookup(x, &x->argv[1]);
	int64_t v = 0;
	char buf[24];

	if (e && !str2ll((const char *)kv_value(e), e->vlen, &v))
		return err_not_int(x);
	if ((by < 0 && v < 0 && by < LLONG_MIN_ - v) || (by > 0 && v > 0 && by > LLONG_MAX_ - v))
		return reply_error(x, "ERR increment or decrement would overflow");
	v += by;
	if (!store(x, &x->argv[1], buf, fmt_i64(buf, v), 0, 1))
		return err_oom(x);
	reply_int(x, v);
}

static void cmd_incr(struct ctx *x)
{
	incr_by(x, 1);
}

static void cmd_decr(struct ctx *x)
{
	incr_by(x, -1);
}

static void cmd_incrby(struct ctx *x)
{
	int64_t by;

	if (!str2ll(x->argv[2].p, x->argv[2].len, &by))
		return err_not_int(x);
	incr_by(x, by);
}

static void cmd_decrby(struct ctx *x)
{
	int64_t by;

	if (!str2ll(x->argv[2].p, x->argv[2].len, &by))
		return err_not_int(x);
	if (by == LLONG_MIN_)
		return reply_error(x, "ERR decrement would overflow");
	incr_by(x, -by);
}

static void cmd_mset(struct ctx *x)
{
	if (x->argc % 2 == 0)
		return err_arity(x, "mset");
	for (int i = 1; i < x->argc; i += 2)
		if (!store(x, &x->argv[i], x->argv[i + 1].p, x->argv[i + 1].len, 0, 0))
			return err_oom(x);
	reply_ok(x);
}

static void cmd_mget(struct ctx *x)
{
	reply_array(x, x->argc - 1);
	for (int i = 1; i < x->argc; i++) {
		struct kv_entry *e = lookup(x, &x->argv[i]);

		if (e)
			reply_bulk(x, kv_value(e), e->vlen);
		else
			reply_null(x);
	}
}

static void cmd_strlen(struct ctx *x)
{
	struct kv_entry *e = lookup(x, &x->argv[1]);

	reply_int(x, e ? e->vlen : 0);
}

static void cmd_append(struct ctx *x)
{
	struct kv_entry *e = lookup(x, &x->argv[1]);
	const struct kv_arg *k = &x->argv[1], *v = &x->argv[2];

	if (!kv_fits_block(k->len, (uint64_t)(e ? e->vlen : 0) + v->len))
		return err_oom(x);
	e = kv_append(&x->s->store, k->p, k->len, v->p, v->len);
	if (!e)
		return err_oom(x);
	reply_int(x, e->vlen);
}

static void cmd_setnx(struct ctx *x)
{
	if (lookup(x, &x->argv[1]))
		return reply_int(x, 0);
	if (!store(x, &x->argv[1], x->argv[2].p, x->argv[2].len, 0, 0))
		return err_oom(x);
	reply_int(x, 1);
}

static void cmd_getset(struct ctx *x)
{
	struct kv_entry *e = lookup(x, &x->argv[1]);
	uint32_t mark = x->c->out_len;

	if (e)
		reply_bulk(x, kv_value(e), e->vlen);
	else
		reply_null(x);
	if (x->overflow)
		return;
	if (!store(x, &x->argv[1], x->argv[2].p, x->argv[2].len, 0, 0)) {
		x->c->out_len = mark;
		err_oom(x);
	}
}

static void cmd_getdel(struct ctx *x)
{
	struct kv_entry *e = lookup(x, &x->argv[1]);

	if (!e)
		return reply_null(x);
	reply_bulk(x, kv_value(e), e->vlen);
	if (!x->overflow)
		kv_del(&x->s->store, x->argv[1].p, x->argv[1].len);
}

static void ttl(struct ctx *x, int ms)
{
	struct kv_entry *e = lookup(x, &x->argv[1]);
	uint64_t left;

	if (!e)
		return reply_int(x, -2);
	if (!e->expire_ms)
		return reply_int(x, -1);
	left = e->expire_ms - x->s->store.now_ms;
	reply_int(x, (int64_t)(ms ? left : (left + 500) / 1000));
}

static void cmd_ttl(struct ctx *x)
{
	ttl(x, 0);
}

static void cmd_pttl(struct ctx *x)
{
	ttl(x, 1);
}

static void expire(struct ctx *x, int ms, const char *name)
{
	struct kv_entry *e;
	int64_t t;

	if (x->argc > 3) {
		put_str(x, "-ERR Unsupported option ");
		put_err_text(x, x->argv[3].p, x->argv[3].len < 128 ? x->argv[3].len : 128);
		put(x, "\r\n", 2);
		return;
	}
	if (!str2ll(x->argv[2].p, x->argv[2].len, &t))
		return err_not_int(x);
	if ((!ms && (t > LLONG_MAX_ / 1000 || t < LLONG_MIN_ / 1000)) ||
	    (t > 0 && (uint64_t)t * (ms ? 1 : 1000) > UINT64_MAX / 2 - x->s->store.now_ms)) {
		put_str(x, "-ERR invalid expire time in '");
		put_str(x, name);
		put_str(x, "' command\r\n");
		return;
	}
	e = lookup(x, &x->argv[1]);
	if (!e)
		return reply_int(x, 0);
	if (t <= 0) {
		kv_del(&x->s->store, x->argv[1].p, x->argv[1].len);
		return reply_int(x, 1);
	}
	kv_set_expire(&x->s->store, e, x->s->store.now_ms + (uint64_t)t * (ms ? 1 : 1000));
	reply_int(x, 1);
}

static void cmd_expire(struct ctx *x)
{
	expire(x, 0, "expire");
}

static void cmd_pexpire(struct ctx *x)
{
	expire(x, 1, "pexpire");
}

static void cmd_persist(struct ctx *x)
{
	struct kv_entry *e = lookup(x, &x->argv[1]);

	if (!e || !e->expire_ms)
		return reply_int(x, 0);
	kv_set_expire(&x->s->store, e, 0);
	reply_int(x, 1);
}

static void cmd_type(struct ctx *x)
{
	put_str(x, lookup(x, &x->argv[1]) ? "+string\r\n" : "+none\r\n");
}

static void cmd_dbsize(struct ctx *x)
{
	reply_int(x, (int64_t)x->s->store.keys);
}

static void cmd_flushall(struct ctx *x)
{
	if (x->argc > 2 ||
	    (x->argc == 2 && !arg_is(&x->argv[1], "sync") && !arg_is(&x->argv[1], "async")))
		return err_syntax(x);
	kv_store_flush(&x->s->store);
	reply_ok(x);
}

static void cmd_select(struct ctx *x)
{
	int64_t db;

	if (!str2ll(x->argv[1].p, x->argv[1].len, &db))
		return err_not_int(x);
	if (db != 0)
		return reply_error(x, "ERR DB index is out of range");
	reply_ok(x);
}

static void info_line(char *buf, uint32_t *n, const char *s)
{
	uint32_t l = (uint32_t)strlen(s);

	memcpy(buf + *n, s, l);
	*n += l;
}

static void info_u64(char *buf, uint32_t *n, const char *name, uint64_t v)
{
	info_line(buf, n, name);
	*n += fmt_u64(buf + *n, v);
	info_line(buf, n, "\r\n");
}

static void cmd_info(struct ctx *x)
{
	struct kv_server *s = x->s;
	char buf[1200];
	uint32_t n = 0;
	uint64_t up = (s->store.now_ms - s->start_ms) / 1000;

	info_line(buf, &n,
		  "# Server\r\nredis_version:" KV_VERSION "\r\nredis_mode:standalone\r\n"
		  "os:ringft builtin:kv (lwIP, freestanding x86-64)\r\n"
		  "arch_bits:64\r\nmultiplexing_api:poll\r\ntcp_port:6379\r\n");
	info_u64(buf, &n, "uptime_in_seconds:", up);
	info_u64(buf, &n, "uptime_in_days:", up / 86400);
	info_line(buf, &n, "\r\n# Clients\r\n");
	info_u64(buf, &n, "connected_clients:", s->clients);
	info_line(buf, &n, "\r\n# Memory\r\n");
	info_u64(buf, &n, "used_memory:", s->store.used);
	info_u64(buf, &n, "maxmemory:", s->max_bytes);
	info_line(buf, &n, "maxmemory_policy:noeviction\r\n\r\n# Persistence\r\nloading:0\r\n");
	info_u64(buf, &n, "aof_enabled:", s->aof ? 1 : 0);
	info_line(buf, &n, "\r\n# Stats\r\n");
	info_u64(buf, &n, "total_connections_received:", s->connections);
	info_u64(buf, &n, "total_commands_processed:", s->commands);
	info_u64(buf, &n, "rejected_connections:", s->rejected);
	info_line(buf, &n, "\r\n# NIC\r\n");
	info_u64(buf, &n, "nic_rx_frames:", s->nic_rx_frames);
	info_u64(buf, &n, "nic_rx_dropped:", s->nic_rx_dropped);
	info_u64(buf, &n, "nic_tx_frames:", s->nic_tx_frames);
	info_u64(buf, &n, "nic_tx_busy:", s->nic_tx_busy);
	info_u64(buf, &n, "nic_notifies:", s->nic_notifies);
	info_line(buf, &n,
		  "\r\n# Replication\r\nrole:master\r\nconnected_slaves:0\r\n"
		  "\r\n# Keyspace\r\n");
	if (s->store.keys) {
		info_u64(buf, &n, "db0:keys=", s->store.keys);
		n -= 2;
		info_u64(buf, &n, ",expires=", s->store.expires);
		n -= 2;
		info_line(buf, &n, ",avg_ttl=0\r\n");
	}
	reply_bulk(x, buf, n);
}

/* Redis's stringmatchlen() for the patterns CONFIG GET sees: '*', '?', literal. */
static int glob(const char *pat, uint32_t plen, const char *s)
{
	if (!plen)
		return !*s;
	if (*pat == '*') {
		for (;; s++) {
			if (glob(pat + 1, plen - 1, s))
				return 1;
			if (!*s)
				return 0;
		}
	}
	if (!*s)
		return 0;
	if (*pat != '?' && lower(*pat) != *s)
		return 0;
	return glob(pat + 1, plen - 1, s + 1);
}

static void cmd_config(struct ctx *x)
{
	static const char *const names[] = { "save",	  "appendonly",
					     "maxmemory", "maxmemory-policy",
					     "databases", "port" };
	char mem[24];
	const char *values[] = { "", x->s->aof ? "yes" : "no", mem, "noeviction", "1", "6379" };
	const unsigned int nr = sizeof(names) / sizeof(names[0]);
	int match[sizeof(names) / sizeof(names[0])] = { 0 };
	int64_t count = 0;

	if (!arg_is(&x->argv[1], "get")) {
		put_str(x, "-ERR unknown subcommand '");
		put_err_text(x, x->argv[1].p, x->argv[1].len < 128 ? x->argv[1].len : 128);
		put_str(x, "'. Try CONFIG HELP.\r\n");
		return;
	}
	if (x->argc < 3)
		return err_arity(x, "config|get");
	mem[fmt_u64(mem, x->s->max_bytes)] = 0;
	for (int i = 2; i < x->argc; i++)
		for (unsigned int k = 0; k < nr; k++)
			if (!match[k] && glob(x->argv[i].p, x->argv[i].len, names[k])) {
				match[k] = 1;
				count++;
			}
	reply_array(x, count * 2);
	for (unsigned int k = 0; k < nr; k++)
		if (match[k]) {
			reply_bulk(x, names[k], (uint32_t)strlen(names[k]));
			reply_bulk(x, values[k], (uint32_t)strlen(values[k]));
		}
}

static void cmd_command(struct ctx *x)
{
	reply_array(x, 0);
}

static void cmd_quit(struct ctx *x)
{
	reply_ok(x);
	x->c->close_after = 1;
}

struct command {
	const char *name; /* lower case, as in Redis's errors */
	int arity;	  /* Redis's: n exactly, -n at least n */
	void (*fn)(struct ctx *x);
};

static const struct command commands[] = {
	{ "get", 2, cmd_get },		 { "set", -3, cmd_set },
	{ "ping", -1, cmd_ping },	 { "incr", 2, cmd_incr },
	{ "mget", -2, cmd_mget },	 { "mset", -3, cmd_mset },
	{ "del", -2, cmd_del },		 { "exists", -2, cmd_exists },
	{ "incrby", 3, cmd_incrby },	 { "decr", 2, cmd_decr },
	{ "decrby", 3, cmd_decrby },	 { "echo", 2, cmd_echo },
	{ "dbsize", 1, cmd_dbsize },	 { "flushall", -1, cmd_flushall },
	{ "flushdb", -1, cmd_flushall }, { "info", -1, cmd_info },
	{ "config", -2, cmd_config },	 { "command", -1, cmd_command },
	{ "select", 2, cmd_select },	 { "strlen", 2, cmd_strlen },
	{ "append", 3, cmd_append },	 { "setnx", 3, cmd_setnx },
	{ "getset", 3, cmd_getset },	 { "getdel", 2, cmd_getdel },
	{ "ttl", 2, cmd_ttl },		 { "pttl", 2, cmd_pttl },
	{ "expire", -3, cmd_expire },	 { "pexpire", -3, cmd_pexpire },
	{ "persist", 2, cmd_persist },	 { "type", 2, cmd_type },
	{ "quit", -1, cmd_quit },
};

static void unknown_command(struct ctx *x)
{
	uint32_t args = 0;

	put_str(x, "-ERR unknown command '");
	put_err_text(x, x->argv[0].p, x->argv[0].len < 128 ? x->argv[0].len : 128);
	put_str(x, "', with args beginning with: ");
	for (int i = 1; i < x->argc && args < 128; i++) {
		uint32_t n = x->argv[i].len < 128 - args ? x->argv[i].len : 128 - args;

		put(x, "'", 1);
		put_err_text(x, x->argv[i].p, n);
		put(x, "' ", 2);
		args += n + 3;
	}
	put(x, "\r\n", 2);
}

static void execute(struct ctx *x)
{
	for (unsigned int i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct command *cmd = &commands[i];

		if (!arg_is(&x->argv[0], cmd->name))
			continue;
		if ((cmd->arity > 0 && x->argc != cmd->arity) ||
		    (cmd->arity < 0 && x->argc < -cmd->arity))
			return err_arity(x, cmd->name);
		return cmd->fn(x);
	}
	unknown_command(x);
}

void kv_server_init(struct kv_server *s, void *mem, uint64_t max_bytes, uint64_t now_ms)
{
	memset(s, 0, sizeof(*s));
	kv_store_init(&s->store, mem, max_bytes);
	s->max_bytes = max_bytes;
	s->start_ms = now_ms;
	s->store.now_ms = now_ms;
}

void kv_client_out_consume(struct kv_client *c, uint32_t n)
{
	if (n >= c->out_len) {
		c->out_len = 0;
		return;
	}
	memmove(c->out, c->out + n, c->out_len - n);
	c->out_len -= n;
}

/* The inline request's unescaped words: one client at a time, so one buffer. */
static char inline_words[KV_IN_CAP];

unsigned int kv_client_process(struct kv_server *s, struct kv_client *c)
{
	struct ctx x = { .s = s, .c = c, .argv = s->argv };
	uint32_t done = 0, used = 0;
	unsigned int n = 0;

	while (!c->close_after && done < c->in_len && KV_OUT_CAP - c->out_len >= KV_OUT_RESERVE) {
		uint32_t mark = c->out_len, len = c->in_len - done;
		const char *b = c->in + done;
		/* An incomplete request filling the whole buffer can never complete. */
		int full = !done && c->in_len >= KV_IN_CAP;
		int r;

		if (*b == '*')
			r = parse_multibulk(&x, b, len, full, &used);
		else
			r = parse_inline(&x, b, len, full, inline_words, &used);
		if (r <= 0)
			break;
		if (x.argc == 0) {
			done += used;
			continue;
		}
		x.overflow = 0;
		execute(&x);
		if (x.overflow) {
			c->out_len = mark;
			if (mark)
				break; /* retry once the output has drained */
			x.overflow = 0;
			reply_error(&x, "ERR reply larger than the guest's output buffer");
		}
		done += used;
		n++;
		s->commands++;
	}
	if (done) {
		memmove(c->in, c->in + done, c->in_len - done);
		c->in_len -= done;
	}
	return n;
}
