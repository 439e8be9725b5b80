// SPDX-License-Identifier: MIT
/*
 * ftd's configuration file (--config, ftd.conf(5)) and the option checks it
 * shares with the command line, without a VM: the values each key sets, the
 * command line winning over the file, the [node NAME] sections and how a node
 * finds itself, and every refusal with its text and, for the file, its line.
 * Hostile files too: lines longer than the parser's buffer, indented lines,
 * a directory, section names too long to keep.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon/options.h"
#include "lib/clock.h"

#define ARGS(...) ((const char *const[]){ __VA_ARGS__, NULL })

/* The test's directory (mkdtemp), its configuration vm1.conf and a corosync.conf. */
static char dir[] = "/tmp/ringft-config.XXXXXX";
static char conf[64], corosync[64];

static int setup(void **state)
{
	if (!mkdtemp(dir))
		return -1;
	snprintf(conf, sizeof(conf), "%s/vm1.conf", dir);
	snprintf(corosync, sizeof(corosync), "%s/corosync.conf", dir);
	return 0;
}

static int teardown(void **state)
{
	unlink(conf);
	unlink(corosync);
	return rmdir(dir);
}

static void put_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	assert_int_equal(fputs(text, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static int parse(struct ftd_options *o, char *err, const char *const *args)
{
	char *argv[32];
	int argc = 0;

	while (args[argc]) {
		assert_true(argc < 31);
		argv[argc] = (char *)args[argc];
		argc++;
	}
	argv[argc] = NULL;
	err[0] = '\0';
	return ftd_options_parse(argc, argv, o, err, 256);
}

/* argv: "ftd", args..., "--config", conf with text in it. */
static int __conf(const char *text, const char *const *args, struct ftd_options *o, char *err)
{
	const char *argv[32] = { "ftd" };
	int n = 1;

	put_file(conf, text);
	for (; *args; args++) {
		assert_true(n < 29);
		argv[n++] = *args;
	}
	argv[n++] = "--config";
	argv[n++] = conf;
	argv[n] = NULL;
	return parse(o, err, argv);
}

static void conf_ok(const char *text, const char *const *args, struct ftd_options *o)
{
	char err[256];

	if (__conf(text, args, o, err) != 0)
		fail_msg("refused: %s\n--- file:\n%s", err, text);
}

/* Refused with needle in the message, after "FILE:LINE: " when line > 0. */
static void conf_err(const char *text, const char *const *args, int line, const char *needle)
{
	struct ftd_options *o = calloc(1, sizeof(*o));
	char err[256], want[512];

	assert_non_null(o);
	if (line > 0)
		snprintf(want, sizeof(want), "%s:%d: %s", conf, line, needle);
	else
		snprintf(want, sizeof(want), "%s", needle);
	if (__conf(text, args, o, err) != -EINVAL)
		fail_msg("accepted, expected '%s'\n--- file:\n%s", want, text);
	if (!strstr(err, want))
		fail_msg("error '%s' does not contain '%s'", err, want);
	free(o);
}

static struct ftd_options *new_options(void)
{
	struct ftd_options *o = calloc(1, sizeof(*o));

	assert_non_null(o);
	return o;
}

/* Every kind of value a file holds, with comments, blanks, spaces and CRLF. */
static void test_config_values(void **state)
{
	struct ftd_options *o = new_options();

	conf_ok("\xef\xbb\xbf# a comment\n"
		"; another\n"
		"\n"
		"guest = builtin:kv\n"
		"mem=64M\n"
		"vcpus   =   3  \n"
		"tracking = bitmap\r\n"
		"ring-entries = 256\n"
		"interval = 5ms ; inline comment\n"
		"output-interval = 500us\n"
		"timeout = 1\n"
		"duration = 1m\n"
		"console = /var/log/ftd/vm1.console\n"
		"net = tap=vm1,mac=52:54:00:00:00:01\n"
		"net-hold-max = 1G\n"
		"kv-max-bytes = 64K\n"
		"guest-ip = 10.77.0.2/24\n"
		"guest-gateway = 10.77.0.1\n"
		"verify = yes\n"
		"prealloc = 1\n"
		"quiet = true\n"
		"send-zc = false\n"
		"realtime = no\n"
		"live-harvest = on\n"
		"fence-command = /bin/true\n"
		"fence-timeout = 5s\n"
		"notify-command = logger -t ftd \"$FTD_EVENT\"\n"
		"peer: 127.0.0.1:7000\n",
		ARGS("primary"), o);
	assert_int_equal(o->role, FTD_ROLE_PRIMARY);
	assert_string_equal(o->guest, "builtin:kv");
	assert_int_equal(o->mem_size, 64ULL << 20);
	assert_int_equal(o->vcpus, 3);
	assert_int_equal(o->tracking, DIRTY_BITMAP);
	assert_int_equal(o->ring_entries, 256);
	assert_int_equal(o->interval_ns, 5 * NS_PER_MS);
	assert_int_equal(o->output_interval_ns, 500 * NS_PER_US);
	assert_int_equal(o->timeout_ns, NS_PER_S); /* a bare number is seconds */
	assert_int_equal(o->duration_ns, 60 * NS_PER_S);
	assert_string_equal(o->console, "/var/log/ftd/vm1.console");
	assert_true(o->net.enabled);
	assert_string_equal(o->net.tap, "vm1");
	assert_string_equal(o->net.mac_text, "52:54:00:00:00:01");
	assert_int_equal(o->net.hold_max, 1ULL << 30);
	assert_int_equal(o->gp.kv_max_bytes, 64ULL << 10);
	assert_int_equal(o->gp.net_ip, 0x0a4d0002);
	assert_int_equal(o->gp.net_gateway, 0x0a4d0001);
	assert_true(o->verify);
	assert_true(o->prealloc);
	assert_true(o->quiet);
	assert_false(o->send_zc);
	assert_int_equal(o->realtime, 0);
	assert_int_equal(o->live_harvest, FTD_LIVE_ON);
	assert_string_equal(o->fence_command, "/bin/true");
	assert_int_equal(o->fence_timeout_ns, 5 * NS_PER_S);
	assert_string_equal(o->notify_command, "logger -t ftd \"$FTD_EVENT\"");
	assert_string_equal(o->peer, "127.0.0.1:7000");
	/* The instance is the file's base name: its socket and state directory. */
	assert_string_equal(o->config, conf);
	assert_string_equal(o->name, "vm1");
	assert_string_equal(o->control, "/run/ftd/vm1.sock");
	assert_string_equal(o->state_dir, "/var/lib/ftd/vm1");
	free(o);
}

/* DURATION: a bare number is seconds; ns, us, ms, s, m; nothing else. */
static void test_config_durations(void **state)
{
	static const struct {
		const char *value;
		uint64_t ns;
	} good[] = {
		{ "0", 0 },
		{ "10", 10 * NS_PER_S },
		{ "1500ns", 1500 },
		{ "250us", 250 * NS_PER_US },
		{ "10ms", 10 * NS_PER_MS },
		{ "2s", 2 * NS_PER_S },
		{ "3m", 180 * NS_PER_S },
		{ "007", 7 * NS_PER_S },
		{ "18446744073", 18446744073ULL * NS_PER_S },
		{ "18446744073709551615ns", UINT64_MAX },
	};
	static const char *const bad[] = {
		"",
		"-1",
		"-1s",
		"+5",
		"1.5s",
		"10 ms",
		"10h",
		"ms",
		"0x10",
		"1e3",
		"10S",
		"10msx",
		"18446744074",
		"18446744073709551616ns",
		"99999999999999999999999",
	};
	struct ftd_options *o = new_options();
	char text[256], want[128];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text), "duration = %s\n", good[i].value);
		conf_ok(text, ARGS("run"), o);
		if (o->duration_ns != good[i].ns)
			fail_msg("duration = %s: %llu ns", good[i].value,
				 (unsigned long long)o->duration_ns);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "\nduration = %s\n", bad[i]);
		snprintf(want, sizeof(want), "--duration: '%s' is not a duration (e.g. 30s)",
			 bad[i]);
		conf_err(text, ARGS("run"), 2, want);
	}
	/* Bounds of the options that have them. */
	conf_err("timeout = 99ms\n", ARGS("run"), 1, "--timeout: 99ms is outside 100ms..10m");
	conf_err("timeout = 601\n", ARGS("run"), 1, "--timeout: 601 is outside 100ms..10m");
	conf_ok("timeout = 10m\n", ARGS("run"), o);
	assert_int_equal(o->timeout_ns, 600 * NS_PER_S);
	conf_err("interval = 0\n", ARGS("run"), 1, "--interval: 0 is outside 1ms..60s");
	conf_err("interval = 61\n", ARGS("run"), 1, "--interval: 61 is outside 1ms..60s");
	conf_err("cluster-wait = 3601\n", ARGS("run"), 1,
		 "--cluster-wait: 3601 is more than an hour");
	conf_err("fence-timeout = 18446744073709551615s\n", ARGS("run"), 1,
		 "--fence-timeout: '18446744073709551615s' is not a duration");
	conf_err("output-interval = 99us\n", ARGS("run"), 1,
		 "--output-interval: '99us' is not off or a duration of 100us..60s");
	conf_err("auto-max-hold = 1ms\n", ARGS("run"), 1,
		 "--auto-max-hold: 1ms is outside 2ms..10s");
	free(o);
}

