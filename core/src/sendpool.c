/* SPDX-License-Identifier: MIT */
/*
 * sendpool.c - chunks that hold queued send bytes until the kernel took them.
 *
 * A fixed pool of equal slots serves the common case without malloc; when it
 * is empty a heap chunk is used instead, so a send never fails for want of a
 * slot (the upper layer bounds memory with the send watermarks).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

/* Heap chunks are sized to the send (so one big send is one chunk), but no
 * larger than this, so a huge send is chunked through the queue. */
#define RL_HEAP_CHUNK_MAX (4u << 20)

int rl__sendpool_init(struct rl_sendpool *p, uint32_t count, uint32_t slot_size)
{
	memset(p, 0, sizeof(*p));
	p->slots = calloc(count, sizeof(*p->slots));
	p->free_stack = calloc(count, sizeof(*p->free_stack));
	p->mem = malloc((size_t)count * slot_size);
	if (!p->slots || !p->free_stack || !p->mem) {
		rl__sendpool_fini(p);
		return -ENOMEM;
	}
	p->count = count;
	p->slot_size = slot_size;
	for (uint32_t i = 0; i < count; i++) {
		p->slots[i].data = p->mem + (size_t)i * slot_size;
		p->slots[i].cap = slot_size;
		p->slots[i].pool_slot = (int32_t)i;
		/* LIFO: the most recently used (cache-warm) slot is reused first */
		p->free_stack[i] = count - 1 - i;
	}
	p->nfree = count;
	return 0;
}

void rl__sendpool_fini(struct rl_sendpool *p)
{
	free(p->slots);
	free(p->free_stack);
	free(p->mem);
	memset(p, 0, sizeof(*p));
}

struct rl_chunk *rl__chunk_get(struct rl_sendpool *p, size_t want)
{
	struct rl_chunk *c;
	if (p->nfree && want <= (size_t)p->slot_size * 4) {
		c = &p->slots[p->free_stack[--p->nfree]];
	} else {
		size_t cap = want < p->slot_size ? p->slot_size : want;
		if (cap > RL_HEAP_CHUNK_MAX)
			cap = RL_HEAP_CHUNK_MAX;
		c = malloc(sizeof(*c) + cap);
		if (!c)
			return NULL;
		c->data = (uint8_t *)(c + 1);
		c->cap = (uint32_t)cap;
		c->pool_slot = -1;
		p->heap_chunks++;
		p->heap_bytes += cap;
	}
	c->next = NULL;
	c->zc = NULL;
	c->sf = NULL;
	c->len = 0;
	c->off = 0;
	return c;
}

void rl__chunk_put(struct rl_sendpool *p, struct rl_chunk *c)
{
	if (c->pool_slot < 0) {
		p->heap_chunks--;
		p->heap_bytes -= c->cap;
		free(c);
		return;
	}
	p->free_stack[p->nfree++] = (uint32_t)c->pool_slot;
}

uint32_t rl__sendpool_used(const struct rl_sendpool *p)
{
	return p->count - p->nfree;
}

void rl__sendpool_trim(struct rl_sendpool *p)
{
	/* The free slots' whole pages go back to the system (a burst of
	 * sends touched them; the next use faults in zero pages). Only free
	 * slots: no send reads them, so nothing the kernel uses is dropped. */
	uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
	for (uint32_t i = 0; i < p->nfree; i++) {
		struct rl_chunk *c = &p->slots[p->free_stack[i]];
		uintptr_t a = ((uintptr_t)c->data + page - 1) & ~(page - 1);
		uintptr_t b = ((uintptr_t)c->data + c->cap) & ~(page - 1);
		if (b > a)
			madvise((void *)a, b - a, MADV_DONTNEED);
	}
}
