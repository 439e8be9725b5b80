// SPDX-License-Identifier: MIT
/*
 * The receiver's connections: accepting peers (with per-source limits), the
 * TLS and HELLO handshake and its refusals, feeding the session's bytes to
 * epoch_rx, heartbeats and silent peers, goodbye and shutdown. What a
 * verified epoch does is in apply.c, promotion in promote.c.
 */
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/log.h"
#include "proto/epoch.h"
#include "proto/wire.h"
#include "secondary/receiver.h"
#include "secondary/receiver_internal.h"
#include "vmm/vm.h"

const char *secondary_state_name(enum secondary_state st)
{
	static const char *const names[] = {
		[SECONDARY_WAITING] = "waiting",
		[SECONDARY_SYNCING] = "syncing",
		[SECONDARY_REPLICATING] = "replicating",
		[SECONDARY_ACTIVE] = "active",
	};

	return st <= SECONDARY_ACTIVE ? names[st] : "?";
}

void sconn_drop(struct sconn *c, bool flush)
{
	struct secondary *s = c->s;

	if (c->slot < 0)
		return;
	s->peers[c->slot] = NULL;
	c->slot = -1;
	s->st.bytes_received += c->link->bytes_received;
	if (s->session == c) {
		s->session = NULL;
		if (s->state != SECONDARY_ACTIVE) /* a switchover promotes, then lets go */
			s->state = SECONDARY_WAITING;
		if (s->replica.has_checkpoint && !c->orderly)
			log_warning(
				"Primary lost: %s from checkpoint %llu)",
				s->auto_failover
					? "failing over once the cluster agrees (the guest runs "
					  "here"
					: "waiting for an operator (`ftctl failover` runs the "
					  "guest here",
				(unsigned long long)s->replica.checkpoint);
	}
	if (flush)
		link_close_after_send(c->link);
	else
		link_close(c->link);
}

void sconn_reject(struct sconn *c, const char *what)
{
	c->s->st.refused++;
	log_error("Closing connection from %s: %s", c->link->peer, what);
	sconn_drop(c, false);
}

static void send_refuse(struct sconn *c, const char *field, const char *local, const char *remote,
			const char *reason)
{
	uint8_t *buf = NULL;
	size_t len = 0;

	if (refuse_frame(field, local, remote, reason, &buf, &len) == 0)
		link_send_copy(c->link, buf, len);
	free(buf);
	c->s->st.refused++;
	sconn_drop(c, true);
}

/*
 * The generation rule (docs/failover.md): a replica that counts is never
 * replaced by another guest or rolled back to an older generation. Refuses
 * and returns false, or adopts the primary's generation and returns true.
 */
static bool hello_generation_ok(struct sconn *c, const struct hello_info *h)
{
	struct secondary *s = c->s;
	bool holds = s->replica.has_checkpoint && !s->copy_released;
	enum gen_verdict v = gen_secondary_verdict(&s->gen, holds, &h->gen);
	char l[128], r[96];

	gen_describe(&s->gen, l, sizeof(l));
	gen_describe(&h->gen, r, sizeof(r));
	if (v != GEN_ACCEPT) {
		log_error("Refusing %s: this node holds checkpoint %llu of %s%s; the primary runs "
			  "%s: %s (`ftctl discard` on this node drops its copy)",
			  c->link->peer, (unsigned long long)s->replica.checkpoint, l,
			  s->stale ? " (stale)" : "", r, gen_verdict_reason(v));
		send_refuse(c, v == GEN_REFUSE_GUEST ? "guest" : "generation", l, r,
			    gen_verdict_reason(v));
		return false;
	}
	if (holds && gen_compare(&s->gen, &h->gen) == GEN_LOCAL_OLDER)
		log_warning("The primary %s moved past this replica (%s here, %s there): "
			    "re-syncing it",
			    c->link->peer, l, r);
	else if (s->replica.has_checkpoint && gen_compare(&s->gen, &h->gen) != GEN_SAME)
		log_info("Replacing the replica (checkpoint %llu of %s, %s) with %s",
			 (unsigned long long)s->replica.checkpoint, l,
			 s->copy_released ? "released" : "discarded", r);
	/*
	 * A checkpoint of another generation is no checkpoint of h's: labelled
	 * with h's generation and no longer stale, it would be promoted (even by
	 * --cluster) if this session ended before its sync replaced it.
	 */
	if (gen_compare(&s->gen, &h->gen) != GEN_SAME)
		s->replica.has_checkpoint = false;
	s->gen = h->gen;
	s->gen_changed = true;
	s->copy_released = false;
	s->stale = false;
	s->hello.gen = s->gen;
	s->hello.holds = HOLDS_NOTHING; /* the sync starts over it */
	return true;
}

