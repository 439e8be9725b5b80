/* SPDX-License-Identifier: MIT */
/*
 * The Redis-protocol server of builtin:kv on lwIP's raw TCP API (port 6379).
 * Each connection has a kv_client (resp.h): received pbufs are copied into its
 * input buffer as room allows (tcp_recved() only then, so the TCP window is the
 * flow control), requests run, replies are handed to tcp_write() as the send
 * buffer allows. A connection whose output cannot drain stops reading requests
 * (pipelined clients are throttled, not cut off).
 */
#include <string.h>

#include "lwip/pbuf.h"
#include "lwip/tcp.h"

#include "guest/kv/kv.h"
#include "guest/kv/resp.h"

#define KV_PORT	       6379
#define KV_MAX_CLIENTS 128
#define KV_PENDING     128 /* received pbuf chains waiting for input room */

struct conn {
	struct tcp_pcb *pcb;
	uint8_t in_use;
	uint8_t peer_closed; /* FIN seen: finish the input, then close */
	uint8_t want;	     /* needs service in the next poll pass */
	uint16_t pend_head, pend_count;
	struct pbuf *pend[KV_PENDING];
	struct kv_client c;
};

static struct conn conns[KV_MAX_CLIENTS];
static struct kv_server server;
static struct tcp_pcb *listener;

static void conn_free(struct conn *k)
{
	while (k->pend_count) {
		pbuf_free(k->pend[k->pend_head]);
		k->pend_head = (uint16_t)((k->pend_head + 1) % KV_PENDING);
		k->pend_count--;
	}
	k->pcb = NULL;
	k->in_use = 0;
	server.clients--;
}

/* Returns ERR_ABRT if the pcb had to be aborted (a callback must return that). */
static err_t conn_close(struct conn *k)
{
	struct tcp_pcb *pcb = k->pcb;

	tcp_arg(pcb, NULL);
	tcp_recv(pcb, NULL);
	tcp_sent(pcb, NULL);
	tcp_err(pcb, NULL);
	conn_free(k);
	if (tcp_close(pcb) == ERR_OK)
		return ERR_OK;
	tcp_abort(pcb);
	return ERR_ABRT;
}

/* Copies pending received data into the input buffer; returns bytes moved. */
static uint32_t drain(struct conn *k)
{
	uint32_t moved = 0;

	while (k->pend_count && kv_client_in_room(&k->c)) {
		struct pbuf *p = k->pend[k->pend_head];
		uint32_t n = kv_client_in_room(&k->c);

		if (n > p->tot_len)
			n = p->tot_len;
		pbuf_copy_partial(p, k->c.in + k->c.in_len, (u16_t)n, 0);
		k->c.in_len += n;
		moved += n;
		if (n == p->tot_len) {
			pbuf_free(p);
			k->pend_head = (uint16_t)((k->pend_head + 1) % KV_PENDING);
			k->pend_count--;
		} else {
			k->pend[k->pend_head] = pbuf_free_header(p, (u16_t)n);
		}
	}
	for (uint32_t left = moved; left;) {
		u16_t n = left > 0xffff ? 0xffff : (u16_t)left;

		tcp_recved(k->pcb, n);
		left -= n;
	}
	return moved;
}

/* Hands as much output as the send buffer takes to lwIP. */
static void flush(struct conn *k)
{
	int wrote = 0;

	while (k->c.out_len) {
		uint32_t n = tcp_sndbuf(k->pcb);
		err_t err;

		if (n > k->c.out_len)
			n = k->c.out_len;
		if (n > 0xffff)
			n = 0xffff;
		if (!n || tcp_sndqueuelen(k->pcb) >= TCP_SND_QUEUELEN - 4)
			break;
		err = tcp_write(k->pcb, k->c.out, (u16_t)n, TCP_WRITE_FLAG_COPY);
		if (err != ERR_OK)
			break; /* ERR_MEM: try again when something was acknowledged */
		kv_client_out_consume(&k->c, n);
		wrote = 1;
	}
	if (wrote)
		tcp_output(k->pcb);
}

/*
 * Runs what can run; closes the connection when it is done. Returns ERR_OK, or
 * ERR_ABRT if the connection was closed by aborting its pcb.
 */
