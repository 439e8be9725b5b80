// SPDX-License-Identifier: MIT
/*
 * The secondary: `ftd secondary` keeps a replica for the primary that
 * connects, mirrors the committed console stream, and promotes it when an
 * operator or the automatic failover asks and failover_decide() agrees
 * (fencing the old primary first when configured). A promoted replica goes on
 * in the same process as the primary (ftd_primary_run).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <systemd/sd-daemon.h>

#include "daemon/events.h"
#include "daemon/failover.h"
#include "daemon/genstore.h"
#include "daemon/hooks.h"
#include "daemon/loop.h"
#include "daemon/reload.h"
#include "daemon/replication.h"
#include "daemon/role.h"
#include "daemon/run.h"
#include "daemon/status.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "vmm/vm.h"

/*
 * An applied checkpoint's console bytes: the committed output stream goes to
 * this side's console too, so a promoted guest continues it exactly.
 */
static void mirror_console(void *opaque, uint64_t offset, const uint8_t *data, size_t len)
{
	struct ftd_secondary *sb = opaque;
	uint64_t mark = outbuf_mark(&sb->pr->out);
	uint64_t pos = outbuf_stream_pos(&sb->pr->out, mark);

	if (!sb->mirroring || offset != pos) {
		if (sb->mirroring)
			log_warning("console: the committed stream jumps from offset %llu to %llu "
				    "(a new session, or output the primary could not replicate)",
				    (unsigned long long)pos, (unsigned long long)offset);
		log_info("console: writing the guest's committed output from stream offset %llu",
			 (unsigned long long)offset);
		/*
		 * A gap after what this console holds (a switchover's old primary
		 * that the new one ran ahead of, a file of an earlier process):
		 * the cut line ends there rather than running on into the text after
		 * the gap.
		 */
		if (offset != pos || !mark)
			outbuf_end_line(&sb->pr->out);
		outbuf_rebase(&sb->pr->out, offset);
		sb->mirroring = true;
	}
	outbuf_append(&sb->pr->out, data, len);
	outbuf_allow(&sb->pr->out, outbuf_mark(&sb->pr->out));
	sb->committed_end = outbuf_stream_pos(&sb->pr->out, outbuf_mark(&sb->pr->out));
}

/* What the failover decision (daemon/failover.c) needs, as this secondary sees it now. */
static void ftd_secondary_view(const struct ftd_secondary *sb, bool manual, bool force,
			       uint64_t now, struct failover_view *ret_v)
{
	const struct ftd_cluster *fc = &sb->pr->fc;
	const struct secondary *s = sb->s;
	bool cluster = fc->c;

	/*
	 * A session exists exactly while the secondary is SYNCING or REPLICATING
	 * (and for a moment after a switchover promoted it, which `promoted`
	 * covers): the automatic rule's "no primary connected" is both.
	 */
	*ret_v = (struct failover_view){
		.manual = manual,
		.force = force,
		.promoted = s->state == SECONDARY_ACTIVE,
		.peer_connected = s->session != NULL,
		.syncing = s->state == SECONDARY_SYNCING,
		.sync_complete = s->replica.has_checkpoint,
		.checkpoint = s->replica.checkpoint,
		.generation = s->gen.cur.number,
		.stale = s->stale,
		.stale_by = s->stale_by.cur.number,
		.stale_behind = gen_behind(&s->gen, &s->stale_by),
		.stale_for_ns = now - s->stale_ns,
		.cluster = cluster,
		.auto_blocked = sb->auto_blocked,
		.quorate = cluster && fc->quorate && cluster_quorum_settled(fc->c),
		.peers = cluster ? fc->peers : 0,
		.peer_left = cluster && fc->peer_left,
		.peer_node_left = cluster && fc->left_by_node,
		.peer_nodeid = cluster ? fc->left_nodeid : 0,
		.peer_left_ago_ns = cluster ? now - fc->left_ns : 0,
		.cluster_wait_ns = sb->o->cluster_wait_ns,
		.fence = sb->o->fence_command[0] ? FAILOVER_FENCE_PENDING : FAILOVER_FENCE_NONE,
	};
}

/*
 * Runs the fence command before a promotion. Returns 0 once it exited 0, or
 * -EHOSTUNREACH with msg saying what went wrong (logged, and an event).
 */
