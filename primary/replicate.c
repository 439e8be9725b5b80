// SPDX-License-Identifier: MIT
/*
 * The primary's epoch loop: staging slots, checkpoints and live harvests, the
 * tick that drives them, setup and teardown. The connection is conn.c, the
 * initial sync sync.c, the planned hand-over switchover.c
 * (replicate_internal.h).
 *
 * A session: connect, HELLO both ways, initial sync (every page while the
 * guest runs, then rounds over what the dirty log reports, then checkpoint 0),
 * then one checkpoint per tick. Epoch numbers count from 0 in every session,
 * sync batches included; the secondary answers each epoch with an ACK in order.
 *
 * Staging slots are the only bound on the pipeline: a slot is busy from its
 * capture until the kernel has taken its last byte (SENDMSG completion, or the
 * zero-copy notification), and at most PRIMARY_MAX_UNACKED epochs wait for
 * their ACK. A tick that finds no slot free is skipped (the next checkpoint
 * simply carries more pages); a full dirty ring that cannot be checkpointed is
 * harvested and handed back to the VM so that the vCPU can go on.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "primary/replicate_internal.h"
#include "proto/wire.h"
#include "vmm/virtio_blk.h"
#include "vmm/vm.h"

const char *const primary_part_names[PRIMARY_PARTS] = {
	[PART_KICK] = "kick+save", [PART_HARVEST] = "harvest", [PART_RESET] = "reset",
	[PART_COPY] = "copy",	   [PART_HASH] = "hash",       [PART_VMSTATE] = "vmstate",
};

const char *primary_state_name(enum primary_state s)
{
	static const char *const names[] = {
		[PRIMARY_UNPROTECTED] = "unprotected", [PRIMARY_CONNECTING] = "connecting",
		[PRIMARY_HANDSHAKE] = "handshake",     [PRIMARY_SYNCING] = "syncing",
		[PRIMARY_PROTECTED] = "protected",
	};
	return s <= PRIMARY_PROTECTED ? names[s] : "?";
}

void session_end(struct primary *p, const char *why, bool flush);

/* ---- slots ---------------------------------------------------------------- */

bool slot_on_wire(const struct primary_slot *s)
{
	return s->busy || s->live_busy;
}

/* One of the slot's sends completed. */
static void slot_done(struct primary_slot *s)
{
	/* A sync batch's pages are in ck.dirty, a checkpoint's in its slots. */
	uint64_t used = s->ck.staged > s->ck.dirty.count ? s->ck.staged : s->ck.dirty.count;

	/*
	 * Staging is filled from its start. What one huge epoch (a long interval
	 * under heavy dirtying) used beyond the usual goes back to the kernel once
	 * the socket has all of it: the next epoch that large faults it in again.
	 */
	if (!slot_on_wire(s) && !s->ck.live && s->ck.staging && used > STAGING_KEEP_PAGES)
		madvise(s->ck.staging + STAGING_KEEP_PAGES * VM_PAGE_SIZE,
			(used - STAGING_KEEP_PAGES) * VM_PAGE_SIZE, MADV_DONTNEED);
}

static void slot_sent(struct link_msg *m, int err)
{
	struct primary_slot *s =
		(struct primary_slot *)((uint8_t *)m - offsetof(struct primary_slot, msg));

	s->busy = false;
	slot_done(s);
}

static void live_sent(struct link_msg *m, int err)
{
	struct primary_slot *s =
		(struct primary_slot *)((uint8_t *)m - offsetof(struct primary_slot, live_msg));

	s->live_busy = false;
	slot_done(s);
}

/*
 * A slot that is not on the wire. The one holding live-harvested pages comes
 * first: those pages are tracked nowhere else, the next capture must be there.
 */
static struct primary_slot *slot_idle(struct primary *p)
{
	struct primary_slot *idle = NULL;

	for (unsigned int i = 0; i < PRIMARY_SLOTS; i++) {
		if (p->slot[i].busy)
			continue;
		/* Its live batch may still be on the wire: the capture only appends. */
		if (p->slot[i].ck.live)
			return &p->slot[i];
		if (!idle && !p->slot[i].live_busy)
			idle = &p->slot[i];
	}
	return idle;
}

