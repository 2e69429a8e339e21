/* SPDX-License-Identifier: MIT */
/*
 * test_zc - guarded scatter-gather sends (rl_conn_sendv) over loopback
 * arrive byte-exact and every guard is accounted (see zc_helpers.h for the
 * stream and the guard rules every send here is checked against).
 *
 * Sizes 1 B .. 16 MiB on one connection, mixed part kinds, sends with more
 * iovecs (> 16) and guards (> 8) than one slab entry holds, copied parts
 * larger than half a copy slot, several sends queued before a poll; then
 * the zc metrics. Run twice, the second time with one event per poll (see
 * main).
 *
 * test_zc_close: resets, closes and teardown with guarded sends in flight.
 * test_zc_limits: misuse (regions, bad slices) and slab exhaustion.
 */
#include <unistd.h>

#include "zc_helpers.h"

/* ---- A: ordered mixed sends ---- */

static void send_case(struct t_ctx *t, struct sconn *c, const struct spec *s, int n)
{
	struct reg r;
	region_new(t, &r, region_bytes(s, n));
	CHECK_EQ(sendv(t, c, &r, s, n, c->gen, 1, 0), 0);
	poll_immediate(t);
	T_WAIT(t, delivered, 60);
	CHECK_EQ(c->peer.err, 0);
	const struct rl_conn_io *io = rl_conn_io(t->w, c->slot);
	CHECK_EQ(io->unsent, 0);
	CHECK_EQ(io->serr, 0);
	check_guards_idle(t);
	region_free(t, &r);
}

static void phase_a(struct t_ctx *t, uint32_t seed)
{
	struct sconn c;
	uint64_t out0 = rl_worker_metrics(t->w)->bytes_out;
	conn_open(t, &c, seed, 0);
	struct spec s[MAXPARTS];
	uint64_t rs = 1234;

	/* 1 byte, a guarded part below the threshold: copied */
	s[0] = (struct spec){ K_REGION, 1 };
	send_case(t, &c, s, 1);
	/* 100 bytes of all three kinds, all copied */
	s[0] = (struct spec){ K_COPY, 40 };
	s[1] = (struct spec){ K_PINNED, 30 };
	s[2] = (struct spec){ K_REGION, 30 };
	send_case(t, &c, s, 3);
	/* at the threshold and one below */
	s[0] = (struct spec){ K_REGION, THR };
	s[1] = (struct spec){ K_PINNED, THR - 1 };
	s[2] = (struct spec){ K_PINNED, THR };
	s[3] = (struct spec){ K_REGION, THR - 1 };
	send_case(t, &c, s, 4);
	/* 20 held parts, no copies: > 16 iovecs and > 8 guards */
	for (int i = 0; i < 20; i++)
		s[i] = (struct spec){ i % 3 ? K_REGION : K_PINNED, 5000 + (uint32_t)i };
	send_case(t, &c, s, 20);
	/* 40 parts alternating copied and held: > 16 iovecs even with the
	 * copies gathered */
	for (int i = 0; i < 40; i++)
		s[i] = i % 2 ? (struct spec){ K_REGION, 4096 + 17 * (uint32_t)i }
			     : (struct spec){ K_COPY, 1 + 37 * (uint32_t)i };
	send_case(t, &c, s, 40);
	/* copied parts bigger than half a copy slot, between held ones */
	s[0] = (struct spec){ K_PINNED, 70000 };
	s[1] = (struct spec){ K_COPY, 100000 };
	s[2] = (struct spec){ K_REGION, 9000 };
	s[3] = (struct spec){ K_COPY, 3000 };
	s[4] = (struct spec){ K_COPY, 7 };
	s[5] = (struct spec){ K_REGION, 65536 };
	s[6] = (struct spec){ K_COPY, 2049 };
	send_case(t, &c, s, 7);

	static const struct {
		size_t total;
		int parts;
	} sizes[] = {
		{ 100, 5 },        { 4096, 2 },       { 5000, 3 },        { 65536, 7 },
		{ 300000, 45 },    { 1u << 20, 20 },  { 4u << 20, 30 },   { 16u << 20, 24 },
	};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		int n = plan(s, sizes[i].parts, sizes[i].total, &rs);
		send_case(t, &c, s, n);
	}

	/* several sends queued back to back before any poll, one region */
	struct reg r;
	region_new(t, &r, 8u << 20);
	for (int k = 0; k < 6; k++) {
		int n = plan(s, 12, (size_t)(k + 1) * 200000, &rs);
		CHECK_EQ(sendv(t, &c, &r, s, n, c.gen, 1, 0), 0);
	}
	poll_immediate(t);
	T_WAIT(t, delivered, 60);
	check_guards_idle(t);
	region_free(t, &r);

	struct rl_metrics *m = rl_worker_metrics(t->w);
	CHECK_GT(m->zc_sends, 0);
	CHECK_GT(m->zc_notifs, 0);
	/* no errors here: every SENDMSG_ZC had exactly one notification */
	CHECK_EQ(m->zc_notifs, m->zc_sends);
	CHECK_LE(m->zc_copied, m->zc_notifs);
	CHECK_GT(m->zc_bytes, 0);
	CHECK_LE(m->zc_bytes, m->bytes_out);
	CHECK_EQ(m->bytes_out - out0, c.queued);
	CHECK_EQ(m->zc_fallbacks, 0);
	{
		/* every entry released after its notifications is timed once */
		const struct rl_hist *h = &rl_worker_latency(t->w)->guard_hold;
		uint64_t held = 0;
		for (int i = 0; i < RL_HIST_BUCKETS; i++)
			held += h->buckets[i];
		CHECK_GT(held, 0);
		CHECK_LE(held, m->zc_sends);
	}

	CHECK_EQ(rl_conn_close(t->w, c.slot, c.gen, RL_CLOSE_GRACEFUL), 0);
	T_WAIT(t, server_closed, 10);
	close(c.peer.fd);
	cur = NULL;
	check_guards_idle(t);
	t_check_idle(t);
}

int main(void)
{
	struct t_ctx t;
	zc_start(&t, NULL);
	phase_a(&t, 11);
	/* Again with one event per poll: the reap stops at the completion that
	 * raised an event, so on_guard sees the notification count as it was
	 * when the guard was released (not after the rest of the batch). */
	t.maxev = 1;
	phase_a(&t, 19);
	t.maxev = 0;
	t.pump = NULL;
	t_finish(&t);
	return 0;
}
