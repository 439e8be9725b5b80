/* SPDX-License-Identifier: MIT */
/*
 * Guest identity and data generations, after DRBD's generation identifiers.
 *
 * A guest has a UUID, made when it is booted from nothing. Its data moves on in
 * generations: one is started whenever a node begins to act on its own, i.e. at
 * every promotion and whenever the active node releases output that no replica
 * holds (it ran unprotected). A generation is a number (one more than the one
 * before) and a random tag: two nodes that each started "generation 5" on their
 * own (a split brain) have different tags, so a diverged history is seen as
 * such and never mistaken for the same data. Each node keeps the generations
 * its copy went through before the current one (its history), newest first.
 *
 * Comparing two nodes' states of the same guest:
 *   same current generation            the same data (modulo checkpoints not yet applied)
 *   mine is in the other's history     mine is older: the other moved past it
 *   the other's is in my history       mine is newer
 *   neither                            diverged: both ran on their own; an operator decides
 *
 * Pure code: no I/O, no randomness (callers pass the random bytes in), no logging.
 */
#ifndef RINGFT_PROTO_GENERATION_H
#define RINGFT_PROTO_GENERATION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GEN_UUID_SIZE	16
#define GEN_HISTORY_MAX 16
#define GEN_UUID_TEXT	37 /* 8-4-4-4-12 hex and NUL */

struct gen_id {
	uint64_t number; /* 1 for the first generation; 0: none */
	uint64_t tag;	 /* random, never 0 in a real generation */
};

struct gen_state {
	uint8_t uuid[GEN_UUID_SIZE]; /* all zero: no guest */
	struct gen_id cur;
	struct gen_id history[GEN_HISTORY_MAX]; /* earlier generations, newest first */
	unsigned int nr_history;
};

enum gen_relation {
	GEN_EMPTY,	  /* one side holds no guest at all */
	GEN_OTHER_GUEST,  /* different UUIDs */
	GEN_SAME,	  /* same guest, same current generation */
	GEN_LOCAL_OLDER,  /* local's current generation is in remote's history */
	GEN_REMOTE_OLDER, /* remote's current generation is in local's history */
	GEN_DIVERGED,	  /* same guest, neither history holds the other's generation */
};

bool gen_has_guest(const struct gen_state *g);
/* A new guest: uuid and the tag of generation 1 from the caller's random bytes. */
void gen_new_guest(struct gen_state *g, const uint8_t uuid[GEN_UUID_SIZE], uint64_t tag);
/* Starts the next generation (tag: random, not 0); the current one goes to history. */
void gen_bump(struct gen_state *g, uint64_t tag);
void gen_clear(struct gen_state *g);
enum gen_relation gen_compare(const struct gen_state *local, const struct gen_state *remote);
const char *gen_relation_name(enum gen_relation r);

/* What a secondary does with a primary's HELLO. */
enum gen_verdict {
	GEN_ACCEPT,	    /* sync from it (this copy is empty, the same data, or older) */
	GEN_REFUSE_GUEST,   /* this copy is another guest's */
	GEN_REFUSE_OLDER,   /* the primary's generation is older than this copy's */
	GEN_REFUSE_DIVERGED /* both ran on their own since they last agreed */
};

/*
 * The rule for a secondary: `holds` says whether its copy counts (a complete
 * checkpoint, not discarded by an operator and not released by its primary's
 * orderly stop). Without one anything is accepted. With one, only the same
 * guest at the same or a newer generation: never a resync that would roll the
 * copy back or replace it by another guest.
 */
enum gen_verdict gen_secondary_verdict(const struct gen_state *local, bool holds,
				       const struct gen_state *remote);
const char *gen_verdict_reason(enum gen_verdict v);

/*
 * How many generations local is behind remote (remote's history position of
 * local's current generation, plus one), 0 if not behind.
 */
unsigned int gen_behind(const struct gen_state *local, const struct gen_state *remote);

/* "1b4e28ba-2fa1-11d2-883f-0016d3cca427"; all zeros as "none". */
void gen_uuid_format(const uint8_t uuid[GEN_UUID_SIZE], char buf[GEN_UUID_TEXT]);
int gen_uuid_parse(const char *s, uint8_t uuid[GEN_UUID_SIZE]);
/* "guest U generation N (tag T)" or "no guest", for messages. */
void gen_describe(const struct gen_state *g, char *buf, size_t len);

/*
 * The on-disk form: `key = value` lines (uuid, generation NUMBER TAG, one
 * history NUMBER TAG line each, newest first). gen_serialize returns the
 * length written (< len) or -ENOSPC; gen_parse 0 or -EINVAL.
 */
int gen_serialize(const struct gen_state *g, char *buf, size_t len);
int gen_parse(const char *text, struct gen_state *ret);

#endif