static void on_hello(struct sconn *c, const uint8_t *payload, size_t len)
{
	struct secondary *s = c->s;
	struct epoch_shape shape;
	struct hello_decoded d;
	struct hello_mismatch mm;
	uint8_t *buf = NULL;
	size_t blen = 0;
	int r, agreed;

	if (hello_decode(payload, len, &d) < 0) {
		sconn_reject(c, "undecodable HELLO");
		return;
	}
	agreed = hello_compare(&s->hello, &d.info, HELLO_PRIMARY, &mm);
	if (agreed < 0) {
		log_error("Refusing %s: %s differs: %s here, %s there", c->link->peer, mm.field,
			  mm.local, mm.remote);
		hello_decoded_free(&d);
		send_refuse(c, mm.field, mm.local, mm.remote, "does not match the secondary");
		return;
	}
	if (s->state == SECONDARY_ACTIVE) {
		char l[96];

		gen_describe(&s->gen, l, sizeof(l));
		log_error("Refusing %s: this node runs the guest (%s)", c->link->peer, l);
		hello_decoded_free(&d);
		send_refuse(c, "running", l, "", "the secondary runs the guest: it was promoted");
		return;
	}
	if (s->session) {
		log_error("Refusing %s: already replicating from %s", c->link->peer,
			  s->session->link->peer);
		hello_decoded_free(&d);
		send_refuse(c, "", "", "", "another primary is connected");
		return;
	}
	if (!hello_generation_ok(c, &d.info)) {
		hello_decoded_free(&d);
		return;
	}
	secondary_state_shape(s->vm, &shape);
	r = epoch_rx_init(&c->rx, s->vm->nr_pages, &shape);
	if (r < 0) {
		hello_decoded_free(&d);
		sconn_reject(c, "out of memory for staging");
		return;
	}
	epoch_rx_set_disk(&c->rx, s->replica.disk ? s->disk.size : 0);
	c->rx_ready = true;
	c->hello_ok = true;
	s->session = c;
	s->peer_protocol = (uint32_t)agreed;
	snprintf(s->peer_version, sizeof(s->peer_version), "%s",
		 d.info.software_version ? d.info.software_version : "");
	snprintf(s->last_peer, sizeof(s->last_peer), "%s", c->link->peer);
	s->state = SECONDARY_SYNCING;
	s->st.sessions++;
	s->st.sync_pages = 0;
	replica_new_session(&s->replica);
	snprintf(s->guest, sizeof(s->guest), "%s", d.info.guest);
	log_info("Primary %s connected (guest %s%s): receiving the initial sync", c->link->peer,
		 d.info.guest[0] ? d.info.guest : "?", d.info.verify ? ", verifying" : "");
	hello_decoded_free(&d);
	if (hello_frame(&s->hello, &buf, &blen) == 0)
		link_send_copy(c->link, buf, blen);
	free(buf);
	/* With a disk, its block sums follow the HELLO: the primary's sync needs them. */
	if (s->replica.disk) {
		c->sums_next = 0;
		c->sums_pending = true;
		sconn_send_disk_sums(c);
	}
}

static void sconn_recv_buf(void *opaque, uint8_t **ret_buf, size_t *ret_len)
{
	struct sconn *c = opaque;
	uint8_t *direct = c->rx_ready ? epoch_rx_direct(&c->rx, ret_len) : NULL;

	/* Page data lands in staging directly; headers and messages in the bounce buffer. */
	if (direct) {
		*ret_buf = direct;
		return;
	}
	*ret_buf = c->bounce;
	*ret_len = BOUNCE_SIZE;
}

