/* SPDX-License-Identifier: MIT */
/*
 * test_slab - the in-flight send slab (internal rl__slab_* API): entries are
 * handed out until the slab is exhausted (then NULL), come back fresh and
 * distinct, every free bumps the entry's generation (so a late completion
 * carrying the old one is recognisably stale), the used count is exact over
 * random alloc/free sequences, and rl__slab_advance walks a multi-iovec
 * entry through partial sends, leaving iov_first and the first unsent
 * iovec's base/len exactly right.
 */
#include <string.h>
#include <sys/uio.h>

#include "helpers.h"
#include "internal.h"

#define COUNT 5

static void test_exhaustion_and_reuse(void)
{
	struct rl_slab s;
	CHECK_EQ(rl__slab_init(&s, COUNT), 0);
	CHECK_EQ(s.used, 0);
	CHECK_EQ(s.count, COUNT);

	struct rl_slab_entry *e[COUNT];
	uint32_t gens[COUNT];
	for (int i = 0; i < COUNT; i++) {
		e[i] = rl__slab_alloc(&s);
		CHECK(e[i] != NULL);
		CHECK_EQ(s.used, i + 1);
		/* an entry of this slab, named by its index */
		CHECK(e[i] >= s.e && e[i] < s.e + COUNT);
		CHECK_EQ(e[i]->index, (uint32_t)(e[i] - s.e));
		CHECK_NE(e[i]->gen, 0);
		/* fresh: nothing left over from a previous use */
		CHECK_EQ(e[i]->used, 1);
		CHECK_EQ(e[i]->niov, 0);
		CHECK_EQ(e[i]->iov_first, 0);
		CHECK_EQ(e[i]->nguards, 0);
		CHECK_EQ(e[i]->notifs, 0);
		CHECK_EQ(e[i]->zc, 0);
		CHECK_EQ(e[i]->op_final, 0);
		CHECK_EQ(e[i]->queued, 0);
		CHECK(e[i]->copy == NULL);
		/* its queue node leads back to it, and is never a pool slot */
		CHECK(e[i]->node.zc == e[i]);
		CHECK_EQ(e[i]->node.pool_slot, -1);
		for (int j = 0; j < i; j++)
			CHECK(e[j] != e[i]);
		gens[i] = e[i]->gen;
	}
	/* exhausted: NULL, and the count does not move */
	CHECK(rl__slab_alloc(&s) == NULL);
	CHECK(rl__slab_alloc(&s) == NULL);
	CHECK_EQ(s.used, COUNT);

	/* dirty an entry the way a send does, free it, take it again */
	struct rl_slab_entry *d = e[2];
	uint32_t idx = d->index;
	d->niov = 3;
	d->iov_first = 2;
	d->nguards = 4;
	d->notifs = 1;
	d->zc = d->op_final = d->queued = 1;
	d->node.len = 1234;
	d->node.off = 99;
	rl__slab_free(&s, d);
	CHECK_EQ(s.used, COUNT - 1);
	CHECK_EQ(d->used, 0);
	CHECK_NE(d->gen, gens[2]); /* a completion for the old use is stale now */
	struct rl_slab_entry *r = rl__slab_alloc(&s);
	CHECK(r == d); /* the only free entry */
	CHECK_EQ(r->index, idx);
	CHECK_EQ(r->gen, gens[2] + 1);
	CHECK_EQ(r->used, 1);
	CHECK_EQ(r->niov, 0);
	CHECK_EQ(r->iov_first, 0);
	CHECK_EQ(r->nguards, 0);
	CHECK_EQ(r->notifs, 0);
	CHECK_EQ(r->zc, 0);
	CHECK_EQ(r->op_final, 0);
	CHECK_EQ(r->queued, 0);
	CHECK_EQ(r->node.len, 0);
	CHECK_EQ(r->node.off, 0);
	CHECK(r->node.zc == r);
	CHECK(rl__slab_alloc(&s) == NULL);

	/* free everything; each reuse bumps that entry's generation once more */
	for (int i = 0; i < COUNT; i++)
		rl__slab_free(&s, e[i]);
	CHECK_EQ(s.used, 0);
	for (int i = 0; i < COUNT; i++) {
		uint32_t want = gens[i] + (i == 2 ? 2 : 1);
		CHECK_EQ(e[i]->gen, want);
	}
	/* every entry is available again, each exactly once */
	struct rl_slab_entry *again[COUNT];
	for (int i = 0; i < COUNT; i++) {
		again[i] = rl__slab_alloc(&s);
		CHECK(again[i] != NULL);
		for (int j = 0; j < i; j++)
			CHECK(again[j] != again[i]);
	}
	CHECK(rl__slab_alloc(&s) == NULL);
	CHECK_EQ(s.used, COUNT);
	rl__slab_fini(&s);
}

