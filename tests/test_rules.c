// SPDX-License-Identifier: MIT
/*
 * The promotion rules attacked the way a Jepsen run would, without a cluster:
 * every combination of what a secondary can know (failover_decide), every
 * pairing of two nodes' generation states (gen_compare, the HELLO verdict),
 * and counters at their limits. test_units has one case per rule; this file
 * checks that no combination of inputs gets past them, in either direction.
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

#include "daemon/failover.h"
#include "proto/generation.h"

static const uint8_t UUID_X[GEN_UUID_SIZE] = {
	1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16
};
static const uint8_t UUID_Y[GEN_UUID_SIZE] = {
	0xff, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15
};

#define WAIT_NS 7000000000ULL

/* What the rules say about the automatic path (docs/failover.md, 1-4 and the stale rule). */
static bool auto_may_promote(const struct failover_view *v)
{
	return v->cluster && !v->auto_blocked && !v->promoted && !v->peer_connected &&
	       v->sync_complete && !v->stale && v->quorate && v->peers == 0 && v->peer_left &&
	       v->fence != FAILOVER_FENCE_FAILED &&
	       (!v->peer_node_left || v->peer_left_ago_ns >= v->cluster_wait_ns ||
		v->fence != FAILOVER_FENCE_NONE);
}

/* `ftctl failover`: quorum and membership do not count; --force overrides "connected" and "stale".
 */
static bool manual_may_promote(const struct failover_view *v)
{
	return !v->promoted && v->sync_complete && (!v->peer_connected || v->force) &&
	       (!v->stale || v->force) && v->fence != FAILOVER_FENCE_FAILED;
}

static void check_decision(const struct failover_view *v)
{
	struct failover_decision d = failover_decide(v);
	bool want = v->manual ? manual_may_promote(v) : auto_may_promote(v);
	bool got = d.action == FAILOVER_PROMOTE;

	if (want != got)
		fail_msg(
			"%s: promote %d, want %d (blocked %d promoted %d connected %d complete %d "
			"stale %d quorate %d peers %u left %d node %d ago %llu fence %d force %d): "
			"%s",
			v->manual ? "manual" : "auto", got, want, v->auto_blocked, v->promoted,
			v->peer_connected, v->sync_complete, v->stale, v->quorate, v->peers,
			v->peer_left, v->peer_node_left, (unsigned long long)v->peer_left_ago_ns,
			v->fence, v->force, d.text);
	if (got) {
		assert_int_equal(d.error, 0);
		/* A configured fence command runs first, always: never a promotion around it. */
		assert_int_equal(d.fence_first, v->fence == FAILOVER_FENCE_PENDING);
		assert_false(d.quiet);
	} else {
		assert_true(d.error < 0);
		assert_false(d.fence_first);
		/* Whatever the automatic path waits for, a stale replica never becomes "wait". */
		if (!v->manual && v->stale && v->cluster && !v->auto_blocked && !v->promoted &&
		    !v->peer_connected && v->sync_complete)
			assert_int_equal(d.action, FAILOVER_FREEZE);
	}
	assert_true(memchr(d.text, 0, sizeof(d.text)) != NULL);
	assert_true(d.text[0] != 0);
}

/*
 * Every combination of the inputs, both paths: a promotion happens exactly
 * when every rule holds. Removing or weakening any rule in failover.c lets a
 * combination through; making one stricter than the documentation blocks a
 * promotion the documentation promises.
 */
