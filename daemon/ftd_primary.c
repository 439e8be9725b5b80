// SPDX-License-Identifier: MIT
/*
 * The primary: the guest runs here, `ftd primary` from boot or a
 * secondary once promoted. One owner thread polls the signalfd, the VM's
 * event fd, the checkpoint timer, the io_uring and the cluster; it drives
 * checkpoints, network completions, output release and the statistics line.
 * With --cluster the guest runs only while this node is quorate, and output
 * the secondary does not hold starts a new data generation (docs/failover.md).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <systemd/sd-daemon.h>

#include "daemon/events.h"
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

/* A last checkpoint, acknowledged, so that the output up to now can leave. */
static void primary_final_checkpoint(struct primary *p)
{
	uint64_t deadline;

	if (p->state != PRIMARY_PROTECTED)
		return;
	deadline = clock_now_ns() + NS_PER_S;
	for (;;) {
		uint64_t skipped = p->st.skipped;

		if (p->state != PRIMARY_PROTECTED || primary_checkpoint(p, false) < 0 ||
		    p->st.skipped == skipped || clock_now_ns() >= deadline)
			break;
		/* Both slots were busy: wait for one. */
		netloop_wait(p->nl, NS_PER_MS);
	}
	while (p->state == PRIMARY_PROTECTED && p->nr_unacked && clock_now_ns() < deadline)
		netloop_wait(p->nl, 5000000ULL);
}

/*
 * --cluster: /run/ftd/cluster-NAME.active exists while the guest runs here, for
 * a qdevice heuristics command (`exec_ftd: /usr/bin/test -e ...`): on a tie
 * after a cut, qnetd then prefers the side that runs the guest.
 */
static void ftd_primary_marker(struct ftd_primary *a, bool on)
{
	char path[128];
	int fd;

	if (!a->pr->fc.c)
		return;
	snprintf(path, sizeof(path), CONTROL_DIR "/cluster-%s.active", a->o->cluster);
	if (!on) {
		unlink(path);
		return;
	}
	mkdir(CONTROL_DIR, 0700);
	fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
	if (fd < 0)
		log_warning("Cannot create %s (qdevice heuristics): %s", path, strerror(errno));
	else
		close(fd);
}

/*
 * --cluster: at start nothing runs here yet, whatever a crashed ftd left
 * behind (the run directory survives it): a stale marker would make qnetd
 * favour a node that does not run the guest.
 */
void stale_marker_clear(const struct ftd_options *o)
{
	char path[128];

	if (!o->cluster[0])
		return;
	snprintf(path, sizeof(path), CONTROL_DIR "/cluster-%s.active", o->cluster);
	if (unlink(path) == 0)
		log_warning("Removed %s left by an earlier ftd: the guest does not run here (yet)",
			    path);
	else if (errno != ENOENT)
		log_warning("Cannot remove the stale %s: %s", path, strerror(errno));
}

/* The guest runs on without its replica: the next generation starts here. */
static void ftd_primary_gen_bump(struct ftd_primary *a)
{
	char u[GEN_UUID_TEXT], num[24];
	int r;

	gen_bump(&a->gen, genstore_tag());
	a->gen_replicated = false;
	a->p->cfg.hello.gen = a->gen;
	gen_uuid_format(a->gen.uuid, u);
	log_warning("Running unprotected: guest %s moves to generation %llu (the secondary's "
		    "copy, generation %llu, is behind from here on)",
		    u, (unsigned long long)a->gen.cur.number,
		    (unsigned long long)a->gen.history[0].number);
	r = genstore_save(a->o->state_dir, &a->gen);
	if (r < 0)
		log_error("Cannot store the generation in %s: %s", a->o->state_dir, strerror(-r));
	snprintf(num, sizeof(num), "%llu", (unsigned long long)a->gen.cur.number);
	event_emit(a->pr->ctl, "generation", "uuid", u, "generation", num, NULL);
	if (a->pr->fc.c) {
		a->announce_wait = true;
		a->announce_sent = false;
	}
}

/*
 * Generations and the first contact, before output is flushed: a protected
 * session means the secondary holds this generation; once it is lost, output
 * that leaves without it starts the next (with a cluster, ftd_primary_quorum does
 * it when output may leave). A primary that booted its guest holds all output
 * until the secondary first answered: told there that another node runs the
 * guest or holds a newer generation of it, it stops with nothing shown.
 */
