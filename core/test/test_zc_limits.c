/* SPDX-License-Identifier: MIT */
/*
 * test_zc_limits - guarded sends (rl_conn_sendv) at the edges of what the
 * core accepts (see zc_helpers.h for the guard rules):
 *  B. misuse: unknown / freed regions, slices outside a region (-ERANGE with
 *     nothing queued and no guard), bad kinds, stale names, empty sends,
 *     zero-length and whole-region parts.
 *  E. a slab of 2 entries and many guarded sends queued at once: parts that
 *     find no entry are copied (zc_fallbacks) and reported at once, bytes
 *     stay in order.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "zc_helpers.h"

/* ---- B: misuse ---- */

static void phase_b(struct t_ctx *t)
{
	struct sconn c;
	conn_open(t, &c, 12, 0);
	struct spec s[4];
	struct rl_part p;
	uint8_t buf[16] = { 0 };

	/* unknown regions */
	CHECK_EQ(rl_region_free(t->w, -1), -ENOENT);
	CHECK_EQ(rl_region_free(t->w, 5), -ENOENT);
	CHECK_EQ(rl_region_free(t->w, T_REGIONS), -ENOENT);
	CHECK_EQ(rl_region_free(t->w, 100000), -ENOENT);
	CHECK_EQ(rl_region_inflight(t->w, -1), -ENOENT);
	CHECK_EQ(rl_region_inflight(t->w, 5), -ENOENT);
	CHECK_EQ(rl_region_inflight(t->w, 100000), -ENOENT);
	void *ptr = NULL;
	CHECK_EQ(rl_region_new(t->w, 0, &ptr), -EINVAL);

	struct reg r;
	region_new(t, &r, 3 * 4096);
	/* a valid prefix, then a slice outside the region: nothing queued */
	const struct {
		size_t off;   /* from the region base, may be "negative" */
		int before;   /* the slice starts before the base */
		uint32_t len;
	} bad[] = {
		{ 3 * 4096 - 10, 0, 20 },  /* runs past the end */
		{ 3 * 4096, 0, 1 },        /* starts at the end */
		{ 0, 0, 3 * 4096 + 1 },    /* one byte too long */
		{ 1, 1, 1 },               /* one byte before the base */
		{ 4096, 1, 8192 },         /* starts before, ends inside */
		{ 100, 0, UINT32_MAX },    /* absurd length */
		{ 1u << 30, 0, 4096 },     /* far beyond */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		/* built by hand: sendv() cannot name a slice outside r */
		struct rl_part parts[4];
		uint8_t *pin = malloc(5000);
		CHECK(pin != NULL);
		parts[0] = (struct rl_part){ .ptr = buf, .len = 10, .region = RL_PART_COPY };
		parts[1] = (struct rl_part){ .ptr = pin, .len = 5000, .region = RL_PART_PINNED,
					     .token = next_tok };
		parts[2] = (struct rl_part){ .ptr = r.base, .len = 5000, .region = r.id,
					     .token = next_tok + 1 };
		const uint8_t *bp = bad[i].before ? r.base - bad[i].off : r.base + bad[i].off;
		parts[3] = (struct rl_part){ .ptr = bp, .len = bad[i].len, .region = r.id,
					     .token = next_tok + 2 };
		next_tok += 3; /* never marked used: any guard event for them fails */
		const struct rl_conn_io *io = rl_conn_io(t->w, c.slot);
		uint32_t unsent0 = io->unsent;
		struct rl_metrics *m = rl_worker_metrics(t->w);
		uint64_t q0 = m->send_bytes_queued, g0 = m->guards_outstanding;
		int rc = rl_conn_sendv(t->w, c.slot, c.gen, parts, 4);
		ASSERT(rc == -ERANGE, "slice %zu: rl_conn_sendv %d (%s), want -ERANGE", i, rc,
		       rl_strerror(rc));
		m = rl_worker_metrics(t->w);
		CHECK_EQ(io->unsent, unsent0);
		CHECK_EQ(m->send_bytes_queued, q0);
		CHECK_EQ(m->guards_outstanding, g0);
		CHECK_EQ(m->slab_used, 0);
		CHECK_EQ(rl_region_inflight(t->w, r.id), 0);
		free(pin);
	}
	/* unknown region id, bad part kind */
	p = (struct rl_part){ .ptr = buf, .len = 16, .region = 7, .token = next_tok++ };
	CHECK_EQ(rl_conn_sendv(t->w, c.slot, c.gen, &p, 1), -ENOENT);
	p = (struct rl_part){ .ptr = buf, .len = 16, .region = T_REGIONS + 1, .token = next_tok++ };
	CHECK_EQ(rl_conn_sendv(t->w, c.slot, c.gen, &p, 1), -ENOENT);
	p = (struct rl_part){ .ptr = buf, .len = 16, .region = -3, .token = next_tok++ };
	CHECK_EQ(rl_conn_sendv(t->w, c.slot, c.gen, &p, 1), -EINVAL);
	/* bad arguments and stale names */
	CHECK_EQ(rl_conn_sendv(t->w, c.slot, c.gen, NULL, 1), -EINVAL);
	CHECK_EQ(rl_conn_sendv(t->w, c.slot, c.gen, &p, -1), -EINVAL);
	p = (struct rl_part){ .ptr = buf, .len = 16, .region = RL_PART_COPY };
	CHECK_EQ(rl_conn_sendv(t->w, c.slot, c.gen + 1, &p, 1), -ESTALE);
	/* an empty send queues nothing */
	CHECK_EQ(rl_conn_sendv(t->w, c.slot, c.gen, NULL, 0), 0);
	CHECK_EQ(rl_conn_io(t->w, c.slot)->unsent, 0);
	CHECK_EQ(rl_worker_metrics(t->w)->slab_used, 0);

	/* a freed region is unknown */
	struct reg gone;
	region_new(t, &gone, 4096);
	int gone_id = gone.id;
	region_free(t, &gone);
	p = (struct rl_part){ .ptr = gone.base, .len = 16, .region = gone_id, .token = next_tok++ };
	CHECK_EQ(rl_conn_sendv(t->w, c.slot, c.gen, &p, 1), -ENOENT);

	/* the rejected sends put nothing on the wire: the stream goes on at
	 * offset 0 with a valid send (and no guard event for any rejected
	 * token fails on_guard) */
	s[0] = (struct spec){ K_COPY, 10 };
	s[1] = (struct spec){ K_PINNED, 5000 };
	s[2] = (struct spec){ K_REGION, 5000 };
	CHECK_EQ(sendv(t, &c, &r, s, 3, c.gen, 1, 0), 0);
	poll_immediate(t);
	T_WAIT(t, delivered, 10);

	/* a whole region in one part, and a zero-length guarded part (below
	 * the threshold: copied, reported at once, harmless) */
	r.off = 0;
	s[0] = (struct spec){ K_REGION, 3 * 4096 };
	CHECK_EQ(sendv(t, &c, &r, s, 1, c.gen, 1, 0), 0);
	poll_immediate(t);
	T_WAIT(t, delivered, 10);
	r.off = 0;
	s[0] = (struct spec){ K_REGION, 0 };
	CHECK_EQ(sendv(t, &c, &r, s, 1, c.gen, 1, 0), 0);
	poll_immediate(t);
	s[0] = (struct spec){ K_COPY, 0 };
	s[1] = (struct spec){ K_PINNED, 0 };
	s[2] = (struct spec){ K_COPY, 5 };
	CHECK_EQ(sendv(t, &c, &r, s, 3, c.gen, 1, 0), 0);
	poll_immediate(t);
	T_WAIT(t, delivered, 10);
	const struct rl_conn_io *io = rl_conn_io(t->w, c.slot);
	ASSERT(io->serr == 0, "zero-length parts broke the connection: serr %s",
	       rl_strerror(io->serr));
	CHECK_EQ(io->unsent, 0);
	check_guards_idle(t);
	region_free(t, &r);

	CHECK_EQ(rl_conn_close(t->w, c.slot, c.gen, RL_CLOSE_GRACEFUL), 0);
	T_WAIT(t, server_closed, 10);
	/* a closed connection refuses */
	p = (struct rl_part){ .ptr = buf, .len = 16, .region = RL_PART_COPY };
	CHECK_EQ(rl_conn_sendv(t->w, c.slot, c.gen, &p, 1), -ESTALE);
	close(c.peer.fd);
	cur = NULL;
	t_check_idle(t);
}

