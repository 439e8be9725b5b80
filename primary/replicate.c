// SPDX-License-Identifier: MIT
/*
 * One session: connect, HELLO both ways, initial sync (every page while the
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

#include "daemon/log.h"
#include "primary/replicate.h"
#include "proto/wire.h"
#include "vmm/clock.h"
#include "vmm/vm.h"

/* Initial sync: pages per batch (one epoch), when to stop iterating. */
#define SYNC_BATCH_PAGES 2048u
#define SYNC_ZERO_MAX	 65536u /* zero pages listed per batch (the list stays < 1 MiB) */
#define SYNC_CONVERGED	 2048u
#define SYNC_MAX_ROUNDS	 8u
/* Staging pages a slot keeps committed between epochs (64 MiB). */
#define STAGING_KEEP_PAGES 16384u

struct pconn {
	struct primary *p;
	struct link *link;
	struct frame_rx fr;
	uint8_t rbuf[65536];
};

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

static void session_end(struct primary *p, const char *why, bool flush);

static void session_drop(struct primary *p, const char *why)
{
	session_end(p, why, false);
}

/* ---- slots ---------------------------------------------------------------- */

static bool slot_on_wire(const struct primary_slot *s)
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

static struct primary_slot *slot_free(struct primary *p)
{
	return p->nr_unacked == PRIMARY_MAX_UNACKED ? NULL : slot_idle(p);
}

