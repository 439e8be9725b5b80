// SPDX-License-Identifier: MIT
/*
 * `ftd primary` and `ftd secondary`: the process around the replication
 * engines. One owner thread polls the signalfd, the VM's event fd, the
 * checkpoint timer and the io_uring; it drives checkpoints, network
 * completions, output release and the statistics line.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/kvm.h>
#include <systemd/sd-daemon.h>

#include "daemon/control.h"
#include "daemon/log.h"
#include "daemon/replication.h"
#include "daemon/run.h"
#include "primary/replicate.h"
#include "secondary/receiver.h"
#include "vmm/clock.h"
#include "vmm/memhash.h"
#include "vmm/vm.h"

#define NS_PER_S     1000000000ULL
#define OUTBUF_BYTES (16u << 20)
#define RECONNECT_NS NS_PER_S

/* What both sides put in HELLO; cpuid is malloc'ed. */
static int local_hello(const struct ftd_options *o, struct vm *vm, uint32_t role,
		       struct hello_info *h, uint8_t **ret_cpuid)
{
	size_t len = 0;
	int r = vm_get_cpuid(vm, ret_cpuid, &len);

	if (r < 0)
		return r;
	memset(h, 0, sizeof(*h));
	h->protocol_version = RINGFT_PROTOCOL_VERSION;
	h->role = role;
	h->mem_size = vm->mem_size;
	h->nr_vcpus = vm->nr_vcpus;
	h->page_size = (uint32_t)VM_PAGE_SIZE;
	h->kvm_api_version = (uint32_t)ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	h->xsave_size = vm->xsave_size;
	h->tracking = dirty_mode_name(o->tracking);
	h->ring_entries = o->tracking == DIRTY_RING ? vm->ring_entries : 0;
	h->cpuid = *ret_cpuid;
	h->cpuid_len = len;
	h->msrs = vm->msr_list;
	h->nr_msrs = vm->nr_msrs;
	h->guest = role == HELLO_PRIMARY ? o->guest : "";
	for (unsigned int i = 0; i < vm->nr_devices && i < HELLO_MAX_DEVICES; i++)
		h->devices[h->nr_devices++] = vm->devices[i]->ops->name;
	h->verify = o->verify;
	return 0;
}

static int parse_addr_opt(const char *opt, const char *value, struct sockaddr_storage *ss,
			  socklen_t *len)
{
	char err[160];

	if (net_parse_addr(value, ss, len, err, sizeof(err)) < 0) {
		log_error("--%s: %s", opt, err);
		return -EINVAL;
	}
	return 0;
}

/* ---- primary ---------------------------------------------------------------- */

static void outbuf_sink(void *opaque, const uint8_t *buf, size_t len)
{
	outbuf_append(opaque, buf, len);
}

struct pwindow {
	uint64_t start_ns;
	uint64_t checkpoints;
	uint64_t bytes;
};

static void primary_stats_line(struct primary *p, struct pwindow *w, uint64_t now)
{
	struct primary_stats *st = &p->st;
	double secs = (double)(now - w->start_ns) / 1e9;
	uint64_t bytes = primary_bytes_sent(p);
	uint64_t n = st->checkpoints - w->checkpoints;

	fprintf(stderr,
		"ftd: stats state=%s epoch=%llu checkpoints=%llu acked=%llu rate=%.0f/s "
		"skipped=%llu early=%llu dirty/ckpt p50=%llu max=%llu pause_us p50=%llu p99=%llu "
		"max=%llu ack_us p50=%llu p99=%llu wire_MBps=%.1f verified=%llu mismatches=%llu "
		"held_bytes=%llu sync_pages=%llu sync_remaining=%llu\n",
		primary_state_name(p->state), (unsigned long long)p->next_epoch,
		(unsigned long long)st->checkpoints, (unsigned long long)st->acked,
		secs > 0 ? (double)n / secs : 0.0, (unsigned long long)st->skipped,
		(unsigned long long)st->early,
		(unsigned long long)samples_percentile(&st->pages, 50),
		(unsigned long long)samples_max(&st->pages),
		(unsigned long long)samples_percentile(&st->pause_us, 50),
		(unsigned long long)samples_percentile(&st->pause_us, 99),
		(unsigned long long)samples_max(&st->pause_us),
		(unsigned long long)samples_percentile(&st->ack_us, 50),
		(unsigned long long)samples_percentile(&st->ack_us, 99),
		secs > 0 ? (double)(bytes - w->bytes) / secs / 1e6 : 0.0,
		(unsigned long long)st->verified, (unsigned long long)st->mismatches,
		(unsigned long long)outbuf_held(p->out), (unsigned long long)st->sync_pages,
		(unsigned long long)st->sync_remaining);
	samples_reset(&st->pause_us);
	samples_reset(&st->ack_us);
	samples_reset(&st->pages);
	w->start_ns = now;
	w->checkpoints = st->checkpoints;
	w->bytes = bytes;
}