static void test_generation_never_zero(void)
{
	struct rl_slab s;
	CHECK_EQ(rl__slab_init(&s, 1), 0);
	struct rl_slab_entry *e = rl__slab_alloc(&s);
	CHECK(e != NULL);
	/* a generation of 0 would match zeroed user_data: it is skipped */
	e->gen = UINT32_MAX;
	rl__slab_free(&s, e);
	CHECK_NE(e->gen, 0);
	CHECK_NE(e->gen, UINT32_MAX);
	e = rl__slab_alloc(&s);
	CHECK(e != NULL);
	CHECK_NE(e->gen, 0);
	rl__slab_free(&s, e);
	rl__slab_fini(&s);
}

static void test_random_accounting(void)
{
	struct rl_slab s;
	enum { N = 37 };
	CHECK_EQ(rl__slab_init(&s, N), 0);
	struct rl_slab_entry *held[N];
	uint32_t lastgen[N];
	int nheld = 0;
	for (int i = 0; i < N; i++)
		lastgen[i] = s.e[i].gen;
	uint64_t rs = 42;
	for (int step = 0; step < 20000; step++) {
		if (nheld < N && (nheld == 0 || t_rand(&rs) % 3 != 0)) {
			struct rl_slab_entry *e = rl__slab_alloc(&s);
			CHECK(e != NULL);
			CHECK_EQ(e->used, 1);
			CHECK_EQ(e->gen, lastgen[e->index]);
			for (int j = 0; j < nheld; j++)
				CHECK(held[j] != e);
			held[nheld++] = e;
		} else if (nheld == N && t_rand(&rs) % 2) {
			CHECK(rl__slab_alloc(&s) == NULL);
		} else {
			int k = (int)(t_rand(&rs) % (uint64_t)nheld);
			struct rl_slab_entry *e = held[k];
			held[k] = held[--nheld];
			uint32_t g = e->gen;
			rl__slab_free(&s, e);
			CHECK_EQ(e->used, 0);
			CHECK_NE(e->gen, g);
			lastgen[e->index] = e->gen;
		}
		CHECK_EQ(s.used, nheld);
	}
	while (nheld)
		rl__slab_free(&s, held[--nheld]);
	CHECK_EQ(s.used, 0);
	rl__slab_fini(&s);
}

/* An entry with iovecs of the given lengths over one buffer. */
static void setup(struct rl_slab_entry *e, uint8_t *buf, const uint32_t *lens, int n)
{
	uint8_t *p = buf;
	e->niov = (uint8_t)n;
	e->iov_first = 0;
	for (int i = 0; i < n; i++) {
		e->iov[i].iov_base = p;
		e->iov[i].iov_len = lens[i];
		p += lens[i] + 7; /* gaps: advancing must not assume contiguity */
	}
}

static void check_first(const struct rl_slab_entry *e, uint8_t first, const void *base,
			size_t len, int line)
{
	if (e->iov_first != first)
		t_fail(__FILE__, line, "iov_first %u, want %u", e->iov_first, first);
	if (first >= e->niov)
		return;
	if (e->iov[first].iov_base != base || e->iov[first].iov_len != len)
		t_fail(__FILE__, line, "iov[%u] = {base %+td from the expected, len %zu}, want len %zu",
		       first, (const uint8_t *)e->iov[first].iov_base - (const uint8_t *)base,
		       e->iov[first].iov_len, len);
}
#define CHECK_FIRST(e, first, base, len) check_first(e, first, base, len, __LINE__)

static size_t remaining(const struct rl_slab_entry *e)
{
	size_t n = 0;
	for (int i = e->iov_first; i < e->niov; i++)
		n += e->iov[i].iov_len;
	return n;
}

