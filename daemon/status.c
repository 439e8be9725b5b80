// SPDX-License-Identifier: MIT
/*
 * Status and metrics (daemon/status.h): the engines' counters rendered as
 * the statistics line, the `ftctl status` object, Prometheus text and the
 * exit summary. Reads the roles' state and changes nothing but the
 * statistics windows.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "daemon/disk.h"
#include "daemon/role.h"
#include "daemon/status.h"
#include "lib/clock.h"
#include "lib/log.h"

static void stats_add(struct stats_line *l, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void stats_add(struct stats_line *l, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (l->len >= sizeof(l->buf))
		return;
	va_start(ap, fmt);
	n = vsnprintf(l->buf + l->len, sizeof(l->buf) - l->len, fmt, ap);
	va_end(ap);
	l->len = n < 0 ? l->len : l->len + (size_t)n;
}

void stats_begin(struct stats_line *l)
{
	l->len = 0;
	stats_add(l, "ftd: stats");
}

void stats_str(struct stats_line *l, const char *key, const char *v)
{
	stats_add(l, " %s=%s", key, v);
}

void stats_u64(struct stats_line *l, const char *key, uint64_t v)
{
	stats_add(l, " %s=%llu", key, (unsigned long long)v);
}

/* Whole numbers from 10/s up; one decimal below, so that a slow rate (a flush
 * every few seconds) does not print as 0/s. */
void stats_rate(struct stats_line *l, const char *key, uint64_t n, double secs)
{
	double r = secs > 0 ? (double)n / secs : 0.0;

	stats_add(l, r < 9.95 ? " %s=%.1f/s" : " %s=%.0f/s", key, r);
}

void stats_mbps(struct stats_line *l, const char *key, double mbps)
{
	stats_add(l, " %s=%.1f", key, mbps);
}

void stats_group(struct stats_line *l, const char *name)
{
	stats_add(l, " %s", name);
}

void stats_samples(struct stats_line *l, const char *name, struct samples *s, unsigned int which)
{
	stats_group(l, name);
	if (which & STATS_P50)
		stats_u64(l, "p50", samples_percentile(s, 50));
	if (which & STATS_P99)
		stats_u64(l, "p99", samples_percentile(s, 99));
	if (which & STATS_MAX)
		stats_u64(l, "max", samples_max(s));
}

void stats_hist(struct stats_line *l, const char *name, const struct histogram *h,
		unsigned int which)
{
	stats_group(l, name);
	if (which & STATS_P50)
		stats_u64(l, "p50", histogram_percentile(h, 50));
	if (which & STATS_P99)
		stats_u64(l, "p99", histogram_percentile(h, 99));
	if (which & STATS_MAX)
		stats_u64(l, "max", h->max);
}

void stats_end(struct stats_line *l)
{
	/* One write, as one fprintf was: lines from other threads do not cut into it. */
	fprintf(stderr, "%.*s\n", (int)(l->len < sizeof(l->buf) ? l->len : sizeof(l->buf) - 1),
		l->buf);
}

void ftd_primary_stats_line(struct primary *p, struct outbuf *frames, struct virtio_blk *disk,
			    struct pwindow *w, uint64_t now)
{
	struct primary_stats *st = &p->st;
	double secs = (double)(now - w->start_ns) / NS_PER_S;
	uint64_t bytes = primary_bytes_sent(p);
	struct stats_line l;