static void ftd_primary_generation(struct ftd_primary *a)
{
	struct primary *p = a->p;
	bool cluster = a->pr->fc.c;

	if (p->state == PRIMARY_PROTECTED)
		a->gen_replicated = true;
	else if (!cluster && a->gen_replicated && p->state < PRIMARY_SYNCING &&
		 p->handover == HANDOVER_NONE)
		ftd_primary_gen_bump(a);
	if (p->refused_field[0] && (!strcmp(p->refused_field, "generation") ||
				    (a->first_contact && (!strcmp(p->refused_field, "guest") ||
							  !strcmp(p->refused_field, "running")))))
		a->stop_why = !strcmp(p->refused_field, "running")
				      ? "the secondary runs the guest: this node must not run "
					"a second copy"
			      : !strcmp(p->refused_field, "guest")
				      ? "the secondary holds a checkpoint of another guest: "
					"booting a new one here would abandon it (discard it "
					"there with `ftctl discard` to start anew)"
				      : "the secondary holds a newer generation of this guest: "
					"an older one must not run";
	p->refused_field[0] = 0;
	/*
	 * A session that connected and ended unanswered (the peer busy promoting,
	 * its pre-HELLO deadline passed) says nothing: a promoted node may be
	 * there, so output stays held until a real answer or no peer at all.
	 */
	if (a->first_contact && (p->attempts > p->unanswered || p->state >= PRIMARY_SYNCING) &&
	    !a->stop_why) {
		int r = genstore_save(a->o->state_dir, &a->gen);

		/* Only a guest that may run here replaces what the node held before. */
		if (r < 0)
			log_warning("Cannot store the guest's identity in %s: %s", a->o->state_dir,
				    strerror(-r));
		a->first_contact = false;
		if (!cluster)
			commit_gate(&a->pr->commit, false, false);
	}
}

/*
 * --cluster: the guest runs only while this node is quorate. Losing quorum
 * stops it at once (the other side may promote once it has waited for that);
 * it resumes when quorum is back only if the secondary still follows this
 * guest (protected: it cannot have promoted). Otherwise it stays stopped for
 * an operator: the guest may run elsewhere now.
 */
static void ftd_primary_quorum(struct ftd_primary *a)
{
	struct primary *p = a->p;
	struct ftd_cluster *fc = &a->pr->fc;
	bool open;

	if (!fc->c)
		return;
	/*
	 * Unprotected output may leave only while no secondary can promote over
	 * it. After losing its secondary this node may be the isolated side that
	 * has not been told yet: the replication timeout can fire before totem
	 * reports the membership change, and votequorum decides on it later
	 * still. So output waits --cluster-wait after the loss (the time the
	 * secondary itself waits before it may promote), unless the secondary's
	 * ftd ended (it cannot promote); and always needs quorum decided for the
	 * current membership. The guest runs meanwhile; if quorum goes, it stops
	 * with that output unreleased.
	 */
	open = fc->quorate && cluster_quorum_settled(fc->c) &&
	       (!p->lost_ns || (fc->peer_left && !fc->left_by_node) ||
		clock_now_ns() - p->lost_ns >= a->o->cluster_wait_ns);
	/*
	 * Output the secondary's checkpoint does not hold starts a new generation,
	 * and leaves only once every member got it (our own announcement came
	 * back): the secondary then knows its replica is stale before anything
	 * it lacks is seen, and does not promote it by itself.
	 */
	if (open && !a->frozen && a->gen_replicated && p->state < PRIMARY_SYNCING &&
	    p->handover == HANDOVER_NONE)
		ftd_primary_gen_bump(a);
	if (a->announce_wait && !a->announce_sent && announce_gen(fc, &a->gen) == 0)
		a->announce_sent = true;
	if (a->announce_wait)
		open = false;
	commit_gate(&a->pr->commit, true, open);
	if (!fc->quorate && !a->frozen) {
		int r = vm_pause(a->pr->vm, 0, NULL);

		a->frozen = true;
		primary_freeze(p, true);
		ftd_primary_marker(a, false);
		log_error("Lost quorum: the guest is stopped here (the other side may take it "
			  "over)%s",
			  r < 0 ? "; pausing the vCPUs failed" : "");
		event_emit(a->pr->ctl, "frozen", "reason", "lost quorum", NULL);
	} else if (a->frozen && fc->quorate && primary_may_thaw(p)) {
		a->frozen = false;
		primary_freeze(p, false);
		vm_resume(a->pr->vm);
		ftd_primary_marker(a, true);
		log_info("Quorum is back and the secondary still follows this guest: it runs on");
		event_emit(a->pr->ctl, "thawed", NULL);
	}
}

