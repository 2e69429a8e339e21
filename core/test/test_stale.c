/* SPDX-License-Identifier: MIT */
/*
 * test_stale - with one connection slot (max_connections = 1) every new
 * connection reuses the slot of the last one. After RL_EV_CLOSED the old
 * (slot, gen) gets -ESTALE from every connection call, also while the slot
 * has a new occupant, and none of those calls touches the new occupant;
 * rl_conn_io's gen changes; a receive the old occupant asked for never
 * turns into an event for the new one.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

static struct t_peer peer;
static uint32_t s_slot = T_ANY, s_gen;

static void on_event(struct t_ctx *t, const struct rl_event *e)
{
	switch (e->type) {
	case RL_EV_ACCEPTED:
		s_slot = e->slot;
		s_gen = e->gen;
		break;
	case RL_EV_RECV:
	case RL_EV_CLOSED:
		break;
	default:
		FAIL("unexpected event %u", e->type);
	}
}

static int pump(struct t_ctx *t)
{
	return t_peer_pump(&peer) > 0;
}

static int accepted(struct t_ctx *t)
{
	return s_slot != T_ANY;
}

static uint32_t w_slot, w_gen;
static int wanted_closed(struct t_ctx *t)
{
	return t_count(t, RL_EV_CLOSED, w_slot, w_gen) == 1;
}

static int wanted_recv(struct t_ctx *t)
{
	return t_count(t, RL_EV_RECV, w_slot, w_gen) == 1;
}

static uint32_t want_rlen;
static int rlen_reached(struct t_ctx *t)
{
	return rl_conn_io(t->w, w_slot)->rlen >= want_rlen;
}

static int peer_ended(struct t_ctx *t)
{
	return peer.eof || peer.err;
}

/* Every call naming a dead (slot, gen) fails with -ESTALE. */
static void all_stale(struct t_ctx *t, uint32_t slot, uint32_t gen)
{
	struct rl_worker *w = t->w;
	CHECK_EQ(rl_conn_consume(w, slot, gen, 0), -ESTALE);
	CHECK_EQ(rl_conn_consume(w, slot, gen, 1), -ESTALE);
	CHECK_EQ(rl_conn_want_recv(w, slot, gen, 1), -ESTALE);
	CHECK_EQ(rl_conn_want_recv(w, slot, gen, 0), -ESTALE);
	CHECK_EQ(rl_conn_send(w, slot, gen, "stale", 5), -ESTALE);
	CHECK_EQ(rl_conn_send(w, slot, gen, "", 0), -ESTALE);
	CHECK_EQ(rl_conn_want_send(w, slot, gen, 0), -ESTALE);
	CHECK_EQ(rl_conn_want_send(w, slot, gen, 1u << 30), -ESTALE);
	CHECK_EQ(rl_conn_shutdown(w, slot, gen), -ESTALE);
	CHECK_EQ(rl_conn_close(w, slot, gen, RL_CLOSE_GRACEFUL), -ESTALE);
	CHECK_EQ(rl_conn_close(w, slot, gen, RL_CLOSE_RESET), -ESTALE);
	CHECK_EQ(rl_conn_fd(w, slot, gen), -ESTALE);
}

static void connect_peer(struct t_ctx *t)
{
	s_slot = T_ANY;
	t_peer_init(&peer, t_tcp_connect("127.0.0.1", t->port, 1));
	T_WAIT(t, accepted, 10);
	w_slot = s_slot;
	w_gen = s_gen;
}

static void wait_closed(struct t_ctx *t, uint32_t slot, uint32_t gen)
{
	w_slot = slot;
	w_gen = gen;
	T_WAIT(t, wanted_closed, 10);
}

