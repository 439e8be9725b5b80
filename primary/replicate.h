/* SPDX-License-Identifier: MIT */
/*
 * The primary's side of replication: one connection to a secondary at a time,
 * the handshake, the initial sync while the guest runs, the epoch loop with two
 * staging slots (epoch N+1 may be captured while N is on the wire), ACKs, output
 * commit, heartbeats, and falling back to `unprotected` when the secondary goes
 * away (then connecting again and re-syncing from scratch).
 *
 * Everything runs on the owner thread: the daemon calls primary_checkpoint() on
 * its timer, primary_ring_full() when a dirty ring fills, and primary_tick()
 * after every wake-up; network completions arrive through the netloop.
 */
#ifndef RINGFT_PRIMARY_REPLICATE_H
#define RINGFT_PRIMARY_REPLICATE_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lib/stats.h"
#include "primary/checkpoint.h"
#include "primary/commit.h"
#include "primary/outbuf.h"
#include "proto/epoch.h"
#include "proto/link.h"
#include "proto/session.h"

enum primary_state {
	PRIMARY_UNPROTECTED, /* no secondary: output leaves at once */
	PRIMARY_CONNECTING,
	PRIMARY_HANDSHAKE,
	PRIMARY_SYNCING,   /* initial copy, then checkpoint 0 until it is acknowledged */
	PRIMARY_PROTECTED, /* checkpoint 0 acknowledged: output waits for ACKs */
};

const char *primary_state_name(enum primary_state s);

/*
 * Live harvest (ckpt_live_harvest): half-way through an epoch, harvest and
 * copy the pages dirtied so far while the guest runs and send them to the
 * secondary as the epoch's live batch, so the pause copies and sends only the
 * rest. Auto: when the last checkpoint had at least PRIMARY_LIVE_MIN_PAGES
 * pages and checkpoints are at least PRIMARY_LIVE_MIN_GAP_NS apart.
 */
enum primary_live {
	PRIMARY_LIVE_AUTO = 0,
	PRIMARY_LIVE_OFF,
	PRIMARY_LIVE_ON,
};
#define PRIMARY_LIVE_MIN_PAGES	512
#define PRIMARY_LIVE_MIN_GAP_NS 2000000ULL

struct primary_config {
	struct sockaddr_storage peer; /* peer_len 0: none yet (ftctl protect sets one) */
	socklen_t peer_len;
	char peer_name[64];
	uint64_t timeout_ns;	 /* a peer silent this long is gone */
	uint64_t reconnect_ns;	 /* between connection attempts */
	bool verify;		 /* hash guest memory at every checkpoint */
	struct virtio_blk *disk; /* --disk: replicated with every epoch, or NULL */
	enum primary_live live;	 /* live harvest: off, on, or where it pays */
	SSL_CTX *tls;		 /* mutual TLS with the secondary, or NULL (loopback, --insecure) */
	struct hello_info hello;
};

#define PRIMARY_SLOTS	    2
#define PRIMARY_MAX_UNACKED 8

struct primary;

struct primary_slot {
	struct primary *p;
	struct ckpt ck;
	struct epoch_tx tx;
	struct link_msg msg;
	bool busy;		  /* captured or filled, until its send completes */
	struct commit_mark marks; /* output before the checkpoint, every channel */
	/* The next capture's live batch, sent ahead of it while the guest runs. */
	struct epoch_tx live_tx;
	struct epoch_sum sum;
	struct link_msg live_msg;
	bool live_busy;	  /* until the live batch's send completes */
	uint64_t mark;	  /* console bytes produced before the checkpoint */
	uint8_t *console; /* the checkpoint's console bytes (EPOCH_CONSOLE_MAX) */
	size_t console_len;
	uint64_t console_offset;
	uint64_t console_end; /* where the checkpoint's output ends (it may carry less) */
	uint64_t *zero;	      /* a sync batch's all-zero pages */
};

struct unacked {
	uint64_t epoch;
	struct commit_mark marks; /* output produced before the checkpoint */
	uint64_t start_ns;	  /* pause start, for pause-to-ACK */
	bool sync;		  /* initial-sync pages, not a checkpoint */
};

enum primary_part {
	PART_KICK,    /* until every vCPU parked, their parallel state saves included */
	PART_HARVEST, /* ring walk or bitmap fetch */
	PART_RESET,   /* KVM_RESET_DIRTY_RINGS or the bitmap clear */
	PART_COPY,    /* dirty pages into staging */
	PART_HASH,    /* --verify */
	PART_VMSTATE, /* irqchip, PIT, clock, devices */
	PRIMARY_PARTS,
};