struct primary_slot *slot_free(struct primary *p)
{
	return p->nr_unacked == PRIMARY_MAX_UNACKED ? NULL : slot_idle(p);
}

/* Whether slot_free() would find one. */
static bool slot_available(const struct primary *p)
{
	for (unsigned int i = 0; i < PRIMARY_SLOTS && p->nr_unacked < PRIMARY_MAX_UNACKED; i++)
		if (!p->slot[i].busy && (p->slot[i].ck.live || !p->slot[i].live_busy))
			return true;
	return false;
}

static void slot_paused(void *opaque, uint64_t epoch)
{
	struct primary_slot *s = opaque;
	struct primary *p = s->p;
	/* Checkpoint 0 carries what is still held; each later one what came since. */
	uint64_t from = p->console_started ? p->console_from : outbuf_allowed(p->out);
	uint64_t n;

	/* Output produced up to this instant belongs to this checkpoint. */
	commit_mark(p->commit, &s->marks);
	s->mark = outbuf_mark(p->out);
	n = s->mark - from;
	if (n > EPOCH_CONSOLE_MAX)
		n = EPOCH_CONSOLE_MAX; /* the secondary's copy skips the rest */
	if (outbuf_copy(p->out, from, (size_t)n, s->console) < 0)
		n = 0;
	s->console_len = (size_t)n;
	s->console_offset = outbuf_stream_pos(p->out, from);
	/* Whatever it carries, a guest run from this checkpoint continues here. */
	s->console_end = outbuf_stream_pos(p->out, s->mark);
	p->console_from = s->mark;
	p->console_started = true;
}

/* Queues a packed slot as epoch p->next_epoch. */
void slot_ship(struct primary *p, struct primary_slot *s, bool sync, uint64_t start_ns)
{
	struct unacked *u = &p->unacked[(p->unacked_head + p->nr_unacked) % PRIMARY_MAX_UNACKED];

	*u = (struct unacked){
		.epoch = p->next_epoch, .marks = s->marks, .start_ns = start_ns, .sync = sync
	};
	p->nr_unacked++;
	p->next_epoch++;
	s->busy = true;
	s->msg = (struct link_msg){
		.iov = s->tx.iov, .nr_iov = s->tx.nr_iov, .zero_copy = true, .done = slot_sent
	};
	link_send(p->conn->link, &s->msg);
}

/* ---- checkpoints ----------------------------------------------------------- */

/* ---- live harvest ---------------------------------------------------------- */

/* After a checkpoint at `now` of `pages` pages: when the next live harvest is due. */
static void live_schedule(struct primary *p, uint64_t now, uint64_t pages)
{
	bool want;

	p->ckpt_gap_ns = p->last_ckpt_ns ? now - p->last_ckpt_ns : 0;
	p->last_ckpt_ns = now;
	p->last_ckpt_pages = pages;
	switch (p->cfg.live) {
	case PRIMARY_LIVE_OFF:
		want = false;
		break;
	case PRIMARY_LIVE_ON:
		want = p->ckpt_gap_ns > 0;
		break;
	default:
		want = pages >= PRIMARY_LIVE_MIN_PAGES && p->ckpt_gap_ns >= PRIMARY_LIVE_MIN_GAP_NS;
		break;
	}
	/* Half-way to the next checkpoint, if the interval stays what it was. */
	p->live_due_ns = want ? now + p->ckpt_gap_ns / 2 : UINT64_MAX;
}