	stats_begin(&l);
	stats_str(&l, "state", primary_state_name(p->state));
	stats_u64(&l, "epoch", p->next_epoch);
	stats_u64(&l, "checkpoints", st->checkpoints);
	stats_u64(&l, "acked", st->acked);
	stats_rate(&l, "rate", st->checkpoints - w->checkpoints, secs);
	stats_u64(&l, "skipped", st->skipped);
	stats_u64(&l, "early", st->early);
	stats_samples(&l, "dirty/ckpt", &st->pages, STATS_P50 | STATS_MAX);
	stats_samples(&l, "pause_us", &st->pause_us, STATS_P50 | STATS_P99 | STATS_MAX);
	stats_samples(&l, "ack_us", &st->ack_us, STATS_P50 | STATS_P99);
	stats_mbps(&l, "wire_MBps", secs > 0 ? (double)(bytes - w->bytes) / secs / 1e6 : 0.0);
	stats_u64(&l, "verified", st->verified);
	stats_u64(&l, "mismatches", st->mismatches);
	stats_u64(&l, "held_bytes", commit_held(p->commit));
	if (frames)
		stats_u64(&l, "held_frames", outbuf_records_held(frames));
	stats_u64(&l, "sync_pages", st->sync_pages);
	stats_u64(&l, "sync_remaining", st->sync_remaining);
	ftd_disk_stats(disk, &w->disk, secs, &l);
	stats_end(&l);
	samples_reset(&st->pause_us);
	samples_reset(&st->ack_us);
	samples_reset(&st->pages);
	w->start_ns = now;
	w->checkpoints = st->checkpoints;
	w->bytes = bytes;
}

void ftd_secondary_stats_line(struct secondary *s, struct swindow *w, uint64_t now)
{
	double secs = (double)(now - w->start_ns) / NS_PER_S;
	uint64_t bytes = secondary_bytes_received(s), n = s->st.epochs - w->epochs;
	struct stats_line l;

	stats_begin(&l);
	stats_str(&l, "state", secondary_state_name(s->state));
	stats_u64(&l, "epoch", s->replica.epoch == UINT64_MAX ? 0 : s->replica.epoch);
	stats_u64(&l, "checkpoints", s->st.checkpoints);
	stats_rate(&l, "rate", n, secs);
	stats_u64(&l, "verified", s->st.verified);
	stats_u64(&l, "mismatches", s->st.mismatches);
	stats_u64(&l, "refused", s->st.refused);
	stats_mbps(&l, "wire_MBps",
		   secs > 0 && bytes >= w->bytes ? (double)(bytes - w->bytes) / secs / 1e6 : 0.0);
	stats_group(&l, "apply_us");
	stats_u64(&l, "avg", n ? (s->st.apply_ns - w->apply_ns) / n / NS_PER_US : 0);
	stats_u64(&l, "max", s->st.apply_max_ns / NS_PER_US);
	stats_u64(&l, "sync_pages", s->st.sync_pages);
	stats_end(&l);
	s->st.apply_max_ns = 0;
	w->start_ns = now;
	w->bytes = bytes;
	w->epochs = s->st.epochs;
	w->apply_ns = s->st.apply_ns;
}

/* One metric family of one sample: HELP, TYPE, then "name value". */
static void metric_u64(FILE *f, const char *name, const char *type, const char *help, uint64_t v)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
		(unsigned long long)v);
}

static void metric_secs(FILE *f, const char *name, const char *help, uint64_t ns)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n%s %.6f\n", name, help, name, name,
		(double)ns / NS_PER_S);
}

/* A state set: name{label="NAME"} 1 for the current one of names[0..n), 0 for the others. */
static void metric_stateset(FILE *f, const char *name, const char *help, const char *label,
			    const char *const *names, int n, int cur)
{
	fprintf(f, "# HELP %s %s\n# TYPE %s gauge\n", name, help, name);
	for (int i = 0; i < n; i++)
		fprintf(f, "%s{%s=\"%s\"} %d\n", name, label, names[i], i == cur);
}

/* What both roles serve first: the build, the role and its state. */
static void metrics_common(FILE *f, bool primary, const char *const *states, int nr_states,
			   int state)
{
	static const char *const roles[] = { "primary", "secondary" };

	fprintf(f,
		"# HELP ftd_build_info The ftd version and the replication protocol it speaks.\n"
		"# TYPE ftd_build_info gauge\n"
		"ftd_build_info{version=\"%s\",protocol=\"%u\"} 1\n",
		RINGFT_VERSION, (unsigned int)RINGFT_PROTOCOL_VERSION);
	metric_stateset(f, "ftd_role", "1 for the role this ftd has now.", "role", roles, 2,
			primary ? 0 : 1);
	metric_stateset(f, "ftd_state", "1 for the state of the role now (ftctl status).", "state",
			states, nr_states, state);
}

