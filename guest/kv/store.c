/* SPDX-License-Identifier: MIT */
#include <string.h>

#include "guest/kv/store.h"

_Static_assert(sizeof(struct kv_entry) == KV_ENTRY_HDR, "entry header size");

static uint32_t hash_bytes(const void *p, uint32_t n)
{
	const uint8_t *b = p;
	uint64_t h = 0xcbf29ce484222325ULL;

	for (uint32_t i = 0; i < n; i++) {
		h ^= b[i];
		h *= 0x100000001b3ULL;
	}
	return (uint32_t)(h ^ (h >> 32));
}

void kv_store_init(struct kv_store *s, void *mem, uint64_t max_bytes)
{
	memset(s, 0, sizeof(*s));
	s->nbuckets = kv_store_buckets(max_bytes);
	s->buckets = mem;
	s->arena = (uint8_t *)mem + s->nbuckets * sizeof(void *);
	s->arena_size = max_bytes;
	memset(s->buckets, 0, s->nbuckets * sizeof(void *));
}

static void journal(struct kv_store *s, enum kv_change op, const struct kv_entry *e,
		    const void *key, uint32_t klen)
{
	if (s->journal)
		s->journal(s->journal_arg, op, e, key, klen);
}

void kv_store_flush(struct kv_store *s)
{
	memset(s->buckets, 0, s->nbuckets * sizeof(void *));
	memset(s->free, 0, sizeof(s->free));
	s->bump = 0;
	s->used = 0;
	s->keys = 0;
	s->expires = 0;
	s->sweep = 0;
	journal(s, KV_CHANGE_FLUSHALL, NULL, NULL, 0);
}

static int size_class(uint64_t bytes)
{
	int c = 0;

	while (c < KV_CLASSES && ((uint64_t)KV_MIN_BLOCK << c) < bytes)
		c++;
	return c < KV_CLASSES ? c : -1;
}

static struct kv_entry *block_alloc(struct kv_store *s, uint64_t bytes)
{
	int c = size_class(bytes);
	uint64_t size;
	struct kv_entry *e;

	if (c < 0)
		return NULL;
	size = (uint64_t)KV_MIN_BLOCK << c;
	e = s->free[c];
	if (e) {
		s->free[c] = e->next;
	} else {
		if (s->arena_size - s->bump < size)
			return NULL;
		e = (struct kv_entry *)(s->arena + s->bump);
		s->bump += size;
	}
	s->used += size;
	e->cls = (uint8_t)c;
	return e;
}

static void block_free(struct kv_store *s, struct kv_entry *e)
{
	s->used -= (uint64_t)KV_MIN_BLOCK << e->cls;
	e->next = s->free[e->cls];
	s->free[e->cls] = e;
}

static struct kv_entry **find_slot(struct kv_store *s, const void *key, uint32_t klen, uint32_t h)
{
	struct kv_entry **pp = &s->buckets[h & (s->nbuckets - 1)];

	for (; *pp; pp = &(*pp)->next) {
		struct kv_entry *e = *pp;

		if (e->hash == h && e->klen == klen && !memcmp(kv_key(e), key, klen))
			break;
	}
	return pp;
}

static int expired(const struct kv_store *s, const struct kv_entry *e)
{
	return e->expire_ms && s->now_ms >= e->expire_ms;
}

static void unlink_entry(struct kv_store *s, struct kv_entry **pp)
{
	struct kv_entry *e = *pp;

	*pp = e->next;
	s->keys--;
	if (e->expire_ms)
		s->expires--;
	block_free(s, e);
}

struct kv_entry *kv_lookup(struct kv_store *s, const void *key, uint32_t klen)
{
	struct kv_entry **pp = find_slot(s, key, klen, hash_bytes(key, klen));

	if (!*pp)
		return NULL;
	if (expired(s, *pp)) {
		unlink_entry(s, pp);
		return NULL;
	}
	return *pp;
}

