/* SPDX-License-Identifier: MIT */
/*
 * test_timer - the timer heap: 100k random deadlines pop in order with their
 * tokens, cancel removes exactly the named timer, a stale id (fired or
 * cancelled) is -ENOENT and never touches a newer timer in the same record,
 * the limit is enforced; and through the worker: RL_EV_TIMER carries the id
 * and token, a blocking poll wakes for the nearest timer, cancel works.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "internal.h"

#define NT 100000

static double dl[NT];
static int ids[NT];
static uint8_t cancelled[NT];

static void test_order(void)
{
	struct rl_timers t;
	CHECK_EQ(rl__timers_init(&t, 1u << 20), 0);
	CHECK(rl__timers_next(&t) < 0);
	uint64_t rs = 12345;
	for (int i = 0; i < NT; i++) {
		/* coarse values so equal deadlines occur too */
		dl[i] = (double)(t_rand(&rs) % 50000) / 10.0;
		ids[i] = rl__timers_add(&t, dl[i], (uint32_t)i);
		CHECK_GE(ids[i], 0);
		for (int j = i - 1; j >= 0 && j > i - 4; j--)
			CHECK_NE(ids[j], ids[i]);
	}
	CHECK_EQ(t.nheap, NT);
	uint32_t token;
	/* nothing is due before the earliest deadline */
	double first = rl__timers_next(&t);
	CHECK(first >= 0);
	CHECK_EQ(rl__timers_pop_due(&t, first - 0.05, &token), -1);
	double last = -1;
	int n = 0;
	int id;
	while ((id = rl__timers_pop_due(&t, 1e9, &token)) >= 0) {
		CHECK_LT(token, NT);
		CHECK_EQ(id, ids[token]);
		ASSERT(dl[token] >= last, "popped %f after %f", dl[token], last);
		last = dl[token];
		ids[token] = -1; /* each exactly once */
		n++;
	}
	CHECK_EQ(n, NT);
	CHECK_EQ(t.nheap, 0);
	CHECK(rl__timers_next(&t) < 0);
	rl__timers_fini(&t);
}

static void test_cancel(void)
{
	struct rl_timers t;
	CHECK_EQ(rl__timers_init(&t, 1u << 20), 0);
	uint64_t rs = 777;
	memset(cancelled, 0, sizeof(cancelled));
	for (int i = 0; i < NT; i++) {
		dl[i] = (double)(t_rand(&rs) % 1000000) / 1000.0;
		ids[i] = rl__timers_add(&t, dl[i], (uint32_t)i);
		CHECK_GE(ids[i], 0);
	}
	int left = NT;
	for (int i = 0; i < NT; i++) {
		if (t_rand(&rs) & 1) {
			CHECK_EQ(rl__timers_cancel(&t, ids[i]), 0);
			/* a second cancel of the same id is stale */
			CHECK_EQ(rl__timers_cancel(&t, ids[i]), -ENOENT);
			cancelled[i] = 1;
			left--;
		}
	}
	CHECK_EQ(t.nheap, left);
	uint32_t token;
	double last = -1;
	int n = 0, id;
	/* pop in two steps: only what is due at a time */
	while ((id = rl__timers_pop_due(&t, 500.0, &token)) >= 0) {
		CHECK(!cancelled[token]);
		CHECK_EQ(id, ids[token]);
		ASSERT(dl[token] <= 500.0, "%f popped at 500", dl[token]);
		ASSERT(dl[token] >= last, "popped %f after %f", dl[token], last);
		last = dl[token];
		n++;
	}
	if (t.nheap)
		CHECK(rl__timers_next(&t) > 500.0);
	while ((id = rl__timers_pop_due(&t, 1e9, &token)) >= 0) {
		CHECK(!cancelled[token]);
		CHECK_EQ(id, ids[token]);
		ASSERT(dl[token] >= last, "popped %f after %f", dl[token], last);
		last = dl[token];
		n++;
	}
	CHECK_EQ(n, left);
	/* ids that fired are stale now */
	for (int i = 0; i < NT; i += 97)
		CHECK_EQ(rl__timers_cancel(&t, ids[i]), -ENOENT);
	CHECK_EQ(rl__timers_cancel(&t, -1), -ENOENT);
	CHECK_EQ(rl__timers_cancel(&t, 0x7fffffff), -ENOENT);
	rl__timers_fini(&t);
}

static void test_reuse_and_limit(void)
{
	struct rl_timers t;
	CHECK_EQ(rl__timers_init(&t, 4), 0);
	uint32_t token;
	/* one record reused over and over: consecutive ids differ, the old id
	 * never cancels the new timer */
	int prev = rl__timers_add(&t, 1.0, 1);
	CHECK_GE(prev, 0);
	CHECK_EQ(rl__timers_pop_due(&t, 2.0, &token), prev);
	CHECK_EQ(token, 1);
	CHECK_EQ(rl__timers_cancel(&t, prev), -ENOENT);
	for (int i = 0; i < 5000; i++) {
		int id = rl__timers_add(&t, 1.0, (uint32_t)i);
		CHECK_GE(id, 0);
		CHECK_NE(id, prev);
		CHECK_EQ(rl__timers_cancel(&t, prev), -ENOENT);
		CHECK_EQ(t.nheap, 1);
		if (i & 1) {
			CHECK_EQ(rl__timers_cancel(&t, id), 0);
		} else {
			CHECK_EQ(rl__timers_pop_due(&t, 2.0, &token), id);
			CHECK_EQ(token, (uint32_t)i);
		}
		CHECK_EQ(rl__timers_cancel(&t, id), -ENOENT);
		prev = id;
	}
	/* the limit */
	int a[4];
	for (int i = 0; i < 4; i++)
		CHECK_GE(a[i] = rl__timers_add(&t, 1.0 + i, (uint32_t)i), 0);
	CHECK_EQ(rl__timers_add(&t, 1.0, 9), -ENOSPC);
	CHECK_EQ(rl__timers_cancel(&t, a[2]), 0);
	int b = rl__timers_add(&t, 0.5, 7);
	CHECK_GE(b, 0);
	CHECK_NE(b, a[2]);
	CHECK_EQ(rl__timers_pop_due(&t, 10.0, &token), b);
	CHECK_EQ(token, 7);
	CHECK_EQ(rl__timers_pop_due(&t, 10.0, &token), a[0]);
	CHECK_EQ(rl__timers_pop_due(&t, 10.0, &token), a[1]);
	CHECK_EQ(rl__timers_pop_due(&t, 10.0, &token), a[3]);
	CHECK_EQ(rl__timers_pop_due(&t, 10.0, &token), -1);
	rl__timers_fini(&t);
}