static int ftd_secondary_fence(struct ftd_secondary *sb, char *msg, size_t msglen)
{
	struct secondary *s = sb->s;
	char peer[96], ck[48];
	const char *env[] = { "FTD_EVENT=fence", peer, ck, NULL };
	uint64_t t0 = clock_now_ns();
	int e;

	snprintf(peer, sizeof(peer), "FTD_PEER=%s", s->last_peer);
	snprintf(ck, sizeof(ck), "FTD_CHECKPOINT=%llu", (unsigned long long)s->replica.checkpoint);
	log_info("Fencing the primary %s before promotion: %s", s->last_peer, sb->o->fence_command);
	e = hook_run(sb->o->fence_command, env, sb->o->fence_timeout_ns);
	if (e != 0) {
		if (e == -ETIMEDOUT)
			snprintf(msg, msglen, "the fence command did not finish within %.0f s",
				 (double)sb->o->fence_timeout_ns / NS_PER_S);
		else if (e < 0)
			snprintf(msg, msglen, "the fence command could not run: %s", strerror(-e));
		else
			snprintf(msg, msglen, "the fence command failed (exit status %d)", e);
		log_error("Promotion refused: %s", msg);
		event_emit(sb->pr->ctl, "fence-failed", "peer", s->last_peer, "error", msg, NULL);
		return -EHOSTUNREACH;
	}
	log_info("Fenced the primary %s in %.1f ms", s->last_peer,
		 (double)(clock_now_ns() - t0) / NS_PER_MS);
	event_emit(sb->pr->ctl, "fenced", "peer", s->last_peer, NULL);
	return 0;
}

/*
 * Acts on a decision to promote: the fence command first when it says so,
 * then the decision again with the fence's result, then the promotion.
 * Returns 0, the decision's error (d->text says why), or secondary_promote's.
 */
static int ftd_secondary_failover(struct ftd_secondary *sb, const struct failover_view *v,
				  struct failover_decision *d)
{
	if (d->action == FAILOVER_PROMOTE && d->fence_first) {
		struct failover_view fenced = *v;
		char msg[160];

		fenced.fence = ftd_secondary_fence(sb, msg, sizeof(msg)) == 0
				       ? FAILOVER_FENCE_DONE
				       : FAILOVER_FENCE_FAILED;
		fenced.fence_error = msg;
		*d = failover_decide(&fenced);
	}
	if (d->action != FAILOVER_PROMOTE)
		return d->error;
	return secondary_promote(sb->s, v->force);
}

/* Logs why an automatic promotion waits, once per reason. */
static void ftd_secondary_wait(struct ftd_secondary *sb, const char *why)
{
	if (!strcmp(sb->waiting, why))
		return;
	snprintf(sb->waiting, sizeof(sb->waiting), "%.*s", (int)sizeof(sb->waiting) - 1, why);
	log_info("Automatic failover waits: %s", why);
}

/* --cluster: promote by ourselves once failover_decide() says it is safe. */
static void ftd_secondary_auto(struct ftd_secondary *sb, uint64_t now)
{
	struct failover_view v;
	struct failover_decision d;
	int e;

	ftd_secondary_view(sb, false, false, now, &v);
	d = failover_decide(&v);
	if (d.action != FAILOVER_PROMOTE) {
		if (!d.quiet)
			ftd_secondary_wait(sb, d.text);
		return;
	}
	/* Named first: secondary_promote() logs it ("Promoted (cluster: ...)"). */
	snprintf(sb->s->promoted_by, sizeof(sb->s->promoted_by), "%.*s",
		 (int)sizeof(sb->s->promoted_by) - 1, d.text);
	e = ftd_secondary_failover(sb, &v, &d);
	if (e < 0) {
		sb->auto_blocked = true;
		log_error("Automatic failover failed: %s; waiting for an operator",
			  d.action != FAILOVER_PROMOTE ? d.text : strerror(-e));
	}
}

/* Stores the replica's generation when it changed. */
static void ftd_secondary_store(struct ftd_secondary *sb)
{
	int r;

	if (!sb->s->gen_changed)
		return;
	sb->s->gen_changed = false;
	r = genstore_save(sb->o->state_dir, &sb->s->gen);
	if (r < 0)
		log_error("Cannot store the generation in %s: %s", sb->o->state_dir, strerror(-r));
}

