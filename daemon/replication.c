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
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <linux/kvm.h>
#include <systemd/sd-daemon.h>

#include "daemon/autointerval.h"
#include "daemon/cluster.h"
#include "daemon/control.h"
#include "daemon/failover.h"
#include "daemon/genstore.h"
#include "daemon/hooks.h"
#include "daemon/log.h"
#include "daemon/replication.h"
#include "daemon/run.h"
#include "proto/tls.h"
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

/*
 * Mutual TLS from the options (NULL without): replication in the clear is
 * only allowed to a loopback address unless --insecure, which warns. Logs;
 * returns 0, or -EINVAL to refuse.
 */
static int replication_tls(const struct ftd_options *o, const struct sockaddr *addr,
			   const char *addr_text, SSL_CTX **ret)
{
	char err[384];

	if (o->tls_cert[0]) {
		if (*ret)
			return 0;
		if (tls_ctx_new(o->tls_cert, o->tls_key, o->tls_ca, o->tls_peer, ret, err,
				sizeof(err)) < 0) {
			log_error("%s", err);
			return -EINVAL;
		}
		log_info("replication: mutual TLS 1.3, certificate %s, peers signed by %s%s%s",
			 o->tls_cert, o->tls_ca, o->tls_peer[0] ? " and named " : "", o->tls_peer);
		return 0;
	}
	if (net_is_loopback(addr))
		return 0;
	if (!o->insecure) {
		log_error(
			"Refusing to replicate in the clear with %s: it is not a loopback address "
			"(give --tls-cert, --tls-key and --tls-ca, or --insecure)",
			addr_text);
		return -EINVAL;
	}
	log_warning("--insecure: replication with %s is neither authenticated nor encrypted",
		    addr_text);
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

/*
 * The guest running here and its protection: `ftd primary`, and a secondary
 * once promoted (which can protect the guest again with `ftctl protect`).
 */
struct active {
	const struct ftd_options *o;
	struct vm *vm;
	struct netloop *nl;
	struct outbuf *out;
	struct control *ctl;
	struct primary *p;
	uint8_t *cpuid; /* of cfg.hello */
	int sig_fd, timer_fd, console_fd;
	uint64_t interval_ns;	      /* the current one: `ftctl set interval` changes it */
	struct auto_interval auto_iv; /* --interval auto / `ftctl set interval auto` */
	uint64_t start_ns;
	const char *promoted_by; /* NULL on an original primary */
	uint64_t promoted_checkpoint;
	enum primary_state last_state;
	uint64_t last_sync_event_ns;
	SSL_CTX *tls;		      /* replication TLS, or NULL */
	SSL_CTX *tls_named;	      /* protect --tls-peer NAME: for that secondary */
	struct ftd_cluster *fc;	      /* --cluster: the guest runs only while quorate */
	uint64_t rate_bytes, rate_ns; /* replication bytes/s over the last second: */
	uint64_t bytes_per_s;
	bool frozen; /* stopped for want of quorum */
	/*
	 * Guest identity and data generation (docs/failover.md). gen_replicated:
	 * a secondary holds a checkpoint of the current generation, so output
	 * released without one starts the next. announce_wait: with a cluster,
	 * that output waits until the group has the new generation.
	 */
	struct gen_state gen;
	bool gen_replicated;
	bool announce_wait, announce_sent;
	bool first_contact;    /* holding output until the secondary first answered */
	const char *stop_why;  /* the guest must not run here: stop (exit 1) */
	struct secondary *sec; /* a promoted secondary: its listener refuses primaries */
};

/* --notify-command, told about every event but sync progress. */
static const char *notify_command;

#define EVENT_ENV_MAX 8

/*
 * One event: a JSON line to `ftctl events` subscribers, and the notify
 * command with FTD_EVENT and FTD_<KEY> for each key/value pair (strings,
 * NULL-ended; a NULL value is left out).
 */
static void emit(struct control *ctl, const char *event, ...)
{
	struct json_object *ev = json_object_new_object();
	char env[EVENT_ENV_MAX][192];
	const char *envp[EVENT_ENV_MAX + 1];
	unsigned int n = 0;
	struct timespec ts;
	va_list ap;
	const char *k;

	clock_gettime(CLOCK_REALTIME, &ts);
	json_add_u64(ev, "time_ms", (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000);
	json_add_str(ev, "event", event);
	snprintf(env[n++], sizeof(env[0]), "FTD_EVENT=%s", event);
	va_start(ap, event);
	while ((k = va_arg(ap, const char *))) {
		const char *v = va_arg(ap, const char *);

		json_add_str(ev, k, v);
		if (v && n < EVENT_ENV_MAX) {
			int at = snprintf(env[n], sizeof(env[0]), "FTD_");

			for (const char *c = k; *c && at < 40; c++)
				env[n][at++] = *c == '-' ? '_' : (char)(*c & ~0x20);
			snprintf(env[n] + at, sizeof(env[0]) - (size_t)at, "=%.140s", v);
			n++;
		}
	}
	va_end(ap);
	control_event(ctl, ev);
	if (!notify_command || !strcmp(event, "sync-progress"))
		return;
	for (unsigned int i = 0; i < n; i++)
		envp[i] = env[i];
	envp[n] = NULL;
	if (hook_spawn(notify_command, envp) < 0)
		log_warning("Cannot run the notify command for %s: %s", event, strerror(errno));
}

/* ---- Corosync (--cluster) ---------------------------------------------------- */

/* What this daemon knows of the cluster: kept up to date by cluster_dispatch(). */
struct ftd_cluster {
	struct cluster *c; /* NULL without --cluster */
	struct control *ctl;
	bool quorate;
	bool lost;	    /* corosync went away: not quorate until ftd restarts */
	unsigned int peers; /* other ftds in the group */
	bool peer_left;	    /* the last of them left, how and when: */
	bool left_by_node;  /* its node left the membership (else the process ended) */
	uint64_t left_ns;
	uint32_t left_nodeid;
	/*
	 * Data generations announced in the group, for the role's handler. Only
	 * a node that runs the guest announces: when it starts a generation, and
	 * again whenever another ftd joins (running: its generation, else NULL).
	 */
	void (*on_gen)(void *opaque, const struct gen_state *g, bool from_self, uint32_t nodeid);
	void *gen_opaque;
	const struct gen_state *running;
};

/* A CPG message: this line, then the gen_serialize() text. */
#define GEN_MSG "ftd-generation 1\n"

/* Tells every ftd of the group which generation of the guest this node is at. */
static int announce_gen(struct ftd_cluster *fc, const struct gen_state *g)
{
	char buf[2048];
	int n = snprintf(buf, sizeof(buf), GEN_MSG);
	int m = gen_serialize(g, buf + n, sizeof(buf) - (size_t)n);

	if (!fc || !fc->c || fc->lost)
		return -ENOTCONN;
	return m < 0 ? m : cluster_send(fc->c, buf, (size_t)(n + m));
}

static void cluster_changed(void *opaque, const struct cluster_event *ev)
{
	struct ftd_cluster *fc = opaque;
	char node[16], pid[16];

	snprintf(node, sizeof(node), "%u", ev->nodeid);
	snprintf(pid, sizeof(pid), "%u", ev->pid);
	switch (ev->type) {
	case CLUSTER_QUORUM:
		if (ev->quorate == fc->quorate)
			break;
		fc->quorate = ev->quorate;
		if (ev->quorate)
			log_info("cluster: this node is quorate");
		else
			log_warning("cluster: this node lost quorum");
		emit(fc->ctl, "quorum", "quorate", ev->quorate ? "yes" : "no", NULL);
		break;
	case CLUSTER_PEER_JOINED:
		fc->peers = cluster_peers(fc->c, NULL, 0);
		fc->peer_left = false;
		log_info("cluster: the ftd on node %s (pid %s) joined", node, pid);
		if (fc->running && announce_gen(fc, fc->running) < 0)
			log_warning("cluster: cannot tell the new member which guest runs here");
		emit(fc->ctl, "cluster-peer-joined", "node", node, "pid", pid, NULL);
		break;
	case CLUSTER_PEER_LEFT:
		fc->peers = cluster_peers(fc->c, NULL, 0);
		fc->peer_left = fc->peers == 0;
		fc->left_by_node = ev->reason == CLUSTER_LEFT_NODE;
		fc->left_ns = clock_now_ns();
		fc->left_nodeid = ev->nodeid;
		log_warning("cluster: the ftd on node %s (pid %s) left: %s", node, pid,
			    fc->left_by_node ? "its node left the membership"
					     : "the process ended");
		emit(fc->ctl, "cluster-peer-left", "node", node, "pid", pid, "reason",
		     fc->left_by_node ? "node" : "process", NULL);
		break;
	case CLUSTER_MESSAGE: {
		char text[2048];
		struct gen_state g;

		if (ev->len <= strlen(GEN_MSG) || ev->len >= sizeof(text) ||
		    memcmp(ev->data, GEN_MSG, strlen(GEN_MSG)))
			break;
		memcpy(text, ev->data, ev->len);
		text[ev->len] = 0;
		if (gen_parse(text + strlen(GEN_MSG), &g) == 0 && fc->on_gen)
			fc->on_gen(fc->gen_opaque, &g, ev->from_self, ev->nodeid);
		break;
	}
	}
}

/* Joins group ftd-NAME. Logs failures; returns 0 or -errno. */
static int ftd_cluster_open(struct ftd_cluster *fc, const char *name, struct control *ctl)
{
	char group[80];
	int r;

	fc->ctl = ctl;
	snprintf(group, sizeof(group), "ftd-%s", name);
	r = cluster_open(group, cluster_changed, fc, &fc->c);
	if (r < 0) {
		log_error("Cannot join the cluster (--cluster %s): %s%s", name, strerror(-r),
			  r == -ECONNREFUSED ? " (is corosync running?)"
			  : r == -EOPNOTSUPP ? " (corosync runs without a quorum provider)"
					     : "");
		return r;
	}
	fc->quorate = cluster_quorate(fc->c);
	log_info("cluster: joined CPG group %s as node %u, %squorate", group,
		 cluster_local_nodeid(fc->c), fc->quorate ? "" : "not ");
	return 0;
}

/* Adds the cluster's fds to pfd[] from index n; returns the new count. */
static int ftd_cluster_pollfds(const struct ftd_cluster *fc, struct pollfd *pfd, int n, int max)
{
	int fds[3], k = fc->c ? cluster_fds(fc->c, fds, 3) : 0;

	for (int i = 0; i < k && n < max; i++)
		pfd[n++] = (struct pollfd){ .fd = fds[i], .events = POLLIN };
	return n;
}

static void ftd_cluster_dispatch(struct ftd_cluster *fc)
{
	int r;

	if (!fc->c || fc->lost)
		return;
	r = cluster_dispatch(fc->c);
	if (r < 0) {
		fc->lost = true;
		fc->quorate = false;
		log_error("cluster: lost the connection to corosync (%s): acting as not quorate",
			  strerror(-r));
	}
}

static const char *ftd_cluster_quorum(const struct ftd_cluster *fc)
{
	return !fc || !fc->c ? NULL : fc->quorate ? "yes" : "no";
}

/* The timer at ns from the next tick on; 0 or -errno (with r's "error" when r). */
static int active_retime(struct active *a, uint64_t ns, struct json_object *r)
{
	char msg[128];

	if (ftd_timer_set(a->timer_fd, ns) < 0) {
		int e = -errno;

		snprintf(msg, sizeof(msg), "cannot set the timer: %s", strerror(-e));
		if (r)
			json_add_str(r, "error", msg);
		return e;
	}
	a->interval_ns = ns;
	return 0;
}

/* `ftctl set interval D|auto`: from the next tick on. */
static int active_set_interval(struct active *a, const struct request *req, struct json_object *r)
{
	uint64_t was = a->interval_ns;
	int e;

	if (req->interval_auto) {
		auto_interval_init(&a->auto_iv, a->o->auto_overhead_pct, a->o->auto_max_hold_ns);
		log_info("checkpoint interval: auto (overhead budget %u%%%s), from %.3f ms",
			 a->auto_iv.overhead_pct,
			 a->auto_iv.max_hold_ns ? ", output hold budget" : "", (double)was / 1e6);
	} else {
		e = active_retime(a, req->interval_ns, r);
		if (e < 0)
			return e;
		a->auto_iv.enabled = false;
		log_info("checkpoint interval set to %.3f ms (was %.3f ms)",
			 (double)a->interval_ns / 1e6, (double)was / 1e6);
	}
	json_add_u64(r, "interval_us", a->interval_ns / 1000);
	json_object_object_add(r, "interval_auto", json_object_new_boolean(a->auto_iv.enabled));
	return 0;
}

/*
 * --interval auto, once a second: from the last second's pauses and ACKs
 * (before the statistics line consumes them).
 */
static void active_auto_interval(struct active *a)
{
	struct primary_stats *st = &a->p->st;
	uint64_t next;

	if (!a->auto_iv.enabled || a->p->state != PRIMARY_PROTECTED || !st->pause_us.n)
		return;
	next = auto_interval_next(&a->auto_iv, a->interval_ns,
				  samples_percentile(&st->pause_us, 50) * 1000,
				  st->ack_us.n ? samples_percentile(&st->ack_us, 99) * 1000 : 0);
	if (next == a->interval_ns)
		return;
	if (active_retime(a, next, NULL) < 0) {
		log_warning("interval auto: cannot set the timer: %s", strerror(errno));
		return;
	}
	log_info("interval auto: %.3f ms (bound by %s%s)", (double)next / 1e6, a->auto_iv.bound,
		 a->auto_iv.overhead_exceeded ? ", overhead budget exceeded" : "");
}

/*
 * The name a new secondary's certificate must bear. ftd's --tls-peer names the
 * peer it was started with: on a promoted node, its old primary, so a protect
 * there must name the new secondary itself. Returns 0 or -errno with "error".
 */
static int protect_tls_name(struct active *a, const struct request *req, struct json_object *r)
{
	char err[384];
	SSL_CTX *ctx = NULL;

	if (!req->tls_peer[0]) {
		if (a->promoted_by && a->o->tls_peer[0]) {
			snprintf(err, sizeof(err),
				 "this node was promoted: its --tls-peer %s named the primary it "
				 "followed; name the new secondary (protect --peer HOST:PORT "
				 "--tls-peer NAME)",
				 a->o->tls_peer);
			json_add_str(r, "error", err);
			return -EINVAL;
		}
		return 0;
	}
	if (!a->o->tls_cert[0]) {
		json_add_str(r, "error",
			     "--tls-peer needs TLS (ftd --tls-cert, --tls-key, --tls-ca)");
		return -EINVAL;
	}
	if (a->p->conn) {
		snprintf(err, sizeof(err), "already %s with %s: stop that secondary first",
			 primary_state_name(a->p->state), a->p->cfg.peer_name);
		json_add_str(r, "error", err);
		return -EBUSY;
	}
	if (tls_ctx_new(a->o->tls_cert, a->o->tls_key, a->o->tls_ca, req->tls_peer, &ctx, err,
			sizeof(err)) < 0) {
		log_error("%s", err);
		json_add_str(r, "error", err);
		return -EINVAL;
	}
	/*
	 * a->tls stays: a promoted secondary's listener still uses it. Links of
	 * earlier sessions hold their own references to an earlier named one.
	 */
	tls_ctx_free(a->tls_named);
	a->tls_named = ctx;
	log_info("replication: the next secondary's certificate must name %s", req->tls_peer);
	return 0;
}

/* `ftctl protect --peer HOST:PORT`: sync to that secondary and protect the guest. */
static int active_protect(struct active *a, const struct request *req, struct json_object *r)
{
	char msg[192];
	int e = protect_tls_name(a, req, r);

	if (e < 0)
		return e;

	net_format_addr((const struct sockaddr *)&req->peer, msg, sizeof(msg));
	if (replication_tls(a->o, (const struct sockaddr *)&req->peer, msg, &a->tls) < 0) {
		json_add_str(
			r, "error",
			"not a loopback address: replication needs TLS (--tls-cert, --tls-key, "
			"--tls-ca) or --insecure");
		return -EPERM;
	}
	a->p->cfg.tls = a->tls_named ? a->tls_named : a->tls;
	e = primary_set_peer(a->p, (const struct sockaddr *)&req->peer, req->peer_len);
	if (e == -EBUSY) {
		snprintf(msg, sizeof(msg), "already %s with %s: stop that secondary first",
			 primary_state_name(a->p->state), a->p->cfg.peer_name);
		json_add_str(r, "error", msg);
		return e;
	}
	if (e < 0) {
		json_add_str(r, "error", strerror(-e));
		return e;
	}
	log_info("Protecting the guest with the secondary at %s", a->p->cfg.peer_name);
	emit(a->ctl, "protect", "peer", a->p->cfg.peer_name, NULL);
	json_add_str(r, "peer", a->p->cfg.peer_name);
	return 0;
}

/* Prometheus text exposition, in the reply's "text". */
static void active_metrics(struct active *a, struct json_object *r)
{
	static const uint64_t bounds_us[] = { 100,   250,   500,   1000,   2500,  5000,
					      10000, 25000, 50000, 100000, 250000 };
	struct primary_stats *st = &a->p->st;
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
		(unsigned long long)outbuf_held(a->out), a->p->state == PRIMARY_PROTECTED,
		(double)a->interval_ns / 1e9, a->auto_iv.enabled,
		(unsigned long long)st->live_harvests);
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

static void active_status(struct active *a, struct json_object *r)
{
	struct primary *p = a->p;
	struct primary_stats *st = &p->st;
	struct json_object *pause = json_object_new_object();
	uint64_t now = clock_now_ns();

	json_add_str(r, "role", "primary");
	json_add_str(r, "state", primary_state_name(p->state));
	json_add_str(r, "peer", p->cfg.peer_len ? p->cfg.peer_name : NULL);
	json_add_str(r, "guest", a->o->guest);
	json_add_str(r, "promoted_by", a->promoted_by);
	status_generation(r, &a->gen);
	if (a->promoted_by)
		json_add_u64(r, "promoted_from_checkpoint", a->promoted_checkpoint);
	json_add_u64(r, "epoch", p->next_epoch);
	json_add_u64(r, "checkpoints", st->checkpoints);
	json_add_u64(r, "acked", st->acked);
	if (st->last_ack_ns && p->state == PRIMARY_PROTECTED)
		json_add_u64(r, "last_ack_age_ms", (now - st->last_ack_ns) / 1000000);
	else
		json_object_object_add(r, "last_ack_age_ms", NULL);
	json_add_u64(r, "interval_us", a->interval_ns / 1000);
	json_object_object_add(r, "interval_auto", json_object_new_boolean(a->auto_iv.enabled));
	if (a->auto_iv.enabled) {
		struct json_object *ai = json_object_new_object();

		json_add_u64(ai, "overhead_pct", a->auto_iv.overhead_pct);
		json_add_u64(ai, "max_hold_us", a->auto_iv.max_hold_ns / 1000);
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
	json_add_u64(r, "held_bytes", outbuf_held(a->out));
	json_add_u64(r, "console_offset", outbuf_stream_pos(a->out, outbuf_mark(a->out)));
	json_add_u64(r, "sessions", st->sessions);
	json_add_str(r, "quorum", ftd_cluster_quorum(a->fc));
	json_object_object_add(r, "frozen", json_object_new_boolean(a->frozen));
	if (p->state == PRIMARY_SYNCING) {
		json_add_u64(r, "sync_pages", st->sync_pages);
		json_add_u64(r, "sync_remaining", st->sync_remaining);
	}
}

/* The control socket of a running guest: the schema is documented in ctl/README.md. */
static int active_control(void *opaque, const struct request *req, struct json_object *r)
{
	struct active *a = opaque;
	int e;

	switch (req->kind) {
	case REQ_SET_INTERVAL:
		return active_set_interval(a, req, r);
	case REQ_PROTECT:
		return active_protect(a, req, r);
	case REQ_METRICS:
		active_metrics(a, r);
		return 0;
	case REQ_SWITCHOVER:
		e = primary_switchover(a->p);
		if (e == 0) {
			emit(a->ctl, "switchover", "phase", "started", "peer", a->p->cfg.peer_name,
			     NULL);
			return CONTROL_LATER; /* answered when it is over */
		}
		json_add_str(r, "error",
			     e == -EALREADY
				     ? "a switchover is in progress"
				     : "the guest is not protected: nothing can take it over");
		return e;
	case REQ_FAILOVER:
		json_add_str(r, "error", "this node runs the guest: there is nothing to fail over");
		return -EALREADY;
	case REQ_DISCARD:
		json_add_str(r, "error",
			     "this node runs the guest: there is no replica to discard");
		return -EALREADY;
	case REQ_STATUS:
	case REQ_EVENTS:
		break;
	}
	active_status(a, r);
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

/* Events from what changed since the last look; a switchover that ended is answered. */
static void active_events(struct active *a, uint64_t now)
{
	struct primary *p = a->p;
	char buf[32];

	if (p->state != a->last_state) {
		enum primary_state was = a->last_state;

		a->last_state = p->state;
		if (p->state == PRIMARY_HANDSHAKE)
			emit(a->ctl, "peer-connected", "peer", p->cfg.peer_name, NULL);
		else if (p->state == PRIMARY_SYNCING)
			emit(a->ctl, "sync-started", "peer", p->cfg.peer_name, NULL);
		else if (p->state == PRIMARY_PROTECTED) {
			snprintf(buf, sizeof(buf), "%llu", (unsigned long long)p->first_checkpoint);
			emit(a->ctl, "protected", "peer", p->cfg.peer_name, "checkpoint", buf,
			     NULL);
		} else if (p->state == PRIMARY_UNPROTECTED && was >= PRIMARY_HANDSHAKE &&
			   p->handover != HANDOVER_DONE)
			emit(a->ctl, "peer-lost", "peer", p->cfg.peer_name, "reason", p->last_drop,
			     NULL);
	}
	if (p->state == PRIMARY_SYNCING && now - a->last_sync_event_ns >= NS_PER_S) {
		char sent[24], left[24];

		a->last_sync_event_ns = now;
		snprintf(sent, sizeof(sent), "%llu", (unsigned long long)p->st.sync_pages);
		snprintf(left, sizeof(left), "%llu", (unsigned long long)p->st.sync_remaining);
		emit(a->ctl, "sync-progress", "pages", sent, "remaining", left, NULL);
	}
	if (control_waiting(a->ctl) && p->handover >= HANDOVER_DONE) {
		struct json_object *r = json_object_new_object();
		int e = 0;

		if (p->handover == HANDOVER_DONE) {
			json_add_u64(r, "checkpoint", p->handover_epoch);
			json_add_str(r, "peer", p->cfg.peer_name);
		} else {
			json_add_str(r, "error", p->handover_error);
			e = p->handover == HANDOVER_FAILED ? -EAGAIN : -EIO;
		}
		emit(a->ctl, "switchover", "phase",
		     p->handover == HANDOVER_DONE     ? "done"
		     : p->handover == HANDOVER_FAILED ? "failed"
						      : "unknown",
		     "peer", p->cfg.peer_name, "error", e ? p->handover_error : NULL, NULL);
		control_answer(a->ctl, e, r);
	}
	if (p->handover == HANDOVER_FAILED)
		p->handover = HANDOVER_NONE;
}

/*
 * --cluster: /run/ftd/cluster-NAME.active exists while the guest runs here, for
 * a qdevice heuristics command (`exec_ftd: /usr/bin/test -e ...`): on a tie
 * after a cut, qnetd then prefers the side that runs the guest.
 */
static void active_marker(struct active *a, bool on)
{
	char path[128];
	int fd;

	if (!a->fc || !a->fc->c)
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
static void stale_marker_clear(const struct ftd_options *o)
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

/*
 * --cluster: the guest runs only while this node is quorate. Losing quorum
 * stops it at once (the other side may promote once it has waited for that);
 * it resumes when quorum is back only if the secondary still follows this
 * guest (protected: it cannot have promoted). Otherwise it stays stopped for
 * an operator: the guest may run elsewhere now.
 */
/* The guest runs on without its replica: the next generation starts here. */
static void active_gen_bump(struct active *a)
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
	emit(a->ctl, "generation", "uuid", u, "generation", num, NULL);
	if (a->fc && a->fc->c) {
		a->announce_wait = true;
		a->announce_sent = false;
	}
}

/*
 * Generations and the first contact, before output is flushed: a protected
 * session means the secondary holds this generation; once it is lost, output
 * that leaves without it starts the next (with a cluster, active_quorum does
 * it when output may leave). A primary that booted its guest holds all output
 * until the secondary first answered: told there that another node runs the
 * guest or holds a newer generation of it, it stops with nothing shown.
 */
static void active_generation(struct active *a)
{
	struct primary *p = a->p;
	bool cluster = a->fc && a->fc->c;

	if (p->state == PRIMARY_PROTECTED)
		a->gen_replicated = true;
	else if (!cluster && a->gen_replicated && p->state < PRIMARY_SYNCING &&
		 p->handover == HANDOVER_NONE)
		active_gen_bump(a);
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
			p->hold_output = false;
	}
}

static void active_quorum(struct active *a)
{
	struct primary *p = a->p;
	struct ftd_cluster *fc = a->fc;

	if (!fc || !fc->c)
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
	p->hold_output = true;
	p->release_ok = fc->quorate && cluster_quorum_settled(fc->c) &&
			(!p->lost_ns || (fc->peer_left && !fc->left_by_node) ||
			 clock_now_ns() - p->lost_ns >= a->o->cluster_wait_ns);
	/*
	 * Output the secondary's checkpoint does not hold starts a new generation,
	 * and leaves only once every member got it (our own announcement came
	 * back): the secondary then knows its replica is stale before anything
	 * it lacks is seen, and does not promote it by itself.
	 */
	if (p->release_ok && !a->frozen && a->gen_replicated && p->state < PRIMARY_SYNCING &&
	    p->handover == HANDOVER_NONE)
		active_gen_bump(a);
	if (a->announce_wait && !a->announce_sent && announce_gen(fc, &a->gen) == 0)
		a->announce_sent = true;
	if (a->announce_wait)
		p->release_ok = false;
	if (!a->fc->quorate && !a->frozen) {
		int r = vm_pause(a->vm, 0, NULL);

		a->frozen = true;
		p->frozen = true;
		active_marker(a, false);
		log_error("Lost quorum: the guest is stopped here (the other side may take it "
			  "over)%s",
			  r < 0 ? "; pausing the vCPUs failed" : "");
		emit(a->ctl, "frozen", "reason", "lost quorum", NULL);
	} else if (a->frozen && a->fc->quorate && primary_may_thaw(p)) {
		a->frozen = false;
		p->frozen = false;
		vm_resume(a->vm);
		active_marker(a, true);
		log_info("Quorum is back and the secondary still follows this guest: it runs on");
		emit(a->ctl, "thawed", NULL);
	}
}

static int active_loop(struct active *a)
{
	struct primary *p = a->p;
	struct vm *vm = a->vm;
	uint64_t start = clock_now_ns(), next_stats = start + NS_PER_S;
	struct pwindow w = { .start_ns = start };
	int r;

	a->rate_ns = start;
	a->rate_bytes = primary_bytes_sent(p);
	for (;;) {
		struct pollfd pfd[7] = {
			{ .fd = a->sig_fd, .events = POLLIN },
			{ .fd = vm->event_fd, .events = POLLIN },
			{ .fd = a->timer_fd, .events = POLLIN },
			{ .fd = netloop_fd(a->nl), .events = POLLIN },
		};
		int npfd = ftd_cluster_pollfds(a->fc, pfd, 4, 7);
		uint64_t now, expirations, due = primary_next_due(p), wait_ns = 100000000ULL;
		struct timespec wait_ts;
		unsigned int events;

		/* At most 100 ms, or until the engine's next timed work (a live harvest). */
		now = clock_now_ns();
		if (due != UINT64_MAX)
			wait_ns = due <= now ? 0 : due - now < wait_ns ? due - now : wait_ns;
		wait_ts = (struct timespec){ .tv_sec = (time_t)(wait_ns / NS_PER_S),
					     .tv_nsec = (long)(wait_ns % NS_PER_S) };

		if (ppoll(pfd, (nfds_t)npfd, &wait_ts, NULL) < 0 && errno != EINTR) {
			log_error("poll failed: %s", strerror(errno));
			return 1;
		}
		if ((pfd[0].revents & POLLIN) && ftd_read_signal(a->sig_fd))
			break;
		ftd_cluster_dispatch(a->fc);
		active_quorum(a);
		if (a->first_contact) {
			p->hold_output = true;
			p->release_ok = false;
		}
		netloop_dispatch(a->nl);
		events = vm_take_events(vm);
		if (events & VM_EVENT_STOPPED)
			return ftd_report_stopped(vm);
		r = 0;
		if (events & VM_EVENT_RING_FULL)
			r = primary_checkpoint(p, true);
		if (r == 0 && read(a->timer_fd, &expirations, sizeof(expirations)) > 0) {
			r = primary_checkpoint(p, false);
			/* Ticks that passed while this thread was busy are checkpoints not taken.
			 */
			p->st.skipped += expirations - 1;
		}
		if (r == -ESRCH)
			return ftd_report_stopped(vm);
		if (r < 0) {
			log_error("Checkpoint failed: %s", strerror(-r));
			emit(a->ctl, "checkpoint-failed", "error", strerror(-r), NULL);
			return 1;
		}
		now = clock_now_ns();
		primary_tick(p, now);
		netloop_dispatch(a->nl);
		hook_reap();
		if (a->sec)
			secondary_tick(a->sec, now);
		active_generation(a);
		if (a->stop_why) {
			vm_pause(vm, 0, NULL);
			log_error("Stopping the guest: %s%s%s%s", a->stop_why,
				  p->refused_desc[0] ? " (" : "", p->refused_desc,
				  p->refused_desc[0] ? ")" : "");
			emit(a->ctl, "refused", "reason", a->stop_why, NULL);
			return 1;
		}
		if (outbuf_flush(a->out, a->console_fd) < 0)
			log_warning("Writing the console failed: %s (output is kept)",
				    strerror(errno));
		active_events(a, now);
		if (p->handover == HANDOVER_DONE || p->handover == HANDOVER_UNKNOWN) {
			/* Let the answer and the last output leave before the guest goes. */
			for (int i = 0; i < 20 && a->nl->inflight; i++)
				netloop_wait(a->nl, 5000000ULL);
			return p->handover == HANDOVER_DONE ? 0 : 1;
		}
		if (now >= next_stats) {
			uint64_t sent = primary_bytes_sent(p);

			active_auto_interval(a);
			a->bytes_per_s = (sent - a->rate_bytes) * NS_PER_S / (now - a->rate_ns);
			a->rate_bytes = sent;
			a->rate_ns = now;
			/* systemd: a one-line status, and the loop is alive (WatchdogSec=). */
			sd_notifyf(0,
				   "WATCHDOG=1\nSTATUS=primary: %s, epoch %llu, %llu acknowledged",
				   primary_state_name(p->state), (unsigned long long)p->next_epoch,
				   (unsigned long long)p->st.acked);
			if (!a->o->quiet)
				primary_stats_line(p, &w, now);
			next_stats = now + NS_PER_S;
		}
		if (a->o->duration_ns && now - a->start_ns >= a->o->duration_ns)
			break;
	}
	return 0;
}

static void active_summary(struct active *a)
{
	struct primary *p = a->p;

	log_info("summary: %llu checkpoints in %.1fs, %llu acknowledged (%llu verified, %llu "
		 "mismatches), %llu sessions, pause us p50=%llu p99=%llu max=%llu, ack us "
		 "p50=%llu p99=%llu",
		 (unsigned long long)p->st.checkpoints,
		 (double)(clock_now_ns() - a->start_ns) / 1e9, (unsigned long long)p->st.acked,
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

static void active_on_gen(void *opaque, const struct gen_state *g, bool from_self, uint32_t nodeid);

/*
 * Runs the started guest in a until the end: protected by `peer` (NULL: none
 * until `ftctl protect`). The control socket is a's from here on. Frees what
 * it set up; the caller keeps the VM, output buffer, netloop and fds.
 */
static int active_run(struct active *a, const char *peer)
{
	struct primary_config cfg = { .timeout_ns = a->o->timeout_ns,
				      .reconnect_ns = RECONNECT_NS,
				      .verify = a->o->verify,
				      .live = (enum primary_live)a->o->live_harvest,
				      .tls = a->tls };
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
	r = a->timer_fd < 0 ? -errno
			    : local_hello(a->o, a->vm, HELLO_PRIMARY, &cfg.hello, &a->cpuid);
	cfg.hello.gen = a->gen;
	/* A guest booted here says nothing until its secondary has first answered. */
	a->first_contact = peer && !a->promoted_by;
	if (r < 0) {
		log_error("Failed to set up the checkpoint timer: %s", strerror(-r));
		goto out;
	}
	a->p = calloc(1, sizeof(*a->p));
	r = a->p ? primary_init(a->p, a->vm, a->nl, a->out, &cfg) : -ENOMEM;
	if (r < 0) {
		log_error("Failed to set up checkpoint staging: %s", strerror(-r));
		free(a->p);
		a->p = NULL;
		goto out;
	}
	control_set_handler(a->ctl, active_control, a);
	if (a->fc) {
		a->fc->on_gen = active_on_gen;
		a->fc->gen_opaque = a;
		a->fc->running = &a->gen;
	}
	ftd_owner_priority(a->o, a->vm);
	emit(a->ctl, "role", "role", "primary", "by", a->promoted_by ? a->promoted_by : "start",
	     NULL);
	active_marker(a, true);
	status = active_loop(a);
	if (a->fc)
		a->fc->running = NULL;
	active_marker(a, false);
	sd_notify(0, "STOPPING=1");
	if (status == 0 && a->p->handover == HANDOVER_NONE)
		primary_final_checkpoint(a->p);
	/* The guest ends at its last checkpoint: nothing it does after may show. */
	if (!a->frozen && a->p->handover == HANDOVER_NONE)
		vm_pause(a->vm, 0, NULL);
	active_summary(a);
out:
	if (control_waiting(a->ctl)) {
		struct json_object *rep = json_object_new_object();

		json_add_str(rep, "error", "ftd is stopping");
		control_answer(a->ctl, -ECANCELED, rep);
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

/* Opens the console; a pipe nobody drains must not stall the loop. Logs failures. */
static int open_console(const char *path)
{
	struct stat sb;
	int fd = ftd_open_console(path);

	if (fd < 0) {
		log_error("Failed to open console %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &sb) == 0 && (S_ISFIFO(sb.st_mode) || S_ISSOCK(sb.st_mode)))
		fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

/* --cluster: a primary starts its guest only on a quorate node. -EINTR on a signal. */
static int wait_quorum(struct ftd_cluster *fc, int sig_fd)
{
	if (!fc->quorate)
		log_info("cluster: waiting for quorum before starting the guest");
	while (!fc->quorate) {
		struct pollfd pfd[4] = { { .fd = sig_fd, .events = POLLIN } };
		int n = ftd_cluster_pollfds(fc, pfd, 1, 4);

		if (fc->lost)
			return -ENOTCONN;
		if (poll(pfd, (nfds_t)n, 1000) < 0 && errno != EINTR)
			return -errno;
		if ((pfd[0].revents & POLLIN) && ftd_read_signal(sig_fd))
			return -EINTR;
		ftd_cluster_dispatch(fc);
	}
	return 0;
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
	/* Stored once its secondary has first answered (active_generation). */
	return 0;
}

struct boot_check {
	bool found;
	uint32_t nodeid;
	struct gen_state g;
};

static void boot_on_gen(void *opaque, const struct gen_state *g, bool from_self, uint32_t nodeid)
{
	struct boot_check *bc = opaque;

	if (from_self || bc->found)
		return;
	bc->found = true;
	bc->nodeid = nodeid;
	bc->g = *g;
}

/*
 * --cluster: before booting, listen a moment for the group: a node that runs
 * the guest announces its generation to every ftd that joins. If one does,
 * booting here would make a second copy. Logs; 0, or -EEXIST / -EINTR.
 */
static int cluster_boot_check(struct ftd_cluster *fc, int sig_fd)
{
	struct boot_check bc = { 0 };
	uint64_t end = clock_now_ns() + 1500000000ULL;
	char d[128];

	fc->on_gen = boot_on_gen;
	fc->gen_opaque = &bc;
	while (!bc.found && !fc->lost && clock_now_ns() < end) {
		struct pollfd pfd[4] = { { .fd = sig_fd, .events = POLLIN } };
		int n = ftd_cluster_pollfds(fc, pfd, 1, 4);

		if (poll(pfd, (nfds_t)n, 100) < 0 && errno != EINTR)
			break;
		if ((pfd[0].revents & POLLIN) && ftd_read_signal(sig_fd))
			return -EINTR;
		ftd_cluster_dispatch(fc);
	}
	fc->on_gen = NULL;
	if (!bc.found)
		return 0;
	gen_describe(&bc.g, d, sizeof(d));
	log_error("cluster: node %u runs %s: not booting a second copy here (start this node as "
		  "its secondary instead)",
		  bc.nodeid, d);
	return -EEXIST;
}

/* --cluster: another ftd announced a generation of our guest. */
static void active_on_gen(void *opaque, const struct gen_state *g, bool from_self, uint32_t nodeid)
{
	struct active *a = opaque;
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

int ftd_primary(const struct ftd_options *o)
{
	struct active a = { .o = o, .sig_fd = -1, .timer_fd = -1, .console_fd = -1 };
	struct ftd_cluster fc = { 0 };
	struct sockaddr_storage ss;
	socklen_t sl;
	struct netloop nl;
	bool nl_ok = false;
	struct outbuf out = { 0 };
	int status = 1, r;

	signal(SIGPIPE, SIG_IGN);
	notify_command = o->notify_command[0] ? o->notify_command : NULL;
	if (parse_addr_opt("peer", o->peer, &ss, &sl) < 0 ||
	    replication_tls(o, (struct sockaddr *)&ss, o->peer, &a.tls) < 0)
		return 2;
	a.console_fd = open_console(o->console);
	if (a.console_fd < 0)
		return 1;
	r = outbuf_init(&out, OUTBUF_BYTES);
	a.sig_fd = ftd_signalfd();
	if (r < 0 || a.sig_fd < 0) {
		log_error("Failed to set up the output buffer and signals");
		goto out;
	}
	status = ftd_make_vm(o, outbuf_sink, &out, true, &a.vm);
	if (status)
		goto out;
	status = 1;
	r = netloop_init(&nl, o->send_zc);
	if (r < 0) {
		log_error("Failed to set up io_uring: %s", strerror(-r));
		goto out;
	}
	nl_ok = true;
	a.nl = &nl;
	a.out = &out;
	if (control_open(&nl, o->control, active_control, &a, &a.ctl) < 0)
		goto out;
	a.fc = &fc;
	stale_marker_clear(o);
	if (o->cluster[0]) {
		if (ftd_cluster_open(&fc, o->cluster, a.ctl) < 0 || wait_quorum(&fc, a.sig_fd) < 0)
			goto out;
	}
	if ((o->cluster[0] && cluster_boot_check(&fc, a.sig_fd) < 0) || new_guest(o, &a.gen) < 0)
		goto out;
	r = vm_start(a.vm);
	if (r < 0) {
		log_error("Failed to start vCPU threads: %s", strerror(-r));
		goto out;
	}
	log_info("primary: running %s (%llu MiB, %u vCPUs, %s tracking), checkpoint every "
		 "%.3f ms, secondary %s%s",
		 o->guest, (unsigned long long)(o->mem_size >> 20), o->vcpus,
		 dirty_mode_name(o->tracking), (double)o->interval_ns / 1e6, o->peer,
		 o->verify ? ", verifying memory" : "");
	sd_notifyf(0, "READY=1\nSTATUS=primary: running %s, connecting to %s", o->guest, o->peer);
	status = active_run(&a, o->peer);
out:
	cluster_close(fc.c);
	control_close(a.ctl);
	if (nl_ok) {
		netloop_drain(&nl, 1000000000ULL); /* the control socket's accept, its clients */
		netloop_free(&nl);
	}
	vm_free(a.vm);
	if (out.buf) {
		/* Whatever was acknowledged (or unprotected) leaves; the rest never existed. */
		outbuf_flush(&out, a.console_fd);
		if (outbuf_held(&out))
			log_info("%llu console bytes of unacknowledged checkpoints withheld",
				 (unsigned long long)outbuf_held(&out));
		outbuf_free(&out);
	}
	if (a.sig_fd >= 0)
		close(a.sig_fd);
	if (a.console_fd >= 0)
		close(a.console_fd);
	tls_ctx_free(a.tls);
	tls_ctx_free(a.tls_named);
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

struct standby {
	const struct ftd_options *o;
	struct ftd_cluster *fc;
	bool auto_blocked; /* an automatic promotion failed: the operator decides */
	char waiting[160]; /* why it does not promote yet (logged once) */
	struct secondary *s;
	struct control *ctl;
	struct outbuf *out;
	bool mirroring;		/* the console has the committed stream up to outbuf's position */
	uint64_t committed_end; /* ...which is here: where a promoted guest continues */
};

/*
 * An applied checkpoint's console bytes: the committed output stream goes to
 * this side's console too, so a promoted guest continues it exactly.
 */
static void mirror_console(void *opaque, uint64_t offset, const uint8_t *data, size_t len)
{
	struct standby *sb = opaque;
	uint64_t pos = outbuf_stream_pos(sb->out, outbuf_mark(sb->out));

	if (!sb->mirroring || offset != pos) {
		if (sb->mirroring)
			log_warning("console: the committed stream jumps from offset %llu to %llu "
				    "(a new session, or output the primary could not replicate)",
				    (unsigned long long)pos, (unsigned long long)offset);
		log_info("console: writing the guest's committed output from stream offset %llu",
			 (unsigned long long)offset);
		outbuf_rebase(sb->out, offset);
		sb->mirroring = true;
	}
	outbuf_append(sb->out, data, len);
	outbuf_allow(sb->out, outbuf_mark(sb->out));
	sb->committed_end = outbuf_stream_pos(sb->out, outbuf_mark(sb->out));
}

/* What the failover decision (daemon/failover.c) needs, as this secondary sees it now. */
static void standby_view(const struct standby *sb, bool manual, bool force, uint64_t now,
			 struct failover_view *ret_v)
{
	const struct ftd_cluster *fc = sb->fc;
	const struct secondary *s = sb->s;
	bool cluster = fc && fc->c;

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
static int standby_fence(struct standby *sb, char *msg, size_t msglen)
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
				 (double)sb->o->fence_timeout_ns / 1e9);
		else if (e < 0)
			snprintf(msg, msglen, "the fence command could not run: %s", strerror(-e));
		else
			snprintf(msg, msglen, "the fence command failed (exit status %d)", e);
		log_error("Promotion refused: %s", msg);
		emit(sb->ctl, "fence-failed", "peer", s->last_peer, "error", msg, NULL);
		return -EHOSTUNREACH;
	}
	log_info("Fenced the primary %s in %.1f ms", s->last_peer,
		 (double)(clock_now_ns() - t0) / 1e6);
	emit(sb->ctl, "fenced", "peer", s->last_peer, NULL);
	return 0;
}

/*
 * Acts on a decision to promote: the fence command first when it says so,
 * then the decision again with the fence's result, then the promotion.
 * Returns 0, the decision's error (d->text says why), or secondary_promote's.
 */
static int standby_failover(struct standby *sb, const struct failover_view *v,
			    struct failover_decision *d)
{
	if (d->action == FAILOVER_PROMOTE && d->fence_first) {
		struct failover_view fenced = *v;
		char msg[160];

		fenced.fence = standby_fence(sb, msg, sizeof(msg)) == 0 ? FAILOVER_FENCE_DONE
									: FAILOVER_FENCE_FAILED;
		fenced.fence_error = msg;
		*d = failover_decide(&fenced);
	}
	if (d->action != FAILOVER_PROMOTE)
		return d->error;
	return secondary_promote(sb->s, v->force);
}

/* Logs why an automatic promotion waits, once per reason. */
static void standby_wait(struct standby *sb, const char *why)
{
	if (!strcmp(sb->waiting, why))
		return;
	snprintf(sb->waiting, sizeof(sb->waiting), "%.*s", (int)sizeof(sb->waiting) - 1, why);
	log_info("Automatic failover waits: %s", why);
}

/* --cluster: promote by ourselves once failover_decide() says it is safe. */
static void standby_auto(struct standby *sb, uint64_t now)
{
	struct failover_view v;
	struct failover_decision d;
	int e;

	standby_view(sb, false, false, now, &v);
	d = failover_decide(&v);
	if (d.action != FAILOVER_PROMOTE) {
		if (!d.quiet)
			standby_wait(sb, d.text);
		return;
	}
	/* Named first: secondary_promote() logs it ("Promoted (cluster: ...)"). */
	snprintf(sb->s->promoted_by, sizeof(sb->s->promoted_by), "%.*s",
		 (int)sizeof(sb->s->promoted_by) - 1, d.text);
	e = standby_failover(sb, &v, &d);
	if (e < 0) {
		sb->auto_blocked = true;
		log_error("Automatic failover failed: %s; waiting for an operator",
			  d.action != FAILOVER_PROMOTE ? d.text : strerror(-e));
	}
}

/* Stores the replica's generation when it changed. */
static void standby_store(struct standby *sb)
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
static int standby_discard(struct standby *sb, struct json_object *r)
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
	standby_store(sb);
	if (had)
		log_warning("Discarded the replica (checkpoint %llu of %s) on the operator's "
			    "request: any primary may sync over it now",
			    (unsigned long long)ck, was);
	else
		log_info("Discard: the replica held no checkpoint (%s)", was);
	emit(sb->ctl, "discarded", "was", was, NULL);
	json_add_str(r, "discarded", had ? was : NULL);
	return 0;
}

/* --cluster: a generation announced in the group; a newer one makes the replica stale. */
static void standby_on_gen(void *opaque, const struct gen_state *g, bool from_self, uint32_t nodeid)
{
	struct standby *sb = opaque;
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
	emit(sb->ctl, "stale", "generation", num, NULL);
}

/* `ftctl status` and `ftctl failover` on a secondary. */
static int secondary_control(void *opaque, const struct request *req, struct json_object *r)
{
	struct standby *sb = opaque;
	struct secondary *s = sb->s;
	uint64_t now = clock_now_ns();

	if (req->kind == REQ_DISCARD)
		return standby_discard(sb, r);
	if (req->kind == REQ_FAILOVER) {
		struct failover_view v;
		struct failover_decision d;
		char msg[256];
		int e;

		standby_view(sb, true, req->force, now, &v);
		d = failover_decide(&v);
		e = standby_failover(sb, &v, &d);
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
	if (req->kind != REQ_STATUS) {
		json_add_str(r, "error",
			     req->kind == REQ_METRICS
				     ? "metrics come from the node that runs the guest"
				     : "this is the secondary: ask the node that runs the "
				       "guest");
		return -EPERM;
	}
	json_add_str(r, "role", "secondary");
	json_add_str(r, "state", secondary_state_name(s->state));
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
	json_add_str(r, "quorum", ftd_cluster_quorum(sb->fc));
	if (sb->mirroring)
		json_add_u64(r, "console_offset", outbuf_stream_pos(sb->out, outbuf_mark(sb->out)));
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

/* Secondary-side events from state changes. */
static void standby_events(struct standby *sb, enum secondary_state was)
{
	struct secondary *s = sb->s;
	char ck[24];

	if (s->state == was)
		return;
	snprintf(ck, sizeof(ck), "%llu", (unsigned long long)s->replica.checkpoint);
	if (s->state == SECONDARY_SYNCING)
		emit(sb->ctl, "peer-connected", "peer", secondary_peer(s), NULL);
	else if (s->state == SECONDARY_REPLICATING)
		emit(sb->ctl, "replicating", "peer", secondary_peer(s), "checkpoint", ck, NULL);
	else if (s->state == SECONDARY_WAITING)
		emit(sb->ctl, "peer-lost", "checkpoint", s->replica.has_checkpoint ? ck : NULL,
		     NULL);
	else if (s->state == SECONDARY_ACTIVE)
		emit(sb->ctl, "failover", "by", s->promoted_by, "checkpoint", ck, NULL);
}

/*
 * A promotion starts a new generation: the old primary (and any node that
 * stayed at the replica's generation) is older from now on. Stored, and
 * announced to the cluster, before the promoted guest's output leaves.
 */
static void promoted_generation(struct standby *sb, struct active *a)
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
		s->gen.cur.number = s->stale_by.cur.number + 1;
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
	if (sb->fc && sb->fc->c) {
		if (announce_gen(sb->fc, &s->gen) < 0)
			log_warning("cluster: cannot announce the new generation");
	}
}

int ftd_secondary(const struct ftd_options *o)
{
	struct active a = { .o = o, .sig_fd = -1, .timer_fd = -1, .console_fd = -1 };
	struct standby sb = { .o = o };
	struct ftd_cluster fc = { 0 };
	struct sockaddr_storage ss;
	socklen_t sl;
	struct secondary *s = NULL;
	struct hello_info hello;
	struct netloop nl;
	bool nl_ok = false, ready = false;
	struct outbuf out = { 0 };
	uint8_t *cpuid = NULL;
	int status = 1, r;
	uint64_t start = clock_now_ns(), next_stats = start + NS_PER_S;
	struct swindow w = { .start_ns = start };
	enum secondary_state last_state = SECONDARY_WAITING;

	signal(SIGPIPE, SIG_IGN);
	notify_command = o->notify_command[0] ? o->notify_command : NULL;
	if (parse_addr_opt("listen", o->listen, &ss, &sl) < 0 ||
	    replication_tls(o, (struct sockaddr *)&ss, o->listen, &a.tls) < 0)
		return 2;
	a.console_fd = open_console(o->console);
	if (a.console_fd < 0)
		return 1;
	r = outbuf_init(&out, OUTBUF_BYTES);
	a.sig_fd = ftd_signalfd();
	if (r < 0 || a.sig_fd < 0) {
		log_error("Failed to set up the output buffer and signals");
		goto out;
	}
	/* The replica's console is the same buffer: the guest writes it once promoted. */
	status = ftd_make_vm(o, outbuf_sink, &out, false, &a.vm);
	if (status)
		goto out;
	status = 1;
	r = local_hello(o, a.vm, HELLO_SECONDARY, &hello, &cpuid);
	if (r == 0)
		r = netloop_init(&nl, false);
	if (r < 0) {
		log_error("Failed to set up io_uring: %s", strerror(-r));
		goto out;
	}
	nl_ok = true;
	a.nl = &nl;
	a.out = &out;
	sb.out = &out;
	s = calloc(1, sizeof(*s));
	r = s ? secondary_init(s, a.vm, &nl, (struct sockaddr *)&ss, sl, &hello, o->timeout_ns,
			       a.tls)
	      : -ENOMEM;
	if (r < 0) {
		log_error("Cannot listen on %s: %s", o->listen, strerror(-r));
		free(s);
		s = NULL;
		goto out;
	}
	sb.s = s;
	{
		struct gen_state old;

		/* The replica lives in this process's memory: after a restart it holds nothing. */
		if (genstore_load(o->state_dir, &old) == 0 && gen_has_guest(&old)) {
			char d[128];

			gen_describe(&old, d, sizeof(d));
			log_info("state: this node held %s before; that copy did not survive the "
				 "restart: it holds nothing now",
				 d);
		}
	}
	fc.on_gen = standby_on_gen;
	fc.gen_opaque = &sb;
	s->console_fn = mirror_console;
	s->console_opaque = &sb;
	/*
	 * Only when asked: with no vCPU running here the automatic rule does not
	 * apply, and a real-time thread hashing memory for --verify would take a
	 * whole CPU from whatever shares this host.
	 */
	if (o->realtime == 1)
		ftd_owner_priority(o, a.vm);
	if (control_open(&nl, o->control, secondary_control, &sb, &a.ctl) < 0)
		goto out;
	sb.ctl = a.ctl;
	sb.fc = a.fc = &fc;
	stale_marker_clear(o);
	if (o->cluster[0]) {
		s->auto_failover = true;
		if (ftd_cluster_open(&fc, o->cluster, a.ctl) < 0)
			goto out;
	}
	log_info("secondary: listening on %s for a primary (%llu MiB, %u vCPUs, %s tracking)",
		 o->listen, (unsigned long long)(o->mem_size >> 20), o->vcpus,
		 dirty_mode_name(o->tracking));
	sd_notifyf(0, "STATUS=secondary: listening on %s", o->listen);
	emit(a.ctl, "role", "role", "secondary", "by", "start", NULL);
	status = 0;
	for (;;) {
		struct pollfd pfd[5] = {
			{ .fd = a.sig_fd, .events = POLLIN },
			{ .fd = netloop_fd(&nl), .events = POLLIN },
		};
		int npfd = ftd_cluster_pollfds(&fc, pfd, 2, 5);
		uint64_t now;

		if (poll(pfd, (nfds_t)npfd, 100) < 0 && errno != EINTR) {
			log_error("poll failed: %s", strerror(errno));
			status = 1;
			break;
		}
		if ((pfd[0].revents & POLLIN) && ftd_read_signal(a.sig_fd))
			break;
		netloop_dispatch(&nl);
		ftd_cluster_dispatch(&fc);
		now = clock_now_ns();
		secondary_tick(s, now);
		netloop_dispatch(&nl);
		standby_auto(&sb, now);
		standby_store(&sb);
		hook_reap();
		outbuf_flush(&out, a.console_fd);
		standby_events(&sb, last_state);
		if (s->state == SECONDARY_WAITING && last_state != SECONDARY_WAITING)
			log_replica(s, "primary gone", false);
		last_state = s->state;
		if (s->state == SECONDARY_ACTIVE)
			break;
		/* systemd: ready once the replica is a checkpoint the guest could run from. */
		if (!ready && s->state == SECONDARY_REPLICATING) {
			ready = true;
			sd_notify(0, "READY=1");
		}
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
	if (s->state != SECONDARY_ACTIVE) {
		sd_notify(0, "STOPPING=1");
		log_replica(s, "stopping", true);
	}
	log_info("summary: %llu epochs applied (%llu checkpoints, %llu verified, %llu "
		 "mismatches), %llu sessions, %llu connections refused",
		 (unsigned long long)s->st.epochs, (unsigned long long)s->st.checkpoints,
		 (unsigned long long)s->st.verified, (unsigned long long)s->st.mismatches,
		 (unsigned long long)s->st.sessions, (unsigned long long)s->st.refused);
	if (s->state == SECONDARY_ACTIVE) {
		/* The guest runs here now: this process carries on as its primary. */
		char by[sizeof(s->promoted_by)];

		snprintf(by, sizeof(by), "%s", s->promoted_by);
		a.promoted_by = by;
		promoted_generation(&sb, &a);
		a.promoted_checkpoint = s->replica.checkpoint;
		/* Not outbuf's position now: the promoted vCPUs may have written already. */
		log_info("console: the guest continues the stream at offset %llu",
			 (unsigned long long)(sb.mirroring ? sb.committed_end : 0));
		if (!ready)
			sd_notify(0, "READY=1");
		/* s stays until the end: freeing it waits out receives still in flight. */
		status = active_run(&a, NULL);
	}
out:
	cluster_close(fc.c);
	control_close(a.ctl);
	if (s) {
		secondary_free(s);
		free(s);
	}
	if (nl_ok) {
		netloop_drain(&nl, 1000000000ULL);
		netloop_free(&nl);
	}
	vm_free(a.vm);
	if (out.buf) {
		outbuf_flush(&out, a.console_fd);
		outbuf_free(&out);
	}
	free(cpuid);
	if (a.sig_fd >= 0)
		close(a.sig_fd);
	if (a.console_fd >= 0)
		close(a.console_fd);
	tls_ctx_free(a.tls);
	tls_ctx_free(a.tls_named);
	return status;
}
