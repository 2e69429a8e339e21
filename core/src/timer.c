/* SPDX-License-Identifier: MIT */
/*
 * timer.c - timers: a binary min-heap of record indexes ordered by deadline.
 * Add, cancel and pop are O(log n); 100k armed timers cost ~32 bytes each.
 * The worker waits no longer than the earliest deadline, so no kernel
 * timeout SQE is needed per timer.
 *
 * A timer id is (generation << 20 | record index); a cancelled or fired
 * record bumps its generation, so a stale id never cancels a newer timer.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int rl__timers_init(struct rl_timers *t, uint32_t max)
{
	memset(t, 0, sizeof(*t));
	t->max = max;
	t->free_head = UINT32_MAX;
	return 0;
}

void rl__timers_fini(struct rl_timers *t)
{
	free(t->recs);
	free(t->heap);
	memset(t, 0, sizeof(*t));
}

static int before(const struct rl_timers *t, uint32_t a, uint32_t b)
{
	return t->recs[a].deadline < t->recs[b].deadline;
}

static void place(struct rl_timers *t, uint32_t pos, uint32_t rec)
{
	t->heap[pos] = rec;
	t->recs[rec].heap_pos = (int32_t)pos;
}

static void sift_up(struct rl_timers *t, uint32_t pos)
{
	uint32_t rec = t->heap[pos];
	while (pos > 0) {
		uint32_t parent = (pos - 1) / 2;
		if (!before(t, rec, t->heap[parent]))
			break;
		place(t, pos, t->heap[parent]);
		pos = parent;
	}
	place(t, pos, rec);
}

static void sift_down(struct rl_timers *t, uint32_t pos)
{
	uint32_t rec = t->heap[pos];
	for (;;) {
		uint32_t l = 2 * pos + 1, r = l + 1, m = pos;
		uint32_t best = rec;
		if (l < t->nheap && before(t, t->heap[l], best)) {
			m = l;
			best = t->heap[l];
		}
		if (r < t->nheap && before(t, t->heap[r], best))
			m = r;
		if (m == pos)
			break;
		place(t, pos, t->heap[m]);
		pos = m;
	}
	place(t, pos, rec);
}

static int grow(struct rl_timers *t)
{
	uint32_t ncap = t->cap ? t->cap * 2 : 64;
	if (ncap > t->max)
		ncap = t->max;
	if (ncap <= t->cap)
		return -ENOSPC;
	struct rl_timer_rec *recs = realloc(t->recs, ncap * sizeof(*recs));
	if (!recs)
		return -ENOMEM;
	t->recs = recs;
	uint32_t *heap = realloc(t->heap, ncap * sizeof(*heap));
	if (!heap)
		return -ENOMEM;
	t->heap = heap;
	for (uint32_t i = ncap; i-- > t->cap;) {
		recs[i].gen = 0;
		recs[i].heap_pos = -1;
		recs[i].next_free = t->free_head;
		t->free_head = i;
	}
	t->cap = ncap;
	return 0;
}

int rl__timers_add(struct rl_timers *t, double deadline, uint32_t token)
{
	if (t->free_head == UINT32_MAX) {
		int rc = grow(t);
		if (rc)
			return rc;
	}
	uint32_t i = t->free_head;
	struct rl_timer_rec *r = &t->recs[i];
	t->free_head = r->next_free;
	r->deadline = deadline;
	r->token = token;
	place(t, t->nheap++, i);
	sift_up(t, t->nheap - 1);
	return (int)(((r->gen & 0x7ff) << RL_TIMER_IDX_BITS) | i);
}

static void release(struct rl_timers *t, uint32_t i)
{
	struct rl_timer_rec *r = &t->recs[i];
	uint32_t pos = (uint32_t)r->heap_pos;
	uint32_t last = t->heap[--t->nheap];
	if (pos < t->nheap) {
		place(t, pos, last);
		sift_up(t, pos);
		sift_down(t, (uint32_t)t->recs[last].heap_pos);
	}
	r->heap_pos = -1;
	r->gen++;
	r->next_free = t->free_head;
	t->free_head = i;
}

int rl__timers_cancel(struct rl_timers *t, int id)
{
	if (id < 0)
		return -ENOENT;
	uint32_t i = (uint32_t)id & RL_TIMER_IDX_MASK;
	uint32_t gen = (uint32_t)id >> RL_TIMER_IDX_BITS;
	if (i >= t->cap || t->recs[i].heap_pos < 0 || (t->recs[i].gen & 0x7ff) != gen)
		return -ENOENT;
	release(t, i);
	return 0;
}

double rl__timers_next(const struct rl_timers *t)
{
	return t->nheap ? t->recs[t->heap[0]].deadline : -1.0;
}

int rl__timers_pop_due(struct rl_timers *t, double now, uint32_t *token)
{
	if (!t->nheap)
		return -1;
	uint32_t i = t->heap[0];
	struct rl_timer_rec *r = &t->recs[i];
	if (r->deadline > now)
		return -1;
	int id = (int)(((r->gen & 0x7ff) << RL_TIMER_IDX_BITS) | i);
	*token = r->token;
	release(t, i);
	return id;
}
