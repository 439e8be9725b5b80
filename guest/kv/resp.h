/* SPDX-License-Identifier: MIT */
/*
 * The Redis protocol (RESP2) side of builtin:kv: parsing requests (multibulk as
 * redis-cli and redis-benchmark send them, and inline commands as nc sends them),
 * pipelining, the commands and Redis's own error wording. Independent of the
 * network: the caller appends received bytes to a client's input buffer, calls
 * kv_client_process() and sends what it appended to the output buffer. Builds
 * freestanding (the guest) and on the host (tests/test_resp.c).
 */
#ifndef RINGFT_KV_RESP_H
#define RINGFT_KV_RESP_H

#include <stdint.h>

#include "guest/kv/store.h"

#define KV_IN_CAP      (64u * 1024) /* largest request: a longer one is a protocol error */
#define KV_OUT_CAP     (80u * 1024) /* replies waiting for the TCP send buffer */
#define KV_OUT_RESERVE 1024u	    /* a command runs only with this much room free */
#define KV_MAX_ARGS    10000u	    /* more than a 64 KiB request can hold */
#define KV_VERSION     "7.0.15"

struct kv_client {
	uint32_t in_len;
	uint32_t out_len;
	uint8_t close_after; /* QUIT or a protocol error: close once out is sent */
	uint8_t pad[7];
	char in[KV_IN_CAP];
	char out[KV_OUT_CAP];
};

struct kv_arg {
	const char *p;
	uint32_t len;
};

struct kv_server {
	struct kv_store store;
	uint64_t max_bytes;
	uint64_t start_ms;
	uint64_t clients;     /* connected now (kept by the network side) */
	uint64_t connections; /* accepted since start */
	uint64_t commands;    /* processed since start */
	uint64_t rejected;    /* connections refused: too many clients */
	int aof;	      /* writes go to the append-only log on the disk (aof.h) */
	/* The NIC's counters, kept by the network side, shown in INFO's "# NIC". */
	uint64_t nic_rx_frames, nic_rx_dropped, nic_tx_frames, nic_tx_busy, nic_notifies;
	struct kv_arg argv[KV_MAX_ARGS];
	char scratch[128];
};

/* mem: kv_store_footprint(max_bytes) bytes for the store. */
void kv_server_init(struct kv_server *s, void *mem, uint64_t max_bytes, uint64_t now_ms);

static inline void kv_server_set_time(struct kv_server *s, uint64_t now_ms)
{
	s->store.now_ms = now_ms;
}

static inline void kv_client_reset(struct kv_client *c)
{
	c->in_len = 0;
	c->out_len = 0;
	c->close_after = 0;
}

/* Room left in the input buffer. */
static inline uint32_t kv_client_in_room(const struct kv_client *c)
{
	return KV_IN_CAP - c->in_len;
}

/*
 * Executes every complete request at the start of c->in, appending replies to
 * c->out, and removes them from c->in. Stops early when the output buffer lacks
 * KV_OUT_RESERVE bytes or a reply does not fit (call again once output has been
 * sent), and after QUIT or a protocol error (c->close_after: send c->out, then
 * close; the rest of the input is ignored). Returns the number of requests run.
 */
unsigned int kv_client_process(struct kv_server *s, struct kv_client *c);

/* Removes n sent bytes from the front of c->out. */
void kv_client_out_consume(struct kv_client *c, uint32_t n);

#endif
