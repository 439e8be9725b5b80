// SPDX-License-Identifier: MIT
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <xxhash.h>

#include "proto/ringft.pb-c.h"
#include "proto/session.h"

static int frame_alloc(uint16_t type, uint64_t epoch, const ProtobufCMessage *m, uint8_t **ret_buf,
		       size_t *ret_len)
{
	size_t len = protobuf_c_message_get_packed_size(m);
	uint8_t *buf;

	if (len > WIRE_MAX_MSG)
		return -EMSGSIZE;
	buf = malloc(WIRE_HDR_SIZE + len);
	if (!buf)
		return -ENOMEM;
	wire_hdr_encode(
		buf, &(struct wire_hdr){ .type = type, .length = (uint32_t)len, .epoch = epoch });
	protobuf_c_message_pack(m, buf + WIRE_HDR_SIZE);
	*ret_buf = buf;
	*ret_len = WIRE_HDR_SIZE + len;
	return 0;
}

static size_t frame_small(uint8_t *buf, uint16_t type, uint64_t epoch, const ProtobufCMessage *m)
{
	size_t len = protobuf_c_message_get_packed_size(m);

	wire_hdr_encode(
		buf, &(struct wire_hdr){ .type = type, .length = (uint32_t)len, .epoch = epoch });
	protobuf_c_message_pack(m, buf + WIRE_HDR_SIZE);
	return WIRE_HDR_SIZE + len;
}

/* ---- handshake ------------------------------------------------------------ */

int hello_frame(const struct hello_info *h, uint8_t **ret_buf, size_t *ret_len)
{
	Ringft__Hello m = RINGFT__HELLO__INIT;
	Ringft__Generation cur = RINGFT__GENERATION__INIT;
	Ringft__Generation hist[GEN_HISTORY_MAX], *histp[GEN_HISTORY_MAX];

	m.protocol_version = h->protocol_version;
	m.protocol_min = h->protocol_min;
	m.software_version = (char *)(h->software_version ? h->software_version : "");
	m.role = h->role;
	m.mem_size = h->mem_size;
	m.nr_vcpus = h->nr_vcpus;
	m.page_size = h->page_size;
	m.kvm_api_version = h->kvm_api_version;
	m.xsave_size = h->xsave_size;
	m.tracking = (char *)(h->tracking ? h->tracking : "");
	m.ring_entries = h->ring_entries;
	m.cpuid = (ProtobufCBinaryData){ h->cpuid_len, (uint8_t *)h->cpuid };
	m.n_msrs = h->nr_msrs;
	m.msrs = (uint32_t *)h->msrs;
	m.guest = (char *)(h->guest ? h->guest : "");
	m.n_devices = h->nr_devices;
	m.devices = (char **)h->devices;
	m.verify = h->verify;
	if (gen_has_guest(&h->gen)) {
		m.guest_uuid = (ProtobufCBinaryData){ GEN_UUID_SIZE, (uint8_t *)h->gen.uuid };
		cur.number = h->gen.cur.number;
		cur.tag = h->gen.cur.tag;
		m.generation = &cur;
		for (unsigned int i = 0; i < h->gen.nr_history && i < GEN_HISTORY_MAX; i++) {
			ringft__generation__init(&hist[i]);
			hist[i].number = h->gen.history[i].number;
			hist[i].tag = h->gen.history[i].tag;
			histp[i] = &hist[i];
			m.n_history++;
		}
		m.history = histp;
	}
	m.holds = h->holds;
	m.stale = h->stale;
	m.net_mac = (char *)(h->net_mac ? h->net_mac : "");
	m.disk_size = h->disk_size;
	return frame_alloc(WIRE_HELLO, 0, &m.base, ret_buf, ret_len);
}

