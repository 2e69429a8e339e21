/* SPDX-License-Identifier: MIT */
/*
 * test_connect - outbound connections with rl_connect, all on loopback:
 *  - to the worker's own TCP listener: RL_EV_CONNECTED with the token, then
 *    an echo through the worker's own accepted side;
 *  - to a port with no listener: RL_EV_CONNECTED with -ECONNREFUSED and
 *    slot/gen 0, nothing to close;
 *  - with timeout_ms on a connect that succeeds: works, and the linked
 *    timeout's completion is accounted (ops_inflight back to idle);
 *  - with timeout_ms to a listener whose accept queue is full (its SYNs are
 *    dropped): -ETIMEDOUT;
 *  - to a unix socket listener;
 *  - many at once (more than the first allocation of requests), twice:
 *    every token answered exactly once, nothing left live.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

#define MSG_LEN 65536

static uint8_t msg[MSG_LEN];

/* the outbound side of the current exchange */
static uint32_t c_slot = T_ANY, c_gen;
static int c_done;

static void client_recv(struct t_ctx *t)
{
	const struct rl_conn_io *io = rl_conn_io(t->w, c_slot);
	if (io->rlen < MSG_LEN) {
		CHECK_EQ(io->rerr, 0);
		CHECK_EQ(io->reof, 0);
		if (CHECK_RC(rl_conn_want_recv(t->w, c_slot, c_gen, MSG_LEN)) == 0)
			return;
	}
	CHECK_EQ(io->rlen, MSG_LEN);
	CHECK(memcmp(io->rdata, msg, MSG_LEN) == 0);
	CHECK_EQ(rl_conn_consume(t->w, c_slot, c_gen, MSG_LEN), 0);
	CHECK_EQ(rl_conn_close(t->w, c_slot, c_gen, RL_CLOSE_GRACEFUL), 0);
	c_done = 1;
}

static void on_event(struct t_ctx *t, const struct rl_event *e)
{
	switch (e->type) {
	case RL_EV_CONNECTED:
		if (e->res < 0) {
			/* a failed connect names no connection */
			CHECK_EQ(e->slot, 0);
			CHECK_EQ(e->gen, 0);
			break;
		}
		CHECK_EQ(c_slot, T_ANY);
		c_slot = e->slot;
		c_gen = e->gen;
		CHECK_EQ(rl_conn_io(t->w, c_slot)->gen, c_gen);
		CHECK_EQ(rl_conn_io(t->w, c_slot)->state, RL_CONN_OPEN);
		CHECK_EQ(rl_conn_send(t->w, c_slot, c_gen, msg, MSG_LEN), 0);
		client_recv(t);
		break;
	case RL_EV_RECV:
		if (e->slot == c_slot && e->gen == c_gen)
			client_recv(t);
		else
			t_echo_event(t, e);
		break;
	default:
		t_echo_event(t, e); /* the accepted side; both sides' CLOSED */
	}
}

static uint32_t want_token;
static int connected(struct t_ctx *t)
{
	return t_count(t, RL_EV_CONNECTED, T_ANY, T_ANY) &&
	       t_last(t, RL_EV_CONNECTED, T_ANY, T_ANY)->data == want_token;
}

static int want_closed;
static int exchange_done(struct t_ctx *t)
{
	return c_done && t_count(t, RL_EV_CLOSED, T_ANY, T_ANY) == want_closed;
}

static int ops_idle(struct t_ctx *t)
{
	return rl_worker_metrics(t->w)->ops_inflight == 1 && rl_worker_live(t->w) == 1;
}

