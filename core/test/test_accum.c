/* SPDX-License-Identifier: MIT */
/*
 * test_accum - the receive accumulator: append/consume keep the unconsumed
 * bytes contiguous and in order, the buffer grows by doubling, compacts in
 * place when that frees enough room, consuming everything frees a big buffer
 * (keeps a small one), and the shared bytes gauge always equals the sum of
 * the capacities. Growth is bounded by the owner's hint, and sizes near
 * 2^31 neither wrap nor spin (issue 17: `cap * 2` in 32 bits wrapped to 0
 * and `while (cap < need) cap *= 2` never ended).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "helpers.h"
#include "internal.h"

static uint8_t src[1 << 20];

static void check_bytes(const struct rl_accum *a, uint64_t stream_off)
{
	if (!a->len)
		return;
	long long bad = t_pattern_find_bad(a->buf + a->off, a->len, 1, stream_off);
	ASSERT(bad < 0, "accumulator byte %lld (stream %llu) wrong", bad,
	       (unsigned long long)stream_off + (unsigned long long)bad);
}

static void test_basic(void)
{
	struct rl_accum a;
	uint64_t gauge = 0;
	memset(&a, 0, sizeof(a));
	t_pattern(src, sizeof(src), 1, 0);

	CHECK_EQ(rl__accum_append(&a, src, 100, 0, &gauge), 0);
	CHECK(a.buf != NULL);
	CHECK_EQ(a.len, 100);
	CHECK_EQ(a.off, 0);
	CHECK_GE(a.cap, 100);
	CHECK_EQ(gauge, a.cap);
	uint32_t cap0 = a.cap;
	check_bytes(&a, 0);

	/* consuming part advances the front without moving bytes */
	uint8_t *buf = a.buf;
	rl__accum_consume(&a, 30, &gauge);
	CHECK(a.buf == buf);
	CHECK_EQ(a.off, 30);
	CHECK_EQ(a.len, 70);
	check_bytes(&a, 30);

	/* consuming everything of a small buffer keeps it */
	rl__accum_consume(&a, 70, &gauge);
	CHECK_EQ(a.len, 0);
	CHECK_EQ(a.off, 0);
	CHECK(a.buf == buf);
	CHECK_EQ(a.cap, cap0);
	CHECK_EQ(gauge, cap0);
	rl__accum_free(&a, &gauge);
	CHECK(a.buf == NULL);
	CHECK_EQ(a.cap, 0);
	CHECK_EQ(gauge, 0);
}

static void test_growth(void)
{
	struct rl_accum a;
	uint64_t gauge = 0;
	memset(&a, 0, sizeof(a));
	uint64_t total = 0;
	uint32_t prev = 0;
	/* 1 MiB in odd pieces: capacity only doubles, bytes stay in order */
	while (total < sizeof(src)) {
		uint32_t n = 777;
		if (total + n > sizeof(src))
			n = (uint32_t)(sizeof(src) - total);
		CHECK_EQ(rl__accum_append(&a, src + total, n, 0, &gauge), 0);
		total += n;
		CHECK_EQ(a.len, total);
		CHECK_GE(a.cap, a.len);
		if (prev && a.cap != prev)
			CHECK_EQ(a.cap, prev * 2);
		prev = a.cap;
		CHECK_EQ(gauge, a.cap);
	}
	check_bytes(&a, 0);
	CHECK_EQ(a.cap, sizeof(src));
	/* consume-all frees a buffer above the keep size */
	CHECK_GT(a.cap, RL_ACCUM_KEEP);
	rl__accum_consume(&a, a.len, &gauge);
	CHECK(a.buf == NULL);
	CHECK_EQ(a.cap, 0);
	CHECK_EQ(a.len, 0);
	CHECK_EQ(gauge, 0);
	/* and it works again afterwards */
	CHECK_EQ(rl__accum_append(&a, src, 10, 0, &gauge), 0);
	check_bytes(&a, 0);
	CHECK_EQ(gauge, a.cap);
	rl__accum_free(&a, &gauge);
	CHECK_EQ(gauge, 0);
}

