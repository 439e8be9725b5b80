// SPDX-License-Identifier: MIT
/*
 * `ftctl` on the node that runs the guest: set interval (and --interval
 * auto's own retiming), protect, switchover, status and metrics; the requests
 * only a secondary answers are refused here. The schema is in ctl/README.md.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "daemon/events.h"
#include "daemon/reload.h"
#include "daemon/role.h"
#include "daemon/run.h"
#include "daemon/status.h"
#include "lib/log.h"

/* The timer at ns from the next tick on; 0 or -errno (with r's "error" when r). */
static int ftd_primary_retime(struct ftd_primary *a, uint64_t ns, struct json_object *r)
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
static int ftd_primary_set_interval(struct ftd_primary *a, const struct request *req,
				    struct json_object *r)
{
	uint64_t was = a->interval_ns;
	int e;

	if (req->interval_auto) {
		auto_interval_init(&a->auto_iv, a->o->auto_overhead_pct, a->o->auto_max_hold_ns);
		log_info("checkpoint interval: auto (overhead budget %u%%%s), from %.3f ms",
			 a->auto_iv.overhead_pct,
			 a->auto_iv.max_hold_ns ? ", output hold budget" : "",
			 (double)was / NS_PER_MS);
	} else {
		e = ftd_primary_retime(a, req->interval_ns, r);
		if (e < 0)
			return e;
		a->auto_iv.enabled = false;
		log_info("checkpoint interval set to %.3f ms (was %.3f ms)",
			 (double)a->interval_ns / NS_PER_MS, (double)was / NS_PER_MS);
	}
	json_add_u64(r, "interval_us", a->interval_ns / NS_PER_US);
	json_object_object_add(r, "interval_auto", json_object_new_boolean(a->auto_iv.enabled));
	return 0;
}

void ftd_primary_apply_reload(struct ftd_primary *a, unsigned int what)
{
	const struct ftd_options *o = a->o;

	if (what & RELOAD_INTERVAL) {
		if (o->interval_auto) {
			auto_interval_init(&a->auto_iv, o->auto_overhead_pct, o->auto_max_hold_ns);
			log_info("SIGHUP: checkpoint interval auto (overhead budget %u%%)",
				 a->auto_iv.overhead_pct);
		} else if (ftd_primary_retime(a, o->interval_ns, NULL) < 0) {
			log_error("SIGHUP: cannot set the checkpoint timer: %s", strerror(errno));
		} else {
			a->auto_iv.enabled = false;
			log_info("SIGHUP: checkpoint interval %.3f ms",
				 (double)a->interval_ns / NS_PER_MS);
		}
	}
	if (what & RELOAD_TIMEOUT)
		a->p->cfg.timeout_ns = o->timeout_ns;
	if (what & RELOAD_TLS)
		a->p->cfg.tls = a->pr->tls;
}

void ftd_primary_auto_interval(struct ftd_primary *a)
{
	struct primary_stats *st = &a->p->st;
	uint64_t next;

	if (!a->auto_iv.enabled || a->p->state != PRIMARY_PROTECTED || !st->pause_us.n)
		return;
	next = auto_interval_next(
		&a->auto_iv, a->interval_ns, samples_percentile(&st->pause_us, 50) * NS_PER_US,
		st->ack_us.n ? samples_percentile(&st->ack_us, 99) * NS_PER_US : 0);
	if (next == a->interval_ns)
		return;
	if (ftd_primary_retime(a, next, NULL) < 0) {
		log_warning("interval auto: cannot set the timer: %s", strerror(errno));
		return;
	}
	log_info("interval auto: %.3f ms (bound by %s%s)", (double)next / NS_PER_MS,
		 a->auto_iv.bound,
		 a->auto_iv.overhead_exceeded ? ", overhead budget exceeded" : "");
}

/*
 * The name a new secondary's certificate must bear. ftd's --tls-peer names the
 * peer it was started with: on a promoted node, its old primary, so a protect
 * there must name the new secondary itself. Returns 0 or -errno with "error".
 */
static int protect_tls_name(struct ftd_primary *a, const struct request *req, struct json_object *r)
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
	 * The process's TLS context stays: a promoted secondary's listener still uses it. Links of
	 * earlier sessions hold their own references to an earlier named one.
	 */
	tls_ctx_free(a->tls_named);
	a->tls_named = ctx;
	log_info("replication: the next secondary's certificate must name %s", req->tls_peer);
	return 0;
}

/* `ftctl protect --peer HOST:PORT`: sync to that secondary and protect the guest. */
static int ftd_primary_protect(struct ftd_primary *a, const struct request *req,
			       struct json_object *r)
{
	char msg[192];
	int e = protect_tls_name(a, req, r);

	if (e < 0)
		return e;

	net_format_addr((const struct sockaddr *)&req->peer, msg, sizeof(msg));
	if (replication_tls(a->o, (const struct sockaddr *)&req->peer, msg, &a->pr->tls) < 0) {
		json_add_str(
			r, "error",
			"not a loopback address: replication needs TLS (--tls-cert, --tls-key, "
			"--tls-ca) or --insecure");
		return -EPERM;
	}
	a->p->cfg.tls = a->tls_named ? a->tls_named : a->pr->tls;
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
	event_emit(a->pr->ctl, "protect", "peer", a->p->cfg.peer_name, NULL);
	json_add_str(r, "peer", a->p->cfg.peer_name);
	return 0;
}

/* The control socket of a running guest: the schema is documented in ctl/README.md. */
int ftd_primary_control(void *opaque, const struct request *req, struct json_object *r)
{
	struct ftd_primary *a = opaque;
	int e;

	switch (req->kind) {
	case REQ_SET_INTERVAL:
		return ftd_primary_set_interval(a, req, r);
	case REQ_PROTECT:
		return ftd_primary_protect(a, req, r);
	case REQ_METRICS:
		ftd_primary_metrics(a, r);
		return 0;
	case REQ_SWITCHOVER:
		e = primary_switchover(a->p);
		if (e == 0) {
			event_emit(a->pr->ctl, "switchover", "phase", "started", "peer",
				   a->p->cfg.peer_name, NULL);
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
	case REQ_START:
		json_add_str(r, "error", "the guest runs here already");
		return -EALREADY;
	case REQ_STATUS:
	case REQ_EVENTS:
		break;
	}
	ftd_primary_status(a, r);
	return 0;
}
