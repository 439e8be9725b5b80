/* SPDX-License-Identifier: MIT */
/* ftd's command line: a subcommand, then long options (also the config keys). */
#ifndef RINGFT_DAEMON_OPTIONS_H
#define RINGFT_DAEMON_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "guest/guest_abi.h"
#include "vmm/dirty.h"

/* --net: the guest's virtio-net NIC on a TAP device. */
struct ftd_net_options {
	bool enabled;
	char tap[16]; /* the TAP's name (IFNAMSIZ) */
	uint8_t mac[6];
	char mac_text[18]; /* the same, as text (the handshake compares it) */
	bool vnet_hdr;	   /* IFF_VNET_HDR */
	uint64_t hold_max; /* bytes of held frames before the guest's transmit queue stops */
};

#define FTD_NET_DEFAULT_MAC                                                                        \
	{                                                                                          \
		0x52, 0x54, 0x00, 0x12, 0x34, 0x56                                                 \
	}
#define FTD_NET_DEFAULT_HOLD_MAX (8ULL << 20)

/* --kernel: a Linux guest instead of a built-in one (vmm/linux_boot.h). */
struct ftd_kernel_options {
	char kernel[256]; /* "": a built-in guest */
	char initrd[256];
	char cmdline[1024];
	bool cmdline_set;
	bool pvh; /* --boot-protocol pvh; default: the 64-bit boot protocol */
};

enum ftd_role {
	FTD_ROLE_NONE = 0,
	FTD_ROLE_RUN,
	FTD_ROLE_PRIMARY,
	FTD_ROLE_SECONDARY,
	FTD_ROLE_AUTO, /* decided at run time: starts as a secondary (daemon/ftd_secondary.c) */
};

/* A `[node NAME]` section: one of the pair that protects the guest. */
struct ftd_node {
	char name[64];
	char address[128]; /* its replication HOST:PORT */
};

#define FTD_NODES 2

struct ftd_options {
	enum ftd_role role;
	bool help;
	bool version;
	bool check_config; /* --check-config: validate, report, exit */
	char guest[64];
	uint64_t mem_size;
	unsigned int vcpus;
	enum dirty_mode tracking;
	uint32_t ring_entries;
	uint64_t interval_ns;
	uint64_t output_interval_ns; /* primary: output waits at most this for its checkpoint; 0:
					off */
	bool interval_auto;	     /* --interval auto: from the budgets below */
	uint32_t auto_overhead_pct;  /* pause share of wall time, percent */
	uint64_t auto_max_hold_ns;   /* output held at most this long; 0: no bound */
	uint64_t duration_ns;	     /* 0: until SIGINT/SIGTERM */
	char console[256];	     /* "-": stdout */
	bool quiet;		     /* no per-second statistics line */
	int realtime;		     /* SCHED_FIFO checkpoint thread: 1 on, 0 off, -1 auto */
	char peer[128];		     /* primary: the secondary's HOST:PORT */
	char listen[128];	     /* secondary: HOST:PORT to listen on */
	bool verify;		     /* primary: hash all memory at every checkpoint */
	bool prealloc;		     /* allocate all guest RAM at start */
	uint64_t timeout_ns;	     /* a silent peer is gone after this long */
	bool send_zc;		     /* primary: IORING_OP_SENDMSG_ZC for page data */
	int live_harvest;	     /* primary: FTD_LIVE_* (enum primary_live's values) */
	char control[108];	     /* control socket path; default /run/ftd/ROLE.sock */
	char fence_command[512];     /* secondary: must succeed before a promotion */
	uint64_t fence_timeout_ns;
	char notify_command[512]; /* told about role changes */
	char cluster[64];	  /* Corosync CPG group: automatic failover */
	char tls_cert[256];	  /* mutual TLS: this side's certificate (chain), PEM */
	char tls_key[256];	  /* ... its key (not readable by others) */
	char tls_ca[256];	  /* ... the CA that signs the peers */
	char tls_peer[128];	  /* ... the name the peer's certificate must carry, or "" */
	bool insecure;		  /* replicate in the clear beyond loopback */
	uint64_t cluster_wait_ns; /* after the primary's node left, before promoting */
	char corosync_conf[200];  /* its timeouts bound cluster_wait_ns (daemon/corosync_conf.h) */
	char state_dir[200];	  /* guest UUID and data generation (daemon/genstore.h) */
	struct ftd_net_options net;
	struct ftd_kernel_options kern;
	char disk[256];		  /* --disk: the guest's virtio-blk image, "": none */
	char metrics_listen[128]; /* --metrics-listen HOST:PORT: Prometheus over HTTP, "": none */
	/*
	 * The configuration's [node NAME] sections (both nodes, the same file on
	 * each), which of them this is (--node, else the host name), and the
	 * other's address: role auto listens on this node's, protects towards the
	 * other's (auto_peer) once the guest runs here.
	 */
	struct ftd_node nodes[FTD_NODES];
	unsigned int nr_nodes;
	char node[64];
	char auto_peer[128];
	char config[256];     /* --config: the file (SIGHUP reads it again), "": none */
	char name[64];	      /* the instance: --config's base name without .conf, "": none */
	bool guest_set;	      /* --guest given: conflicts with --kernel */
	bool no_device_dirty; /* --debug-no-device-dirty: tests prove --verify catches it */
	struct guest_params gp;
};

enum { FTD_LIVE_AUTO = 0, FTD_LIVE_OFF = 1, FTD_LIVE_ON = 2 };

/*
 * Fills *o from argv (argv[1] is the subcommand). On error returns -EINVAL and
 * writes a one-line message naming the option and the value into err.
 */
int ftd_options_parse(int argc, char **argv, struct ftd_options *o, char *err, size_t errlen);
void ftd_usage(FILE *out);

#endif