int hello_decode(const uint8_t *payload, size_t len, struct hello_decoded *ret)
{
	Ringft__Hello *m = ringft__hello__unpack(NULL, len, payload);
	struct hello_info *h = &ret->info;

	memset(ret, 0, sizeof(*ret));
	if (!m)
		return -EBADMSG;
	if (m->n_devices > HELLO_MAX_DEVICES || m->n_history > GEN_HISTORY_MAX ||
	    (m->guest_uuid.len && (m->guest_uuid.len != GEN_UUID_SIZE || !m->generation))) {
		ringft__hello__free_unpacked(m, NULL);
		return -EBADMSG;
	}
	ret->msg = m;
	h->protocol_version = m->protocol_version;
	h->protocol_min = m->protocol_min;
	h->software_version = m->software_version;
	h->role = m->role;
	h->mem_size = m->mem_size;
	h->nr_vcpus = m->nr_vcpus;
	h->page_size = m->page_size;
	h->kvm_api_version = m->kvm_api_version;
	h->xsave_size = m->xsave_size;
	h->tracking = m->tracking;
	h->ring_entries = m->ring_entries;
	h->cpuid = m->cpuid.data;
	h->cpuid_len = m->cpuid.len;
	h->msrs = m->msrs;
	h->nr_msrs = m->n_msrs;
	h->guest = m->guest;
	for (size_t i = 0; i < m->n_devices; i++)
		h->devices[i] = m->devices[i];
	h->nr_devices = (uint32_t)m->n_devices;
	h->verify = m->verify;
	if (m->guest_uuid.len) {
		memcpy(h->gen.uuid, m->guest_uuid.data, GEN_UUID_SIZE);
		h->gen.cur.number = m->generation->number;
		h->gen.cur.tag = m->generation->tag;
		for (size_t i = 0; i < m->n_history; i++)
			h->gen.history[i] =
				(struct gen_id){ m->history[i]->number, m->history[i]->tag };
		h->gen.nr_history = (unsigned int)m->n_history;
	}
	h->holds = m->holds;
	h->stale = m->stale;
	h->net_mac = m->net_mac;
	h->disk_size = m->disk_size;
	return 0;
}

void hello_decoded_free(struct hello_decoded *d)
{
	if (d->msg)
		ringft__hello__free_unpacked(d->msg, NULL);
	d->msg = NULL;
}

static const char *role_name(uint32_t role)
{
	return role == HELLO_PRIMARY ? "primary" : role == HELLO_SECONDARY ? "secondary" : "none";
}

static void join_devices(const struct hello_info *h, char *buf, size_t len)
{
	size_t at = 0;

	buf[0] = 0;
	for (uint32_t i = 0; i < h->nr_devices && at < len; i++)
		at += (size_t)snprintf(buf + at, len - at, "%s%s", i ? "," : "", h->devices[i]);
	if (!h->nr_devices)
		snprintf(buf, len, "none");
}

static void disk_size_text(uint64_t size, char *buf, size_t len)
{
	if (size)
		snprintf(buf, len, "%llu", (unsigned long long)size);
	else
		snprintf(buf, len, "no disk");
}

#define MISMATCH_U64(name, l, r)                                                                   \
	do {                                                                                       \
		if ((uint64_t)(l) != (uint64_t)(r)) {                                              \
			snprintf(ret->field, sizeof(ret->field), "%s", name);                      \
			snprintf(ret->local, sizeof(ret->local), "%llu", (unsigned long long)(l)); \
			snprintf(ret->remote, sizeof(ret->remote), "%llu",                         \
				 (unsigned long long)(r));                                         \
			return -EPROTO;                                                            \
		}                                                                                  \
	} while (0)

/* The oldest version a side speaks: one that does not say (before 5) speaks one only. */
static uint32_t protocol_min(const struct hello_info *h)
{
	return h->protocol_min ? h->protocol_min : h->protocol_version;
}

/* The highest version in both ranges, or 0 if they do not overlap. */
static uint32_t protocol_agree(const struct hello_info *local, const struct hello_info *remote)
{
	uint32_t lo = protocol_min(local), hi = local->protocol_version;

	if (protocol_min(remote) > lo)
		lo = protocol_min(remote);
	if (remote->protocol_version < hi)
		hi = remote->protocol_version;
	return lo <= hi ? hi : 0;
}

