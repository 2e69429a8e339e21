/* SPDX-License-Identifier: MIT */
/*
 * test_probe - rl_conn_probe, the graceful stop's question "does the kernel
 * hold unread bytes for this connection?". Its contract: when RL_EV_PENDING
 * says 0, every byte the peer had written before the probe is in io->rlen
 * (nothing is left in the kernel to serve); when it says 1, asking for more
 * brings more. Checked with an idle connection, a small write, a write far
 * past a 1 KiB receive window (most of it waits in the kernel, so the
 * answer must be 1), EOF, a probe asked twice, and the refusals.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

static uint32_t s_slot = T_ANY, s_gen;
static int peer_fd = -1;

static void on_event(struct t_ctx *t, const struct rl_event *e)
{
	(void)t;
	switch (e->type) {
	case RL_EV_ACCEPTED:
		CHECK_EQ(s_slot, T_ANY);
		s_slot = e->slot;
		s_gen = e->gen;
		break;
	case RL_EV_PENDING:
	case RL_EV_RECV:
		break; /* looked at through the log */
	case RL_EV_CLOSED:
		CHECK_EQ(e->res, 0);
		break;
	default:
		FAIL("unexpected event %u", e->type);
	}
}

static int accepted(struct t_ctx *t)
{
	(void)t;
	return s_slot != T_ANY;
}

static int npending_want;

static int answered(struct t_ctx *t)
{
	return t_count(t, RL_EV_PENDING, s_slot, s_gen) >= npending_want;
}

/* Probe and wait for the answer; returns its res. */
static int probe(struct t_ctx *t)
{
	npending_want = t_count(t, RL_EV_PENDING, s_slot, s_gen) + 1;
	CHECK_EQ(rl_conn_probe(t->w, s_slot, s_gen), 0);
	T_WAIT(t, answered, 10);
	return t_last(t, RL_EV_PENDING, s_slot, s_gen)->res;
}

static uint32_t want_len;

static int has_want_len(struct t_ctx *t)
{
	return rl_conn_io(t->w, s_slot)->rlen >= want_len;
}

/* The receive paused on a full window and nothing of ours is in flight
 * (the listener's accept is the one op left). */
static int paused(struct t_ctx *t)
{
	return rl_conn_io(t->w, s_slot)->rlen >= t->cfg.recv_window &&
	       rl_worker_metrics(t->w)->ops_inflight == 1;
}

static void write_all(const void *p, size_t n)
{
	CHECK_EQ(write(peer_fd, p, n), (ssize_t)n);
}

/* Consume and probe until the probe says nothing is left: by then every
 * one of `total` written bytes must have been seen. Returns how many
 * probes said 1. */
static int drain_all(struct t_ctx *t, size_t total, uint32_t seed)
{
	size_t seen = 0;
	int yes = 0;
	uint8_t *buf = malloc(total);
	CHECK(buf != NULL);
	for (;;) {
		const struct rl_conn_io *io = rl_conn_io(t->w, s_slot);
		uint32_t n = io->rlen;
		CHECK_LE(seen + n, total);
		if (n) /* rdata is NULL while nothing is buffered */
			memcpy(buf + seen, io->rdata, n);
		seen += n;
		CHECK_EQ(rl_conn_consume(t->w, s_slot, s_gen, n), 0);
		int res = probe(t);
		yes += res == 1;
		/* bytes the receive took after the peek are in by now (the
		 * answer may come first in the same batch): look again */
		if (rl_conn_io(t->w, s_slot)->rlen > 0 && res == 1)
			continue;
		if (res == 0) {
			/* nothing in the kernel: all of it is buffered */
			n = rl_conn_io(t->w, s_slot)->rlen;
			if (n)
				memcpy(buf + seen, rl_conn_io(t->w, s_slot)->rdata, n);
			seen += n;
			CHECK_EQ(rl_conn_consume(t->w, s_slot, s_gen, n), 0);
			break;
		}
		CHECK_EQ(res, 1);
		/* more is there: asking for any more brings it */
		want_len = rl_conn_io(t->w, s_slot)->rlen + 1;
		if (rl_conn_want_recv(t->w, s_slot, s_gen, want_len) == 0)
			T_WAIT(t, has_want_len, 10);
	}
	CHECK_EQ(seen, total);
	CHECK_EQ(t_pattern_find_bad(buf, total, seed, 0), -1);
	free(buf);
	return yes;
}

int main(void)
{
	struct t_ctx t;
	struct rl_config cfg;
	t_config_small(&cfg);
	cfg.recv_window = 1024;       /* the minimum: most of a write waits in the kernel */
	cfg.recv_buffer_size = 256;
	t_init(&t, &cfg);
	t.on_event = on_event;
	t_listen(&t, NULL);
	peer_fd = t_tcp_connect("127.0.0.1", t.port, 0);
	T_WAIT(&t, accepted, 10);

	/* idle: nothing there */
	CHECK_EQ(probe(&t), 0);
	CHECK_EQ(rl_conn_io(t.w, s_slot)->rlen, 0);

	/* a small write: announced, or already buffered */
	uint8_t small[300];
	t_pattern(small, sizeof(small), 1, 0);
	write_all(small, sizeof(small));
	drain_all(&t, sizeof(small), 1);

	/* far past the window: once the receive paused with the window full,
	 * the rest is in the kernel and the probe must say so */
	size_t big = 32 * 1024;
	uint8_t *b = malloc(big);
	CHECK(b != NULL);
	t_pattern(b, big, 2, 0);
	write_all(b, big);
	free(b);
	T_WAIT(&t, paused, 10);
	CHECK_LT(rl_conn_io(t.w, s_slot)->rlen, big);
	CHECK_GT(drain_all(&t, big, 2), 0);

	/* asked twice before the answer: one probe, one answer serves both */
	uint64_t ops = rl_worker_metrics(t.w)->ops_inflight;
	CHECK_EQ(rl_conn_probe(t.w, s_slot, s_gen), 0);
	CHECK_EQ(rl_conn_probe(t.w, s_slot, s_gen), 0);
	CHECK_EQ(rl_worker_metrics(t.w)->ops_inflight, ops + 1);
	npending_want = t_count(&t, RL_EV_PENDING, s_slot, s_gen) + 1;
	T_WAIT(&t, answered, 10);
	CHECK_EQ(t_last(&t, RL_EV_PENDING, s_slot, s_gen)->res, 0);
	t_step(&t, 0);
	CHECK_EQ(t_count(&t, RL_EV_PENDING, s_slot, s_gen), npending_want);

	/* EOF: nothing more will come */
	CHECK_EQ(shutdown(peer_fd, SHUT_WR), 0);
	CHECK_EQ(probe(&t), 0);

	/* refusals: a closing connection, a stale one */
	CHECK_EQ(rl_conn_close(t.w, s_slot, s_gen, RL_CLOSE_GRACEFUL), 0);
	CHECK_EQ(rl_conn_probe(t.w, s_slot, s_gen), -EPIPE);
	CHECK_EQ(rl_conn_probe(t.w, s_slot, s_gen + 1), -ESTALE);
	close(peer_fd);
	t_finish(&t);
	return 0;
}
