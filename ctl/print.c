// SPDX-License-Identifier: MIT
/*
 * How ftctl shows the daemon's answers to people: `status` as one screen per
 * instance, events as one line each. --json prints the daemon's own JSON and
 * never comes here.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "ctl/ftctl.h"

const char *jstr(struct json_object *o, const char *key)
{
	struct json_object *v;

	return o && json_object_object_get_ex(o, key, &v) && v ? json_object_get_string(v) : "-";
}

uint64_t ju64(struct json_object *o, const char *key)
{
	struct json_object *v;

	return o && json_object_object_get_ex(o, key, &v) && v ? json_object_get_uint64(v) : 0;
}

bool jbool(struct json_object *o, const char *key)
{
	struct json_object *v;

	return o && json_object_object_get_ex(o, key, &v) && v && json_object_get_boolean(v);
}

bool jhas(struct json_object *o, const char *key)
{
	struct json_object *v;

	return o && json_object_object_get_ex(o, key, &v) && v;
}

/* The guest's identity: "guest UUID, generation N (earlier: N-1, ...)". */
static void print_generation(struct json_object *r)
{
	struct json_object *h = NULL;
	size_t n;

	if (!jhas(r, "uuid")) {
		printf("  guest: none held\n");
		return;
	}
	printf("  guest %s, generation %" PRIu64, jstr(r, "uuid"), ju64(r, "generation"));
	json_object_object_get_ex(r, "history", &h);
	n = h && json_object_is_type(h, json_type_array) ? json_object_array_length(h) : 0;
	for (size_t i = 0; i < n; i++)
		printf("%s%" PRIu64, i ? ", " : " (earlier: ",
		       json_object_get_uint64(json_object_array_get_idx(h, i)));
	printf("%s\n", n ? ")" : "");
}

/*
 * "  ftd 0.1.0, protocol 5 (peer: ftd 0.1.0, protocol 5)": what the daemon
 * says of itself and of the peer its session runs with; absent keys (an older
 * daemon, no session) print nothing.
 */
static void print_versions(struct json_object *r)
{
	const char *sep = "  ";

	if (!jhas(r, "version") && !jhas(r, "protocol"))
		return;
	if (jhas(r, "version")) {
		printf("%sftd %s", sep, jstr(r, "version"));
		sep = ", ";
	}
	if (jhas(r, "protocol"))
		printf("%sprotocol %" PRIu64, sep, ju64(r, "protocol"));
	if (jhas(r, "peer_version") || jhas(r, "peer_protocol")) {
		printf(" (peer: ");
		if (jhas(r, "peer_version"))
			printf("ftd %s%s", jstr(r, "peer_version"),
			       jhas(r, "peer_protocol") ? ", " : "");
		if (jhas(r, "peer_protocol"))
			printf("protocol %" PRIu64, ju64(r, "peer_protocol"));
		printf(")");
	}
	printf("\n");
}

