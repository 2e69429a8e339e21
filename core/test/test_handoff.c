/* SPDX-License-Identifier: MIT */
/*
 * test_handoff - one worker accepts, others serve (MSG_RING + SEND_FD):
 * connections reach the members round robin and echo there, none is served
 * by the acceptor; a member that left gets no more; a pass that arrives
 * after its member left is closed by the member, and the acceptor closes its
 * socket once the group is empty (new peers are refused by the kernel); a
 * member whose connection table is full makes the pass fail, and the
 * connection goes to the next member, or is closed when there is none; a member that leaves and joins again before the
 * acceptor notices keeps the socket open; when the acceptor's socket fails
 * every member is told; a unix socket works the same; a pass that arrives
 * after its member released its listener (a reload) is served there;
 * joins and creation fail cleanly. Every worker ends idle and destroys without a leak.
 *
 * All workers run on this one thread, so the kernel installs each file in
 * the member's table directly; the host's specs cover the cross-thread path.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "helpers.h"

#define NMEM 2

static struct t_ctx acc, mem[NMEM];
/* the workers that move while another one is waited on */
static struct t_ctx *world[NMEM + 2];
static int nworld;
static struct t_peer peers[32];
static int npeers, first, last;

static int pump_all(struct t_ctx *t)
{
	int progress = t_peers_pump(peers, npeers);
	for (int i = 0; i < nworld; i++)
		if (world[i] != t)
			progress |= t_step(world[i], 0) > 0;
	return progress;
}

static int peers_ended(struct t_ctx *t)
{
	(void)t;
	for (int i = first; i < last; i++)
		if (!peers[i].eof && !peers[i].err)
			return 0;
	return 1;
}

/* Members echo; a stopped listener is only logged (acceptor_fails checks it). */
static void member_event(struct t_ctx *t, const struct rl_event *e)
{
	if (e->type != RL_EV_LISTENER)
		t_echo_event(t, e);
}

static int naccepted(struct t_ctx *t)
{
	return t_count(t, RL_EV_ACCEPTED, T_ANY, T_ANY);
}

static int unix_connect(const char *path)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	int fd = socket(AF_UNIX, SOCK_STREAM, 0);
	CHECK(fd >= 0);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", path);
	ASSERT(connect(fd, (struct sockaddr *)&sun, sizeof(sun)) == 0, "connect %s: %s", path,
	       strerror(errno));
	t_set_nonblock(fd);
	return fd;
}

/* n peers (TCP to port, or to a unix path) that each send a line and
 * half-close; each must get its line back. */
static void echo_round(int port, const char *path, int n)
{
	static char text[32][32];
	static uint8_t in[32][32];
	first = npeers;
	for (int k = 0; k < n; k++) {
		struct t_peer *p = &peers[npeers];
		t_peer_init(p, path ? unix_connect(path) : t_tcp_connect("127.0.0.1", port, 1));
		snprintf(text[npeers], sizeof(text[0]), "hello %d\n", npeers);
		p->out = (const uint8_t *)text[npeers];
		p->outlen = strlen(text[npeers]);
		p->in = in[npeers];
		p->incap = sizeof(in[0]);
		p->shut_wr = 1;
		npeers++;
	}
	last = npeers;
	T_WAIT(&acc, peers_ended, 10);
	for (int i = first; i < last; i++) {
		ASSERT(peers[i].err == 0, "peer %d of %d..%d: %s", i, first, last, strerror(peers[i].err));
		CHECK_EQ(peers[i].inlen, strlen(text[i]));
		CHECK(memcmp(in[i], text[i], peers[i].inlen) == 0);
	}
}

static uint64_t want_passes;
static int passed(struct t_ctx *t)
{
	const struct rl_metrics *m = rl_worker_metrics(t->w);
	return m->handoffs + m->handoff_errors == want_passes;
}

/* the acceptor closed its listener by itself */
static int acceptor_closed(struct t_ctx *t)
{
	(void)t;
	return rl_listener_port(acc.w, acc.lid) == -ENOENT;
}