/* ---- E: slab exhaustion ---- */

static void phase_e(void)
{
	struct t_ctx t;
	struct rl_config cfg;
	char msg[128];
	struct sconn c;
	struct spec s[4];
	t_config_small(&cfg);
	CHECK_EQ(rl_config_set(&cfg, "zc_threshold", THR, msg, sizeof(msg)), 0);
	CHECK_EQ(rl_config_set(&cfg, "send_slab_entries", 2, msg, sizeof(msg)), 0);
	zc_start(&t, &cfg);
	conn_open(&t, &c, 18, 0);

	struct reg r;
	region_new(&t, &r, 32u << 20);
	/* many guarded sends queued before any poll: two find slab entries */
	enum { K = 24 };
	for (int k = 0; k < K; k++) {
		s[0] = (struct spec){ K_COPY, 100 + (uint32_t)k };
		s[1] = (struct spec){ k % 3 == 2 ? K_PINNED : K_REGION, (256u << 10) + (uint32_t)k };
		s[2] = (struct spec){ K_COPY, 3000 }; /* over half a slot */
		s[3] = (struct spec){ K_COPY, 1 };
		CHECK_EQ(sendv(&t, &c, &r, s, 4, c.gen, 1, 1), 0);
	}
	struct rl_metrics *m = rl_worker_metrics(t.w);
	CHECK_GT(m->zc_fallbacks, 0);
	CHECK_LE(m->guards_outstanding, cfg.send_slab_entries);
	CHECK_EQ(m->guards_outstanding + m->zc_fallbacks, K);
	CHECK_LE(m->slab_used, cfg.send_slab_entries);
	poll_immediate(&t);
	T_WAIT(&t, delivered, 60);
	check_guards_idle(&t);

	/* sends interleaved with polls: entries free up and are reused while
	 * copies of fallen-back parts still sit in the queue */
	uint64_t fb0 = m->zc_fallbacks;
	r.off = 0;
	for (int k = 0; k < 40; k++) {
		s[0] = (struct spec){ K_COPY, 10 };
		s[1] = (struct spec){ k % 2 ? K_PINNED : K_REGION, (512u << 10) + 3 * (uint32_t)k };
		CHECK_EQ(sendv(&t, &c, &r, s, 2, c.gen, 1, 1), 0);
		poll_immediate(&t);
		pump(&t);
	}
	T_WAIT(&t, delivered, 60);
	check_guards_idle(&t);
	m = rl_worker_metrics(t.w);
	CHECK_GT(m->zc_sends, 0);
	CHECK_EQ(m->zc_notifs, m->zc_sends);
	CHECK_GE(m->zc_fallbacks, fb0);
	region_free(&t, &r);

	CHECK_EQ(rl_conn_close(t.w, c.slot, c.gen, RL_CLOSE_GRACEFUL), 0);
	T_WAIT(&t, server_closed, 10);
	close(c.peer.fd);
	cur = NULL;
	t_finish(&t);
}

int main(void)
{
	struct t_ctx t;
	zc_start(&t, NULL);
	phase_b(&t);
	t.pump = NULL;
	t_finish(&t);

	phase_e();
	return 0;
}
