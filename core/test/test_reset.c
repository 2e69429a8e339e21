/* SPDX-License-Identifier: MIT */
/*
 * test_reset - connection resets, both ways:
 *  A. the peer resets (SO_LINGER 0) while the server is in the middle of a
 *     16+ MiB reply: the server sees serr and rerr/EOF, keeps the slot until it
 *     closes it itself, and the worker returns to idle;
 *  B. a local RL_CLOSE_RESET makes the peer's read fail with ECONNRESET:
 *     on an idle inbound connection, on one with a send in flight (its queue
 *     is dropped), and on an outbound connection (the worker's own listener
 *     sees the reset).
 *  C. the peer resets a connection with nothing of it in flight: the reset
 *     fails its send side too, and rl_conn_want_send_error hears it (a
 *     writer waiting for a slab entry would otherwise wait on).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "helpers.h"

/* a reply the kernel's buffers cannot take whole: bigger than 16 MiB when
 * tcp_wmem allows bigger send buffers */
static uint32_t big_len = 16u << 20;

enum { PH_A, PH_B1, PH_B2, PH_B3, PH_C };
static int phase;
static uint8_t *big;
static struct t_peer peer;
static uint32_t s_slot = T_ANY, s_gen; /* the accepted connection */
static uint32_t o_slot = T_ANY, o_gen; /* the outbound one (B3) */