static void test_decide_every_combination(void **state)
{
	static const uint64_t agos[] = { 0, WAIT_NS - 1, WAIT_NS, WAIT_NS + 1, UINT64_MAX };
	unsigned long n = 0;

	(void)state;
	for (unsigned int bits = 0; bits < 1u << 12; bits++)
		for (size_t a = 0; a < sizeof(agos) / sizeof(agos[0]); a++)
			for (int f = FAILOVER_FENCE_NONE; f <= FAILOVER_FENCE_FAILED; f++) {
				struct failover_view v = {
					.manual = bits & 1,
					.force = bits >> 1 & 1,
					.promoted = bits >> 2 & 1,
					.peer_connected = bits >> 3 & 1,
					.sync_complete = bits >> 4 & 1,
					.stale = bits >> 5 & 1,
					.cluster = bits >> 6 & 1,
					.auto_blocked = bits >> 7 & 1,
					.quorate = bits >> 8 & 1,
					.peers = bits >> 9 & 1,
					.peer_left = bits >> 10 & 1,
					.peer_node_left = bits >> 11 & 1,
					.syncing = (bits >> 3 & 1) && !(bits >> 4 & 1),
					.checkpoint = 42,
					.generation = 3,
					.stale_by = 5,
					.stale_behind = 2,
					.stale_for_ns = 12300000000ULL,
					.peer_nodeid = 2,
					.peer_left_ago_ns = agos[a],
					.cluster_wait_ns = WAIT_NS,
					.fence = (enum failover_fence)f,
					.fence_error =
						f == FAILOVER_FENCE_FAILED ? "fence: exit 1" : NULL,
				};

				check_decision(&v);
				n++;
			}
	assert_int_equal(n, 4096 * 5 * 4);
}

/*
 * The fence command's result is fed back into the same decision: a fence that
 * succeeded must not turn a refusal into a promotion. In particular a stale
 * replica stays frozen even with its old primary confirmed off and --cluster-wait
 * long past: the primary ran on, and the world saw what this replica lacks.
 */
static void test_fence_done_never_overrides(void **state)
{
	struct failover_view v = {
		.cluster = true,
		.sync_complete = true,
		.stale = true,
		.stale_by = 9,
		.quorate = true,
		.peer_left = true,
		.peer_node_left = true,
		.peer_left_ago_ns = UINT64_MAX,
		.cluster_wait_ns = WAIT_NS,
		.fence = FAILOVER_FENCE_DONE,
	};
	struct failover_decision d = failover_decide(&v);

	(void)state;
	assert_int_equal(d.action, FAILOVER_FREEZE);
	assert_int_equal(d.why, FAILOVER_WHY_STALE);
	/* Not quorate: even fenced, the other side may be the quorate one running the guest. */
	v.stale = false;
	v.quorate = false;
	d = failover_decide(&v);
	assert_int_equal(d.action, FAILOVER_WAIT);
	assert_int_equal(d.why, FAILOVER_WHY_NOT_QUORATE);
	/* A member again (the partition healed): the fence proved nothing about this one. */
	v.quorate = true;
	v.peers = 1;
	d = failover_decide(&v);
	assert_int_equal(d.why, FAILOVER_WHY_PEER_MEMBER);
}

/* --cluster-wait 0 (refused by the options, but the function must stay monotone). */
static void test_cluster_wait_edges(void **state)
{
	struct failover_view v = {
		.cluster = true,
		.sync_complete = true,
		.quorate = true,
		.peer_left = true,
		.peer_node_left = true,
		.peer_left_ago_ns = 0,
		.cluster_wait_ns = UINT64_MAX,
	};

	(void)state;
	/* A wait that never ends: never promoted without a fence. */
	assert_int_equal(failover_decide(&v).why, FAILOVER_WHY_CLUSTER_WAIT);
	v.peer_left_ago_ns = UINT64_MAX - 1;
	assert_int_equal(failover_decide(&v).why, FAILOVER_WHY_CLUSTER_WAIT);
	v.cluster_wait_ns = 0;
	v.peer_left_ago_ns = 0;
	assert_int_equal(failover_decide(&v).action, FAILOVER_PROMOTE);
}

/* The rollback warning and the refusal it is part of, with every number at its widest. */
static void test_rollback_text_widest(void **state)
{
	struct failover_view v = {
		.manual = true,
		.sync_complete = true,
		.stale = true,
		.checkpoint = UINT64_MAX,
		.generation = UINT64_MAX,
		.stale_by = UINT64_MAX,
		.stale_behind = GEN_HISTORY_MAX + 1,
		.stale_for_ns = 365ULL * 24 * 3600 * 1000000000ULL, /* a year */
	};
	char buf[512];
	struct failover_decision d;

	(void)state;
	failover_rollback_text(&v, buf, sizeof(buf));
	assert_non_null(strstr(buf, "output released since is lost"));
	d = failover_decide(&v);
	assert_int_equal(d.why, FAILOVER_WHY_STALE);
	/* The refusal must end with what to do about it. */
	assert_non_null(strstr(d.text, "use --force to promote it anyway"));
}

/* ---- generations ---- */

