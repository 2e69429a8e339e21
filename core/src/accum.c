/* SPDX-License-Identifier: MIT */
/*
 * accum.c - a connection's receive accumulator: received bytes not yet
 * consumed, contiguous so a parser sees one pointer and one length.
 *
 * Consuming advances an offset (O(1)); appending compacts or grows only when
 * the tail has no room, moving just the unconsumed bytes, so a pipelined
 * stream is never re-copied per message.
 *
 * Sizes are computed in 64 bits: the capacity doubles up to RL_ACCUM_MAX_CAP
 * (2 GiB, which a uint32_t still holds) and a doubling of that is never
 * stored, so growth cannot wrap and spin. The owner passes a hint, the most
 * it expects to hold (a connection: its window plus one provided buffer):
 * an accumulator that has consumed nothing grows to the hint and no
 * further, one that has grows to twice the hint at most, which keeps
 * compaction amortized O(1) per byte.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define RL_ACCUM_MIN 4096u

static uint64_t round_page(uint64_t n)
{
	return (n + RL_ACCUM_MIN - 1) & ~(uint64_t)(RL_ACCUM_MIN - 1);
}

uint64_t rl__accum_grow_cap(uint64_t cap, uint64_t need, uint64_t limit)
{
	if (need > RL_ACCUM_MAX_LEN)
		return 0;
	uint64_t c = cap ? cap * 2 : RL_ACCUM_MIN;
	while (c < need) /* 64-bit: need <= 2^31 - 1, so this ends */
		c *= 2;
	if (limit) {
		uint64_t l = round_page(limit);
		if (l < need)
			l = need;
		if (c > l)
			c = l;
	}
	if (c > RL_ACCUM_MAX_CAP)
		c = RL_ACCUM_MAX_CAP;
	return c;
}

int rl__accum_append(struct rl_accum *a, const uint8_t *p, uint32_t n, uint64_t hint,
		     uint64_t *gauge)
{
	uint64_t need = (uint64_t)a->len + n;
	if (need > RL_ACCUM_MAX_LEN)
		return -ENOBUFS; /* even when it would fit behind the data */
	if ((uint64_t)a->off + need > a->cap) {
		uint64_t cap = a->cap;
		/* Compact when that leaves at least half the buffer free, else
		 * grow: either way the work is amortized O(1) per byte. */
		if (need > cap / 2) {
			cap = rl__accum_grow_cap(a->cap, need, a->off ? 2 * hint : hint);
			if (!cap)
				return -ENOBUFS;
		}
		if (cap <= a->cap) {
			/* need <= cap here: compacting makes room */
			memmove(a->buf, a->buf + a->off, a->len);
		} else {
			uint8_t *nb = malloc((size_t)cap);
			if (!nb)
				return -ENOMEM;
			if (a->len)
				memcpy(nb, a->buf + a->off, a->len);
			free(a->buf);
			*gauge += cap - a->cap;
			a->buf = nb;
			a->cap = (uint32_t)cap;
		}
		a->off = 0;
	}
	memcpy(a->buf + a->off + a->len, p, n);
	a->len += n;
	return 0;
}

void rl__accum_consume(struct rl_accum *a, uint32_t n, uint64_t *gauge)
{
	if (n >= a->len) {
		a->off = 0;
		a->len = 0;
		if (a->cap > RL_ACCUM_KEEP)
			rl__accum_free(a, gauge);
		return;
	}
	a->off += n;
	a->len -= n;
}

void rl__accum_free(struct rl_accum *a, uint64_t *gauge)
{
	*gauge -= a->cap;
	free(a->buf);
	memset(a, 0, sizeof(*a));
}

void rl__accum_prime(struct rl_accum *a, struct rl_accum_spares *s, uint64_t *gauge)
{
	if (a->buf || !s->n)
		return;
	s->n--;
	a->buf = s->buf[s->n];
	a->cap = s->cap[s->n];
	a->off = 0;
	a->len = 0;
	*gauge += a->cap;
}

void rl__accum_shed(struct rl_accum *a, struct rl_accum_spares *s, uint64_t *gauge)
{
	if (a->len || !a->buf)
		return;
	if (a->cap <= RL_ACCUM_KEEP && s->n < RL_ACCUM_SPARES) {
		s->buf[s->n] = a->buf;
		s->cap[s->n] = a->cap;
		s->n++;
		*gauge -= a->cap;
		memset(a, 0, sizeof(*a));
		return;
	}
	rl__accum_free(a, gauge);
}

void rl__accum_spares_fini(struct rl_accum_spares *s)
{
	while (s->n)
		free(s->buf[--s->n]);
}
