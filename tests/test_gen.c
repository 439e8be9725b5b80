// SPDX-License-Identifier: MIT
/*
 * Guest identity and data generations: the pure rules (proto/generation.c),
 * HELLO carrying them, the on-disk form and its atomic store.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <linux/capability.h>
#include <signal.h>
#include <unistd.h>
#include <cmocka.h>

#include "daemon/genstore.h"
#include "daemon/request.h"
#include "proto/generation.h"
#include "proto/session.h"

static const uint8_t UUID_X[GEN_UUID_SIZE] = {
	1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16
};
static const uint8_t UUID_Y[GEN_UUID_SIZE] = {
	0xff, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
};

static void test_new_and_bump(void **state)
{
	struct gen_state g;

	(void)state;
	gen_clear(&g);
	assert_false(gen_has_guest(&g));
	gen_new_guest(&g, UUID_X, 0x11);
	assert_true(gen_has_guest(&g));
	assert_int_equal(g.cur.number, 1);
	assert_int_equal(g.uuid[6] >> 4, 4); /* RFC 4122 version 4 */
	assert_int_equal(g.uuid[8] >> 6, 2);
	gen_bump(&g, 0x22);
	gen_bump(&g, 0x33);
	assert_int_equal(g.cur.number, 3);
	assert_int_equal(g.cur.tag, 0x33);
	assert_int_equal(g.nr_history, 2);
	assert_int_equal(g.history[0].number, 2); /* newest first */
	assert_int_equal(g.history[1].tag, 0x11);
	for (int i = 0; i < 40; i++)
		gen_bump(&g, 0x100 + (uint64_t)i);
	assert_int_equal(g.nr_history, GEN_HISTORY_MAX);
	assert_int_equal(g.cur.number, 43);
	assert_int_equal(g.history[0].number, 42);
	assert_int_equal(g.history[GEN_HISTORY_MAX - 1].number, 43 - GEN_HISTORY_MAX);
}

/*
 * The story the rules are for: X at generation 1 on primary A and its
 * secondary B; then A runs unprotected (A: 2a) while B is promoted on its own
 * (B: 2b): diverged. C, synced by A at 2a, is older than A after A's next bump.
 */
static void test_compare(void **state)
{
	struct gen_state a, b, c, y, none;

	(void)state;
	gen_clear(&none);
	gen_new_guest(&a, UUID_X, 0x11);
	b = a;
	gen_new_guest(&y, UUID_Y, 0x11);
	assert_int_equal(gen_compare(&a, &b), GEN_SAME);
	assert_int_equal(gen_compare(&a, &none), GEN_EMPTY);
	assert_int_equal(gen_compare(&none, &a), GEN_EMPTY);
	assert_int_equal(gen_compare(&a, &y), GEN_OTHER_GUEST);
	gen_bump(&a, 0x2a);
	assert_int_equal(gen_compare(&b, &a), GEN_LOCAL_OLDER);
	assert_int_equal(gen_compare(&a, &b), GEN_REMOTE_OLDER);
	assert_int_equal(gen_behind(&b, &a), 1);
	assert_int_equal(gen_behind(&a, &b), 0);
	c = a;
	gen_bump(&a, 0x3a);
	gen_bump(&a, 0x4a);
	assert_int_equal(gen_behind(&c, &a), 2);
	gen_bump(&b, 0x2b); /* same number as a's 2, another tag */
	assert_int_equal(gen_compare(&a, &b), GEN_DIVERGED);
	assert_int_equal(gen_compare(&b, &c), GEN_DIVERGED);
	assert_string_equal(gen_relation_name(GEN_DIVERGED), "diverged");
}