static void json_add_u64(struct json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

static void json_add_str(struct json_object *o, const char *key, const char *v)
{
	json_object_object_add(o, key, v ? json_object_new_string(v) : NULL);
}

struct primary_ctl {
	struct primary *p;
	const struct ftd_options *o;
	uint64_t interval_ns; /* the current one: `ftctl set interval` changes it */
	int timer_fd;
};

/* `ftctl set interval D`: from the next tick on. */
static int primary_set_interval(struct primary_ctl *pc, const char *arg, struct json_object *r)
{
	uint64_t ns;
	char msg[128];

	if (parse_duration(arg, &ns) < 0 || ns < 1000000ULL || ns > 60000000000ULL) {
		snprintf(msg, sizeof(msg), "interval '%.32s' is not a duration between 1ms and 60s",
			 arg);
		json_object_object_add(r, "error", json_object_new_string(msg));
		return -ERANGE;
	}
	if (ftd_timer_set(pc->timer_fd, ns) < 0) {
		snprintf(msg, sizeof(msg), "cannot set the timer: %s", strerror(errno));
		json_object_object_add(r, "error", json_object_new_string(msg));
		return -errno;
	}
	log_info("checkpoint interval set to %.3f ms (was %.3f ms)", (double)ns / 1e6,
		 (double)pc->interval_ns / 1e6);
	pc->interval_ns = ns;
	json_add_u64(r, "interval_us", ns / 1000);
	return 0;
}

/* Prometheus text exposition, in the reply's "text". */
static void primary_metrics(struct primary_ctl *pc, struct json_object *r)
{
	static const uint64_t bounds_us[] = { 100,   250,   500,   1000,   2500,  5000,
					      10000, 25000, 50000, 100000, 250000 };
	struct primary_stats *st = &pc->p->st;
	char *text = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&text, &len);

	if (!f)
		return;
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
		"# HELP ftd_checkpoint_pause_seconds Guest-visible pause per checkpoint.\n"
		"# TYPE ftd_checkpoint_pause_seconds histogram\n",
		(unsigned long long)st->checkpoints, (unsigned long long)st->acked,
		(unsigned long long)primary_bytes_sent(pc->p), (unsigned long long)st->mismatches,
		(unsigned long long)outbuf_held(pc->p->out), pc->p->state == PRIMARY_PROTECTED);
	for (size_t i = 0; i < sizeof(bounds_us) / sizeof(bounds_us[0]); i++)
		fprintf(f, "ftd_checkpoint_pause_seconds_bucket{le=\"%g\"} %llu\n",
			(double)bounds_us[i] / 1e6,
			(unsigned long long)histogram_count_le(&st->all_pause_us, bounds_us[i]));
	fprintf(f,
		"ftd_checkpoint_pause_seconds_bucket{le=\"+Inf\"} %llu\n"
		"ftd_checkpoint_pause_seconds_sum %.6f\n"
		"ftd_checkpoint_pause_seconds_count %llu\n",
		(unsigned long long)st->all_pause_us.n, (double)st->all_pause_us.sum / 1e6,
		(unsigned long long)st->all_pause_us.n);
	fclose(f);
	json_add_str(r, "text", text);
	free(text);
}

