/* SPDX-License-Identifier: MIT */
/*
 * test_many_conns - 1000 concurrent connections on one worker, each echoing
 * its own message, with a provided-buffer ring far smaller than the number
 * of connections (64 buffers), so receives run dry and must be re-armed.
 * Run twice: with roomy rings and event arrays, then with a 16-entry SQ
 * (CQ 64, so completions overflow) and 3 events per poll (completions and
 * events wait for later polls), then with every third peer resetting after
 * sending half of its message.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

#define NCONN 1000

static struct t_peer peers[NCONN];
static uint8_t *out[NCONN], *in[NCONN];
static size_t len[NCONN];
static int accepted, closed;

static void on_event(struct t_ctx *t, const struct rl_event *e)
{
	accepted += e->type == RL_EV_ACCEPTED;
	t_echo_event(t, e);
	closed += e->type == RL_EV_CLOSED;
}

static int chaos; /* every third peer resets after sending half */
static int was_reset[NCONN];

static int resets(int i)
{
	return chaos && i % 3 == 0;
}

static int pump(struct t_ctx *t)
{
	size_t moved = 0;
	for (int i = 0; i < NCONN; i++) {
		if (peers[i].eof || was_reset[i])
			continue;
		moved += t_peer_pump(&peers[i]);
		if (resets(i) && peers[i].outoff == peers[i].outlen) {
			t_close_reset(peers[i].fd);
			peers[i].fd = -1;
			was_reset[i] = 1;
			moved++;
		}
	}
	return moved > 0;
}

static int all_done(struct t_ctx *t)
{
	for (int i = 0; i < NCONN; i++)
		if (!peers[i].eof && !was_reset[i])
			return 0;
	return closed == NCONN;
}

static int all_open(struct t_ctx *t)
{
	return rl_worker_metrics(t->w)->conns_open == NCONN;
}

static void run(uint32_t sq_entries, int maxev, int with_resets)
{
	chaos = with_resets;
	memset(was_reset, 0, sizeof(was_reset));
	struct rl_config cfg;
	t_config_small(&cfg);
	cfg.max_connections = 1024;
	cfg.sq_entries = sq_entries;
	struct t_ctx t;
	t_init(&t, &cfg);
	t.on_event = on_event;
	t.maxev = maxev;
	t_listen(&t, NULL);
	accepted = closed = 0;

	uint64_t total = 0;
	for (int i = 0; i < NCONN; i++) {
		/* distinct lengths and contents: a mix-up between connections shows */
		len[i] = 1 + (size_t)(i * 7919) % 6000;
		out[i] = malloc(len[i]);
		in[i] = malloc(len[i]);
		CHECK(out[i] && in[i]);
		t_pattern(out[i], len[i], (uint32_t)(1000 + i), 0);
		total += len[i];
	}
	/* every connection is open before any byte is sent */
	for (int i = 0; i < NCONN; i++) {
		t_peer_init(&peers[i], t_tcp_connect("127.0.0.1", t.port, 1));
		if (i % 100 == 99)
			t_step(&t, 0);
	}
	T_WAIT(&t, all_open, 10);
	CHECK_EQ(accepted, NCONN);

	t.pump = pump;
	for (int i = 0; i < NCONN; i++) {
		peers[i].out = out[i];
		peers[i].outlen = resets(i) ? len[i] / 2 + 1 : len[i];
		peers[i].in = in[i];
		peers[i].incap = len[i];
		peers[i].shut_wr = 1;
	}
	T_WAIT(&t, all_done, 30);
	uint64_t sent = 0;
	for (int i = 0; i < NCONN; i++) {
		sent += peers[i].outoff;
		if (was_reset[i]) {
			/* what came back before the reset is a prefix of the echo */
			CHECK(memcmp(in[i], out[i], peers[i].inlen) == 0);
			free(in[i]);
			free(out[i]);
			continue;
		}
		ASSERT(peers[i].err == 0, "peer %d: %s", i, strerror(peers[i].err));
		ASSERT(peers[i].inlen == len[i], "peer %d: %zu of %zu bytes", i, peers[i].inlen,
		       len[i]);
		ASSERT(memcmp(in[i], out[i], len[i]) == 0, "peer %d: echo differs", i);
		close(peers[i].fd);
		free(in[i]);
		free(out[i]);
	}
	const struct rl_metrics *m = rl_worker_metrics(t.w);
	CHECK_EQ(m->conns_accepted, NCONN);
	CHECK_EQ(m->conns_closed, NCONN);
	CHECK_EQ(m->conns_refused, 0);
	if (chaos) {
		CHECK_LE(m->bytes_in, sent);
		CHECK_LE(m->bytes_out, m->bytes_in);
	} else {
		CHECK_EQ(m->bytes_in, total);
		CHECK_EQ(m->bytes_out, total);
	}
	fprintf(stderr, "many_conns: sq %u, %d events/poll%s: %d connections, %llu bytes, "
		"recv_enobufs %llu\n", sq_entries, maxev, chaos ? ", resets" : "", NCONN,
		(unsigned long long)total,
		(unsigned long long)m->recv_enobufs);
	t.pump = NULL;
	t_finish(&t);
}

int main(void)
{
	run(256, T_MAX_EV, 0);
	run(16, 3, 0);
	run(64, 64, 1);
	return 0;
}
