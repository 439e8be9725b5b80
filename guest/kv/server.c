/* SPDX-License-Identifier: MIT */
/*
 * The Redis-protocol server of builtin:kv on lwIP's raw TCP API (port 6379).
 * Each connection has a kv_client (resp.h): received pbufs are copied into its
 * input buffer as room allows (tcp_recved() only then, so the TCP window is the
 * flow control), requests run, replies are handed to tcp_write() as the send
 * buffer allows. A connection whose output cannot drain stops reading requests
 * (pipelined clients are throttled, not cut off).
 *
 * With a disk (kv_server_open_log) every write is recorded in the log (aof.h)
 * through the store's journal, and replies are held: a connection may send only
 * the first out_ok bytes of its output. Requests run as they arrive during a
 * loop pass (lwIP's input and timers call on_recv); at the end of the pass,
 * kv_server_poll() commits the records of the whole pass (written, then a
 * completed flush: group commit) and only then releases the held replies to
 * tcp_write(). Nothing that depends on a write reaches lwIP before its record is
 * durable, so neither lwIP's timers nor tcp_output() can send it early. If the
 * commit fails, the held replies of connections that wrote are replaced by
 * errors. Without a disk out_ok is always out_len: nothing is held.
 */
#include <string.h>

#include "lwip/pbuf.h"
#include "lwip/tcp.h"

#include "guest/kv/aof.h"
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
	uint8_t wrote;	     /* a request since the last commit changed the store */
	uint32_t out_ok;     /* bytes at the start of c.out that may be sent */
	uint32_t held_cmds;  /* requests run since the last commit */
	uint16_t pend_head, pend_count;
	struct pbuf *pend[KV_PENDING];
	struct kv_client c;
};

static struct conn conns[KV_MAX_CLIENTS];
static struct kv_server server;
static struct tcp_pcb *listener;

static struct aof aof;
static int aof_on;
static uint8_t aof_buf[1u << 20] __attribute__((aligned(4096)));
static struct conn *running; /* whose requests run now: the journal marks it */
static int held_any;	     /* some connection holds replies */
static uint64_t time_offset; /* store time = kv_now_ms() + this: the log's clock */

static uint64_t store_now(void)
{
	return kv_now_ms() + time_offset;
}

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

	while (k->out_ok) {
		uint32_t n = tcp_sndbuf(k->pcb);
		err_t err;

		if (n > k->out_ok)
			n = k->out_ok;
		if (n > 0xffff)
			n = 0xffff;
		if (!n || tcp_sndqueuelen(k->pcb) >= TCP_SND_QUEUELEN - 4)
			break;
		err = tcp_write(k->pcb, k->c.out, (u16_t)n, TCP_WRITE_FLAG_COPY);
		if (err != ERR_OK)
			break; /* ERR_MEM: try again when something was acknowledged */
		kv_client_out_consume(&k->c, n);
		k->out_ok -= n;
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
		unsigned int ran;

		running = k;
		ran = kv_client_process(&server, &k->c);
		running = NULL;
		if (!aof_on)
			k->out_ok = k->c.out_len;
		else if (ran) {
			k->held_cmds += ran;
			held_any = 1;
		}
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

static void journal(void *arg, enum kv_change op, const struct kv_entry *e, const void *key,
		    uint32_t klen)
{
	if (running)
		running->wrote = 1;
	aof_journal(arg, op, e, key, klen);
}

int kv_server_open_log(const struct aof_blk_ops *ops, void *ctx, uint64_t sectors,
		       const struct aof **ret_log)
{
	int err = aof_open(&aof, ops, ctx, sectors, aof_buf, sizeof(aof_buf), &server.store);

	if (err)
		return err;
	/* The store's clock resumes at the log's time (aof.h: expiries). */
	time_offset = server.store.now_ms - kv_now_ms();
	server.start_ms = server.store.now_ms;
	server.store.journal = journal;
	server.store.journal_arg = &aof;
	aof_on = 1;
	server.aof = 1;
	*ret_log = &aof;
	return 0;
}

static void print_rewrite(uint64_t ms)
{
	kv_line_start("kv aof rewrite gen=");
	kv_line_u64(aof.generation);
	kv_line_str(" region=");
	kv_line_u64(aof.current);
	kv_line_str(" keys=");
	kv_line_u64(aof.last_rewrite_keys);
	kv_line_str(" bytes=");
	kv_line_u64(aof.snapshot_bytes);
	kv_line_str(" old_bytes=");
	kv_line_u64(aof.last_rewrite_old_bytes);
	kv_line_str(" ms=");
	kv_line_u64(ms);
	kv_line_end();
}

static void print_error(const char *what, int err)
{
	kv_line_start("kv aof ");
	kv_line_str(what);
	kv_line_str(" failed errno=");
	kv_line_u64((uint64_t)-err);
	kv_line_str(" write_errors=");
	kv_line_u64(aof.write_errors);
	kv_line_end();
}

/* The held replies of a connection whose writes may be lost become errors. */
static void fail_held(struct conn *k)
{
	static const char msg[] = "-ERR disk write failed, the write may be lost\r\n";
	const uint32_t len = sizeof(msg) - 1;

	k->c.out_len = k->out_ok;
	for (uint32_t i = 0; i < k->held_cmds; i++) {
		if (KV_OUT_CAP - k->c.out_len < len) {
			k->c.close_after = 1; /* the others' replies cannot be told: drop them */
			break;
		}
		memcpy(k->c.out + k->c.out_len, msg, len);
		k->c.out_len += len;
	}
}

/* Makes this pass's writes durable, then lets the held replies go. */
static void commit_and_release(void)
{
	uint64_t rewrites = aof.rewrites, t0 = kv_now_ms();
	int err = 0;

	if (aof_pending(&aof)) {
		err = aof_commit(&aof);
		if (err)
			print_error("write", err);
		else if (aof.rewrites != rewrites)
			print_rewrite(kv_now_ms() - t0);
	}
	if (held_any) {
		held_any = 0;
		for (unsigned int i = 0; i < KV_MAX_CLIENTS; i++) {
			struct conn *k = &conns[i];

			if (!k->in_use)
				continue;
			if (k->out_ok != k->c.out_len) {
				if (err && k->wrote)
					fail_held(k);
				k->out_ok = k->c.out_len;
				flush(k);
				k->want = 1; /* the next pass sends the rest, or closes */
			}
			k->held_cmds = 0;
			k->wrote = 0;
		}
	}
	if (!err && aof_rewrite_due(&aof)) {
		vnet_tx_flush(); /* the replies leave before the rewrite's pause */
		t0 = kv_now_ms();
		err = aof_maybe_rewrite(&aof);
		if (err < 0)
			print_error("rewrite", err);
		else if (err > 0)
			print_rewrite(kv_now_ms() - t0);
	}
}

void kv_server_poll(void)
{
	static unsigned int sweep_pass;

	kv_server_set_time(&server, store_now());
	server.nic_rx_frames = vnet_stats.rx_frames;
	server.nic_rx_dropped = vnet_stats.rx_dropped;
	server.nic_tx_frames = vnet_stats.tx_frames;
	server.nic_tx_busy = vnet_stats.tx_busy;
	server.nic_notifies = vnet_stats.notifies;
	for (unsigned int i = 0; i < KV_MAX_CLIENTS; i++)
		if (conns[i].in_use && conns[i].want)
			service(&conns[i]);
	if (aof_on)
		commit_and_release();
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