static int quiet_all(struct t_ctx *t)
{
	(void)t;
	if (rl_worker_metrics(acc.w)->ops_inflight > (acc.lid >= 0 ? 1u : 0u))
		return 0;
	for (int i = 0; i < nworld; i++)
		if (rl_worker_metrics(world[i]->w)->conns_open)
			return 0;
	return 1;
}

static void check_refused(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	sin.sin_addr.s_addr = htonl(0x7f000001);
	CHECK_EQ(connect(fd, (struct sockaddr *)&sin, sizeof(sin)), -1);
	CHECK_EQ(errno, ECONNREFUSED);
	close(fd);
}

static void round_robin_and_leave(void)
{
	struct rl_handoff *h;
	CHECK_RC(rl_handoff_new("127.0.0.1:0", RL_LISTEN_NODELAY, 64, &h));
	int port = CHECK_RC(rl_handoff_port(h));
	CHECK_GT(port, 0);
	CHECK_EQ(rl_handoff_members(h), 0);
	for (int i = 0; i < NMEM; i++) {
		mem[i].lid = CHECK_RC(rl_listen_handoff(mem[i].w, h));
		CHECK_EQ(rl_listener_port(mem[i].w, mem[i].lid), port);
	}
	CHECK_EQ(rl_handoff_members(h), NMEM);
	CHECK_EQ(rl_handoff_finished(h), 0);
	acc.lid = CHECK_RC(rl_handoff_accept(acc.w, h));
	CHECK_EQ(rl_handoff_finished(h), 0);
	CHECK_EQ(rl_handoff_accept(acc.w, h), -EBUSY);
	CHECK_EQ(rl_handoff_accept(mem[0].w, h), -EBUSY);

	/* 10 connections: 5 each, each echoed by its member */
	echo_round(port, NULL, 10);
	for (int i = 0; i < NMEM; i++) {
		CHECK_EQ(naccepted(&mem[i]), 5);
		const struct rl_event *e = t_last(&mem[i], RL_EV_ACCEPTED, T_ANY, T_ANY);
		uint32_t lgen = 0;
		CHECK_EQ(e->data, mem[i].lid);
		CHECK_RC(rl_listener_gen(mem[i].w, mem[i].lid, &lgen));
		CHECK_EQ(e->aux, lgen);
		CHECK_EQ(rl_worker_metrics(mem[i].w)->conns_accepted, 5);
	}
	T_WAIT(&acc, quiet_all, 10);
	const struct rl_metrics *am = rl_worker_metrics(acc.w);
	CHECK_EQ(am->handoffs, 10);
	CHECK_EQ(am->handoff_errors, 0);
	CHECK_EQ(am->conns_accepted, 0);
	CHECK_EQ(am->conns_open, 0);
	CHECK_EQ(naccepted(&acc), 0);
	/* only the multishot accept is in flight: the close of the acceptor's
	 * own index after each pass completed */
	CHECK_EQ(am->ops_inflight, 1);

	/* member 1 leaves: the next 4 all go to member 0 */
	CHECK_RC(rl_listener_close(mem[1].w, mem[1].lid));
	mem[1].lid = -1;
	CHECK_EQ(rl_handoff_members(h), 1);
	echo_round(port, NULL, 4);
	CHECK_EQ(naccepted(&mem[0]), 9);
	CHECK_EQ(naccepted(&mem[1]), 5);

	/* A pass that lands after its member left: the acceptor alone
	 * accepts and passes, then member 0 leaves before it polls. */
	T_WAIT(&acc, quiet_all, 10);
	acc.pump = NULL;
	first = npeers;
	t_peer_init(&peers[npeers++], t_tcp_connect("127.0.0.1", port, 1));
	last = npeers;
	want_passes = am->handoffs + am->handoff_errors + 1;
	T_WAIT(&acc, passed, 10);
	CHECK_EQ(am->handoffs, 15);
	uint64_t refused = rl_worker_metrics(mem[0].w)->conns_refused;
	CHECK_RC(rl_listener_close(mem[0].w, mem[0].lid));
	mem[0].lid = -1;
	CHECK_EQ(rl_handoff_members(h), 0);
	acc.pump = pump_all;
	/* the member closes what arrived; the peer sees the end */
	T_WAIT(&acc, peers_ended, 10);
	CHECK_EQ(rl_worker_metrics(mem[0].w)->conns_refused, refused + 1);
	CHECK_EQ(naccepted(&mem[0]), 9);
	/* the group is empty: the acceptor closed its socket by itself, so
	 * the kernel refuses new peers */
	T_WAIT(&acc, acceptor_closed, 10);
	acc.lid = -1;
	check_refused(port);
	/* a late join fails and leaves no listener behind */
	int live = rl_worker_live(mem[1].w);
	CHECK_EQ(rl_listen_handoff(mem[1].w, h), -ESHUTDOWN);
	CHECK_EQ(rl_worker_live(mem[1].w), live);
	T_WAIT(&acc, quiet_all, 10);
	CHECK_EQ(rl_handoff_finished(h), 1);
	rl_handoff_free(h);
}

