/* SPDX-License-Identifier: MIT */
/*
 * shdict.c - shared dictionaries: OpenResty's ngx.shared.DICT for the
 * worker threads of one process.
 *
 * Workers are threads with their own Lua states, so a dictionary lives here
 * in C, in a process-wide registry (dictionaries are opened before or while
 * workers start and are never freed: every worker may hold a pointer).
 *
 * Layout of one dictionary:
 *   - an arena of `size` bytes allocated when it is opened, carved by a
 *     buddy allocator (blocks of 64 << order bytes; a freed block merges
 *     with its free buddy, so evicting enough items always makes room for
 *     anything that fits the arena's largest block). The arena's size is
 *     cut into its binary decomposition (e.g. 10 MiB = 8 MiB + 2 MiB), each
 *     part a top-level block; one meta byte per 64-byte unit says whether a
 *     block starting there is free and its order.
 *   - an item per key: header, key, string value in one block; a list's
 *     elements are blocks of their own, linked from the item.
 *   - a hash table (one pointer per 256 arena bytes, a power of two),
 *     chained, and a doubly linked LRU list (get and store move an item to
 *     its head; eviction takes from its tail).
 *
 * Locking: one pthread mutex per dictionary around every call; the only
 * work under it is the lookup, a memcpy of the value and the list and LRU
 * updates. A worker cannot die holding it alone: workers are threads, and
 * a thread that crashes takes the process with it.
 *
 * Expiry: absolute times on rl__shdict_clock (CLOCK_MONOTONIC, replaceable
 * by tests). Expired items stay (get_stale sees them) until a store reuses
 * their room: every store first frees up to 2 expired items from the LRU
 * tail, and a full arena frees expired items before evicting live ones.
 */
#include <errno.h>
#include <sched.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

static double clock_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double (*rl__shdict_clock)(void) = clock_now;

/* ---- the buddy allocator ---- */

static void fl_push(struct rl_shdict *d, int order, struct fblock *b)
{
	b->prev = NULL;
	b->next = d->freel[order];
	if (b->next)
		b->next->prev = b;
	d->freel[order] = b;
	d->meta[((unsigned char *)b - d->arena) >> UNIT_SHIFT] = (uint8_t)(META_FREE | order);
}

static void fl_remove(struct rl_shdict *d, int order, struct fblock *b)
{
	if (b->prev)
		b->prev->next = b->next;
	else
		d->freel[order] = b->next;
	if (b->next)
		b->next->prev = b->prev;
}

static int order_for(size_t bytes)
{
	int o = 0;

	while ((UNIT << o) < bytes)
		o++;
	return o;
}

static void *balloc(struct rl_shdict *d, size_t bytes)
{
	int want, o;

	if (bytes > d->top_block)
		return NULL;
	want = order_for(bytes);
	for (o = want; o <= MAX_ORDER && !d->freel[o]; o++)
		;
	if (o > MAX_ORDER)
		return NULL;
	struct fblock *b = d->freel[o];
	fl_remove(d, o, b);
	while (o > want) {           /* split, keeping the lower half */
		o--;
		fl_push(d, o, (struct fblock *)((unsigned char *)b + (UNIT << o)));
	}
	d->meta[((unsigned char *)b - d->arena) >> UNIT_SHIFT] = (uint8_t)want;
	d->free_bytes -= UNIT << want;
	return b;
}

static void bfree(struct rl_shdict *d, void *p)
{
	size_t off = (size_t)((unsigned char *)p - d->arena);
	int o = d->meta[off >> UNIT_SHIFT] & 0x7f;

	d->free_bytes += UNIT << o;
	while (o < MAX_ORDER) {
		size_t bsz = UNIT << o, boff = off ^ bsz;

		/* a buddy past the end belongs to no block: top-level blocks
		 * are the arena's binary decomposition, so theirs always is */
		if (boff + bsz > d->arena_size ||
		    d->meta[boff >> UNIT_SHIFT] != (uint8_t)(META_FREE | o))
			break;
		fl_remove(d, o, (struct fblock *)(d->arena + boff));
		d->meta[boff >> UNIT_SHIFT] = 0;
		d->meta[off >> UNIT_SHIFT] = 0;
		off &= ~bsz;
		o++;
	}
	fl_push(d, o, (struct fblock *)(d->arena + off));
}

/* ---- items ---- */

