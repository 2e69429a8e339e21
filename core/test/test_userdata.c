/* SPDX-License-Identifier: MIT */
/*
 * test_userdata - the user_data layout: every op tag, the full index and
 * generation ranges round-trip through pack/unpack without bleeding into each
 * other, and a completion packed for a previous occupant of a slot is told
 * apart by rl__conntab_get.
 */
#include <string.h>

#include "helpers.h"
#include "internal.h"

static void round_trip(enum rl_op op, uint32_t index, uint32_t gen)
{
	uint64_t ud = rl_ud_pack(op, index, gen);
	CHECK_EQ(rl_ud_op(ud), op);
	CHECK_EQ(rl_ud_index(ud), index);
	CHECK_EQ(rl_ud_gen(ud), gen);
}

static void test_round_trips(void)
{
	static const uint32_t idx[] = { 0, 1, 2, 255, 256, 65535, 65536, RL_UD_INDEX_MAX - 1,
					RL_UD_INDEX_MAX };
	static const uint32_t gens[] = { 0, 1, 2, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff };
	uint64_t rs = 42;

	/* the tag is 8 bits: every op must fit */
	CHECK_LE(RL_OP__COUNT, 256);
	CHECK_EQ(RL_UD_INDEX_MAX, (1u << 24) - 1);
	for (int op = 0; op < RL_OP__COUNT; op++) {
		for (size_t i = 0; i < sizeof(idx) / sizeof(idx[0]); i++)
			for (size_t g = 0; g < sizeof(gens) / sizeof(gens[0]); g++)
				round_trip((enum rl_op)op, idx[i], gens[g]);
		for (int k = 0; k < 10000; k++) {
			uint64_t r = t_rand(&rs);
			uint32_t index = (uint32_t)(r >> 40) & RL_UD_INDEX_MAX;
			round_trip((enum rl_op)op, index, (uint32_t)r);
		}
	}
	/* the highest tag with all-ones fields stays distinct from its neighbours */
	uint64_t a = rl_ud_pack(RL_OP__COUNT - 1, RL_UD_INDEX_MAX, 0xffffffff);
	uint64_t b = rl_ud_pack(RL_OP__COUNT - 2, RL_UD_INDEX_MAX, 0xffffffff);
	CHECK_NE(a, b);
	CHECK_EQ(rl_ud_op(a), RL_OP__COUNT - 1);
	/* RL_OP_NONE, index 0, gen 0 is the all-zero user_data */
	CHECK_EQ(rl_ud_pack(RL_OP_NONE, 0, 0), 0);
	/* an index past the field is masked, never carried into the tag */
	uint64_t over = rl_ud_pack(RL_OP_RECV, RL_UD_INDEX_MAX + 1, 7);
	CHECK_EQ(rl_ud_op(over), RL_OP_RECV);
	CHECK_EQ(rl_ud_gen(over), 7);
	uint64_t over2 = rl_ud_pack(RL_OP_RECV, 0xffffffffu, 0);
	CHECK_EQ(rl_ud_op(over2), RL_OP_RECV);
	CHECK_EQ(rl_ud_index(over2), RL_UD_INDEX_MAX);
	/* the tags are all different */
	for (int x = 0; x < RL_OP__COUNT; x++)
		for (int y = x + 1; y < RL_OP__COUNT; y++)
			CHECK_NE(rl_ud_pack(x, 5, 9), rl_ud_pack(y, 5, 9));
}

/* A completion carries the generation of the slot's occupant when it was
 * prepared; after the slot is freed and reused it must resolve to nothing. */
static void test_stale_generation(void)
{
	struct rl_conntab t;
	CHECK_EQ(rl__conntab_init(&t, 8), 0);
	struct rl_conn *c = rl__conntab_open(&t, 5);
	CHECK(c != NULL);
	uint64_t ud_old = rl_ud_pack(RL_OP_RECV, 5, c->io.gen);
	CHECK(rl__conntab_get(&t, rl_ud_index(ud_old), rl_ud_gen(ud_old)) == c);

	rl__conntab_free(&t, c);
	CHECK(rl__conntab_get(&t, rl_ud_index(ud_old), rl_ud_gen(ud_old)) == NULL);
	CHECK(rl__conntab_open(&t, 5) == c);
	uint64_t ud_new = rl_ud_pack(RL_OP_RECV, 5, c->io.gen);
	CHECK_NE(rl_ud_gen(ud_new), rl_ud_gen(ud_old));
	CHECK(rl__conntab_get(&t, rl_ud_index(ud_old), rl_ud_gen(ud_old)) == NULL);
	CHECK(rl__conntab_get(&t, rl_ud_index(ud_new), rl_ud_gen(ud_new)) == c);
	rl__conntab_free(&t, c);

	/* generation 0xffffffff packs and is live; the next one skips 0 */
	c = rl__conntab_open(&t, 5);
	CHECK(c != NULL);
	c->io.gen = 0xffffffffu;
	uint64_t ud_max = rl_ud_pack(RL_OP_SEND, 5, 0xffffffffu);
	CHECK(rl__conntab_get(&t, rl_ud_index(ud_max), rl_ud_gen(ud_max)) == c);
	rl__conntab_free(&t, c);
	CHECK(rl__conntab_get(&t, 5, 0xffffffffu) == NULL);
	CHECK_NE(c->io.gen, 0);
	CHECK(rl__conntab_open(&t, 5) == c);
	CHECK(rl__conntab_get(&t, 5, 0) == NULL);
	CHECK(rl__conntab_get(&t, 5, 0xffffffffu) == NULL);
	CHECK(rl__conntab_get(&t, 5, c->io.gen) == c);
	rl__conntab_free(&t, c);

	/* gen 0 never names a live connection, in any slot */
	for (uint32_t s = 0; s < 8; s++)
		CHECK(rl__conntab_get(&t, s, 0) == NULL);
	/* an index beyond the table resolves to nothing */
	CHECK(rl__conntab_get(&t, RL_UD_INDEX_MAX, 1) == NULL);
	rl__conntab_fini(&t);
}

int main(void)
{
	test_round_trips();
	test_stale_generation();
	return 0;
}
