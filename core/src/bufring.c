/* SPDX-License-Identifier: MIT */
/*
 * bufring.c - the provided buffer ring that connection receives select from.
 *
 * The kernel picks a buffer per completion; the core copies the bytes out at
 * once and hands the buffer back. Recycling writes only addr/len/bid of an
 * entry (the tail shares memory with the first entry's reserved field) and
 * publishes the tail once per batch of completions.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "internal.h"

int rl__bufring_init(struct rl_bufring *b, struct io_uring *ring, uint32_t count, uint32_t size,
		     uint16_t bgid)
{
	memset(b, 0, sizeof(*b));
	size_t page = (size_t)sysconf(_SC_PAGESIZE);
	b->ring_bytes = ((size_t)count * sizeof(struct io_uring_buf) + page - 1) & ~(page - 1);
	void *mem = mmap(NULL, b->ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE,
			 -1, 0);
	if (mem == MAP_FAILED)
		return -errno;
	b->br = mem;
	b->base = aligned_alloc(page, (((size_t)count * size) + page - 1) & ~(page - 1));
	if (!b->base) {
		munmap(mem, b->ring_bytes);
		b->br = NULL;
		return -ENOMEM;
	}
	b->count = count;
	b->size = size;
	b->mask = io_uring_buf_ring_mask(count);
	b->bgid = bgid;
	io_uring_buf_ring_init(b->br);

	struct io_uring_buf_reg reg = {
		.ring_addr = (uint64_t)(uintptr_t)b->br,
		.ring_entries = count,
		.bgid = bgid,
	};
	int rc = io_uring_register_buf_ring(ring, &reg, 0);
	if (rc < 0) {
		free(b->base);
		munmap(mem, b->ring_bytes);
		memset(b, 0, sizeof(*b));
		return rc;
	}
	b->registered = 1;
	for (uint32_t i = 0; i < count; i++)
		rl__bufring_recycle(b, (uint16_t)i);
	rl__bufring_publish(b);
	return 0;
}

void rl__bufring_fini(struct rl_bufring *b, struct io_uring *ring)
{
	/* Unregister before unmapping: the kernel must stop selecting first. */
	if (b->registered)
		io_uring_unregister_buf_ring(ring, b->bgid);
	if (b->br)
		munmap(b->br, b->ring_bytes);
	free(b->base);
	memset(b, 0, sizeof(*b));
}

uint8_t *rl__bufring_addr(struct rl_bufring *b, uint16_t bid)
{
	return b->base + (size_t)bid * b->size;
}

void rl__bufring_recycle(struct rl_bufring *b, uint16_t bid)
{
	io_uring_buf_ring_add(b->br, rl__bufring_addr(b, bid), b->size, bid, (int)b->mask,
			      (int)b->pending);
	b->pending++;
}

uint32_t rl__bufring_publish(struct rl_bufring *b)
{
	uint32_t n = b->pending;
	if (n) {
		io_uring_buf_ring_advance(b->br, (int)n);
		b->pending = 0;
	}
	return n;
}