extern const char *const primary_part_names[PRIMARY_PARTS];

struct primary_stats {
	uint64_t checkpoints;	  /* acknowledged or not, this process */
	uint64_t early;		  /* on a full dirty ring */
	uint64_t skipped;	  /* timer ticks with no staging slot free */
	uint64_t ring_relief;	  /* ring-full harvests without a checkpoint */
	uint64_t acked;		  /* checkpoints acknowledged */
	uint64_t last_ack_ns;	  /* when the last one was */
	uint64_t verified;	  /* acknowledged with a matching memory hash */
	uint64_t mismatches;	  /* acknowledged with a different memory hash */
	uint64_t sessions;	  /* handshakes completed */
	uint64_t protected_ns;	  /* when the current session became protected, or 0 */
	uint64_t bytes_sent;	  /* over every connection */
	uint64_t sync_zero_pages; /* initial-sync pages that were all zero (no data sent) */
	uint64_t sync_pages;	  /* initial-sync pages sent, this session */
	uint64_t sync_remaining;
	uint32_t sync_round;
	uint64_t pages_total;
	uint64_t disk_sync_blocks; /* blocks the disk sync sent (data or zero), this session */
	uint64_t disk_sync_bytes;  /* data bytes of those */
	uint64_t disk_sync_ms;	   /* how long the disk sync took, this session */
	uint64_t live_harvests;	   /* live harvests taken */
	uint64_t live_pages;	   /* checkpoint pages copied by them and not again in a pause */
	struct samples pause_us;   /* since the last stats line */
	struct samples ack_us;	   /* pause start to ACK */
	struct samples pages;	   /* dirty pages per checkpoint */
	struct histogram all_pause_us; /* whole run */
	struct histogram all_ack_us;
	/* Where the pause goes (ckpt_timing), whole run. */
	struct histogram part_us[PRIMARY_PARTS];
};

/* ftctl switchover: a planned hand-over to the secondary. */
enum primary_handover {
	HANDOVER_NONE,
	HANDOVER_CAPTURE, /* the final checkpoint is due: the guest stops at its capture */
	HANDOVER_ACK,	  /* waiting for its ACK (guest stopped) */
	HANDOVER_ANSWER,  /* GOODBYE(switchover) sent: waiting for the secondary's answer */
	HANDOVER_DONE,	  /* the secondary runs the guest: this side is finished */
	HANDOVER_FAILED,  /* refused or lost before the secondary could run it: guest resumed */
	HANDOVER_UNKNOWN, /* no answer: the guest may run there, so it stays stopped here */
};

struct pconn;

struct primary {
	struct vm *vm;
	struct netloop *nl;
	struct outbuf *out;    /* the console: its bytes go in every checkpoint */
	struct commit *commit; /* output commit: what is held, and when it leaves */
	struct primary_config cfg;
	uint32_t peer_protocol; /* the last secondary's agreed protocol version, 0: none yet */
	char peer_version[32];	/* ... and its software version ("" if it did not say) */
	enum primary_state state;
	struct pconn *conn;
	/*
	 * A connection let go with frames still queued (a goodbye, a refusal):
	 * its link may still send from the slots until it is released.
	 */
	struct pconn *flushing;
	uint64_t next_connect_ns;
	int last_connect_err;
	/*
	 * Sessions in a row the secondary ended with a GOODBYE before it held a
	 * checkpoint (a full disk, an image it cannot write): each one after the
	 * first doubles the wait before the next attempt, up to 30 s, since each
	 * attempt reads both disk images whole. 0 again once protected.
	 */
	unsigned int goodbyes;
	bool stopping; /* shutting down: held output stays held */
	/*
	 * The guest is stopped because this node lost quorum (primary_freeze):
	 * no checkpoints, no sync, no connection attempts, held output stays held.
	 */
	bool frozen;
	uint64_t lost_ns;  /* when the last session past the handshake ended, or 0 */
	uint64_t attempts; /* connection attempts that ended (refused, failed, lost) */
	/*
	 * Of those, sessions that connected but ended before the secondary
	 * answered the HELLO (no HELLO, no REFUSE): nothing learnt about the peer.
	 */
	uint64_t unanswered;
	/* The last REFUSE: its field ("guest", "generation", "running", ...) and text. */
	char refused_field[32];
	char refused_desc[200];