/* `ftctl discard`: the replica stops counting; any primary may sync over it. */
static int ftd_secondary_discard(struct ftd_secondary *sb, struct json_object *r)
{
	struct secondary *s = sb->s;
	char was[128];
	bool had = s->replica.has_checkpoint;
	uint64_t ck = s->replica.checkpoint;
	int e;

	gen_describe(&s->gen, was, sizeof(was));
	e = secondary_discard(s);
	if (e < 0) {
		json_add_str(r, "error",
			     e == -EBUSY ? "a primary is connected: its replica is current"
					 : "already promoted: the guest runs here");
		return e;
	}
	ftd_secondary_store(sb);
	if (had)
		log_warning("Discarded the replica (checkpoint %llu of %s) on the operator's "
			    "request: any primary may sync over it now",
			    (unsigned long long)ck, was);
	else
		log_info("Discard: the replica held no checkpoint (%s)", was);
	event_emit(sb->pr->ctl, "discarded", "was", was, NULL);
	json_add_str(r, "discarded", had ? was : NULL);
	return 0;
}

/* --cluster: a generation announced in the group; a newer one makes the replica stale. */
static void ftd_secondary_on_gen(void *opaque, const struct gen_state *g, bool from_self,
				 uint32_t nodeid)
{
	struct ftd_secondary *sb = opaque;
	struct secondary *s = sb->s;
	char l[128], r[128], num[24];

	if (from_self || !secondary_mark_stale(s, g, clock_now_ns()))
		return;
	gen_describe(&s->gen, l, sizeof(l));
	gen_describe(g, r, sizeof(r));
	log_warning("The replica is stale: node %u ran the guest on without it and is at %s; "
		    "this replica (checkpoint %llu) is at %s. It is never promoted automatically "
		    "(`ftctl failover --force` would roll the guest back)",
		    nodeid, r, (unsigned long long)s->replica.checkpoint, l);
	snprintf(num, sizeof(num), "%llu", (unsigned long long)g->cur.number);
	event_emit(sb->pr->ctl, "stale", "generation", num, NULL);
}

/*
 * `ftctl start`: a node that waits for a primary and never had one boots the
 * guest itself. The loop ends (the state is SECONDARY_ACTIVE) and
 * ftd_secondary_boot() boots it. A guest that runs on the other node is not
 * shown twice: the booted guest holds its output until its secondary first
 * answered, and a node running the guest answers "running" (docs/failover.md).
 */
static int ftd_secondary_start(struct ftd_secondary *sb, struct json_object *r)
{
	struct secondary *s = sb->s;
	char msg[256];
	int e;

	if (sb->pr->fc.c && !sb->pr->fc.quorate) {
		json_add_str(r, "error",
			     "this node is not quorate: the guest may run on the other side");
		return -EAGAIN;
	}
	e = secondary_boot_here(s, "ftctl start");

	switch (e) {
	case 0:
		sb->booting = true;
		log_info("ftctl start: booting %s here", sb->o->guest);
		json_add_str(r, "guest", sb->o->guest);
		return 0;
	case -EBUSY:
		snprintf(msg, sizeof(msg), "a primary (%s) is connected: the guest runs there",
			 s->last_peer[0] ? s->last_peer : "?");
		break;
	case -EEXIST:
		snprintf(msg, sizeof(msg),
			 "this node holds checkpoint %llu of the guest: resume it with `ftctl "
			 "failover` (start would boot a new guest and abandon it)",
			 (unsigned long long)s->replica.checkpoint);
		break;
	case -ENOTEMPTY:
		snprintf(msg, sizeof(msg),
			 "a primary synced into this node's memory before: restart ftd here to "
			 "boot the guest from nothing");
		break;
	default:
		snprintf(msg, sizeof(msg), "the guest runs here already");
		break;
	}
	json_add_str(r, "error", msg);
	return e;
}