/* SIZE: binary K, M, G, T (optionally B or iB); bounds; overflow. */
static void test_config_sizes(void **state)
{
	static const struct {
		const char *value;
		uint64_t bytes;
	} good[] = {
		{ "64M", 64ULL << 20 },	     { "1G", 1ULL << 30 },     { "1g", 1ULL << 30 },
		{ "1GiB", 1ULL << 30 },	     { "2048MB", 2ULL << 30 }, { "64G", 64ULL << 30 },
		{ "67108864", 64ULL << 20 },
	};
	static const struct {
		const char *value, *err;
	} bad[] = {
		{ "", "--mem: '' is not a size" },
		{ "-1G", "--mem: '-1G' is not a size" },
		{ "1.5G", "--mem: '1.5G' is not a size" },
		{ "1 G", "--mem: '1 G' is not a size" },
		{ "1P", "--mem: '1P' is not a size" },
		{ "1Gb", "--mem: '1Gb' is not a size" },
		{ "1GiBx", "--mem: '1GiBx' is not a size" },
		{ "16777216T", "--mem: '16777216T' is not a size" }, /* 2^64 */
		{ "18446744073709551616", "--mem: '18446744073709551616' is not a size" },
		{ "17179869184G", "--mem: '17179869184G' is not a size" },
		{ "8589934592G", "--mem: 8589934592G is not a multiple of 2M between 64M and 64G" },
		{ "63M", "--mem: 63M is not a multiple of 2M between 64M and 64G" },
		{ "65G", "--mem: 65G is not a multiple of 2M between 64M and 64G" },
		{ "65M", "--mem: 65M is not a multiple of 2M between 64M and 64G" },
		{ "0", "--mem: 0 is not a multiple of 2M between 64M and 64G" },
	};
	struct ftd_options *o = new_options();
	char text[256];

	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		snprintf(text, sizeof(text), "mem = %s\n", good[i].value);
		conf_ok(text, ARGS("run"), o);
		assert_int_equal(o->mem_size, good[i].bytes);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "mem = %s\n", bad[i].value);
		conf_err(text, ARGS("run"), 1, bad[i].err);
	}
	conf_err("net-hold-max = 2G\n", ARGS("run"), 1,
		 "--net-hold-max: '2G' is not a size between 64K and 1G");
	conf_err("kv-max-bytes = 63K\n", ARGS("run"), 1,
		 "--kv-max-bytes: '63K' is not a size of at least 64K");
	conf_err("dirty-wss = 4095\n", ARGS("run"), 1,
		 "--dirty-wss: '4095' is not a size of at least 4K");
	conf_err("vcpus = 9\n", ARGS("run"), 1, "--vcpus: 9 is out of range 1..8");
	conf_err("vcpus = 99999999999999999999\n", ARGS("run"), 1,
		 "--vcpus: 99999999999999999999 is out of range 1..8");
	conf_err("vcpus = -1\n", ARGS("run"), 1, "--vcpus: '-1' is not a number");
	free(o);
}

