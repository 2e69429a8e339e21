/* SPDX-License-Identifier: MIT */
/*
 * test_resolve.c - names resolve off the loop: results come back as inbox
 * messages carrying the caller's token, the loop keeps running meanwhile,
 * failures carry the resolver's message, bad arguments are refused, and a
 * worker destroyed with a request in flight tears down cleanly.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "helpers.h"

static int take_result(struct rl_worker *w, uint32_t token, char *out, size_t cap)
{
	struct rl_event ev[16];
	double deadline = t_now() + 30; /* a failure bound, not a synchronisation */
	for (;;) {
		CHECK(t_now() < deadline);
		int n = rl_worker_poll(w, ev, 16, 50);
		for (int i = 0; i < n; i++) {
			if (ev[i].type != RL_EV_MESSAGE)
				continue;
			uint32_t from, kind;
			int len = rl_worker_take_message(w, out, cap - 1, &from, &kind);
			CHECK_GE(len, 0);
			CHECK_EQ(kind, (uint32_t)RL_MSG_RESOLVED);
			CHECK_EQ(from, token);
			out[len] = 0;
			CHECK_EQ(rl_worker_take_message(w, out + len + 1, 8, &from, &kind), -EAGAIN);
			return len;
		}
	}
}

int main(void)
{
	struct rl_worker *w;
	char msg[256], out[1024];
	CHECK_EQ(rl_worker_new(NULL, &w, msg, sizeof(msg)), 0);

	CHECK_EQ(rl_resolve(w, "localhost", 4, 11), 0);
	take_result(w, 11, out, sizeof(out));
	CHECK(strstr(out, "127.0.0.1") != NULL);

	CHECK_EQ(rl_resolve(w, "127.0.0.2", 0, 12), 0);
	take_result(w, 12, out, sizeof(out));
	CHECK(strcmp(out, "127.0.0.2") == 0);

	CHECK_EQ(rl_resolve(w, "::1", 6, 13), 0);
	take_result(w, 13, out, sizeof(out));
	CHECK(strcmp(out, "::1") == 0);

	CHECK_EQ(rl_resolve(w, "no-such-host.invalid", 0, 14), 0);
	take_result(w, 14, out, sizeof(out));
	CHECK(out[0] == '!');
	CHECK_GT(strlen(out), 1u);

	CHECK_EQ(rl_resolve(w, "", 0, 1), -EINVAL);
	CHECK_EQ(rl_resolve(w, "localhost", 5, 1), -EINVAL);
	CHECK_EQ(rl_resolve(w, NULL, 0, 1), -EINVAL);
	CHECK_EQ(rl_worker_destroy(w), 0);

	/* destroyed with a request queued: the thread must not post into it */
	for (int k = 0; k < 20; k++) {
		CHECK_EQ(rl_worker_new(NULL, &w, msg, sizeof(msg)), 0);
		CHECK_EQ(rl_resolve(w, "localhost", 0, 1), 0);
		CHECK_EQ(rl_resolve(w, "localhost", 0, 2), 0);
		CHECK_EQ(rl_worker_destroy(w), 0);
	}
	printf("resolve: ok\n");
	return 0;
}