/* A generation chain: each node's state as the story goes. */
static struct gen_state chain(const uint8_t *uuid, unsigned int bumps, uint64_t tag_base)
{
	struct gen_state g;

	gen_new_guest(&g, uuid, 0x11);
	for (unsigned int i = 0; i < bumps; i++)
		gen_bump(&g, tag_base + i);
	return g;
}

/* Same, older, newer, diverged, another guest, empty: and the verdict for each, both ways. */
static void test_compare_matrix(void **state)
{
	struct gen_state base = chain(UUID_X, 3, 0x100), newer = base, div = base, other, none;

	(void)state;
	gen_clear(&none);
	gen_bump(&newer, 0x200);
	gen_bump(&div, 0x300); /* the same number as newer's current, another tag */
	assert_int_equal(newer.cur.number, div.cur.number);
	other = base;
	memcpy(other.uuid, UUID_Y, GEN_UUID_SIZE); /* same generations, another guest */

	assert_int_equal(gen_compare(&base, &base), GEN_SAME);
	assert_int_equal(gen_compare(&base, &newer), GEN_LOCAL_OLDER);
	assert_int_equal(gen_compare(&newer, &base), GEN_REMOTE_OLDER);
	assert_int_equal(gen_compare(&newer, &div), GEN_DIVERGED);
	assert_int_equal(gen_compare(&div, &newer), GEN_DIVERGED);
	assert_int_equal(gen_compare(&base, &other), GEN_OTHER_GUEST);
	assert_int_equal(gen_compare(&base, &none), GEN_EMPTY);

	/* A secondary holding a copy: never rolled back, never replaced by another guest. */
	assert_int_equal(gen_secondary_verdict(&base, true, &base), GEN_ACCEPT);
	assert_int_equal(gen_secondary_verdict(&base, true, &newer), GEN_ACCEPT);
	assert_int_equal(gen_secondary_verdict(&newer, true, &base), GEN_REFUSE_OLDER);
	assert_int_equal(gen_secondary_verdict(&newer, true, &div), GEN_REFUSE_DIVERGED);
	assert_int_equal(gen_secondary_verdict(&base, true, &other), GEN_REFUSE_GUEST);
	assert_int_equal(gen_secondary_verdict(&base, true, &none), GEN_REFUSE_GUEST);

	/* Same number and same tag but another UUID: another guest, not "the same". */
	assert_memory_equal(&other.cur, &base.cur, sizeof(base.cur));
	assert_int_equal(gen_secondary_verdict(&other, true, &base), GEN_REFUSE_GUEST);

	/* A tag repeated by the next generation (a weak random source): told apart by number. */
	newer = base;
	gen_bump(&newer, base.cur.tag);
	assert_int_equal(gen_compare(&base, &newer), GEN_LOCAL_OLDER);
	assert_int_equal(gen_secondary_verdict(&newer, true, &base), GEN_REFUSE_OLDER);
}

/* Random two-node histories: a counted copy never accepts a primary that lacks its generation. */
static void test_verdict_never_rolls_back(void **state)
{
	uint64_t seed = 0x9e3779b97f4a7c15ULL;

	(void)state;
	for (int round = 0; round < 20000; round++) {
		struct gen_state a, b;
		unsigned int common, ea, eb;
		enum gen_verdict v;
		bool b_in_a_history = false;

		seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
		common = (unsigned int)(seed >> 33) % 24;
		ea = (unsigned int)(seed >> 40) % 20;
		eb = (unsigned int)(seed >> 48) % 3;
		a = chain(UUID_X, common, 0x1000);
		b = a;
		/* b is the secondary: it kept the common part, maybe ran on by itself (promoted).
		 */
		for (unsigned int i = 0; i < eb; i++)
			gen_bump(&b, 0xb000 + i);
		for (unsigned int i = 0; i < ea; i++)
			gen_bump(&a, 0xa000 + i);
		for (unsigned int i = 0; i < a.nr_history; i++)
			if (a.history[i].number == b.cur.number && a.history[i].tag == b.cur.tag)
				b_in_a_history = true;
		v = gen_secondary_verdict(&b, true, &a);
		if (v == GEN_ACCEPT && !(b_in_a_history || !memcmp(&a.cur, &b.cur, sizeof(a.cur))))
			fail_msg("round %d: common %u, a +%u, b +%u: accepted a primary that does "
				 "not "
				 "hold the secondary's generation",
				 round, common, ea, eb);
		/* Exactly the cases the rules accept: the same, or the primary moved past b. */
		if (eb == 0 && ea > 0 && ea <= GEN_HISTORY_MAX)
			assert_int_equal(v, GEN_ACCEPT);
		if (eb > 0 && ea > 0)
			assert_int_equal(v, GEN_REFUSE_DIVERGED);
		if (eb > 0 && ea == 0)
			assert_int_equal(v, GEN_REFUSE_OLDER);
	}
}