static void test_compaction(void)
{
	struct rl_accum a;
	uint64_t gauge = 0;
	memset(&a, 0, sizeof(a));
	CHECK_EQ(rl__accum_append(&a, src, 1000, 0, &gauge), 0);
	uint32_t cap = a.cap;
	/* fill the buffer exactly */
	CHECK_EQ(rl__accum_append(&a, src + 1000, cap - 1000, 0, &gauge), 0);
	CHECK_EQ(a.len, cap);
	CHECK_EQ(a.cap, cap);
	/* consume most, then append past the end: compacts, no growth */
	uint32_t keep = cap / 8;
	rl__accum_consume(&a, cap - keep, &gauge);
	CHECK_EQ(a.off, cap - keep);
	uint8_t *buf = a.buf;
	CHECK_EQ(rl__accum_append(&a, src + cap, 100, 0, &gauge), 0);
	CHECK(a.buf == buf);
	CHECK_EQ(a.cap, cap);
	CHECK_EQ(a.off, 0);
	CHECK_EQ(a.len, keep + 100);
	CHECK_EQ(gauge, cap);
	check_bytes(&a, cap - keep);
	/* an append that would leave the buffer more than half full grows it */
	rl__accum_consume(&a, 10, &gauge);
	uint64_t pos = cap - keep + 10;
	uint32_t more = cap - a.len - a.off + 1; /* does not fit behind the data */
	CHECK_EQ(rl__accum_append(&a, src + pos + a.len, more, 0, &gauge), 0);
	CHECK_EQ(a.cap, cap * 2);
	CHECK_EQ(gauge, cap * 2);
	CHECK_EQ(a.off, 0);
	check_bytes(&a, pos);
	rl__accum_free(&a, &gauge);
	CHECK_EQ(gauge, 0);
}

/* Two accumulators against a model, one shared gauge. */
static void test_random(void)
{
	struct rl_accum a[2];
	uint64_t head[2] = { 0, 0 }, tail[2] = { 0, 0 };
	uint64_t gauge = 0, rs = 99;
	memset(a, 0, sizeof(a));
	for (int step = 0; step < 200000; step++) {
		uint64_t r = t_rand(&rs);
		int k = (int)(r & 1);
		uint32_t n;
		switch ((r >> 1) % 8) {
		case 0: case 1: case 2: case 3: /* append */
			n = (uint32_t)((r >> 8) % 9000) + 1;
			if (tail[k] + n > sizeof(src)) {
				/* stream exhausted: drain and restart it */
				rl__accum_consume(&a[k], a[k].len, &gauge);
				head[k] = tail[k] = 0;
				break;
			}
			CHECK_EQ(rl__accum_append(&a[k], src + tail[k], n, 0, &gauge), 0);
			tail[k] += n;
			break;
		case 4: case 5: case 6: /* consume part */
			if (!a[k].len)
				break;
			n = (uint32_t)((r >> 8) % a[k].len) + 1;
			rl__accum_consume(&a[k], n, &gauge);
			head[k] += n;
			break;
		default: /* consume all */
			rl__accum_consume(&a[k], a[k].len, &gauge);
			head[k] = tail[k];
			CHECK_EQ(a[k].off, 0);
			CHECK(a[k].cap <= RL_ACCUM_KEEP);
			break;
		}
		CHECK_EQ(a[k].len, tail[k] - head[k]);
		CHECK_LE((uint64_t)a[k].off + a[k].len, a[k].cap);
		CHECK_EQ(gauge, (uint64_t)a[0].cap + a[1].cap);
		if ((step & 63) == 0)
			check_bytes(&a[k], head[k]);
	}
	rl__accum_free(&a[0], &gauge);
	rl__accum_free(&a[1], &gauge);
	CHECK_EQ(gauge, 0);
}