static void live_harvest(struct primary *p)
{
	struct primary_slot *s = slot_idle(p);
	int r;

	p->live_due_ns = UINT64_MAX;
	if (!s || p->state != PRIMARY_PROTECTED || p->handover != HANDOVER_NONE || p->frozen)
		return;
	r = ckpt_live_harvest(&s->ck);
	if (r == -EIO) {
		log_error("Dirty tracking lost pages (%s): the secondary must be synced again",
			  p->vm->dirty_error);
		session_drop(p, "dirty tracking lost");
		return;
	}
	if (r < 0)
		return;
	p->st.live_harvests++;
	if (r == 0)
		return; /* nothing dirtied: no batch, the capture starts the epoch */
	/* Framed now and sent while the guest runs: the checkpoint continues this epoch. */
	r = epoch_pack_live(&s->live_tx, &s->sum, p->next_epoch, s->ck.list + s->ck.batch,
			    s->ck.staged - s->ck.batch, s->ck.staging + s->ck.batch * VM_PAGE_SIZE);
	if (r < 0) {
		/* Not sent: the pages go back to the VM and the capture sends them. */
		ckpt_live_forget(&s->ck);
		return;
	}
	s->live_busy = true;
	s->live_msg = (struct link_msg){ .iov = s->live_tx.iov,
					 .nr_iov = s->live_tx.nr_iov,
					 .zero_copy = true,
					 .done = live_sent };
	link_send(p->conn->link, &s->live_msg);
}

uint64_t primary_next_due(const struct primary *p)
{
	/* A disk sync that yielded its slice goes on at once. */
	if (p->state == PRIMARY_SYNCING && p->cfg.disk && !p->disk_synced &&
	    p->disk_pos < p->disk_sums_have && slot_available(p))
		return 0;
	return p->live_due_ns;
}

int take_checkpoint(struct primary *p, struct primary_slot *s, bool early)
{
	struct ckpt_timing t;
	struct epoch_opts opts = { 0 };
	struct epoch_state state;
	uint64_t start = clock_now_ns();
	int r;

	s->ck.epoch = p->next_epoch - 1; /* ckpt_capture numbers it next_epoch */
	s->ck.hash_memory = p->cfg.verify;
	r = ckpt_capture(&s->ck, &t);
	if (r < 0)
		return r;
	opts.memory_hash = p->cfg.verify ? s->ck.memory_hash : 0;
	opts.disk = &s->ck.disk_log;
	opts.disk_hash = p->cfg.verify && p->cfg.disk ? s->ck.disk_hash : 0;
	opts.console = s->console;
	opts.console_len = s->console_len;
	opts.console_offset = s->console_offset;
	opts.console_end = s->console_end;
	opts.sum = &s->sum;
	ckpt_epoch_state(s->ck.state, &state);
	/*
	 * The pause's pages; the live batch before them went out already. An epoch
	 * whose disk log lost a write cannot carry the disk as it is here.
	 */
	r = s->ck.disk_log_lost
		    ? -ENODATA
		    : epoch_pack(&s->tx, p->next_epoch, s->ck.list + s->ck.batch,
				 s->ck.staged - s->ck.batch,
				 s->ck.staging + s->ck.batch * VM_PAGE_SIZE, &state, &opts);
	if (r < 0) {
		/* Captured but unsendable: the secondary can no longer follow; a new session syncs
		 * it. */
		vm_requeue_dirty(p->vm, &s->ck.dirty);
		/* A switchover's final capture left the guest stopped: it is ours again. */
		if (s->ck.keep_paused)
			vm_resume(p->vm);
		if (r == -ENODATA)
			log_error(
				"Checkpoint %llu: a guest disk write reached %s but not its write "
				"log (a short write, out of memory, or a write after a device "
				"reset): syncing the secondary's disk again",
				(unsigned long long)p->next_epoch, virtio_blk_path(p->cfg.disk));
		else
			log_error("Cannot frame checkpoint %llu: %s",
				  (unsigned long long)p->next_epoch, strerror(-r));
		session_drop(p, r == -ENODATA ? "a disk write was not logged"
					      : "a checkpoint could not be framed");
		return 0;
	}
	p->st.checkpoints++;
	if (early)
		p->st.early++;
	p->st.pages_total += t.pages;
	p->st.live_pages += t.live_pages;
	live_schedule(p, start, t.pages);
	samples_add(&p->st.pause_us, t.pause_ns / NS_PER_US);
	samples_add(&p->st.pages, t.pages);
	histogram_add(&p->st.all_pause_us, t.pause_ns / NS_PER_US);
	histogram_add(&p->st.part_us[PART_KICK], t.kick_ns / NS_PER_US);
	histogram_add(&p->st.part_us[PART_HARVEST], t.harvest_ns / NS_PER_US);
	histogram_add(&p->st.part_us[PART_RESET], t.reset_ns / NS_PER_US);
	histogram_add(&p->st.part_us[PART_COPY], t.copy_ns / NS_PER_US);
	histogram_add(&p->st.part_us[PART_HASH], t.hash_ns / NS_PER_US);
	histogram_add(&p->st.part_us[PART_VMSTATE], t.vmstate_ns / NS_PER_US);
	slot_ship(p, s, false, start);
	return 0;
}