/*
 * History is bounded: a copy more than GEN_HISTORY_MAX generations behind is
 * no longer recognisable as older and counts as diverged. That is the safe side
 * (the secondary refuses, an operator decides) and it must stay that way.
 */
static void test_history_bound(void **state)
{
	struct gen_state old = chain(UUID_X, 2, 0x100), now = old;

	(void)state;
	for (unsigned int i = 0; i < GEN_HISTORY_MAX; i++)
		gen_bump(&now, 0x200 + i);
	assert_int_equal(now.nr_history, GEN_HISTORY_MAX);
	assert_int_equal(gen_compare(&old, &now), GEN_LOCAL_OLDER);
	assert_int_equal(gen_behind(&old, &now), GEN_HISTORY_MAX);
	gen_bump(&now, 0x300);
	assert_int_equal(gen_compare(&old, &now), GEN_DIVERGED);
	assert_int_equal(gen_behind(&old, &now), 0);
	assert_int_equal(gen_secondary_verdict(&old, true, &now), GEN_REFUSE_DIVERGED);
	/* Newest first, one number apart, and the oldest dropped. */
	for (unsigned int i = 0; i + 1 < now.nr_history; i++)
		assert_int_equal(now.history[i].number, now.history[i + 1].number + 1);
	assert_int_equal(now.history[0].number + 1, now.cur.number);
	/* A state whose count is out of range (memory from the wire) is never read past the array.
	 */
	now.nr_history = 1000;
	assert_int_equal(gen_compare(&old, &now), GEN_DIVERGED);
}

/*
 * The generation number at its limit. Comparisons use (number, tag) equality
 * only, so a number that stays at UINT64_MAX still tells generations apart by
 * their tags; one that wraps to 0 means "no guest", and a secondary holding
 * "no guest" accepts any primary over its copy (gen_secondary_verdict).
 */
static void test_bump_at_the_limit(void **state)
{
	struct gen_state g = chain(UUID_X, 1, 0x100), before;

	(void)state;
	g.cur.number = UINT64_MAX - 1;
	gen_bump(&g, 0x200);
	assert_int_equal(g.cur.number, UINT64_MAX);
	before = g;
	gen_bump(&g, 0x300);
	assert_true(gen_has_guest(&g));
	assert_int_equal(gen_compare(&g, &before), GEN_REMOTE_OLDER);
	assert_int_equal(gen_compare(&before, &g), GEN_LOCAL_OLDER);
	assert_int_equal(gen_secondary_verdict(&g, true, &before), GEN_REFUSE_OLDER);
	/* Another guest at generation 1 is refused by it, not accepted as "nothing held". */
	before = chain(UUID_Y, 0, 0);
	assert_int_equal(gen_secondary_verdict(&g, true, &before), GEN_REFUSE_GUEST);
}

/* A tag of 0 is never a real generation's: new guests and bumps never produce it. */
static void test_tag_never_zero(void **state)
{
	struct gen_state g;

	(void)state;
	gen_new_guest(&g, UUID_X, 0);
	assert_true(g.cur.tag != 0);
	gen_bump(&g, 0);
	assert_true(g.cur.tag != 0);
	assert_true(g.history[0].tag != 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_decide_every_combination),
		cmocka_unit_test(test_fence_done_never_overrides),
		cmocka_unit_test(test_cluster_wait_edges),
		cmocka_unit_test(test_rollback_text_widest),
		cmocka_unit_test(test_compare_matrix),
		cmocka_unit_test(test_verdict_never_rolls_back),
		cmocka_unit_test(test_history_bound),
		cmocka_unit_test(test_bump_at_the_limit),
		cmocka_unit_test(test_tag_never_zero),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