/* `ftctl status` on a primary: the schema is documented in ctl/README.md. */
static int primary_control(void *opaque, const char *command, struct json_object *r)
{
	struct primary_ctl *pc = opaque;
	struct primary *p = pc->p;
	struct primary_stats *st = &p->st;
	struct json_object *pause = json_object_new_object();
	uint64_t now = clock_now_ns();

	if (!strncmp(command, "set interval ", 13)) {
		json_object_put(pause);
		return primary_set_interval(pc, command + 13, r);
	}
	if (!strcmp(command, "metrics")) {
		json_object_put(pause);
		primary_metrics(pc, r);
		return 0;
	}
	if (strcmp(command, "status")) {
		json_object_put(pause);
		return -EINVAL;
	}
	json_add_str(r, "role", "primary");
	json_add_str(r, "state", primary_state_name(p->state));
	json_add_str(r, "peer", p->cfg.peer_name);
	json_add_str(r, "guest", pc->o->guest);
	json_add_u64(r, "epoch", p->next_epoch);
	json_add_u64(r, "checkpoints", st->checkpoints);
	json_add_u64(r, "acked", st->acked);
	if (st->last_ack_ns && p->state == PRIMARY_PROTECTED)
		json_add_u64(r, "last_ack_age_ms", (now - st->last_ack_ns) / 1000000);
	else
		json_object_object_add(r, "last_ack_age_ms", NULL);
	json_add_u64(r, "interval_us", pc->interval_ns / 1000);
	json_add_u64(pause, "p50", histogram_percentile(&st->all_pause_us, 50));
	json_add_u64(pause, "p99", histogram_percentile(&st->all_pause_us, 99));
	json_add_u64(pause, "max", st->all_pause_us.max);
	json_object_object_add(r, "pause_us", pause);
	json_add_u64(r, "dirty_pages_per_checkpoint",
		     st->checkpoints ? st->pages_total / st->checkpoints : 0);
	json_add_u64(r, "bytes_sent", primary_bytes_sent(p));
	json_add_u64(r, "verified", st->verified);
	json_add_u64(r, "mismatches", st->mismatches);
	json_add_u64(r, "held_bytes", outbuf_held(p->out));
	json_add_u64(r, "sessions", st->sessions);
	return 0;
}

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
		netloop_wait(p->nl, 1000000ULL);
	}
	while (p->state == PRIMARY_PROTECTED && p->nr_unacked && clock_now_ns() < deadline)
		netloop_wait(p->nl, 5000000ULL);
}

static int primary_loop(struct primary *p, struct vm *vm, const struct ftd_options *o, int sig_fd,
			int timer_fd, int console_fd)
{
	uint64_t start = clock_now_ns(), next_stats = start + NS_PER_S;
	struct pwindow w = { .start_ns = start };
	int status = 0, r;

	for (;;) {
		struct pollfd pfd[4] = {
			{ .fd = sig_fd, .events = POLLIN },
			{ .fd = vm->event_fd, .events = POLLIN },
			{ .fd = timer_fd, .events = POLLIN },
			{ .fd = netloop_fd(p->nl), .events = POLLIN },
		};
		uint64_t now, expirations;
		unsigned int events;

		if (poll(pfd, 4, 100) < 0 && errno != EINTR) {
			log_error("poll failed: %s", strerror(errno));
			return 1;
		}
		if ((pfd[0].revents & POLLIN) && ftd_read_signal(sig_fd))
			break;
		netloop_dispatch(p->nl);
		events = vm_take_events(vm);
		if (events & VM_EVENT_STOPPED)
			return ftd_report_stopped(vm);
		r = 0;
		if (events & VM_EVENT_RING_FULL)
			r = primary_checkpoint(p, true);
		if (r == 0 && read(timer_fd, &expirations, sizeof(expirations)) > 0) {
			r = primary_checkpoint(p, false);
			/* Ticks that passed while this thread was busy are checkpoints not taken.
			 */
			p->st.skipped += expirations - 1;
		}
		if (r == -ESRCH)
			return ftd_report_stopped(vm);
		if (r < 0) {
			log_error("Checkpoint failed: %s", strerror(-r));
			return 1;
		}
		now = clock_now_ns();
		primary_tick(p, now);
		netloop_dispatch(p->nl);
		if (outbuf_flush(p->out, console_fd) < 0 && !status)
			log_warning("Writing the console failed: %s (output is kept)",
				    strerror(errno));
		if (now >= next_stats) {
			/* systemd: a one-line status, and the loop is alive (WatchdogSec=). */
			sd_notifyf(0,
				   "WATCHDOG=1\nSTATUS=primary: %s, epoch %llu, %llu acknowledged",
				   primary_state_name(p->state), (unsigned long long)p->next_epoch,
				   (unsigned long long)p->st.acked);
			if (!o->quiet)
				primary_stats_line(p, &w, now);
			next_stats = now + NS_PER_S;
		}
		if (o->duration_ns && now - start >= o->duration_ns)
			break;
	}
	return status;
}

