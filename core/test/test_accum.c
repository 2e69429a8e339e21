/* SPDX-License-Identifier: MIT */
/*
 * test_accum - the receive accumulator: append/consume keep the unconsumed
 * bytes contiguous and in order, the buffer grows by doubling, compacts in
 * place when that frees enough room, consuming everything frees a big buffer
 * (keeps a small one), and the shared bytes gauge always equals the sum of
 * the capacities.
 */
#include <stdlib.h>
#include <string.h>

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

	CHECK_EQ(rl__accum_append(&a, src, 100, &gauge), 0);
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
		CHECK_EQ(rl__accum_append(&a, src + total, n, &gauge), 0);
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
	CHECK_EQ(rl__accum_append(&a, src, 10, &gauge), 0);
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
	CHECK_EQ(rl__accum_append(&a, src, 1000, &gauge), 0);
	uint32_t cap = a.cap;
	/* fill the buffer exactly */
	CHECK_EQ(rl__accum_append(&a, src + 1000, cap - 1000, &gauge), 0);
	CHECK_EQ(a.len, cap);
	CHECK_EQ(a.cap, cap);
	/* consume most, then append past the end: compacts, no growth */
	uint32_t keep = cap / 8;
	rl__accum_consume(&a, cap - keep, &gauge);
	CHECK_EQ(a.off, cap - keep);
	uint8_t *buf = a.buf;
	CHECK_EQ(rl__accum_append(&a, src + cap, 100, &gauge), 0);
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
	CHECK_EQ(rl__accum_append(&a, src + pos + a.len, more, &gauge), 0);
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
			CHECK_EQ(rl__accum_append(&a[k], src + tail[k], n, &gauge), 0);
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

int main(void)
{
	t_pattern(src, sizeof(src), 1, 0);
	test_basic();
	test_growth();
	test_compaction();
	test_random();
	return 0;
}