/* The loop's: the statistics line's window beside the primary. */
struct ftd_primary_loop_ctx {
	struct ftd_primary *a;
	struct pwindow w;
};

/* Cluster, network, the VM's events and the timer: a checkpoint when they ask. */
static int ftd_primary_io(void *opaque)
{
	struct ftd_primary *a = ((struct ftd_primary_loop_ctx *)opaque)->a;
	struct ftd_process *pr = a->pr;
	struct primary *p = a->p;
	uint64_t expirations;
	unsigned int events;
	int r = 0;

	ftd_cluster_dispatch(&pr->fc);
	ftd_primary_quorum(a);
	if (a->first_contact) /* nothing leaves before the peer has answered */
		commit_gate(&pr->commit, true, false);
	netloop_dispatch(&pr->nl);
	events = vm_take_events(pr->vm);
	if (events & VM_EVENT_STOPPED)
		return ftd_report_stopped(pr->vm);
	if (events & VM_EVENT_RING_FULL)
		r = primary_checkpoint(p, true);
	if (r == 0 && read(a->timer_fd, &expirations, sizeof(expirations)) > 0) {
		r = primary_checkpoint(p, false);
		/* Ticks that passed while this thread was busy are checkpoints not taken. */
		p->st.skipped += expirations - 1;
	}
	if (r == -ESRCH)
		return ftd_report_stopped(pr->vm);
	if (r < 0) {
		log_error("Checkpoint failed: %s", strerror(-r));
		event_emit(a->pr->ctl, "checkpoint-failed", "error", strerror(-r), NULL);
		return 1;
	}
	return FTD_LOOP_ON;
}

/*
 * --output-interval: when the output no checkpoint covers yet may have its
 * checkpoint (that long after the last one), UINT64_MAX: none waiting.
 */
static uint64_t ftd_primary_output_due(struct ftd_primary *a)
{
	struct primary *p = a->p;

	/* Without a free slot the ACK that frees one wakes the loop. */
	if (!a->o->output_interval_ns || !commit_unmarked(&a->pr->commit) ||
	    !primary_output_checkpoint_possible(p))
		return UINT64_MAX;
	return p->last_ckpt_ns + a->o->output_interval_ns;
}

/* The engine's timed work, generations, output release, events, a handover's end. */
static int ftd_primary_tick(void *opaque, uint64_t now)
{
	struct ftd_primary *a = ((struct ftd_primary_loop_ctx *)opaque)->a;
	struct ftd_process *pr = a->pr;
	struct primary *p = a->p;

	primary_tick(p, now);
	netloop_dispatch(&pr->nl);
	hook_reap();
	if (a->sec)
		secondary_tick(a->sec, now);
	ftd_primary_generation(a);
	if (a->stop_why) {
		vm_pause(pr->vm, 0, NULL);
		log_error("Stopping the guest: %s%s%s%s", a->stop_why,
			  p->refused_desc[0] ? " (" : "", p->refused_desc,
			  p->refused_desc[0] ? ")" : "");
		event_emit(a->pr->ctl, "refused", "reason", a->stop_why, NULL);
		return 1;
	}
	if (outbuf_flush(&pr->out, pr->console_fd) < 0)
		log_warning("Writing the console failed: %s (output is kept)", strerror(errno));
	if (ftd_devices_work(pr->vm, &pr->net, now) < 0)
		return 1;
	if (ftd_primary_output_due(a) <= now) {
		int r = primary_checkpoint_for_output(p);

		if (r < 0 && r != -ESRCH) {
			log_error("Checkpoint failed: %s", strerror(-r));
			return 1;
		}
		if (r == -ESRCH)
			return ftd_report_stopped(pr->vm);
		/* Taken: it leaves now, and the periodic one comes a whole interval after it. */
		if (r == 1) {
			netloop_dispatch(&pr->nl);
			if (ftd_timer_set(a->timer_fd, a->interval_ns) < 0)
				log_warning("Failed to re-arm the checkpoint timer: %s",
					    strerror(errno));
		}
	}
	ftd_primary_events(a, now);
	if (p->handover == HANDOVER_DONE || p->handover == HANDOVER_UNKNOWN) {
		/* Let the answer and the last output leave before the guest goes. */
		for (int i = 0; i < 20 && pr->nl.inflight; i++)
			netloop_wait(&pr->nl, 5000000ULL);
		return p->handover == HANDOVER_DONE ? 0 : 1;
	}
	return FTD_LOOP_ON;
}

