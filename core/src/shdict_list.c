/* SPDX-License-Identifier: MIT */
/*
 * shdict_list.c - a shared dictionary's lists (lpush, rpush, lpop, rpop,
 * llen): a LIST item links its elements, each a block of the arena of its
 * own. The item lives in the hash and the LRU like any other (shdict.c).
 */
#include <errno.h>

#include "shdict.h"

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
		rl__shd_item_delete(d, it);
		it = NULL;
	}
	if (it && it->type != RL_SHDICT_LIST) {
		rc = -EINVAL;
		goto out;
	}
	if (!it) {
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
		it->type = RL_SHDICT_LIST;
	} else {
		lru_unlink(d, it);  /* out of the LRU: making room cannot evict it */
	}
	n = rl__shd_alloc_room(d, sizeof(struct lnode) + vlen, 1, it, now, &v->forcible);
	if (!n) {
		if (it->vlen == 0) {   /* a list just made, still empty */
			lru_push(d, it);
			rl__shd_item_delete(d, it);
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
	rl__shd_bfree(d, n);
	if (--it->vlen == 0)
		rl__shd_item_delete(d, it);
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
