/* SPDX-License-Identifier: MIT */
/*
 * test_backpressure - memory stays bounded against slow peers, both ways.
 *
 * Send: the server writes 64 MiB in 16 KiB pieces to a peer that does not
 * read, following the watermark protocol of the Lua layer (above the high
 * watermark: want_send(low watermark) and wait). RL_EV_SEND must come only
 * at or below the low watermark, the pool (sized above the watermark) must
 * never fall back to heap chunks, and the server must stall. Then the peer
 * reads and all 64 MiB arrive in order.
 *
 * Receive: the peer writes 32 MiB while the server consumes nothing: the
 * accumulator holds at most recv_window plus one provided buffer (and
 * allocates no more), receiving pauses (recv_pauses), the peer's writes
 * block; a want_recv above the window lets that much more in, plus one
 * buffer at most; then the
 * server consumes and every byte arrives in order. Paused connections close
 * (gracefully or by reset) with their unconsumed bytes freed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

#define SEND_TOTAL (64ull << 20)
#define RECV_TOTAL (32ull << 20)
#define PIECE 16384
#define HIGH 131072
#define LOW 32768
#define WINDOW 65536
#define SEED_OUT 9
#define SEED_IN 11

static struct t_peer peer;
static uint32_t s_slot = T_ANY, s_gen;
static const struct rl_conn_io *io;
static int phase; /* 1: server sends, 2: server receives */

/* server send side */
static uint64_t s_sent;
static int s_waiting, s_flushing;
static uint32_t max_unsent;
static uint64_t max_heap, max_slots;

/* server receive side */
static int s_consuming;
static uint64_t s_recvd;
static uint32_t max_rlen;
static uint64_t max_accum;

static void note_gauges(struct t_ctx *t)
{
	const struct rl_metrics *m = rl_worker_metrics(t->w);
	if (m->send_heap_chunks > max_heap)
		max_heap = m->send_heap_chunks;
	if (m->send_slots_used > max_slots)
		max_slots = m->send_slots_used;
	if (m->accum_bytes > max_accum)
		max_accum = m->accum_bytes;
	if (s_slot != T_ANY && io->gen == s_gen) {
		if (io->unsent > max_unsent)
			max_unsent = io->unsent;
		if (io->rlen > max_rlen)
			max_rlen = io->rlen;
		CHECK_EQ(m->send_bytes_queued, io->unsent);
	}
}

static void srv_write(struct t_ctx *t)
{
	static uint8_t piece[PIECE];
	while (s_sent < SEND_TOTAL) {
		if (io->unsent > HIGH) {
			int r = CHECK_RC(rl_conn_want_send(t->w, s_slot, s_gen, LOW));
			if (r == 0) {
				s_waiting = 1;
				return;
			}
			continue;
		}
		size_t n = PIECE;
		t_pattern(piece, n, SEED_OUT, s_sent);
		CHECK_EQ(rl_conn_send(t->w, s_slot, s_gen, piece, n), 0);
		s_sent += n;
		note_gauges(t);
	}
	if (!s_flushing) {
		/* everything queued: wait for the flush, then close */
		s_flushing = 1;
		if (CHECK_RC(rl_conn_want_send(t->w, s_slot, s_gen, 0)) == 1)
			CHECK_EQ(rl_conn_close(t->w, s_slot, s_gen, RL_CLOSE_GRACEFUL), 0);
	}
}