static uint64_t hash_key(const char *k, size_t n)
{
	uint64_t h = 0xcbf29ce484222325ull;    /* FNV-1a, then a final mix */

	for (size_t i = 0; i < n; i++)
		h = (h ^ (unsigned char)k[i]) * 0x100000001b3ull;
	h ^= h >> 33;
	h *= 0xff51afd7ed558ccdull;
	h ^= h >> 33;
	return h;
}

static int expired(const struct item *it, double now)
{
	return it->expires != 0 && it->expires <= now;
}

static void lru_unlink(struct rl_shdict *d, struct item *it)
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

static void lru_push(struct rl_shdict *d, struct item *it)
{
	it->prev = NULL;
	it->next = d->lru_head;
	if (d->lru_head)
		d->lru_head->prev = it;
	else
		d->lru_tail = it;
	d->lru_head = it;
}

static struct item *lookup(struct rl_shdict *d, const char *key, size_t klen, uint64_t h)
{
	for (struct item *it = d->buckets[h & d->mask]; it; it = it->hnext)
		if (it->hash == h && it->klen == klen && memcmp(it->data, key, klen) == 0)
			return it;
	return NULL;
}

static void list_free(struct rl_shdict *d, struct item *it)
{
	struct lnode *n = it->lhead;

	while (n) {
		struct lnode *next = n->next;
		bfree(d, n);
		n = next;
	}
	it->lhead = it->ltail = NULL;
	it->vlen = 0;
}

static void item_delete(struct rl_shdict *d, struct item *it)
{
	struct item **pp = &d->buckets[it->hash & d->mask];

	while (*pp != it)
		pp = &(*pp)->hnext;
	*pp = it->hnext;
	lru_unlink(d, it);
	if (it->type == RL_SHDICT_LIST)
		list_free(d, it);
	bfree(d, it);
}

/* Frees up to max expired items from the LRU tail end (max items looked at). */
static void expire_some(struct rl_shdict *d, int max, double now)
{
	struct item *it = d->lru_tail;

	for (int i = 0; it && i < max; i++) {
		struct item *prev = it->prev;
		if (expired(it, now))
			item_delete(d, it);
		it = prev;
	}
}

/* A block of `bytes`, making room: expired items first, then (evict) live
 * ones from the LRU tail. `keep` (may be NULL) is never evicted. */
static void *alloc_room(struct rl_shdict *d, size_t bytes, int evict, struct item *keep,
			double now, int32_t *forcible)
{
	void *p;

	if (bytes > d->top_block)
		return NULL;
	while (!(p = balloc(d, bytes))) {
		struct item *it = d->lru_tail, *victim = NULL;

		for (int i = 0; it && i < EVICT_SCAN; i++, it = it->prev)
			if (it != keep && expired(it, now)) {
				victim = it;
				break;
			}
		if (!victim && evict) {
			for (it = d->lru_tail; it && it == keep; it = it->prev)
				;
			if (it) {
				victim = it;
				if (forcible)
					*forcible = 1;
			}
		}
		if (!victim)
			return NULL;
		item_delete(d, victim);
	}
	return p;
}

static int key_ok(const char *key, size_t klen)
{
	return key && klen > 0 && klen <= KEY_MAX;
}

/* A test-and-test-and-set spinlock, as nginx's shared zones use: the
 * sections it guards take tens of nanoseconds, and with a mutex two
 * workers writing at once spent their time in futex calls (0.78x nginx's
 * set rate with 2 workers). A waiter spins with the CPU's pause, and
 * yields the CPU after a while, so a holder preempted on a busy machine
 * gets to run. */
static int lock(struct rl_shdict *d)
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

static void unlock(struct rl_shdict *d)
{
	__atomic_store_n(&d->lock, 0, __ATOMIC_RELEASE);
}

/* ---- dictionaries ---- */