/* Flags take true/false, yes/no, 1/0; false undoes an earlier true. */
static void test_config_flags(void **state)
{
	static const char *const bad[] = { "", "on", "TRUE", "2", "y", "true false" };
	struct ftd_options *o = new_options();
	char text[128], want[128];

	conf_ok("verify = true\nquiet = 1\nprealloc = yes\nsend-zc = true\ninsecure = true\n",
		ARGS("run"), o);
	assert_true(o->verify && o->quiet && o->prealloc && o->send_zc && o->insecure);
	conf_ok("verify = true\nverify = false\nquiet = yes\nquiet = no\nprealloc = 1\n"
		"prealloc = 0\n",
		ARGS("run"), o);
	assert_false(o->verify || o->quiet || o->prealloc);
	conf_ok("realtime = true\n", ARGS("run"), o);
	assert_int_equal(o->realtime, 1);
	conf_ok("no-realtime = true\n", ARGS("run"), o);
	assert_int_equal(o->realtime, 0);
	conf_ok("quiet = false\n", ARGS("run"), o);
	assert_int_equal(o->realtime, -1); /* the default: auto */
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "quiet = true\nverify = %s\n", bad[i]);
		snprintf(want, sizeof(want), "verify: '%s' is not true or false", bad[i]);
		conf_err(text, ARGS("run"), 2, want);
	}
	free(o);
}

/* The command line wins over the file, whatever the order on the command line. */
static void test_config_command_line_wins(void **state)
{
	struct ftd_options *o = new_options();
	const char *text = "role = primary\npeer = 127.0.0.1:7000\ninterval = 5ms\nmem = 128M\n"
			   "realtime = true\nconsole = /tmp/file.console\n";

	conf_ok(text, ARGS("primary", "--interval", "7ms", "--peer", "127.0.0.1:7001"), o);
	assert_int_equal(o->interval_ns, 7 * NS_PER_MS);
	assert_string_equal(o->peer, "127.0.0.1:7001");
	assert_int_equal(o->mem_size, 128ULL << 20);
	/* --config first on the command line: the options after it still win. */
	{
		char err[256];
		const char *const args[] = { "ftd",  "--config",      conf, "primary", "--mem",
					     "256M", "--no-realtime", NULL };

		/* Not a subcommand in argv[1]: the file's role, then "primary" is unexpected. */
		assert_int_equal(parse(o, err, args), -EINVAL);
		assert_non_null(strstr(err, "unexpected argument 'primary'"));
	}
	conf_ok(text, ARGS("--mem", "256M", "--no-realtime", "--console", "-"), o);
	assert_int_equal(o->role, FTD_ROLE_PRIMARY); /* the file's */
	assert_int_equal(o->mem_size, 256ULL << 20);
	assert_int_equal(o->realtime, 0);
	assert_string_equal(o->console, "-");
	/* The subcommand wins over the file's role. */
	conf_ok("role = primary\nlisten = 127.0.0.1:7000\n", ARGS("secondary"), o);
	assert_int_equal(o->role, FTD_ROLE_SECONDARY);
	/* interval = auto in the file, a duration on the command line, and back. */
	conf_ok("interval = auto\n", ARGS("run", "--interval", "3ms"), o);
	assert_false(o->interval_auto);
	assert_int_equal(o->interval_ns, 3 * NS_PER_MS);
	conf_ok("interval = 3ms\n", ARGS("run", "--interval", "auto"), o);
	assert_true(o->interval_auto);
	/* A key given twice: the last one, as on the command line. */
	conf_ok("mem = 64M\nmem = 128M\n", ARGS("run"), o);
	assert_int_equal(o->mem_size, 128ULL << 20);
	/* --config=FILE and an abbreviated --conf read the file like --config FILE. */
	{
		char err[256], eq[128];
		const char *const args[] = { "ftd", "run", eq, NULL };
		const char *const abbrev[] = { "ftd", "run", "--conf", conf, NULL };

		snprintf(eq, sizeof(eq), "--config=%s", conf);
		put_file(conf, "mem = 96M\n");
		assert_int_equal(parse(o, err, args), 0);
		assert_int_equal(o->mem_size, 96ULL << 20);
		assert_string_equal(o->name, "vm1");
		assert_int_equal(parse(o, err, abbrev), 0);
		assert_int_equal(o->mem_size, 96ULL << 20);
		assert_string_equal(o->config, conf);
		put_file(conf, "bogus = 1\n");
		assert_int_equal(parse(o, err, abbrev), -EINVAL);
		assert_non_null(strstr(err, ":1: unknown key 'bogus'"));
	}
	free(o);
}

/* Keys that are not options, or command line only, and sections that are not [node]. */
static void test_config_unknown(void **state)
{
	static const char *const keys[] = { "bogus",	    "help",    "version", "node",  "config",
					    "check-config", "address", "Mem",	  "--mem", "h" };
	char text[128], want[128];

	for (size_t i = 0; i < sizeof(keys) / sizeof(keys[0]); i++) {
		snprintf(text, sizeof(text), "mem = 64M\n%s = 1\n", keys[i]);
		snprintf(want, sizeof(want), "unknown key '%s'", keys[i]);
		conf_err(text, ARGS("run"), 2, want);
	}
	conf_err("[global]\nmem = 64M\n", ARGS("run"), 2,
		 "unknown section [global] (only [node NAME])");
	conf_err("[node]\naddress = 127.0.0.1:1\n", ARGS("run"), 2,
		 "unknown section [node] (only [node NAME])");
	conf_err("[nodes a]\naddress = 127.0.0.1:1\n", ARGS("run"), 2,
		 "unknown section [nodes a] (only [node NAME])");
	conf_err("role = leader\n", ARGS("run"), 1,
		 "role 'leader' is not auto, run, primary or secondary");
	conf_err("role =\n", ARGS("run"), 1, "role '' is not auto, run, primary or secondary");
	conf_err("mem = 64M\nthis is not a key\n", ARGS("run"), 2, "not a `key = value` line");
	conf_err("[node a\n", ARGS("run"), 1, "not a `key = value` line");
	conf_err("=1\n", ARGS("run"), 1, "unknown key ''");
}

