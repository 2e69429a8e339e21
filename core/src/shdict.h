/* SPDX-License-Identifier: MIT */
/*
 * shdict.h - the inside of a shared dictionary (shdict.c), shared by its
 * files: the arena's buddy allocator (shdict_arena.c), the items, hash and
 * LRU (shdict.c), the lists (shdict_list.c). Not installed.
 */
#ifndef RL_SHDICT_H
#define RL_SHDICT_H

#include <sched.h>
#include <string.h>

#include "internal.h"

#define UNIT_SHIFT 6                 /* 64-byte allocation units */
#define UNIT ((size_t)1 << UNIT_SHIFT)
#define MAX_ORDER 40
#define META_FREE 0x80
#define MAX_DICTS 64
#define MIN_SIZE ((size_t)16 << 10)
#define MAX_SIZE ((size_t)64 << 30)
#define KEY_MAX 65535
#define EVICT_SCAN 32                /* expired items looked at per round */

struct fblock {                      /* a free block's first bytes */
	struct fblock *prev, *next;
};

struct lnode {                       /* a list element */
	struct lnode *prev, *next;
	double num;
	uint32_t len;
	uint8_t type;
	char data[];
};

struct item {
	struct item *hnext;              /* hash chain */
	struct item *prev, *next;        /* LRU: prev toward the head */
	uint64_t hash;
	double expires;                  /* 0: never */
	double num;
	struct lnode *lhead, *ltail;
	uint32_t klen;
	uint32_t vlen;                   /* STRING bytes, LIST elements */
	uint32_t flags;
	uint8_t type;
	char data[];                     /* key, then a STRING's bytes */
};

struct rl_shdict {
	/* 0 free, 1 held: a spinlock (lock()), alone in its cache line (the
	 * struct is allocated 64-aligned) so that waiters spinning on it do
	 * not take the line of the fields every call reads away from the
	 * holder */
	int lock;
	char lock_line[64 - sizeof(int)];
	char name[64];
	size_t size;                     /* as asked (capacity) */
	size_t arena_size;               /* a multiple of UNIT */
	unsigned char *arena;
	uint8_t *meta;                   /* per unit */
	struct fblock *freel[MAX_ORDER + 1];
	size_t free_bytes;
	size_t top_block;                /* the largest block there is */
	struct item **buckets;
	uint64_t mask;
	struct item *lru_head, *lru_tail;
};

/* The clock of expiry (CLOCK_MONOTONIC; tests replace it). */
extern double (*rl__shdict_clock)(void);

/* shdict_arena.c: a block of at least `bytes` (NULL: none free that big),
 * its release (merging with its free buddy), and the arena cut into its
 * binary decomposition at the start. */
RL_HIDDEN void *rl__shd_balloc(struct rl_shdict *d, size_t bytes);
RL_HIDDEN void rl__shd_bfree(struct rl_shdict *d, void *p);
RL_HIDDEN void rl__shd_arena_init(struct rl_shdict *d);
RL_HIDDEN int rl__shd_fits_block(const struct rl_shdict *d, const void *p, size_t bytes);

/* shdict.c: an item out of the hash, the LRU and the arena; up to max
 * expired items freed from the LRU tail; a block of `bytes`, making room
 * (expired items first, then, with evict, live ones from the LRU tail,
 * never `keep`; *forcible set when a live one went). */
RL_HIDDEN void rl__shd_item_delete(struct rl_shdict *d, struct item *it);
RL_HIDDEN void rl__shd_expire_some(struct rl_shdict *d, int max, double now);
RL_HIDDEN void *rl__shd_alloc_room(struct rl_shdict *d, size_t bytes, int evict,
				   struct item *keep, double now, int32_t *forcible);

static inline uint64_t hash_key(const char *k, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;    /* FNV-1a, then a final mix */

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)k[i]) * 0x100000001b3ull;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return h;
}

static inline int expired(const struct item *it, double now)
{
	return it->expires != 0 && it->expires <= now;
}

static inline void lru_unlink(struct rl_shdict *d, struct item *it)
{
	if (it->prev)
		it->prev->next = it->next;
	else
		d->lru_head = it->next;
	if (it->next)
		it->next->prev = it->prev;
	else
		d->lru_tail = it->prev;
	it->prev = it->next = NULL;
}

static inline void lru_push(struct rl_shdict *d, struct item *it)
{
	it->prev = NULL;
	it->next = d->lru_head;
	if (d->lru_head)
		d->lru_head->prev = it;
	else
		d->lru_tail = it;
	d->lru_head = it;
}

static inline struct item *lookup(struct rl_shdict *d, const char *key, size_t klen, uint64_t h)
{
	for (struct item *it = d->buckets[h & d->mask]; it; it = it->hnext)
		if (it->hash == h && it->klen == klen && memcmp(it->data, key, klen) == 0)
			return it;
	return NULL;
}

static inline int key_ok(const char *key, size_t klen)
{
	return key && klen > 0 && klen <= KEY_MAX;
}

/* A test-and-test-and-set spinlock, as nginx's shared zones use: the
 * sections it guards take tens of nanoseconds, and with a mutex two
 * workers writing at once spent their time in futex calls (0.78x nginx's
 * set rate with 2 workers). A waiter spins with the CPU's pause, and
 * yields the CPU after a while, so a holder preempted on a busy machine
 * gets to run. */
static inline int lock(struct rl_shdict *d)
{
	for (unsigned spins = 0;; spins++) {
		if (!__atomic_load_n(&d->lock, __ATOMIC_RELAXED) &&
		    !__atomic_exchange_n(&d->lock, 1, __ATOMIC_ACQUIRE))
			return 0;
		if (spins < 1024)
			__builtin_ia32_pause();
		else
			sched_yield();
	}
}

static inline void unlock(struct rl_shdict *d)
{
	__atomic_store_n(&d->lock, 0, __ATOMIC_RELEASE);
}

#endif
