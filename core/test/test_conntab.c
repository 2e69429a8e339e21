/* SPDX-License-Identifier: MIT */
/*
 * test_conntab - the connection table: open makes a free slot live, a live
 * slot cannot be opened again, free bumps the generation and resets the
 * state, and get resolves only the current (slot, gen) of a live slot.
 */
#include <string.h>

#include "helpers.h"
#include "internal.h"

#define N 16

int main(void)
{
	struct rl_conntab t;
	CHECK_EQ(rl__conntab_init(&t, N), 0);
	CHECK_EQ(t.count, N);
	CHECK_EQ(t.open, 0);
	for (uint32_t s = 0; s < N; s++) {
		struct rl_conn *c = &t.conns[s];
		CHECK_EQ(c->slot, s);
		CHECK_EQ(c->io.state, RL_CONN_FREE);
		CHECK_NE(c->io.gen, 0);
		CHECK_EQ(c->rawfd, -1);
		/* a free slot resolves to nothing, whatever the generation */
		CHECK(rl__conntab_get(&t, s, c->io.gen) == NULL);
	}
	CHECK(rl__conntab_get(&t, N, 1) == NULL);
	CHECK(rl__conntab_open(&t, N) == NULL);
	CHECK(rl__conntab_open(&t, UINT32_MAX) == NULL);
	CHECK_EQ(t.open, 0);

	/* open, then a second open of the live slot fails */
	struct rl_conn *c = rl__conntab_open(&t, 3);
	CHECK(c == &t.conns[3]);
	CHECK_EQ(c->io.state, RL_CONN_OPEN);
	CHECK_EQ(t.open, 1);
	uint32_t g1 = c->io.gen;
	CHECK(rl__conntab_get(&t, 3, g1) == c);
	CHECK(rl__conntab_get(&t, 3, g1 + 1) == NULL);
	CHECK(rl__conntab_get(&t, 3, g1 - 1) == NULL);
	CHECK(rl__conntab_open(&t, 3) == NULL);
	CHECK_EQ(t.open, 1);
	CHECK_EQ(c->io.gen, g1);
	/* a closing slot is still live: not reopenable, still resolvable */
	c->io.state = RL_CONN_CLOSING;
	CHECK(rl__conntab_open(&t, 3) == NULL);
	CHECK(rl__conntab_get(&t, 3, g1) == c);

	/* free: generation bumped, state reset, stale gen resolves to NULL */
	c->rawfd = 42;
	c->ops = 3;
	c->flags = RL_CONN_F_WANT_RECV | RL_CONN_F_RESET;
	c->phase = RL_PHASE_CANCEL;
	c->io.rlen = 5;
	c->io.reof = 1;
	c->io.rerr = -5;
	c->io.serr = -6;
	c->io.unsent = 7;
	rl__conntab_free(&t, c);
	CHECK_EQ(t.open, 0);
	CHECK_EQ(c->slot, 3);
	CHECK_EQ(c->io.state, RL_CONN_FREE);
	uint32_t g2 = c->io.gen;
	CHECK_NE(g2, g1);
	CHECK_NE(g2, 0);
	CHECK_EQ(c->rawfd, -1);
	CHECK_EQ(c->ops, 0);
	CHECK_EQ(c->flags, 0);
	CHECK_EQ(c->phase, RL_PHASE_OPEN);
	CHECK_EQ(c->io.rlen, 0);
	CHECK_EQ(c->io.reof, 0);
	CHECK_EQ(c->io.rerr, 0);
	CHECK_EQ(c->io.serr, 0);
	CHECK_EQ(c->io.unsent, 0);
	CHECK(c->io.rdata == NULL);
	CHECK(rl__conntab_get(&t, 3, g1) == NULL);
	CHECK(rl__conntab_get(&t, 3, g2) == NULL); /* free: nothing live yet */

	/* reopen: the new generation resolves, the old one never again */
	CHECK(rl__conntab_open(&t, 3) == c);
	CHECK(rl__conntab_get(&t, 3, g2) == c);
	CHECK(rl__conntab_get(&t, 3, g1) == NULL);
	rl__conntab_free(&t, c);

	/* many reuses: every generation differs from the last ones */
	uint32_t seen[64];
	for (int i = 0; i < 64; i++) {
		c = rl__conntab_open(&t, 7);
		CHECK(c != NULL);
		seen[i] = c->io.gen;
		for (int j = 0; j < i; j++)
			CHECK_NE(seen[j], seen[i]);
		rl__conntab_free(&t, c);
	}

	/* all slots live at once, independent generations */
	for (uint32_t s = 0; s < N; s++)
		CHECK(rl__conntab_open(&t, s) != NULL);
	CHECK_EQ(t.open, N);
	for (uint32_t s = 0; s < N; s++)
		CHECK(rl__conntab_get(&t, s, t.conns[s].io.gen) == &t.conns[s]);
	rl__conntab_free(&t, &t.conns[0]);
	CHECK(rl__conntab_get(&t, 1, t.conns[1].io.gen) == &t.conns[1]);
	for (uint32_t s = 1; s < N; s++)
		rl__conntab_free(&t, &t.conns[s]);
	CHECK_EQ(t.open, 0);

	/* the generation wraps past 0xffffffff without ever being 0 */
	c = rl__conntab_open(&t, 2);
	c->io.gen = 0xffffffffu;
	rl__conntab_free(&t, c);
	CHECK_NE(c->io.gen, 0);
	CHECK_NE(c->io.gen, 0xffffffffu);
	rl__conntab_fini(&t);
	return 0;
}