void ftd_primary_metrics(struct ftd_primary *a, struct json_object *r)
{
	const char *states[PRIMARY_PROTECTED + 1];
	struct primary_stats *st = &a->p->st;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f)
		return;
	for (int i = 0; i <= PRIMARY_PROTECTED; i++)
		states[i] = primary_state_name((enum primary_state)i);
	metrics_common(f, true, states, PRIMARY_PROTECTED + 1, (int)a->p->state);
	if (st->last_ack_ns)
		metric_secs(f, "ftd_last_ack_age_seconds",
			    "Time since the secondary last acknowledged a checkpoint.",
			    clock_now_ns() - st->last_ack_ns);
	metric_u64(f, "ftd_sessions_total", "counter", "Handshakes with a secondary completed.",
		   st->sessions);
	metric_u64(f, "ftd_frozen", "gauge", "1 while the guest is stopped for want of quorum.",
		   a->frozen);
	fprintf(f,
		"# HELP ftd_checkpoints_total Checkpoints taken.\n"
		"# TYPE ftd_checkpoints_total counter\nftd_checkpoints_total %llu\n"
		"# HELP ftd_checkpoints_acked_total Checkpoints the secondary acknowledged.\n"
		"# TYPE ftd_checkpoints_acked_total counter\nftd_checkpoints_acked_total %llu\n"
		"# HELP ftd_replication_bytes_total Bytes handed to the replication sockets.\n"
		"# TYPE ftd_replication_bytes_total counter\nftd_replication_bytes_total %llu\n"
		"# HELP ftd_verify_mismatches_total Checkpoints whose replica hash differed.\n"
		"# TYPE ftd_verify_mismatches_total counter\nftd_verify_mismatches_total %llu\n"
		"# HELP ftd_output_held_bytes Guest output waiting for an acknowledgement.\n"
		"# TYPE ftd_output_held_bytes gauge\nftd_output_held_bytes %llu\n"
		"# HELP ftd_protected 1 while the secondary holds a checkpoint of this guest.\n"
		"# TYPE ftd_protected gauge\nftd_protected %d\n"
		"# HELP ftd_checkpoint_interval_seconds The checkpoint interval now.\n"
		"# TYPE ftd_checkpoint_interval_seconds gauge\nftd_checkpoint_interval_seconds "
		"%.6f\n"
		"# HELP ftd_checkpoint_interval_auto 1 while --interval auto chooses it.\n"
		"# TYPE ftd_checkpoint_interval_auto gauge\nftd_checkpoint_interval_auto %d\n"
		"# HELP ftd_live_harvests_total Harvests taken while the guest ran.\n"
		"# TYPE ftd_live_harvests_total counter\nftd_live_harvests_total %llu\n"
		"# HELP ftd_checkpoint_pause_seconds Guest-visible pause per checkpoint.\n"
		"# TYPE ftd_checkpoint_pause_seconds histogram\n",
		(unsigned long long)st->checkpoints, (unsigned long long)st->acked,
		(unsigned long long)primary_bytes_sent(a->p), (unsigned long long)st->mismatches,
		(unsigned long long)commit_held(&a->pr->commit), a->p->state == PRIMARY_PROTECTED,
		(double)a->interval_ns / NS_PER_S, a->auto_iv.enabled,
		(unsigned long long)st->live_harvests);
	histogram_prometheus(f, "ftd_checkpoint_pause_seconds", "", &st->all_pause_us);
	ftd_net_metrics(&a->pr->net, &a->pr->frames, f);
	ftd_disk_metrics(a->pr->disk, f);
	fclose(f);
	json_add_str(r, "text", text);
	json_add_str(r, "guest", a->pr->guest);
	free(text);
}

