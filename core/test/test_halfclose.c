/* SPDX-License-Identifier: MIT */
/*
 * test_halfclose - rl_conn_shutdown half-closes after the queue drains: the
 * peer reads every queued byte, then EOF; sends after the shutdown are
 * -EPIPE; the peer can still send, and the server receives all of it. Run
 * with a queue far bigger than the socket buffers (the shutdown must wait)
 * and with an empty queue (immediate).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

#define SEED_OUT 21
#define SEED_IN 22
#define IN_LEN (100u * 1024 + 7)

static struct t_peer peer;
static uint32_t s_slot = T_ANY, s_gen;
static size_t out_len;
static uint8_t *out;
static uint64_t s_recvd;

static void on_event(struct t_ctx *t, const struct rl_event *e)
{
	switch (e->type) {
	case RL_EV_ACCEPTED:
		s_slot = e->slot;
		s_gen = e->gen;
		if (out_len)
			CHECK_EQ(rl_conn_send(t->w, s_slot, s_gen, out, out_len), 0);
		CHECK_EQ(rl_conn_shutdown(t->w, s_slot, s_gen), 0);
		/* the send side is over at once, the shutdown is idempotent */
		CHECK_EQ(rl_conn_send(t->w, s_slot, s_gen, "x", 1), -EPIPE);
		CHECK_EQ(rl_conn_shutdown(t->w, s_slot, s_gen), 0);
		CHECK_EQ(rl_conn_io(t->w, s_slot)->state, RL_CONN_OPEN);
		t_consume_stream(t->w, s_slot, s_gen, SEED_IN, &s_recvd);
		break;
	case RL_EV_RECV:
		t_consume_stream(t->w, s_slot, s_gen, SEED_IN, &s_recvd);
		break;
	case RL_EV_CLOSED:
		CHECK_EQ(e->res, 0);
		break;
	default:
		FAIL("unexpected event %u", e->type);
	}
}

static int pump(struct t_ctx *t)
{
	return t_peer_pump(&peer) > 0;
}

static int peer_eof(struct t_ctx *t)
{
	return peer.eof || peer.err;
}

static int server_done(struct t_ctx *t)
{
	return t_count(t, RL_EV_CLOSED, s_slot, s_gen) == 1;
}

static void run(struct t_ctx *t, size_t len)
{
	s_slot = T_ANY;
	s_recvd = 0;
	out_len = len;
	uint8_t *in = malloc(IN_LEN);
	CHECK(in != NULL);
	t_pattern(in, IN_LEN, SEED_IN, 0);
	/* a small receive buffer: most of the queue waits in the worker */
	t_peer_init(&peer, t_tcp_connect_rcvbuf("127.0.0.1", t->port, 1, 65536));
	peer.check_in = 1;
	peer.in_seed = SEED_OUT;
	T_WAIT(t, peer_eof, 20);
	CHECK_EQ(peer.err, 0);
	CHECK_EQ(peer.inlen, len); /* every byte, then EOF */
	CHECK_EQ(t_count(t, RL_EV_CLOSED, s_slot, s_gen), 0);
	CHECK_EQ(rl_conn_io(t->w, s_slot)->unsent, 0);

	/* the other direction still works */
	peer.out = in;
	peer.outlen = IN_LEN;
	peer.shut_wr = 1;
	T_WAIT(t, server_done, 10);
	CHECK_EQ(s_recvd, IN_LEN);
	CHECK_EQ(peer.outoff, IN_LEN);
	CHECK_EQ(peer.err, 0);
	close(peer.fd);
	free(in);
	t_check_idle(t);
}

int main(void)
{
	struct t_ctx t;
	t_init(&t, NULL);
	t.on_event = on_event;
	t.pump = pump;
	t_listen(&t, NULL);
	out = malloc(8u << 20);
	CHECK(out != NULL);
	t_pattern(out, 8u << 20, SEED_OUT, 0);

	run(&t, 8u << 20);
	run(&t, 0);
	run(&t, 1);

	t_finish(&t);
	free(out);
	return 0;
}
