/* SPDX-License-Identifier: MIT */
/*
 * test_latency - the loop's latency histograms (rl_worker_latency): the
 * log2 bucket of a value, the loop histogram counting one value per poll
 * after the first, and accept-to-first-byte counting each accepted
 * connection once, at its first received bytes, not before. (Guard hold
 * time is checked by test_zc, where zero-copy sends complete.)
 */
#include <string.h>
#include <unistd.h>

#include "helpers.h"

static uint64_t count(const struct rl_hist *h)
{
	uint64_t n = 0;
	for (int i = 0; i < RL_HIST_BUCKETS; i++)
		n += h->buckets[i];
	return n;
}

static void buckets(void)
{
	struct rl_hist h;
	memset(&h, 0, sizeof(h));
	rl_hist_observe(&h, 0);
	rl_hist_observe(&h, 1023);           /* below 2^10 ns: bucket 0 */
	CHECK_EQ(h.buckets[0], 2);
	rl_hist_observe(&h, 1024);           /* [2^10, 2^11): bucket 1 */
	rl_hist_observe(&h, 2047);
	CHECK_EQ(h.buckets[1], 2);
	rl_hist_observe(&h, 2048);
	CHECK_EQ(h.buckets[2], 1);
	rl_hist_observe(&h, (1ull << 33) - 1); /* the last finite bucket: 2^33 ns */
	CHECK_EQ(h.buckets[RL_HIST_BUCKETS - 2], 1);
	rl_hist_observe(&h, 1ull << 33);     /* beyond: +Inf */
	rl_hist_observe(&h, UINT64_MAX >> 1);
	CHECK_EQ(h.buckets[RL_HIST_BUCKETS - 1], 2);
	CHECK_EQ(count(&h), 8);
	CHECK_EQ(h.sum_ns, 0 + 1023 + 1024 + 2047 + 2048 + ((1ull << 33) - 1) + (1ull << 33) +
			   (UINT64_MAX >> 1));
}

static struct t_peer peer;
static int pump(struct t_ctx *t)
{
	(void)t;
	return t_peers_pump(&peer, 1);
}

static void on_event(struct t_ctx *t, const struct rl_event *e)
{
	t_echo_event(t, e);
}

static int accepted(struct t_ctx *t)
{
	return t_count(t, RL_EV_ACCEPTED, T_ANY, T_ANY) == 1;
}

static int echoed(struct t_ctx *t)
{
	(void)t;
	return peer.inlen == 5;
}

static int closed(struct t_ctx *t)
{
	return t_count(t, RL_EV_CLOSED, T_ANY, T_ANY) == 1 && peer.eof;
}

int main(void)
{
	struct t_ctx t;
	uint8_t in[16];

	buckets();

	t_init(&t, NULL);
	const struct rl_latency *lat = rl_worker_latency(t.w);
	CHECK_EQ(count(&lat->loop), 0);
	t_step(&t, 0);                       /* the first poll has no previous one */
	CHECK_EQ(count(&lat->loop), 0);
	t_step(&t, 0);
	t_step(&t, 0);
	CHECK_EQ(count(&lat->loop), 2);

	t.on_event = on_event;
	t.pump = pump;
	t_listen(&t, NULL);
	t_peer_init(&peer, t_tcp_connect("127.0.0.1", t.port, 1));
	peer.in = in;
	peer.incap = sizeof(in);
	T_WAIT(&t, accepted, 10);
	/* accepted, nothing received yet: not counted */
	CHECK_EQ(count(&lat->first_byte), 0);
	peer.out = (const uint8_t *)"hello";
	peer.outlen = 5;
	T_WAIT(&t, echoed, 10);
	CHECK_EQ(count(&lat->first_byte), 1);
	peer.shut_wr = 1;
	T_WAIT(&t, closed, 10);
	/* later receives (the EOF) do not count again */
	CHECK_EQ(count(&lat->first_byte), 1);
	close(peer.fd);
	CHECK_GT(count(&lat->loop), 2);
	t_finish(&t);
	return 0;
}