/* An empty value goes through the option's own check. */
static void test_config_empty_values(void **state)
{
	conf_err("console =\n", ARGS("run"), 1, "--console: '' is not a usable path");
	conf_err("interval =\n", ARGS("run"), 1, "--interval: '' is not a duration");
	conf_err("guest =\n", ARGS("run"), 1, "--guest: '' is not a guest (use builtin:NAME)");
	conf_err("fence-command =\n", ARGS("run"), 1,
		 "--fence-command: the command must be 1..511 bytes");
	conf_err("peer =\n", ARGS("primary"), 1, "--peer: '' is not HOST:PORT");
	conf_err("control = \n", ARGS("run"), 1,
		 "--control: '' is not an absolute path of under 108 bytes");
	conf_err("net = \n", ARGS("run"), 1, "--net: '' names no TAP (use tap=NAME)");
	conf_err("disk =\n", ARGS("run"), 1, "--disk: '' is not a path of 1..255 bytes");
	conf_err("cluster =\n", ARGS("run"), 1,
		 "--cluster: '' is not a name of 1..48 letters, digits, _ . -");
}

/* Values longer than the arrays that hold them are refused, never cut. */
static void test_config_long_values(void **state)
{
	struct ftd_options *o = new_options();
	char text[512], v[300], want[400];

	memset(v, 'p', sizeof(v));
	/*
	 * peer: the longest address there is fits; 127 and 128 bytes are no
	 * address at all (numeric hosts only, lib/netaddr.h), refused either way.
	 */
	conf_ok("peer = [ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535\n", ARGS("primary"),
		o);
	assert_string_equal(o->peer, "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535");
	for (unsigned int n = 127; n <= 128; n++) {
		v[n] = '\0';
		snprintf(text, sizeof(text), "peer = %s\n", v);
		snprintf(want, sizeof(want), "--peer: '%s' is not HOST:PORT", v);
		conf_err(text, ARGS("primary"), 1, want);
		v[n] = 'p';
	}
	/* control: 107 bytes fit (sun_path), 108 do not. */
	memset(v, 'c', sizeof(v));
	v[0] = '/';
	v[108] = '\0';
	snprintf(text, sizeof(text), "control = %s\n", v);
	snprintf(want, sizeof(want), "--control: '%s' is not an absolute path of under 108 bytes",
		 v);
	conf_err(text, ARGS("run"), 1, want);
	v[107] = '\0';
	snprintf(text, sizeof(text), "control = %s\n", v);
	conf_ok(text, ARGS("primary", "--peer", "127.0.0.1:1"), o);
	assert_string_equal(o->control, v);
	/* The state directory: under 200 bytes. */
	memset(v, 's', sizeof(v));
	v[0] = '/';
	v[180] = '\0';
	snprintf(text, sizeof(text), "state-dir = %s\n", v);
	conf_ok(text, ARGS("primary", "--peer", "127.0.0.1:1"), o);
	assert_string_equal(o->state_dir, v);
	/* tls-peer: 127 bytes; cluster: 48. */
	memset(v, 't', sizeof(v));
	v[128] = '\0';
	snprintf(text, sizeof(text), "tls-peer = %s\n", v);
	conf_err(text, ARGS("run"), 1, "--tls-peer: the name must be 1..127 bytes");
	v[49] = '\0';
	snprintf(text, sizeof(text), "cluster = %s\n", v);
	snprintf(want, sizeof(want), "--cluster: '%s' is not a name of 1..48", v);
	conf_err(text, ARGS("run"), 1, want);
	v[48] = '\0';
	snprintf(text, sizeof(text), "cluster = %s\n", v);
	put_file(corosync, "totem {\n\tversion: 2\n}\n");
	conf_ok(text, ARGS("primary", "--peer", "127.0.0.1:1", "--corosync-conf", corosync), o);
	assert_string_equal(o->cluster, v);
	free(o);
}

/* Command-line values longer than their arrays (no file line limit there). */
static void test_options_long_values(void **state)
{
	struct ftd_options *o = new_options();
	char err[256], v[1100];

	memset(v, 'k', sizeof(v));
	v[0] = '/';
	v[256] = '\0';
	/* Refused; the message echoes the value, so ftd's 256 bytes cut the reason. */
	assert_int_equal(parse(o, err, ARGS("ftd", "run", "--kernel", v)), -EINVAL);
	assert_int_equal(strncmp(err, "--kernel: '/kkk", 15), 0);
	assert_int_equal(parse(o, err, ARGS("ftd", "run", "--console", v)), -EINVAL);
	assert_int_equal(strncmp(err, "--console: '/kkk", 16), 0);
	assert_int_equal(parse(o, err, ARGS("ftd", "run", "--disk", v)), -EINVAL);
	assert_int_equal(strncmp(err, "--disk: '/kkk", 13), 0);
	assert_int_equal(parse(o, err, ARGS("ftd", "run", "--tls-cert", v)), -EINVAL);
	assert_non_null(strstr(err, "--tls-cert: the path must be 1..255 bytes"));
	assert_int_equal(parse(o, err, ARGS("ftd", "run", "--config", v)), -EINVAL);
	assert_string_equal(err, "--config: a path of over 255 bytes");
	v[255] = '\0';
	assert_int_equal(parse(o, err, ARGS("ftd", "run", "--console", v)), 0);
	assert_int_equal(strlen(o->console), 255);
	v[200] = '\0';
	assert_int_equal(parse(o, err, ARGS("ftd", "run", "--state-dir", v)), -EINVAL);
	assert_int_equal(strncmp(err, "--state-dir: '/kkk", 18), 0);
	assert_int_equal(parse(o, err, ARGS("ftd", "run", "--corosync-conf", v)), -EINVAL);
	assert_int_equal(strncmp(err, "--corosync-conf: '/kkk", 22), 0);
	v[150] = '\0';
	assert_int_equal(parse(o, err, ARGS("ftd", "run", "--state-dir", v + 1)), -EINVAL);
	assert_non_null(strstr(err, "' is not an absolute path of under 200 bytes"));
	v[1024] = '\0';
	memset(v, 'x', 1024);
	assert_int_equal(parse(o, err, ARGS("ftd", "run", "--cmdline", v)), -EINVAL);
	assert_string_equal(err, "--cmdline: longer than 1023 bytes");
	v[512] = '\0';
	assert_int_equal(parse(o, err, ARGS("ftd", "run", "--notify-command", v)), -EINVAL);
	assert_string_equal(err, "--notify-command: the command must be 1..511 bytes");
	v[64] = '\0';
	assert_int_equal(parse(o, err, ARGS("ftd", "run", "--node", v)), -EINVAL);
	assert_non_null(strstr(err, "is not a name of 1..63 bytes"));
	assert_int_equal(parse(o, err,
			       ARGS("ftd", "run", "--guest",
				    "builtin:"
				    "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx")),
			 -EINVAL);
	assert_non_null(strstr(err, "is not a guest (use builtin:NAME)"));
	free(o);
}