static int sconn_received(void *opaque, uint8_t *buf, size_t n)
{
	struct sconn *c = opaque;
	size_t used;
	int r;

	/* Until the HELLO is accepted: whole small frames, one at a time. */
	while (n && c->slot >= 0 && !c->hello_ok) {
		r = frame_rx_feed(&c->fr, buf, n, &used);
		buf += used;
		n -= used;
		if (r < 0) {
			sconn_reject(c, c->fr.error);
			return 0;
		}
		if (r == 0)
			return 0;
		if (c->fr.hdr.type != WIRE_HELLO) {
			char why[96];

			snprintf(why, sizeof(why), "expected HELLO first, got %s",
				 wire_type_name(c->fr.hdr.type));
			sconn_reject(c, why);
			return 0;
		}
		on_hello(c, c->fr.payload, c->fr.hdr.length);
	}
	while (n && c->slot >= 0 && c->hello_ok) {
		r = epoch_rx_feed(&c->rx, buf, n, &used);
		buf += used;
		n -= used;
		if (r < 0) {
			sconn_reject(c, c->rx.error);
			return 0;
		}
		if (r == EPOCH_RX_GOODBYE && c->rx.switchover) {
			sconn_switchover(c);
			return 0;
		}
		if (r == EPOCH_RX_GOODBYE) {
			log_info("Primary %s said goodbye: %s", c->link->peer, c->rx.goodbye);
			/* The guest was stopped on purpose: its last checkpoint may be replaced. */
			c->s->copy_released = true;
			c->orderly = true;
			sconn_drop(c, false);
			return 0;
		}
		if (r == EPOCH_RX_READY && sconn_apply(c) < 0)
			return 0;
	}
	return 0;
}

static void sconn_closed(void *opaque, int err)
{
	struct sconn *c = opaque;

	if (c->slot < 0)
		return;
	if (c->s->session == c) {
		if (err)
			log_warning("Lost the primary %s: %s", c->link->peer,
				    c->link->error[0] ? c->link->error : strerror(-err));
		else
			log_warning("The primary %s closed the connection%s", c->link->peer,
				    c->rx.phase != EPOCH_RX_IDLE ? " mid-epoch (discarded)" : "");
	} else if (!c->hello_ok) {
		c->s->st.refused++;
		if (c->link->error[0])
			log_error("Refusing %s: %s", c->link->peer, c->link->error);
		else
			log_error("Closing connection from %s: %s before a complete HELLO",
				  c->link->peer, err ? strerror(-err) : "closed");
	}
	sconn_drop(c, false);
}

static void sconn_released(void *opaque)
{
	struct sconn *c = opaque;

	frame_rx_free(&c->fr);
	if (c->rx_ready)
		epoch_rx_free(&c->rx);
	free(c);
}

static const struct link_ops sconn_ops = {
	.recv_buf = sconn_recv_buf,
	.received = sconn_received,
	.closed = sconn_closed,
	.released = sconn_released,
};

static bool same_source(const struct sockaddr_storage *a, const struct sockaddr *b)
{
	if (a->ss_family != b->sa_family)
		return false;
	if (b->sa_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)b)->sin_addr.s_addr;
	if (b->sa_family == AF_INET6)
		return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
			       &((const struct sockaddr_in6 *)b)->sin6_addr,
			       sizeof(struct in6_addr));
	return false;
}

static void on_accept(void *opaque, int fd, const struct sockaddr *sa)
{
	struct secondary *s = opaque;
	struct sconn *c;
	char peer[64];
	int slot = -1, pending = 0, r;

	net_format_addr(sa, peer, sizeof(peer));
	for (int i = 0; i < SECONDARY_MAX_PEERS; i++) {
		if (!s->peers[i])
			slot = slot < 0 ? i : slot;
		else if (!s->peers[i]->hello_ok && same_source(&s->peers[i]->source, sa))
			pending++;
	}
	c = slot >= 0 && pending < SECONDARY_MAX_PER_SOURCE ? calloc(1, sizeof(*c)) : NULL;
	if (!c || frame_rx_init(&c->fr) < 0) {
		uint64_t now = clock_now_ns();

		/* A peer that reconnects at once must not flood the log either. */
		if (now - s->accept_log_ns >= NS_PER_S) {
			log_error("Refusing connection from %s: %s%s", peer,
				  slot < 0 ? "too many connections"
				  : pending >= SECONDARY_MAX_PER_SOURCE
					  ? "too many unauthenticated connections from that address"
					  : "out of memory",
				  s->accept_quiet ? " (and more refused in the last second)" : "");
			s->accept_log_ns = now;
			s->accept_quiet = 0;
		} else {
			s->accept_quiet++;
		}
		s->st.refused++;
		free(c);
		close(fd);
		return;
	}
	memcpy(&c->source, sa,
	       sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
					 : sizeof(struct sockaddr_in));
	c->s = s;
	c->slot = slot;
	c->opened_ns = clock_now_ns();
	r = link_open(s->nl, fd, s->tls, &sconn_ops, c, &c->link);
	if (r < 0) {
		frame_rx_free(&c->fr);
		free(c);
		close(fd);
		return;
	}
	link_set_user_timeout(c->link, s->timeout_ns);
	s->peers[slot] = c;
}

