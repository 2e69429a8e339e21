/* SPDX-License-Identifier: MIT */
/*
 * test_zc_slot - a guarded send's completion is accounted on the connection
 * that sent it, whatever its slot (a slab entry once kept slot 0 for every
 * send: the sender's unsent never went down, slot 0's underflowed).
 *
 * Three peers connect, so the accepted connections occupy several slots.
 * Each connection gets its own guarded send (a region slice at least
 * zc_threshold long, plus a copied header) of a different length, and asks
 * for RL_EV_SEND at 0 unsent. Then: every connection's unsent reaches 0 and
 * its RL_EV_SEND arrives, every guard comes back once, each peer receives
 * exactly its own bytes, and the worker goes back to idle.
 */
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

#define NPEERS 3
#define REGION (1u << 20)

static struct t_peer peers[NPEERS];
static uint32_t acc_slot[NPEERS], acc_gen[NPEERS];
static int naccepted;
static int guard_seen[NPEERS + 1];

static void on_event(struct t_ctx *t, const struct rl_event *e)
{
	(void)t;
	switch (e->type) {
	case RL_EV_ACCEPTED:
		CHECK_LT(naccepted, NPEERS);
		acc_slot[naccepted] = e->slot;
		acc_gen[naccepted] = e->gen;
		naccepted++;
		break;
	case RL_EV_GUARD:
		ASSERT(e->data >= 1 && e->data <= NPEERS, "guard token %u", e->data);
		guard_seen[e->data]++;
		CHECK_EQ(guard_seen[e->data], 1);
		break;
	case RL_EV_SEND:
		CHECK_EQ(e->res, 0);
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
	return t_peers_pump(peers, NPEERS);
}

static int all_accepted(struct t_ctx *t)
{
	(void)t;
	return naccepted == NPEERS;
}

static size_t expect_len[NPEERS];

static int all_done(struct t_ctx *t)
{
	for (int i = 0; i < NPEERS; i++) {
		if (rl_conn_io(t->w, acc_slot[i])->unsent != 0)
			return 0;
		if (t_count(t, RL_EV_SEND, acc_slot[i], acc_gen[i]) != 1)
			return 0;
		if (!guard_seen[i + 1])
			return 0;
	}
	size_t in = 0;
	for (int i = 0; i < NPEERS; i++)
		in += peers[i].inlen;
	return in == expect_len[0] + expect_len[1] + expect_len[2];
}

static int all_closed(struct t_ctx *t)
{
	for (int i = 0; i < NPEERS; i++)
		if (t_count(t, RL_EV_CLOSED, acc_slot[i], acc_gen[i]) != 1)
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
	if (!(rl_worker_features(t.w) & RL_FEAT_SENDMSG_ZC)) {
		t_finish(&t);
		return T_SKIP;
	}

	static uint8_t inbuf[NPEERS][3 * 65536];
	for (int i = 0; i < NPEERS; i++) {
		t_peer_init(&peers[i], t_tcp_connect("127.0.0.1", t.port, 1));
		peers[i].in = inbuf[i];
		peers[i].incap = sizeof(inbuf[i]);
	}
	T_WAIT(&t, all_accepted, 10);
	int nonzero = 0;
	for (int i = 0; i < NPEERS; i++)
		nonzero += acc_slot[i] != 0;
	CHECK_GE(nonzero, 2);

	void *base = NULL;
	int rid = CHECK_RC(rl_region_new(t.w, REGION, &base));
	t_pattern(base, REGION, 7, 0);

	/* connection i sends "hdr" + bytes [i * 65536, i * 65536 + len_i) of the
	 * region, len_i = 8192 * (i + 1) (all above zc_threshold) */
	for (int i = 0; i < NPEERS; i++) {
		uint32_t len = 8192u * (uint32_t)(i + 1);
		struct rl_part parts[2] = {
			{ .ptr = "hdr", .len = 3, .region = RL_PART_COPY },
			{ .ptr = (uint8_t *)base + (size_t)i * 65536, .len = len, .region = rid,
			  .token = (uint32_t)i + 1 },
		};
		CHECK_EQ(rl_conn_sendv(t.w, acc_slot[i], acc_gen[i], parts, 2), 0);
		CHECK_EQ(rl_conn_want_send(t.w, acc_slot[i], acc_gen[i], 0), 0);
		expect_len[i] = 3 + len;
	}
	T_WAIT(&t, all_done, 10);

	/* each peer got exactly one connection's bytes; match them up by length */
	for (int i = 0; i < NPEERS; i++) {
		int k = -1;
		for (int j = 0; j < NPEERS; j++)
			if (peers[i].inlen == expect_len[j])
				k = j;
		ASSERT(k >= 0, "peer %d received %zu bytes", i, peers[i].inlen);
		CHECK(memcmp(peers[i].in, "hdr", 3) == 0);
		CHECK(memcmp(peers[i].in + 3, (uint8_t *)base + (size_t)k * 65536,
			     expect_len[k] - 3) == 0);
	}
	struct rl_metrics *m = rl_worker_metrics(t.w);
	CHECK_EQ(m->guards_outstanding, 0);
	CHECK_EQ(m->send_bytes_queued, 0);
	CHECK_EQ(rl_region_inflight(t.w, rid), 0);
	CHECK_EQ(rl_region_free(t.w, rid), 0);

	for (int i = 0; i < NPEERS; i++) {
		CHECK_EQ(rl_conn_close(t.w, acc_slot[i], acc_gen[i], RL_CLOSE_GRACEFUL), 0);
		close(peers[i].fd);
		peers[i].fd = -1;
	}
	T_WAIT(&t, all_closed, 10);
	t_finish(&t);
	return 0;
}
