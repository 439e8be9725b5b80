// SPDX-License-Identifier: MIT
/* Unit tests for the pure code: dirty set, ring walking, option parsing, stats. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <time.h>
#include <unistd.h>

#include "daemon/corosync_conf.h"
#include "daemon/failover.h"
#include "daemon/options.h"
#include "daemon/reload.h"
#include "daemon/request.h"
#include "lib/clock.h"
#include "lib/parse.h"
#include "lib/stats.h"
#include "primary/commit.h"
#include "primary/outbuf.h"
#include "primary/replicate.h"
#include "vmm/dirty.h"

static void test_dirty_set_dedup_and_clear(void **state)
{
	struct dirty_set s;

	assert_int_equal(dirty_set_init(&s, 1000), 0);
	assert_true(dirty_set_add(&s, 5));
	assert_false(dirty_set_add(&s, 5));
	assert_true(dirty_set_add(&s, 999));
	assert_false(dirty_set_add(&s, 1000)); /* out of range */
	assert_true(dirty_set_add(&s, 64));
	assert_int_equal(s.count, 3);
	assert_true(dirty_set_test(&s, 64));
	assert_false(dirty_set_test(&s, 63));
	dirty_set_sort(&s);
	assert_int_equal(s.pages[0], 5);
	assert_int_equal(s.pages[1], 64);
	assert_int_equal(s.pages[2], 999);
	dirty_set_clear(&s);
	assert_int_equal(s.count, 0);
	for (uint64_t p = 0; p < 1000; p++)
		assert_false(dirty_set_test(&s, p));
	assert_true(dirty_set_add(&s, 5));
	dirty_set_free(&s);
}

static void test_dirty_set_merge(void **state)
{
	struct dirty_set a, b;

	assert_int_equal(dirty_set_init(&a, 128), 0);
	assert_int_equal(dirty_set_init(&b, 128), 0);
	dirty_set_add(&a, 1);
	dirty_set_add(&a, 2);
	dirty_set_add(&b, 2);
	dirty_set_add(&b, 127);
	dirty_set_merge(&a, &b);
	assert_int_equal(a.count, 3);
	assert_true(dirty_set_test(&a, 127));
	dirty_set_free(&a);
	dirty_set_free(&b);
}

static void publish(struct kvm_dirty_gfn *e, uint32_t slot, uint64_t offset)
{
	e->slot = slot;
	e->offset = offset;
	__atomic_store_n(&e->flags, KVM_DIRTY_GFN_F_DIRTY, __ATOMIC_RELEASE);
}

static void test_ring_collect(void **state)
{
	struct kvm_dirty_gfn ring[8] = { 0 };
	uint64_t first[2] = { 0, 100 }, npages[2] = { 100, 50 };
	struct dirty_stats st = { 0 };
	struct dirty_set out;
	uint32_t fetch = 0;

	assert_int_equal(dirty_set_init(&out, 150), 0);
	publish(&ring[0], 0, 7);
	publish(&ring[1], 1, 3);	/* slot 1: page 103 */
	publish(&ring[2], 0, 7);	/* repeat: deduplicated */
	publish(&ring[3], 1, 50);	/* offset beyond slot 1 */
	publish(&ring[4], 1u << 16, 1); /* address space 1: not ours */
	assert_int_equal(dirty_ring_collect(ring, 8, &fetch, first, npages, 2, &out, &st), 5);
	assert_int_equal(fetch, 5);
	assert_int_equal(out.count, 2);
	assert_true(dirty_set_test(&out, 7));
	assert_true(dirty_set_test(&out, 103));
	assert_int_equal(st.entries, 5);
	assert_int_equal(st.pages, 2);
	assert_int_equal(st.invalid, 2);
	for (int i = 0; i < 5; i++)
		assert_int_equal(ring[i].flags, KVM_DIRTY_GFN_F_RESET);
	/* Nothing new published: nothing collected, fetch unchanged. */
	assert_int_equal(dirty_ring_collect(ring, 8, &fetch, first, npages, 2, &out, &st), 0);
	assert_int_equal(fetch, 5);
	dirty_set_free(&out);
}

static void test_ring_collect_wraps_and_stops_when_full(void **state)
{
	struct kvm_dirty_gfn ring[4] = { 0 };
	uint64_t first[1] = { 0 }, npages[1] = { 64 };
	struct dirty_set out;
	uint32_t fetch = 3;

	assert_int_equal(dirty_set_init(&out, 64), 0);
	/* A full ring starting at index 3: entries 3, 0, 1, 2. */
	publish(&ring[3], 0, 10);
	publish(&ring[0], 0, 11);
	publish(&ring[1], 0, 12);
	publish(&ring[2], 0, 13);
	assert_int_equal(dirty_ring_collect(ring, 4, &fetch, first, npages, 1, &out, NULL), 4);
	assert_int_equal(fetch, 7);
	assert_int_equal(out.count, 4);
	assert_int_equal(out.pages[0], 10);
	assert_int_equal(out.pages[3], 13);
	dirty_set_free(&out);
}

static void test_parse_size(void **state)
{
	uint64_t v;

	assert_int_equal(parse_size("4096", &v), 0);
	assert_int_equal(v, 4096);
	assert_int_equal(parse_size("64M", &v), 0);
	assert_int_equal(v, 64ULL << 20);
	assert_int_equal(parse_size("1G", &v), 0);
	assert_int_equal(v, 1ULL << 30);
	assert_int_equal(parse_size("16GiB", &v), 0);
	assert_int_equal(v, 16ULL << 30);
	assert_int_equal(parse_size("2k", &v), 0);
	assert_int_equal(v, 2048);
	assert_int_equal(parse_size("", &v), -EINVAL);
	assert_int_equal(parse_size("G", &v), -EINVAL);
	assert_int_equal(parse_size("1X", &v), -EINVAL);
	assert_int_equal(parse_size("1Gx", &v), -EINVAL);
	assert_int_equal(parse_size("-1G", &v), -EINVAL);
	assert_int_equal(parse_size("99999999999999999999", &v), -ERANGE);
	assert_int_equal(parse_size("17179869184T", &v), -ERANGE);
}