int ftd_primary(const struct ftd_options *o)
{
	struct primary_config cfg = { .timeout_ns = o->timeout_ns,
				      .reconnect_ns = RECONNECT_NS,
				      .verify = o->verify };
	struct primary *p = NULL;
	struct primary_ctl pctl;
	struct control *ctl = NULL;
	struct netloop nl;
	bool nl_ok = false;
	struct outbuf out = { 0 };
	struct vm *vm = NULL;
	uint8_t *cpuid = NULL;
	struct stat sb;
	int console_fd = -1, sig_fd = -1, timer_fd = -1, status = 1, r;
	uint64_t start = clock_now_ns();

	signal(SIGPIPE, SIG_IGN);
	if (parse_addr_opt("peer", o->peer, &cfg.peer, &cfg.peer_len) < 0)
		return 2;
	net_format_addr((struct sockaddr *)&cfg.peer, cfg.peer_name, sizeof(cfg.peer_name));
	console_fd = ftd_open_console(o->console);
	if (console_fd < 0) {
		log_error("Failed to open console %s: %s", o->console, strerror(errno));
		return 1;
	}
	/* A pipe nobody drains must not stall the loop: output waits in the buffer. */
	if (fstat(console_fd, &sb) == 0 && (S_ISFIFO(sb.st_mode) || S_ISSOCK(sb.st_mode)))
		fcntl(console_fd, F_SETFL, fcntl(console_fd, F_GETFL) | O_NONBLOCK);
	r = outbuf_init(&out, OUTBUF_BYTES);
	sig_fd = ftd_signalfd();
	timer_fd = ftd_timerfd(o->interval_ns);
	if (r < 0 || sig_fd < 0 || timer_fd < 0) {
		log_error("Failed to set up the output buffer, signals and timer");
		goto out;
	}
	status = ftd_make_vm(o, outbuf_sink, &out, true, &vm);
	if (status)
		goto out;
	status = 1;
	r = local_hello(o, vm, HELLO_PRIMARY, &cfg.hello, &cpuid);
	if (r == 0)
		r = netloop_init(&nl, o->send_zc);
	if (r < 0) {
		log_error("Failed to set up io_uring: %s", strerror(-r));
		goto out;
	}
	nl_ok = true;
	p = calloc(1, sizeof(*p));
	r = p ? primary_init(p, vm, &nl, &out, &cfg) : -ENOMEM;
	if (r < 0) {
		log_error("Failed to set up checkpoint staging: %s", strerror(-r));
		free(p);
		p = NULL;
		goto out;
	}
	r = vm_start(vm);
	if (r < 0) {
		log_error("Failed to start vCPU threads: %s", strerror(-r));
		goto out;
	}
	pctl = (struct primary_ctl){
		.p = p, .o = o, .interval_ns = o->interval_ns, .timer_fd = timer_fd
	};
	if (control_open(&nl, o->control, primary_control, &pctl, &ctl) < 0)
		goto out;
	ftd_owner_priority(o, vm);
	log_info("primary: running %s (%llu MiB, %u vCPUs, %s tracking%s), checkpoint every "
		 "%.3f ms, secondary %s%s",
		 o->guest, (unsigned long long)(o->mem_size >> 20), o->vcpus,
		 dirty_mode_name(o->tracking),
		 vm->ring_flush_quirk ? ", kvm_pvm translation flush" : "",
		 (double)o->interval_ns / 1e6, cfg.peer_name,
		 o->verify ? ", verifying memory" : "");
	sd_notifyf(0, "READY=1\nSTATUS=primary: running %s, connecting to %s", o->guest,
		   cfg.peer_name);
	status = primary_loop(p, vm, o, sig_fd, timer_fd, console_fd);
	if (status == 0)
		primary_final_checkpoint(p);
	log_info("summary: %llu checkpoints in %.1fs, %llu acknowledged (%llu verified, %llu "
		 "mismatches), %llu sessions, pause us p50=%llu p99=%llu max=%llu, ack us "
		 "p50=%llu p99=%llu",
		 (unsigned long long)p->st.checkpoints, (double)(clock_now_ns() - start) / 1e9,
		 (unsigned long long)p->st.acked, (unsigned long long)p->st.verified,
		 (unsigned long long)p->st.mismatches, (unsigned long long)p->st.sessions,
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
	}
out:
	control_close(ctl);
	if (p) {
		primary_free(p);
		free(p);
	}
	if (nl_ok)
		netloop_free(&nl);
	vm_free(vm);
	if (out.buf) {
		/* Whatever was acknowledged (or unprotected) leaves; the rest never existed. */
		outbuf_flush(&out, console_fd);
		if (outbuf_held(&out))
			log_info("%llu console bytes of unacknowledged checkpoints withheld",
				 (unsigned long long)outbuf_held(&out));
		outbuf_free(&out);
	}
	free(cpuid);
	if (timer_fd >= 0)
		close(timer_fd);
	if (sig_fd >= 0)
		close(sig_fd);
	close(console_fd);
	return status;
}