void ftd_secondary_metrics(struct ftd_secondary *sb, uint64_t now, struct json_object *r)
{
	const char *states[SECONDARY_ACTIVE + 1];
	struct secondary *s = sb->s;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f)
		return;
	for (int i = 0; i <= SECONDARY_ACTIVE; i++)
		states[i] = secondary_state_name((enum secondary_state)i);
	metrics_common(f, false, states, SECONDARY_ACTIVE + 1, (int)s->state);
	metric_u64(f, "ftd_epochs_applied_total", "counter",
		   "Epochs applied to the replica, initial-sync batches included.", s->st.epochs);
	metric_u64(f, "ftd_checkpoints_applied_total", "counter",
		   "Checkpoints applied to the replica.", s->st.checkpoints);
	if (s->replica.has_checkpoint)
		metric_u64(f, "ftd_replica_checkpoint", "gauge",
			   "The checkpoint the replica holds (absent: none complete).",
			   s->replica.checkpoint);
	if (s->st.last_apply_ns)
		metric_secs(f, "ftd_last_apply_age_seconds",
			    "Time since the replica last applied a checkpoint.",
			    now - s->st.last_apply_ns);
	fprintf(f,
		"# HELP ftd_apply_seconds From an epoch staged to its ACK queued.\n"
		"# TYPE ftd_apply_seconds summary\n"
		"ftd_apply_seconds_sum %.6f\nftd_apply_seconds_count %llu\n",
		(double)s->st.apply_ns / NS_PER_S, (unsigned long long)s->st.epochs);
	metric_u64(f, "ftd_replication_bytes_received_total", "counter",
		   "Bytes received over every replication connection.",
		   secondary_bytes_received(s));
	metric_u64(f, "ftd_verify_mismatches_total", "counter",
		   "Checkpoints whose replica hash differed.", s->st.mismatches);
	metric_u64(f, "ftd_refused_connections_total", "counter",
		   "Connections refused or closed for bad input.", s->st.refused);
	metric_u64(f, "ftd_sessions_total", "counter", "Sessions with a primary.", s->st.sessions);
	metric_u64(f, "ftd_replica_stale", "gauge",
		   "1 when the primary ran on without this replica (no automatic promotion).",
		   s->stale);
	if (s->disk.fd >= 0) {
		metric_u64(f, "ftd_replica_disk_bytes_total", "counter",
			   "Disk bytes written or zeroed in the replica's image.",
			   s->st.disk_bytes);
		metric_u64(f, "ftd_replica_disk_fdatasyncs_total", "counter",
			   "fdatasync()s of the replica's image (epochs with a guest flush).",
			   s->st.disk_syncs);
	}
	fclose(f);
	json_add_str(r, "text", text);
	json_add_str(r, "guest", s->guest[0] ? s->guest : sb->pr->guest);
	free(text);
}

/* uuid, generation, generations (history): the guest's identity in status. */
static void status_generation(struct json_object *r, const struct gen_state *g)
{
	char u[GEN_UUID_TEXT];
	struct json_object *h = json_object_new_array();

	gen_uuid_format(g->uuid, u);
	json_add_str(r, "uuid", gen_has_guest(g) ? u : NULL);
	if (gen_has_guest(g))
		json_add_u64(r, "generation", g->cur.number);
	else
		json_object_object_add(r, "generation", NULL);
	for (unsigned int i = 0; i < g->nr_history; i++)
		json_object_array_add(h, json_object_new_uint64(g->history[i].number));
	json_object_object_add(r, "history", h);
}