static void test_parse_duration(void **state)
{
	uint64_t v;

	assert_int_equal(parse_duration("10ms", &v), 0);
	assert_int_equal(v, 10000000);
	assert_int_equal(parse_duration("500us", &v), 0);
	assert_int_equal(v, 500000);
	assert_int_equal(parse_duration("2s", &v), 0);
	assert_int_equal(v, 2000000000);
	/* A bare number is seconds (systemd.time(7)): cluster-wait = 35 is 35 s. */
	assert_int_equal(parse_duration("7", &v), 0);
	assert_int_equal(v, 7000000000ULL);
	assert_int_equal(parse_duration("35", &v), 0);
	assert_int_equal(v, 35 * NS_PER_S);
	assert_int_equal(parse_duration("1m", &v), 0);
	assert_int_equal(v, 60000000000ULL);
	assert_int_equal(parse_duration("10 ms", &v), -EINVAL);
	assert_int_equal(parse_duration("ms", &v), -EINVAL);
	assert_int_equal(parse_duration("1h", &v), -EINVAL);
}

static int parse(struct ftd_options *o, char *err, const char *const *args)
{
	char *argv[32];
	int argc = 0;

	while (args[argc]) {
		argv[argc] = (char *)args[argc];
		argc++;
	}
	argv[argc] = NULL;
	return ftd_options_parse(argc, argv, o, err, 256);
}

static void test_options_run(void **state)
{
	struct ftd_options o;
	char err[256] = "";
	const char *args[] = { "ftd",
			       "run",
			       "--guest",
			       "builtin:dirty",
			       "--mem",
			       "4G",
			       "--vcpus",
			       "3",
			       "--tracking",
			       "bitmap",
			       "--interval",
			       "1ms",
			       "--dirty-order",
			       "random",
			       "--dirty-wss",
			       "8M",
			       "--ring-entries",
			       "1024",
			       NULL };

	assert_int_equal(parse(&o, err, args), 0);
	assert_int_equal(o.role, FTD_ROLE_RUN);
	assert_string_equal(o.guest, "builtin:dirty");
	assert_int_equal(o.mem_size, 4ULL << 30);
	assert_int_equal(o.vcpus, 3);
	assert_int_equal(o.tracking, DIRTY_BITMAP);
	assert_int_equal(o.interval_ns, 1000000);
	assert_int_equal(o.gp.dirty_order, GUEST_ORDER_RANDOM);
	assert_int_equal(o.gp.dirty_wss_bytes, 8ULL << 20);
	assert_int_equal(o.ring_entries, 1024);
}

static void test_options_defaults(void **state)
{
	struct ftd_options o;
	char err[256] = "";
	const char *args[] = { "ftd", "run", NULL };

	assert_int_equal(parse(&o, err, args), 0);
	assert_string_equal(o.guest, "builtin:bank");
	assert_int_equal(o.mem_size, 1ULL << 30);
	assert_int_equal(o.vcpus, 2);
	assert_int_equal(o.tracking, DIRTY_RING);
	assert_int_equal(o.interval_ns, 10000000);
	assert_string_equal(o.console, "-");
	assert_int_equal(o.realtime, -1);
}

static void expect_error(const char *const *args, const char *needle)
{
	struct ftd_options o;
	char err[256] = "";

	assert_int_equal(parse(&o, err, args), -EINVAL);
	if (!strstr(err, needle))
		fail_msg("error '%s' does not contain '%s'", err, needle);
}

/* Writes text to path (the test's own file), or fails the test. */
static void put_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

/*
 * SIGHUP's options part: the live options take the new interval and timeout
 * (and say so), fixed ones keep their value, TLS cannot swap with the clear,
 * renewed TLS paths are taken.
 */
static void test_reload_options(void **state)
{
	char dir[] = "/tmp/ringft-reload.XXXXXX", path[64], err[256] = "";
	struct ftd_options *o = calloc(2, sizeof(*o)), *n = o + 1;
	const char *args[] = { "ftd", "primary", "--config", path, NULL };

	assert_non_null(o);
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vm.conf", dir);
	put_file(path, "peer = 127.0.0.1:7000\nmem = 64M\ninterval = 10ms\ntimeout = 1s\n"
		       "tls-cert = /a/cert.pem\ntls-key = /a/key.pem\ntls-ca = /a/ca.pem\n");
	assert_int_equal(parse(o, err, args), 0);

	/* Unchanged: nothing to apply. */
	assert_int_equal(parse(n, err, args), 0);
	assert_int_equal(ftd_reload_options(o, n), 0);

	/* The interval and timeout apply; mem waits for a restart; new TLS paths are taken. */
	put_file(path, "peer = 127.0.0.1:7000\nmem = 128M\ninterval = 5ms\ntimeout = 2s\n"
		       "tls-cert = /b/cert.pem\ntls-key = /b/key.pem\ntls-ca = /b/ca.pem\n");
	assert_int_equal(parse(n, err, args), 0);
	assert_int_equal(ftd_reload_options(o, n), RELOAD_INTERVAL | RELOAD_TIMEOUT);
	assert_int_equal(o->interval_ns, 5 * NS_PER_MS);
	assert_int_equal(o->timeout_ns, 2 * NS_PER_S);
	assert_int_equal(o->mem_size, 64ULL << 20);
	assert_string_equal(o->tls_cert, "/b/cert.pem");
	assert_string_equal(o->tls_ca, "/b/ca.pem");

	/* Only output-interval: still the interval's to apply. */
	put_file(path, "peer = 127.0.0.1:7000\nmem = 64M\ninterval = 5ms\ntimeout = 2s\n"
		       "output-interval = 1ms\n"
		       "tls-cert = /b/cert.pem\ntls-key = /b/key.pem\ntls-ca = /b/ca.pem\n");
	assert_int_equal(parse(n, err, args), 0);
	assert_int_equal(ftd_reload_options(o, n), RELOAD_INTERVAL);
	assert_int_equal(o->output_interval_ns, NS_PER_MS);

	/* TLS off in the file: kept on until a restart, and nothing else changed. */
	put_file(path, "peer = 127.0.0.1:7000\nmem = 64M\ninterval = 5ms\ntimeout = 2s\n"
		       "output-interval = 1ms\n");
	assert_int_equal(parse(n, err, args), 0);
	assert_int_equal(ftd_reload_options(o, n), 0);
	assert_string_equal(o->tls_cert, "/b/cert.pem");
	assert_string_equal(o->tls_key, "/b/key.pem");

	assert_int_equal(unlink(path), 0);
	assert_int_equal(rmdir(dir), 0);
	free(o);
}