/* ---- secondary -------------------------------------------------------------- */

struct swindow {
	uint64_t start_ns;
	uint64_t bytes;
	uint64_t epochs;
	uint64_t apply_ns;
};

static void secondary_stats_line(struct secondary *s, struct swindow *w, uint64_t now)
{
	double secs = (double)(now - w->start_ns) / 1e9;
	uint64_t bytes = secondary_bytes_received(s), n = s->st.epochs - w->epochs;

	fprintf(stderr,
		"ftd: stats state=%s epoch=%llu checkpoints=%llu rate=%.0f/s verified=%llu "
		"mismatches=%llu refused=%llu wire_MBps=%.1f apply_us avg=%llu max=%llu "
		"sync_pages=%llu\n",
		secondary_state_name(s->state),
		(unsigned long long)(s->replica.epoch == UINT64_MAX ? 0 : s->replica.epoch),
		(unsigned long long)s->st.checkpoints, secs > 0 ? (double)n / secs : 0.0,
		(unsigned long long)s->st.verified, (unsigned long long)s->st.mismatches,
		(unsigned long long)s->st.refused,
		secs > 0 && bytes >= w->bytes ? (double)(bytes - w->bytes) / secs / 1e6 : 0.0,
		(unsigned long long)(n ? (s->st.apply_ns - w->apply_ns) / n / 1000 : 0),
		(unsigned long long)(s->st.apply_max_ns / 1000),
		(unsigned long long)s->st.sync_pages);
	s->st.apply_max_ns = 0;
	w->start_ns = now;
	w->bytes = bytes;
	w->epochs = s->st.epochs;
	w->apply_ns = s->st.apply_ns;
}

/* Hashing all memory takes a while: only when it changed, or once at exit. */
/*
 * The promoted guest runs unprotected here: a full dirty ring only needs
 * emptying, and a guest that stopped ends the daemon with its reason.
 */