/* One screen, modelled on `drbdsetup status`. */
void print_status(const char *name, struct json_object *r)
{
	if (name)
		printf("%s: ", name);
	if (!strcmp(jstr(r, "role"), "primary")) {
		struct json_object *pause = NULL;

		json_object_object_get_ex(r, "pause_us", &pause);
		printf("primary %s: %s, secondary %s\n", jstr(r, "guest"), jstr(r, "state"),
		       jstr(r, "peer"));
		print_versions(r);
		print_generation(r);
		if (jhas(r, "promoted_by"))
			printf("  active here since a %s from checkpoint %" PRIu64 "\n",
			       jstr(r, "promoted_by"), ju64(r, "promoted_from_checkpoint"));
		if (jhas(r, "sync_remaining"))
			printf("  initial sync: %" PRIu64 " pages sent, %" PRIu64 " to go\n",
			       ju64(r, "sync_pages"), ju64(r, "sync_remaining"));
		printf("  epoch %" PRIu64 ", %" PRIu64 " checkpoints, %" PRIu64 " acknowledged",
		       ju64(r, "epoch"), ju64(r, "checkpoints"), ju64(r, "acked"));
		if (jhas(r, "last_ack_age_ms"))
			printf(" (last %" PRIu64 " ms ago)", ju64(r, "last_ack_age_ms"));
		printf(", interval %.3f ms", (double)ju64(r, "interval_us") / 1000.0);
		if (jhas(r, "interval_auto_budget")) {
			struct json_object *ai = NULL;

			json_object_object_get_ex(r, "interval_auto_budget", &ai);
			printf(" (auto: overhead %" PRIu64 "%%, bound by %s%s)",
			       ju64(ai, "overhead_pct"), jstr(ai, "bound"),
			       json_object_get_boolean(
				       json_object_object_get(ai, "overhead_exceeded"))
				       ? ", over budget"
				       : "");
		}
		printf("\n");
		printf("  pause p50 %" PRIu64 " us, p99 %" PRIu64 " us; %" PRIu64
		       " dirty pages per checkpoint; %.1f MB sent, %.1f MB/s\n",
		       pause ? ju64(pause, "p50") : 0, pause ? ju64(pause, "p99") : 0,
		       ju64(r, "dirty_pages_per_checkpoint"), (double)ju64(r, "bytes_sent") / 1e6,
		       (double)ju64(r, "bytes_per_s") / 1e6);
		if (jhas(r, "quorum"))
			printf("  quorum %s%s\n", jstr(r, "quorum"),
			       json_object_get_boolean(json_object_object_get(r, "frozen"))
				       ? ", guest stopped (lost quorum)"
				       : "");
		printf("  verified %" PRIu64 ", mismatches %" PRIu64 ", output held %" PRIu64
		       " bytes, %" PRIu64 " sessions\n",
		       ju64(r, "verified"), ju64(r, "mismatches"), ju64(r, "held_bytes"),
		       ju64(r, "sessions"));
		if (jhas(r, "net")) {
			struct json_object *n = json_object_object_get(r, "net");

			printf("  net %s on TAP %s%s: %" PRIu64 " frames held (%" PRIu64
			       " bytes)%s; rx %" PRIu64 " frames (%" PRIu64 " dropped), tx %" PRIu64
			       " frames\n",
			       jstr(n, "mac"), jstr(n, "tap"),
			       json_object_get_boolean(json_object_object_get(n, "attached"))
				       ? ""
				       : " (not open)",
			       ju64(n, "held_frames"), ju64(n, "held_bytes"),
			       json_object_get_boolean(json_object_object_get(n, "backpressured"))
				       ? ", guest transmit stopped (backpressure)"
				       : "",
			       ju64(n, "rx_frames"), ju64(n, "rx_dropped"), ju64(n, "tx_frames"));
		}
		if (jhas(r, "disk")) {
			struct json_object *d = json_object_object_get(r, "disk");

			printf("  disk %s (%" PRIu64 " MiB): %" PRIu64 " reads, %" PRIu64
			       " writes (%.1f MB), %" PRIu64 " flushes, %" PRIu64
			       " errors, %" PRIu64 " in flight; last sync sent %" PRIu64
			       " blocks (%.1f MB) in %" PRIu64 " ms\n",
			       jstr(d, "path"), ju64(d, "size") >> 20, ju64(d, "reads"),
			       ju64(d, "writes"), (double)ju64(d, "write_bytes") / 1e6,
			       ju64(d, "flushes"), ju64(d, "errors"), ju64(d, "inflight"),
			       ju64(d, "sync_blocks"), (double)ju64(d, "sync_bytes") / 1e6,
			       ju64(d, "sync_ms"));
			if (jhas(d, "latency_us")) {
				struct json_object *lat = json_object_object_get(d, "latency_us");
				struct json_object *w = json_object_object_get(lat, "write");
				struct json_object *fl = json_object_object_get(lat, "flush");

				printf("    latency (queue to used ring): write p50/p99 %" PRIu64
				       "/%" PRIu64 " us, flush p50/p99/max %" PRIu64 "/%" PRIu64
				       "/%" PRIu64 " us\n",
				       ju64(w, "p50"), ju64(w, "p99"), ju64(fl, "p50"),
				       ju64(fl, "p99"), ju64(fl, "max"));
			}
		}
		return;
	}
	if (strcmp(jstr(r, "role"), "secondary")) {
		/* A role this ftctl does not know in detail (an older or newer ftd). */
		printf("%s: %s\n", jstr(r, "role"), jstr(r, "state"));
		print_versions(r);
		if (jhas(r, "uuid"))
			print_generation(r);
		return;
	}
	printf("secondary: %s, primary %s\n", jstr(r, "state"), jstr(r, "peer"));
	print_versions(r);
	if (jhas(r, "checkpoint"))
		printf("  replica at checkpoint %" PRIu64, ju64(r, "checkpoint"));
	else
		printf("  replica holds no complete checkpoint");
	if (jhas(r, "last_apply_age_ms"))
		printf(" (applied %" PRIu64 " ms ago)", ju64(r, "last_apply_age_ms"));
	if (json_object_get_boolean(json_object_object_get(r, "stale")))
		printf(", STALE: the primary moved on to generation %" PRIu64
		       " (never promoted automatically; failover needs --force)",
		       ju64(r, "stale_by_generation"));
	printf("\n");
	print_generation(r);
	printf("  ");
	printf("%" PRIu64 " epochs applied, %" PRIu64 " checkpoints, %.1f MB received\n",
	       ju64(r, "epochs_applied"), ju64(r, "checkpoints"),
	       (double)ju64(r, "bytes_received") / 1e6);
	printf("  verified %" PRIu64 ", mismatches %" PRIu64 ", %" PRIu64
	       " connections refused, %" PRIu64 " sessions\n",
	       ju64(r, "verified"), ju64(r, "mismatches"), ju64(r, "refused"), ju64(r, "sessions"));
	if (jhas(r, "quorum"))
		printf("  quorum %s\n", jstr(r, "quorum"));
	if (jhas(r, "disk")) {
		struct json_object *d = json_object_object_get(r, "disk");

		printf("  disk %s (%" PRIu64 " MiB): %.1f MB in %" PRIu64
		       " records applied, %" PRIu64 " fdatasyncs, %" PRIu64 " ms writing%s\n",
		       jstr(d, "path"), ju64(d, "size") >> 20,
		       (double)ju64(d, "bytes_applied") / 1e6, ju64(d, "records_applied"),
		       ju64(d, "fdatasyncs"), ju64(d, "apply_ms"),
		       json_object_get_boolean(json_object_object_get(d, "torn"))
			       ? "; TORN: a write failed half-way, this image is no checkpoint"
			       : "");
	}
}