static struct t_ctx small;
static int small_full(struct t_ctx *t)
{
	(void)t;
	return rl_worker_metrics(small.w)->conns_open == 2;
}

static int pass_failed(struct t_ctx *t)
{
	return rl_worker_metrics(t->w)->handoff_errors == 1 && peers_ended(t);
}

/* A member whose table is full: the pass fails and the peer is closed. */
static void member_full(void)
{
	struct rl_config cfg;
	t_config_small(&cfg);
	cfg.max_connections = 2;
	t_init(&small, &cfg);
	small.pump = pump_all;
	world[nworld++] = &small;

	struct rl_handoff *h;
	CHECK_RC(rl_handoff_new("127.0.0.1:0", RL_LISTEN_NODELAY, 64, &h));
	int port = rl_handoff_port(h);
	small.lid = CHECK_RC(rl_listen_handoff(small.w, h));
	acc.lid = CHECK_RC(rl_handoff_accept(acc.w, h));
	CHECK_EQ(rl_worker_metrics(acc.w)->handoff_errors, 0);

	/* two peers held open fill its table (no handler: they just sit) */
	int held[2];
	for (int i = 0; i < 2; i++)
		held[i] = t_tcp_connect("127.0.0.1", port, 1);
	T_WAIT(&acc, small_full, 10);
	first = npeers;
	t_peer_init(&peers[npeers++], t_tcp_connect("127.0.0.1", port, 1));
	last = npeers;
	T_WAIT(&acc, pass_failed, 10);
	CHECK_EQ(rl_worker_metrics(small.w)->conns_accepted, 2);
	CHECK_EQ(rl_worker_metrics(acc.w)->handoffs, 17);
	CHECK_EQ(rl_worker_metrics(acc.w)->conns_refused, 1);

	/* with a second member, what the full one cannot take goes there */
	mem[0].lid = CHECK_RC(rl_listen_handoff(mem[0].w, h));
	int before = naccepted(&mem[0]);
	echo_round(port, NULL, 4);
	CHECK_EQ(naccepted(&mem[0]) - before, 4);
	CHECK_EQ(rl_worker_metrics(small.w)->conns_accepted, 2);
	CHECK_GE(rl_worker_metrics(acc.w)->handoff_errors, 2);
	CHECK_EQ(rl_worker_metrics(acc.w)->handoffs, 21);
	CHECK_EQ(rl_worker_metrics(acc.w)->conns_refused, 1);
	CHECK_RC(rl_listener_close(mem[0].w, mem[0].lid));
	mem[0].lid = -1;

	for (size_t i = 0; i < small.nlog; i++)
		if (small.log[i].type == RL_EV_ACCEPTED)
			CHECK_RC(rl_conn_close(small.w, small.log[i].slot, small.log[i].gen,
					       RL_CLOSE_RESET));
	for (int i = 0; i < 2; i++)
		close(held[i]);
	CHECK_RC(rl_listener_close(small.w, small.lid));
	small.lid = -1;
	T_WAIT(&acc, acceptor_closed, 10);
	acc.lid = -1;
	T_WAIT(&acc, quiet_all, 10);
	nworld--;
	small.pump = NULL;
	t_finish(&small);
	rl_handoff_free(h);
}