/* `ftctl status` and `ftctl failover` on a secondary. */
static int ftd_secondary_control(void *opaque, const struct request *req, struct json_object *r)
{
	struct ftd_secondary *sb = opaque;
	struct secondary *s = sb->s;
	uint64_t now = clock_now_ns();

	if (req->kind == REQ_DISCARD)
		return ftd_secondary_discard(sb, r);
	if (req->kind == REQ_START)
		return ftd_secondary_start(sb, r);
	if (req->kind == REQ_FAILOVER) {
		struct failover_view v;
		struct failover_decision d;
		char msg[256];
		int e;

		ftd_secondary_view(sb, true, req->force, now, &v);
		d = failover_decide(&v);
		e = ftd_secondary_failover(sb, &v, &d);
		if (e == 0) {
			if (v.stale) {
				failover_rollback_text(&v, msg, sizeof(msg));
				log_warning("Rollback: %s", msg);
			}
			json_add_u64(r, "checkpoint", s->replica.checkpoint);
			return 0;
		}
		if (d.action != FAILOVER_PROMOTE) {
			json_add_str(r, "error", d.text);
			return e;
		}
		/* Allowed, and the promotion itself failed. */
		snprintf(msg, sizeof(msg), "%s", strerror(-e));
		log_error("Failover failed: %s", msg);
		json_add_str(r, "error", msg);
		return e;
	}
	if (req->kind == REQ_METRICS) {
		ftd_secondary_metrics(sb, now, r);
		return 0;
	}
	if (req->kind != REQ_STATUS) {
		json_add_str(r, "error", "this is the secondary: ask the node that runs the guest");
		return -EPERM;
	}
	ftd_secondary_status(sb, now, r);
	return 0;
}

/* Hashing all memory takes a while: only when it changed, or once at exit. */
static void log_replica(struct secondary *s, const char *when, bool always)
{
	if (!always && !s->replica_changed)
		return;
	s->replica_changed = false;
	if (!s->replica.has_checkpoint) {
		log_info("%s: the replica holds no complete checkpoint", when);
		return;
	}
	log_info("%s: replica at checkpoint %llu, memory xxh3 %016llx", when,
		 (unsigned long long)s->replica.checkpoint,
		 (unsigned long long)secondary_replica_hash(s));
}

/*
 * A promotion starts a new generation: the old primary (and any node that
 * stayed at the replica's generation) is older from now on. Stored, and
 * announced to the cluster, before the promoted guest's output leaves.
 */
static void promoted_generation(struct ftd_secondary *sb, struct ftd_primary *a)
{
	struct secondary *s = sb->s;
	char u[GEN_UUID_TEXT];
	int r;

	if (!gen_has_guest(&s->gen)) {
		/* A primary without an identity (protocol tools): the guest is new here. */
		uint8_t uuid[GEN_UUID_SIZE] = { 0 };

		genstore_random(uuid, sizeof(uuid));
		gen_new_guest(&s->gen, uuid, genstore_tag());
	}
	gen_bump(&s->gen, genstore_tag());
	/* A stale replica promoted by force starts a branch numbered past what it was behind. */
	if (s->stale && s->gen.cur.number <= s->stale_by.cur.number)
		s->gen.cur.number = s->stale_by.cur.number < UINT64_MAX
					    ? s->stale_by.cur.number + 1
					    : UINT64_MAX; /* as gen_bump */
	s->hello.gen = s->gen;
	s->hello.holds = HOLDS_RUNNING;
	a->gen = s->gen;
	a->sec = s;
	gen_uuid_format(s->gen.uuid, u);
	log_info("Promoted: guest %s moves to generation %llu (from the replica's %llu)", u,
		 (unsigned long long)s->gen.cur.number,
		 (unsigned long long)s->gen.history[0].number);
	r = genstore_save(sb->o->state_dir, &s->gen);
	if (r < 0)
		log_error("Cannot store the generation in %s: %s", sb->o->state_dir, strerror(-r));
	if (sb->pr->fc.c) {
		if (announce_gen(&sb->pr->fc, &s->gen) < 0)
			log_warning("cluster: cannot announce the new generation");
	}
}

/* The loop's: what the secondary tracks from one pass to the next. */
struct ftd_secondary_loop_ctx {
	struct ftd_secondary *sb;
	enum secondary_state last_state;
	struct swindow w;
};

static int ftd_secondary_io(void *opaque)
{
	struct ftd_secondary_loop_ctx *sl = opaque;
	struct ftd_process *pr = sl->sb->pr;

	netloop_dispatch(&pr->nl);
	ftd_cluster_dispatch(&pr->fc);
	return FTD_LOOP_ON;
}