/* The secondary's table (docs/failover.md, "The rules"). */
static void test_secondary_verdict(void **state)
{
	struct gen_state x1, x2, x2b, y1, none;
	static const struct {
		const char *what;
		int local, remote; /* 0 none, 1 x1, 2 x2, 3 x2b, 4 y1 */
		bool holds;
		enum gen_verdict want;
	} cases[] = {
		{ "nothing held: anything", 0, 4, false, GEN_ACCEPT },
		{ "a copy that does not count (discarded, released)", 1, 4, false, GEN_ACCEPT },
		{ "same generation (a reconnect)", 1, 1, true, GEN_ACCEPT },
		{ "the primary moved past the copy (stale): re-sync", 1, 2, true, GEN_ACCEPT },
		{ "another guest (a restarted old primary booted anew)", 1, 4, true,
		  GEN_REFUSE_GUEST },
		{ "a primary without identity", 1, 0, true, GEN_REFUSE_GUEST },
		{ "an older generation of the guest", 2, 1, true, GEN_REFUSE_OLDER },
		{ "diverged (both ran on their own)", 2, 3, true, GEN_REFUSE_DIVERGED },
		{ "empty state, counted copy (protocol tools)", 0, 1, true, GEN_ACCEPT },
	};
	const struct gen_state *g[5];

	(void)state;
	gen_clear(&none);
	gen_new_guest(&x1, UUID_X, 0x11);
	x2 = x1;
	gen_bump(&x2, 0x22);
	x2b = x1;
	gen_bump(&x2b, 0x2b);
	gen_new_guest(&y1, UUID_Y, 0x11);
	g[0] = &none, g[1] = &x1, g[2] = &x2, g[3] = &x2b, g[4] = &y1;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		enum gen_verdict v = gen_secondary_verdict(g[cases[i].local], cases[i].holds,
							   g[cases[i].remote]);

		if (v != cases[i].want)
			fail_msg("%s: verdict %d, want %d", cases[i].what, v, cases[i].want);
	}
	assert_string_equal(gen_verdict_reason(GEN_REFUSE_GUEST),
			    "the secondary holds a checkpoint of another guest");
}

static void test_text(void **state)
{
	struct gen_state g, back;
	char buf[2048], u[GEN_UUID_TEXT];
	uint8_t uu[GEN_UUID_SIZE];
	int n;

	(void)state;
	gen_new_guest(&g, UUID_X, 0xabcdef);
	gen_bump(&g, 0x1234567890abcdefULL);
	gen_uuid_format(g.uuid, u);
	assert_string_equal(u, "01020304-0506-4708-890a-0b0c0d0e0f10");
	assert_int_equal(gen_uuid_parse(u, uu), 0);
	assert_memory_equal(uu, g.uuid, GEN_UUID_SIZE);
	assert_int_equal(gen_uuid_parse("01020304-0506-4708-890a-0b0c0d0e0f1", uu), -EINVAL);
	assert_int_equal(gen_uuid_parse("01020304-0506-4708-890a-0b0c0d0e0f1g", uu), -EINVAL);
	n = gen_serialize(&g, buf, sizeof(buf));
	assert_true(n > 0);
	assert_non_null(
		strstr(buf, "generation = 2 1234567890abcdef\nhistory = 1 0000000000abcdef\n"));
	assert_int_equal(gen_parse(buf, &back), 0);
	assert_memory_equal(&back, &g, sizeof(g));
	assert_int_equal(gen_serialize(&g, buf, 40), -ENOSPC);
	assert_int_equal(gen_parse("uuid = none\n", &back), -EINVAL); /* no generation */
	assert_int_equal(gen_parse("uuid = none\ngeneration = 0 0\nbogus = 1\n", &back), -EINVAL);
	assert_int_equal(gen_parse("uuid = none\ngeneration = x 0\n", &back), -EINVAL);
	gen_describe(&g, buf, sizeof(buf));
	assert_string_equal(buf, "guest 01020304-0506-4708-890a-0b0c0d0e0f10 generation 2 (tag "
				 "1234567890abcdef)");
}

static void test_store(void **state)
{
	char dir[] = "/tmp/test_gen.XXXXXX", sub[64], path[96];
	struct gen_state g, back;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/a/b", dir);
	assert_int_equal(genstore_load(sub, &back), -ENOENT);
	gen_new_guest(&g, UUID_Y, genstore_tag());
	assert_int_equal(genstore_save(sub, &g), 0);
	gen_bump(&g, genstore_tag());
	assert_int_equal(genstore_save(sub, &g), 0); /* replaces it */
	assert_int_equal(genstore_load(sub, &back), 0);
	assert_memory_equal(&back, &g, sizeof(g));
	snprintf(path, sizeof(path), "%s/generation", sub);
	unlink(path);
	rmdir(sub);
	snprintf(sub, sizeof(sub), "%s/a", dir);
	rmdir(sub);
	rmdir(dir);
}

/* A state with some history, as a node holds it after a few failovers. */
static struct gen_state some_state(void)
{
	struct gen_state g;

	gen_new_guest(&g, UUID_X, 0x1111111111111111ULL);
	for (int i = 0; i < 5; i++)
		gen_bump(&g, 0xabcdef0123456789ULL + (uint64_t)i);
	return g;
}