static void ftd_primary_second(void *opaque, uint64_t now)
{
	struct ftd_primary_loop_ctx *al = opaque;
	struct ftd_primary *a = al->a;
	struct primary *p = a->p;
	uint64_t sent = primary_bytes_sent(p);

	ftd_primary_auto_interval(a);
	a->bytes_per_s = (sent - a->rate_bytes) * NS_PER_S / (now - a->rate_ns);
	a->rate_bytes = sent;
	a->rate_ns = now;
	/* systemd: a one-line status, and the loop is alive (WatchdogSec=). */
	sd_notifyf(0, "WATCHDOG=1\nSTATUS=primary: %s, epoch %llu, %llu acknowledged",
		   primary_state_name(p->state), (unsigned long long)p->next_epoch,
		   (unsigned long long)p->st.acked);
	if (!a->o->quiet)
		ftd_primary_stats_line(p, a->pr->frames.buf ? &a->pr->frames : NULL, a->pr->disk,
				       &al->w, now);
}

/* A live harvest is timed work of the engine's: the wait ends for it. */
static uint64_t ftd_primary_next_due(void *opaque)
{
	struct ftd_primary_loop_ctx *al = opaque;
	uint64_t engine = primary_next_due(al->a->p), net = ftd_net_next_due(&al->a->pr->net);
	uint64_t output = ftd_primary_output_due(al->a);

	engine = engine < net ? engine : net;
	return engine < output ? engine : output;
}

/* SIGHUP. */
static void ftd_primary_reload(void *opaque)
{
	struct ftd_primary_loop_ctx *al = opaque;

	ftd_primary_apply_reload(al->a, ftd_reload(al->a->pr));
}

static int ftd_primary_loop(struct ftd_primary *a)
{
	static const struct ftd_loop_ops ops = {
		.io = ftd_primary_io,
		.tick = ftd_primary_tick,
		.second = ftd_primary_second,
		.reload = ftd_primary_reload,
		.next_due = ftd_primary_next_due,
	};
	struct ftd_process *pr = a->pr;
	uint64_t start = clock_now_ns();
	struct ftd_primary_loop_ctx al = { .a = a, .w = { .start_ns = start } };
	struct ftd_loop l = {
		.ops = &ops,
		.opaque = &al,
		.sig_fd = pr->sig_fd,
		.fds = { pr->vm->event_fd, a->timer_fd, netloop_fd(&pr->nl), vm_device_fd(pr->vm) },
		.nr_fds = 4,
		.fc = &pr->fc,
		.mh = pr->mh,
		.metrics_fn = ftd_primary_control,
		.metrics_opaque = a,
		.max_wait_ns = 100 * NS_PER_MS,
		.next_second_ns = start + NS_PER_S,
		.end_ns = a->o->duration_ns ? a->start_ns + a->o->duration_ns : 0,
	};

	a->rate_ns = start;
	a->rate_bytes = primary_bytes_sent(a->p);
	return ftd_loop_run(&l);
}

static void ftd_primary_on_gen(void *opaque, const struct gen_state *g, bool from_self,
			       uint32_t nodeid);

static bool handed_over;

bool ftd_primary_handed_over(void)
{
	return handed_over;
}