int hello_compare(const struct hello_info *local, const struct hello_info *remote,
		  uint32_t expect_role, struct hello_mismatch *ret)
{
	uint32_t version;

	memset(ret, 0, sizeof(*ret));
	/* The version first: nothing else is meaningful across versions. */
	version = protocol_agree(local, remote);
	if (!version) {
		snprintf(ret->field, sizeof(ret->field), "protocol_version");
		snprintf(ret->local, sizeof(ret->local), "%u..%u", protocol_min(local),
			 local->protocol_version);
		snprintf(ret->remote, sizeof(ret->remote), "%u..%u", protocol_min(remote),
			 remote->protocol_version);
		return -EPROTO;
	}
	if (remote->role != expect_role) {
		snprintf(ret->field, sizeof(ret->field), "role");
		snprintf(ret->local, sizeof(ret->local), "%s (expects a %s)",
			 role_name(local->role), role_name(expect_role));
		snprintf(ret->remote, sizeof(ret->remote), "%s", role_name(remote->role));
		return -EPROTO;
	}
	MISMATCH_U64("page_size", local->page_size, remote->page_size);
	MISMATCH_U64("mem_size", local->mem_size, remote->mem_size);
	MISMATCH_U64("nr_vcpus", local->nr_vcpus, remote->nr_vcpus);
	if (strcmp(local->tracking, remote->tracking)) {
		snprintf(ret->field, sizeof(ret->field), "tracking");
		snprintf(ret->local, sizeof(ret->local), "%s", local->tracking);
		snprintf(ret->remote, sizeof(ret->remote), "%.64s", remote->tracking);
		return -EPROTO;
	}
	MISMATCH_U64("ring_entries", local->ring_entries, remote->ring_entries);
	MISMATCH_U64("kvm_api_version", local->kvm_api_version, remote->kvm_api_version);
	MISMATCH_U64("xsave_size", local->xsave_size, remote->xsave_size);
	{
		char l[96], r[96];
		bool same = local->nr_devices == remote->nr_devices;

		for (uint32_t i = 0; same && i < local->nr_devices; i++)
			same = !strcmp(local->devices[i], remote->devices[i]);
		if (!same) {
			join_devices(local, l, sizeof(l));
			join_devices(remote, r, sizeof(r));
			snprintf(ret->field, sizeof(ret->field), "devices");
			snprintf(ret->local, sizeof(ret->local), "%s", l);
			snprintf(ret->remote, sizeof(ret->remote), "%s", r);
			return -EPROTO;
		}
	}
	if (local->disk_size != remote->disk_size) {
		snprintf(ret->field, sizeof(ret->field), "disk_size");
		disk_size_text(local->disk_size, ret->local, sizeof(ret->local));
		disk_size_text(remote->disk_size, ret->remote, sizeof(ret->remote));
		return -EPROTO;
	}
	if (strcmp(local->net_mac ? local->net_mac : "", remote->net_mac ? remote->net_mac : "")) {
		snprintf(ret->field, sizeof(ret->field), "net_mac");
		snprintf(ret->local, sizeof(ret->local), "%s",
			 local->net_mac && *local->net_mac ? local->net_mac : "no NIC");
		snprintf(ret->remote, sizeof(ret->remote), "%.32s",
			 remote->net_mac && *remote->net_mac ? remote->net_mac : "no NIC");
		return -EPROTO;
	}
	if (local->cpuid_len != remote->cpuid_len ||
	    (local->cpuid_len && memcmp(local->cpuid, remote->cpuid, local->cpuid_len))) {
		snprintf(ret->field, sizeof(ret->field), "cpuid");
		snprintf(ret->local, sizeof(ret->local), "%zu bytes, xxh3 %016llx",
			 local->cpuid_len,
			 (unsigned long long)XXH3_64bits(local->cpuid, local->cpuid_len));
		snprintf(ret->remote, sizeof(ret->remote), "%zu bytes, xxh3 %016llx",
			 remote->cpuid_len,
			 (unsigned long long)XXH3_64bits(remote->cpuid, remote->cpuid_len));
		return -EPROTO;
	}
	if (local->nr_msrs != remote->nr_msrs ||
	    (local->nr_msrs &&
	     memcmp(local->msrs, remote->msrs, local->nr_msrs * sizeof(*local->msrs)))) {
		uint32_t i = 0;

		while (i < local->nr_msrs && i < remote->nr_msrs &&
		       local->msrs[i] == remote->msrs[i])
			i++;
		snprintf(ret->field, sizeof(ret->field), "msrs");
		snprintf(ret->local, sizeof(ret->local), "%zu MSRs (#%u: 0x%x)", local->nr_msrs, i,
			 i < local->nr_msrs ? local->msrs[i] : 0);
		snprintf(ret->remote, sizeof(ret->remote), "%zu MSRs (#%u: 0x%x)", remote->nr_msrs,
			 i, i < remote->nr_msrs ? remote->msrs[i] : 0);
		return -EPROTO;
	}
	return (int)version;
}

/* ---- other small frames --------------------------------------------------- */

int refuse_frame(const char *field, const char *local, const char *remote, const char *reason,
		 uint8_t **ret_buf, size_t *ret_len)
{
	Ringft__Refuse m = RINGFT__REFUSE__INIT;

	m.field = (char *)field;
	m.local = (char *)local;
	m.remote = (char *)remote;
	m.reason = (char *)reason;
	return frame_alloc(WIRE_REFUSE, 0, &m.base, ret_buf, ret_len);
}

size_t ack_frame(uint8_t buf[SMALL_FRAME_MAX], uint64_t epoch, uint32_t verify)
{
	Ringft__Ack m = RINGFT__ACK__INIT;

	m.epoch = epoch;
	m.verify = verify;
	return frame_small(buf, WIRE_ACK, epoch, &m.base);
}

size_t heartbeat_frame(uint8_t buf[SMALL_FRAME_MAX], uint64_t sent_ns)
{
	Ringft__Heartbeat m = RINGFT__HEARTBEAT__INIT;

	m.sent_ns = sent_ns;
	return frame_small(buf, WIRE_HEARTBEAT, 0, &m.base);
}

