// SPDX-License-Identifier: MIT
/*
 * The primary's connection to its secondary: connecting, the HELLO exchange
 * and its refusals, ACKs (output commit, switchover answers), heartbeats and
 * silence, and the end of a session, after which the guest runs unprotected
 * and the primary connects again.
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

void session_drop(struct primary *p, const char *why)
{
	session_end(p, why, false);
}

/* ---- connection ----------------------------------------------------------- */

void send_small(struct primary *p, const uint8_t *buf, size_t len)
{
	if (link_send_copy(p->conn->link, buf, len) < 0)
		session_drop(p, "out of memory for a frame");
}

/* Sends and frees a frame built by one of the *_frame() builders (r: its result). */
void send_built(struct primary *p, int r, uint8_t *buf, size_t len)
{
	if (r == 0)
		send_small(p, buf, len);
	free(buf);
}

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
	r = hello_compare(&p->cfg.hello, &d.info, HELLO_SECONDARY, &mm);
	if (r < 0) {
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
	p->peer_protocol = (uint32_t)r;
	snprintf(p->peer_version, sizeof(p->peer_version), "%s",
		 d.info.software_version ? d.info.software_version : "");
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
	commit_acked(p->commit, &u->marks);
	p->st.acked++;
	p->st.last_ack_ns = now;
	samples_add(&p->st.ack_us, (now - u->start_ns) / NS_PER_US);
	histogram_add(&p->st.all_ack_us, (now - u->start_ns) / NS_PER_US);
	if (verify == 1)
		p->st.verified++;
	if (p->state == PRIMARY_SYNCING && epoch == p->first_checkpoint) {
		p->state = PRIMARY_PROTECTED;
		p->goodbyes = 0;
		p->st.protected_ns = now;
		log_info("Protected: secondary %s holds the first checkpoint (epoch %llu; initial "
			 "sync took %.2f s, %llu pages (%llu of them zero, sent as a list) in %u "
			 "rounds)",
			 p->cfg.peer_name, (unsigned long long)epoch,
			 (double)(now - p->sync_start_ns) / NS_PER_S,
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

/* After a GOODBYE: the second and later in a row wait 2, 4, 8, 16, then 30 s. */
static void goodbye_backoff(struct primary *p)
{
	uint64_t wait = p->cfg.reconnect_ns;

	if (p->goodbyes < 6)
		p->goodbyes++;
	for (unsigned int i = 1; i < p->goodbyes && wait < 30 * NS_PER_S; i++)
		wait *= 2;
	if (wait > 30 * NS_PER_S)
		wait = 30 * NS_PER_S;
	if (p->goodbyes > 1)
		log_warning("The secondary %s ended %u sessions in a row: next attempt in %.0f s",
			    p->cfg.peer_name, p->goodbyes, (double)wait / NS_PER_S);
	p->next_connect_ns = clock_now_ns() + wait;
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
		case WIRE_DISK_SUMS:
			disk_sums_received(p, c->fr.payload, c->fr.hdr.length);
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
			goodbye_backoff(p);
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
				    (double)p->cfg.reconnect_ns / NS_PER_S);
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

void connect_peer(struct primary *p, uint64_t now)
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
void session_end(struct primary *p, const char *why, bool flush)
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
		commit_session_lost(p->commit); /* the daemon decides again, knowing of it */
	}
	p->state = PRIMARY_UNPROTECTED;
	/* Nobody to ship disk writes to: the next session compares blocks again. */
	if (p->cfg.disk)
		virtio_blk_set_logging(p->cfg.disk, false);
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
	/* Unprotected from now on (output of a stopping or frozen guest stays held). */
	commit_unprotected(p->commit);
	if (flush) {
		/* Released at once when nothing is queued; else primary_free may cut it short. */
		if (p->flushing && !p->flushing->link->reported)
			link_close(p->flushing->link); /* an older one still stuck: enough */
		p->flushing = c;
		link_finish(c->link);
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
	commit_shutdown(p->commit);
	if (!p->conn || p->state < PRIMARY_HANDSHAKE)
		return;
	int r = goodbye_frame(reason, UINT64_MAX, &buf, &len);

	send_built(p, r, buf, len);
	if (p->conn)
		session_end(p, NULL, true);
}