/* corosync.conf read as corosync reads it, for the --cluster-wait bound. */
static void test_corosync_conf(void **state)
{
	static const struct {
		const char *text, *err; /* err: NULL = parses */
		uint64_t token, isolation;
	} cases[] = {
		/* Defaults: corosync 3's token, no qdevice. */
		{ "totem {\n\tversion: 2\n}\n", NULL, 3000, 3000 },
		/* Comments, blank lines, spaces; token only in totem, not in a subsection. */
		{ "# c\n\ntotem  {\n  token :  1000 # ms\n  interface {\n    token: 9\n  }\n}\n"
		  "nodelist {\n node {\n  ring0_addr: 10.0.0.1\n }\n}\n",
		  NULL, 1000, 1000 },
		/* A qdevice: token plus the longer of sync_timeout and timeout (defaults 30 s, 10
		   s). */
		{ "totem {\ntoken: 1000\n}\nquorum {\nprovider: corosync_votequorum\ndevice {\n"
		  "model: net\ntimeout: 3000\nsync_timeout: 6000\n}\n}\n",
		  NULL, 1000, 7000 },
		{ "totem {\ntoken: 1000\n}\nquorum {\ndevice {\ntimeout: 8000\n"
		  "sync_timeout: 2000\n}\n}\n",
		  NULL, 1000, 9000 },
		{ "quorum {\ndevice {\nmodel: net\n}\n}\n", NULL, 3000, 33000 },
		/* timeout outside quorum.device is someone else's. */
		{ "quorum {\ntimeout: 99\n}\ntotem {\ntoken: 500\n}\n", NULL, 500, 500 },
		/* Refusals, each with its line. */
		{ "totem {\ntoken: soon\n}\n", ":2: token: 'soon' is not a number of milliseconds",
		  0, 0 },
		{ "totem {\ntoken: 99999999999\n}\n", ":2: token: '99999999999' is not a number", 0,
		  0 },
		{ "totem {\ntoken 1000\n}\n", ":2: not `key: value`", 0, 0 },
		{ "totem {\ntoken: 1000\n}\n}\n", ":4: '}' closes no section", 0, 0 },
		{ "totem {\ntoken: 1000\n", ": section totem is not closed", 0, 0 },
		{ "{\n}\n", ":1: a section corosync would not take", 0, 0 },
		{ "a {\nb {\nc {\nd {\ne {\nf {\ng {\nh {\ni {\n",
		  ":9: a section corosync would not take", 0, 0 },
	};
	char dir[] = "/tmp/ringft-corosync.XXXXXX", path[64], err[256], line[600];
	struct corosync_timeouts t;

	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/corosync.conf", dir);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r;

		put_file(path, cases[i].text);
		err[0] = 0;
		r = corosync_conf_read(path, &t, err, sizeof(err));
		if (!cases[i].err) {
			if (r != 0)
				fail_msg("case %zu: %d, %s", i, r, err);
			assert_int_equal(t.token_ms, cases[i].token);
			assert_int_equal(corosync_isolation_ms(&t), cases[i].isolation);
		} else {
			assert_int_equal(r, -EINVAL);
			if (!strstr(err, cases[i].err) || strncmp(err, path, strlen(path)))
				fail_msg("case %zu: '%s' lacks '%s' after the path", i, err,
					 cases[i].err);
		}
	}
	/* A line too long to be corosync's is refused, not read as two. */
	memset(line, 'x', sizeof(line) - 1);
	line[sizeof(line) - 1] = 0;
	put_file(path, line);
	assert_int_equal(corosync_conf_read(path, &t, err, sizeof(err)), -EINVAL);
	assert_non_null(strstr(err, ":1: a line longer than 510 bytes"));
	assert_int_equal(unlink(path), 0);
	assert_int_equal(corosync_conf_read(path, &t, err, sizeof(err)), -ENOENT);
	assert_int_equal(rmdir(dir), 0);
}

static void test_options_errors(void **state)
{
	expect_error((const char *const[]){ "ftd", "run", "--vcpus", "9", NULL },
		     "--vcpus: 9 is out of range 1..8");
	expect_error((const char *const[]){ "ftd", "run", "--vcpus", "two", NULL },
		     "--vcpus: 'two' is not a number");
	expect_error((const char *const[]){ "ftd", "run", "--mem", "3X", NULL },
		     "--mem: '3X' is not a size");
	expect_error((const char *const[]){ "ftd", "run", "--mem", "32M", NULL },
		     "--mem: 32M is not a multiple of 2M between 64M and 64G");
	expect_error((const char *const[]){ "ftd", "run", "--tracking", "pml", NULL },
		     "--tracking: 'pml' is not ring or bitmap");
	expect_error((const char *const[]){ "ftd", "run", "--interval", "100us", NULL },
		     "--interval: 100us is outside 1ms..60s");
	expect_error((const char *const[]){ "ftd", "run", "--ring-entries", "1000", NULL },
		     "--ring-entries: 1000 is not a power of two");
	expect_error((const char *const[]){ "ftd", "run", "--bogus", NULL },
		     "unknown option '--bogus'");
	expect_error((const char *const[]){ "ftd", "run", "--mem", NULL },
		     "option --mem needs a value");
	expect_error((const char *const[]){ "ftd", "fly", NULL }, "unknown command 'fly'");
	expect_error((const char *const[]){ "ftd", "run", "extra", NULL },
		     "unexpected argument 'extra'");
	expect_error((const char *const[]){ "ftd", "run", "--guest", "/tmp/x.img", NULL },
		     "--guest: '/tmp/x.img' is not a guest");
	expect_error((const char *const[]){ "ftd", NULL }, "no command given");
}