/*
 * Lines longer than the parser's buffer (199 bytes) are refused with their
 * line, never read as two lines or cut (a tail that reads as a comment would
 * vanish, one that reads as a key would be applied).
 */
static void test_config_long_lines(void **state)
{
	struct ftd_options *o = new_options();
	char text[1024], v[600];

	/* 199 bytes: the longest line. */
	memset(v, 'a', sizeof(v));
	v[0] = '/';
	v[199 - strlen("console = ")] = '\0';
	snprintf(text, sizeof(text), "# c\nconsole = %s\nquiet = true\n", v);
	conf_ok(text, ARGS("run"), o);
	assert_int_equal(strlen(o->console), 189);
	assert_true(o->quiet);
	v[199 - strlen("console = ")] = 'a';
	/* 200 bytes, 201, and 500: refused on their own line. */
	for (size_t len = 200; len <= 500; len += len == 201 ? 299 : 1) {
		v[len - strlen("console = ")] = '\0';
		snprintf(text, sizeof(text), "# c\nconsole = %s\nquiet = true\n", v);
		conf_err(text, ARGS("run"), 2, "a line longer than 199 bytes");
		v[len - strlen("console = ")] = 'a';
	}
	/* The tail past byte 199 reads as a comment: the path would be cut silently. */
	memset(v, 'b', sizeof(v));
	v[0] = '/';
	v[199 - strlen("console = ")] = '\0';
	snprintf(text, sizeof(text), "console = %s#tail\n", v);
	conf_err(text, ARGS("run"), 1, "a line longer than 199 bytes");
	/* ... or as a key: a fence command cut, its tail applied as verify = true. */
	memset(v, 'f', sizeof(v));
	v[199 - strlen("fence-command = ")] = '\0';
	snprintf(text, sizeof(text), "fence-command = %sverify=true\n", v);
	conf_err(text, ARGS("run"), 1, "a line longer than 199 bytes");
	/* A last line without a newline, 199 and 200 bytes. */
	memset(v, 'e', sizeof(v));
	v[0] = '/';
	v[199 - strlen("console = ")] = '\0';
	snprintf(text, sizeof(text), "quiet = true\nconsole = %s", v);
	conf_ok(text, ARGS("run"), o);
	assert_string_equal(o->console, v);
	v[199 - strlen("console = ")] = 'e';
	v[200 - strlen("console = ")] = '\0';
	snprintf(text, sizeof(text), "quiet = true\nconsole = %s", v);
	conf_err(text, ARGS("run"), 2, "a line longer than 199 bytes");
	/* A long comment is only a comment, whatever its tail holds. */
	memset(v, 'x', sizeof(v));
	v[300] = '\0';
	memcpy(v + 250, "verify=true", 11);
	snprintf(text, sizeof(text), "# %s\n  ; %s\nquiet = true\n", v, v);
	conf_ok(text, ARGS("run"), o);
	assert_false(o->verify);
	assert_true(o->quiet);
	free(o);
}

/* An indented line would continue the previous key's value (inih): refused. */
static void test_config_continuation(void **state)
{
	struct ftd_options *o = new_options();

	conf_err("console = /var/log/a\n  timeout = 5s\n", ARGS("run"), 2,
		 "an indented line continues the value of 'console'");
	conf_err("quiet = true\n# c\n\n\tfalse\n", ARGS("run"), 4,
		 "an indented line continues the value of 'quiet'");
	conf_err("[node a]\naddress = 127.0.0.1:1\n  127.0.0.1:2\n[node b]\naddress = "
		 "127.0.0.1:3\n",
		 ARGS("--node", "a"), 3, "an indented line continues the value of 'address'");
	/* Indented keys after a section header, comments and blank lines: fine. */
	conf_ok("  # indented comment\n   \n[node a]\n    address = 127.0.0.1:1\n[node b]\n"
		"\taddress = 127.0.0.1:2\n",
		ARGS("--node", "a"), o);
	assert_string_equal(o->nodes[0].address, "127.0.0.1:1");
	assert_string_equal(o->nodes[1].address, "127.0.0.1:2");
	free(o);
}