int rl__shdict_new(const char *name, size_t size, struct rl_shdict **out)
{
	size_t dsize = (sizeof(struct rl_shdict) + 63) & ~(size_t)63;
	struct rl_shdict *d = aligned_alloc(64, dsize);
	size_t units, nb;

	if (!d)
		return -ENOMEM;
	memset(d, 0, dsize);
	snprintf(d->name, sizeof(d->name), "%s", name);
	d->size = size;
	d->arena_size = size & ~(UNIT - 1);
	units = d->arena_size >> UNIT_SHIFT;
	for (nb = 16; nb < d->arena_size / 256; nb <<= 1)
		;
	d->arena = aligned_alloc(UNIT, d->arena_size);
	d->meta = calloc(units, 1);
	d->buckets = calloc(nb, sizeof(*d->buckets));
	if (!d->arena || !d->meta || !d->buckets) {
		rl__shdict_free(d);
		return -ENOMEM;
	}
	d->mask = nb - 1;
	/* the arena's binary decomposition, largest block first */
	size_t off = 0;
	for (int o = MAX_ORDER; o >= 0; o--) {
		size_t bsz = UNIT << o;
		if (d->arena_size - off >= bsz) {
			if (!d->top_block)
				d->top_block = bsz;
			fl_push(d, o, (struct fblock *)(d->arena + off));
			off += bsz;
		}
	}
	d->free_bytes = d->arena_size;
	*out = d;
	return 0;
}

void rl__shdict_free(struct rl_shdict *d)
{
	if (!d)
		return;
	if (d->buckets && d->meta && d->arena)
	free(d->arena);
	free(d->meta);
	free(d->buckets);
	free(d);
}

static struct rl_shdict *dicts[MAX_DICTS];
static int ndicts;
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;

static int name_ok(const char *name)
{
	size_t n = name ? strlen(name) : 0;

	if (n == 0 || n > 63)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = name[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '_'))
			return 0;
	}
	return 1;
}

int rl_shdict_open(const char *name, size_t size, struct rl_shdict **out)
{
	int rc = 0;

	if (!name_ok(name) || size < MIN_SIZE || size > MAX_SIZE || !out)
		return -EINVAL;
	pthread_mutex_lock(&reg_lock);
	for (int i = 0; i < ndicts; i++)
		if (strcmp(dicts[i]->name, name) == 0) {
			if (dicts[i]->size != size)
				rc = -EEXIST;
			else
				*out = dicts[i];
			pthread_mutex_unlock(&reg_lock);
			return rc;
		}
	if (ndicts == MAX_DICTS) {
		rc = -ENOSPC;
	} else {
		rc = rl__shdict_new(name, size, out);
		if (rc == 0)
			dicts[ndicts++] = *out;
	}
	pthread_mutex_unlock(&reg_lock);
	return rc;
}

struct rl_shdict *rl_shdict_find(const char *name)
{
	struct rl_shdict *d = NULL;

	pthread_mutex_lock(&reg_lock);
	for (int i = 0; i < ndicts && name; i++)
		if (strcmp(dicts[i]->name, name) == 0)
			d = dicts[i];
	pthread_mutex_unlock(&reg_lock);
	return d;
}

int rl_shdict_count(void)
{
	pthread_mutex_lock(&reg_lock);
	int n = ndicts;
	pthread_mutex_unlock(&reg_lock);
	return n;
}

struct rl_shdict *rl_shdict_at(int i)
{
	struct rl_shdict *d = NULL;

	pthread_mutex_lock(&reg_lock);
	if (i >= 0 && i < ndicts)
		d = dicts[i];
	pthread_mutex_unlock(&reg_lock);
	return d;
}

const char *rl_shdict_name(const struct rl_shdict *d)
{
	return d->name;
}