/* --net and the guest's address: what they set, and every refusal with its reason. */
static void test_options_net(void **state)
{
	struct ftd_options o;
	char err[256] = "";
	const char *args[] = { "ftd",
			       "run",
			       "--guest",
			       "builtin:kv",
			       "--net",
			       "tap=ftap0,mac=02:00:00:aa:bb:cc,vnet-hdr=on",
			       "--guest-ip",
			       "10.77.0.2/24",
			       "--guest-gateway",
			       "10.77.0.1",
			       NULL };
	const char *plain[] = { "ftd", "run", "--net", "tap=t0", NULL };

	assert_int_equal(parse(&o, err, args), 0);
	assert_true(o.net.enabled);
	assert_string_equal(o.net.tap, "ftap0");
	assert_memory_equal(o.net.mac, ((uint8_t[]){ 2, 0, 0, 0xaa, 0xbb, 0xcc }), 6);
	assert_string_equal(o.net.mac_text, "02:00:00:aa:bb:cc");
	assert_true(o.net.vnet_hdr);
	assert_int_equal(o.net.hold_max, FTD_NET_DEFAULT_HOLD_MAX);
	assert_int_equal(o.gp.net_ip, 0x0a4d0002);
	assert_int_equal(o.gp.net_mask, 0xffffff00);
	assert_int_equal(o.gp.net_gateway, 0x0a4d0001);
	assert_int_equal(parse(&o, err, plain), 0);
	assert_string_equal(o.net.mac_text, "52:54:00:12:34:56");
	assert_false(o.net.vnet_hdr);

	expect_error((const char *const[]){ "ftd", "run", "--net", "mac=52:54:00:12:34:56", NULL },
		     "--net: 'mac=52:54:00:12:34:56' names no TAP (use tap=NAME)");
	expect_error(
		(const char *const[]){ "ftd", "run", "--net", "tap=t0,mac=52:54:00:12:34", NULL },
		"--net: mac '52:54:00:12:34' is not a unicast MAC address");
	expect_error((const char *const[]){ "ftd", "run", "--net", "tap=t0,mac=01:00:5e:00:00:01",
					    NULL },
		     "--net: mac '01:00:5e:00:00:01' is not a unicast MAC address");
	expect_error((const char *const[]){ "ftd", "run", "--net", "tap=t0,speed=10G", NULL },
		     "--net: unknown key 'speed' (expected tap, mac, vnet-hdr)");
	expect_error(
		(const char *const[]){ "ftd", "run", "--net", "tap=a-name-longer-than-15", NULL },
		"--net: tap 'a-name-longer-than-15' is not an interface name of 1..15 bytes");
	expect_error((const char *const[]){ "ftd", "run", "--net", "t0", NULL },
		     "--net: 't0' is not KEY=VALUE");
	expect_error((const char *const[]){ "ftd", "run", "--net", "tap=t0", "--guest-ip",
					    "10.77.0.2", NULL },
		     "--guest-ip: '10.77.0.2' is not ADDR/PREFIX");
	expect_error((const char *const[]){ "ftd", "run", "--net", "tap=t0", "--guest-ip",
					    "10.77.0.2/31", NULL },
		     "--guest-ip: '10.77.0.2/31' is not ADDR/PREFIX with a prefix of 1..30");
	expect_error((const char *const[]){ "ftd", "run", "--net", "tap=t0", "--guest-ip",
					    "10.77.0.255/24", NULL },
		     "is the network or broadcast address");
	expect_error((const char *const[]){ "ftd", "run", "--guest-ip", "10.77.0.2/24", NULL },
		     "--guest-ip needs --net");
	expect_error((const char *const[]){ "ftd", "run", "--net", "tap=t0", "--guest-ip",
					    "10.77.0.2/24", "--guest-gateway", "10.78.0.1", NULL },
		     "--guest-gateway is not in the subnet of --guest-ip");
	expect_error((const char *const[]){ "ftd", "run", "--net", "tap=t0", "--guest-gateway",
					    "10.77.0.300", NULL },
		     "--guest-gateway: '10.77.0.300' is not an IPv4 address");
	expect_error((const char *const[]){ "ftd", "run", "--output-interval", "50us", NULL },
		     "--output-interval: '50us' is not off or a duration of 100us..60s");
	expect_error((const char *const[]){ "ftd", "run", "--interval", "5ms", "--output-interval",
					    "5ms", NULL },
		     "--output-interval 5ms is not shorter than --interval 5ms");
	expect_error((const char *const[]){ "ftd", "run", "--net-hold-max", "1K", NULL },
		     "--net-hold-max: '1K' is not a size between 64K and 1G");
}

static void test_samples(void **state)
{
	struct samples s = { 0 };

	assert_int_equal(samples_percentile(&s, 50), 0);
	for (uint64_t i = 100; i >= 1; i--)
		assert_int_equal(samples_add(&s, i), 0);
	assert_int_equal(samples_percentile(&s, 50), 50);
	assert_int_equal(samples_percentile(&s, 99), 99);
	assert_int_equal(samples_percentile(&s, 100), 100);
	assert_int_equal(samples_max(&s), 100);
	assert_int_equal(samples_sum(&s), 5050);
	samples_free(&s);
}

static void test_histogram(void **state)
{
	struct histogram *h = calloc(1, sizeof(*h));

	assert_non_null(h);
	assert_int_equal(histogram_percentile(h, 50), 0);
	for (uint64_t i = 1; i <= 100; i++)
		histogram_add(h, i);
	assert_int_equal(histogram_percentile(h, 50), 50); /* exact below 64 */
	assert_int_equal(histogram_percentile(h, 99), 99); /* bucket 98..99 */
	assert_int_equal(histogram_percentile(h, 100), 100);
	memset(h, 0, sizeof(*h));
	for (uint64_t i = 0; i < 1000; i++)
		histogram_add(h, 1000000 + i * 1000); /* 1.000 .. 1.999 s in us */
	assert_in_range(histogram_percentile(h, 50), 1499000, 1499000 * 103 / 100);
	assert_int_equal(histogram_percentile(h, 100), 1999000);
	histogram_add(h, UINT64_MAX); /* the top bucket exists */
	assert_true(histogram_percentile(h, 100) == UINT64_MAX);
	free(h);
}

/* Buckets tile 0..UINT64_MAX with no gap or overlap; each is within ~3% of its lower bound. */
static void test_histogram_buckets(void **state)
{
	uint64_t prev_upper = 0;

	assert_int_equal(histogram_bucket_lower(0), 0);
	for (unsigned int b = 0; b < HIST_BUCKETS_USED; b++) {
		uint64_t lo = histogram_bucket_lower(b), hi = histogram_bucket_upper(b);

		if (b)
			assert_true(lo == prev_upper + 1);
		assert_true(hi >= lo);
		if (b + 1 < HIST_BUCKETS_USED && lo >= 64)
			assert_true((double)(hi - lo) <= (double)lo * 0.032);
		prev_upper = hi;
	}
	assert_true(prev_upper == UINT64_MAX);
}