/*
 * A harvest or capture failed. -EIO means tracking was lost (vm->dirty_error
 * says how): only a full copy repairs the replica, so the session restarts;
 * unprotected nobody needs the pages. Anything else ends the run.
 */
int tracking_failed(struct primary *p, int r)
{
	if (r != -EIO)
		return r;
	if (p->conn) {
		log_error("Dirty tracking lost pages (%s): the secondary must be synced again",
			  p->vm->dirty_error);
		session_drop(p, "dirty tracking lost");
	}
	return 0;
}

/* Frees full rings without a checkpoint; the pages go to `into`, or back to the VM. */
int relieve_rings(struct primary *p, struct dirty_set *into, bool requeue)
{
	int r = harvest_now(p, into);

	p->st.ring_relief++;
	if (r == 0 && requeue)
		vm_requeue_dirty(p->vm, &p->scratch);
	return tracking_failed(p, r);
}

int primary_set_peer(struct primary *p, const struct sockaddr *peer, socklen_t len)
{
	if (p->conn)
		return -EBUSY;
	if (len > sizeof(p->cfg.peer))
		return -EINVAL;
	memcpy(&p->cfg.peer, peer, len);
	p->cfg.peer_len = len;
	net_format_addr(peer, p->cfg.peer_name, sizeof(p->cfg.peer_name));
	p->next_connect_ns = 0;
	p->last_connect_err = 0;
	p->goodbyes = 0;
	return 0;
}

int primary_checkpoint(struct primary *p, bool early)
{
	struct primary_slot *s;

	if (p->frozen)
		return 0;

	if (p->handover == HANDOVER_CAPTURE) {
		handover_capture(p);
		/* Still running: a full ring waits for the final checkpoint's pages. */
		return p->handover == HANDOVER_CAPTURE && early ? relieve_rings(p, NULL, true) : 0;
	}
	if (p->handover >= HANDOVER_ACK && p->handover <= HANDOVER_ANSWER)
		return 0; /* the guest is stopped */

	if (p->state == PRIMARY_PROTECTED ||
	    (p->state == PRIMARY_SYNCING && p->first_checkpoint != UINT64_MAX &&
	     p->next_epoch > p->first_checkpoint)) {
		s = slot_free(p);
		if (s)
			return tracking_failed(p, take_checkpoint(p, s, early));
		if (!early) {
			p->st.skipped++;
			return 0;
		}
		/* No slot: keep the pages for the next checkpoint, free the ring. */
		return relieve_rings(p, NULL, true);
	}
	if (!early)
		return 0;
	if (p->state == PRIMARY_SYNCING && p->first_checkpoint == UINT64_MAX)
		return relieve_rings(p, &p->sync_dirty, false); /* the next round sends them */
	if (p->state == PRIMARY_SYNCING) /* sync over: checkpoint 0 must carry them */
		return relieve_rings(p, NULL, true);
	/* Unprotected: nobody needs these pages; the next sync copies everything. */
	return relieve_rings(p, NULL, false);
}

bool primary_output_checkpoint_possible(struct primary *p)
{
	return !p->frozen && p->handover == HANDOVER_NONE && p->state == PRIMARY_PROTECTED &&
	       slot_free(p);
}