static int promoted_events(struct vm *vm, struct dirty_set *scratch)
{
	unsigned int ev = vm_take_events(vm);
	int r = 0;

	if (ev & VM_EVENT_STOPPED)
		return -ftd_report_stopped(vm);
	if (ev & VM_EVENT_RING_FULL) {
		if (!scratch->bits && dirty_set_init(scratch, vm->nr_pages) < 0)
			return -ENOMEM;
		dirty_set_clear(scratch);
		r = vm_harvest_paused(vm, scratch);
		if (r == -EIO)
			r = 0; /* nobody needs these pages */
		if (r < 0)
			log_error("Emptying the dirty rings failed: %s", strerror(-r));
	}
	return r;
}

/* `ftctl status` on a secondary. */
static int secondary_control(void *opaque, const char *command, struct json_object *r)
{
	struct secondary *s = opaque;
	uint64_t now = clock_now_ns();

	if (!strcmp(command, "failover") || !strcmp(command, "failover --force")) {
		int e = secondary_promote(s, command[8] != 0);
		char msg[160];

		if (e == 0) {
			json_add_u64(r, "checkpoint", s->replica.checkpoint);
			return 0;
		}
		snprintf(msg, sizeof(msg), "%s",
			 e == -EBUSY	  ? "the primary is still connected: it may be alive (use "
					    "--force to promote anyway)"
			 : e == -ENODATA  ? "the replica holds no complete checkpoint"
			 : e == -EALREADY ? "already promoted: the guest runs here"
					  : strerror(-e));
		if (e != -EBUSY && e != -ENODATA && e != -EALREADY)
			log_error("Failover failed: %s", msg);
		json_object_object_add(r, "error", json_object_new_string(msg));
		return e;
	}
	if (strcmp(command, "status"))
		return -EINVAL;
	json_add_str(r, "role", "secondary");
	json_add_str(r, "state", secondary_state_name(s->state));
	json_add_str(r, "peer", secondary_peer(s));
	if (s->replica.has_checkpoint)
		json_add_u64(r, "checkpoint", s->replica.checkpoint);
	else
		json_object_object_add(r, "checkpoint", NULL);
	if (s->st.last_apply_ns && s->state == SECONDARY_REPLICATING)
		json_add_u64(r, "last_apply_age_ms", (now - s->st.last_apply_ns) / 1000000);
	else
		json_object_object_add(r, "last_apply_age_ms", NULL);
	json_add_u64(r, "epochs_applied", s->st.epochs);
	json_add_u64(r, "checkpoints", s->st.checkpoints);
	json_add_u64(r, "bytes_received", secondary_bytes_received(s));
	json_add_u64(r, "verified", s->st.verified);
	json_add_u64(r, "mismatches", s->st.mismatches);
	json_add_u64(r, "refused", s->st.refused);
	json_add_u64(r, "sessions", s->st.sessions);
	return 0;
}

static void log_replica(struct secondary *s, const char *when, bool always)
{
	if (!always && !s->replica_changed)
		return;
	s->replica_changed = false;
	if (s->state == SECONDARY_ACTIVE) {
		log_info("%s: the guest runs here, promoted from checkpoint %llu", when,
			 (unsigned long long)s->replica.checkpoint);
		return;
	}
	if (!s->replica.has_checkpoint) {
		log_info("%s: the replica holds no complete checkpoint", when);
		return;
	}
	log_info("%s: replica at checkpoint %llu, memory xxh3 %016llx", when,
		 (unsigned long long)s->replica.checkpoint,
		 (unsigned long long)secondary_replica_hash(s));
}