/* Prometheus text: cumulative buckets in seconds, +Inf = count, labels in every line. */
static void test_histogram_prometheus(void **state)
{
	struct histogram *h = calloc(1, sizeof(*h));
	char *text = NULL;
	size_t len = 0;
	FILE *f;

	assert_non_null(h);
	histogram_add(h, 90);  /* <= 100 us */
	histogram_add(h, 400); /* <= 500 us */
	histogram_add(h, 400);
	histogram_add(h, 3000000); /* 3 s: only +Inf */
	f = open_memstream(&text, &len);
	assert_non_null(f);
	histogram_prometheus(f, "x_seconds", "type=\"flush\"", h);
	histogram_prometheus(f, "y_seconds", "", h);
	fclose(f);
	assert_non_null(strstr(text, "x_seconds_bucket{type=\"flush\",le=\"0.0001\"} 1\n"));
	assert_non_null(strstr(text, "x_seconds_bucket{type=\"flush\",le=\"0.00025\"} 1\n"));
	assert_non_null(strstr(text, "x_seconds_bucket{type=\"flush\",le=\"0.0005\"} 3\n"));
	assert_non_null(strstr(text, "x_seconds_bucket{type=\"flush\",le=\"2.5\"} 3\n"));
	assert_non_null(strstr(text, "x_seconds_bucket{type=\"flush\",le=\"+Inf\"} 4\n"));
	assert_non_null(strstr(text, "x_seconds_sum{type=\"flush\"} 3.000890\n"));
	assert_non_null(strstr(text, "x_seconds_count{type=\"flush\"} 4\n"));
	assert_non_null(strstr(text, "y_seconds_bucket{le=\"0.001\"} 3\n"));
	assert_non_null(strstr(text, "y_seconds_sum 3.000890\ny_seconds_count 4\n"));
	free(text);
	free(h);
}

/* Control requests: every kind parses; bad input is refused with what was wrong. */
static void test_requests(void **state)
{
	static const struct {
		const char *line;
		int kind; /* -1: refused */
		const char *err;
	} cases[] = {
		{ "status", REQ_STATUS, NULL },
		{ "metrics", REQ_METRICS, NULL },
		{ "events", REQ_EVENTS, NULL },
		{ "failover", REQ_FAILOVER, NULL },
		{ "failover --force", REQ_FAILOVER, NULL },
		{ "switchover", REQ_SWITCHOVER, NULL },
		{ "protect --peer 127.0.0.1:7410", REQ_PROTECT, NULL },
		{ "protect --peer [::1]:7410", REQ_PROTECT, NULL },
		{ "set interval 5ms", REQ_SET_INTERVAL, NULL },
		{ "set interval auto", REQ_SET_INTERVAL, NULL },
		{ "frobnicate", -1, "unknown request 'frobnicate'" },
		{ "status ", -1, "unknown request" },
		{ "failover --forc", -1, "unknown request" },
		{ "protect --peer nowhere", -1, "protect --peer: " },
		{ "protect --peer 1.2.3.4:99999", -1, "protect --peer: " },
		{ "set interval 0ms", -1,
		  "interval '0ms' is not auto or a duration between 1ms and 60s" },
		{ "set interval 61s", -1, "between 1ms and 60s" },
		{ "set interval soon", -1, "between 1ms and 60s" },
		{ "stat\tus", -1, "not a line of printable text" },
		{ "", -1, "unknown request ''" },
	};
	struct request req;
	char err[256], longline[600];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int r = request_parse(cases[i].line, strlen(cases[i].line), &req, err, sizeof(err));

		if (cases[i].kind < 0) {
			assert_int_equal(r, -EINVAL);
			assert_non_null(strstr(err, cases[i].err));
		} else {
			assert_int_equal(r, 0);
			assert_int_equal(req.kind, cases[i].kind);
		}
	}
	assert_int_equal(request_parse("failover --force", 16, &req, err, sizeof(err)), 0);
	assert_true(req.force);
	assert_int_equal(request_parse("set interval 5ms", 16, &req, err, sizeof(err)), 0);
	assert_true(req.interval_ns == 5000000ULL);
	assert_false(req.interval_auto);
	assert_int_equal(request_parse("set interval auto", 17, &req, err, sizeof(err)), 0);
	assert_true(req.interval_auto);
	/* An embedded NUL is not printable text; the length, not the NUL, ends the line. */
	assert_int_equal(request_parse("status\0x", 8, &req, err, sizeof(err)), -EINVAL);
	/* Found by fuzz_request: a bracketed host longer than the parser's buffer. */
	memset(longline, ':', 300);
	memcpy(longline, "protect --peer [", 16);
	memcpy(longline + 290, "]:7410", 7);
	assert_int_equal(request_parse(longline, strlen(longline), &req, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "is not HOST:PORT"));
	memset(longline, 'a', sizeof(longline));
	assert_int_equal(request_parse(longline, sizeof(longline), &req, err, sizeof(err)),
			 -EINVAL);
	assert_non_null(strstr(err, "longer than 511 bytes"));
}

struct flusher {
	struct outbuf *ob;
	int fd, r;
};

static void *flush_thread(void *arg)
{
	struct flusher *f = arg;

	f->r = outbuf_flush(f->ob, f->fd);
	return NULL;
}