int primary_checkpoint_for_output(struct primary *p)
{
	struct primary_slot *s;
	int r;

	if (!primary_output_checkpoint_possible(p))
		return 0;
	s = slot_free(p);
	if (!s)
		return 0;
	r = tracking_failed(p, take_checkpoint(p, s, false));
	return r < 0 ? r : 1;
}

void primary_tick(struct primary *p, uint64_t now)
{
	struct link *l = p->conn ? p->conn->link : NULL;

	if (!p->conn && p->cfg.peer_len && now >= p->next_connect_ns && !p->frozen &&
	    p->handover != HANDOVER_DONE && p->handover != HANDOVER_UNKNOWN)
		connect_peer(p, now);
	if (l && p->state == PRIMARY_CONNECTING && now - l->last_send_ns > p->cfg.timeout_ns) {
		if (p->last_connect_err != -ETIMEDOUT)
			log_warning("Cannot reach the secondary at %s: no answer within %.1f s "
				    "(retrying every %.1f s)",
				    p->cfg.peer_name, (double)p->cfg.timeout_ns / NS_PER_S,
				    (double)p->cfg.reconnect_ns / NS_PER_S);
		p->last_connect_err = -ETIMEDOUT;
		session_drop(p, NULL);
		return;
	}
	if (l && p->state >= PRIMARY_HANDSHAKE) {
		if (now - l->last_recv_ns > p->cfg.timeout_ns) {
			char why[96];

			snprintf(why, sizeof(why), "the secondary has been silent for %.1f s",
				 (double)(now - l->last_recv_ns) / NS_PER_S);
			session_drop(p, why);
		} else if (now - l->last_send_ns > p->cfg.timeout_ns / 4 && !link_queued(l)) {
			uint8_t hb[SMALL_FRAME_MAX];

			send_small(p, hb, heartbeat_frame(hb, now));
		}
	}
	if (p->frozen) {
		/* A sync in progress cannot go on with the guest stopped: start again later. */
		if (p->state == PRIMARY_SYNCING)
			session_drop(p, "the guest was stopped during the initial sync");
		return;
	}
	if (p->state == PRIMARY_SYNCING)
		sync_pump(p);
	if (p->handover == HANDOVER_CAPTURE)
		handover_capture(p);
	if (now >= p->live_due_ns)
		live_harvest(p);
	if (p->state < PRIMARY_SYNCING ||
	    (p->state == PRIMARY_SYNCING && p->first_checkpoint == UINT64_MAX))
		commit_unprotected(p->commit); /* no checkpoint to wait for */
}

/* ---- setup ----------------------------------------------------------------- */

void primary_freeze(struct primary *p, bool frozen)
{
	p->frozen = frozen;
	commit_freeze(p->commit, frozen);
}

int primary_init(struct primary *p, struct vm *vm, struct netloop *nl, struct outbuf *console,
		 struct commit *commit, const struct primary_config *cfg)
{
	int r;

	memset(p, 0, sizeof(*p));
	p->vm = vm;
	p->nl = nl;
	p->out = console;
	p->commit = commit;
	p->cfg = *cfg;
	p->first_checkpoint = UINT64_MAX;
	p->live_due_ns = UINT64_MAX;
	for (unsigned int i = 0; i < PRIMARY_SLOTS; i++) {
		r = ckpt_init(&p->slot[i].ck, vm);
		if (r < 0)
			goto fail;
		p->slot[i].zero = malloc(SYNC_ZERO_MAX * sizeof(uint64_t));
		p->slot[i].console = malloc(EPOCH_CONSOLE_MAX);
		if (!p->slot[i].zero || !p->slot[i].console) {
			r = -ENOMEM;
			goto fail;
		}
		p->slot[i].p = p;
		p->slot[i].ck.disk = cfg->disk;
		p->slot[i].ck.paused_fn = slot_paused;
		p->slot[i].ck.paused_opaque = &p->slot[i];
	}
	r = dirty_set_init(&p->sync_dirty, vm->nr_pages);
	if (r == 0)
		r = dirty_set_init(&p->scratch, vm->nr_pages);
	if (r < 0)
		goto fail;
	return 0;
fail:
	primary_free(p);
	return r;
}