/*
 * "HH:MM:SS.mmm event key=value ...". The `state` event of `events --now`
 * carries the whole status: its line names the role, state and peer, and
 * the checkpoint or generation when there is one.
 */
void print_event(struct json_object *ev)
{
	static const char *const state_keys[] = { "role", "state", "peer", "checkpoint",
						  "generation" };
	time_t t = (time_t)(ju64(ev, "time_ms") / 1000);
	struct json_object *st = NULL;
	struct tm tm;
	char when[32];

	localtime_r(&t, &tm);
	strftime(when, sizeof(when), "%H:%M:%S", &tm);
	printf("%s.%03u %s", when, (unsigned int)(ju64(ev, "time_ms") % 1000), jstr(ev, "event"));
	json_object_object_foreach(ev, k, v)
	{
		if (!strcmp(k, "status") && json_object_is_type(v, json_type_object)) {
			st = v;
			continue;
		}
		if (strcmp(k, "event") && strcmp(k, "time_ms") && v)
			printf(" %s=%s", k, json_object_get_string(v));
	}
	for (size_t i = 0; st && i < sizeof(state_keys) / sizeof(state_keys[0]); i++)
		if (jhas(st, state_keys[i]))
			printf(" %s=%s", state_keys[i], jstr(st, state_keys[i]));
	printf("\n");
}
