/* SPDX-License-Identifier: MIT */
/*
 * shdict_arena.c - a shared dictionary's arena: a buddy allocator over the
 * bytes allocated when the dictionary was opened (blocks of 64 << order
 * bytes; a freed block merges with its free buddy, so evicting enough
 * items always makes room for anything that fits the arena's largest
 * block). One meta byte per 64-byte unit says whether a block starting
 * there is free, and its order. Called under the dictionary's lock.
 */
#include "shdict.h"

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

void *rl__shd_balloc(struct rl_shdict *d, size_t bytes)
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

void rl__shd_bfree(struct rl_shdict *d, void *p)
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

/* The arena's binary decomposition (10 MiB = 8 MiB + 2 MiB), each part a
 * free top-level block, largest first. */
void rl__shd_arena_init(struct rl_shdict *d)
{
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
}

/* Would a block for `bytes` be of the order of p's block (so p can be
 * overwritten in place)? */
int rl__shd_fits_block(const struct rl_shdict *d, const void *p, size_t bytes)
{
	size_t off = (size_t)((const unsigned char *)p - d->arena);
	return order_for(bytes) == (d->meta[off >> UNIT_SHIFT] & 0x7f);
}
