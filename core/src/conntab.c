/* SPDX-License-Identifier: MIT */
/*
 * conntab.c - the connection table: one slot per fixed-file entry, indexed
 * the same way. The kernel allocates the fixed-file index (accept and socket
 * installs use IORING_FILE_INDEX_ALLOC); the slot is freed only after the
 * fixed file's close completed, so the kernel can never hand out an index
 * whose slot is still in use. Each free bumps the slot's generation.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static void reset(struct rl_conn *c, uint32_t slot, uint32_t gen)
{
	memset(c, 0, sizeof(*c));
	c->slot = slot;
	c->io.gen = gen;
	c->io.state = RL_CONN_FREE;
	c->rawfd = -1;
	c->connreq = -1;
}

int rl__conntab_init(struct rl_conntab *t, uint32_t count)
{
	t->conns = calloc(count, sizeof(*t->conns));
	if (!t->conns)
		return -ENOMEM;
	t->count = count;
	t->open = 0;
	for (uint32_t i = 0; i < count; i++)
		reset(&t->conns[i], i, 1);
	return 0;
}

void rl__conntab_fini(struct rl_conntab *t)
{
	free(t->conns);
	t->conns = NULL;
	t->count = 0;
}

struct rl_conn *rl__conntab_open(struct rl_conntab *t, uint32_t slot)
{
	if (slot >= t->count || t->conns[slot].io.state != RL_CONN_FREE)
		return NULL;
	struct rl_conn *c = &t->conns[slot];
	c->io.state = RL_CONN_OPEN;
	t->open++;
	return c;
}

void rl__conntab_free(struct rl_conntab *t, struct rl_conn *c)
{
	uint32_t gen = c->io.gen + 1;
	if (gen == 0) /* 0 never names a live connection */
		gen = 1;
	reset(c, c->slot, gen);
	t->open--;
}

struct rl_conn *rl__conntab_get(struct rl_conntab *t, uint32_t slot, uint32_t gen)
{
	if (slot >= t->count)
		return NULL;
	struct rl_conn *c = &t->conns[slot];
	if (c->io.gen != gen || c->io.state == RL_CONN_FREE)
		return NULL;
	return c;
}
