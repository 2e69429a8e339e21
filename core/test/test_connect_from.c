/* SPDX-License-Identifier: MIT */
/*
 * test_connect_from - rl_connect_from binds the local end first:
 *  - from 127.0.0.2 (any port) to the worker's own listener: connected, and
 *    both the socket's name and the accepted side's peer say 127.0.0.2;
 *  - from a fixed free port: that port is the local one;
 *  - failures return at once with nothing started (no RL_EV_CONNECTED, no
 *    slot, no request left): an address not on this machine
 *    (-EADDRNOTAVAIL), a port in use (-EADDRINUSE), another family
 *    (-EAFNOSUPPORT), a name or garbage (-EINVAL; "localhost" is taken, as
 *    by rl_connect);
 *  - teardown is clean.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

static uint32_t c_slot = T_ANY, c_gen;
static uint32_t a_slot = T_ANY, a_gen;

static void on_event(struct t_ctx *t, const struct rl_event *e)
{
	(void)t;
	switch (e->type) {
	case RL_EV_CONNECTED:
		ASSERT(e->res == 0, "connect: %s", rl_strerror(e->res));
		c_slot = e->slot;
		c_gen = e->gen;
		break;
	case RL_EV_ACCEPTED:
		a_slot = e->slot;
		a_gen = e->gen;
		break;
	case RL_EV_FD:
	case RL_EV_CLOSED:
		break;
	default:
		FAIL("unexpected event %u", e->type);
	}
}

static int both_ends(struct t_ctx *t)
{
	(void)t;
	return c_slot != T_ANY && a_slot != T_ANY;
}

static int accepted_fd_ready(struct t_ctx *t)
{
	return t_count(t, RL_EV_FD, a_slot, a_gen) > 0;
}

static int idle(struct t_ctx *t)
{
	/* the fixture's listener: one live thing, one op in flight */
	return rl_worker_live(t->w) == 1 && rl_worker_metrics(t->w)->ops_inflight == 1;
}

/* Connect from bind_addr; returns the local port. The accepted side's peer
 * address must be want_host. */
static int connect_from(struct t_ctx *t, const char *to, const char *bind_addr, const char *want_host)
{
	c_slot = a_slot = T_ANY;
	CHECK_EQ(rl_connect_from(t->w, to, bind_addr, 5000, 7), 0);
	T_WAIT(t, both_ends, 10);
	char host[64];
	int fd = CHECK_RC(rl_conn_fd(t->w, c_slot, c_gen));
	int port = CHECK_RC(rl_fd_name(fd, 0, host, sizeof(host)));
	ASSERT(strcmp(host, want_host) == 0, "local address %s, want %s", host, want_host);
	int afd = rl_conn_fd(t->w, a_slot, a_gen);
	if (afd == -EAGAIN) {
		T_WAIT(t, accepted_fd_ready, 10);
		afd = t_last(t, RL_EV_FD, a_slot, a_gen)->res;
	}
	CHECK_GE(afd, 0);
	char peer[64];
	int pport = CHECK_RC(rl_fd_name(afd, 1, peer, sizeof(peer)));
	ASSERT(strcmp(peer, want_host) == 0, "accepted peer %s, want %s", peer, want_host);
	CHECK_EQ(pport, port);
	CHECK_EQ(rl_conn_close(t->w, c_slot, c_gen, RL_CLOSE_GRACEFUL), 0);
	CHECK_EQ(rl_conn_close(t->w, a_slot, a_gen, RL_CLOSE_GRACEFUL), 0);
	T_WAIT(t, idle, 10);
	return port;
}

/* A bind failure: returned at once, nothing started. */
static void refused_bind(struct t_ctx *t, const char *to, const char *bind_addr, int want)
{
	int connected_before = t_count(t, RL_EV_CONNECTED, T_ANY, T_ANY);
	uint64_t open_before = rl_worker_metrics(t->w)->conns_open;
	int rc = rl_connect_from(t->w, to, bind_addr, 0, 9);
	ASSERT(rc == want, "bind %s: %d (%s), want %d (%s)", bind_addr, rc, rl_strerror(rc), want,
	       rl_strerror(want));
	/* a few polls: no event comes, nothing is live but the listener */
	for (int i = 0; i < 3; i++)
		t_step(t, 10);
	CHECK_EQ(t_count(t, RL_EV_CONNECTED, T_ANY, T_ANY), connected_before);
	CHECK_EQ(rl_worker_metrics(t->w)->conns_open, open_before);
	CHECK_EQ(rl_connect_cancel(t->w, 9), -ENOENT);
	CHECK(idle(t));
}

/* A free loopback port (bound, then released). */
static int free_port(void)
{
	int fd = t_tcp_bound(-1);
	int port = t_local_port(fd);
	close(fd);
	return port;
}

int main(void)
{
	struct t_ctx t;
	t_init(&t, NULL);
	t.on_event = on_event;
	t_listen(&t, NULL);
	char to[64], from[64];
	snprintf(to, sizeof(to), "127.0.0.1:%d", t.port);

	/* 127.0.0.0/8 is all loopback: a second local address without setup */
	connect_from(&t, to, "127.0.0.2:0", "127.0.0.2");
	int fixed = free_port();
	snprintf(from, sizeof(from), "127.0.0.1:%d", fixed);
	CHECK_EQ(connect_from(&t, to, from, "127.0.0.1"), fixed);

	refused_bind(&t, to, "192.0.2.1:0", -EADDRNOTAVAIL);   /* TEST-NET-1: not ours */
	snprintf(from, sizeof(from), "127.0.0.1:%d", t.port);  /* the listener's port */
	refused_bind(&t, to, from, -EADDRINUSE);
	refused_bind(&t, to, "[::1]:0", -EAFNOSUPPORT);
	refused_bind(&t, to, "no-such-host.invalid:0", -EINVAL);  /* names are not resolved here */
	refused_bind(&t, to, "not an address", -EINVAL);

	t_finish(&t);
	printf("connect_from: ok\n");
	return 0;
}
