/* SPDX-License-Identifier: MIT */
/*
 * The secondary's side of replication: a listening socket, the handshake with
 * each connecting peer, and at most one primary session whose epochs are
 * staged (straight from the socket into staging), verified, applied to the
 * replica and acknowledged in order.
 *
 * Anything a peer sends that is not exactly the protocol closes that peer's
 * connection with a log line naming what was wrong; the replica only ever
 * changes by a complete, verified epoch, and the secondary goes on listening.
 */
#ifndef RINGFT_SECONDARY_RECEIVER_H
#define RINGFT_SECONDARY_RECEIVER_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "lib/clock.h"
#include "lib/diskimg.h"
#include "proto/epoch.h"
#include "proto/link.h"
#include "proto/session.h"
#include "secondary/replica.h"

/*
 * Connections: the session, plus peers that have not completed TLS and HELLO
 * yet. Unauthenticated ones hold a slot for at most SECONDARY_HELLO_NS (or
 * --timeout if shorter), and one source address (any port) at most
 * SECONDARY_MAX_PER_SOURCE of them, so that one host opening connections
 * again and again cannot lock the real primary out.
 */
#define SECONDARY_MAX_PEERS	 32
#define SECONDARY_MAX_PER_SOURCE 4
#define SECONDARY_HELLO_NS	 NS_PER_S

struct sconn;

struct secondary_stats {
	uint64_t epochs;      /* applied, sync batches included */
	uint64_t checkpoints; /* applied checkpoints */
	uint64_t verified;
	uint64_t mismatches;
	uint64_t refused; /* connections refused or closed for bad input */
	uint64_t sessions;
	uint64_t bytes_received;
	uint64_t sync_pages;
	uint64_t apply_ns; /* epoch staged to ACK queued: sum and max */
	uint64_t apply_max_ns;
	uint64_t last_apply_ns; /* when the last checkpoint was applied */
	/* The replicated disk: what epochs' records did to the image. */
	uint64_t disk_bytes;	/* written or zeroed */
	uint64_t disk_writes;	/* records applied (writes and zeroings) */
	uint64_t disk_syncs;	/* fdatasync()s, one per epoch that carried a guest flush */
	uint64_t disk_apply_ns; /* in diskimg_apply, included in apply_ns */
};

enum secondary_state {
	SECONDARY_WAITING,     /* no primary */
	SECONDARY_SYNCING,     /* a primary is copying memory: no checkpoint yet */
	SECONDARY_REPLICATING, /* the replica is a complete checkpoint */
	SECONDARY_ACTIVE,      /* promoted: the guest runs here, unprotected */
};

const char *secondary_state_name(enum secondary_state s);

struct secondary {
	struct vm *vm;
	struct netloop *nl;
	struct listener *listener;
	SSL_CTX *tls;
	struct replica replica;
	struct machine_state *incoming; /* a received checkpoint's state, for replica_apply */
	struct hello_info hello;
	uint64_t timeout_ns;
	struct sconn *peers[SECONDARY_MAX_PEERS];
	struct sconn *session; /* the primary, once its HELLO matched */
	enum secondary_state state;
	bool replica_changed; /* an epoch was applied since the daemon last logged the replica */
	/*
	 * Called with each applied checkpoint's console bytes and their position
	 * in the guest's output stream (the committed output), if set. A call
	 * with len 0 at a later offset follows when the checkpoint's output went
	 * on beyond the bytes it could carry: the stream continues there.
	 */
	void (*console_fn)(void *opaque, uint64_t offset, const uint8_t *data, size_t len);
	void *console_opaque;
	char promoted_by[96];	/* "ftctl failover", "switchover from ADDR" */
	char guest[64];		/* what the primary runs (its HELLO), e.g. "builtin:kv" */
	char last_peer[64];	/* the last primary whose HELLO matched */
	uint32_t peer_protocol; /* ... the protocol version agreed with it */
	char peer_version[32];	/* ... and its software version ("" if it did not say) */
	bool auto_failover;	/* a cluster decides promotion (only the log wording) */
	/*
	 * The guest and data generation of the replica (proto/generation.h): the
	 * session's primary's, adopted with its HELLO. Changes set gen_changed for
	 * the daemon to store.
	 */
	struct gen_state gen;
	bool gen_changed;
	/*
	 * The replica may be replaced by another guest: its primary stopped the
	 * guest on purpose (GOODBYE at shutdown) or an operator discarded it.
	 */
	bool copy_released;
	/* The primary moved past the replica (ran unprotected): never promoted automatically. */
	bool stale;
	struct gen_state stale_by; /* the generation that moved past it */
	/*
	 * The replicated disk's image (secondary_set_disk), fd -1 without one.
	 * Closed at promotion: the promoted guest's virtio-blk device has its own.
	 */
	struct diskimg disk;
	uint64_t stale_ns; /* when this side learned it */
	/* Connections refused at accept: logged at most once a second, the rest counted. */
	uint64_t accept_log_ns;
	uint64_t accept_quiet;
	struct secondary_stats st;
};

