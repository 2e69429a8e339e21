/* SPDX-License-Identifier: MIT */
/*
 * test_sendpool - the send copy pool: slots first, heap chunks (counted)
 * when the pool is empty, every chunk has room for min(want, a slot), LIFO
 * reuse of slots, and exact used/heap accounting over random get/put
 * sequences.
 */
#include <string.h>

#include "helpers.h"
#include "internal.h"

#define SLOTS 8
#define SLOT_SIZE 256

static void fill(struct rl_chunk *c, uint8_t v)
{
	/* the whole capacity is writable (ASan checks the bounds) */
	memset(c->data, v, c->cap);
}

static void test_exhaustion(void)
{
	struct rl_sendpool p;
	CHECK_EQ(rl__sendpool_init(&p, SLOTS, SLOT_SIZE), 0);
	CHECK_EQ(rl__sendpool_used(&p), 0);
	CHECK_EQ(p.heap_chunks, 0);

	struct rl_chunk *c[SLOTS + 3];
	for (int i = 0; i < SLOTS; i++) {
		c[i] = rl__chunk_get(&p, 10);
		CHECK(c[i] != NULL);
		CHECK_GE(c[i]->pool_slot, 0);
		CHECK_EQ(c[i]->cap, SLOT_SIZE);
		CHECK_EQ(c[i]->len, 0);
		CHECK_EQ(c[i]->off, 0);
		CHECK(c[i]->next == NULL);
		fill(c[i], (uint8_t)i);
		CHECK_EQ(rl__sendpool_used(&p), i + 1);
		for (int j = 0; j < i; j++) {
			CHECK_NE(c[j]->pool_slot, c[i]->pool_slot);
			/* slot memory never overlaps */
			CHECK(c[j]->data + c[j]->cap <= c[i]->data ||
			      c[i]->data + c[i]->cap <= c[j]->data);
		}
	}
	CHECK_EQ(p.heap_chunks, 0);
	/* pool empty: heap chunks, at least a slot big, counted */
	c[SLOTS] = rl__chunk_get(&p, 10);
	CHECK(c[SLOTS] != NULL);
	CHECK_EQ(c[SLOTS]->pool_slot, -1);
	CHECK_GE(c[SLOTS]->cap, SLOT_SIZE);
	CHECK_EQ(p.heap_chunks, 1);
	c[SLOTS + 1] = rl__chunk_get(&p, 100000);
	CHECK(c[SLOTS + 1] != NULL);
	CHECK_EQ(c[SLOTS + 1]->pool_slot, -1);
	CHECK_GE(c[SLOTS + 1]->cap, 100000); /* sized to the send */
	CHECK_EQ(p.heap_chunks, 2);
	/* a huge send is chunked: heap chunks are bounded */
	c[SLOTS + 2] = rl__chunk_get(&p, (size_t)1 << 30);
	CHECK(c[SLOTS + 2] != NULL);
	CHECK_LT(c[SLOTS + 2]->cap, 1u << 30);
	CHECK_GE(c[SLOTS + 2]->cap, SLOT_SIZE);
	CHECK_EQ(p.heap_chunks, 3);
	for (int i = SLOTS; i < SLOTS + 3; i++)
		fill(c[i], 0xee);
	CHECK_EQ(rl__sendpool_used(&p), SLOTS); /* heap chunks are not pool slots */

	for (int i = 0; i < SLOTS + 3; i++)
		rl__chunk_put(&p, c[i]);
	CHECK_EQ(rl__sendpool_used(&p), 0);
	CHECK_EQ(p.heap_chunks, 0);
	rl__sendpool_fini(&p);
}

static void test_lifo(void)
{
	struct rl_sendpool p;
	CHECK_EQ(rl__sendpool_init(&p, SLOTS, SLOT_SIZE), 0);
	struct rl_chunk *a = rl__chunk_get(&p, 1);
	struct rl_chunk *b = rl__chunk_get(&p, 1);
	struct rl_chunk *c = rl__chunk_get(&p, 1);
	CHECK(a && b && c);
	/* the most recently returned slot is handed out first */
	rl__chunk_put(&p, b);
	struct rl_chunk *d = rl__chunk_get(&p, 1);
	CHECK(d == b);
	rl__chunk_put(&p, a);
	rl__chunk_put(&p, c);
	CHECK(rl__chunk_get(&p, 1) == c);
	CHECK(rl__chunk_get(&p, 1) == a);
	/* a reused chunk comes back reset */
	a->len = 17;
	a->off = 3;
	rl__chunk_put(&p, a);
	a = rl__chunk_get(&p, 1);
	CHECK_EQ(a->len, 0);
	CHECK_EQ(a->off, 0);
	CHECK(a->next == NULL);
	rl__chunk_put(&p, a);
	rl__chunk_put(&p, c);
	rl__chunk_put(&p, d);
	CHECK_EQ(rl__sendpool_used(&p), 0);
	rl__sendpool_fini(&p);
}

static void test_random_accounting(void)
{
	struct rl_sendpool p;
	CHECK_EQ(rl__sendpool_init(&p, SLOTS, SLOT_SIZE), 0);
	struct rl_chunk *live[64];
	int n = 0;
	uint32_t pool = 0, heap = 0;
	uint64_t rs = 7;
	for (int step = 0; step < 200000; step++) {
		uint64_t r = t_rand(&rs);
		if (n < 64 && (n == 0 || (r & 1))) {
			size_t want = (r >> 8) % (SLOT_SIZE * 6) + 1;
			struct rl_chunk *c = rl__chunk_get(&p, want);
			CHECK(c != NULL);
			CHECK_GE(c->cap, want < SLOT_SIZE ? want : SLOT_SIZE);
			if (c->pool_slot >= 0) {
				pool++;
				CHECK_EQ(c->cap, SLOT_SIZE);
			} else {
				heap++;
				ASSERT(pool == SLOTS || want > SLOT_SIZE,
				       "heap chunk for %zu bytes while %u of %u slots are in use",
				       want, pool, SLOTS);
			}
			c->data[0] = 1;
			c->data[c->cap - 1] = 2;
			live[n++] = c;
		} else {
			int i = (int)((r >> 16) % (uint64_t)n);
			struct rl_chunk *c = live[i];
			live[i] = live[--n];
			if (c->pool_slot >= 0)
				pool--;
			else
				heap--;
			rl__chunk_put(&p, c);
		}
		CHECK_EQ(rl__sendpool_used(&p), pool);
		CHECK_EQ(p.heap_chunks, heap);
	}
	while (n)
		rl__chunk_put(&p, live[--n]);
	CHECK_EQ(rl__sendpool_used(&p), 0);
	CHECK_EQ(p.heap_chunks, 0);
	rl__sendpool_fini(&p);
}

int main(void)
{
	test_exhaustion();
	test_lifo();
	test_random_accounting();
	return 0;
}