/* Connect to addr, expect success, echo one message, close both ends. */
static void exchange(struct t_ctx *t, const char *addr, uint32_t timeout_ms, uint32_t token,
		     int listener)
{
	size_t mark = t->nlog;
	c_slot = T_ANY;
	c_done = 0;
	want_token = token;
	CHECK_EQ(rl_connect(t->w, addr, timeout_ms, token), 0);
	T_WAIT(t, connected, 10);
	const struct rl_event *e = t_last(t, RL_EV_CONNECTED, T_ANY, T_ANY);
	ASSERT(e->res == 0, "connect %s: %s", addr, rl_strerror(e->res));
	CHECK_EQ(e->data, token);
	want_closed += 2;
	T_WAIT(t, exchange_done, 10);
	/* exactly one accepted side, from the right listener */
	int acc = 0;
	for (size_t i = mark; i < t->nlog; i++)
		if (t->log[i].type == RL_EV_ACCEPTED) {
			CHECK_EQ(t->log[i].data, listener);
			CHECK_NE(t->log[i].slot, c_slot);
			acc++;
		}
	CHECK_EQ(acc, 1);
	CHECK_EQ(t_count(t, RL_EV_CLOSED, c_slot, c_gen), 1);
}

static void refused(struct t_ctx *t)
{
	/* a bound socket that does not listen answers SYNs with RST */
	int fd = t_tcp_bound(-1);
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", t_local_port(fd));
	uint64_t open_before = rl_worker_metrics(t->w)->conns_open;
	want_token = 5;
	int closed_before = t_count(t, RL_EV_CLOSED, T_ANY, T_ANY);
	CHECK_EQ(rl_connect(t->w, addr, 0, 5), 0);
	T_WAIT(t, connected, 10);
	const struct rl_event *e = t_last(t, RL_EV_CONNECTED, T_ANY, T_ANY);
	ASSERT(e->res == -ECONNREFUSED, "connect to a closed port: %d (%s)", e->res,
	       rl_strerror(e->res));
	CHECK_EQ(e->slot, 0);
	CHECK_EQ(e->gen, 0);
	CHECK_EQ(e->data, 5);
	/* the core frees its slot by itself, without an RL_EV_CLOSED */
	T_WAIT(t, ops_idle, 10);
	CHECK_EQ(rl_worker_metrics(t->w)->conns_open, open_before);
	CHECK_EQ(t_count(t, RL_EV_CLOSED, T_ANY, T_ANY), closed_before);
	close(fd);
	t_check_idle(t);
}

/* Requests are taken from a free stack that grows (16, 32, 64, ...): NMANY
 * in flight at once make it grow, and a second round must reuse them. */
#define NMANY 50

static int want_many;
static int many_answered(struct t_ctx *t)
{
	int n = 0;
	for (size_t i = 0; i < t->nlog; i++)
		n += t->log[i].type == RL_EV_CONNECTED && t->log[i].data >= 1000;
	return n == want_many;
}

static void many_at_once(struct t_ctx *t)
{
	int fd = t_tcp_bound(-1);
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", t_local_port(fd));
	static int seen[2 * NMANY];
	for (int round = 0; round < 2; round++) {
		for (int i = 0; i < NMANY; i++)
			CHECK_EQ(rl_connect(t->w, addr, 0, (uint32_t)(1000 + round * NMANY + i)), 0);
		CHECK_EQ(rl_worker_live(t->w), 1 + NMANY);
		want_many = (round + 1) * NMANY;
		T_WAIT(t, many_answered, 10);
		T_WAIT(t, ops_idle, 10);
	}
	for (size_t i = 0; i < t->nlog; i++) {
		const struct rl_event *e = &t->log[i];
		if (e->type != RL_EV_CONNECTED || e->data < 1000)
			continue;
		CHECK_EQ(e->res, -ECONNREFUSED);
		CHECK_LT(e->data - 1000, 2 * NMANY);
		seen[e->data - 1000]++;
	}
	for (int i = 0; i < 2 * NMANY; i++)
		ASSERT(seen[i] == 1, "token %d answered %d times", 1000 + i, seen[i]);
	close(fd);
	t_check_idle(t);
}