struct kv_entry *kv_set(struct kv_store *s, const void *key, uint32_t klen, const void *val,
			uint32_t vlen, uint64_t expire_ms, int keep_ttl)
{
	uint32_t h = hash_bytes(key, klen);
	struct kv_entry **pp = find_slot(s, key, klen, h);
	struct kv_entry *old = *pp, *e;
	uint64_t need = (uint64_t)KV_ENTRY_HDR + klen + vlen;

	if (old && expired(s, old)) {
		unlink_entry(s, pp);
		pp = find_slot(s, key, klen, h);
		old = NULL;
	}
	if (old && keep_ttl)
		expire_ms = old->expire_ms;
	else if (!old)
		keep_ttl = 0;
	if (old && need <= ((uint64_t)KV_MIN_BLOCK << old->cls)) {
		e = old; /* in place: the value may move, the key stays */
	} else {
		e = block_alloc(s, need);
		if (!e)
			return NULL;
		e->hash = h;
		e->klen = klen;
		memcpy((uint8_t *)(e + 1), key, klen);
		if (old) {
			e->next = old->next;
			if (old->expire_ms)
				s->expires--;
			block_free(s, old);
		} else {
			e->next = NULL;
			s->keys++;
		}
		e->expire_ms = 0;
		*pp = e;
	}
	memmove((uint8_t *)(e + 1) + klen, val, vlen);
	e->vlen = vlen;
	if (e->expire_ms && !expire_ms)
		s->expires--;
	else if (!e->expire_ms && expire_ms)
		s->expires++;
	e->expire_ms = expire_ms;
	journal(s, KV_CHANGE_SET, e, NULL, 0);
	return e;
}

struct kv_entry *kv_append(struct kv_store *s, const void *key, uint32_t klen, const void *val,
			   uint32_t vlen)
{
	uint32_t h = hash_bytes(key, klen);
	struct kv_entry **pp = find_slot(s, key, klen, h);
	struct kv_entry *old = *pp, *e;
	uint64_t need;

	if (old && expired(s, old)) {
		unlink_entry(s, pp);
		pp = find_slot(s, key, klen, h);
		old = NULL;
	}
	if (!old)
		return kv_set(s, key, klen, val, vlen, 0, 0);
	need = (uint64_t)KV_ENTRY_HDR + klen + old->vlen + vlen;
	if (need > UINT32_MAX)
		return NULL;
	if (need <= ((uint64_t)KV_MIN_BLOCK << old->cls)) {
		e = old;
	} else {
		e = block_alloc(s, need);
		if (!e)
			return NULL;
		memcpy(e, old, KV_ENTRY_HDR + klen + old->vlen);
		e->cls = (uint8_t)size_class(need);
		*pp = e;
		block_free(s, old);
	}
	memmove((uint8_t *)(e + 1) + klen + e->vlen, val, vlen);
	e->vlen += vlen;
	journal(s, KV_CHANGE_SET, e, NULL, 0);
	return e;
}

void kv_set_expire(struct kv_store *s, struct kv_entry *e, uint64_t expire_ms)
{
	if (e->expire_ms && !expire_ms)
		s->expires--;
	else if (!e->expire_ms && expire_ms)
		s->expires++;
	e->expire_ms = expire_ms;
	journal(s, KV_CHANGE_SET, e, NULL, 0);
}

int kv_del(struct kv_store *s, const void *key, uint32_t klen)
{
	struct kv_entry **pp = find_slot(s, key, klen, hash_bytes(key, klen));
	int live;

	if (!*pp)
		return 0;
	live = !expired(s, *pp);
	unlink_entry(s, pp);
	journal(s, KV_CHANGE_DEL, NULL, key, klen);
	return live;
}

void kv_expire_sweep(struct kv_store *s, unsigned int buckets)
{
	if (!s->expires)
		return;
	while (buckets--) {
		struct kv_entry **pp = &s->buckets[s->sweep];

		while (*pp) {
			if (expired(s, *pp))
				unlink_entry(s, pp);
			else
				pp = &(*pp)->next;
		}
		s->sweep = (s->sweep + 1) & (s->nbuckets - 1);
	}
}
