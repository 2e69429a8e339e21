/* SPDX-License-Identifier: MIT */
/*
 * test_connect_cancel.c - rl_connect_cancel aborts a connect at either stage
 * (socket install, or CONNECT in the kernel): exactly one RL_EV_CONNECTED
 * with -ECANCELED, nothing left live, a clean teardown; a worker destroyed
 * while a connect's socket is being installed does not wait for it.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

static uint32_t first_slot, first_gen;

static int connected(struct rl_worker *w, uint32_t token, int32_t *res, double secs)
{
	struct rl_event ev[16];
	double deadline = t_now() + secs;
	while (t_now() < deadline) {
		int n = rl_worker_poll(w, ev, 16, 20);
		for (int i = 0; i < n; i++)
			if (ev[i].type == RL_EV_CONNECTED && ev[i].data == token) {
				*res = ev[i].res;
				if (ev[i].res == 0) { /* kept open: it holds the queue full */
					first_slot = ev[i].slot;
					first_gen = ev[i].gen;
				}
				return 1;
			}
	}
	return 0;
}

static void drain(struct rl_worker *w)
{
	struct rl_event ev[16];
	double deadline = t_now() + 10;
	while (rl_worker_live(w) || rl_worker_metrics(w)->ops_inflight) {
		CHECK(t_now() < deadline);
		rl_worker_poll(w, ev, 16, 20);
	}
}

int main(void)
{
	/* a listener that never accepts and whose queue holds one connection */
	int lfd = t_tcp_bound(0);
	int port = t_local_port(lfd);
	char addr[64], msg[256];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	struct rl_worker *w;
	CHECK_EQ(rl_worker_new(NULL, &w, msg, sizeof(msg)), 0);
	int32_t res = 1;

	/* fill the listener's queue so the next connects hang */
	CHECK_EQ(rl_connect(w, addr, 0, 1), 0);
	CHECK(connected(w, 1, &res, 10));
	CHECK_EQ(res, 0);

	/* 1. canceled in the kernel: the CONNECT is blocked on the full queue */
	CHECK_EQ(rl_connect(w, addr, 0, 2), 0);
	CHECK(!connected(w, 2, &res, 0.3)); /* really stuck (bound, not a sync) */
	CHECK_EQ(rl_connect_cancel(w, 2), 0);
	CHECK_EQ(rl_connect_cancel(w, 2), -ENOENT); /* once */
	CHECK(connected(w, 2, &res, 10));
	CHECK_EQ(res, -ECANCELED);
	CHECK(!connected(w, 2, &res, 0.1)); /* exactly one event */

	/* 2. canceled before the socket install completed */
	CHECK_EQ(rl_connect(w, addr, 0, 3), 0);
	CHECK_EQ(rl_connect_cancel(w, 3), 0);
	CHECK(connected(w, 3, &res, 10));
	CHECK_EQ(res, -ECANCELED);

	/* 3. nothing to cancel */
	CHECK_EQ(rl_connect_cancel(w, 99), -ENOENT);

	/* 4. a worker torn down with a connect still being installed: the
	 * install must not go on to a CONNECT that teardown would wait out
	 * (the queue is still full: it would never answer) */
	struct rl_worker *w2;
	CHECK_EQ(rl_worker_new(NULL, &w2, msg, sizeof(msg)), 0);
	CHECK_EQ(rl_connect(w2, addr, 0, 4), 0);
	double t0 = t_now();
	CHECK_EQ(rl_worker_destroy(w2), -EBUSY); /* the caller left it live */
	ASSERT(t_now() - t0 < 5, "teardown took %.1f s", t_now() - t0);

	CHECK_EQ(rl_conn_close(w, first_slot, first_gen, RL_CLOSE_RESET), 0);
	drain(w);
	CHECK_EQ(rl_worker_metrics(w)->conns_open, 0u);
	CHECK_EQ(rl_worker_destroy(w), 0);
	close(lfd);
	printf("connect_cancel: ok\n");
	return 0;
}