/*
 * Every truncation of a state file (a torn copy, a short read): refused, or
 * (cut exactly at a line end) the same guest and generation with fewer history
 * lines. Never a different generation or tag taken for the real one.
 */
static void test_parse_truncated(void **state)
{
	struct gen_state g = some_state(), back;
	char buf[2048], cut[2048];
	int n = gen_serialize(&g, buf, sizeof(buf));

	(void)state;
	assert_true(n > 0);
	for (int k = 0; k < n; k++) {
		memcpy(cut, buf, (size_t)k);
		cut[k] = 0;
		if (gen_parse(cut, &back) < 0)
			continue;
		if (k == 0 || cut[k - 1] != '\n')
			fail_msg("a file cut at byte %d of %d (mid-line) parsed: \"%s\"", k, n,
				 cut);
		assert_memory_equal(back.uuid, g.uuid, GEN_UUID_SIZE);
		assert_memory_equal(&back.cur, &g.cur, sizeof(g.cur));
		assert_true(back.nr_history <= g.nr_history);
		assert_memory_equal(back.history, g.history,
				    back.nr_history * sizeof(g.history[0]));
	}
	assert_int_equal(gen_parse(buf, &back), 0);
}

/* Garbage that strtoull would take: signs, blanks, doubled keys, CRs, too much history. */
static void test_parse_garbage(void **state)
{
	static const char U[] = "uuid = 01020304-0506-4708-890a-0b0c0d0e0f10\n";
	static const char *const bad[] = {
		"generation = -1 0000000000000001\n", /* would be 18446744073709551615 */
		"generation = +2 0000000000000001\n",
		"generation =  2 0000000000000001\n",
		"generation = 2  0000000000000001\n",
		"generation = 2 -000000000000001\n",
		"generation = 2 +000000000000001\n",
		"generation = 2 0x00000000000001\n",
		"generation = 2 0000000000000001\r\n",
		"generation = 18446744073709551616 0000000000000001\n", /* overflow */
		"generation = 2 10000000000000000\n",			/* overflow */
		"generation = 2 0000000000000001\ngeneration = 3 0000000000000002\n",
		"generation = 2 0000000000000001\nuuid = 01020304-0506-4708-890a-0b0c0d0e0f11\n",
		"generation = 2 0000000000000001\nhistory = -1 0000000000000001\n",
	};
	char text[4096];
	struct gen_state back;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(text, sizeof(text), "%s%s", U, bad[i]);
		if (gen_parse(text, &back) != -EINVAL)
			fail_msg("accepted: \"%s\"", text);
	}
	/* At most GEN_HISTORY_MAX history lines. */
	snprintf(text, sizeof(text), "%sgeneration = 30 0000000000000001\n", U);
	for (int i = 0; i < GEN_HISTORY_MAX; i++)
		snprintf(text + strlen(text), sizeof(text) - strlen(text),
			 "history = %d 00000000000000%02x\n", 29 - i, i + 2);
	assert_int_equal(gen_parse(text, &back), 0);
	assert_int_equal(back.nr_history, GEN_HISTORY_MAX);
	strcat(text, "history = 13 0000000000000099\n");
	assert_int_equal(gen_parse(text, &back), -EINVAL);
	/* What a discarded replica stores still reads back. */
	gen_clear(&back);
	assert_true(gen_serialize(&back, text, sizeof(text)) > 0);
	assert_int_equal(gen_parse(text, &back), 0);
	assert_false(gen_has_guest(&back));
}

static void write_file(const char *path, const void *data, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);

	assert_true(fd >= 0);
	assert_int_equal(write(fd, data, len), (ssize_t)len);
	close(fd);
}

static void rm_rf(const char *dir)
{
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	assert_int_equal(system(cmd), 0);
}