static err_t service(struct conn *k)
{
	k->want = 0;
	for (;;) {
		uint32_t moved = drain(k);
		unsigned int ran = kv_client_process(&server, &k->c);

		flush(k);
		if (k->c.close_after || (!moved && !ran))
			break;
	}
	if (k->c.close_after) {
		if (!k->c.out_len)
			return conn_close(k);
	} else if (k->peer_closed && !k->pend_count && !k->c.out_len) {
		/* Whatever input is left is an incomplete request: nobody will finish it. */
		return conn_close(k);
	}
	if (k->c.out_len || (k->pend_count && kv_client_in_room(&k->c)))
		k->want = 1;
	return ERR_OK;
}

static err_t on_recv(void *arg, struct tcp_pcb *pcb, struct pbuf *p, err_t err)
{
	struct conn *k = arg;

	(void)pcb;
	if (!k) {
		if (p)
			pbuf_free(p);
		return ERR_OK;
	}
	if (!p) {
		k->peer_closed = 1;
	} else {
		if (err != ERR_OK || k->pend_count >= KV_PENDING)
			return ERR_MEM; /* lwIP keeps it and offers it again later */
		k->pend[(k->pend_head + k->pend_count) % KV_PENDING] = p;
		k->pend_count++;
	}
	return service(k);
}

static err_t on_sent(void *arg, struct tcp_pcb *pcb, u16_t len)
{
	struct conn *k = arg;

	(void)pcb;
	(void)len;
	if (k)
		k->want = 1; /* the poll pass flushes and resumes requests */
	return ERR_OK;
}

static void on_err(void *arg, err_t err)
{
	struct conn *k = arg;

	(void)err;
	if (k)
		conn_free(k); /* lwIP has freed the pcb */
}

static err_t on_accept(void *arg, struct tcp_pcb *pcb, err_t err)
{
	static const char full[] = "-ERR max number of clients reached\r\n";
	struct conn *k = NULL;

	(void)arg;
	if (err != ERR_OK || !pcb)
		return ERR_VAL;
	for (unsigned int i = 0; i < KV_MAX_CLIENTS; i++)
		if (!conns[i].in_use) {
			k = &conns[i];
			break;
		}
	if (!k) {
		server.rejected++;
		tcp_write(pcb, full, sizeof(full) - 1, TCP_WRITE_FLAG_COPY);
		if (tcp_close(pcb) != ERR_OK) {
			tcp_abort(pcb);
			return ERR_ABRT;
		}
		return ERR_OK;
	}
	memset(k, 0, offsetof(struct conn, c));
	kv_client_reset(&k->c);
	k->in_use = 1;
	k->pcb = pcb;
	server.clients++;
	server.connections++;
	tcp_nagle_disable(pcb); /* Redis sets TCP_NODELAY */
	tcp_arg(pcb, k);
	tcp_recv(pcb, on_recv);
	tcp_sent(pcb, on_sent);
	tcp_err(pcb, on_err);
	return ERR_OK;
}

void kv_server_start(uint64_t store_gpa, uint64_t max_bytes)
{
	struct tcp_pcb *pcb;

	kv_server_init(&server, (void *)(uintptr_t)store_gpa, max_bytes, kv_now_ms());
	pcb = tcp_new();
	if (!pcb || tcp_bind(pcb, IP4_ADDR_ANY, KV_PORT) != ERR_OK)
		kv_panic("cannot bind port 6379");
	listener = tcp_listen(pcb);
	if (!listener)
		kv_panic("cannot listen on port 6379");
	tcp_accept(listener, on_accept);
}

void kv_server_poll(void)
{
	static unsigned int sweep_pass;

	kv_server_set_time(&server, kv_now_ms());
	server.nic_rx_frames = vnet_stats.rx_frames;
	server.nic_rx_dropped = vnet_stats.rx_dropped;
	server.nic_tx_frames = vnet_stats.tx_frames;
	server.nic_tx_busy = vnet_stats.tx_busy;
	server.nic_notifies = vnet_stats.notifies;
	for (unsigned int i = 0; i < KV_MAX_CLIENTS; i++)
		if (conns[i].in_use && conns[i].want)
			service(&conns[i]);
	if (!(++sweep_pass & 1023))
		kv_expire_sweep(&server.store, 64);
}

uint64_t kv_server_clients(void)
{
	return server.clients;
}

uint64_t kv_server_commands(void)
{
	return server.commands;
}

uint64_t kv_server_keys(void)
{
	return server.store.keys;
}