/* The file itself: missing, a directory, unreadable lines, errors in order. */
static void test_config_file_errors(void **state)
{
	struct ftd_options *o = new_options();
	char err[256], want[256], path[128];

	snprintf(path, sizeof(path), "%s/missing.conf", dir);
	assert_int_equal(parse(o, err, ARGS("ftd", "run", "--config", path)), -EINVAL);
	snprintf(want, sizeof(want), "%s: cannot open: No such file or directory", path);
	assert_string_equal(err, want);
	assert_int_equal(parse(o, err, ARGS("ftd", "run", "--config", "")), -EINVAL);
	assert_string_equal(err, ": cannot open: No such file or directory");
	/* A directory is not an empty configuration. */
	assert_int_equal(parse(o, err, ARGS("ftd", "run", "--config", dir)), -EINVAL);
	snprintf(want, sizeof(want), "%s: cannot read: Is a directory", dir);
	assert_string_equal(err, want);
	/* /dev/null is an empty one. */
	assert_int_equal(parse(o, err, ARGS("ftd", "run", "--config", "/dev/null")), 0);
	assert_string_equal(o->name, "null");
	/* The first error wins, with its own line. */
	conf_err("mem = 64M\nnot a key\nbogus = 1\n", ARGS("run"), 2, "not a `key = value` line");
	conf_err("mem = 64M\nbogus = 1\nnot a key\n", ARGS("run"), 2, "unknown key 'bogus'");
	conf_err("bogus = 1\nvcpus = 99\n", ARGS("run"), 1, "unknown key 'bogus'");
	/* A NUL byte would end the line for the parser, the rest unseen: refused. */
	{
		FILE *f = fopen(conf, "w");

		assert_non_null(f);
		assert_int_equal(
			fwrite("vcpus = 1\nfence-command = /bin/fence\0 --force\n", 1, 45, f), 45);
		assert_int_equal(fclose(f), 0);
		assert_int_equal(parse(o, err, ARGS("ftd", "run", "--config", conf)), -EINVAL);
		snprintf(want, sizeof(want), "%s:2: a NUL byte in the line", conf);
		assert_string_equal(err, want);
	}
	/* The instance's name comes from the base name; too long a name is refused. */
	{
		char longname[400];

		memset(want, 'n', 64);
		want[64] = '\0';
		snprintf(longname, sizeof(longname), "%s/%s.conf", dir, want);
		put_file(longname, "mem = 64M\n");
		assert_int_equal(parse(o, err, ARGS("ftd", "run", "--config", longname)), -EINVAL);
		assert_non_null(strstr(
			err,
			"--config: an instance name (the file's base name without .conf) of over "
			"63 bytes: "));
		unlink(longname);
		want[63] = '\0';
		snprintf(longname, sizeof(longname), "%s/%s.conf", dir, want);
		put_file(longname, "mem = 64M\n");
		assert_int_equal(
			parse(o, err,
			      ARGS("ftd", "primary", "--peer", "1.2.3.4:5", "--config", longname)),
			0);
		assert_string_equal(o->name, want);
		unlink(longname);
	}
	free(o);
}

/* [node NAME]: both, this one by --node, role auto's listen and peer. */
static void test_config_nodes(void **state)
{
	struct ftd_options *o = new_options();
	const char *two = "guest = builtin:kv\n[node host-a]\naddress = 192.0.2.1:7410\n"
			  "[node host-b]\naddress = 192.0.2.2:7410\n";

	conf_ok(two, ARGS("--node", "host-a"), o);
	assert_int_equal(o->role, FTD_ROLE_AUTO);
	assert_int_equal(o->nr_nodes, 2);
	assert_string_equal(o->nodes[0].name, "host-a");
	assert_string_equal(o->nodes[1].name, "host-b");
	assert_string_equal(o->node, "host-a");
	assert_string_equal(o->listen, "192.0.2.1:7410");
	assert_string_equal(o->peer, "192.0.2.2:7410");
	assert_string_equal(o->auto_peer, "192.0.2.2:7410");
	assert_string_equal(o->control, "/run/ftd/vm1.sock");
	conf_ok(two, ARGS("--node", "host-b"), o);
	assert_string_equal(o->listen, "192.0.2.2:7410");
	assert_string_equal(o->peer, "192.0.2.1:7410");
	assert_string_equal(o->auto_peer, "192.0.2.1:7410");
	/* Explicit roles take one of them as a default. */
	conf_ok(two, ARGS("secondary", "--node", "host-a"), o);
	assert_int_equal(o->role, FTD_ROLE_SECONDARY);
	assert_string_equal(o->listen, "192.0.2.1:7410");
	assert_string_equal(o->peer, "");
	conf_ok(two, ARGS("primary", "--node", "host-a"), o);
	assert_string_equal(o->peer, "192.0.2.2:7410");
	assert_string_equal(o->listen, "");
	conf_ok(two, ARGS("primary", "--node", "host-a", "--peer", "127.0.0.1:9"), o);
	assert_string_equal(o->peer, "127.0.0.1:9");
	conf_ok(two, ARGS("--node", "host-a", "--listen", "127.0.0.1:9"), o);
	assert_string_equal(o->listen, "127.0.0.1:9");
	assert_string_equal(o->auto_peer, "192.0.2.2:7410");
	/* role in the file, and the same node section twice (its address replaced). */
	conf_ok("role = secondary\n[node a]\naddress = 127.0.0.1:1\n[node b]\naddress = "
		"127.0.0.1:2\n[node a]\naddress = 127.0.0.1:3\n",
		ARGS("--node", "a"), o);
	assert_int_equal(o->role, FTD_ROLE_SECONDARY);
	assert_int_equal(o->nr_nodes, 2);
	assert_string_equal(o->listen, "127.0.0.1:3");
	/* [IPv6]:PORT and names with dots. */
	conf_ok("[node a.example.org]\naddress = [2001:db8::1]:7410\n[node b.example.org]\n"
		"address = [2001:db8::2]:7410\n",
		ARGS("--node", "b.example.org"), o);
	assert_string_equal(o->listen, "[2001:db8::2]:7410");
	assert_string_equal(o->peer, "[2001:db8::1]:7410");
	free(o);
}

