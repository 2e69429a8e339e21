/* SPDX-License-Identifier: MIT */
/*
 * test_connect_v6 - IPv6 on [::1]: rl_listen("[::1]:0") serves a plain
 * client and an rl_connect("[::1]:port") outbound connection, both echoing
 * byte-exact; descriptor names read back as "::1". Exits 77 when the
 * machine has no IPv6 loopback.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

static struct t_peer peer;
static uint32_t o_slot = T_ANY, o_gen;
static uint8_t msg[30000];
static int o_done;

static int have_ipv6_loopback(void)
{
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return 0;
	struct sockaddr_in6 s6 = { .sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT };
	int ok = bind(fd, (struct sockaddr *)&s6, sizeof(s6)) == 0;
	close(fd);
	return ok;
}

static void out_recv(struct t_ctx *t)
{
	const struct rl_conn_io *io = rl_conn_io(t->w, o_slot);
	if (io->rlen < sizeof(msg) &&
	    CHECK_RC(rl_conn_want_recv(t->w, o_slot, o_gen, sizeof(msg))) == 0)
		return;
	CHECK_EQ(io->rlen, sizeof(msg));
	CHECK(memcmp(io->rdata, msg, sizeof(msg)) == 0);
	CHECK_EQ(rl_conn_close(t->w, o_slot, o_gen, RL_CLOSE_GRACEFUL), 0);
	o_done = 1;
}

static void on_event(struct t_ctx *t, const struct rl_event *e)
{
	switch (e->type) {
	case RL_EV_CONNECTED: {
		ASSERT(e->res == 0, "connect [::1]: %s", rl_strerror(e->res));
		o_slot = e->slot;
		o_gen = e->gen;
		char host[64];
		int fd = CHECK_RC(rl_conn_fd(t->w, o_slot, o_gen));
		CHECK_EQ(rl_fd_name(fd, 1, host, sizeof(host)), t->port);
		ASSERT(strcmp(host, "::1") == 0, "peer name '%s'", host);
		CHECK_EQ(rl_conn_send(t->w, o_slot, o_gen, msg, sizeof(msg)), 0);
		out_recv(t);
		break;
	}
	case RL_EV_RECV:
		if (e->slot == o_slot && e->gen == o_gen)
			out_recv(t);
		else
			t_echo_event(t, e);
		break;
	default:
		t_echo_event(t, e); /* the accepted side; both sides' CLOSED */
	}
}

static int pump(struct t_ctx *t)
{
	return t_peer_pump(&peer) > 0;
}

static int plain_done(struct t_ctx *t)
{
	return (peer.eof || peer.err) && t_count(t, RL_EV_CLOSED, T_ANY, T_ANY) == 1;
}

static int outbound_done(struct t_ctx *t)
{
	return o_done && t_count(t, RL_EV_CLOSED, T_ANY, T_ANY) == 3;
}

int main(void)
{
	if (!have_ipv6_loopback()) {
		fprintf(stderr, "skip: no IPv6 loopback\n");
		return T_SKIP;
	}
	t_pattern(msg, sizeof(msg), 61, 0);
	struct t_ctx t;
	t_init(&t, NULL);
	t.on_event = on_event;
	t.pump = pump;
	t_listen(&t, "[::1]:0");
	char host[64];

	/* a plain IPv6 client */
	static uint8_t in[sizeof(msg)];
	t_peer_init(&peer, t_tcp_connect("::1", t.port, 1));
	peer.out = msg;
	peer.outlen = sizeof(msg);
	peer.in = in;
	peer.incap = sizeof(in);
	peer.shut_wr = 1;
	T_WAIT(&t, plain_done, 10);
	CHECK_EQ(peer.err, 0);
	CHECK_EQ(peer.inlen, sizeof(msg));
	CHECK(memcmp(in, msg, sizeof(msg)) == 0);
	close(peer.fd);
	peer.fd = -1;

	/* rl_connect over IPv6 to the same listener */
	char addr[64];
	snprintf(addr, sizeof(addr), "[::1]:%d", t.port);
	CHECK_EQ(rl_connect(t.w, addr, 0, 9), 0);
	T_WAIT(&t, outbound_done, 10);
	CHECK_EQ(rl_worker_metrics(t.w)->conns_connected, 1);
	(void)host;
	t_finish(&t);
	return 0;
}