static void on_event(struct t_ctx *t, const struct rl_event *e)
{
	note_gauges(t);
	switch (e->type) {
	case RL_EV_ACCEPTED:
		CHECK_EQ(s_slot, T_ANY);
		s_slot = e->slot;
		s_gen = e->gen;
		io = rl_conn_io(t->w, s_slot);
		if (phase == 1)
			srv_write(t);
		break;
	case RL_EV_SEND:
		CHECK_EQ(phase, 1);
		CHECK_EQ(e->res, 0);
		if (s_flushing) {
			CHECK_EQ(e->data, 0);
			CHECK_EQ(io->unsent, 0);
			CHECK_EQ(rl_conn_close(t->w, s_slot, s_gen, RL_CLOSE_GRACEFUL), 0);
			break;
		}
		CHECK(s_waiting);
		/* only once the queue drained to the low watermark */
		ASSERT(e->data <= LOW, "RL_EV_SEND with %u unsent (low watermark %u)", e->data,
		       LOW);
		CHECK_LE(io->unsent, LOW);
		s_waiting = 0;
		srv_write(t);
		break;
	case RL_EV_RECV:
		CHECK_EQ(phase, 2);
		if (s_consuming)
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
	int moved = t_peer_pump(&peer) > 0;
	note_gauges(t);
	return moved;
}

static int accepted(struct t_ctx *t)
{
	return s_slot != T_ANY;
}

/* The server cannot go on: no progress over many polls while waiting.
 * Reaching this early only shortens the phase; nothing depends on it. */
static uint64_t last_progress;
static int still;

static int stalled(uint64_t progress)
{
	if (progress != last_progress) {
		last_progress = progress;
		still = 0;
		return 0;
	}
	return ++still >= 50;
}

static int send_stalled(struct t_ctx *t)
{
	return s_waiting && stalled(rl_worker_metrics(t->w)->bytes_out);
}

static int all_read_and_closed(struct t_ctx *t)
{
	return peer.eof && t_count(t, RL_EV_CLOSED, s_slot, s_gen) == 1;
}

static int recv_stalled(struct t_ctx *t)
{
	return peer.write_blocked && rl_worker_metrics(t->w)->recv_pauses > 0 &&
	       stalled(rl_worker_metrics(t->w)->bytes_in);
}

static int big_want_done(struct t_ctx *t)
{
	return t_count(t, RL_EV_RECV, s_slot, s_gen) == 1;
}

static int receiving_again(struct t_ctx *t)
{
	return io->rlen >= WINDOW;
}

static int all_received_and_closed(struct t_ctx *t)
{
	return s_recvd == RECV_TOTAL && t_count(t, RL_EV_CLOSED, s_slot, s_gen) == 1;
}

static void slow_reader(struct t_ctx *t)
{
	phase = 1;
	/* a small receive buffer so the kernel holds little of the stream */
	t_peer_init(&peer, t_tcp_connect_rcvbuf("127.0.0.1", t->port, 1, 65536));
	peer.no_read = 1;
	peer.check_in = 1;
	peer.in_seed = SEED_OUT;
	T_WAIT(t, accepted, 10);
	last_progress = UINT64_MAX;
	T_WAIT(t, send_stalled, 20);
	const struct rl_metrics *m = rl_worker_metrics(t->w);
	fprintf(stderr, "send stall: %llu queued, %llu taken by the kernel, unsent %u (max %u)\n",
		(unsigned long long)s_sent, (unsigned long long)m->bytes_out, io->unsent,
		max_unsent);
	CHECK_LT(s_sent, SEND_TOTAL);
	CHECK_GT(io->unsent, LOW);
	CHECK_LE(max_unsent, HIGH + PIECE);
	CHECK_EQ(max_heap, 0);
	CHECK_LE(max_slots, (HIGH + PIECE) / t->cfg.send_slot_size + 1);

	peer.no_read = 0;
	T_WAIT(t, all_read_and_closed, 30);
	CHECK_EQ(peer.err, 0);
	CHECK_EQ(peer.inlen, SEND_TOTAL);
	CHECK_EQ(s_sent, SEND_TOTAL);
	CHECK_LE(max_unsent, HIGH + PIECE);
	CHECK_EQ(max_heap, 0);
	close(peer.fd);
	t_check_idle(t);
}

static void slow_consumer(struct t_ctx *t)
{
	phase = 2;
	s_slot = T_ANY;
	uint8_t *out = malloc(RECV_TOTAL);
	CHECK(out != NULL);
	t_pattern(out, RECV_TOTAL, SEED_IN, 0);
	t_peer_init(&peer, t_tcp_connect("127.0.0.1", t->port, 1));
	peer.out = out;
	peer.outlen = RECV_TOTAL;
	peer.shut_wr = 1;
	T_WAIT(t, accepted, 10);
	max_rlen = 0;
	max_accum = 0;
	last_progress = UINT64_MAX;
	T_WAIT(t, recv_stalled, 20);

	const struct rl_metrics *m = rl_worker_metrics(t->w);
	/* a recv is armed only below the window and brings one buffer at most */
	uint64_t slack = t->cfg.recv_buffer_size;
	fprintf(stderr, "recv stall: peer wrote %zu, rlen %u (max %u), accum %llu (max %llu), "
		"pauses %llu\n", peer.outoff, io->rlen, max_rlen,
		(unsigned long long)m->accum_bytes, (unsigned long long)max_accum,
		(unsigned long long)m->recv_pauses);
	CHECK_GT(m->recv_pauses, 0);
	CHECK_LT(peer.outoff, RECV_TOTAL);
	CHECK_GE(io->rlen, WINDOW);
	CHECK_LE(max_rlen, WINDOW + slack);
	CHECK_LE(max_accum, WINDOW + slack);
	CHECK_EQ(t_count(t, RL_EV_RECV, T_ANY, T_ANY), 0);

	/* asking for more than the window lets exactly enough in */
	uint32_t want = io->rlen + 2 * WINDOW;
	CHECK_EQ(rl_conn_want_recv(t->w, s_slot, s_gen, want), 0);
	T_WAIT(t, big_want_done, 10);
	CHECK_GE(io->rlen, want);
	CHECK_LE(io->rlen, want + slack);
	/* the event carries rlen when it was raised; later CQEs of the same
	 * batch may have added more */
	CHECK_GE(t_last(t, RL_EV_RECV, s_slot, s_gen)->data, want);
	CHECK_LE(t_last(t, RL_EV_RECV, s_slot, s_gen)->data, io->rlen);

	/* consuming alone resumes receiving, without a want_recv */
	long long bad = t_pattern_find_bad(io->rdata, io->rlen, SEED_IN, s_recvd);
	ASSERT(bad < 0, "server: stream byte %lld wrong", bad);
	s_recvd += io->rlen;
	CHECK_EQ(rl_conn_consume(t->w, s_slot, s_gen, io->rlen), 0);
	CHECK_EQ(io->rlen, 0);
	T_WAIT(t, receiving_again, 10);
	CHECK_EQ(t_count(t, RL_EV_RECV, s_slot, s_gen), 1);

	/* consuming as it arrives; every byte in order */
	s_consuming = 1;
	t_consume_stream(t->w, s_slot, s_gen, SEED_IN, &s_recvd);
	T_WAIT(t, all_received_and_closed, 30);
	CHECK_EQ(peer.outoff, RECV_TOTAL);
	CHECK_EQ(rl_worker_metrics(t->w)->bytes_in, RECV_TOTAL);
	close(peer.fd);
	free(out);
	t_check_idle(t);
}

static int paused_closed(struct t_ctx *t)
{
	return t_count(t, RL_EV_CLOSED, s_slot, s_gen) == 1 && (peer.err || peer.eof);
}

/* A connection paused on a full window closes (either way) with its
 * unconsumed bytes freed; the writing peer is cut off. */
static void close_paused(struct t_ctx *t, int how)
{
	phase = 2;
	s_slot = T_ANY;
	s_consuming = 0;
	static uint8_t out[8u << 20];
	t_pattern(out, sizeof(out), SEED_IN, 0);
	t_peer_init(&peer, t_tcp_connect("127.0.0.1", t->port, 1));
	peer.out = out;
	peer.outlen = sizeof(out);
	T_WAIT(t, accepted, 10);
	uint64_t pauses = rl_worker_metrics(t->w)->recv_pauses;
	last_progress = UINT64_MAX;
	T_WAIT(t, recv_stalled, 20);
	CHECK_GT(rl_worker_metrics(t->w)->recv_pauses, pauses);
	CHECK_GE(io->rlen, WINDOW);
	CHECK_GT(rl_worker_metrics(t->w)->accum_bytes, 0);
	CHECK_EQ(rl_conn_close(t->w, s_slot, s_gen, how), 0);
	T_WAIT(t, paused_closed, 10);
	/* unread bytes on a closed socket make the kernel reset the peer */
	ASSERT(peer.err == ECONNRESET || peer.err == EPIPE || peer.eof,
	       "writing peer after close(%d): %s, eof %d", how, strerror(peer.err), peer.eof);
	CHECK_EQ(rl_worker_metrics(t->w)->accum_bytes, 0);
	close(peer.fd);
	peer.fd = -1;
	t_check_idle(t);
}

int main(void)
{
	struct rl_config cfg;
	t_config_small(&cfg);
	cfg.recv_window = WINDOW;
	cfg.send_high_watermark = HIGH;
	cfg.send_low_watermark = LOW;
	/* the pool holds a full window of queued bytes: no heap chunks needed */
	CHECK_GT((uint64_t)cfg.send_slots * cfg.send_slot_size, HIGH + PIECE + cfg.send_slot_size);
	struct t_ctx t;
	t_init(&t, &cfg);
	t.on_event = on_event;
	t.pump = pump;
	t_listen(&t, NULL);

	slow_reader(&t);
	slow_consumer(&t);
	close_paused(&t, RL_CLOSE_GRACEFUL);
	close_paused(&t, RL_CLOSE_RESET);
	t_finish(&t);
	return 0;
}