/* The capacity arithmetic at the 32-bit boundary (pure: nothing allocated). */
static void test_grow_cap_limits(void)
{
	const uint64_t g = 1ull << 30;
	/* the case that spun: a 2 GiB buffer, more than half of it needed */
	CHECK_EQ(rl__accum_grow_cap(2 * g, g + 1, 0), 2 * g);
	CHECK_EQ(rl__accum_grow_cap(2 * g, RL_ACCUM_MAX_LEN, 0), 2 * g);
	CHECK_EQ(rl__accum_grow_cap(g, g + 1, 0), 2 * g);
	CHECK_EQ(rl__accum_grow_cap(g + 4096, g + 4097, 0), 2 * g);
	CHECK_EQ(rl__accum_grow_cap(0, RL_ACCUM_MAX_LEN, 0), 2 * g);
	/* past the most a 32-bit length holds: refused, never wrapped */
	CHECK_EQ(rl__accum_grow_cap(2 * g, RL_ACCUM_MAX_LEN + 1ull, 0), 0);
	CHECK_EQ(rl__accum_grow_cap(0, UINT32_MAX, 0), 0);
	CHECK_EQ(rl__accum_grow_cap(2 * g, 1ull << 40, 0), 0);
	CHECK_LE(RL_ACCUM_MAX_CAP, UINT32_MAX); /* the field holds every capacity */
	/* small: from nothing to the minimum, then doubling */
	CHECK_EQ(rl__accum_grow_cap(0, 1, 0), 4096);
	CHECK_EQ(rl__accum_grow_cap(4096, 5000, 0), 8192);
	CHECK_EQ(rl__accum_grow_cap(4096, 40000, 0), 65536);
	/* a limit caps the doubling (page-rounded), never below the need */
	CHECK_EQ(rl__accum_grow_cap(262144, 262145, 278528), 278528);
	CHECK_EQ(rl__accum_grow_cap(262144, 262145, 270000), 270336);
	CHECK_EQ(rl__accum_grow_cap(4096, 9000, 1000), 9000);
	CHECK_EQ(rl__accum_grow_cap(2 * g, g + 1, 4ull * g), 2 * g);
}

/* An accumulator at the top of its range, on a 2 GiB mapping of which only
 * the touched pages cost memory: appending past its end compacts (the
 * capacity cannot double), and past RL_ACCUM_MAX_LEN is -ENOBUFS with the
 * state untouched. */
