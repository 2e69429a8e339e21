/* SPDX-License-Identifier: MIT */
/*
 * test_close_drain - rl_conn_close(RL_CLOSE_GRACEFUL) right after queueing
 * 4 MiB delivers every byte before the FIN, on several connections at once
 * (queued in one send, and in many small sends that mix pool slots and heap
 * chunks), against peers that read at once and peers that start reading
 * late. RL_EV_CLOSED comes exactly once per connection, with its gen, and
 * only then does the (slot, gen) go stale.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

#define NC 4
#define LEN (4u << 20)

static struct t_peer peers[NC];
static uint8_t *out[NC];
static uint32_t slot_of[NC], gen_of[NC];
static int closed_of[NC];
static int naccepted;

static int conn_index(uint32_t slot, uint32_t gen)
{
	for (int i = 0; i < naccepted; i++)
		if (slot_of[i] == slot && gen_of[i] == gen)
			return i;
	return -1;
}

static void on_event(struct t_ctx *t, const struct rl_event *e)
{
	switch (e->type) {
	case RL_EV_ACCEPTED: {
		int i = naccepted++;
		CHECK_LT(i, NC);
		slot_of[i] = e->slot;
		gen_of[i] = e->gen;
		if (i % 2 == 0) {
			CHECK_EQ(rl_conn_send(t->w, e->slot, e->gen, out[i], LEN), 0);
		} else {
			/* many small sends of odd sizes */
			size_t off = 0, n = 1;
			while (off < LEN) {
				if (n > LEN - off)
					n = LEN - off;
				CHECK_EQ(rl_conn_send(t->w, e->slot, e->gen, out[i] + off, n), 0);
				off += n;
				n = n * 3 % 9001 + 1;
			}
		}
		CHECK_EQ(rl_conn_close(t->w, e->slot, e->gen, RL_CLOSE_GRACEFUL), 0);
		const struct rl_conn_io *io = rl_conn_io(t->w, e->slot);
		CHECK_EQ(io->state, RL_CONN_CLOSING);
		CHECK_EQ(io->gen, e->gen);
		CHECK_GT(io->unsent, 0);
		/* closing: no more sends, a second close is harmless */
		CHECK_EQ(rl_conn_send(t->w, e->slot, e->gen, "x", 1), -EPIPE);
		CHECK_EQ(rl_conn_shutdown(t->w, e->slot, e->gen), -EPIPE);
		CHECK_EQ(rl_conn_close(t->w, e->slot, e->gen, RL_CLOSE_GRACEFUL), 0);
		break;
	}
	case RL_EV_CLOSED: {
		int i = conn_index(e->slot, e->gen);
		ASSERT(i >= 0, "RL_EV_CLOSED for unknown (%u, %u)", e->slot, e->gen);
		ASSERT(!closed_of[i], "second RL_EV_CLOSED for (%u, %u)", e->slot, e->gen);
		closed_of[i] = 1;
		CHECK_EQ(e->res, 0);
		const struct rl_conn_io *io = rl_conn_io(t->w, e->slot);
		CHECK_NE(io->gen, e->gen);
		CHECK_EQ(rl_conn_send(t->w, e->slot, e->gen, "x", 1), -ESTALE);
		CHECK_EQ(rl_conn_close(t->w, e->slot, e->gen, RL_CLOSE_GRACEFUL), -ESTALE);
		break;
	}
	default:
		FAIL("unexpected event %u", e->type);
	}
}

static int pump(struct t_ctx *t)
{
	return t_peers_pump(peers, NC);
}

static int want_accepted;

static int accepted_so_far(struct t_ctx *t)
{
	return naccepted == want_accepted;
}

static int all_done(struct t_ctx *t)
{
	for (int i = 0; i < NC; i++)
		if (!(peers[i].eof || peers[i].err) || !closed_of[i])
			return 0;
	return 1;
}

int main(void)
{
	struct t_ctx t;
	t_init(&t, NULL);
	t.on_event = on_event;
	t.pump = pump;
	t_listen(&t, NULL);

	for (int i = 0; i < NC; i++) {
		out[i] = malloc(LEN);
		CHECK(out[i] != NULL);
		t_pattern(out[i], LEN, (uint32_t)(40 + i), 0);
	}
	for (int i = 0; i < NC; i++) {
		/* peers 2 and 3: small buffers, and they read only later */
		t_peer_init(&peers[i], t_tcp_connect_rcvbuf("127.0.0.1", t.port, 1,
							    i >= 2 ? 65536 : 0));
		peers[i].check_in = 1;
		peers[i].in_seed = (uint32_t)(40 + i);
		peers[i].no_read = i >= 2;
		/* accepted in connect order, so accept i is peer i */
		want_accepted = i + 1;
		T_WAIT(&t, accepted_so_far, 10);
	}
	CHECK_EQ(rl_conn_io(t.w, slot_of[2])->gen, gen_of[2]);
	peers[2].no_read = 0;
	peers[3].no_read = 0;
	T_WAIT(&t, all_done, 20);
	for (int i = 0; i < NC; i++) {
		ASSERT(peers[i].err == 0, "peer %d: %s", i, strerror(peers[i].err));
		ASSERT(peers[i].inlen == LEN, "peer %d: %zu of %u bytes before EOF", i,
		       peers[i].inlen, LEN);
		CHECK(peers[i].eof);
		close(peers[i].fd);
		peers[i].fd = -1;
	}
	CHECK_EQ(t_count(&t, RL_EV_CLOSED, T_ANY, T_ANY), NC);
	t_finish(&t); /* polls until idle: a duplicate CLOSED would fail */
	for (int i = 0; i < NC; i++)
		free(out[i]);
	return 0;
}
