/* SPDX-License-Identifier: MIT */
/*
 * test_idle_mem - an idle connection holds no receive buffer, and the
 * worker's trim gives memory back without breaking anything in use.
 *
 * Peers each send a message; the server consumes every byte: with the
 * connections still open, accum_bytes is 0 (the emptied accumulators went
 * to the worker's spares; before, each kept its 4 KiB buffer while idle).
 * The peers send again: the bytes arrive intact in a reused buffer. Then
 * rl_worker_trim (spares freed, the free send slots' pages dropped, the
 * allocator trimmed) and after it streams both ways through the send pool
 * and the receive path still carry every byte right.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

#define NPEERS 8
#define BIG (256u << 10)
#define SEED_IN 31
#define SEED_OUT 41

static struct t_peer peers[NPEERS];
static uint32_t s_slot[NPEERS], s_gen[NPEERS];
static int naccepted;
static uint64_t recvd[NPEERS];
static uint8_t in[NPEERS][BIG];
static uint8_t out[BIG];

static int idx_of(uint32_t slot, uint32_t gen)
{
	for (int i = 0; i < naccepted; i++)
		if (s_slot[i] == slot && s_gen[i] == gen)
			return i;
	return -1;
}

/* Consume what arrived on connection i, checked against its stream. */
static void take(struct t_ctx *t, int i)
{
	const struct rl_conn_io *io = rl_conn_io(t->w, s_slot[i]);
	if (io->rlen) {
		long long bad = t_pattern_find_bad(io->rdata, io->rlen, SEED_IN + (uint32_t)i, recvd[i]);
		ASSERT(bad < 0, "conn %d: byte %llu wrong", i, (unsigned long long)recvd[i] + (unsigned long long)bad);
		recvd[i] += io->rlen;
		CHECK_EQ(rl_conn_consume(t->w, s_slot[i], s_gen[i], io->rlen), 0);
	}
	CHECK_EQ(rl_conn_want_recv(t->w, s_slot[i], s_gen[i], 1), 0);
}

static void on_event(struct t_ctx *t, const struct rl_event *e)
{
	switch (e->type) {
	case RL_EV_ACCEPTED:
		CHECK_LT(naccepted, NPEERS);
		s_slot[naccepted] = e->slot;
		s_gen[naccepted] = e->gen;
		naccepted++;
		take(t, naccepted - 1);
		break;
	case RL_EV_RECV: {
		int i = idx_of(e->slot, e->gen);
		CHECK_GE(i, 0);
		CHECK_EQ(e->res, 0);
		take(t, i);
		break;
	}
	case RL_EV_SEND:
	case RL_EV_CLOSED:
		break;
	default:
		FAIL("unexpected event %u", e->type);
	}
}

static int pump(struct t_ctx *t)
{
	(void)t;
	return t_peers_pump(peers, NPEERS);
}

static int all_accepted(struct t_ctx *t)
{
	(void)t;
	return naccepted == NPEERS;
}

static uint64_t goal;
static int all_received(struct t_ctx *t)
{
	(void)t;
	for (int i = 0; i < NPEERS; i++)
		if (recvd[i] < goal)
			return 0;
	return 1;
}

static int all_echoed(struct t_ctx *t)
{
	(void)t;
	for (int i = 0; i < NPEERS; i++)
		if (peers[i].inlen < BIG)
			return 0;
	return 1;
}

static int all_closed(struct t_ctx *t)
{
	return t_count(t, RL_EV_CLOSED, T_ANY, T_ANY) == NPEERS;
}

/* Each peer writes its stream's next n bytes (peer.out points into the
 * stream made for it once). */
static uint8_t streams[NPEERS][BIG + 4096];
static void peers_send(uint64_t from, size_t n)
{
	for (int i = 0; i < NPEERS; i++) {
		peers[i].out = streams[i] + from;
		peers[i].outlen = n;
		peers[i].outoff = 0;
	}
}

int main(void)
{
	struct t_ctx t;
	t_init(&t, NULL);
	t.on_event = on_event;
	t.pump = pump;
	t_listen(&t, NULL);
	for (int i = 0; i < NPEERS; i++) {
		t_pattern(streams[i], sizeof(streams[i]), SEED_IN + (uint32_t)i, 0);
		t_peer_init(&peers[i], t_tcp_connect("127.0.0.1", t.port, 1));
		peers[i].in = in[i];
		peers[i].incap = BIG;
	}
	T_WAIT(&t, all_accepted, 10);

	/* a message each, all consumed: open and idle, no buffer held */
	peers_send(0, 1000);
	goal = 1000;
	T_WAIT(&t, all_received, 10);
	const struct rl_metrics *m = rl_worker_metrics(t.w);
	CHECK_EQ(m->conns_open, NPEERS);
	CHECK_EQ(m->accum_bytes, 0);

	/* again: the spares serve, the bytes are right */
	peers_send(1000, 3000);
	goal = 4000;
	T_WAIT(&t, all_received, 10);
	CHECK_EQ(rl_worker_metrics(t.w)->accum_bytes, 0);

	/* trim, then the send pool (slots whose pages were dropped) and the
	 * receive path carry streams both ways */
	CHECK_GE(rl_worker_trim(t.w), 0);
	t_pattern(out, sizeof(out), SEED_OUT, 0);
	for (int i = 0; i < NPEERS; i++) {
		peers[i].in = NULL;
		peers[i].check_in = 1;
		peers[i].in_seed = SEED_OUT;
		for (uint32_t off = 0; off < BIG; off += 1000) {
			uint32_t n = BIG - off < 1000 ? BIG - off : 1000;
			CHECK_EQ(rl_conn_send(t.w, s_slot[i], s_gen[i], out + off, n), 0);
		}
	}
	peers_send(4000, BIG - 4000);
	goal = BIG;
	T_WAIT(&t, all_received, 20);
	T_WAIT(&t, all_echoed, 20);
	CHECK_EQ(rl_worker_metrics(t.w)->accum_bytes, 0);
	CHECK_GE(rl_worker_trim(t.w), 0);

	for (int i = 0; i < NPEERS; i++)
		CHECK_EQ(rl_conn_close(t.w, s_slot[i], s_gen[i], RL_CLOSE_GRACEFUL), 0);
	T_WAIT(&t, all_closed, 10);
	for (int i = 0; i < NPEERS; i++)
		close(peers[i].fd);
	t_finish(&t);
	return 0;
}