static void slot_paused(void *opaque, uint64_t epoch)
{
	struct primary_slot *s = opaque;
	struct primary *p = s->p;
	/* Checkpoint 0 carries what is still held; each later one what came since. */
	uint64_t from = p->console_started ? p->console_from : outbuf_allowed(p->out);
	uint64_t n;

	/* Output produced up to this instant belongs to this checkpoint. */
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
static void slot_ship(struct primary *p, struct primary_slot *s, bool sync, uint64_t start_ns)
{
	struct unacked *u = &p->unacked[(p->unacked_head + p->nr_unacked) % PRIMARY_MAX_UNACKED];

	*u = (struct unacked){
		.epoch = p->next_epoch, .mark = s->mark, .start_ns = start_ns, .sync = sync
	};
	p->nr_unacked++;
	p->next_epoch++;
	s->busy = true;
	s->msg = (struct link_msg){
		.iov = s->tx.iov, .nr_iov = s->tx.nr_iov, .zero_copy = true, .done = slot_sent
	};
	link_send(p->conn->link, &s->msg);
}

/* ---- connection ----------------------------------------------------------- */

static void send_small(struct primary *p, const uint8_t *buf, size_t len)
{
	if (link_send_copy(p->conn->link, buf, len) < 0)
		session_drop(p, "out of memory for a frame");
}

/* Sends and frees a frame built by one of the *_frame() builders (r: its result). */
static void send_built(struct primary *p, int r, uint8_t *buf, size_t len)
{
	if (r == 0)
		send_small(p, buf, len);
	free(buf);
}

static void sync_start(struct primary *p);
static void sync_pump(struct primary *p);

static void on_hello(struct primary *p, const uint8_t *payload, size_t len)
{
	struct hello_decoded d;
	struct hello_mismatch mm;
	uint8_t *buf = NULL;
	size_t blen = 0;
	int r;

	if (hello_decode(payload, len, &d) < 0) {
		session_drop(p, "undecodable HELLO");
		return;
	}
	if (hello_compare(&p->cfg.hello, &d.info, HELLO_SECONDARY, &mm) < 0) {
		log_error(
			"Secondary %s does not match this VM: %s is %s here, %s there; refusing it",
			p->cfg.peer_name, mm.field, mm.local, mm.remote);
		r = refuse_frame(mm.field, mm.local, mm.remote, "does not match the primary", &buf,
				 &blen);
		send_built(p, r, buf, blen);
		hello_decoded_free(&d);
		/* The refusal leaves first; the next attempt is a full interval away. */
		session_end(p, NULL, true);
		return;
	}
	hello_decoded_free(&d);
	p->st.sessions++;
	sync_start(p);
}

static void on_ack(struct primary *p, const uint8_t *payload, size_t len, uint64_t now)
{
	struct unacked *u;
	uint64_t epoch;
	uint32_t verify;

	if (ack_decode(payload, len, &epoch, &verify) < 0) {
		session_drop(p, "undecodable ACK");
		return;
	}
	u = &p->unacked[p->unacked_head];
	if (!p->nr_unacked || epoch != u->epoch) {
		char why[96];

		snprintf(why, sizeof(why), "ACK for epoch %llu, expected %llu",
			 (unsigned long long)epoch,
			 (unsigned long long)(p->nr_unacked ? u->epoch : p->next_epoch));
		session_drop(p, why);
		return;
	}
	p->unacked_head = (p->unacked_head + 1) % PRIMARY_MAX_UNACKED;
	p->nr_unacked--;
	if (u->sync)
		return;
	if (verify == 2) {
		char why[160];

		/*
		 * The replica is not this checkpoint: nothing may be released on
		 * its word, and it protects nothing. A new session copies all of
		 * memory again.
		 */
		p->st.mismatches++;
		snprintf(why, sizeof(why),
			 "checkpoint %llu: the secondary's memory hash differs from ours "
			 "(--verify), re-syncing it",
			 (unsigned long long)epoch);
		p->next_connect_ns = 0;
		session_drop(p, why);
		return;
	}
	/* The secondary holds this checkpoint: its output may leave. */
	outbuf_allow(p->out, u->mark);
	p->st.acked++;
	p->st.last_ack_ns = now;
	samples_add(&p->st.ack_us, (now - u->start_ns) / 1000);
	histogram_add(&p->st.all_ack_us, (now - u->start_ns) / 1000);
	if (verify == 1)
		p->st.verified++;
	if (p->state == PRIMARY_SYNCING && epoch == p->first_checkpoint) {
		p->state = PRIMARY_PROTECTED;
		p->st.protected_ns = now;
		log_info("Protected: secondary %s holds the first checkpoint (epoch %llu; initial "
			 "sync took %.2f s, %llu pages (%llu of them zero, sent as a list) in %u "
			 "rounds)",
			 p->cfg.peer_name, (unsigned long long)epoch,
			 (double)(now - p->sync_start_ns) / 1e9,
			 (unsigned long long)p->st.sync_pages,
			 (unsigned long long)p->st.sync_zero_pages, p->st.sync_round + 1);
	}
	if (p->handover == HANDOVER_ACK && epoch == p->handover_epoch) {
		/* The secondary holds the stopped guest's last state: hand it over. */
		uint8_t *buf = NULL;
		size_t blen = 0;
		int r = goodbye_frame("switchover", epoch, &buf, &blen);

		p->handover = HANDOVER_ANSWER;
		log_info("Switchover: checkpoint %llu acknowledged, asking %s to run the guest",
			 (unsigned long long)epoch, p->cfg.peer_name);
		if (r < 0)
			snprintf(p->handover_error, sizeof(p->handover_error), "no memory");
		send_built(p, r, buf, blen);
	}
}

static void pconn_recv_buf(void *opaque, uint8_t **ret_buf, size_t *ret_len)
{
	struct pconn *c = opaque;

	*ret_buf = c->rbuf;
	*ret_len = sizeof(c->rbuf);
}

static int pconn_received(void *opaque, uint8_t *buf, size_t n)
{
	struct pconn *c = opaque;
	struct primary *p = c->p;
	uint64_t now = clock_now_ns();
	size_t used;
	char why[256];

	while (n && p->conn == c) {
		int r = frame_rx_feed(&c->fr, buf, n, &used);

		buf += used;
		n -= used;
		if (r < 0) {
			snprintf(why, sizeof(why), "bad frame from the secondary: %s", c->fr.error);
			session_drop(p, why);
			break;
		}
		if (r == 0)
			break;
		switch (c->fr.hdr.type) {
		case WIRE_HELLO:
			if (p->state != PRIMARY_HANDSHAKE) {
				session_drop(p, "HELLO in the middle of a session");
				break;
			}
			on_hello(p, c->fr.payload, c->fr.hdr.length);
			break;
		case WIRE_ACK:
			if (p->state < PRIMARY_SYNCING) {
				session_drop(p, "ACK before the handshake");
				break;
			}
			on_ack(p, c->fr.payload, c->fr.hdr.length, now);
			break;
		case WIRE_HEARTBEAT:
			break;
		case WIRE_REFUSE: {
			char desc[200];

			refuse_describe(c->fr.payload, c->fr.hdr.length, desc, sizeof(desc));
			log_error("Secondary %s refused this primary: %s", p->cfg.peer_name, desc);
			refuse_field(c->fr.payload, c->fr.hdr.length, p->refused_field,
				     sizeof(p->refused_field));
			snprintf(p->refused_desc, sizeof(p->refused_desc), "%s", desc);
			session_drop(p, NULL);
			break;
		}
		case WIRE_GOODBYE: {
			char desc[200];
			uint64_t sw = goodbye_describe(c->fr.payload, c->fr.hdr.length, desc,
						       sizeof(desc));

			if (p->handover == HANDOVER_ANSWER && sw == p->handover_epoch) {
				p->handover = HANDOVER_DONE;
				log_info("Switchover complete: %s runs the guest from checkpoint "
					 "%llu",
					 p->cfg.peer_name, (unsigned long long)sw);
				session_end(p, NULL, false);
				break;
			}
			if (p->handover == HANDOVER_ANSWER) {
				/* Refused before it ran anything: the guest is ours again. */
				snprintf(p->handover_error, sizeof(p->handover_error),
					 "the secondary refused: %.120s", desc);
				p->handover = HANDOVER_ACK;
			}
			snprintf(why, sizeof(why), "the secondary said goodbye: %s", desc);
			session_drop(p, why);
			break;
		}
		default:
			snprintf(why, sizeof(why), "unexpected %s frame from the secondary",
				 wire_type_name(c->fr.hdr.type));
			session_drop(p, why);
			break;
		}
	}
	return 0;
}

static void pconn_closed(void *opaque, int err)
{
	struct pconn *c = opaque;
	char why[256];

	if (c->p->conn != c)
		return;
	if (err)
		snprintf(why, sizeof(why), "connection to the secondary failed: %s",
			 c->link->error[0] ? c->link->error : strerror(-err));
	else
		snprintf(why, sizeof(why), "the secondary closed the connection");
	session_drop(c->p, c->p->state == PRIMARY_CONNECTING ? NULL : why);
}

static void pconn_connected(void *opaque, int err)
{
	struct pconn *c = opaque;
	struct primary *p = c->p;
	uint8_t *buf = NULL;
	size_t len = 0;
	int r;

	if (err) {
		if (err != p->last_connect_err)
			log_warning("Cannot reach the secondary at %s: %s (retrying every %.1f s)",
				    p->cfg.peer_name, strerror(-err),
				    (double)p->cfg.reconnect_ns / 1e9);
		p->last_connect_err = err;
		return; /* closed() follows */
	}
	p->last_connect_err = 0;
	log_info("Connected to the secondary at %s", p->cfg.peer_name);
	p->state = PRIMARY_HANDSHAKE;
	r = hello_frame(&p->cfg.hello, &buf, &len);
	send_built(p, r, buf, len);
}

static void pconn_released(void *opaque)
{
	struct pconn *c = opaque;

	if (c->p && c->p->flushing == c)
		c->p->flushing = NULL;
	frame_rx_free(&c->fr);
	free(c);
}

static const struct link_ops pconn_ops = {
	.recv_buf = pconn_recv_buf,
	.received = pconn_received,
	.closed = pconn_closed,
	.connected = pconn_connected,
	.released = pconn_released,
};

static void connect_peer(struct primary *p, uint64_t now)
{
	struct pconn *c = calloc(1, sizeof(*c));
	int r;

	p->next_connect_ns = now + p->cfg.reconnect_ns;
	if (!c || frame_rx_init(&c->fr) < 0) {
		free(c);
		return;
	}
	c->p = p;
	r = link_connect(p->nl, (struct sockaddr *)&p->cfg.peer, p->cfg.peer_len, p->cfg.tls,
			 &pconn_ops, c, &c->link);
	if (r < 0) {
		if (r != p->last_connect_err)
			log_warning("Cannot connect to %s: %s", p->cfg.peer_name, strerror(-r));
		p->last_connect_err = r;
		p->attempts++;
		pconn_released(c);
		return;
	}
	link_set_user_timeout(c->link, p->cfg.timeout_ns);
	p->conn = c;
	p->state = PRIMARY_CONNECTING;
}

/*
 * Ends the session: the guest goes on unprotected and its held output leaves.
 * why == NULL: a quiet end (failed connection attempt, refusal already logged).
 * flush: frames already queued (a refusal, a goodbye) still leave first.
 */
static void session_end(struct primary *p, const char *why, bool flush)
{
	struct pconn *c = p->conn;
	bool was_protected = p->state == PRIMARY_PROTECTED;

	if (!c)
		return;
	p->conn = NULL;
	p->attempts++;
	if (p->state == PRIMARY_HANDSHAKE && !p->refused_field[0])
		p->unanswered++;
	if (why)
		snprintf(p->last_drop, sizeof(p->last_drop), "%.*s", (int)sizeof(p->last_drop) - 1,
			 why);
	switch (p->handover) {
	case HANDOVER_CAPTURE:
	case HANDOVER_ACK:
		/*
		 * The secondary cannot have run the guest: it runs on here, unless
		 * it is stopped for want of quorum too (the daemon's rule then).
		 */
		if (p->handover == HANDOVER_ACK && !p->frozen)
			vm_resume(p->vm);
		if (!p->handover_error[0])
			snprintf(p->handover_error, sizeof(p->handover_error), "%.*s",
				 (int)sizeof(p->handover_error) - 1,
				 why ? why : "the session ended");
		log_error("Switchover failed: %s; %s", p->handover_error,
			  p->frozen ? "the guest stays stopped (no quorum)"
				    : "the guest runs here again");
		p->handover = HANDOVER_FAILED;
		break;
	case HANDOVER_ANSWER:
		snprintf(p->handover_error, sizeof(p->handover_error),
			 "no answer from the secondary (%.64s): it may run the guest, so the guest "
			 "stays stopped here",
			 why ? why : "session ended");
		log_error("Switchover outcome unknown: %s", p->handover_error);
		p->handover = HANDOVER_UNKNOWN;
		break;
	default:
		break;
	}
	if (why)
		log_warning("%s; the guest runs unprotected%s", why,
			    was_protected ? " (output is released without waiting)" : "");
	if (p->state >= PRIMARY_SYNCING) {
		p->lost_ns = clock_now_ns();
		p->release_ok = false; /* the daemon decides again, knowing of the loss */
	}
	p->state = PRIMARY_UNPROTECTED;
	for (unsigned int i = 0; i < PRIMARY_SLOTS; i++) {
		ckpt_live_forget(&p->slot[i].ck);
		p->slot[i].sum.open = false; /* the next session's epochs start afresh */
	}
	p->live_due_ns = UINT64_MAX;
	p->st.protected_ns = 0;
	p->st.bytes_sent += c->link->bytes_sent;
	p->nr_unacked = 0;
	p->unacked_head = 0;
	p->first_checkpoint = UINT64_MAX;
	p->console_started = false;
	/* Unprotected from now on, but output of a stopping or frozen guest stays held. */
	if (!p->stopping && !p->frozen && (!p->hold_output || p->release_ok))
		outbuf_allow(p->out, outbuf_mark(p->out));
	if (flush) {
		/* Released at once when nothing is queued; else primary_free may cut it short. */
		if (p->flushing && !p->flushing->link->reported)
			link_close(p->flushing->link); /* an older one still stuck: enough */
		p->flushing = c;
		link_close_after_send(c->link);
	} else {
		link_close(c->link);
	}
	/* Pages harvested for the sync are of no use now: the next sync starts afresh. */
	dirty_set_clear(&p->sync_dirty);
	free(p->sync_list);
	p->sync_list = NULL;
	p->sync_len = p->sync_pos = 0;
}

void primary_goodbye(struct primary *p, const char *reason)
{
	uint8_t *buf = NULL;
	size_t len = 0;

	p->stopping = true;
	if (!p->conn || p->state < PRIMARY_HANDSHAKE)
		return;
	int r = goodbye_frame(reason, UINT64_MAX, &buf, &len);

	send_built(p, r, buf, len);
	if (p->conn)
		session_end(p, NULL, true);
}

/* ---- initial sync ---------------------------------------------------------- */

/* Harvests with the guest briefly paused; pages go to `into` (or nowhere). */
static int harvest_now(struct primary *p, struct dirty_set *into)
{
	int r;

	dirty_set_clear(&p->scratch);
	r = vm_harvest_paused(p->vm, &p->scratch);
	if (r == 0 && into)
		dirty_set_merge(into, &p->scratch);
	return r;
}

static void sync_start(struct primary *p)
{
	int r;

	if (p->frozen) {
		/* A sync harvests (pause, resume): not with the guest stopped. */
		session_drop(p, "the guest is stopped (no quorum): no sync now");
		return;
	}
	p->state = PRIMARY_SYNCING;
	p->next_epoch = 0;
	p->first_checkpoint = UINT64_MAX;
	p->console_started = false;
	p->st.sync_pages = 0;
	p->st.sync_zero_pages = 0;
	p->st.sync_round = 0;
	p->sync_start_ns = p->sync_round_start_ns = clock_now_ns();
	/* Reset the log before reading a page: any later write is logged again. */
	dirty_set_clear(&p->sync_dirty);
	r = harvest_now(p, NULL);
	if (r < 0) {
		log_error("Cannot start the initial sync: harvesting dirty pages failed: %s",
			  strerror(-r));
		session_drop(p, "initial sync failed");
		return;
	}
	free(p->sync_list);
	p->sync_list = NULL; /* round 0: every page, in order */
	p->sync_len = p->vm->nr_pages;
	p->sync_pos = 0;
	p->st.sync_remaining = p->sync_len;
	log_info("Secondary %s accepted the handshake: initial sync of %llu MiB (%llu MiB "
		 "touched) while the guest runs",
		 p->cfg.peer_name, (unsigned long long)(p->vm->mem_size >> 20),
		 (unsigned long long)(p->vm->touched.count * VM_PAGE_SIZE >> 20));
	sync_pump(p);
}

static int take_checkpoint(struct primary *p, struct primary_slot *s, bool early);

/* Ends a round: harvest, then either another round or checkpoint 0. */
static void sync_round_end(struct primary *p)
{
	uint64_t now = clock_now_ns(), n;
	double secs = (double)(now - p->sync_round_start_ns) / 1e9;
	int r = harvest_now(p, &p->sync_dirty);

	if (r < 0) {
		session_drop(p, "harvesting dirty pages during the initial sync failed");
		return;
	}
	n = p->sync_dirty.count;
	log_info("sync: round %u sent %llu pages in %.2f s; %llu pages dirtied meanwhile "
		 "(%.0f pages/s)",
		 p->st.sync_round, (unsigned long long)p->sync_len, secs, (unsigned long long)n,
		 secs > 0 ? (double)n / secs : 0.0);
	free(p->sync_list);
	p->sync_list = NULL;
	p->sync_len = p->sync_pos = 0;
	if (n <= SYNC_CONVERGED || p->st.sync_round + 1 >= SYNC_MAX_ROUNDS) {
		/* The rest travels in checkpoint 0 (the next capture reports it again). */
		vm_requeue_dirty(p->vm, &p->sync_dirty);
		dirty_set_clear(&p->sync_dirty);
		p->st.sync_remaining = 0;
		p->first_checkpoint = p->next_epoch;
		return; /* sync_pump takes checkpoint 0 when a slot is free */
	}
	p->sync_list = malloc(n * sizeof(uint64_t));
	if (!p->sync_list) {
		session_drop(p, "out of memory for the sync page list");
		return;
	}
	dirty_set_sort(&p->sync_dirty);
	memcpy(p->sync_list, p->sync_dirty.pages, n * sizeof(uint64_t));
	dirty_set_clear(&p->sync_dirty);
	p->sync_len = n;
	p->st.sync_remaining = n;
	p->st.sync_round++;
	p->sync_round_start_ns = now;
}

/*
 * One sync batch: up to SYNC_BATCH_PAGES pages with data, and the all-zero
 * pages met on the way listed without data (most of a fresh guest: reading
 * them does not even fault memory in). Read while the guest runs: a write
 * after the read is in the dirty log already and goes in a later round.
 */
static void sync_fill(struct primary *p, struct primary_slot *s)
{
	struct dirty_set *d = &s->ck.dirty;
	struct epoch_opts opts = { .initial_sync = true, .zero_pages = s->zero };
	uint64_t n = 0;
	int r;

	dirty_set_clear(d);
	while (p->sync_pos < p->sync_len && n < SYNC_BATCH_PAGES && opts.nr_zero < SYNC_ZERO_MAX) {
		uint64_t page = p->sync_list ? p->sync_list[p->sync_pos] : p->sync_pos;
		const uint8_t *hva = vm_page_hva(p->vm, page);

		p->sync_pos++;
		/* Never written since the VM was created: zero, without reading it. */
		if (!vm_page_touched(p->vm, page) || vm_page_is_zero(p->vm, page)) {
			s->zero[opts.nr_zero++] = page;
			continue;
		}
		dirty_set_add(d, page);
		memcpy(s->ck.staging + n * VM_PAGE_SIZE, hva, VM_PAGE_SIZE);
		n++;
	}
	p->st.sync_pages += n + opts.nr_zero;
	p->st.sync_zero_pages += opts.nr_zero;
	p->st.sync_remaining = p->sync_len - p->sync_pos;
	r = epoch_pack(&s->tx, p->next_epoch, d->pages, n, s->ck.staging, NULL, &opts);
	if (r < 0) {
		session_drop(p, "packing a sync batch failed");
		return;
	}
	s->mark = 0;
	slot_ship(p, s, true, clock_now_ns());
}

static void sync_pump(struct primary *p)
{
	struct primary_slot *s;

	while (p->state == PRIMARY_SYNCING && p->first_checkpoint == UINT64_MAX &&
	       (s = slot_free(p))) {
		if (p->sync_pos < p->sync_len)
			sync_fill(p, s);
		else
			sync_round_end(p);
	}
	if (p->state == PRIMARY_SYNCING && p->first_checkpoint == p->next_epoch &&
	    (s = slot_free(p))) {
		if (take_checkpoint(p, s, false) < 0)
			session_drop(p, "checkpoint 0 failed");
	}
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
	if (r <= 0)
		return;
	p->st.live_harvests++;
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
	return p->live_due_ns;
}

static int take_checkpoint(struct primary *p, struct primary_slot *s, bool early)
{
	struct ckpt_timing t;
	struct epoch_opts opts = { 0 };
	uint64_t start = clock_now_ns();
	int r;

	s->ck.epoch = p->next_epoch - 1; /* ckpt_capture numbers it next_epoch */
	s->ck.hash_memory = p->cfg.verify;
	r = ckpt_capture(&s->ck, &t);
	if (r < 0)
		return r;
	opts.memory_hash = p->cfg.verify ? s->ck.memory_hash : 0;
	opts.console = s->console;
	opts.console_len = s->console_len;
	opts.console_offset = s->console_offset;
	opts.console_end = s->console_end;
	opts.sum = &s->sum;
	/* The pause's pages; the live batch before them went out already. */
	r = epoch_pack(&s->tx, p->next_epoch, s->ck.list + s->ck.batch, s->ck.staged - s->ck.batch,
		       s->ck.staging + s->ck.batch * VM_PAGE_SIZE, s->ck.state, &opts);
	if (r < 0) {
		/* Captured but unsendable: the secondary can no longer follow. */
		vm_requeue_dirty(p->vm, &s->ck.dirty);
		/* A switchover's final capture left the guest stopped: it is ours again. */
		if (s->ck.keep_paused)
			vm_resume(p->vm);
		log_error("Cannot frame checkpoint %llu: %s", (unsigned long long)p->next_epoch,
			  strerror(-r));
		session_drop(p, "a checkpoint could not be framed");
		return 0;
	}
	p->st.checkpoints++;
	if (early)
		p->st.early++;
	p->st.pages_total += t.pages;
	p->st.live_pages += t.live_pages;
	live_schedule(p, start, t.pages);
	samples_add(&p->st.pause_us, t.pause_ns / 1000);
	samples_add(&p->st.pages, t.pages);
	histogram_add(&p->st.all_pause_us, t.pause_ns / 1000);
	histogram_add(&p->st.part_us[PART_KICK], t.kick_ns / 1000);
	histogram_add(&p->st.part_us[PART_HARVEST], t.harvest_ns / 1000);
	histogram_add(&p->st.part_us[PART_RESET], t.reset_ns / 1000);
	histogram_add(&p->st.part_us[PART_COPY], t.copy_ns / 1000);
	histogram_add(&p->st.part_us[PART_HASH], t.hash_ns / 1000);
	histogram_add(&p->st.part_us[PART_VMSTATE], t.vmstate_ns / 1000);
	slot_ship(p, s, false, start);
	return 0;
}

/*
 * A harvest or capture failed. -EIO means tracking was lost (vm->dirty_error
 * says how): only a full copy repairs the replica, so the session restarts;
 * unprotected nobody needs the pages. Anything else ends the run.
 */
static int tracking_failed(struct primary *p, int r)
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
static int relieve_rings(struct primary *p, struct dirty_set *into, bool requeue)
{
	int r = harvest_now(p, into);

	p->st.ring_relief++;
	if (r == 0 && requeue)
		vm_requeue_dirty(p->vm, &p->scratch);
	return tracking_failed(p, r);
}

/* The switchover's final checkpoint: the guest stays stopped after it. */
static void handover_capture(struct primary *p)
{
	struct primary_slot *s = slot_free(p);
	int r;

	if (!s)
		return;
	s->ck.keep_paused = true;
	r = take_checkpoint(p, s, false);
	s->ck.keep_paused = false;
	if (p->handover != HANDOVER_CAPTURE)
		return; /* the session ended meanwhile: it said why */
	if (r < 0) {
		snprintf(p->handover_error, sizeof(p->handover_error),
			 "the final checkpoint failed: %s", strerror(-r));
		session_drop(p, "the switchover's final checkpoint failed");
		return;
	}
	p->handover = HANDOVER_ACK;
	p->handover_epoch = p->next_epoch - 1;
}

int primary_switchover(struct primary *p)
{
	if (p->handover >= HANDOVER_CAPTURE && p->handover <= HANDOVER_ANSWER)
		return -EALREADY;
	if (p->state != PRIMARY_PROTECTED || p->frozen)
		return -ENOTCONN;
	p->handover = HANDOVER_CAPTURE;
	p->handover_error[0] = 0;
	log_info("Switchover to %s: stopping the guest at a final checkpoint", p->cfg.peer_name);
	handover_capture(p);
	return 0;
}

bool primary_may_thaw(const struct primary *p)
{
	return p->conn && p->state == PRIMARY_PROTECTED &&
	       (p->handover == HANDOVER_NONE || p->handover == HANDOVER_CAPTURE);
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
				    p->cfg.peer_name, (double)p->cfg.timeout_ns / 1e9,
				    (double)p->cfg.reconnect_ns / 1e9);
		p->last_connect_err = -ETIMEDOUT;
		session_drop(p, NULL);
		return;
	}
	if (l && p->state >= PRIMARY_HANDSHAKE) {
		if (now - l->last_recv_ns > p->cfg.timeout_ns) {
			char why[96];

			snprintf(why, sizeof(why), "the secondary has been silent for %.1f s",
				 (double)(now - l->last_recv_ns) / 1e9);
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
	if ((p->state < PRIMARY_SYNCING ||
	     (p->state == PRIMARY_SYNCING && p->first_checkpoint == UINT64_MAX)) &&
	    (!p->hold_output || p->release_ok))
		outbuf_allow(p->out, outbuf_mark(p->out)); /* nothing to wait for */
}

/* ---- setup ----------------------------------------------------------------- */

int primary_init(struct primary *p, struct vm *vm, struct netloop *nl, struct outbuf *out,
		 const struct primary_config *cfg)
{
	int r;

	memset(p, 0, sizeof(*p));
	p->vm = vm;
	p->nl = nl;
	p->out = out;
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

void primary_free(struct primary *p)
{
	if (p->conn) {
		primary_goodbye(p, "primary shutting down");
		session_drop(p, NULL);
	}
	/* The goodbye and the sends in flight may leave for a while (a slow peer)... */
	sends_wait(p, 2000000000ULL);
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
