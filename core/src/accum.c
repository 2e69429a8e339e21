/* SPDX-License-Identifier: MIT */
/*
 * accum.c - a connection's receive accumulator: received bytes not yet
 * consumed, contiguous so a parser sees one pointer and one length.
 *
 * Consuming advances an offset (O(1)); appending compacts or grows only when
 * the tail has no room, moving just the unconsumed bytes, so a pipelined
 * stream is never re-copied per message.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define RL_ACCUM_MIN 4096u

int rl__accum_append(struct rl_accum *a, const uint8_t *p, uint32_t n, uint64_t *gauge)
{
	if (a->off + a->len + n > a->cap) {
		uint64_t need = (uint64_t)a->len + n;
		if (need > UINT32_MAX / 2)
			return -ENOBUFS;
		/* Compact only when that leaves at least half the buffer free, else
		 * grow: either way the work is amortized O(1) per byte. */
		if (need <= a->cap / 2) {
			memmove(a->buf, a->buf + a->off, a->len);
		} else {
			uint32_t cap = a->cap ? a->cap * 2 : RL_ACCUM_MIN;
			while (cap < need)
				cap *= 2;
			uint8_t *nb = malloc(cap);
			if (!nb)
				return -ENOMEM;
			if (a->len)
				memcpy(nb, a->buf + a->off, a->len);
			free(a->buf);
			*gauge += cap - a->cap;
			a->buf = nb;
			a->cap = cap;
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
