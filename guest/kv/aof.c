/* SPDX-License-Identifier: MIT */
/* builtin:kv's append-only disk log: format and rules in aof.h. */
#include <errno.h>
#include <string.h>

#include "guest/kv/aof.h"

#define SUPER_MAGIC   0x474f4c564b544652ULL /* "RFTKVLOG" */
#define SUPER_VERSION 1u
#define SUPER_BYTES   80u	  /* the fields, then their FNV-1a-64, then zeros */
#define REC_MAGIC     0x52564b52u /* "RKVR" */
/* A region holds at least a few of the largest records. */
#define REGION_MIN_SECTORS ((4u * AOF_BUF_MIN) / AOF_SECTOR)

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get64(const uint8_t *p)
{
	return (uint64_t)get32(p) | (uint64_t)get32(p + 4) << 32;
}

#define FNV_INIT 0xcbf29ce484222325ULL

static uint64_t fnv(uint64_t h, const void *p, uint64_t n)
{
	const uint8_t *b = p;

	for (uint64_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return h;
}

/* ---- records ---- */

void aof_encode(uint8_t *p, enum aof_rec_type type, uint32_t boot, uint64_t seq, uint64_t time_ms,
		uint64_t expire_ms, const void *key, uint32_t klen, const void *val, uint32_t vlen)
{
	uint64_t h;

	memset(p, 0, AOF_REC_HDR);
	put32(p, REC_MAGIC);
	put16(p + 4, (uint16_t)type);
	put32(p + 8, boot);
	put32(p + 12, klen);
	put32(p + 16, vlen);
	put64(p + 24, seq);
	put64(p + 32, time_ms);
	put64(p + 40, expire_ms);
	if (klen) /* key and val may be NULL when empty */
		memcpy(p + AOF_REC_HDR, key, klen);
	if (vlen)
		memcpy(p + AOF_REC_HDR + klen, val, vlen);
	h = fnv(FNV_INIT, p, 48);
	put64(p + 48, fnv(h, p + AOF_REC_HDR, (uint64_t)klen + vlen));
}

static int all_zero(const uint8_t *p, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

long aof_decode(const uint8_t *p, uint64_t len, struct aof_rec *r)
{
	uint64_t size, h;

	if (len < AOF_REC_HDR)
		return -EAGAIN;
	if (!get32(p))
		return 0; /* never written, or the zeros after a batch's last record */
	r->type = (enum aof_rec_type)get16(p + 4);
	r->boot = get32(p + 8);
	r->klen = get32(p + 12);
	r->vlen = get32(p + 16);
	r->seq = get64(p + 24);
	r->time_ms = get64(p + 32);
	r->expire_ms = get64(p + 40);
	if (get32(p) != REC_MAGIC || get16(p + 6) || get32(p + 20) || r->type < AOF_REC_SET ||
	    r->type > AOF_REC_FLUSHALL || !kv_fits_block(r->klen, r->vlen) ||
	    (r->type != AOF_REC_SET && r->vlen) || (r->type == AOF_REC_FLUSHALL && r->klen))
		return -EBADMSG;
	size = AOF_REC_HDR + (uint64_t)r->klen + r->vlen;
	if (len < size)
		return -EAGAIN;
	h = fnv(fnv(FNV_INIT, p, 48), p + AOF_REC_HDR, size - AOF_REC_HDR);
	if (h != get64(p + 48))
		return -EBADMSG;
	r->key = p + AOF_REC_HDR;
	r->val = r->key + r->klen;
	return (long)size;
}

/* ---- superblock ---- */

static uint64_t region_bytes(const struct aof *a)
{
	return a->region_sectors * AOF_SECTOR;
}

static int write_super(struct aof *a, uint32_t current, uint64_t generation, uint64_t first_seq,
		       uint64_t snapshot_bytes)
{
	uint8_t s[AOF_SECTOR];
	int r;

	memset(s, 0, sizeof(s));
	put64(s, SUPER_MAGIC);
	put32(s + 8, SUPER_VERSION);
	put32(s + 12, current);
	put64(s + 16, generation);
	put32(s + 24, a->boot);
	put64(s + 32, a->region_sectors);
	put64(s + 40, a->region_start[0]);
	put64(s + 48, a->region_start[1]);
	put64(s + 56, first_seq);
	put64(s + 64, a->time_ms);
	put64(s + 72, snapshot_bytes);
	put64(s + SUPER_BYTES, fnv(FNV_INIT, s, SUPER_BYTES));
	r = a->ops->write(a->ctx, 0, s, 1);
	return r ? r : a->ops->flush(a->ctx);
}

static int read_super(struct aof *a, const uint8_t *s)
{
	if (get64(s) != SUPER_MAGIC || get32(s + 8) != SUPER_VERSION ||
	    get64(s + SUPER_BYTES) != fnv(FNV_INIT, s, SUPER_BYTES))
		return -EINVAL;
	a->current = get32(s + 12);
	a->generation = get64(s + 16);
	a->boot = get32(s + 24);
	a->region_sectors = get64(s + 32);
	a->region_start[0] = get64(s + 40);
	a->region_start[1] = get64(s + 48);
	a->first_seq = get64(s + 56);
	a->time_ms = get64(s + 64);
	a->snapshot_bytes = get64(s + 72);
	if (a->current > 1 || a->region_sectors < REGION_MIN_SECTORS ||
	    a->region_start[0] < AOF_REGION_FIRST ||
	    a->region_start[1] < a->region_start[0] + a->region_sectors ||
	    a->region_start[1] + a->region_sectors > a->disk_sectors ||
	    a->snapshot_bytes > region_bytes(a) || !a->first_seq)
		return -EINVAL;
	return 0;
}

static void set_rewrite_at(struct aof *a)
{
	a->rewrite_at = 2 * a->snapshot_bytes;
	if (a->rewrite_at < a->rewrite_min)
		a->rewrite_at = a->rewrite_min;
}

/* ---- replay ---- */

struct window {
	uint64_t off, len; /* region bytes [off, off + len) are in a->buf */
};

static int refill(struct aof *a, struct window *w, uint64_t pos)
{
	uint64_t n;

	w->off = pos & ~(uint64_t)(AOF_SECTOR - 1);
	n = region_bytes(a) - w->off;
	if (n > a->buf_cap)
		n = a->buf_cap;
	w->len = 0;
	if (!n)
		return 0;
	if (a->ops->read(a->ctx, a->region_start[a->current] + w->off / AOF_SECTOR, a->buf,
			 n / AOF_SECTOR))
		return -EIO;
	w->len = n;
	return 0;
}

static int apply(struct kv_store *s, const struct aof_rec *r)
{
	s->now_ms = r->time_ms;
	switch (r->type) {
	case AOF_REC_SET:
		if (kv_set(s, r->key, r->klen, r->val, r->vlen, r->expire_ms, 0))
			return 0;
		/* The live run may have dropped expired keys here: so does the replay. */
		kv_expire_sweep(s, (unsigned int)s->nbuckets);
		return kv_set(s, r->key, r->klen, r->val, r->vlen, r->expire_ms, 0) ? 0 : -ENOMEM;
	case AOF_REC_DEL:
		kv_del(s, r->key, r->klen);
		return 0;
	case AOF_REC_FLUSHALL:
		kv_store_flush(s);
		return 0;
	}
	return -EINVAL;
}

static int replay(struct aof *a)
{
	struct window w = { 0, 0 };
	uint64_t pos = 0, seq = a->first_seq;
	uint32_t boot = 0;
	struct aof_rec r;
	int err;

	a->stop = AOF_STOP_END;
	for (;;) {
		long n;

		if (pos + AOF_REC_HDR > region_bytes(a))
			break;
		n = aof_decode(a->buf + (pos - w.off), w.off + w.len - pos, &r);
		if (n == -EAGAIN && (pos > w.off || w.len < a->buf_cap)) {
			err = refill(a, &w, pos);
			if (err)
				return err;
			n = aof_decode(a->buf + (pos - w.off), w.off + w.len - pos, &r);
		}
		if (n == 0) {
			a->stop = AOF_STOP_ZERO;
			break;
		}
		if (n < 0) {
			a->stop = AOF_STOP_TORN; /* -EAGAIN: runs past the region's end */
			break;
		}
		if (r.seq != seq || r.boot < boot || r.boot > a->boot) {
			a->stop = r.seq < seq || r.boot < boot ? AOF_STOP_STALE : AOF_STOP_TORN;
			break;
		}
		err = apply(a->store, &r);
		if (err)
			return err;
		if (r.time_ms > a->time_ms)
			a->time_ms = r.time_ms;
		boot = r.boot;
		seq++;
		pos += (uint64_t)n;
		a->replayed++;
	}
	a->seq = seq;
	a->tail = pos;
	/* Appending rewrites the tail's sector: keep the bytes of it that are log. */
	a->buf_head = (uint32_t)(pos % AOF_SECTOR);
	if (a->buf_head) {
		if (pos - a->buf_head < w.off || pos > w.off + w.len) {
			err = refill(a, &w, pos);
			if (err)
				return err;
		}
		memmove(a->buf, a->buf + (pos - a->buf_head - w.off), a->buf_head);
	}
	memcpy(a->tail_sector, a->buf, a->buf_head);
	a->buf_len = a->buf_head;
	return 0;
}

int aof_open(struct aof *a, const struct aof_blk_ops *ops, void *ctx, uint64_t sectors,
	     uint8_t *buf, uint32_t buf_cap, struct kv_store *store)
{
	int err;

	if (buf_cap < AOF_BUF_MIN || buf_cap % AOF_SECTOR)
		return -EINVAL;
	memset(a, 0, sizeof(*a));
	a->ops = ops;
	a->ctx = ctx;
	a->store = store;
	a->buf = buf;
	a->buf_cap = buf_cap;
	a->disk_sectors = sectors;
	a->rewrite_min = AOF_REWRITE_MIN_DEFAULT;
	if (sectors < AOF_REGION_FIRST + 2 * (uint64_t)REGION_MIN_SECTORS)
		return -ENOSPC;
	err = ops->read(ctx, 0, buf, 1);
	if (err)
		return err;
	if (all_zero(buf, AOF_SECTOR)) {
		a->formatted = 1;
		a->region_sectors = ((sectors - AOF_REGION_FIRST) / 2) & ~7ULL;
		a->region_start[0] = AOF_REGION_FIRST;
		a->region_start[1] = AOF_REGION_FIRST + a->region_sectors;
		a->generation = 1;
		a->first_seq = 1;
	} else {
		err = read_super(a, buf);
		if (err)
			return err;
	}
	/* A new boot before anything is appended (aof.h: why boot). */
	a->boot++;
	err = write_super(a, a->current, a->generation, a->first_seq, a->snapshot_bytes);
	if (err)
		return err;
	err = replay(a);
	if (err)
		return err;
	set_rewrite_at(a);
	store->now_ms = a->time_ms;
	return 0;
}

/* ---- appending ---- */

/* Writes buf (from the tail's sector) to the current region, then flushes. */
static int write_pending(struct aof *a)
{
	uint64_t sector = a->region_start[a->current] + a->tail / AOF_SECTOR;
	uint32_t n = (a->buf_len + AOF_SECTOR - 1) / AOF_SECTOR, head;
	int err;

	memset(a->buf + a->buf_len, 0, n * AOF_SECTOR - a->buf_len);
	err = a->ops->write(a->ctx, sector, a->buf, n);
	if (!err)
		err = a->ops->flush(a->ctx);
	if (err)
		return err;
	a->tail += a->buf_len - a->buf_head;
	head = a->buf_len % AOF_SECTOR;
	memmove(a->buf, a->buf + a->buf_len - head, head);
	memcpy(a->tail_sector, a->buf, head);
	a->buf_head = a->buf_len = head;
	a->pending = 0;
	a->commits++;
	return 0;
}

/* Writes what is pending, or a whole snapshot; on failure the disk lags the store. */
static int commit_now(struct aof *a)
{
	int err;

	if (!a->pending)
		return 0;
	if (a->need_rewrite || a->tail + (a->buf_len - a->buf_head) > region_bytes(a))
		err = aof_rewrite(a); /* the snapshot holds what was pending */
	else
		err = write_pending(a);
	if (err) {
		a->write_errors++;
		a->need_rewrite = 1;
		a->pending = 0;
		a->buf_len = a->buf_head;
	}
	return err;
}

void aof_journal(void *arg, enum kv_change op, const struct kv_entry *e, const void *key,
		 uint32_t klen)
{
	struct aof *a = arg;
	uint32_t vlen = 0, need;
	const void *val = NULL;
	uint64_t expire = 0;
	enum aof_rec_type type = AOF_REC_DEL;

	if (op == KV_CHANGE_SET) {
		type = AOF_REC_SET;
		key = kv_key(e);
		klen = e->klen;
		val = kv_value(e);
		vlen = e->vlen;
		expire = e->expire_ms;
	} else if (op == KV_CHANGE_FLUSHALL) {
		type = AOF_REC_FLUSHALL;
		klen = 0;
	}
	need = AOF_REC_HDR + klen + vlen;
	if (a->buf_len + need > a->buf_cap) {
		int err = commit_now(a);

		if (err && !a->err)
			a->err = err;
	}
	if (a->store->now_ms > a->time_ms)
		a->time_ms = a->store->now_ms;
	aof_encode(a->buf + a->buf_len, type, a->boot, a->seq, a->time_ms, expire, key, klen, val,
		   vlen);
	a->buf_len += need;
	a->seq++;
	a->pending++;
	a->records++;
}

int aof_commit(struct aof *a)
{
	int err = commit_now(a);

	if (a->err) {
		err = a->err;
		a->err = 0;
	}
	return err;
}

/* ---- rewrite ---- */

static int entry_live(const struct kv_store *s, const struct kv_entry *e)
{
	return !e->expire_ms || e->expire_ms > s->now_ms;
}

int aof_rewrite(struct aof *a)
{
	struct kv_store *s = a->store;
	uint32_t target = 1 - a->current, len = 0, head;
	uint64_t off = 0, seq = a->seq, first_seq = a->seq, keys = 0;
	uint64_t start = a->region_start[target];
	int err;

	if (s->now_ms > a->time_ms)
		a->time_ms = s->now_ms;
	for (uint64_t b = 0; b < s->nbuckets; b++)
		for (const struct kv_entry *e = s->buckets[b]; e; e = e->next) {
			uint32_t need = AOF_REC_HDR + e->klen + e->vlen;

			if (!entry_live(s, e))
				continue;
			if (len + need > a->buf_cap) {
				uint32_t n = len / AOF_SECTOR;

				err = a->ops->write(a->ctx, start + off / AOF_SECTOR, a->buf, n);
				if (err)
					goto fail;
				off += (uint64_t)n * AOF_SECTOR;
				memmove(a->buf, a->buf + n * AOF_SECTOR, len - n * AOF_SECTOR);
				len -= n * AOF_SECTOR;
			}
			if (off + len + need > region_bytes(a)) {
				err = -ENOSPC;
				goto fail;
			}
			aof_encode(a->buf + len, AOF_REC_SET, a->boot, seq++, a->time_ms,
				   e->expire_ms, kv_key(e), e->klen, kv_value(e), e->vlen);
			len += need;
			keys++;
		}
	if (len) {
		uint32_t n = (len + AOF_SECTOR - 1) / AOF_SECTOR;

		memset(a->buf + len, 0, n * AOF_SECTOR - len);
		err = a->ops->write(a->ctx, start + off / AOF_SECTOR, a->buf, n);
		if (err)
			goto fail;
	}
	err = a->ops->flush(a->ctx);
	if (!err) /* the switch: one sector */
		err = write_super(a, target, a->generation + 1, first_seq, off + len);
	if (err)
		goto fail;

	a->last_rewrite_keys = keys;
	a->last_rewrite_old_bytes = a->tail;
	a->current = target;
	a->generation++;
	a->first_seq = first_seq;
	a->seq = seq;
	a->tail = a->snapshot_bytes = off + len;
	head = len % AOF_SECTOR;
	memmove(a->buf, a->buf + len - head, head);
	memcpy(a->tail_sector, a->buf, head);
	a->buf_head = a->buf_len = head;
	a->pending = 0;
	a->need_rewrite = 0;
	a->rewrites++;
	set_rewrite_at(a);
	return 0;

fail:
	/* The old region and superblock are untouched; buf held the old tail's sector. */
	memcpy(a->buf, a->tail_sector, a->buf_head);
	a->buf_len = a->buf_head;
	return err;
}

int aof_maybe_rewrite(struct aof *a)
{
	int err;

	if (!aof_rewrite_due(a))
		return 0;
	err = aof_rewrite(a);
	if (err) {
		/* The old log goes on; try again after as much growth once more. */
		a->rewrite_at = a->tail + (a->tail > a->rewrite_min ? a->tail : a->rewrite_min);
		return err;
	}
	return 1;
}