/* The last member leaves and joins again before the acceptor polls: the
 * socket stays open and serves. A group whose members all left before
 * anyone accepted on it closes its socket instead of being taken. */
static void rejoin(void)
{
	struct rl_handoff *h;
	CHECK_RC(rl_handoff_new("127.0.0.1:0", RL_LISTEN_NODELAY, 64, &h));
	int port = rl_handoff_port(h);
	mem[0].lid = CHECK_RC(rl_listen_handoff(mem[0].w, h));
	acc.lid = CHECK_RC(rl_handoff_accept(acc.w, h));
	t_step(&acc, 0);
	CHECK_RC(rl_listener_close(mem[0].w, mem[0].lid));
	CHECK_EQ(rl_handoff_members(h), 0);
	mem[0].lid = CHECK_RC(rl_listen_handoff(mem[0].w, h));
	int before = naccepted(&mem[0]);
	echo_round(port, NULL, 2);
	CHECK_EQ(naccepted(&mem[0]) - before, 2);
	CHECK_EQ(rl_listener_port(acc.w, acc.lid), port);
	CHECK_RC(rl_listener_close(mem[0].w, mem[0].lid));
	mem[0].lid = -1;
	T_WAIT(&acc, acceptor_closed, 10);
	acc.lid = -1;
	T_WAIT(&acc, quiet_all, 10);
	rl_handoff_free(h);

	CHECK_RC(rl_handoff_new("127.0.0.1:0", 0, 64, &h));
	port = rl_handoff_port(h);
	int lid = CHECK_RC(rl_listen_handoff(mem[1].w, h));
	CHECK_RC(rl_listener_close(mem[1].w, lid));
	CHECK_EQ(rl_handoff_accept(acc.w, h), -ESHUTDOWN);
	check_refused(port);
	CHECK_EQ(rl_listen_handoff(mem[1].w, h), -ESHUTDOWN);
	rl_handoff_free(h);
}

/* The listening socket bound to port, found among our descriptors. */
static int listening_fd(int port)
{
	for (int fd = 3; fd < 4096; fd++) {
		struct sockaddr_in sin;
		socklen_t len = sizeof(sin);
		int on = 0;
		socklen_t olen = sizeof(on);
		if (getsockname(fd, (struct sockaddr *)&sin, &len) == 0 && sin.sin_family == AF_INET &&
		    ntohs(sin.sin_port) == port &&
		    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &olen) == 0 && on)
			return fd;
	}
	FAIL("no listening socket on port %d", port);
}

static int members_told(struct t_ctx *t)
{
	(void)t;
	for (int i = 0; i < NMEM; i++)
		if (!t_last(&mem[i], RL_EV_LISTENER, mem[i].lid, T_ANY))
			return 0;
	return 1;
}

/* The acceptor's socket fails for good: every member hears it
 * (RL_EV_LISTENER) and its listener is gone; the group takes no joins. */