void ftd_primary_status(struct ftd_primary *a, struct json_object *r)
{
	struct primary *p = a->p;
	struct primary_stats *st = &p->st;
	struct json_object *pause = json_object_new_object();
	uint64_t now = clock_now_ns();

	json_add_str(r, "role", "primary");
	json_add_str(r, "state", primary_state_name(p->state));
	json_add_str(r, "version", RINGFT_VERSION);
	json_add_u64(r, "protocol", RINGFT_PROTOCOL_VERSION);
	/* The secondary of the session, from its HELLO: what a rolling upgrade needs to see. */
	if (p->state >= PRIMARY_SYNCING && p->peer_protocol) {
		json_add_u64(r, "peer_protocol", p->peer_protocol);
		if (p->peer_version[0])
			json_add_str(r, "peer_version", p->peer_version);
	}
	json_add_str(r, "peer", p->cfg.peer_len ? p->cfg.peer_name : NULL);
	json_add_str(r, "guest", a->pr->guest);
	json_add_str(r, "promoted_by", a->promoted_by);
	status_generation(r, &a->gen);
	if (a->promoted_by)
		json_add_u64(r, "promoted_from_checkpoint", a->promoted_checkpoint);
	json_add_u64(r, "epoch", p->next_epoch);
	json_add_u64(r, "checkpoints", st->checkpoints);
	json_add_u64(r, "acked", st->acked);
	if (st->last_ack_ns && p->state == PRIMARY_PROTECTED)
		json_add_u64(r, "last_ack_age_ms", (now - st->last_ack_ns) / NS_PER_MS);
	else
		json_object_object_add(r, "last_ack_age_ms", NULL);
	json_add_u64(r, "interval_us", a->interval_ns / NS_PER_US);
	json_object_object_add(r, "interval_auto", json_object_new_boolean(a->auto_iv.enabled));
	if (a->auto_iv.enabled) {
		struct json_object *ai = json_object_new_object();

		json_add_u64(ai, "overhead_pct", a->auto_iv.overhead_pct);
		json_add_u64(ai, "max_hold_us", a->auto_iv.max_hold_ns / NS_PER_US);
		json_add_str(ai, "bound", a->auto_iv.bound);
		json_object_object_add(ai, "overhead_exceeded",
				       json_object_new_boolean(a->auto_iv.overhead_exceeded));
		json_object_object_add(r, "interval_auto_budget", ai);
	}
	json_add_u64(r, "live_harvests", st->live_harvests);
	json_add_u64(r, "live_pages", st->live_pages);
	json_add_u64(pause, "p50", histogram_percentile(&st->all_pause_us, 50));
	json_add_u64(pause, "p99", histogram_percentile(&st->all_pause_us, 99));
	json_add_u64(pause, "max", st->all_pause_us.max);
	json_object_object_add(r, "pause_us", pause);
	json_add_u64(r, "dirty_pages_per_checkpoint",
		     st->checkpoints ? st->pages_total / st->checkpoints : 0);
	json_add_u64(r, "bytes_sent", primary_bytes_sent(p));
	json_add_u64(r, "bytes_per_s", a->bytes_per_s);
	json_add_u64(r, "verified", st->verified);
	json_add_u64(r, "mismatches", st->mismatches);
	json_add_u64(r, "held_bytes", commit_held(&a->pr->commit));
	if (a->pr->net.dev)
		ftd_net_status(&a->pr->net, &a->pr->frames, r);
	if (a->pr->disk)
		ftd_disk_status(a->pr->disk, st, r);
	json_add_u64(r, "console_offset", outbuf_stream_pos(&a->pr->out, outbuf_mark(&a->pr->out)));
	json_add_u64(r, "sessions", st->sessions);
	json_add_str(r, "quorum", ftd_cluster_quorum(&a->pr->fc));
	json_object_object_add(r, "frozen", json_object_new_boolean(a->frozen));
	if (p->state == PRIMARY_SYNCING) {
		json_add_u64(r, "sync_pages", st->sync_pages);
		json_add_u64(r, "sync_remaining", st->sync_remaining);
	}
}