static void timeout_on_full_backlog(struct t_ctx *t)
{
	/* backlog 0: one queued connection fills the accept queue, and Linux
	 * drops further SYNs (no RST), so a connect can only time out */
	int lfd = t_tcp_bound(0);
	int port = t_local_port(lfd);
	int filler = t_tcp_connect("127.0.0.1", port, 1);
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	want_token = 6;
	int closed_before = t_count(t, RL_EV_CLOSED, T_ANY, T_ANY);
	double t0 = t_now();
	CHECK_EQ(rl_connect(t->w, addr, 200, 6), 0);
	T_WAIT(t, connected, 10);
	double took = t_now() - t0;
	const struct rl_event *e = t_last(t, RL_EV_CONNECTED, T_ANY, T_ANY);
	ASSERT(e->res == -ETIMEDOUT, "connect to a full backlog: %d (%s) after %.3f s", e->res,
	       rl_strerror(e->res), took);
	CHECK_EQ(e->slot, 0);
	CHECK_EQ(e->gen, 0);
	ASSERT(took >= 0.19, "timed out after %.3f s, asked for 0.2 s", took);
	T_WAIT(t, ops_idle, 10);
	CHECK_EQ(t_count(t, RL_EV_CLOSED, T_ANY, T_ANY), closed_before);
	close(filler);
	close(lfd);
	t_check_idle(t);
}

int main(void)
{
	t_pattern(msg, MSG_LEN, 31, 0);
	struct t_ctx t;
	t_init(&t, NULL);
	t.on_event = on_event;
	t_listen(&t, NULL);
	char addr[128];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", t.port);

	exchange(&t, addr, 0, 42, t.lid);
	const struct rl_metrics *m = rl_worker_metrics(t.w);
	CHECK_EQ(m->conns_connected, 1);
	CHECK_EQ(m->conns_accepted, 1);
	t_check_idle(&t);

	refused(&t);
	many_at_once(&t);

	/* a timeout that does not fire: its completion is still reaped */
	exchange(&t, addr, 5000, 43, t.lid);
	T_WAIT(&t, ops_idle, 10);
	t_check_idle(&t);

	timeout_on_full_backlog(&t);

	/* unix sockets */
	char path[108], uaddr[128];
	snprintf(path, sizeof(path), "/tmp/rl-test-connect-%d.sock", (int)getpid());
	snprintf(uaddr, sizeof(uaddr), "unix:%s", path);
	int ul = CHECK_RC(rl_listen(t.w, uaddr, 0));
	CHECK_EQ(rl_listener_port(t.w, ul), 0);
	exchange(&t, uaddr, 0, 44, ul);
	exchange(&t, uaddr, 1000, 45, ul);
	CHECK_EQ(rl_listener_close(t.w, ul), 0);
	CHECK_EQ(rl_listener_close(t.w, ul), -ENOENT);
	unlink(path);
	/* a unix path nobody listens on */
	want_token = 46;
	CHECK_EQ(rl_connect(t.w, uaddr, 0, 46), 0);
	T_WAIT(&t, connected, 10);
	const struct rl_event *e = t_last(&t, RL_EV_CONNECTED, T_ANY, T_ANY);
	ASSERT(e->res == -ENOENT || e->res == -ECONNREFUSED, "unix connect to nothing: %s",
	       rl_strerror(e->res));

	/* addresses rl_connect refuses up front */
	CHECK_EQ(rl_connect(t.w, "not an address", 0, 1), -EINVAL);
	CHECK_EQ(rl_connect(t.w, "127.0.0.1:99999", 0, 1), -EINVAL);
	/* malformed numeric addresses are invalid, not names (nor unroutable) */
	CHECK_EQ(rl_connect(t.w, "300.1.1.1:80", 0, 1), -EINVAL);
	CHECK_EQ(rl_connect(t.w, "[::zz]:80", 0, 1), -EINVAL);
	CHECK_EQ(rl_listen(t.w, "300.1.1.1:80", 0), -EINVAL);
	CHECK_EQ(rl_listen(t.w, "[1:2:3:4:5:6:7:8:9]:80", 0), -EINVAL);
	CHECK_EQ(rl_udp_open(t.w, "300.1.1.1:0"), -EINVAL);
	CHECK_LT(rl_connect(t.w, "example.invalid:80", 0, 1), 0);

	m = rl_worker_metrics(t.w);
	CHECK_EQ(m->conns_connected, 4);
	t_finish(&t);
	return 0;
}