static void acceptor_fails(void)
{
	struct rl_handoff *h;
	CHECK_RC(rl_handoff_new("127.0.0.1:0", 0, 64, &h));
	int port = rl_handoff_port(h);
	for (int i = 0; i < NMEM; i++)
		mem[i].lid = CHECK_RC(rl_listen_handoff(mem[i].w, h));
	acc.lid = CHECK_RC(rl_handoff_accept(acc.w, h));
	t_step(&acc, 0);
	/* what shutdown(2) does to a listening socket: accept fails with EINVAL */
	CHECK_EQ(shutdown(listening_fd(port), SHUT_RD), 0);
	T_WAIT(&acc, members_told, 10);
	const struct rl_event *e = t_last(&acc, RL_EV_LISTENER, acc.lid, T_ANY);
	CHECK(e != NULL);
	CHECK_LT(e->res, 0);
	for (int i = 0; i < NMEM; i++) {
		CHECK_EQ(t_last(&mem[i], RL_EV_LISTENER, mem[i].lid, T_ANY)->res, e->res);
		CHECK_EQ(rl_listener_port(mem[i].w, mem[i].lid), -ENOENT);
		mem[i].lid = -1;
	}
	CHECK_EQ(rl_listener_port(acc.w, acc.lid), -ENOENT);
	acc.lid = -1;
	CHECK_EQ(rl_handoff_members(h), 0);
	CHECK_EQ(rl_listen_handoff(mem[0].w, h), -ESHUTDOWN);
	T_WAIT(&acc, quiet_all, 10);
	rl_handoff_free(h);
}

/* The acceptor's listener closed by its owner while members are joined:
 * they hear it (RL_EV_LISTENER, -ECONNABORTED), their listeners are gone,
 * the socket is closed (peers refused) and the group takes no joins. */
static size_t told_mark[NMEM];
static const struct rl_event *told_since_mark(int i)
{
	for (size_t k = told_mark[i]; k < mem[i].nlog; k++)
		if (mem[i].log[k].type == RL_EV_LISTENER && (int)mem[i].log[k].slot == mem[i].lid)
			return &mem[i].log[k];
	return NULL;
}
static int members_told_since_mark(struct t_ctx *t)
{
	(void)t;
	for (int i = 0; i < NMEM; i++)
		if (!told_since_mark(i))
			return 0;
	return 1;
}

static void acceptor_closed_while_joined(void)
{
	struct rl_handoff *h;
	CHECK_RC(rl_handoff_new("127.0.0.1:0", 0, 64, &h));
	int port = rl_handoff_port(h);
	for (int i = 0; i < NMEM; i++)
		mem[i].lid = CHECK_RC(rl_listen_handoff(mem[i].w, h));
	acc.lid = CHECK_RC(rl_handoff_accept(acc.w, h));
	t_step(&acc, 0);
	echo_round(port, NULL, 2); /* serving */
	for (int i = 0; i < NMEM; i++)
		told_mark[i] = mem[i].nlog;
	CHECK_RC(rl_listener_close(acc.w, acc.lid));
	T_WAIT(&acc, members_told_since_mark, 10);
	for (int i = 0; i < NMEM; i++) {
		CHECK_EQ(told_since_mark(i)->res, -ECONNABORTED);
		CHECK_EQ(rl_listener_port(mem[i].w, mem[i].lid), -ENOENT);
		mem[i].lid = -1;
	}
	acc.lid = -1;
	CHECK_EQ(rl_handoff_members(h), 0);
	CHECK_EQ(rl_listen_handoff(mem[0].w, h), -ESHUTDOWN);
	T_WAIT(&acc, quiet_all, 10);
	check_refused(port);
	CHECK_EQ(rl_handoff_finished(h), 1);
	rl_handoff_free(h);
}

/* The same over a unix socket (one socket file for every worker). */
static void unix_socket(void)
{
	char path[64], addr[80];
	snprintf(path, sizeof(path), "/tmp/rl-test-handoff-%d.sock", (int)getpid());
	snprintf(addr, sizeof(addr), "unix:%s", path);
	struct rl_handoff *h;
	CHECK_RC(rl_handoff_new(addr, 0, 64, &h));
	CHECK_EQ(rl_handoff_port(h), 0);
	int before[NMEM];
	for (int i = 0; i < NMEM; i++) {
		before[i] = naccepted(&mem[i]);
		mem[i].lid = CHECK_RC(rl_listen_handoff(mem[i].w, h));
	}
	acc.lid = CHECK_RC(rl_handoff_accept(acc.w, h));
	echo_round(0, path, 4);
	for (int i = 0; i < NMEM; i++) {
		CHECK_EQ(naccepted(&mem[i]) - before[i], 2);
		CHECK_RC(rl_listener_close(mem[i].w, mem[i].lid));
		mem[i].lid = -1;
	}
	T_WAIT(&acc, acceptor_closed, 10);
	acc.lid = -1;
	T_WAIT(&acc, quiet_all, 10);
	rl_handoff_free(h);
	unlink(path);
}