int main(void)
{
	struct rl_config cfg;
	t_config_small(&cfg);
	cfg.max_connections = 1;
	struct t_ctx t;
	t_init(&t, &cfg);
	t.on_event = on_event;
	t.pump = pump;
	t_listen(&t, NULL);
	const struct rl_conn_io *io = rl_conn_io(t.w, 0);
	CHECK(io != NULL);
	CHECK(rl_conn_io(t.w, 1) == NULL);

	/* A: one exchange, then a receive asked for and left pending, a send
	 * queued, and a graceful close */
	connect_peer(&t);
	uint32_t slot = s_slot, g1 = s_gen;
	CHECK_EQ(slot, 0);
	CHECK_EQ(io->gen, g1);
	CHECK_EQ(io->state, RL_CONN_OPEN);
	CHECK_EQ(rl_conn_want_recv(t.w, slot, g1, 5), 0);
	peer.out = (const uint8_t *)"hello";
	peer.outlen = 5;
	T_WAIT(&t, wanted_recv, 10);
	CHECK_EQ(io->rlen, 5);
	CHECK(memcmp(io->rdata, "hello", 5) == 0);
	CHECK_EQ(rl_conn_consume(t.w, slot, g1, 5), 0);
	CHECK_EQ(rl_conn_want_recv(t.w, slot, g1, 100), 0); /* left pending */
	CHECK_EQ(rl_conn_send(t.w, slot, g1, "bye", 3), 0);
	CHECK_EQ(rl_conn_close(t.w, slot, g1, RL_CLOSE_GRACEFUL), 0);
	wait_closed(&t, slot, g1);
	CHECK_EQ(t_count(&t, RL_EV_RECV, slot, g1), 1);
	CHECK_NE(io->gen, g1);
	CHECK_EQ(io->state, RL_CONN_FREE);
	CHECK_EQ(io->rlen, 0);
	all_stale(&t, slot, g1);
	T_WAIT(&t, peer_ended, 10);
	CHECK(peer.eof);
	CHECK_EQ(peer.inlen, 3);
	close(peer.fd);

	/* B reuses the slot: a new generation; the old name stays dead and
	 * does not reach B */
	size_t log_mark = t.nlog;
	connect_peer(&t);
	uint32_t g2 = s_gen;
	CHECK_EQ(s_slot, slot);
	CHECK_NE(g2, g1);
	CHECK_EQ(io->gen, g2);
	CHECK_EQ(io->state, RL_CONN_OPEN);
	all_stale(&t, slot, g1);
	CHECK_EQ(io->state, RL_CONN_OPEN); /* the stale close did not close B */
	CHECK_EQ(io->gen, g2);
	CHECK_EQ(io->unsent, 0);          /* the stale send queued nothing */
	/* bytes arrive for B, which asked for nothing: no RL_EV_RECV, neither
	 * for B nor from A's pending want */
	static uint8_t data[2000];
	t_pattern(data, sizeof(data), 3, 0);
	peer.out = data;
	peer.outlen = 1000;
	w_slot = slot;
	want_rlen = 1000;
	T_WAIT(&t, rlen_reached, 10);
	CHECK_EQ(io->rlen, 1000);
	CHECK_EQ(t_count(&t, RL_EV_RECV, T_ANY, T_ANY), 1); /* A's, before the close */
	for (size_t i = log_mark; i < t.nlog; i++)
		ASSERT(t.log[i].gen == g2, "event %u for gen %u after gen %u took the slot",
		       t.log[i].type, t.log[i].gen, g2);
	/* B's own want works */
	CHECK_EQ(rl_conn_want_recv(t.w, slot, g2, 2000), 0);
	peer.outlen = 2000;
	w_gen = g2;
	T_WAIT(&t, wanted_recv, 10);
	CHECK_EQ(io->rlen, 2000);
	CHECK_EQ(t_pattern_find_bad(io->rdata, io->rlen, 3, 0), -1);
	CHECK_EQ(rl_conn_close(t.w, slot, g2, RL_CLOSE_RESET), 0);
	all_stale(&t, slot, g1);
	wait_closed(&t, slot, g2);
	all_stale(&t, slot, g2);
	T_WAIT(&t, peer_ended, 10);
	close(peer.fd);

	/* C: yet another generation; both old names are dead */
	connect_peer(&t);
	uint32_t g3 = s_gen;
	CHECK_EQ(s_slot, slot);
	CHECK_NE(g3, g1);
	CHECK_NE(g3, g2);
	all_stale(&t, slot, g1);
	all_stale(&t, slot, g2);
	CHECK_EQ(io->state, RL_CONN_OPEN);
	CHECK_EQ(rl_conn_close(t.w, slot, g3, RL_CLOSE_GRACEFUL), 0);
	wait_closed(&t, slot, g3);
	T_WAIT(&t, peer_ended, 10);
	close(peer.fd);
	peer.fd = -1;
	for (size_t i = 0; i < t.nlog; i++)
		if (t.log[i].type == RL_EV_CLOSED)
			CHECK_EQ(t.log[i].res, 0);
	CHECK_EQ(t_count(&t, RL_EV_CLOSED, T_ANY, T_ANY), 3);
	CHECK_EQ(rl_worker_metrics(t.w)->conns_refused, 0);
	t_finish(&t);
	return 0;
}
