/* SPDX-License-Identifier: MIT */
/*
 * The key-value store of builtin:kv: a chained hash table of entries allocated
 * from a bounded arena with power-of-two size classes and per-class free lists.
 * No libc beyond memcpy/memcmp/memset, so it builds freestanding for the guest and
 * on the host for tests/test_resp.c.
 *
 * The memory is one block given to kv_store_init(): the bucket array first, then
 * the arena of max_bytes. used_memory counts whole class blocks (a key and value
 * of n bytes with the 32-byte header take the next power of two >= 64), so the
 * bound is the real footprint. When no block can be had, a write fails and the
 * server replies Redis's OOM error. FLUSHALL resets the arena.
 */
#ifndef RINGFT_KV_STORE_H
#define RINGFT_KV_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "guest/layout.h"

#define KV_MIN_BLOCK 64u
#define KV_CLASSES   12 /* 64 B .. 128 KiB */
#define KV_MAX_BLOCK (KV_MIN_BLOCK << (KV_CLASSES - 1))
#define KV_ENTRY_HDR 32u

struct kv_entry {
	struct kv_entry *next; /* chain of the bucket, or of the free list */
	uint64_t expire_ms;    /* 0: no expiry */
	uint32_t hash;
	uint32_t klen;
	uint32_t vlen;
	uint8_t cls;
	uint8_t pad[3];
	/* key bytes, then value bytes */
};

/*
 * What a write did, for the disk log (guest/kv/aof.c): the entry as it is now
 * (SET, also after APPEND, an expiry change, INCR), a deleted key, or FLUSHALL.
 * Expiries are not reported: they follow from the entry's expire_ms.
 */
enum kv_change {
	KV_CHANGE_SET = 1,
	KV_CHANGE_DEL = 2,
	KV_CHANGE_FLUSHALL = 3,
};

/* e for SET; key and klen for DEL; neither for FLUSHALL. */
typedef void (*kv_journal_fn)(void *arg, enum kv_change op, const struct kv_entry *e,
			      const void *key, uint32_t klen);

struct kv_store {
	struct kv_entry **buckets;
	uint64_t nbuckets; /* power of two */
	uint8_t *arena;
	uint64_t arena_size;
	uint64_t bump;
	struct kv_entry *free[KV_CLASSES];
	uint64_t used;	       /* bytes in live blocks */
	uint64_t keys;	       /* live entries (some may have expired unnoticed) */
	uint64_t expires;      /* entries with an expiry */
	uint64_t now_ms;       /* set by the caller: the clock expiries compare with */
	uint64_t sweep;	       /* next bucket of the incremental expiry sweep */
	kv_journal_fn journal; /* NULL: nobody records writes (no disk, or a replay) */
	void *journal_arg;
};

/* Buckets and bytes kv_store_init() needs for an arena of max_bytes (layout.h). */
static inline uint64_t kv_store_buckets(uint64_t max_bytes)
{
	return guest_kv_buckets(max_bytes);
}

static inline uint64_t kv_store_footprint(uint64_t max_bytes)
{
	return kv_store_buckets(max_bytes) * 8 + max_bytes;
}

/* mem holds kv_store_footprint(max_bytes) bytes, 64-byte aligned; it is cleared. */
void kv_store_init(struct kv_store *s, void *mem, uint64_t max_bytes);
void kv_store_flush(struct kv_store *s);

static inline const uint8_t *kv_key(const struct kv_entry *e)
{
	return (const uint8_t *)(e + 1);
}

static inline const uint8_t *kv_value(const struct kv_entry *e)
{
	return (const uint8_t *)(e + 1) + e->klen;
}

/* The live entry of key, or NULL (an expired one is deleted on the way). */
struct kv_entry *kv_lookup(struct kv_store *s, const void *key, uint32_t klen);

/*
 * Sets key to value with expiry expire_ms (absolute, 0: none). keep_ttl keeps the
 * entry's current expiry instead. Returns the entry, or NULL when out of memory
 * (the old value, if any, is then unchanged).
 */
struct kv_entry *kv_set(struct kv_store *s, const void *key, uint32_t klen, const void *val,
			uint32_t vlen, uint64_t expire_ms, int keep_ttl);

/*
 * Appends to key's value (creating it), keeping its expiry. Returns the entry,
 * or NULL when out of memory (the value is then unchanged).
 */
struct kv_entry *kv_append(struct kv_store *s, const void *key, uint32_t klen, const void *val,
			   uint32_t vlen);

/* Sets or clears (0) the expiry of a live entry. */
void kv_set_expire(struct kv_store *s, struct kv_entry *e, uint64_t expire_ms);

/* Returns 1 if key existed (and is now gone), 0 otherwise. */
int kv_del(struct kv_store *s, const void *key, uint32_t klen);

/* Whether a key and value of these sizes can ever be stored (one block). */
static inline int kv_fits_block(uint64_t klen, uint64_t vlen)
{
	return KV_ENTRY_HDR + klen + vlen <= KV_MAX_BLOCK;
}

/* Deletes expired entries in up to `buckets` buckets; call now and then. */
void kv_expire_sweep(struct kv_store *s, unsigned int buckets);

#endif