static void bad_input(void)
{
	struct rl_handoff *h = NULL;
	CHECK_EQ(rl_handoff_new(NULL, 0, 64, &h), -EINVAL);
	CHECK_EQ(rl_handoff_new("127.0.0.1:0", 0, 0, &h), -EINVAL);
	CHECK_LT(rl_handoff_new("not an address", 0, 64, &h), 0);
	CHECK(h == NULL);
	int bound = t_tcp_bound(16);
	char addr[32];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", t_local_port(bound));
	CHECK_EQ(rl_handoff_new(addr, 0, 64, &h), -EADDRINUSE);
	CHECK(h == NULL);
	close(bound);
	CHECK_EQ(rl_handoff_accept(acc.w, NULL), -EINVAL);
	/* one ring cannot be both: the kernel does not pass a file to itself */
	CHECK_RC(rl_handoff_new("127.0.0.1:0", 0, 64, &h));
	int self = CHECK_RC(rl_listen_handoff(acc.w, h));
	CHECK_EQ(rl_handoff_accept(acc.w, h), -EINVAL);
	CHECK_RC(rl_listener_close(acc.w, self));
	self = CHECK_RC(rl_listen_handoff(mem[0].w, h));
	int alid = CHECK_RC(rl_handoff_accept(acc.w, h));
	int live = rl_worker_live(acc.w);
	CHECK_EQ(rl_listen_handoff(acc.w, h), -EINVAL);
	CHECK_EQ(rl_worker_live(acc.w), live);
	CHECK_RC(rl_listener_close(mem[0].w, self));
	CHECK_RC(rl_listener_close(acc.w, alid));
	T_WAIT(&acc, quiet_all, 10);
	rl_handoff_free(h);
	h = NULL;
	CHECK_EQ(rl_listen_handoff(acc.w, NULL), -EINVAL);
	CHECK_EQ(rl_handoff_members(NULL), -EINVAL);
	CHECK_EQ(rl_handoff_finished(NULL), -EINVAL);
	uint32_t g = 7;
	CHECK_EQ(rl_listener_gen(acc.w, 63, &g), -ENOENT);
	CHECK_EQ(rl_listener_gen(acc.w, -1, &g), -ENOENT);
	CHECK_EQ(g, 7);
	rl_handoff_free(NULL);
	/* a full listener table: neither side takes a slot, the group keeps
	 * its socket (a peer still queues on it) and frees it after */
	CHECK_RC(rl_handoff_new("127.0.0.1:0", 0, 64, &h));
	int lids[64], n = 0, lid;
	while ((lid = rl_listen(acc.w, "127.0.0.1:0", 0)) >= 0)
		lids[n++] = lid;
	CHECK_EQ(lid, -EMFILE);
	CHECK_EQ(rl_listen_handoff(acc.w, h), -EMFILE);
	CHECK_EQ(rl_handoff_members(h), 0);
	int m0 = CHECK_RC(rl_listen_handoff(mem[0].w, h));
	CHECK_EQ(rl_handoff_accept(acc.w, h), -EMFILE);
	int queued = t_tcp_connect("127.0.0.1", rl_handoff_port(h), 0);
	close(queued);
	for (int i = 0; i < n; i++)
		CHECK_RC(rl_listener_close(acc.w, lids[i]));
	CHECK_RC(rl_listener_close(mem[0].w, m0));
	int port = rl_handoff_port(h);
	rl_handoff_free(h);
	check_refused(port);
	T_WAIT(&acc, quiet_all, 10);
	/* a group nobody accepts on closes its socket when freed */
	CHECK_RC(rl_handoff_new("127.0.0.1:0", 0, 64, &h));
	port = rl_handoff_port(h);
	rl_handoff_free(h);
	check_refused(port);
}