void ftd_secondary_status(struct ftd_secondary *sb, uint64_t now, struct json_object *r)
{
	struct secondary *s = sb->s;

	json_add_str(r, "role", "secondary");
	json_add_str(r, "state", secondary_state_name(s->state));
	json_add_str(r, "version", RINGFT_VERSION);
	json_add_u64(r, "protocol", RINGFT_PROTOCOL_VERSION);
	if (s->session && s->peer_protocol) {
		json_add_u64(r, "peer_protocol", s->peer_protocol);
		if (s->peer_version[0])
			json_add_str(r, "peer_version", s->peer_version);
	}
	status_generation(r, &s->gen);
	json_object_object_add(r, "stale", json_object_new_boolean(s->stale));
	if (s->stale)
		json_add_u64(r, "stale_by_generation", s->stale_by.cur.number);
	json_add_str(r, "peer", secondary_peer(s));
	if (s->replica.has_checkpoint)
		json_add_u64(r, "checkpoint", s->replica.checkpoint);
	else
		json_object_object_add(r, "checkpoint", NULL);
	if (s->st.last_apply_ns && s->state == SECONDARY_REPLICATING)
		json_add_u64(r, "last_apply_age_ms", (now - s->st.last_apply_ns) / NS_PER_MS);
	else
		json_object_object_add(r, "last_apply_age_ms", NULL);
	json_add_u64(r, "epochs_applied", s->st.epochs);
	json_add_u64(r, "checkpoints", s->st.checkpoints);
	json_add_u64(r, "bytes_received", secondary_bytes_received(s));
	json_add_u64(r, "verified", s->st.verified);
	json_add_u64(r, "mismatches", s->st.mismatches);
	json_add_u64(r, "refused", s->st.refused);
	json_add_u64(r, "sessions", s->st.sessions);
	json_add_str(r, "quorum", ftd_cluster_quorum(&sb->pr->fc));
	if (s->disk.fd >= 0) {
		struct json_object *d = json_object_new_object();

		json_add_str(d, "path", s->disk.path);
		json_add_u64(d, "size", s->disk.size);
		json_add_u64(d, "bytes_applied", s->st.disk_bytes);
		json_add_u64(d, "records_applied", s->st.disk_writes);
		json_add_u64(d, "fdatasyncs", s->st.disk_syncs);
		json_add_u64(d, "apply_ms", s->st.disk_apply_ns / NS_PER_MS);
		json_object_object_add(d, "torn", json_object_new_boolean(s->replica.disk_torn));
		json_object_object_add(r, "disk", d);
	}
	if (sb->mirroring)
		json_add_u64(r, "console_offset",
			     outbuf_stream_pos(&sb->pr->out, outbuf_mark(&sb->pr->out)));
}

void ftd_primary_summary(struct ftd_primary *a)
{
	struct primary *p = a->p;

	log_info("summary: %llu checkpoints in %.1fs, %llu acknowledged (%llu verified, %llu "
		 "mismatches), %llu sessions, pause us p50=%llu p99=%llu max=%llu, ack us "
		 "p50=%llu p99=%llu",
		 (unsigned long long)p->st.checkpoints,
		 (double)(clock_now_ns() - a->start_ns) / NS_PER_S, (unsigned long long)p->st.acked,
		 (unsigned long long)p->st.verified, (unsigned long long)p->st.mismatches,
		 (unsigned long long)p->st.sessions,
		 (unsigned long long)histogram_percentile(&p->st.all_pause_us, 50),
		 (unsigned long long)histogram_percentile(&p->st.all_pause_us, 99),
		 (unsigned long long)p->st.all_pause_us.max,
		 (unsigned long long)histogram_percentile(&p->st.all_ack_us, 50),
		 (unsigned long long)histogram_percentile(&p->st.all_ack_us, 99));
	if (p->st.checkpoints) {
		char parts[256];
		size_t at = 0;

		for (int i = 0; i < PRIMARY_PARTS; i++)
			at += (size_t)snprintf(
				parts + at, sizeof(parts) - at, " %s=%llu", primary_part_names[i],
				(unsigned long long)histogram_percentile(&p->st.part_us[i], 50));
		log_info("pause p50 by part, us:%s", parts);
		log_info(
			"live harvests: %llu, %llu of %llu checkpoint pages copied while the guest "
			"ran",
			(unsigned long long)p->st.live_harvests,
			(unsigned long long)p->st.live_pages,
			(unsigned long long)p->st.pages_total);
	}
}

void ftd_secondary_summary(const struct secondary *s)
{
	log_info("summary: %llu epochs applied (%llu checkpoints, %llu verified, %llu "
		 "mismatches), %llu sessions, %llu connections refused",
		 (unsigned long long)s->st.epochs, (unsigned long long)s->st.checkpoints,
		 (unsigned long long)s->st.verified, (unsigned long long)s->st.mismatches,
		 (unsigned long long)s->st.sessions, (unsigned long long)s->st.refused);
}
