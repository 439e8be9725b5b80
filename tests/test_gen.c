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
		cmocka_unit_test(test_hello_generation),
		cmocka_unit_test(test_discard_request),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