/* The receiver's timed work, the automatic failover, output, events; ends once promoted. */
static int ftd_secondary_tick(void *opaque, uint64_t now)
{
	struct ftd_secondary_loop_ctx *sl = opaque;
	struct ftd_secondary *sb = sl->sb;
	struct ftd_process *pr = sb->pr;
	struct secondary *s = sb->s;

	secondary_tick(s, now);
	netloop_dispatch(&pr->nl);
	ftd_secondary_auto(sb, now);
	ftd_secondary_store(sb);
	hook_reap();
	outbuf_flush(&pr->out, pr->console_fd);
	ftd_secondary_events(sb, sl->last_state);
	if (s->state == SECONDARY_WAITING && sl->last_state != SECONDARY_WAITING)
		log_replica(s, "primary gone", false);
	sl->last_state = s->state;
	if (s->state == SECONDARY_ACTIVE)
		return 0;
	return FTD_LOOP_ON;
}

static void ftd_secondary_second(void *opaque, uint64_t now)
{
	struct ftd_secondary_loop_ctx *sl = opaque;
	struct secondary *s = sl->sb->s;

	sd_notifyf(0, "WATCHDOG=1\nSTATUS=secondary: %s, %llu checkpoints applied",
		   secondary_state_name(s->state), (unsigned long long)s->st.checkpoints);
	if (!sl->sb->o->quiet)
		ftd_secondary_stats_line(s, &sl->w, now);
}

/*
 * Keeps the replica until a signal, --duration (from `start`) or a promotion
 * (the state is then SECONDARY_ACTIVE).
 * Returns 0, or 1 when polling failed.
 */
/* The disk's block sums go in slices: the wait ends at once while some are due. */
static uint64_t ftd_secondary_next_due(void *opaque)
{
	struct ftd_secondary_loop_ctx *sl = opaque;

	return secondary_busy(sl->sb->s) ? 0 : UINT64_MAX;
}

/* SIGHUP: the replica's timeout and TLS files, for the next primary. */
static void ftd_secondary_reload(void *opaque)
{
	struct ftd_secondary_loop_ctx *sl = opaque;
	struct ftd_secondary *sb = sl->sb;
	unsigned int what = ftd_reload(sb->pr);

	if (what & RELOAD_TIMEOUT)
		sb->s->timeout_ns = sb->o->timeout_ns;
	if (what & RELOAD_TLS)
		sb->s->tls = sb->pr->tls;
}

static int ftd_secondary_loop(struct ftd_secondary *sb, uint64_t start)
{
	static const struct ftd_loop_ops ops = {
		.reload = ftd_secondary_reload,
		.io = ftd_secondary_io,
		.tick = ftd_secondary_tick,
		.next_due = ftd_secondary_next_due,
		.second = ftd_secondary_second,
	};
	struct ftd_process *pr = sb->pr;
	struct ftd_secondary_loop_ctx sl = {
		.sb = sb,
		.last_state = SECONDARY_WAITING,
		.w = { .start_ns = start },
	};
	struct ftd_loop l = {
		.ops = &ops,
		.opaque = &sl,
		.sig_fd = pr->sig_fd,
		.fds = { netloop_fd(&pr->nl) },
		.nr_fds = 1,
		.fc = &pr->fc,
		.mh = pr->mh,
		.max_wait_ns = 100 * NS_PER_MS,
		.next_second_ns = start + NS_PER_S,
		.end_ns = sb->o->duration_ns ? start + sb->o->duration_ns : 0,
	};

	return ftd_loop_run(&l);
}

/* The guest runs here now: this process carries on as its primary (a). */
static int ftd_secondary_promoted(struct ftd_secondary *sb, struct ftd_primary *a)
{
	struct secondary *s = sb->s;
	char by[sizeof(s->promoted_by)];

	snprintf(by, sizeof(by), "%s", s->promoted_by);
	if (s->guest[0])
		snprintf(sb->pr->guest, sizeof(sb->pr->guest), "%s", s->guest);
	a->promoted_by = by;
	promoted_generation(sb, a);
	a->promoted_checkpoint = s->replica.checkpoint;
	/* Not outbuf's position now: the promoted vCPUs may have written already. */
	log_info("console: the guest continues the stream at offset %llu",
		 (unsigned long long)(sb->mirroring ? sb->committed_end : 0));
	/*
	 * s stays until the process ends: freeing it waits out receives still in
	 * flight. Role auto protects the guest again towards the other node,
	 * which becomes its secondary once ftd runs there again.
	 */
	if (sb->o->auto_peer[0])
		log_info("auto: protecting the guest towards the other node %s once it is there",
			 sb->o->auto_peer);
	return ftd_primary_run(a, sb->o->auto_peer[0] ? sb->o->auto_peer : NULL);
}