/* A slow reader: starts after a second, then reads until the end. */
static void *drain_thread(void *arg)
{
	static uint8_t buf[65536];
	int fd = *(int *)arg;

	usleep(1000000);
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	return NULL;
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/*
 * Issue 10: a console sink that blocks (a slow file) must not stall the vCPU
 * that appends output: the owner's write() runs without the buffer's lock.
 */
static void test_outbuf_slow_sink(void **state)
{
	static uint8_t chunk[4096];
	struct outbuf ob;
	struct flusher f = { .ob = &ob };
	pthread_t t, d;
	int p[2], fl;
	uint64_t t0, took;

	memset(chunk, 'x', sizeof(chunk));
	assert_int_equal(outbuf_init(&ob, 1 << 20), 0);
	assert_int_equal(pipe(p), 0);
	/* Fill the pipe, then make it blocking: the next write() waits for a reader. */
	fl = fcntl(p[1], F_GETFL);
	fcntl(p[1], F_SETFL, fl | O_NONBLOCK);
	while (write(p[1], chunk, sizeof(chunk)) > 0)
		;
	fcntl(p[1], F_SETFL, fl);
	for (int i = 0; i < 16; i++)
		outbuf_append(&ob, chunk, sizeof(chunk));
	outbuf_allow(&ob, outbuf_mark(&ob));
	f.fd = p[1];
	assert_int_equal(pthread_create(&t, NULL, flush_thread, &f), 0);
	assert_int_equal(pthread_create(&d, NULL, drain_thread, &p[0]), 0);
	usleep(200000); /* the flusher is blocked in write() now */
	t0 = mono_ms();
	outbuf_append(&ob, chunk, 100); /* a vCPU's output */
	took = mono_ms() - t0;
	pthread_join(t, NULL);
	close(p[1]);
	pthread_join(d, NULL);
	assert_int_equal(f.r, 0);
	if (took > 100)
		fail_msg("outbuf_append waited %llu ms for a blocked console write",
			 (unsigned long long)took);
	outbuf_free(&ob);
	close(p[0]);
}

/* Output commit over two channels (console and, say, packets): one rule for both. */
static void append_n(struct outbuf *ob, size_t n)
{
	static const uint8_t bytes[64];

	outbuf_append(ob, bytes, n);
}

static void test_commit_release_rule(void **state)
{
	struct outbuf con, net, extra[COMMIT_MAX_CHANNELS];
	struct commit c;
	struct commit_mark m1, m2;

	assert_int_equal(outbuf_init(&con, 4096), 0);
	assert_int_equal(outbuf_init(&net, 4096), 0);
	commit_init(&c);
	assert_int_equal(commit_add_channel(&c, &con), 0);
	assert_int_equal(commit_add_channel(&c, &net), 0);

	/* Protected: a checkpoint's output leaves on its ACK, up to its marks only. */
	append_n(&con, 10);
	append_n(&net, 20);
	commit_mark(&c, &m1);
	append_n(&con, 5);
	append_n(&net, 7);
	commit_mark(&c, &m2);
	append_n(&con, 1);
	assert_int_equal(commit_held(&c), 43);
	commit_acked(&c, &m1);
	assert_int_equal(outbuf_allowed(&con), 10);
	assert_int_equal(outbuf_allowed(&net), 20);
	assert_int_equal(commit_held(&c), 13);
	commit_acked(&c, &m2);
	assert_int_equal(commit_held(&c), 1);
	/* An old ACK never takes anything back. */
	commit_acked(&c, &m1);
	assert_int_equal(outbuf_allowed(&con), 15);

	/* Unprotected: everything leaves at once... */
	commit_unprotected(&c);
	assert_int_equal(commit_held(&c), 0);
	/* ...unless the daemon's gate is closed (a cluster, another node may promote)... */
	append_n(&net, 3);
	commit_gate(&c, true, false);
	commit_unprotected(&c);
	assert_int_equal(commit_held(&c), 3);
	commit_gate(&c, true, true);
	commit_unprotected(&c);
	assert_int_equal(commit_held(&c), 0);
	/* ...a lost session closes it until the daemon decides again... */
	append_n(&con, 2);
	commit_session_lost(&c);
	commit_unprotected(&c);
	assert_int_equal(commit_held(&c), 2);
	commit_gate(&c, false, false); /* no cluster: nothing to wait for */
	commit_unprotected(&c);
	assert_int_equal(commit_held(&c), 0);
	/* ...the guest is frozen for want of quorum... */
	append_n(&con, 4);
	commit_freeze(&c, true);
	commit_unprotected(&c);
	assert_int_equal(commit_held(&c), 4);
	commit_freeze(&c, false);
	commit_unprotected(&c);
	assert_int_equal(commit_held(&c), 0);
	/* ...or ftd is stopping: held for good, but an ACK still releases its checkpoint. */
	append_n(&net, 6);
	commit_mark(&c, &m1);
	append_n(&net, 1);
	commit_shutdown(&c);
	commit_unprotected(&c);
	assert_int_equal(commit_held(&c), 7);
	commit_acked(&c, &m1);
	assert_int_equal(commit_held(&c), 1);

	/* A bounded number of channels. */
	for (unsigned int i = 2; i < COMMIT_MAX_CHANNELS; i++)
		assert_int_equal(commit_add_channel(&c, &extra[i]), 0);
	assert_int_equal(commit_add_channel(&c, &extra[0]), -ENOSPC);
	outbuf_free(&con);
	outbuf_free(&net);
}

/*
 * Issue 10: a quorum flap must not resume a guest that a switchover stopped.
 * Once GOODBYE(switchover) is out (ANSWER) the other side may run it; with the
 * final checkpoint captured (ACK) resuming would run past the state handed over.
 */
static void test_thaw_decision(void **state)
{
	struct primary *p = calloc(1, sizeof(*p));
	static const struct {
		enum primary_state st;
		enum primary_handover h;
		bool may;
	} cases[] = {
		{ PRIMARY_PROTECTED, HANDOVER_NONE, true },
		{ PRIMARY_PROTECTED, HANDOVER_CAPTURE, true }, /* still running till captured */
		{ PRIMARY_PROTECTED, HANDOVER_ACK, false },
		{ PRIMARY_PROTECTED, HANDOVER_ANSWER, false },
		{ PRIMARY_PROTECTED, HANDOVER_DONE, false },
		{ PRIMARY_PROTECTED, HANDOVER_UNKNOWN, false },
		{ PRIMARY_SYNCING, HANDOVER_NONE, false },
		{ PRIMARY_UNPROTECTED, HANDOVER_NONE, false },
	};

	assert_non_null(p);
	p->conn = (struct pconn *)p; /* any non-NULL: a session exists */
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		p->state = cases[i].st;
		p->handover = cases[i].h;
		if (primary_may_thaw(p) != cases[i].may)
			fail_msg("case %zu: state %s, handover %d: expected %s", i,
				 primary_state_name(cases[i].st), cases[i].h,
				 cases[i].may ? "thaw" : "stay stopped");
	}
	p->conn = NULL;
	p->state = PRIMARY_PROTECTED;
	p->handover = HANDOVER_NONE;
	assert_false(primary_may_thaw(p));
	free(p);
}

/*
 * failover_decide(): one case per rule of docs/failover.md ("Ways to fail
 * over", "The secondary promotes only when all of these hold", the stale
 * replica). Each case starts from a view that promotes and breaks one input.
 */