/* A state file that is not one: refused (-EINVAL), never read as "nothing held" (-ENOENT). */
static void test_load_garbage(void **state)
{
	char dir[] = "/tmp/test_gen.XXXXXX", path[96], big[4096];
	struct gen_state g = some_state(), back;
	int n;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/generation", dir);
	write_file(path, "", 0);
	assert_int_equal(genstore_load(dir, &back), -EINVAL);
	write_file(path, "\0\0\0\0\0\0\0\0", 8); /* zeroed blocks after a crash */
	assert_int_equal(genstore_load(dir, &back), -EINVAL);
	write_file(path,
		   "\x7f"
		   "ELF\x02\x01\x01",
		   7);
	assert_int_equal(genstore_load(dir, &back), -EINVAL);
	/* A real state followed by a NUL and more: not what gen_serialize writes. */
	n = gen_serialize(&g, big, sizeof(big));
	memcpy(big + n, "\0history = 1 0000000000000001\n", 30);
	write_file(path, big, (size_t)n + 30);
	assert_int_equal(genstore_load(dir, &back), -EINVAL);
	/* Larger than any state: its first 2 KiB must not pass for the whole file. */
	n = gen_serialize(&g, big, sizeof(big));
	memset(big + n, '#', sizeof(big) - (size_t)n);
	for (size_t i = (size_t)n + 100; i < sizeof(big); i += 100)
		big[i] = '\n';
	write_file(path, big, sizeof(big));
	assert_int_equal(genstore_load(dir, &back), -EINVAL);
	/* The real one loads. */
	assert_int_equal(genstore_save(dir, &g), 0);
	assert_int_equal(genstore_load(dir, &back), 0);
	assert_memory_equal(&back, &g, sizeof(g));
	/* "generation" is a directory. */
	unlink(path);
	assert_int_equal(mkdir(path, 0700), 0);
	assert_int_equal(genstore_load(dir, &back), -EISDIR);
	rm_rf(dir);
}

/*
 * A crash at any point of a save leaves the old state or the new one: a
 * temporary file left behind (crash before the rename) is ignored by load and
 * overwritten by the next save; the file is 0600 and a directory created for
 * it 0700.
 */
static void test_store_crash_leftovers(void **state)
{
	char dir[] = "/tmp/test_gen.XXXXXX", sub[64], path[96], tmp[96];
	struct gen_state g = some_state(), g2, back;
	struct stat st;

	(void)state;
	assert_non_null(mkdtemp(dir));
	snprintf(sub, sizeof(sub), "%s/state", dir);
	assert_int_equal(genstore_save(sub, &g), 0);
	assert_int_equal(stat(sub, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0700);
	snprintf(path, sizeof(path), "%s/generation", sub);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0600);
	/* Crashed between writing its temporary file and the rename: half a state. */
	snprintf(tmp, sizeof(tmp), "%s/.generation.%d", sub, (int)getpid());
	write_file(tmp, "uuid = 01020304-0506-4708-89", 28);
	assert_int_equal(genstore_load(sub, &back), 0);
	assert_memory_equal(&back, &g, sizeof(g));
	g2 = g;
	gen_bump(&g2, 0x77);
	assert_int_equal(genstore_save(sub, &g2), 0);
	assert_int_equal(genstore_load(sub, &back), 0);
	assert_memory_equal(&back, &g2, sizeof(g2));
	assert_int_equal(access(tmp, F_OK), -1); /* renamed: nothing left */
	rm_rf(dir);
}

/*
 * A full file system: the write of the temporary file comes up short, then
 * fails. The save must fail with that error (not whatever errno held before),
 * the old state must stay, and no temporary file may be left. RLIMIT_FSIZE
 * makes the short write and EFBIG without a full disk.
 */
static void test_store_short_write(void **state)
{
	char dir[] = "/tmp/test_gen.XXXXXX", tmp[96];
	struct gen_state g = some_state(), g2, back;
	struct rlimit old, lim;
	void (*old_xfsz)(int);
	int r;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(genstore_save(dir, &g), 0);
	g2 = g;
	gen_bump(&g2, 0x99);
	assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
	lim = old;
	lim.rlim_cur = 64;
	old_xfsz = signal(SIGXFSZ, SIG_IGN);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
	r = genstore_save(dir, &g2);
	assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
	signal(SIGXFSZ, old_xfsz);
	assert_int_equal(r, -EFBIG);
	assert_int_equal(genstore_load(dir, &back), 0);
	assert_memory_equal(&back, &g, sizeof(g));
	snprintf(tmp, sizeof(tmp), "%s/.generation.%d", dir, (int)getpid());
	assert_int_equal(access(tmp, F_OK), -1);
	rm_rf(dir);
}