static void test_advance(void)
{
	static uint8_t buf[4096];
	struct rl_slab s;
	CHECK_EQ(rl__slab_init(&s, 2), 0);
	struct rl_slab_entry *e = rl__slab_alloc(&s);
	CHECK(e != NULL);

	/* 50/10/40 advanced by 30, 25, 45 */
	const uint32_t lens[] = { 50, 10, 40 };
	setup(e, buf, lens, 3);
	uint8_t *b0 = e->iov[0].iov_base, *b1 = e->iov[1].iov_base, *b2 = e->iov[2].iov_base;
	CHECK_EQ(remaining(e), 100);
	rl__slab_advance(e, 30); /* inside the first */
	CHECK_FIRST(e, 0, b0 + 30, 20);
	CHECK(e->iov[1].iov_base == b1 && e->iov[1].iov_len == 10);
	CHECK(e->iov[2].iov_base == b2 && e->iov[2].iov_len == 40);
	CHECK_EQ(remaining(e), 70);
	rl__slab_advance(e, 25); /* 20 finish iov 0, 5 more go into iov 1 */
	CHECK_FIRST(e, 1, b1 + 5, 5);
	CHECK(e->iov[2].iov_base == b2 && e->iov[2].iov_len == 40);
	CHECK_EQ(remaining(e), 45);
	rl__slab_advance(e, 45); /* the rest: all sent */
	CHECK_FIRST(e, 3, NULL, 0);
	CHECK_EQ(remaining(e), 0);
	/* nothing left: advancing further is harmless */
	rl__slab_advance(e, 10);
	CHECK_EQ(e->iov_first, 3);

	/* exact iovec boundaries: the boundary iovec is skipped, not left at 0 */
	setup(e, buf, lens, 3);
	b1 = e->iov[1].iov_base;
	b2 = e->iov[2].iov_base;
	rl__slab_advance(e, 50);
	CHECK_FIRST(e, 1, b1, 10);
	rl__slab_advance(e, 10);
	CHECK_FIRST(e, 2, b2, 40);
	rl__slab_advance(e, 0); /* a zero advance moves nothing */
	CHECK_FIRST(e, 2, b2, 40);
	rl__slab_advance(e, 39);
	CHECK_FIRST(e, 2, b2 + 39, 1);
	rl__slab_advance(e, 1);
	CHECK_FIRST(e, 3, NULL, 0);

	/* one advance spanning several whole iovecs into a later one */
	const uint32_t many[] = { 3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8, 9, 7, 9, 3 };
	setup(e, buf, many, RL_SLAB_IOVS);
	uint8_t *bases[RL_SLAB_IOVS];
	for (int i = 0; i < RL_SLAB_IOVS; i++)
		bases[i] = e->iov[i].iov_base;
	rl__slab_advance(e, 3 + 1 + 4 + 1 + 2); /* into iov 4 (len 5) by 2 */
	CHECK_FIRST(e, 4, bases[4] + 2, 3);
	rl__slab_advance(e, 3 + 9 + 2 + 6 + 5 + 3 + 5 + 8 + 9 + 7 + 9 + 2); /* 1 short of the end */
	CHECK_FIRST(e, 15, bases[15] + 2, 1);
	rl__slab_advance(e, 1);
	CHECK_FIRST(e, RL_SLAB_IOVS, NULL, 0);

	/* byte-by-byte: the walk always covers exactly the bytes in order */
	setup(e, buf, lens, 3);
	uint8_t *expect[100];
	for (int i = 0, k = 0; i < 3; i++)
		for (uint32_t j = 0; j < lens[i]; j++)
			expect[k++] = (uint8_t *)e->iov[i].iov_base + j;
	for (int k = 0; k < 100; k++) {
		CHECK_EQ(remaining(e), 100 - k);
		CHECK(e->iov[e->iov_first].iov_base == expect[k]);
		rl__slab_advance(e, 1);
	}
	CHECK_EQ(e->iov_first, 3);

	/* an advance resuming in the middle of iov_first (a second partial send) */
	setup(e, buf, lens, 3);
	b0 = e->iov[0].iov_base;
	b2 = e->iov[2].iov_base;
	rl__slab_advance(e, 10);
	rl__slab_advance(e, 10);
	CHECK_FIRST(e, 0, b0 + 20, 30);
	rl__slab_advance(e, 30 + 10 + 15);
	CHECK_FIRST(e, 2, b2 + 15, 25);

	rl__slab_free(&s, e);
	rl__slab_fini(&s);
}

int main(void)
{
	test_exhaustion_and_reuse();
	test_generation_never_zero();
	test_random_accounting();
	test_advance();
	return 0;
}