int rl_shdict_parse_size(const char *text, size_t *out)
{
	uint64_t v = 0, mul = 1;
	const char *p = text;

	if (!p || *p < '0' || *p > '9')
		return -EINVAL;
	for (; *p >= '0' && *p <= '9'; p++) {
		if (v > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(*p - '0');
	}
	switch (*p) {
	case 'k': case 'K': mul = 1ull << 10; p++; break;
	case 'm': case 'M': mul = 1ull << 20; p++; break;
	case 'g': case 'G': mul = 1ull << 30; p++; break;
	default: break;
	}
	if (*p)
		return -EINVAL;
	if (v > MAX_SIZE / mul)
		return -ERANGE;
	*out = (size_t)(v * mul);
	return 0;
}

size_t rl_shdict_capacity(const struct rl_shdict *d)
{
	return d->size;
}

size_t rl_shdict_free_space(struct rl_shdict *d)
{
	lock(d);
	size_t n = d->free_bytes;
	unlock(d);
	return n;
}

/* ---- operations ---- */

int rl_shdict_get(struct rl_shdict *d, const char *key, size_t klen, int stale_ok,
			 struct rl_shdict_value *v, char *buf, size_t buflen)
{
	uint64_t h;
	struct item *it;
	double now;
	int rc = 0;

	v->type = RL_SHDICT_NIL;
	v->stale = 0;
	v->flags = 0;
	v->len = 0;
	if (!key_ok(key, klen))
		return -EINVAL;
	h = hash_key(key, klen);
	now = rl__shdict_clock();
	lock(d);
	it = lookup(d, key, klen, h);
	if (it) {
		int old = expired(it, now);
		if (!old || stale_ok) {
			v->type = it->type;
			v->flags = it->flags;
			v->num = it->num;
			v->stale = old;
			rc = 1;
			if (it->type == RL_SHDICT_STRING) {
				v->len = it->vlen;
				if (buflen < it->vlen)
					rc = -ENOBUFS;
				else
					memcpy(buf, it->data + it->klen, it->vlen);
			}
			if (rc == 1 && !old) {
				lru_unlink(d, it);
				lru_push(d, it);
			}
		}
	}
	unlock(d);
	return rc;
}

int rl_shdict_store(struct rl_shdict *d, int op, const char *key, size_t klen,
			   struct rl_shdict_value *v, const char *str, double exptime)
{
	uint64_t h;
	struct item *it;
	double now;
	size_t vlen = 0;
	int rc = 0;

	v->forcible = 0;
	if (!key_ok(key, klen) || op < RL_SHDICT_SET || op > RL_SHDICT_REPLACE || exptime < 0)
		return -EINVAL;
	switch (v->type) {
	case RL_SHDICT_NIL: case RL_SHDICT_BOOLEAN: case RL_SHDICT_NUMBER: break;
	case RL_SHDICT_STRING:
		vlen = v->len;
		if (vlen > UINT32_MAX || (vlen && !str))
			return -EINVAL;
		break;
	default: return -EINVAL;
	}
	h = hash_key(key, klen);
	now = rl__shdict_clock();   /* outside the lock: it is held for less */
	lock(d);
	it = lookup(d, key, klen, h);
	if (it && expired(it, now) && op != RL_SHDICT_SET && op != RL_SHDICT_SAFE_SET) {
		item_delete(d, it);     /* an expired item is absent to add and replace */
		it = NULL;
	}
	if ((op == RL_SHDICT_ADD || op == RL_SHDICT_SAFE_ADD) && it) {
		rc = -EEXIST;
		goto out;
	}
	if (op == RL_SHDICT_REPLACE && !it) {
		rc = -ENOENT;
		goto out;
	}
	if (v->type == RL_SHDICT_NIL) {      /* delete */
		if (it)
			item_delete(d, it);
		goto out;
	}
	/* the same size of block: overwrite in place */
	size_t need = sizeof(struct item) + klen + vlen;
	if (it && it->type != RL_SHDICT_LIST &&
	    order_for(need) == (d->meta[((unsigned char *)it - d->arena) >> UNIT_SHIFT] & 0x7f)) {
		lru_unlink(d, it);
	} else {
		if (it)
			item_delete(d, it);
		expire_some(d, 2, now);
		int evict = op == RL_SHDICT_SET || op == RL_SHDICT_ADD || op == RL_SHDICT_REPLACE;
		it = alloc_room(d, need, evict, NULL, now, &v->forcible);
		if (!it) {
			rc = -ENOMEM;
			goto out;
		}
		memset(it, 0, sizeof(*it));
		it->hash = h;
		it->klen = (uint32_t)klen;
		memcpy(it->data, key, klen);
		it->hnext = d->buckets[h & d->mask];
		d->buckets[h & d->mask] = it;
	}
	it->type = (uint8_t)v->type;
	it->num = v->type == RL_SHDICT_BOOLEAN ? (v->num != 0) : v->num;
	it->flags = v->flags;
	it->vlen = (uint32_t)vlen;
	if (vlen)
		memcpy(it->data + klen, str, vlen);
	it->expires = exptime > 0 ? now + exptime : 0;
	lru_push(d, it);
out:
	unlock(d);
	return rc;
}

int rl_shdict_incr(struct rl_shdict *d, const char *key, size_t klen, double by,
			  int has_init, double init, double init_ttl, struct rl_shdict_value *v)
{
	uint64_t h;
	struct item *it;
	double now;
	int rc = 0;

	v->forcible = 0;
	if (!key_ok(key, klen) || init_ttl < 0)
		return -EINVAL;
	h = hash_key(key, klen);
	now = rl__shdict_clock();   /* outside the lock: it is held for less */
	lock(d);
	it = lookup(d, key, klen, h);
	if (it && expired(it, now)) {
		item_delete(d, it);
		it = NULL;
	}
	if (it) {
		if (it->type != RL_SHDICT_NUMBER) {
			rc = -EINVAL;
			goto out;
		}
		it->num += by;
		v->num = it->num;
		lru_unlink(d, it);
		lru_push(d, it);
		goto out;
	}
	if (!has_init) {
		rc = -ENOENT;
		goto out;
	}
	expire_some(d, 2, now);
	it = alloc_room(d, sizeof(struct item) + klen, 1, NULL, now, &v->forcible);
	if (!it) {
		rc = -ENOMEM;
		goto out;
	}
	memset(it, 0, sizeof(*it));
	it->hash = h;
	it->klen = (uint32_t)klen;
	memcpy(it->data, key, klen);
	it->hnext = d->buckets[h & d->mask];
	d->buckets[h & d->mask] = it;
	it->type = RL_SHDICT_NUMBER;
	it->num = init + by;
	it->expires = init_ttl > 0 ? now + init_ttl : 0;
	v->num = it->num;
	lru_push(d, it);
out:
	unlock(d);
	return rc;
}

int rl_shdict_push(struct rl_shdict *d, const char *key, size_t klen, int left,
			  struct rl_shdict_value *v, const char *str)
{
	uint64_t h;
	struct item *it;
	struct lnode *n;
	double now;
	size_t vlen = 0;
	int rc;

	v->forcible = 0;
	if (!key_ok(key, klen))
		return -EINVAL;
	if (v->type == RL_SHDICT_STRING) {
		vlen = v->len;
		if (vlen > UINT32_MAX || (vlen && !str))
			return -EINVAL;
	} else if (v->type != RL_SHDICT_NUMBER) {
		return -EINVAL;
	}
	h = hash_key(key, klen);
	now = rl__shdict_clock();   /* outside the lock: it is held for less */
	lock(d);
	it = lookup(d, key, klen, h);
	if (it && expired(it, now)) {
		item_delete(d, it);
		it = NULL;
	}
	if (it && it->type != RL_SHDICT_LIST) {
		rc = -EINVAL;
		goto out;
	}
	if (!it) {
		expire_some(d, 2, now);
		it = alloc_room(d, sizeof(struct item) + klen, 1, NULL, now, &v->forcible);
		if (!it) {
			rc = -ENOMEM;
			goto out;
		}
		memset(it, 0, sizeof(*it));
		it->hash = h;
		it->klen = (uint32_t)klen;
		memcpy(it->data, key, klen);
		it->hnext = d->buckets[h & d->mask];
		d->buckets[h & d->mask] = it;
		it->type = RL_SHDICT_LIST;
	} else {
		lru_unlink(d, it);  /* out of the LRU: making room cannot evict it */
	}
	n = alloc_room(d, sizeof(struct lnode) + vlen, 1, it, now, &v->forcible);
	if (!n) {
		if (it->vlen == 0) {   /* a list just made, still empty */
			lru_push(d, it);
			item_delete(d, it);
		} else {
			lru_push(d, it);
		}
		rc = -ENOMEM;
		goto out;
	}
	n->type = (uint8_t)v->type;
	n->num = v->num;
	n->len = (uint32_t)vlen;
	if (vlen)
		memcpy(n->data, str, vlen);
	if (left) {
		n->prev = NULL;
		n->next = it->lhead;
		if (it->lhead)
			it->lhead->prev = n;
		else
			it->ltail = n;
		it->lhead = n;
	} else {
		n->next = NULL;
		n->prev = it->ltail;
		if (it->ltail)
			it->ltail->next = n;
		else
			it->lhead = n;
		it->ltail = n;
	}
	it->vlen++;
	rc = it->vlen > INT32_MAX ? INT32_MAX : (int)it->vlen;
	lru_push(d, it);
out:
	unlock(d);
	return rc;
}

int rl_shdict_pop(struct rl_shdict *d, const char *key, size_t klen, int left,
			 struct rl_shdict_value *v, char *buf, size_t buflen)
{
	uint64_t h;
	struct item *it;
	struct lnode *n;
	int rc = 0;

	v->type = RL_SHDICT_NIL;
	v->len = 0;
	if (!key_ok(key, klen))
		return -EINVAL;
	h = hash_key(key, klen);
	double now = rl__shdict_clock();
	lock(d);
	it = lookup(d, key, klen, h);
	if (!it || expired(it, now))
		goto out;
	if (it->type != RL_SHDICT_LIST) {
		rc = -EINVAL;
		goto out;
	}
	n = left ? it->lhead : it->ltail;
	v->type = n->type;
	v->num = n->num;
	v->len = n->len;
	if (buflen < n->len) {
		rc = -ENOBUFS;
		goto out;
	}
	memcpy(buf, n->data, n->len);
	if (n->prev)
		n->prev->next = n->next;
	else
		it->lhead = n->next;
	if (n->next)
		n->next->prev = n->prev;
	else
		it->ltail = n->prev;
	bfree(d, n);
	if (--it->vlen == 0)
		item_delete(d, it);
	rc = 1;
out:
	unlock(d);
	return rc;
}

int rl_shdict_llen(struct rl_shdict *d, const char *key, size_t klen)
{
	struct item *it;
	int rc = 0;

	if (!key_ok(key, klen))
		return -EINVAL;
	uint64_t h = hash_key(key, klen);
	double now = rl__shdict_clock();
	lock(d);
	it = lookup(d, key, klen, h);
	if (it && !expired(it, now)) {
		if (it->type != RL_SHDICT_LIST)
			rc = -EINVAL;
		else
			rc = it->vlen > INT32_MAX ? INT32_MAX : (int)it->vlen;
	}
	unlock(d);
	return rc;
}

int rl_shdict_ttl(struct rl_shdict *d, const char *key, size_t klen, double *ttl)
{
	struct item *it;
	int rc = 0;

	if (!key_ok(key, klen))
		return -EINVAL;
	uint64_t h = hash_key(key, klen);
	double now = rl__shdict_clock();
	lock(d);
	it = lookup(d, key, klen, h);
	if (it && !expired(it, now)) {
		*ttl = it->expires == 0 ? 0 : it->expires - now;
		rc = 1;
	}
	unlock(d);
	return rc;
}

int rl_shdict_expire(struct rl_shdict *d, const char *key, size_t klen, double exptime)
{
	struct item *it;
	int rc = 0;

	if (!key_ok(key, klen) || exptime < 0)
		return -EINVAL;
	uint64_t h = hash_key(key, klen);
	double now = rl__shdict_clock();
	lock(d);
	it = lookup(d, key, klen, h);
	if (it && !expired(it, now)) {
		it->expires = exptime > 0 ? now + exptime : 0;
		rc = 1;
	}
	unlock(d);
	return rc;
}

void rl_shdict_flush_all(struct rl_shdict *d)
{
	lock(d);
	/* a time in the past that is never 0 ("never expires") */
	double past = rl__shdict_clock() - 1;
	if (past == 0)
		past = -1;
	for (struct item *it = d->lru_head; it; it = it->next)
		it->expires = past;
	unlock(d);
}

int rl_shdict_flush_expired(struct rl_shdict *d, int max)
{
	int n = 0;

	lock(d);
	double now = rl__shdict_clock();
	struct item *it = d->lru_tail;
	while (it && (max <= 0 || n < max)) {
		struct item *prev = it->prev;
		if (expired(it, now)) {
			item_delete(d, it);
			n++;
		}
		it = prev;
	}
	unlock(d);
	return n;
}

int64_t rl_shdict_keys(struct rl_shdict *d, int max, char *buf, size_t buflen,
			      int *nkeys)
{
	int64_t need = 0;
	int n = 0;

	*nkeys = 0;
	lock(d);
	double now = rl__shdict_clock();
	for (struct item *it = d->lru_head; it && (max <= 0 || n < max); it = it->next) {
		if (expired(it, now))
			continue;
		need += 4 + (int64_t)it->klen;
		n++;
	}
	if ((uint64_t)need <= buflen) {
		char *p = buf;
		int k = 0;
		for (struct item *it = d->lru_head; it && k < n; it = it->next) {
			if (expired(it, now))
				continue;
			uint32_t kl = it->klen;
			memcpy(p, &kl, 4);
			memcpy(p + 4, it->data, kl);
			p += 4 + kl;
			k++;
		}
		*nkeys = n;
	}
	unlock(d);
	return need;
}