/* Drops what lets root ignore file modes, in this (child) process. */
static int drop_dac_override(void)
{
	struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3 };
	struct __user_cap_data_struct data[2];

	if (syscall(SYS_capget, &hdr, data) < 0)
		return -1;
	data[0].effective &=
		~((1u << CAP_DAC_OVERRIDE) | (1u << CAP_DAC_READ_SEARCH) | (1u << CAP_FOWNER));
	return (int)syscall(SYS_capset, &hdr, data);
}

/* Runs fn(dir) in a child without DAC override; returns what it returned (0 or -errno). */
static int as_unprivileged(int (*fn)(const char *dir), const char *dir)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		int r = drop_dac_override() < 0 ? -EPERM : fn(dir);

		_exit(-r & 0xff);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	return -WEXITSTATUS(status);
}

static int save_some(const char *dir)
{
	struct gen_state g = some_state();

	gen_bump(&g, 0x55);
	return genstore_save(dir, &g);
}

static int load_some(const char *dir)
{
	struct gen_state back;

	return genstore_load(dir, &back);
}

/* Permissions: a read-only state directory, an unreadable file, a path through a file. */
static void test_store_permissions(void **state)
{
	char dir[] = "/tmp/test_gen.XXXXXX", path[96];
	struct gen_state g = some_state(), back;

	(void)state;
	assert_non_null(mkdtemp(dir));
	assert_int_equal(genstore_save(dir, &g), 0);
	assert_int_equal(chmod(dir, 0500), 0);
	assert_int_equal(as_unprivileged(save_some, dir), -EACCES);
	assert_int_equal(chmod(dir, 0700), 0);
	assert_int_equal(genstore_load(dir, &back), 0);
	assert_memory_equal(&back, &g, sizeof(g)); /* the old state stays */
	snprintf(path, sizeof(path), "%s/generation", dir);
	assert_int_equal(chmod(path, 0), 0);
	assert_int_equal(as_unprivileged(load_some, dir), -EACCES);
	/* --state-dir names a file. */
	assert_int_equal(genstore_save(path, &g), -ENOTDIR);
	assert_int_equal(genstore_load(path, &back), -ENOTDIR);
	rm_rf(dir);
}

static void test_hello_generation(void **state)
{
	struct hello_info h = { .protocol_version = RINGFT_PROTOCOL_VERSION,
				.role = HELLO_SECONDARY,
				.tracking = "ring",
				.holds = HOLDS_CHECKPOINT,
				.stale = true };
	struct hello_decoded d;
	uint8_t *buf = NULL;
	size_t len = 0;

	(void)state;
	gen_new_guest(&h.gen, UUID_X, 7);
	gen_bump(&h.gen, 8);
	gen_bump(&h.gen, 9);
	assert_int_equal(hello_frame(&h, &buf, &len), 0);
	assert_int_equal(hello_decode(buf + WIRE_HDR_SIZE, len - WIRE_HDR_SIZE, &d), 0);
	assert_memory_equal(&d.info.gen, &h.gen, sizeof(h.gen));
	assert_int_equal(d.info.holds, HOLDS_CHECKPOINT);
	assert_true(d.info.stale);
	hello_decoded_free(&d);
	free(buf);
	/* No identity: an empty uuid, decoded as no guest. */
	gen_clear(&h.gen);
	h.holds = HOLDS_NOTHING;
	assert_int_equal(hello_frame(&h, &buf, &len), 0);
	assert_int_equal(hello_decode(buf + WIRE_HDR_SIZE, len - WIRE_HDR_SIZE, &d), 0);
	assert_false(gen_has_guest(&d.info.gen));
	hello_decoded_free(&d);
	free(buf);
}

static void test_discard_request(void **state)
{
	struct request req;
	char err[160];

	(void)state;
	assert_int_equal(request_parse("discard", 7, &req, err, sizeof(err)), 0);
	assert_int_equal(req.kind, REQ_DISCARD);
	assert_int_equal(request_parse("discard --all", 13, &req, err, sizeof(err)), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_new_and_bump),
		cmocka_unit_test(test_compare),
		cmocka_unit_test(test_secondary_verdict),
		cmocka_unit_test(test_text),
		cmocka_unit_test(test_store),
		cmocka_unit_test(test_parse_truncated),
		cmocka_unit_test(test_parse_garbage),
		cmocka_unit_test(test_load_garbage),
		cmocka_unit_test(test_store_crash_leftovers),
		cmocka_unit_test(test_store_short_write),
		cmocka_unit_test(test_store_permissions),
		cmocka_unit_test(test_hello_generation),
		cmocka_unit_test(test_discard_request),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
