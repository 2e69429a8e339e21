/* SPDX-License-Identifier: MIT */
/*
 * test_slab_wait - rl_conn_sendv_upto and rl_worker_want_slab: with every
 * send slab entry in use, a guarded part is not copied (zc_fallbacks stays
 * 0, no heap chunk appears): the call stops before it and says how many
 * parts it queued. rl_worker_want_slab then arms exactly one RL_EV_SLAB,
 * raised when an entry comes free (the peer reads), after which the rest is
 * sent and the peer gets the whole stream in order.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

#define SEED 77u
#define THR 4096u

static struct t_peer peer;
static uint32_t slot, gen;
static int accepted_n, closed_n, guards_n;
static size_t total;

static void on_event(struct t_ctx *t, const struct rl_event *e)
{
	(void)t;
	switch (e->type) {
	case RL_EV_ACCEPTED:
		slot = e->slot;
		gen = e->gen;
		accepted_n++;
		break;
	case RL_EV_CLOSED:
		closed_n++;
		break;
	case RL_EV_GUARD:
		ASSERT(e->data >= 1 && e->data <= 3, "guard token %u", e->data);
		guards_n++;
		break;
	case RL_EV_SLAB:
		break;
	default:
		FAIL("unexpected event %u", e->type);
	}
}

static int pump(struct t_ctx *t)
{
	(void)t;
	return t_peers_pump(&peer, 1);
}

static int accepted(struct t_ctx *t) { (void)t; return accepted_n == 1; }
static int slab_event(struct t_ctx *t) { return t->nevents[RL_EV_SLAB] == 1; }
static int all_done(struct t_ctx *t) { (void)t; return peer.inlen == total && guards_n == 3; }
static int closed(struct t_ctx *t) { (void)t; return closed_n == 1 && peer.eof; }

static int send_one(struct t_ctx *t, int rid, uint8_t *p, uint32_t len, uint32_t token)
{
	struct rl_part part = { .ptr = p, .len = len, .region = rid, .token = token };
	return rl_conn_sendv_upto(t->w, slot, gen, &part, 1);
}

int main(void)
{
	struct t_ctx t;
	struct rl_config cfg;
	char msg[128];
	t_config_small(&cfg);
	CHECK_EQ(rl_config_set(&cfg, "zc_threshold", THR, msg, sizeof(msg)), 0);
	CHECK_EQ(rl_config_set(&cfg, "send_slab_entries", 2, msg, sizeof(msg)), 0);
	t_init(&t, &cfg);
	if (!(rl_worker_features(t.w) & RL_FEAT_SENDMSG_ZC)) {
		rl_worker_destroy(t.w);
		return T_SKIP;
	}
	t.on_event = on_event;
	t.pump = pump;
	t_listen(&t, NULL);

	/* a peer that reads nothing yet: the first part, bigger than what the
	 * kernel can buffer, keeps its entry in flight */
	t_peer_init(&peer, t_tcp_connect_rcvbuf("127.0.0.1", t.port, 1, 4096));
	peer.no_read = 1;
	T_WAIT(&t, accepted, 10);

	uint32_t a = (uint32_t)t_tcp_wmem_max() + (1u << 20), b = 65536, c = 65536;
	total = (size_t)a + b + c;
	void *base = NULL;
	int rid = CHECK_RC(rl_region_new(t.w, total, &base));
	uint8_t *p = base;
	t_pattern(p, total, SEED, 0);
	peer.in = malloc(total);
	CHECK(peer.in != NULL);
	peer.incap = total;

	struct rl_metrics *m = rl_worker_metrics(t.w);
	CHECK_EQ(rl_worker_want_slab(t.w), 2);
	CHECK_EQ(send_one(&t, rid, p, a, 1), 1);
	CHECK_EQ(send_one(&t, rid, p + a, b, 2), 1);
	/* both entries in use: the third part waits, it is not copied */
	CHECK_EQ(send_one(&t, rid, p + a + b, c, 3), 0);
	m = rl_worker_metrics(t.w);
	CHECK_EQ(m->slab_waits, 1);
	CHECK_EQ(m->zc_fallbacks, 0);
	CHECK_EQ(m->slab_used, 2);
	CHECK_EQ(m->send_heap_bytes, 0);
	CHECK_EQ(m->guards_outstanding, 2);
	CHECK_EQ(rl_conn_io(t.w, slot)->unsent, (long long)a + b);
	CHECK_EQ(rl_worker_want_slab(t.w), 0);
	CHECK_EQ(rl_worker_want_slab(t.w), 0); /* armed once: still one event */
	for (int i = 0; i < 5; i++)
		t_step(&t, 0);
	CHECK_EQ(t.nevents[RL_EV_SLAB], 0);

	/* the peer reads: the first entry completes and frees */
	peer.no_read = 0;
	T_WAIT(&t, slab_event, 20);
	const struct rl_event *ev = t_last(&t, RL_EV_SLAB, T_ANY, T_ANY);
	CHECK_GE(ev->data, 1);
	CHECK_GE(rl_worker_want_slab(t.w), 1);
	CHECK_EQ(send_one(&t, rid, p + a + b, c, 3), 1);
	T_WAIT(&t, all_done, 20);
	CHECK_EQ(t_pattern_find_bad(peer.in, total, SEED, 0), -1);
	CHECK_EQ(t.nevents[RL_EV_SLAB], 1);
	m = rl_worker_metrics(t.w);
	CHECK_EQ(m->zc_fallbacks, 0);
	CHECK_EQ(m->slab_waits, 1);

	CHECK_EQ(rl_conn_close(t.w, slot, gen, RL_CLOSE_GRACEFUL), 0);
	T_WAIT(&t, closed, 10);
	close(peer.fd);
	peer.fd = -1;
	CHECK_EQ(rl_region_free(t.w, rid), 0);
	free(peer.in);
	t_finish(&t);
	return 0;
}