static void test_near_2g(void)
{
	size_t maplen = (size_t)RL_ACCUM_MAX_CAP;
	uint8_t *map = mmap(NULL, maplen, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (map == MAP_FAILED) {
		fprintf(stderr, "skip near-2 GiB accumulator: mmap failed\n");
		return;
	}
	struct rl_accum a;
	uint64_t gauge = RL_ACCUM_MAX_CAP;
	a.buf = map;
	a.cap = (uint32_t)RL_ACCUM_MAX_CAP;
	a.len = 4096;
	a.off = a.cap - 8192;
	memcpy(a.buf + a.off, src, a.len);
	CHECK_EQ(rl__accum_append(&a, src + 4096, 8192, 0, &gauge), 0);
	CHECK(a.buf == map);
	CHECK_EQ(a.off, 0);
	CHECK_EQ(a.len, 12288);
	CHECK_EQ(a.cap, RL_ACCUM_MAX_CAP);
	CHECK_EQ(gauge, RL_ACCUM_MAX_CAP);
	check_bytes(&a, 0);

	/* one byte short of the most it may hold, then over it */
	a.off = 0;
	a.len = RL_ACCUM_MAX_LEN - 10;
	CHECK_EQ(rl__accum_append(&a, src, 11, 0, &gauge), -ENOBUFS);
	CHECK_EQ(a.len, RL_ACCUM_MAX_LEN - 10);
	CHECK_EQ(a.cap, RL_ACCUM_MAX_CAP);
	CHECK_EQ(gauge, RL_ACCUM_MAX_CAP);
	munmap(map, maplen);
}

/* The hint bounds growth: filled to it without consuming, the buffer is the
 * hint (page-rounded), not the next power of two; with a consumed prefix it
 * may reach twice the hint, so compaction stays amortized. */
static void test_hint(void)
{
	struct rl_accum a;
	uint64_t gauge = 0;
	const uint64_t hint = 262144 + 16384;
	memset(&a, 0, sizeof(a));
	uint64_t total = 0;
	while (total < hint) {
		CHECK_EQ(rl__accum_append(&a, src + total, 16384, hint, &gauge), 0);
		total += 16384;
	}
	CHECK_EQ(a.len, hint);
	CHECK_EQ(a.cap, hint);
	CHECK_EQ(gauge, hint);
	check_bytes(&a, 0);
	/* a reader takes a little at a time; the stream keeps coming */
	uint64_t head = 0;
	for (int i = 0; i < 200; i++) {
		rl__accum_consume(&a, 1000, &gauge);
		head += 1000;
		uint32_t n = 1000;
		if (total + n > sizeof(src)) {
			rl__accum_consume(&a, a.len, &gauge);
			head = total;
			break;
		}
		CHECK_EQ(rl__accum_append(&a, src + total, n, hint, &gauge), 0);
		total += n;
		CHECK_LE(a.cap, 2 * hint);
		CHECK_EQ(gauge, a.cap);
		check_bytes(&a, head);
	}
	rl__accum_free(&a, &gauge);
	CHECK_EQ(gauge, 0);
}

/* An emptied accumulator sheds its buffer: to the spares when small (the
 * next accumulator to receive takes it, no malloc), freed when large or
 * when the spares are full; only what connections hold is in the gauge. */
static void test_spares(void)
{
	struct rl_accum_spares sp;
	struct rl_accum a[RL_ACCUM_SPARES + 1];
	uint64_t gauge = 0;
	memset(&sp, 0, sizeof(sp));
	memset(a, 0, sizeof(a));
	/* nothing to shed, nothing to take */
	rl__accum_shed(&a[0], &sp, &gauge);
	rl__accum_prime(&a[0], &sp, &gauge);
	CHECK(a[0].buf == NULL);
	CHECK_EQ(sp.n, 0);
	for (uint32_t i = 0; i <= RL_ACCUM_SPARES; i++)
		CHECK_EQ(rl__accum_append(&a[i], src, 100, 0, &gauge), 0);
	CHECK_EQ(gauge, (uint64_t)(RL_ACCUM_SPARES + 1) * 4096);
	/* not empty: kept */
	rl__accum_shed(&a[0], &sp, &gauge);
	CHECK(a[0].buf != NULL);
	for (uint32_t i = 0; i <= RL_ACCUM_SPARES; i++) {
		rl__accum_consume(&a[i], a[i].len, &gauge);
		rl__accum_shed(&a[i], &sp, &gauge);
		CHECK(a[i].buf == NULL);
		CHECK_EQ(a[i].cap, 0);
	}
	/* the one past RL_ACCUM_SPARES was freed */
	CHECK_EQ(sp.n, RL_ACCUM_SPARES);
	CHECK_EQ(gauge, 0);
	/* taken back last in, first out, and counted again */
	rl__accum_prime(&a[0], &sp, &gauge);
	CHECK(a[0].buf != NULL);
	CHECK_EQ(a[0].cap, 4096);
	CHECK_EQ(gauge, 4096);
	CHECK_EQ(sp.n, RL_ACCUM_SPARES - 1);
	CHECK_EQ(rl__accum_append(&a[0], src, 10, 0, &gauge), 0);
	check_bytes(&a[0], 0);
	/* a buffer above RL_ACCUM_KEEP is freed, not kept */
	CHECK_EQ(rl__accum_append(&a[1], src, RL_ACCUM_KEEP + 1, 0, &gauge), 0);
	CHECK_GT(a[1].cap, RL_ACCUM_KEEP);
	rl__accum_consume(&a[1], a[1].len, &gauge);
	rl__accum_shed(&a[1], &sp, &gauge);
	CHECK(a[1].buf == NULL);
	CHECK_EQ(sp.n, RL_ACCUM_SPARES - 1);
	rl__accum_free(&a[0], &gauge);
	CHECK_EQ(gauge, 0);
	rl__accum_spares_fini(&sp);
	CHECK_EQ(sp.n, 0);
}

int main(void)
{
	t_pattern(src, sizeof(src), 1, 0);
	test_grow_cap_limits();
	test_near_2g();
	test_hint();
	test_basic();
	test_growth();
	test_compaction();
	test_random();
	test_spares();
	return 0;
}