static int mem0_listener_gone(struct t_ctx *t)
{
	(void)t;
	return rl_listener_port(mem[0].w, mem[0].lid) == -ENOENT;
}

/* A pass that lands after its member released its listener (a reload's
 * retiring worker, rl_listener_release) is served there, not reset: the
 * acceptor passed it before the member left, and the member keeps the
 * listener for RL_MEMBER_LINGER_S. Then the listener goes by itself. */
static void release_serves_late_pass(void)
{
	static char text[] = "late pass\n";
	static uint8_t in[32];
	struct rl_handoff *h;
	CHECK_RC(rl_handoff_new("127.0.0.1:0", RL_LISTEN_NODELAY, 64, &h));
	int port = CHECK_RC(rl_handoff_port(h));
	mem[0].lid = CHECK_RC(rl_listen_handoff(mem[0].w, h));
	acc.lid = CHECK_RC(rl_handoff_accept(acc.w, h));
	const struct rl_metrics *am = rl_worker_metrics(acc.w);
	int before = naccepted(&mem[0]);
	uint64_t refused = rl_worker_metrics(mem[0].w)->conns_refused;

	/* the acceptor alone accepts and passes; the member has not polled */
	acc.pump = NULL;
	ASSERT(npeers < 32, "peers used up");
	first = npeers;
	struct t_peer *p = &peers[npeers++];
	t_peer_init(p, t_tcp_connect("127.0.0.1", port, 1));
	p->out = (const uint8_t *)text;
	p->outlen = strlen(text);
	p->in = in;
	p->incap = sizeof(in);
	p->shut_wr = 1;
	last = npeers;
	want_passes = am->handoffs + am->handoff_errors + 1;
	T_WAIT(&acc, passed, 10);
	CHECK_RC(rl_listener_release(mem[0].w, mem[0].lid));
	CHECK_EQ(rl_handoff_members(h), 0);
	CHECK_EQ(rl_listener_port(mem[0].w, mem[0].lid), port); /* lingering */
	acc.pump = pump_all;
	/* the member serves what arrived: the peer gets its line back */
	T_WAIT(&acc, peers_ended, 10);
	CHECK_EQ(p->err, 0);
	CHECK_EQ(p->inlen, strlen(text));
	CHECK(memcmp(in, text, p->inlen) == 0);
	CHECK_EQ(naccepted(&mem[0]), before + 1);
	CHECK_EQ(rl_worker_metrics(mem[0].w)->conns_refused, refused);
	/* the linger ends and the listener goes; the group is empty, so the
	 * acceptor closes its socket */
	T_WAIT(&acc, mem0_listener_gone, 10);
	mem[0].lid = -1;
	T_WAIT(&acc, acceptor_closed, 10);
	acc.lid = -1;
	T_WAIT(&acc, quiet_all, 10);
	CHECK_EQ(rl_handoff_finished(h), 1);
	rl_handoff_free(h);
}

int main(void)
{
	t_init(&acc, NULL);
	acc.pump = pump_all;
	world[nworld++] = &acc;
	if (!(rl_worker_features(acc.w) & RL_FEAT_MSG_RING)) {
		fprintf(stderr, "skip: the kernel has no IORING_OP_MSG_RING\n");
		return T_SKIP;
	}
	for (int i = 0; i < NMEM; i++) {
		t_init(&mem[i], NULL);
		mem[i].on_event = member_event;
		mem[i].pump = pump_all;
		world[nworld++] = &mem[i];
	}
	bad_input();
	round_robin_and_leave();
	member_full();
	rejoin();
	acceptor_fails();
	acceptor_closed_while_joined();
	unix_socket();
	release_serves_late_pass();
	for (int i = 0; i < NMEM; i++)
		mem[i].pump = NULL;
	acc.pump = NULL;
	nworld = 0;
	t_finish(&acc);
	for (int i = 0; i < NMEM; i++)
		t_finish(&mem[i]);
	printf("handoff: ok\n");
	return 0;
}