/* ---- through the worker ---- */

static int fired_id = -1;
static uint32_t fired_token;
static int fired_count;

static void on_event(struct t_ctx *t, const struct rl_event *e)
{
	ASSERT(e->type == RL_EV_TIMER, "unexpected event %u", e->type);
	CHECK_EQ(e->res, 0);
	fired_id = (int)e->slot;
	fired_token = e->data;
	fired_count++;
}

static void test_worker(void)
{
	struct t_ctx t;
	t_init(&t, NULL);
	t.on_event = on_event;

	/* a blocking poll returns for the timer: no other event source */
	int late = CHECK_RC(rl_timer_add(t.w, 30.0, 2));
	int id = CHECK_RC(rl_timer_add(t.w, 0.05, 1234));
	CHECK_NE(late, id);
	CHECK_EQ(rl_worker_metrics(t.w)->timers_active, 2);
	double t0 = t_now();
	while (fired_count == 0) {
		ASSERT(t_now() - t0 < 10.0, "timer never fired");
		t_step(&t, -1);
	}
	double took = t_now() - t0;
	CHECK_EQ(fired_count, 1);
	CHECK_EQ(fired_id, id);
	CHECK_EQ(fired_token, 1234);
	ASSERT(took >= 0.049, "timer fired early: %.4f s", took);
	CHECK(rl_worker_now(t.w) >= t0 + 0.049);
	CHECK_EQ(rl_timer_cancel(t.w, id), -ENOENT);
	CHECK_EQ(rl_worker_metrics(t.w)->timers_active, 1);

	/* cancel: the 30 s timer never fires, a poll(0) shows nothing */
	CHECK_EQ(rl_timer_cancel(t.w, late), 0);
	CHECK_EQ(rl_timer_cancel(t.w, late), -ENOENT);
	CHECK_EQ(rl_worker_metrics(t.w)->timers_active, 0);
	CHECK_EQ(t_step(&t, 0), 0);

	/* many due at once: every one is delivered, even past one poll's
	 * event array, in deadline order */
	fired_count = 0;
	int many[600];
	for (int i = 0; i < 600; i++)
		many[i] = CHECK_RC(rl_timer_add(t.w, 0.001 * (i % 7), (uint32_t)i));
	struct rl_event ev[16];
	double deadline = t_now() + 10.0;
	int got = 0;
	while (got < 600) {
		ASSERT(t_now() < deadline, "only %d of 600 timers fired", got);
		int n = rl_worker_poll(t.w, ev, 16, 50);
		CHECK_GE(n, 0);
		CHECK_LE(n, 16);
		for (int i = 0; i < n; i++) {
			CHECK_EQ(ev[i].type, RL_EV_TIMER);
			CHECK_LT(ev[i].data, 600);
			CHECK_EQ((int)ev[i].slot, many[ev[i].data]);
			many[ev[i].data] = -1;
			got++;
		}
	}
	CHECK_EQ(rl_worker_metrics(t.w)->timers_active, 0);
	CHECK_EQ(t_step(&t, 0), 0);

	/* a negative or NaN delay means now: due at the next poll */
	fired_count = 0;
	int neg = CHECK_RC(rl_timer_add(t.w, -5.0, 7));
	int nan = CHECK_RC(rl_timer_add(t.w, __builtin_nan(""), 8));
	CHECK_NE(neg, nan);
	double t1 = t_now();
	while (fired_count < 2) {
		ASSERT(t_now() - t1 < 1.0, "immediate timers not fired");
		t_step(&t, 100);
	}
	CHECK_EQ(fired_count, 2);
	t_finish(&t);

	/* the worker's timer limit */
	struct rl_config cfg;
	t_config_small(&cfg);
	cfg.max_timers = 3;
	t_init(&t, &cfg);
	int lim[3];
	for (int i = 0; i < 3; i++)
		lim[i] = CHECK_RC(rl_timer_add(t.w, 60.0, (uint32_t)i));
	CHECK_EQ(rl_timer_add(t.w, 60.0, 9), -ENOSPC);
	CHECK_EQ(rl_timer_cancel(t.w, lim[1]), 0);
	int again = CHECK_RC(rl_timer_add(t.w, 60.0, 10));
	CHECK_NE(again, lim[1]);
	CHECK_EQ(rl_timer_cancel(t.w, lim[1]), -ENOENT);
	CHECK_EQ(rl_timer_cancel(t.w, lim[0]), 0);
	CHECK_EQ(rl_timer_cancel(t.w, lim[2]), 0);
	CHECK_EQ(rl_timer_cancel(t.w, again), 0);
	t_finish(&t);
}

int main(void)
{
	test_order();
	test_cancel();
	test_reuse_and_limit();
	test_worker();
	return 0;
}