static bool sends_busy(const struct primary *p)
{
	for (unsigned int k = 0; k < PRIMARY_SLOTS; k++)
		if (slot_on_wire(&p->slot[k]))
			return true;
	return p->flushing;
}

/* Dispatches until no slot is on the wire and no connection is flushing, at most ns. */
static void sends_wait(struct primary *p, uint64_t ns)
{
	uint64_t deadline = clock_now_ns() + ns;

	while (p->nl && sends_busy(p) && clock_now_ns() < deadline)
		netloop_wait(p->nl, 5000000ULL);
}

/*
 * Dispatches while the last session's sends and goodbye are on their way and
 * the secondary reads them (link_finish(): it closes once it has read the
 * goodbye): as long as the connection moves, until 5 s (or --timeout, if
 * shorter) pass without a byte either way, 30 s in all. A secondary that is
 * slow, not gone (a queue of epochs to apply first), so still learns that the
 * guest was stopped on purpose; a stalled one holds the stop up for 5 s.
 */
static void goodbye_wait(struct primary *p)
{
	uint64_t start = clock_now_ns(), now;
	uint64_t quiet = p->cfg.timeout_ns < 5 * NS_PER_S ? p->cfg.timeout_ns : 5 * NS_PER_S;

	while (p->nl && sends_busy(p)) {
		const struct link *l = p->flushing ? p->flushing->link : NULL;
		uint64_t last = start;

		now = clock_now_ns();
		if (l && l->last_recv_ns > last)
			last = l->last_recv_ns;
		if (l && l->last_send_ns > last)
			last = l->last_send_ns;
		if (now - start > 30 * NS_PER_S || now - last > quiet)
			break;
		netloop_wait(p->nl, 5000000ULL);
	}
}

void primary_free(struct primary *p)
{
	free(p->disk_sums);
	if (p->conn) {
		primary_goodbye(p, "primary shutting down");
		session_drop(p, NULL);
	}
	/* The goodbye and the sends in flight may leave for a while (a slow peer)... */
	goodbye_wait(p);
	/*
	 * ...but a stalled peer would hold them until TCP_USER_TIMEOUT, which may
	 * be long after this: reset the connections, which returns every send
	 * (and zero-copy pages) at once. A busy slot's link is alive: its
	 * message is still in the ring's hands.
	 */
	for (unsigned int i = 0; i < PRIMARY_SLOTS; i++) {
		if (p->slot[i].busy)
			link_abort(p->slot[i].msg.link);
		if (p->slot[i].live_busy)
			link_abort(p->slot[i].live_msg.link);
	}
	if (p->flushing)
		link_abort(p->flushing->link);
	sends_wait(p, 2000000000ULL);
	if (p->flushing)
		p->flushing->p = NULL; /* released after p is gone (zero-copy pages): no callback */
	for (unsigned int i = 0; i < PRIMARY_SLOTS; i++) {
		/*
		 * Staging still in the kernel's hands (a zero-copy send of a dead
		 * connection) is left allocated: a leak at exit, not a write into
		 * freed memory.
		 */
		if (slot_on_wire(&p->slot[i]))
			continue;
		ckpt_free(&p->slot[i].ck);
		epoch_tx_free(&p->slot[i].tx);
		epoch_tx_free(&p->slot[i].live_tx);
		epoch_sum_free(&p->slot[i].sum);
		free(p->slot[i].zero);
		p->slot[i].zero = NULL;
		free(p->slot[i].console);
		p->slot[i].console = NULL;
	}
	dirty_set_free(&p->sync_dirty);
	dirty_set_free(&p->scratch);
	free(p->sync_list);
	samples_free(&p->st.pause_us);
	samples_free(&p->st.ack_us);
	samples_free(&p->st.pages);
	p->sync_list = NULL;
}

uint64_t primary_bytes_sent(const struct primary *p)
{
	return p->st.bytes_sent + (p->conn ? p->conn->link->bytes_sent : 0);
}