static void on_event(struct t_ctx *t, const struct rl_event *e)
{
	switch (e->type) {
	case RL_EV_ACCEPTED:
		CHECK_EQ(s_slot, T_ANY);
		s_slot = e->slot;
		s_gen = e->gen;
		if (phase == PH_A || phase == PH_B2)
			CHECK_EQ(rl_conn_send(t->w, s_slot, s_gen, big, big_len), 0);
		if (phase == PH_A) {
			CHECK_EQ(rl_conn_want_send(t->w, s_slot, s_gen, 0), 0);
			CHECK_EQ(rl_conn_want_recv(t->w, s_slot, s_gen, 1), 0);
		}
		if (phase == PH_B1)
			CHECK_EQ(rl_conn_close(t->w, s_slot, s_gen, RL_CLOSE_RESET), 0);
		if (phase == PH_B3)
			CHECK_EQ(rl_conn_want_recv(t->w, s_slot, s_gen, 1), 0);
		if (phase == PH_C)
			CHECK_EQ(rl_conn_want_send_error(t->w, s_slot, s_gen), 0);
		break;
	case RL_EV_CONNECTED:
		CHECK(phase == PH_B3 || phase == PH_C);
		ASSERT(e->res == 0, "connect: %s", rl_strerror(e->res));
		CHECK_EQ(e->data, 77);
		o_slot = e->slot;
		o_gen = e->gen;
		break;
	case RL_EV_RECV:
	case RL_EV_SEND:
	case RL_EV_CLOSED:
		break; /* looked up in the log */
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

static int read_some(struct t_ctx *t)
{
	return peer.inlen >= peer.read_limit;
}

static int a_errors_seen(struct t_ctx *t)
{
	return t_count(t, RL_EV_SEND, s_slot, s_gen) && t_count(t, RL_EV_RECV, s_slot, s_gen);
}

static int server_closed(struct t_ctx *t)
{
	return t_count(t, RL_EV_CLOSED, s_slot, s_gen) == 1;
}

static int peer_failed(struct t_ctx *t)
{
	return peer.err || peer.eof;
}

static int peer_has_bytes_queued(struct t_ctx *t)
{
	int n = 0;
	CHECK(ioctl(peer.fd, FIONREAD, &n) == 0);
	return n > 0;
}

static int b3_ready(struct t_ctx *t)
{
	return s_slot != T_ANY && o_slot != T_ANY;
}

static int b3_reset_seen(struct t_ctx *t)
{
	return t_count(t, RL_EV_RECV, s_slot, s_gen) == 1;
}

static int b3_closed(struct t_ctx *t)
{
	return t_count(t, RL_EV_CLOSED, s_slot, s_gen) == 1 &&
	       t_count(t, RL_EV_CLOSED, o_slot, o_gen) == 1;
}

static void new_peer(struct t_ctx *t, int rcvbuf)
{
	s_slot = T_ANY;
	t_peer_init(&peer, t_tcp_connect_rcvbuf("127.0.0.1", t->port, 1, rcvbuf));
	peer.check_in = 1;
	peer.in_seed = 7;
}

static void peer_resets_mid_send(struct t_ctx *t)
{
	phase = PH_A;
	/* a small receive buffer: the 16 MiB reply cannot fit in flight */
	new_peer(t, 65536);
	peer.read_limit = 256 * 1024;
	T_WAIT(t, accepted, 10);
	T_WAIT(t, read_some, 10);
	const struct rl_conn_io *io = rl_conn_io(t->w, s_slot);
	CHECK_GT(io->unsent, 0); /* mid-send */
	CHECK_EQ(io->serr, 0);
	t_close_reset(peer.fd);
	peer.fd = -1;

	T_WAIT(t, a_errors_seen, 10);
	const struct rl_event *se = t_last(t, RL_EV_SEND, s_slot, s_gen);
	const struct rl_event *re = t_last(t, RL_EV_RECV, s_slot, s_gen);
	ASSERT(se->res == -ECONNRESET || se->res == -EPIPE, "send error %d (%s)", se->res,
	       rl_strerror(se->res));
	CHECK_EQ(io->serr, se->res);
	/* The kernel reports the reset (sk_err) to the first operation that
	 * looks: a send that already moved bytes returns that count instead and
	 * its retry sees EPIPE, the receive then sees a plain EOF. So the reset
	 * shows as an error on the send side and an error or EOF on receive. */
	CHECK_EQ(re->res, io->rerr);
	ASSERT(io->rerr == -ECONNRESET || (io->rerr == 0 && io->reof),
	       "recv side: rerr %d (%s), reof %u", io->rerr, rl_strerror(io->rerr), io->reof);
	CHECK_EQ(io->rlen, 0);
	/* the dropped queue is accounted, the slot stays until we close it */
	CHECK_EQ(io->unsent, 0);
	CHECK_EQ(rl_worker_metrics(t->w)->send_bytes_queued, 0);
	CHECK_EQ(rl_worker_metrics(t->w)->send_heap_chunks, 0);
	CHECK_EQ(io->state, RL_CONN_OPEN);
	CHECK_EQ(io->gen, s_gen);
	CHECK_EQ(t_count(t, RL_EV_CLOSED, s_slot, s_gen), 0);
	CHECK_EQ(rl_conn_send(t->w, s_slot, s_gen, "x", 1), io->serr);
	CHECK_EQ(rl_conn_want_recv(t->w, s_slot, s_gen, 1), 1); /* satisfied by the error */
	CHECK_EQ(rl_conn_want_send(t->w, s_slot, s_gen, 0), 1);
	CHECK_EQ(rl_conn_close(t->w, s_slot, s_gen, RL_CLOSE_GRACEFUL), 0);
	T_WAIT(t, server_closed, 10);
	CHECK_EQ(t_last(t, RL_EV_CLOSED, s_slot, s_gen)->res, 0);
	CHECK_EQ(rl_conn_close(t->w, s_slot, s_gen, RL_CLOSE_GRACEFUL), -ESTALE);
	t_check_idle(t);
}

static void local_reset_idle(struct t_ctx *t)
{
	phase = PH_B1;
	new_peer(t, 0);
	T_WAIT(t, peer_failed, 10);
	ASSERT(peer.err == ECONNRESET, "peer read: %s, eof %d", strerror(peer.err), peer.eof);
	CHECK_EQ(peer.inlen, 0);
	T_WAIT(t, server_closed, 10);
	close(peer.fd);
	t_check_idle(t);
}

static void local_reset_mid_send(struct t_ctx *t)
{
	phase = PH_B2;
	new_peer(t, 65536);
	peer.no_read = 1;
	T_WAIT(t, accepted, 10);
	/* the send is in flight once bytes wait in the peer's socket */
	T_WAIT(t, peer_has_bytes_queued, 10);
	const struct rl_conn_io *io = rl_conn_io(t->w, s_slot);
	CHECK_GT(io->unsent, 0);
	CHECK_EQ(rl_conn_close(t->w, s_slot, s_gen, RL_CLOSE_RESET), 0);
	CHECK_EQ(io->state, RL_CONN_CLOSING);
	CHECK_EQ(rl_conn_send(t->w, s_slot, s_gen, "x", 1), -EPIPE);
	/* the peer reads what arrived (pattern-checked), then the reset */
	peer.no_read = 0;
	T_WAIT(t, peer_failed, 10);
	ASSERT(peer.err == ECONNRESET, "peer read: %s, eof %d after %zu bytes",
	       strerror(peer.err), peer.eof, peer.inlen);
	CHECK_LT(peer.inlen, (size_t)big_len);
	T_WAIT(t, server_closed, 10);
	close(peer.fd);
	t_check_idle(t);
}

static void local_reset_outbound(struct t_ctx *t)
{
	char addr[64];
	phase = PH_B3;
	s_slot = o_slot = T_ANY;
	peer.fd = -1;
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", t->port);
	CHECK_EQ(rl_connect(t->w, addr, 0, 77), 0);
	T_WAIT(t, b3_ready, 10);
	CHECK_EQ(rl_conn_close(t->w, o_slot, o_gen, RL_CLOSE_RESET), 0);
	T_WAIT(t, b3_reset_seen, 10);
	const struct rl_conn_io *io = rl_conn_io(t->w, s_slot);
	ASSERT(io->rerr == -ECONNRESET, "accepted side: rerr %d reof %u", io->rerr, io->reof);
	CHECK_EQ(t_last(t, RL_EV_RECV, s_slot, s_gen)->res, -ECONNRESET);
	CHECK_EQ(rl_conn_close(t->w, s_slot, s_gen, RL_CLOSE_GRACEFUL), 0);
	T_WAIT(t, b3_closed, 10);
	t_check_idle(t);
}

static int c_send_error_seen(struct t_ctx *t)
{
	return t_count(t, RL_EV_SEND, s_slot, s_gen) == 1;
}

static void peer_reset_idle_send_side(struct t_ctx *t)
{
	char addr[64];
	phase = PH_C;
	s_slot = o_slot = T_ANY;
	peer.fd = -1;
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", t->port);
	CHECK_EQ(rl_connect(t->w, addr, 0, 77), 0);
	T_WAIT(t, b3_ready, 10);
	const struct rl_conn_io *io = rl_conn_io(t->w, s_slot);
	CHECK_EQ(io->unsent, 0);
	CHECK_EQ(rl_conn_close(t->w, o_slot, o_gen, RL_CLOSE_RESET), 0);
	T_WAIT(t, c_send_error_seen, 10);
	CHECK_EQ(t_last(t, RL_EV_SEND, s_slot, s_gen)->res, -ECONNRESET);
	CHECK_EQ(io->serr, -ECONNRESET);
	CHECK_EQ(io->rerr, -ECONNRESET);
	CHECK_EQ(rl_conn_send(t->w, s_slot, s_gen, "x", 1), -ECONNRESET);
	CHECK_EQ(rl_conn_want_send_error(t->w, s_slot, s_gen), 1);
	CHECK_EQ(rl_conn_close(t->w, s_slot, s_gen, RL_CLOSE_GRACEFUL), 0);
	T_WAIT(t, b3_closed, 10);
	t_check_idle(t);
}

int main(void)
{
	if (t_tcp_wmem_max() * 2 + (4u << 20) > big_len)
		big_len = (uint32_t)(t_tcp_wmem_max() * 2 + (4u << 20));
	big = malloc(big_len);
	CHECK(big != NULL);
	t_pattern(big, big_len, 7, 0);
	struct t_ctx t;
	t_init(&t, NULL);
	t.on_event = on_event;
	t.pump = pump;
	t_listen(&t, NULL);

	peer_resets_mid_send(&t);
	/* an RST needs SO_LINGER on a plain descriptor: inbound sockets get
	 * one from IORING_OP_FIXED_FD_INSTALL, or, without it, are accepted as
	 * one (RINGLINE_DISABLE_FEATURES=fd_install runs that path) */
	local_reset_idle(&t);
	local_reset_mid_send(&t);
	local_reset_outbound(&t);
	peer_reset_idle_send_side(&t);

	peer.fd = -1;
	t_finish(&t);
	free(big);
	return 0;
}
