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
 *     buddy allocator (shdict_arena.c).
 *   - an item per key: header, key, string value in one block; a list's
 *     elements are blocks of their own, linked from the item
 *     (shdict_list.c).
 *   - a hash table (one pointer per 256 arena bytes, a power of two),
 *     chained, and a doubly linked LRU list (get and store move an item to
 *     its head; eviction takes from its tail).
 *
 * Locking: one spinlock per dictionary (shdict.h, lock()) around every
 * call; the only work under it is the lookup, a memcpy of the value and
 * the list and LRU updates. A worker cannot die holding it alone: workers are threads, and
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

#include "shdict.h"

static double clock_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double (*rl__shdict_clock)(void) = clock_now;

/* ---- items ---- */






static void list_free(struct rl_shdict *d, struct item *it)
{
	struct lnode *n = it->lhead;

	while (n) {
		struct lnode *next = n->next;
		rl__shd_bfree(d, n);
		n = next;
	}
	it->lhead = it->ltail = NULL;
	it->vlen = 0;
}

void rl__shd_item_delete(struct rl_shdict *d, struct item *it)
{
	struct item **pp = &d->buckets[it->hash & d->mask];

	while (*pp != it)
		pp = &(*pp)->hnext;
	*pp = it->hnext;
	lru_unlink(d, it);
	if (it->type == RL_SHDICT_LIST)
		list_free(d, it);
	rl__shd_bfree(d, it);
}

/* Frees up to max expired items from the LRU tail end (max items looked at). */
void rl__shd_expire_some(struct rl_shdict *d, int max, double now)
{
	struct item *it = d->lru_tail;

	for (int i = 0; it && i < max; i++) {
		struct item *prev = it->prev;
		if (expired(it, now))
			rl__shd_item_delete(d, it);
		it = prev;
	}
}

/* A block of `bytes`, making room: expired items first, then (evict) live
 * ones from the LRU tail. `keep` (may be NULL) is never evicted. */
void *rl__shd_alloc_room(struct rl_shdict *d, size_t bytes, int evict, struct item *keep,
			double now, int32_t *forcible)
{
	void *p;

	if (bytes > d->top_block)
		return NULL;
	while (!(p = rl__shd_balloc(d, bytes))) {
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
		rl__shd_item_delete(d, victim);
	}
	return p;
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
	rl__shd_arena_init(d);
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
		rl__shd_item_delete(d, it);     /* an expired item is absent to add and replace */
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
			rl__shd_item_delete(d, it);
		goto out;
	}
	/* the same size of block: overwrite in place */
	size_t need = sizeof(struct item) + klen + vlen;
	if (it && it->type != RL_SHDICT_LIST &&
	    rl__shd_fits_block(d, it, need)) {
		lru_unlink(d, it);
	} else {
		if (it)
			rl__shd_item_delete(d, it);
		rl__shd_expire_some(d, 2, now);
		int evict = op == RL_SHDICT_SET || op == RL_SHDICT_ADD || op == RL_SHDICT_REPLACE;
		it = rl__shd_alloc_room(d, need, evict, NULL, now, &v->forcible);
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
		rl__shd_item_delete(d, it);
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
	rl__shd_expire_some(d, 2, now);
	it = rl__shd_alloc_room(d, sizeof(struct item) + klen, 1, NULL, now, &v->forcible);
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
			rl__shd_item_delete(d, it);
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