/* --cluster, a current replica, quorate, the primary's ftd ended: promote at once. */
static struct failover_view auto_view(void)
{
	return (struct failover_view){
		.cluster = true,
		.sync_complete = true,
		.checkpoint = 42,
		.generation = 3,
		.quorate = true,
		.peer_left = true,
		.peer_nodeid = 2,
		.cluster_wait_ns = 7000000000ULL,
	};
}

/* `ftctl failover` on a current replica whose primary is gone, without a cluster. */
static struct failover_view manual_view(bool force)
{
	return (struct failover_view){
		.manual = true,
		.force = force,
		.sync_complete = true,
		.checkpoint = 42,
		.generation = 3,
	};
}

/* Marks v stale: the primary ran on to generation 5 (2 past the replica's) 12.3 s ago. */
static void make_stale(struct failover_view *v)
{
	v->stale = true;
	v->stale_by = 5;
	v->stale_behind = 2;
	v->stale_for_ns = 12300000000ULL;
}

static struct failover_decision expect_decision(const struct failover_view *v,
						enum failover_action action,
						enum failover_reason why, int error,
						const char *text)
{
	struct failover_decision d = failover_decide(v);

	if (d.action != action || d.why != why || d.error != error ||
	    (text && !strstr(d.text, text)))
		fail_msg("expected action %d, reason %d, error %d, \"%s\"; got %d, %d, %d, \"%s\"",
			 action, why, error, text ? text : "", d.action, d.why, d.error, d.text);
	return d;
}

static void test_failover_auto_needs_cluster(void **state)
{
	struct failover_view v = auto_view();

	/* Without --cluster a dead primary and a partition look the same: never by itself. */
	v.cluster = false;
	assert_true(
		expect_decision(&v, FAILOVER_FREEZE, FAILOVER_WHY_NO_CLUSTER, -EPERM, NULL).quiet);
}

static void test_failover_auto_peer_connected(void **state)
{
	struct failover_view v = auto_view();

	/* Rule 1: no primary connected (quiet: the session is all there is to say). */
	v.peer_connected = true;
	assert_true(expect_decision(&v, FAILOVER_WAIT, FAILOVER_WHY_CONNECTED, -EBUSY, NULL).quiet);
}

static void test_failover_auto_needs_checkpoint(void **state)
{
	struct failover_view v = auto_view();

	/* Rule 1: the replica is a complete checkpoint. */
	v.sync_complete = false;
	assert_true(expect_decision(&v, FAILOVER_WAIT, FAILOVER_WHY_NO_CHECKPOINT, -ENODATA, NULL)
			    .quiet);
}

static void test_failover_auto_needs_quorum(void **state)
{
	struct failover_view v = auto_view();

	/* Rule 2: quorate for the membership just formed (the daemon ANDs in "settled"). */
	v.quorate = false;
	assert_false(expect_decision(&v, FAILOVER_WAIT, FAILOVER_WHY_NOT_QUORATE, -EAGAIN,
				     "this node is not quorate")
			     .quiet);
}

static void test_failover_auto_peer_member(void **state)
{
	struct failover_view v = auto_view();

	/* Rule 3: the primary's ftd has left the group (a hung primary stays in it). */
	v.peers = 1;
	expect_decision(&v, FAILOVER_WAIT, FAILOVER_WHY_PEER_MEMBER, -EBUSY,
			"the primary's ftd is still a cluster member: it may be alive");
}

static void test_failover_auto_no_peer_seen(void **state)
{
	struct failover_view v = auto_view();

	/* Rule 3: ...and was there to leave: an empty group proves nothing. */
	v.peer_left = false;
	expect_decision(&v, FAILOVER_WAIT, FAILOVER_WHY_NO_PEER_SEEN, -EAGAIN,
			"no primary ftd has been seen in the cluster group");
}

static void test_failover_auto_process_ended(void **state)
{
	struct failover_view v = auto_view();
	struct failover_decision d;

	/* Rule 3, PROCDOWN: its node is still a member, so promote at once (no wait). */
	v.peer_left_ago_ns = 0;
	d = expect_decision(&v, FAILOVER_PROMOTE, FAILOVER_WHY_PEER_ENDED, 0,
			    "cluster: the primary's ftd ended");
	assert_false(d.fence_first);
	assert_false(d.quiet);
}

static void test_failover_auto_node_left_waits(void **state)
{
	struct failover_view v = auto_view();

	/* Rule 3, NODEDOWN: only after --cluster-wait, its isolated primary's time to stop. */
	v.peer_node_left = true;
	v.peer_left_ago_ns = v.cluster_wait_ns - 1;
	expect_decision(&v, FAILOVER_WAIT, FAILOVER_WHY_CLUSTER_WAIT, -EAGAIN,
			"node 2 left the membership: giving its primary 7.0 s to stop its guest");
	v.peer_left_ago_ns = v.cluster_wait_ns;
	expect_decision(&v, FAILOVER_PROMOTE, FAILOVER_WHY_NODE_LEFT, 0,
			"cluster: the primary's node left");
}

static void test_failover_auto_node_left_fenced(void **state)
{
	struct failover_view v = auto_view();

	/* Rule 3, NODEDOWN: at once when a fence command confirms the primary is off. */
	v.peer_node_left = true;
	v.peer_left_ago_ns = 1;
	v.fence = FAILOVER_FENCE_PENDING;
	assert_true(
		expect_decision(&v, FAILOVER_PROMOTE, FAILOVER_WHY_NODE_LEFT, 0, NULL).fence_first);
	v.fence = FAILOVER_FENCE_DONE;
	assert_false(
		expect_decision(&v, FAILOVER_PROMOTE, FAILOVER_WHY_NODE_LEFT, 0, NULL).fence_first);
}

static void test_failover_fence_failed(void **state)
{
	struct failover_view v = auto_view();

	/* Rule 4: the fence command, if configured, exited 0; on both paths. */
	v.fence = FAILOVER_FENCE_FAILED;
	v.fence_error = "the fence command failed (exit status 3)";
	expect_decision(&v, FAILOVER_FREEZE, FAILOVER_WHY_FENCE_FAILED, -EHOSTUNREACH,
			"the fence command failed (exit status 3)");
	v = manual_view(true);
	v.fence = FAILOVER_FENCE_PENDING;
	assert_true(
		expect_decision(&v, FAILOVER_PROMOTE, FAILOVER_WHY_OPERATOR, 0, NULL).fence_first);
	v.fence = FAILOVER_FENCE_FAILED;
	v.fence_error = "the fence command did not finish within 60 s";
	expect_decision(&v, FAILOVER_FREEZE, FAILOVER_WHY_FENCE_FAILED, -EHOSTUNREACH,
			"the fence command did not finish within 60 s");
}