int secondary_init(struct secondary *s, struct vm *vm, struct netloop *nl,
		   const struct sockaddr *listen_addr, socklen_t listen_len,
		   const struct hello_info *hello, uint64_t timeout_ns, SSL_CTX *tls)
{
	int r;

	memset(s, 0, sizeof(*s));
	s->disk.fd = -1;
	s->tls = tls;
	s->vm = vm;
	s->nl = nl;
	s->hello = *hello;
	s->timeout_ns = timeout_ns;
	s->incoming = calloc(1, sizeof(*s->incoming));
	if (!s->incoming)
		return -ENOMEM;
	r = replica_init(&s->replica, vm);
	if (r == 0)
		r = listener_open(nl, listen_addr, listen_len, on_accept, s, &s->listener);
	if (r < 0) {
		replica_free(&s->replica);
		free(s->incoming);
		s->incoming = NULL;
	}
	return r;
}

void secondary_free(struct secondary *s)
{
	if (s->session) {
		/* The primary learns why, instead of seeing a bare close. */
		uint8_t *buf = NULL;
		size_t len = 0;

		if (goodbye_frame("secondary shutting down", UINT64_MAX, &buf, &len) == 0)
			link_send_copy(s->session->link, buf, len);
		free(buf);
		s->session->orderly = true;
		sconn_drop(s->session, true);
	}
	for (int i = 0; i < SECONDARY_MAX_PEERS; i++)
		if (s->peers[i])
			sconn_drop(s->peers[i], false);
	listener_close(s->listener);
	s->listener = NULL;
	/* Receives still in flight write into per-connection staging, which goes
	 * with its connection once the ring has returned them (netloop_drain). */
	replica_free(&s->replica);
	free(s->incoming);
	s->incoming = NULL;
	diskimg_close(&s->disk);
	s->replica.disk = NULL;
}

void secondary_tick(struct secondary *s, uint64_t now)
{
	uint64_t hello_ns = s->timeout_ns < SECONDARY_HELLO_NS ? s->timeout_ns : SECONDARY_HELLO_NS;

	for (int i = 0; i < SECONDARY_MAX_PEERS; i++) {
		struct sconn *c = s->peers[i];
		struct link *l;

		if (!c)
			continue;
		l = c->link;
		/*
		 * A peer gets one short deadline for TLS and its HELLO, however it
		 * trickles bytes: an unauthenticated connection holds a slot briefly.
		 */
		if (!c->hello_ok && now - c->opened_ns > hello_ns) {
			char why[96];

			snprintf(why, sizeof(why), "no HELLO within %.1f s",
				 (double)hello_ns / NS_PER_S);
			sconn_reject(c, why);
			continue;
		}
		if (c == s->session && now - l->last_recv_ns > s->timeout_ns) {
			log_warning("The primary %s has been silent for %.1f s: dropping it",
				    l->peer, (double)(now - l->last_recv_ns) / NS_PER_S);
			sconn_drop(c, false);
			continue;
		}
		if (c == s->session && c->sums_pending && sconn_send_disk_sums(c) < 0)
			continue;
		if (c == s->session && now - l->last_send_ns > s->timeout_ns / 4 &&
		    !link_queued(l)) {
			uint8_t hb[SMALL_FRAME_MAX];

			link_send_copy(l, hb, heartbeat_frame(hb, now));
		}
	}
}

bool secondary_busy(const struct secondary *s)
{
	return s->session && s->session->sums_pending;
}

uint64_t secondary_bytes_received(const struct secondary *s)
{
	uint64_t b = s->st.bytes_received;

	for (int i = 0; i < SECONDARY_MAX_PEERS; i++)
		if (s->peers[i])
			b += s->peers[i]->link->bytes_received;
	return b;
}

const char *secondary_peer(const struct secondary *s)
{
	return s->session ? s->session->link->peer : NULL;
}