/* Without --node, the node named as this host (its full name or first label). */
static void test_config_nodes_hostname(void **state)
{
	struct ftd_options *o = new_options();
	char host[256] = "", label[256], text[1024], want[512];

	assert_int_equal(gethostname(host, sizeof(host) - 1), 0);
	if (strlen(host) > 40 || strpbrk(host, " \t/"))
		skip(); /* not a name a section could hold */
	snprintf(text, sizeof(text),
		 "[node ringft-other-x]\naddress = 127.0.0.1:2\n[node %s]\naddress = "
		 "127.0.0.1:1\n",
		 host);
	conf_ok(text, ARGS("auto"), o);
	assert_string_equal(o->node, host);
	assert_string_equal(o->listen, "127.0.0.1:1");
	assert_string_equal(o->peer, "127.0.0.1:2");
	snprintf(label, sizeof(label), "%.*s", (int)strcspn(host, "."), host);
	if (strcmp(label, host)) {
		snprintf(text, sizeof(text),
			 "[node %s]\naddress = 127.0.0.1:1\n[node ringft-other-x]\naddress = "
			 "127.0.0.1:2\n",
			 label);
		conf_ok(text, ARGS("auto"), o);
		assert_string_equal(o->node, label);
		/* Both the full name and its label: ambiguous. */
		snprintf(text, sizeof(text),
			 "[node %s]\naddress = 127.0.0.1:1\n[node %s]\naddress = 127.0.0.1:2\n",
			 label, host);
		snprintf(want, sizeof(want), "this host '%s' matches both [node %s] and [node %s]",
			 host, label, host);
		conf_err(text, ARGS("auto"), 0, want);
	}
	/* A host that is none of them. */
	snprintf(want, sizeof(want),
		 "this host '%s' is none of the nodes (ringft-no-1, ringft-no-2): give --node NAME",
		 host);
	conf_err("[node ringft-no-1]\naddress = 127.0.0.1:1\n[node ringft-no-2]\naddress = "
		 "127.0.0.1:2\n",
		 ARGS("auto"), 0, want);
	free(o);
}

/* Every [node] refusal, with its reason. */
static void test_config_node_errors(void **state)
{
	char text[512], name[80];

	conf_err("[node a]\naddress = 127.0.0.1:1\n", ARGS("--node", "a"), 0,
		 "[node a] is the only node: a guest is protected by two");
	conf_err("[node a]\naddress = 127.0.0.1:1\n[node b]\naddress = 127.0.0.1:2\n[node c]\n"
		 "address = 127.0.0.1:3\n",
		 ARGS("--node", "a"), 6,
		 "[node c]: a third node (a guest is protected by two: a and b)");
	/* A section without keys is still a node. */
	conf_err("[node a]\naddress = 127.0.0.1:1\n[node b]\n[node c]\naddress = 127.0.0.1:3\n",
		 ARGS("--node", "a"), 5,
		 "[node c]: a third node (a guest is protected by two: a and b)");
	conf_err("[node a]\naddress = 127.0.0.1:1\n[node b]\naddress = 127.0.0.1:2\n# c\n"
		 "[node c]\n\n",
		 ARGS("--node", "a"), 6,
		 "[node c]: a third node (a guest is protected by two: a and b)");
	conf_err("[node a]\naddress = 127.0.0.1:1\n[node b]\n[node c]\n[node a]\n",
		 ARGS("--node", "a"), 4,
		 "[node c]: a third node (a guest is protected by two: a and b)");
	conf_err("[node a]\naddress = 127.0.0.1:1\n[node b]\n", ARGS("--node", "a"), 0,
		 "[node b] has no address (HOST:PORT)");
	conf_err("[node a]\n[node b]\n", ARGS("--node", "a"), 0,
		 "[node a] has no address (HOST:PORT)");
	conf_err("[node a]\naddress = 127.0.0.1:1\nrole = auto\n", ARGS("--node", "a"), 3,
		 "[node a]: unknown key 'role' (a node has an address)");
	conf_err("[node a]\nadress = 127.0.0.1:1\n", ARGS("--node", "a"), 2,
		 "[node a]: unknown key 'adress' (a node has an address)");
	conf_err("[node a]\naddress = 127.0.0.1\n", ARGS("--node", "a"), 2,
		 "[node a]: address '127.0.0.1' is not HOST:PORT");
	conf_err("[node a]\naddress =\n", ARGS("--node", "a"), 2,
		 "[node a]: address '' is not HOST:PORT");
	memset(name, '1', sizeof(name));
	name[0] = ':';
	name[78] = '\0';
	snprintf(text, sizeof(text), "[node a]\naddress = %s%s\n", name, name);
	conf_err(text, ARGS("--node", "a"), 2, "[node a]: address ':1111111111");
	conf_err("[node a b]\naddress = 127.0.0.1:1\n", ARGS("--node", "a"), 1,
		 "[node a b]: not a node name (1..44 bytes, no spaces)");
	conf_err("[node  a]\naddress = 127.0.0.1:1\n", ARGS("--node", "a"), 1,
		 "[node  a]: not a node name (1..44 bytes, no spaces)");
	conf_err("[node ]\naddress = 127.0.0.1:1\n", ARGS("--node", "a"), 1,
		 "[node ]: not a node name (1..44 bytes, no spaces)");
	conf_err("[node a/b]\naddress = 127.0.0.1:1\n", ARGS("--node", "a"), 1,
		 "[node a/b]: not a node name");
	/* Names the parser would cut (its sections hold 49 bytes): refused, never merged. */
	memset(name, 'n', sizeof(name));
	name[44] = '\0';
	snprintf(text, sizeof(text),
		 "[node %sa]\naddress = 127.0.0.1:1\n[node %sb]\naddress = "
		 "127.0.0.1:2\n",
		 name, name);
	{
		char want[128];

		snprintf(want, sizeof(want), "[node %sa]: not a node name (1..44 bytes, no spaces)",
			 name);
		conf_err(text, ARGS("--node", "a"), 1, want);
	}
	snprintf(text, sizeof(text),
		 "[node %s]\naddress = 127.0.0.1:1\n[node b]\naddress = "
		 "127.0.0.1:2\n",
		 name);
	{
		struct ftd_options *o = new_options();

		conf_ok(text, ARGS("--node", name), o);
		assert_string_equal(o->node, name);
		free(o);
	}
	conf_err("[node a]\naddress = 127.0.0.1:1\n[node b]\naddress = 127.0.0.1:1\n",
		 ARGS("--node", "a"), 0, "[node a] and [node b] have the same address 127.0.0.1:1");
	conf_err("[node a]\naddress = 127.0.0.1:1\n[node b]\naddress = 127.0.0.1:2\n",
		 ARGS("--node", "c"), 0, "--node c is none of the nodes (a, b)");
	conf_err("mem = 64M\n", ARGS("run", "--node", "a"), 0,
		 "--node a: the configuration names no [node] sections");
	conf_err("role = auto\n", ARGS(NULL), 0,
		 "role auto needs the two nodes: a [node NAME] section with an address for each");
	conf_err("mem = 64M\n", ARGS(NULL), 0, "no command given");
	conf_err("[node a]\naddress = 127.0.0.1:1\n[node b]\naddress = 127.0.0.1:2\n",
		 ARGS("--node", ""), 0, "--node: '' is not a name of 1..63 bytes");
}