static void test_failover_auto_blocked(void **state)
{
	struct failover_view v = auto_view();

	/* A failed automatic promotion stops the trying: an operator decides. */
	v.auto_blocked = true;
	assert_true(expect_decision(&v, FAILOVER_FREEZE, FAILOVER_WHY_BLOCKED, -EPERM, NULL).quiet);
}

static void test_failover_auto_stale(void **state)
{
	struct failover_view v = auto_view();

	/* Generations rule 4: a stale replica is never promoted automatically (test_stale 2). */
	make_stale(&v);
	assert_false(expect_decision(&v, FAILOVER_FREEZE, FAILOVER_WHY_STALE, -ESTALE,
				     "the replica is stale (the primary moved on to generation "
				     "5): an operator decides")
			     .quiet);
}

static void test_failover_auto_promoted(void **state)
{
	struct failover_view v = auto_view();

	v.promoted = true;
	assert_true(
		expect_decision(&v, FAILOVER_FREEZE, FAILOVER_WHY_PROMOTED, -EALREADY, NULL).quiet);
}

static void test_failover_manual(void **state)
{
	struct failover_view v = manual_view(false);

	/* Manual failover, B current: the operator decides, quorum and the group do not count. */
	v.cluster = true;
	v.peers = 1;
	expect_decision(&v, FAILOVER_PROMOTE, FAILOVER_WHY_OPERATOR, 0, "ftctl failover");
}

static void test_failover_manual_peer_connected(void **state)
{
	struct failover_view v = manual_view(false);

	/* Refused while the primary is connected ("it may be alive") unless --force. */
	v.peer_connected = true;
	expect_decision(&v, FAILOVER_FREEZE, FAILOVER_WHY_CONNECTED, -EBUSY,
			"the primary is still connected: it may be alive (use --force to "
			"promote anyway)");
	v.force = true;
	expect_decision(&v, FAILOVER_PROMOTE, FAILOVER_WHY_OPERATOR, 0, "ftctl failover --force");
}

static void test_failover_manual_needs_checkpoint(void **state)
{
	struct failover_view v = manual_view(true);

	/* Refused during the initial sync, even forced: the replica is not a checkpoint yet. */
	v.peer_connected = true;
	v.syncing = true;
	v.sync_complete = false;
	expect_decision(&v, FAILOVER_FREEZE, FAILOVER_WHY_NO_CHECKPOINT, -ENODATA,
			"the initial sync is not complete: the replica holds no checkpoint");
	v.peer_connected = false;
	v.syncing = false;
	expect_decision(&v, FAILOVER_FREEZE, FAILOVER_WHY_NO_CHECKPOINT, -ENODATA,
			"the replica holds no complete checkpoint");
}

static void test_failover_manual_stale(void **state)
{
	struct failover_view v = manual_view(false);
	char rollback[256], refusal[320];

	/* Generations rule 4: refused without --force, naming the rollback (test_stale 3). */
	make_stale(&v);
	failover_rollback_text(&v, rollback, sizeof(rollback));
	assert_string_equal(rollback,
			    "the primary ran on without it for at least 12.3 s (generation 5 "
			    "there, 2 generations ahead of this checkpoint 42 of generation 3): "
			    "promoting it takes the guest back that far, and output released "
			    "since is lost");
	snprintf(refusal, sizeof(refusal),
		 "the replica is stale: %s; use --force to promote it anyway", rollback);
	assert_string_equal(
		expect_decision(&v, FAILOVER_FREEZE, FAILOVER_WHY_STALE, -ESTALE, NULL).text,
		refusal);
	v.force = true;
	expect_decision(&v, FAILOVER_PROMOTE, FAILOVER_WHY_OPERATOR, 0, NULL);
}

static void test_failover_manual_promoted(void **state)
{
	struct failover_view v = manual_view(true);

	v.promoted = true;
	expect_decision(&v, FAILOVER_FREEZE, FAILOVER_WHY_PROMOTED, -EALREADY,
			"already promoted: the guest runs here");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_dirty_set_dedup_and_clear),
		cmocka_unit_test(test_dirty_set_merge),
		cmocka_unit_test(test_ring_collect),
		cmocka_unit_test(test_ring_collect_wraps_and_stops_when_full),
		cmocka_unit_test(test_parse_size),
		cmocka_unit_test(test_parse_duration),
		cmocka_unit_test(test_options_run),
		cmocka_unit_test(test_options_defaults),
		cmocka_unit_test(test_options_errors),
		cmocka_unit_test(test_reload_options),
		cmocka_unit_test(test_corosync_conf),
		cmocka_unit_test(test_options_net),
		cmocka_unit_test(test_commit_release_rule),
		cmocka_unit_test(test_samples),
		cmocka_unit_test(test_histogram),
		cmocka_unit_test(test_histogram_buckets),
		cmocka_unit_test(test_histogram_prometheus),
		cmocka_unit_test(test_requests),
		cmocka_unit_test(test_thaw_decision),
		cmocka_unit_test(test_outbuf_slow_sink),
		cmocka_unit_test(test_failover_auto_needs_cluster),
		cmocka_unit_test(test_failover_auto_peer_connected),
		cmocka_unit_test(test_failover_auto_needs_checkpoint),
		cmocka_unit_test(test_failover_auto_needs_quorum),
		cmocka_unit_test(test_failover_auto_peer_member),
		cmocka_unit_test(test_failover_auto_no_peer_seen),
		cmocka_unit_test(test_failover_auto_process_ended),
		cmocka_unit_test(test_failover_auto_node_left_waits),
		cmocka_unit_test(test_failover_auto_node_left_fenced),
		cmocka_unit_test(test_failover_fence_failed),
		cmocka_unit_test(test_failover_auto_blocked),
		cmocka_unit_test(test_failover_auto_stale),
		cmocka_unit_test(test_failover_auto_promoted),
		cmocka_unit_test(test_failover_manual),
		cmocka_unit_test(test_failover_manual_peer_connected),
		cmocka_unit_test(test_failover_manual_needs_checkpoint),
		cmocka_unit_test(test_failover_manual_stale),
		cmocka_unit_test(test_failover_manual_promoted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