int ftd_primary_run(struct ftd_primary *a, const char *peer)
{
	struct primary_config cfg = { .timeout_ns = a->o->timeout_ns,
				      .reconnect_ns = RECONNECT_NS,
				      .verify = a->o->verify,
				      .disk = a->pr->disk,
				      .live = (enum primary_live)a->o->live_harvest,
				      .tls = a->pr->tls };
	int status = 1, r;

	a->start_ns = clock_now_ns();
	if (peer) {
		if (parse_addr_opt("peer", peer, &cfg.peer, &cfg.peer_len) < 0)
			return 2;
		net_format_addr((struct sockaddr *)&cfg.peer, cfg.peer_name, sizeof(cfg.peer_name));
	}
	a->timer_fd = ftd_timerfd(a->o->interval_ns);
	a->interval_ns = a->o->interval_ns;
	if (a->o->interval_auto)
		auto_interval_init(&a->auto_iv, a->o->auto_overhead_pct, a->o->auto_max_hold_ns);
	if (a->timer_fd < 0) {
		log_error("Failed to set up the checkpoint timer: %s", strerror(errno));
		goto out;
	}
	r = local_hello(a->o, a->pr->vm, a->pr->disk, HELLO_PRIMARY, &cfg.hello, &a->cpuid);
	cfg.hello.gen = a->gen;
	cfg.hello.guest = a->pr->guest; /* a promoted secondary's is its old primary's */
	/* A guest booted here says nothing until its secondary has first answered. */
	a->first_contact = peer && !a->promoted_by;
	if (r < 0) {
		log_error("Failed to read the VM's CPUID for the handshake: %s", strerror(-r));
		goto out;
	}
	a->p = calloc(1, sizeof(*a->p));
	r = a->p ? primary_init(a->p, a->pr->vm, &a->pr->nl, &a->pr->out, &a->pr->commit, &cfg)
		 : -ENOMEM;
	if (r < 0) {
		log_error("Failed to set up checkpoint staging: %s", strerror(-r));
		free(a->p);
		a->p = NULL;
		goto out;
	}
	/* A promoted guest's address moves here: the network must learn its port. */
	if (ftd_net_attach(&a->pr->net, a->promoted_by != NULL) < 0) {
		if (!a->promoted_by)
			goto out; /* a guest booted here: its configuration is wrong */
		ftd_net_attach_later(&a->pr->net);
	}
	ftd_net_hold_in(&a->pr->net, &a->pr->frames);
	control_set_handler(a->pr->ctl, ftd_primary_control, a);
	a->pr->fc.on_gen = ftd_primary_on_gen;
	a->pr->fc.gen_opaque = a;
	a->pr->fc.running = &a->gen;
	ftd_owner_priority(a->o, a->pr->vm);
	event_emit(a->pr->ctl, "role", "role", "primary", "by",
		   a->promoted_by ? a->promoted_by : "start", NULL);
	ftd_primary_marker(a, true);
	status = ftd_primary_loop(a);
	a->pr->fc.running = NULL;
	ftd_primary_marker(a, false);
	handed_over = a->p->handover == HANDOVER_DONE;
	/* Role auto starts again as a secondary after a switchover (ftd.c): not a stop. */
	if (!(handed_over && a->o->role == FTD_ROLE_AUTO))
		sd_notify(0, "STOPPING=1");
	if (status == 0 && a->p->handover == HANDOVER_NONE)
		primary_final_checkpoint(a->p);
	/* The guest ends at its last checkpoint: nothing it does after may show. */
	if (!a->frozen && a->p->handover == HANDOVER_NONE)
		vm_pause(a->pr->vm, 0, NULL);
	ftd_primary_summary(a);
out:
	if (control_waiting(a->pr->ctl)) {
		struct json_object *rep = json_object_new_object();

		json_add_str(rep, "error", "ftd is stopping");
		control_answer(a->pr->ctl, -ECANCELED, rep);
	}
	if (a->p) {
		primary_free(a->p);
		free(a->p);
		a->p = NULL;
	}
	free(a->cpuid);
	a->cpuid = NULL;
	if (a->timer_fd >= 0)
		close(a->timer_fd);
	a->timer_fd = -1;
	return status;
}

/*
 * `ftd primary` boots its guest from nothing: that is a new guest, with a new
 * UUID, whatever this node held before (a guest it ran or a replica it kept
 * cannot be resumed from here). Says so, and stores it.
 */