/* With --cluster: --timeout at most --cluster-wait, which corosync's timeouts bound. */
static void test_config_cluster_wait(void **state)
{
	struct ftd_options *o = new_options();
	char text[512];

	put_file(corosync, "totem {\n\ttoken: 3000\n}\n");
	snprintf(text, sizeof(text),
		 "cluster = vm1\ncorosync-conf = %s\ntimeout = 5s\ncluster-wait = 4\n"
		 "[node a]\naddress = 127.0.0.1:1\n[node b]\naddress = 127.0.0.1:2\n",
		 corosync);
	conf_err(text, ARGS("--node", "a"), 0,
		 "--timeout 5s is longer than --cluster-wait 4s: with --cluster the primary must "
		 "drop a silent peer before that peer may promote");
	/* The command line fixes it either way. */
	conf_ok(text, ARGS("--node", "a", "--timeout", "4s"), o);
	assert_int_equal(o->timeout_ns, 4 * NS_PER_S);
	assert_int_equal(o->cluster_wait_ns, 4 * NS_PER_S);
	assert_string_equal(o->cluster, "vm1");
	conf_ok(text, ARGS("--node", "a", "--cluster-wait", "5000ms"), o);
	assert_int_equal(o->cluster_wait_ns, 5 * NS_PER_S);
	/* Below corosync's token timeout. */
	conf_err(text, ARGS("--node", "a", "--timeout", "1s", "--cluster-wait", "2"), 0,
		 "--cluster-wait 2s is shorter than corosync's token timeout (3000 ms)");
	put_file(corosync, "totem {\ntoken: 1000\n}\nquorum {\ndevice {\nmodel: net\n"
			   "timeout: 3000\nsync_timeout: 6000\n}\n}\n");
	conf_err(text, ARGS("--node", "a", "--timeout", "1s", "--cluster-wait", "6s"), 0,
		 "--cluster-wait 6s is shorter than corosync's token timeout (1000 ms) plus the "
		 "qdevice's sync_timeout (6000 ms)");
	conf_ok(text, ARGS("--node", "a", "--timeout", "1s", "--cluster-wait", "7"), o);
	/* Without --cluster the two are independent. */
	conf_ok("timeout = 10m\ncluster-wait = 0\n", ARGS("primary", "--peer", "127.0.0.1:1"), o);
	assert_int_equal(o->cluster_wait_ns, 0);
	/* A corosync.conf that cannot be read. */
	unlink(corosync);
	conf_err(text, ARGS("--node", "a", "--timeout", "1s"), 0,
		 "--cluster: cannot read corosync's configuration");
	free(o);
}

/*
 * Addresses are checked when read, as ftd will use them (numeric hosts:
 * IPv4, [IPv6], localhost), so --check-config finds what only the start
 * would have; two nodes at one address are found whatever its spelling.
 */
static void test_config_addresses(void **state)
{
	static const char *const bad[] = { "nowhere",	  ":7410",
					   "a b:1",	  "127.0.0.1",
					   "127.0.0.1:0", "127.0.0.1:65536",
					   "[::1:1",	  "host-a.example.org:7410" };
	struct ftd_options *o = new_options();
	char text[256], want[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(want, sizeof(want), "--peer: '%s' is not HOST:PORT (an IPv4 address",
			 bad[i]);
		conf_err("", ARGS("primary", "--peer", bad[i]), 0, want);
		snprintf(text, sizeof(text), "listen = %s\n", bad[i]);
		snprintf(want, sizeof(want), "--listen: '%s' is not HOST:PORT", bad[i]);
		conf_err(text, ARGS("secondary"), 1, want);
		snprintf(want, sizeof(want), "--metrics-listen: '%s' is not HOST:PORT", bad[i]);
		conf_err("",
			 ARGS("secondary", "--listen", "127.0.0.1:1", "--metrics-listen", bad[i]),
			 0, want);
		snprintf(text, sizeof(text),
			 "[node a]\naddress = %s\n[node b]\naddress = 127.0.0.1:2\n", bad[i]);
		snprintf(want, sizeof(want), "[node a]: address '%s' is not HOST:PORT", bad[i]);
		conf_err(text, ARGS("--node", "b"), 2, want);
	}
	conf_ok("", ARGS("primary", "--peer", "localhost:7410"), o);
	conf_ok("", ARGS("secondary", "--listen", "[::]:7410", "--metrics-listen", "0.0.0.0:9410"),
		o);
	conf_err("[node a]\naddress = [::1]:7410\n[node b]\naddress = [0:0::1]:7410\n",
		 ARGS("--node", "a"), 0, "[node a] and [node b] have the same address [::1]:7410");
	conf_err("[node a]\naddress = localhost:7410\n[node b]\naddress = 127.0.0.1:7410\n",
		 ARGS("--node", "b"), 0,
		 "[node b] and [node a] have the same address 127.0.0.1:7410");
	conf_ok("[node a]\naddress = 127.0.0.1:7410\n[node b]\naddress = 127.0.0.1:7411\n",
		ARGS("--node", "a"), o);
	free(o);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_config_values),
		cmocka_unit_test(test_config_durations),
		cmocka_unit_test(test_config_sizes),
		cmocka_unit_test(test_config_flags),
		cmocka_unit_test(test_config_command_line_wins),
		cmocka_unit_test(test_config_unknown),
		cmocka_unit_test(test_config_empty_values),
		cmocka_unit_test(test_config_long_values),
		cmocka_unit_test(test_options_long_values),
		cmocka_unit_test(test_config_long_lines),
		cmocka_unit_test(test_config_continuation),
		cmocka_unit_test(test_config_file_errors),
		cmocka_unit_test(test_config_nodes),
		cmocka_unit_test(test_config_nodes_hostname),
		cmocka_unit_test(test_config_node_errors),
		cmocka_unit_test(test_config_addresses),
		cmocka_unit_test(test_config_cluster_wait),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