int ftd_secondary(const struct ftd_options *o)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	struct secondary *s = NULL;
	struct control *ctl = NULL;
	struct dirty_set relief = { 0 };
	struct hello_info hello;
	struct netloop nl;
	bool nl_ok = false;
	struct vm *vm = NULL;
	uint8_t *cpuid = NULL;
	int console_fd = -1, sig_fd = -1, status = 1, r;
	uint64_t start = clock_now_ns(), next_stats = start + NS_PER_S;
	struct swindow w = { .start_ns = start };
	enum secondary_state last_state = SECONDARY_WAITING;

	signal(SIGPIPE, SIG_IGN);
	if (parse_addr_opt("listen", o->listen, &ss, &sl) < 0)
		return 2;
	console_fd = ftd_open_console(o->console);
	if (console_fd < 0) {
		log_error("Failed to open console %s: %s", o->console, strerror(errno));
		return 1;
	}
	sig_fd = ftd_signalfd();
	if (sig_fd < 0) {
		log_error("Failed to set up signals: %s", strerror(errno));
		goto out;
	}
	status = ftd_make_vm(o, ftd_console_write, &console_fd, false, &vm);
	if (status)
		goto out;
	status = 1;
	r = local_hello(o, vm, HELLO_SECONDARY, &hello, &cpuid);
	if (r == 0)
		r = netloop_init(&nl, false);
	if (r < 0) {
		log_error("Failed to set up io_uring: %s", strerror(-r));
		goto out;
	}
	nl_ok = true;
	s = calloc(1, sizeof(*s));
	r = s ? secondary_init(s, vm, &nl, (struct sockaddr *)&ss, sl, &hello, o->timeout_ns)
	      : -ENOMEM;
	if (r < 0) {
		log_error("Cannot listen on %s: %s", o->listen, strerror(-r));
		free(s);
		s = NULL;
		goto out;
	}
	/*
	 * Only when asked: with no vCPU running here the automatic rule does not
	 * apply, and a real-time thread hashing memory for --verify would take a
	 * whole CPU from whatever shares this host.
	 */
	if (o->realtime == 1)
		ftd_owner_priority(o, vm);
	if (control_open(&nl, o->control, secondary_control, s, &ctl) < 0) {
		status = 1;
		goto out;
	}
	log_info("secondary: listening on %s for a primary (%llu MiB, %u vCPUs, %s tracking)",
		 o->listen, (unsigned long long)(o->mem_size >> 20), o->vcpus,
		 dirty_mode_name(o->tracking));
	sd_notifyf(0, "READY=1\nSTATUS=secondary: listening on %s", o->listen);
	status = 0;
	for (;;) {
		struct pollfd pfd[3] = {
			{ .fd = sig_fd, .events = POLLIN },
			{ .fd = netloop_fd(&nl), .events = POLLIN },
			{ .fd = vm->event_fd, .events = POLLIN },
		};
		uint64_t now;

		if (poll(pfd, 3, 100) < 0 && errno != EINTR) {
			log_error("poll failed: %s", strerror(errno));
			status = 1;
			break;
		}
		if ((pfd[0].revents & POLLIN) && ftd_read_signal(sig_fd))
			break;
		netloop_dispatch(&nl);
		if (s->state == SECONDARY_ACTIVE && promoted_events(vm, &relief) < 0) {
			status = 1;
			break;
		}
		now = clock_now_ns();
		secondary_tick(s, now);
		netloop_dispatch(&nl);
		if (s->state == SECONDARY_WAITING && last_state != SECONDARY_WAITING)
			log_replica(s, "primary gone", false);
		last_state = s->state;
		if (now >= next_stats) {
			sd_notifyf(0, "WATCHDOG=1\nSTATUS=secondary: %s, %llu checkpoints applied",
				   secondary_state_name(s->state),
				   (unsigned long long)s->st.checkpoints);
			if (!o->quiet)
				secondary_stats_line(s, &w, now);
			next_stats = now + NS_PER_S;
		}
		if (o->duration_ns && now - start >= o->duration_ns)
			break;
	}
	log_replica(s, "stopping", true);
	log_info("summary: %llu epochs applied (%llu checkpoints, %llu verified, %llu "
		 "mismatches), %llu sessions, %llu connections refused",
		 (unsigned long long)s->st.epochs, (unsigned long long)s->st.checkpoints,
		 (unsigned long long)s->st.verified, (unsigned long long)s->st.mismatches,
		 (unsigned long long)s->st.sessions, (unsigned long long)s->st.refused);
out:
	control_close(ctl);
	dirty_set_free(&relief);
	if (s) {
		secondary_free(s);
		free(s);
	}
	if (nl_ok)
		netloop_free(&nl);
	vm_free(vm);
	free(cpuid);
	if (sig_fd >= 0)
		close(sig_fd);
	if (console_fd >= 0)
		close(console_fd);
	return status;
}
