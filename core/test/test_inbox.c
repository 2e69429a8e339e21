/* SPDX-License-Identifier: MIT */
/*
 * test_inbox.c - messages between workers on two threads: every message
 * arrives once, in order, with its bytes, whether the doorbell is an eventfd
 * write (posting from a thread without a worker) or a MSG_RING from the
 * sender's own ring; a message larger than the taker's buffer stays queued.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "helpers.h"

#define N_MSGS 2000

struct side {
	struct rl_worker *w;
	struct rl_worker *peer_w;
	uint32_t id;
	uint32_t got;          /* messages received from the peer */
	uint32_t next_expect;
	pthread_barrier_t *ready;
	int use_msg_ring;
};

static void check_msg(struct side *s, const char *buf, int n, uint32_t from, uint32_t kind)
{
	char want[64];
	int wn = snprintf(want, sizeof(want), "msg %u from %u", s->next_expect, from);
	CHECK_EQ(n, wn);
	CHECK(memcmp(buf, want, (size_t)n) == 0);
	CHECK_EQ(kind, 7u);
	CHECK_EQ(from, 1u - s->id);
	s->next_expect++;
	s->got++;
}

static void *run(void *arg)
{
	struct side *s = arg;
	char msg[256];
	CHECK_EQ(rl_worker_new(NULL, &s->w, msg, sizeof(msg)), 0);
	pthread_barrier_wait(s->ready); /* both workers exist */
	pthread_barrier_wait(s->ready); /* both know each other */
	struct rl_event ev[64];
	uint32_t sent = 0;
	double deadline = t_now() + 20;
	while (s->got < N_MSGS || sent < N_MSGS) {
		CHECK(t_now() < deadline);
		/* post in bursts so both doorbells see batches and singles */
		for (int k = 0; k < 7 && sent < N_MSGS; k++, sent++) {
			int n = snprintf(msg, sizeof(msg), "msg %u from %u", sent, s->id);
			CHECK_EQ(rl_worker_post(s->peer_w, s->id, 7, msg, (size_t)n,
						s->use_msg_ring ? s->w : NULL), 0);
		}
		int nev = rl_worker_poll(s->w, ev, 64, sent < N_MSGS ? 0 : 100);
		CHECK_GE(nev, 0);
		for (int i = 0; i < nev; i++) {
			if (ev[i].type != RL_EV_MESSAGE)
				continue;
			uint32_t from, kind;
			int n;
			while ((n = rl_worker_take_message(s->w, msg, sizeof(msg), &from, &kind)) >= 0)
				check_msg(s, msg, n, from, kind);
			CHECK_EQ(n, -EAGAIN);
		}
	}
	CHECK_EQ(s->got, (uint32_t)N_MSGS);
	pthread_barrier_wait(s->ready); /* the peer stopped posting to us */
	/* drain our own MSG_RING completions, then a clean teardown */
	deadline = t_now() + 5;
	while (rl_worker_metrics(s->w)->ops_inflight) {
		CHECK(t_now() < deadline);
		rl_worker_poll(s->w, ev, 64, 10);
	}
	pthread_barrier_wait(s->ready); /* nobody touches our worker any more */
	CHECK_EQ(rl_worker_destroy(s->w), 0);
	return NULL;
}

static void pair(int use_msg_ring)
{
	pthread_barrier_t b;
	pthread_barrier_init(&b, NULL, 3);
	struct side a = { .id = 0, .ready = &b, .use_msg_ring = use_msg_ring };
	struct side c = { .id = 1, .ready = &b, .use_msg_ring = use_msg_ring };
	pthread_t ta, tc;
	pthread_create(&ta, NULL, run, &a);
	pthread_create(&tc, NULL, run, &c);
	pthread_barrier_wait(&b);
	a.peer_w = c.w;
	c.peer_w = a.w;
	pthread_barrier_wait(&b);
	pthread_barrier_wait(&b);
	pthread_barrier_wait(&b);
	pthread_join(ta, NULL);
	pthread_join(tc, NULL);
	pthread_barrier_destroy(&b);
	printf("inbox: %d messages each way via %s\n", N_MSGS, use_msg_ring ? "MSG_RING" : "eventfd");
}

static void too_big(void)
{
	struct rl_worker *w;
	char msg[256], big[100];
	CHECK_EQ(rl_worker_new(NULL, &w, msg, sizeof(msg)), 0);
	memset(big, 'x', sizeof(big));
	CHECK_EQ(rl_worker_post(w, 3, 1, big, sizeof(big), NULL), 0);
	CHECK_EQ(rl_worker_post(w, 3, 2, "", 0, NULL), 0);
	struct rl_event ev[8];
	int nev = 0;
	double deadline = t_now() + 5;
	while (nev == 0) {
		CHECK(t_now() < deadline);
		nev = rl_worker_poll(w, ev, 8, 100);
	}
	CHECK_EQ(ev[0].type, (uint32_t)RL_EV_MESSAGE);
	uint32_t from = 0, kind = 0;
	CHECK_EQ(rl_worker_take_message(w, msg, 10, &from, &kind), -EMSGSIZE);
	CHECK_EQ(rl_worker_take_message(w, msg, sizeof(msg), &from, &kind), (int)sizeof(big));
	CHECK_EQ(kind, 1u);
	CHECK_EQ(rl_worker_take_message(w, msg, sizeof(msg), &from, &kind), 0);
	CHECK_EQ(kind, 2u);
	CHECK_EQ(rl_worker_take_message(w, msg, sizeof(msg), &from, &kind), -EAGAIN);
	CHECK_EQ(rl_worker_post(NULL, 0, 0, "", 0, NULL), -EINVAL);
	CHECK_EQ(rl_worker_destroy(w), 0);
}

int main(void)
{
	too_big();
	pair(0);
	pair(1);
	return 0;
}