/* `ftctl start` ended the loop: the guest boots here from nothing, as `ftd primary` boots it. */
static int ftd_secondary_boot(struct ftd_secondary *sb, struct ftd_primary *a)
{
	int status = ftd_load_guest(sb->o, sb->pr->vm);

	if (status)
		return status;
	a->sec = sb->s;
	return ftd_primary_boot(a, sb->o->auto_peer[0] ? sb->o->auto_peer : NULL);
}

/* The replica lives in this process's memory: after a restart it holds nothing. */
static void ftd_secondary_forget(const struct ftd_options *o)
{
	struct gen_state old;
	char d[128];

	if (genstore_load(o->state_dir, &old) < 0 || !gen_has_guest(&old))
		return;
	gen_describe(&old, d, sizeof(d));
	log_info("state: this node held %s before; that copy did not survive the restart: it "
		 "holds nothing now",
		 d);
}

int ftd_secondary(const struct ftd_options *o)
{
	struct ftd_process pr;
	struct ftd_primary a = { .o = o, .pr = &pr, .timer_fd = -1 };
	struct ftd_secondary sb = { .o = o, .pr = &pr };
	struct hello_info hello;
	struct secondary *s;
	uint8_t *cpuid = NULL;
	uint64_t start = clock_now_ns();
	int status, r;

	status = ftd_process_open(&pr, o, "listen", o->listen, false, false);
	if (status)
		goto out;
	status = 1;
	r = local_hello(o, pr.vm, pr.disk, HELLO_SECONDARY, &hello, &cpuid);
	if (r < 0) {
		log_error("Failed to read the VM's CPUID for the handshake: %s", strerror(-r));
		goto out;
	}
	s = pr.sec = calloc(1, sizeof(*s));
	r = s ? secondary_init(s, pr.vm, &pr.nl, (struct sockaddr *)&pr.addr, pr.addr_len, &hello,
			       o->timeout_ns, pr.tls)
	      : -ENOMEM;
	if (r < 0) {
		log_error("Cannot listen on %s: %s", o->listen, strerror(-r));
		free(s);
		pr.sec = NULL;
		goto out;
	}
	if (o->disk[0]) {
		r = secondary_set_disk(s, o->disk);
		if (r < 0) {
			log_error("Cannot use disk image %s: %s", o->disk, strerror(-r));
			goto out;
		}
	}
	sb.s = s;
	ftd_secondary_forget(o);
	pr.fc.on_gen = ftd_secondary_on_gen;
	pr.fc.gen_opaque = &sb;
	s->console_fn = mirror_console;
	s->console_opaque = &sb;
	/*
	 * Only when asked: with no vCPU running here the automatic rule does not
	 * apply, and a real-time thread hashing memory for --verify would take a
	 * whole CPU from whatever shares this host.
	 */
	if (o->realtime == 1)
		ftd_owner_priority(o, pr.vm);
	if (o->cluster[0])
		s->auto_failover = true;
	if (ftd_process_serve(&pr, ftd_secondary_control, &sb) < 0)
		goto out;
	log_info("secondary: listening on %s for a primary (%llu MiB, %u vCPUs, %s tracking)%s",
		 o->listen, (unsigned long long)(o->mem_size >> 20), o->vcpus,
		 dirty_mode_name(o->tracking),
		 o->role == FTD_ROLE_AUTO ? "; role auto: the guest runs here only after "
					    "`ftctl start` or a failover"
					  : "");
	/* Ready once it listens: `systemctl start` of a secondary must not wait for a primary. */
	sd_notifyf(0, "READY=1\nSTATUS=secondary: listening on %s, waiting for a primary",
		   o->listen);
	event_emit(pr.ctl, "role", "role", "secondary", "by", "start", NULL);
	status = ftd_secondary_loop(&sb, start);
	if (s->state != SECONDARY_ACTIVE) {
		sd_notify(0, "STOPPING=1");
		log_replica(s, "stopping", true);
	}
	ftd_secondary_summary(s);
	if (s->state == SECONDARY_ACTIVE)
		status = sb.booting ? ftd_secondary_boot(&sb, &a) : ftd_secondary_promoted(&sb, &a);
out:
	ftd_process_close(&pr);
	free(cpuid);
	tls_ctx_free(a.tls_named);
	return status;
}