	struct primary_slot slot[PRIMARY_SLOTS];
	struct unacked unacked[PRIMARY_MAX_UNACKED];
	unsigned int unacked_head, nr_unacked;
	uint64_t next_epoch;   /* of this session */
	uint64_t console_from; /* the next checkpoint's console bytes start here */
	bool console_started;  /* console_from is set (from checkpoint 0 on) */
	enum primary_handover handover;
	uint64_t handover_epoch; /* the final checkpoint */
	char handover_error[160];
	char last_drop[160];	   /* why the last session ended, for events */
	uint64_t first_checkpoint; /* epoch number of checkpoint 0, UINT64_MAX before */

	/* Initial sync. */
	struct dirty_set sync_dirty; /* harvested while syncing, sent in the next round */
	uint64_t *sync_list;	     /* this round's pages (round 0: every page) */
	uint64_t sync_len, sync_pos;
	uint64_t sync_round_start_ns;
	uint64_t sync_start_ns;
	struct dirty_set scratch;

	/*
	 * Disk sync (--disk): the secondary's block sums arrive after its HELLO;
	 * then every block is compared and those that differ are logged, before
	 * the memory sync starts (sync.c).
	 */
	uint64_t *disk_sums;	 /* the secondary's, one per DISK_BLOCK */
	uint64_t disk_blocks;	 /* blocks of the image */
	uint64_t disk_sums_have; /* sums received so far (they arrive in order) */
	uint64_t disk_pos;	 /* next block to compare */
	bool disk_synced;	 /* every block compared: the memory sync may start */
	uint64_t disk_sync_start_ns;

	struct primary_stats st;
	/* Live harvest: the last checkpoint, the gap before it, the next one due. */
	uint64_t last_ckpt_ns, ckpt_gap_ns, live_due_ns;
	uint64_t last_ckpt_pages;
};

/*
 * `console` is the guest's console output, one of `commit`'s channels: its
 * bytes travel in every checkpoint, so a promoted secondary continues it.
 */
int primary_init(struct primary *p, struct vm *vm, struct netloop *nl, struct outbuf *console,
		 struct commit *commit, const struct primary_config *cfg);
/*
 * The daemon stopped the guest for want of quorum (true; it paused the
 * vCPUs), or runs it again (false): no checkpoints, sync or connection
 * attempts meanwhile, and unprotected output stays held.
 */
void primary_freeze(struct primary *p, bool frozen);
/* Says goodbye to a connected secondary and releases everything. */
void primary_free(struct primary *p);

/*
 * Takes a checkpoint when one is due (early: a dirty ring filled). Without a
 * protected or syncing session it only relieves full rings. Returns 0, -ESRCH
 * when the guest has stopped, or another -errno that ends the run.
 */
int primary_checkpoint(struct primary *p, bool early);
/*
 * Guest output is waiting (--output-interval): a checkpoint now if one can be
 * taken at once (protected, a staging slot free), else nothing (the next one
 * carries it; not counted as skipped). Returns 1 if taken, 0 if not, or as
 * primary_checkpoint.
 */
int primary_checkpoint_for_output(struct primary *p);
/* Whether primary_checkpoint_for_output() could take one now (else an ACK frees a slot). */
bool primary_output_checkpoint_possible(struct primary *p);
/* Connection attempts, heartbeats, silence, initial sync progress, output, live harvests. */
void primary_tick(struct primary *p, uint64_t now_ns);
/* When primary_tick() next has timed work (a live harvest), or UINT64_MAX. */
uint64_t primary_next_due(const struct primary *p);
/* Bytes handed to the kernel over every connection so far. */
uint64_t primary_bytes_sent(const struct primary *p);
/* Sends GOODBYE and closes the connection (shutdown). */
void primary_goodbye(struct primary *p, const char *reason);
/*
 * Protects the guest with the secondary at `peer` from now on: -EBUSY while a
 * session exists (the current secondary must go first).
 */
int primary_set_peer(struct primary *p, const struct sockaddr *peer, socklen_t len);
/*
 * Starts a planned hand-over: the guest stops at a final checkpoint, which the
 * secondary acknowledges and then runs. Progress in p->handover. Returns 0,
 * -ENOTCONN unless protected, -EALREADY while one is in progress.
 */
int primary_switchover(struct primary *p);
/*
 * Whether a guest stopped for want of quorum may run again once quorum is
 * back: only while the secondary still follows it (protected, so it cannot
 * have promoted) and no switchover holds it stopped. Once its final
 * checkpoint is captured the guest belongs to the hand-over: after GOODBYE
 * (switchover) the other side may run it, and local state alone never says
 * it does not.
 */
bool primary_may_thaw(const struct primary *p);

#endif