int goodbye_frame(const char *reason, uint64_t switchover, uint8_t **ret_buf, size_t *ret_len)
{
	Ringft__Goodbye m = RINGFT__GOODBYE__INIT;

	m.reason = (char *)reason;
	m.switchover = switchover != UINT64_MAX;
	m.checkpoint = m.switchover ? switchover : 0;
	return frame_alloc(WIRE_GOODBYE, 0, &m.base, ret_buf, ret_len);
}

int ack_decode(const uint8_t *payload, size_t len, uint64_t *ret_epoch, uint32_t *ret_verify)
{
	Ringft__Ack *m = ringft__ack__unpack(NULL, len, payload);

	if (!m)
		return -EBADMSG;
	*ret_epoch = m->epoch;
	*ret_verify = m->verify;
	ringft__ack__free_unpacked(m, NULL);
	return 0;
}

void refuse_describe(const uint8_t *payload, size_t len, char *buf, size_t buflen)
{
	Ringft__Refuse *m = ringft__refuse__unpack(NULL, len, payload);

	if (!m) {
		snprintf(buf, buflen, "(undecodable refusal)");
		return;
	}
	if (m->field && m->field[0])
		snprintf(buf, buflen, "%.32s differs: theirs %.96s, ours %.96s%s%.96s", m->field,
			 m->local, m->remote, m->reason && m->reason[0] ? "; " : "",
			 m->reason ? m->reason : "");
	else
		snprintf(buf, buflen, "%.160s", m->reason ? m->reason : "(no reason)");
	ringft__refuse__free_unpacked(m, NULL);
}

void refuse_field(const uint8_t *payload, size_t len, char *buf, size_t buflen)
{
	Ringft__Refuse *m = ringft__refuse__unpack(NULL, len, payload);

	snprintf(buf, buflen, "%s", m && m->field ? m->field : "");
	if (m)
		ringft__refuse__free_unpacked(m, NULL);
}

uint64_t goodbye_describe(const uint8_t *payload, size_t len, char *buf, size_t buflen)
{
	Ringft__Goodbye *m = ringft__goodbye__unpack(NULL, len, payload);
	uint64_t switchover = m && m->switchover ? m->checkpoint : UINT64_MAX;

	snprintf(buf, buflen, "%.160s", m && m->reason && m->reason[0] ? m->reason : "(no reason)");
	if (m)
		ringft__goodbye__free_unpacked(m, NULL);
	return switchover;
}

/* ---- small-frame reader --------------------------------------------------- */

int frame_rx_init(struct frame_rx *f)
{
	memset(f, 0, sizeof(*f));
	f->payload = malloc(WIRE_MAX_MSG);
	return f->payload ? 0 : -ENOMEM;
}

void frame_rx_free(struct frame_rx *f)
{
	free(f->payload);
	f->payload = NULL;
}

int frame_rx_feed(struct frame_rx *f, const uint8_t *buf, size_t len, size_t *ret_used)
{
	size_t used = 0;
	int r = 0;

	*ret_used = 0;
	if (f->error[0])
		return -EPIPE;
	while (used < len) {
		size_t n;

		if (!f->in_payload) {
			n = WIRE_HDR_SIZE - f->hdr_have;
			n = n < len - used ? n : len - used;
			memcpy(f->hdr_buf + f->hdr_have, buf + used, n);
			f->hdr_have += n;
			used += n;
			if (f->hdr_have < WIRE_HDR_SIZE)
				break;
			f->hdr_have = 0;
			r = wire_hdr_decode(f->hdr_buf, &f->hdr);
			if (r < 0) {
				wire_hdr_explain(f->hdr_buf, r, f->error, sizeof(f->error));
				break;
			}
			if (f->hdr.type == WIRE_PAGES || f->hdr.type == WIRE_DISK) {
				r = -EPROTO;
				snprintf(f->error, sizeof(f->error), "unexpected %s frame",
					 wire_type_name(f->hdr.type));
				break;
			}
			if (f->hdr.length > WIRE_MAX_MSG) { /* EPOCH_BEGIN may be longer */
				r = -EMSGSIZE;
				snprintf(f->error, sizeof(f->error),
					 "%s frame of %u bytes exceeds its bound here",
					 wire_type_name(f->hdr.type), f->hdr.length);
				break;
			}
			f->in_payload = true;
			f->have = 0;
		}
		n = f->hdr.length - f->have;
		n = n < len - used ? n : len - used;
		memcpy(f->payload + f->have, buf + used, n);
		f->have += n;
		used += n;
		if (f->have == f->hdr.length) {
			f->in_payload = false;
			r = 1;
			break;
		}
	}
	*ret_used = used;
	return r;
}