static int new_guest(const struct ftd_options *o, struct gen_state *g)
{
	struct gen_state old;
	uint8_t uuid[GEN_UUID_SIZE];
	char u[GEN_UUID_TEXT], before[128] = "";
	int r = genstore_load(o->state_dir, &old);

	if (r == 0 && gen_has_guest(&old)) {
		gen_describe(&old, before, sizeof(before));
		snprintf(before + strlen(before), sizeof(before) - strlen(before), ", ");
	} else if (r < 0 && r != -ENOENT) {
		log_warning("Ignoring %s/generation: %s", o->state_dir,
			    r == -EINVAL ? "not a generation file" : strerror(-r));
	}
	r = genstore_random(uuid, sizeof(uuid));
	if (r < 0) {
		log_error("Cannot make a guest UUID: %s", strerror(-r));
		return r;
	}
	gen_new_guest(g, uuid, genstore_tag());
	gen_uuid_format(g->uuid, u);
	log_info("guest: booting %s from nothing: a new guest, UUID %s, generation 1 (this node "
		 "held %sbefore)",
		 o->guest, u, before[0] ? before : "nothing ");
	/* Stored once its secondary has first answered (ftd_primary_generation). */
	return 0;
}

/* --cluster: another ftd announced a generation of our guest. */
static void ftd_primary_on_gen(void *opaque, const struct gen_state *g, bool from_self,
			       uint32_t nodeid)
{
	struct ftd_primary *a = opaque;
	char l[128], r[128];
	enum gen_relation rel = gen_compare(&a->gen, g);

	if (from_self) {
		if (a->announce_wait && rel == GEN_SAME) {
			a->announce_wait = false;
			log_info("cluster: the group has generation %llu: unprotected output may "
				 "leave",
				 (unsigned long long)a->gen.cur.number);
		}
		return;
	}
	if (rel != GEN_LOCAL_OLDER && rel != GEN_DIVERGED)
		return;
	gen_describe(&a->gen, l, sizeof(l));
	gen_describe(g, r, sizeof(r));
	log_error("cluster: node %u is at %s, this node at %s (%s)", nodeid, r, l,
		  gen_relation_name(rel));
	/*
	 * Older: a node that held our generation moved on (it was promoted), so
	 * ours must not run. Diverged: both ran on their own; which one the world
	 * saw last is not known here, so the operator decides (logged above).
	 */
	if (rel == GEN_LOCAL_OLDER && !a->stop_why)
		a->stop_why = "another node moved this guest to a newer generation";
}

int ftd_primary_boot(struct ftd_primary *a, const char *peer)
{
	const struct ftd_options *o = a->o;
	struct ftd_process *pr = a->pr;
	int r;

	if (o->cluster[0] &&
	    (wait_quorum(&pr->fc, pr->sig_fd) < 0 || cluster_boot_check(&pr->fc, pr->sig_fd) < 0))
		return 1;
	if (new_guest(o, &a->gen) < 0)
		return 1;
	if (a->sec) {
		/* A waiting node's listener: it tells primaries that the guest runs here. */
		a->sec->hello.gen = a->gen;
		a->sec->hello.holds = HOLDS_RUNNING;
	}
	r = vm_start(pr->vm);
	if (r < 0) {
		log_error("Failed to start vCPU threads: %s", strerror(-r));
		return 1;
	}
	pr->booted = true;
	log_info("primary: running %s (%llu MiB, %u vCPUs, %s tracking), checkpoint every "
		 "%.3f ms, secondary %s%s",
		 o->guest, (unsigned long long)(o->mem_size >> 20), o->vcpus,
		 dirty_mode_name(o->tracking), (double)o->interval_ns / NS_PER_MS,
		 peer ? peer : "none", o->verify ? ", verifying memory" : "");
	sd_notifyf(0, "READY=1\nSTATUS=primary: running %s, connecting to %s", o->guest,
		   peer ? peer : "no secondary");
	return ftd_primary_run(a, peer);
}

int ftd_primary(const struct ftd_options *o)
{
	struct ftd_process pr;
	struct ftd_primary a = { .o = o, .pr = &pr, .timer_fd = -1 };
	int status;

	status = ftd_process_open(&pr, o, "peer", o->peer, true, o->send_zc);
	if (status)
		goto out;
	status = 1;
	if (ftd_process_serve(&pr, ftd_primary_control, &a) < 0)
		goto out;
	status = ftd_primary_boot(&a, o->peer);
out:
	ftd_process_close(&pr);
	tls_ctx_free(a.tls_named);
	return status;
}