/*
 * Machine state between the wire's blobs (proto/epoch.h) and struct
 * machine_state: the shape epoch_rx must accept for this VM (vmm/state.h's
 * layout, the VM's vCPUs and devices), and a received state converted, 0 or
 * -EINVAL if it is not of that layout.
 */
void secondary_state_shape(const struct vm *vm, struct epoch_shape *ret);
int secondary_state_load(const struct epoch_state *st, struct machine_state *ms);

/* tls: a mutual-TLS context every primary must pass first, or NULL. */
int secondary_init(struct secondary *s, struct vm *vm, struct netloop *nl,
		   const struct sockaddr *listen_addr, socklen_t listen_len,
		   const struct hello_info *hello, uint64_t timeout_ns, SSL_CTX *tls);
void secondary_free(struct secondary *s);
/*
 * The replicated disk: opens the image at path (diskimg_open: read-write, its
 * size), announces that size in HELLO (disk_size) and checks every epoch's
 * disk records against it. Each accepted primary first gets the image's block
 * checksums (DISK_SUMS); each epoch's records are written to the image before
 * its memory, and its ACK means memory, state and disk of that checkpoint are
 * here (on stable storage when the epoch carried a guest flush). Call after
 * secondary_init(), before serving connections. Returns 0 or diskimg_open()'s
 * -errno (the caller logs it with the path).
 */
int secondary_set_disk(struct secondary *s, const char *path);
/* Heartbeats, silent peers. */
void secondary_tick(struct secondary *s, uint64_t now_ns);
/* Whether secondary_tick() has work now (the disk's block sums, in slices). */
bool secondary_busy(const struct secondary *s);
/*
 * Failover: runs the guest from the replica's checkpoint (replica_promote).
 * The listener stays: every primary that connects from then on is refused
 * with "this node runs the guest". Returns 0, -EBUSY while a primary is
 * connected (unless force: it is dropped first), -ENODATA without a complete
 * checkpoint, -ESTALE if the replica is stale (unless force), -EALREADY if
 * promoted, or a KVM error.
 */
int secondary_promote(struct secondary *s, bool force);
/*
 * A node that waits for a primary and never had one boots the guest itself
 * (`ftctl start`): from here on the listener refuses primaries, as after a
 * promotion. -EBUSY a primary is connected, -EEXIST the replica holds a
 * checkpoint (promote it instead), -ENOTEMPTY a primary synced into this
 * node's memory before, -EALREADY the guest runs here.
 */
int secondary_boot_here(struct secondary *s, const char *by);

/*
 * Fails if promotion would be refused right now, with the same codes as
 * secondary_promote (for checks that run before it, e.g. a fence command).
 */
int secondary_can_promote(const struct secondary *s, bool force);

/*
 * The primary of generation `by` moved past the replica: returns 1 and marks it
 * stale if by is newer than the replica's generation, else 0.
 */
int secondary_mark_stale(struct secondary *s, const struct gen_state *by, uint64_t now_ns);
/*
 * `ftctl discard`: the replica counts for nothing from now on, so that a
 * primary of another guest or generation may sync over it. -EBUSY while a
 * primary is connected, -EALREADY after promotion.
 */
int secondary_discard(struct secondary *s);

/* The connected primary's address, or NULL. */
const char *secondary_peer(const struct secondary *s);
/* Bytes received over every connection so far. */
uint64_t secondary_bytes_received(const struct secondary *s);
/* Hash of the replica's memory, for the log (0 on failure). */
uint64_t secondary_replica_hash(struct secondary *s);

#endif
