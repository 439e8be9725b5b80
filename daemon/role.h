/* SPDX-License-Identifier: MIT */
/*
 * Private to `ftd primary` and `ftd secondary` (daemon/replication.c and the
 * files beside it): what one process holds whatever its role, the primary
 * (the guest runs here: ftd_primary.c, ftd_primary_control.c) and the secondary (a
 * replica: ftd_secondary.c), so that events.c and status.c can render both.
 *
 * A secondary that is promoted becomes a primary in the same process: its
 * struct ftd_primary borrows the same ftd_process, and its struct secondary stays
 * alive (pr->sec) until the process ends.
 */
#ifndef RINGFT_DAEMON_ROLE_H
#define RINGFT_DAEMON_ROLE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include <json-c/json.h>

#include "daemon/autointerval.h"
#include "daemon/control.h"
#include "daemon/ftd_cluster.h"
#include "daemon/net.h"
#include "daemon/options.h"
#include "lib/clock.h"
#include "primary/replicate.h"
#include "proto/generation.h"
#include "proto/tls.h"
#include "secondary/receiver.h"

#define RECONNECT_NS NS_PER_S

/*
 * One ftd process (daemon/replication.c): set up once by ftd_process_open()
 * and ftd_process_serve(), torn down once by ftd_process_close(), whichever
 * role runs in between.
 */
struct ftd_process {
	const struct ftd_options *o;
	struct vm *vm;
	struct netloop nl;
	bool nl_ok;
	struct outbuf out;	 /* the guest console: output commit's first channel */
	struct outbuf frames;	 /* --net: the guest's frames, its second (records) */
	struct commit commit;	 /* what is held and when it leaves (primary/commit.h) */
	struct ftd_net net;	 /* --net: the NIC (daemon/net.h) */
	struct virtio_blk *disk; /* --disk: the guest's disk, owned by the VM, or NULL */
	struct control *ctl;
	struct metrics_http *mh; /* --metrics-listen, or NULL (daemon/metrics_http.h) */
	struct ftd_cluster fc;	 /* --cluster; fc.c is NULL without */
	/* `ftd secondary`: kept when promoted; freed before the netloop (it waits out receives). */
	struct secondary *sec;
	int sig_fd, console_fd;
	SSL_CTX *tls; /* replication TLS, or NULL */
	/* --peer or --listen, parsed. */
	struct sockaddr_storage addr;
	socklen_t addr_len;
	bool booted; /* `ftd primary`: its exit says how much output was withheld */
	/* The guest's name: --guest, or on a secondary what its primary ran. */
	char guest[64];
};

/*
 * The console, output buffer, signals, VM (with its guest when load_guest) and
 * io_uring of a process replicating with addr (given as --ADDR_OPT, its TLS
 * checked). Logs failures; returns 0 or the exit status. ftd_process_close()
 * follows in every case.
 */
int ftd_process_open(struct ftd_process *pr, const struct ftd_options *o, const char *addr_opt,
		     const char *addr, bool load_guest, bool send_zc);
/* The control socket (answered by fn) and --cluster. Logs failures; 0 or -errno. */
int ftd_process_serve(struct ftd_process *pr, control_fn fn, void *opaque);
void ftd_process_close(struct ftd_process *pr);

/* What both sides put in HELLO; cpuid is malloc'ed. */
int local_hello(const struct ftd_options *o, struct vm *vm, const struct virtio_blk *disk,
		uint32_t role, struct hello_info *h, uint8_t **ret_cpuid);
/* The address of option --opt; logs what is wrong with it. 0 or -EINVAL. */
int parse_addr_opt(const char *opt, const char *value, struct sockaddr_storage *ss, socklen_t *len);
/*
 * Mutual TLS from the options (NULL without): replication in the clear is
 * only allowed to a loopback address unless --insecure, which warns. Logs;
 * returns 0, or -EINVAL to refuse.
 */
int replication_tls(const struct ftd_options *o, const struct sockaddr *addr, const char *addr_text,
		    SSL_CTX **ret);

/*
 * The guest running here and its protection: `ftd primary`, and a secondary
 * once promoted (which can protect the guest again with `ftctl protect`).
 */
struct ftd_primary {
	const struct ftd_options *o;
	struct ftd_process *pr; /* the VM, console, netloop, control socket, cluster */
	struct primary *p;
	uint8_t *cpuid; /* of cfg.hello */
	int timer_fd;
	uint64_t interval_ns;	      /* the current one: `ftctl set interval` changes it */
	struct auto_interval auto_iv; /* --interval auto / `ftctl set interval auto` */
	uint64_t start_ns;
	const char *promoted_by; /* NULL on an original primary */
	uint64_t promoted_checkpoint;
	enum primary_state last_state;
	uint64_t last_sync_event_ns;
	SSL_CTX *tls_named;	      /* protect --tls-peer NAME: for that secondary */
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

/* The replica kept here for the primary that connects: `ftd secondary` until promoted. */
struct ftd_secondary {
	const struct ftd_options *o;
	struct ftd_process *pr;
	bool auto_blocked; /* an automatic promotion failed: the operator decides */
	bool booting;	   /* `ftctl start`: the guest boots here (the state is ACTIVE) */
	char waiting[160]; /* why it does not promote yet (logged once) */
	struct secondary *s;
	bool mirroring;		/* the console has the committed stream up to outbuf's position */
	uint64_t committed_end; /* ...which is here: where a promoted guest continues */
};

/* The primary (ftd_primary.c). */

/*
 * Runs the started guest in a until the end: protected by `peer` (NULL: none
 * until `ftctl protect`). The control socket is a's from here on. Frees what
 * it set up; the process keeps the VM, output buffer, netloop and fds.
 */
int ftd_primary_run(struct ftd_primary *a, const char *peer);
/*
 * Boots the guest loaded in a's VM as a new guest (after the cluster's
 * checks with --cluster) and runs it as ftd_primary_run(a, peer) does.
 * Returns the exit status.
 */
int ftd_primary_boot(struct ftd_primary *a, const char *peer);
/* --cluster: removes a qdevice marker (ftd_primary_marker) an earlier ftd left behind. */
void stale_marker_clear(const struct ftd_options *o);

/* `ftctl` on the node that runs the guest (ftd_primary_control.c). */
int ftd_primary_control(void *opaque, const struct request *req, struct json_object *r);
/* SIGHUP: applies what ftd_reload() changed (RELOAD_*) to the running guest. */
void ftd_primary_apply_reload(struct ftd_primary *a, unsigned int what);
/*
 * --interval auto, once a second: from the last second's pauses and ACKs
 * (before the statistics line consumes them).
 */
void ftd_primary_auto_interval(struct ftd_primary *a);

/* JSON members; a NULL string is null. */
static inline void json_add_u64(struct json_object *o, const char *key, uint64_t v)
{
	json_object_object_add(o, key, json_object_new_uint64(v));
}

static inline void json_add_str(struct json_object *o, const char *key, const char *v)
{
	json_object_object_add(o, key, v ? json_object_new_string(v) : NULL);
}

#endif
