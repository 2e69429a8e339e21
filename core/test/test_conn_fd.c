/* SPDX-License-Identifier: MIT */
/*
 * test_conn_fd - plain descriptors for connections: an inbound connection
 * lives only in the fixed file table, so rl_conn_fd installs a descriptor
 * (-EAGAIN, then RL_EV_FD); getpeername through rl_fd_name matches the
 * peer's local port, options set through rl_fd_setoption stick, the data
 * path is unaffected, and the core closes the descriptor with the
 * connection. Outbound connections have one at once. Without
 * IORING_OP_FIXED_FD_INSTALL (kernel 6.8; or RINGLINE_DISABLE_FEATURES=
 * fd_install) inbound connections are accepted as plain descriptors and
 * have theirs at once too; the same checks run on that path.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

static struct t_peer peer;
static uint32_t s_slot = T_ANY, s_gen;
static uint32_t o_slot = T_ANY, o_gen;
static int echo_on;

static void on_event(struct t_ctx *t, const struct rl_event *e)
{
	switch (e->type) {
	case RL_EV_ACCEPTED:
		s_slot = e->slot;
		s_gen = e->gen;
		break;
	case RL_EV_CONNECTED:
		ASSERT(e->res == 0, "connect: %s", rl_strerror(e->res));
		o_slot = e->slot;
		o_gen = e->gen;
		break;
	case RL_EV_RECV:
		if (echo_on)
			t_echo(t->w, e->slot, e->gen);
		break;
	case RL_EV_FD:
	case RL_EV_CLOSED:
		break;
	default:
		FAIL("unexpected event %u", e->type);
	}
}

static int pump(struct t_ctx *t)
{
	return t_peer_pump(&peer) > 0;
}

static int accepted(struct t_ctx *t)
{
	return s_slot != T_ANY;
}

static int fd_event(struct t_ctx *t)
{
	return t_count(t, RL_EV_FD, s_slot, s_gen) > 0;
}

static int s_closed(struct t_ctx *t)
{
	return t_count(t, RL_EV_CLOSED, s_slot, s_gen) == 1;
}

static int both_open(struct t_ctx *t)
{
	return s_slot != T_ANY && o_slot != T_ANY;
}

static int both_closed(struct t_ctx *t)
{
	return t_count(t, RL_EV_CLOSED, s_slot, s_gen) == 1 &&
	       t_count(t, RL_EV_CLOSED, o_slot, o_gen) == 1;
}

static int peer_done(struct t_ctx *t)
{
	return peer.eof || peer.err;
}

static int fd_closed(int fd)
{
	return fcntl(fd, F_GETFD) == -1 && errno == EBADF;
}

static int getopt_int(int fd, int level, int name)
{
	int v = -1;
	socklen_t len = sizeof(v);
	CHECK(getsockopt(fd, level, name, &v, &len) == 0);
	return v;
}

static int fd_install; /* the kernel installs descriptors on demand */

/* rl_conn_fd on an inbound connection: -EAGAIN, then RL_EV_FD (or, accepted
 * as a plain descriptor, that one at once and no event). */
static int install(struct t_ctx *t)
{
	if (!fd_install) {
		int fd = CHECK_RC(rl_conn_fd(t->w, s_slot, s_gen));
		CHECK_EQ(rl_conn_fd(t->w, s_slot, s_gen), fd);
		CHECK_EQ(t_count(t, RL_EV_FD, s_slot, s_gen), 0);
		return fd;
	}
	CHECK_EQ(rl_conn_fd(t->w, s_slot, s_gen), -EAGAIN);
	CHECK_EQ(rl_conn_fd(t->w, s_slot, s_gen), -EAGAIN); /* still pending */
	T_WAIT(t, fd_event, 10);
	CHECK_EQ(t_count(t, RL_EV_FD, s_slot, s_gen), 1);
	int fd = t_last(t, RL_EV_FD, s_slot, s_gen)->res;
	ASSERT(fd >= 0, "RL_EV_FD: %s", rl_strerror(fd));
	CHECK_EQ(rl_conn_fd(t->w, s_slot, s_gen), fd); /* now at once */
	return fd;
}

static void inbound_tcp(struct t_ctx *t)
{
	char host[64];
	s_slot = T_ANY;
	t_peer_init(&peer, t_tcp_connect("127.0.0.1", t->port, 1));
	T_WAIT(t, accepted, 10);
	int fd = install(t);

	CHECK_EQ(rl_fd_name(fd, 1, host, sizeof(host)), t_local_port(peer.fd));
	CHECK_EQ(strcmp(host, "127.0.0.1"), 0);
	CHECK_EQ(rl_fd_name(fd, 0, host, sizeof(host)), t->port);
	CHECK_EQ(strcmp(host, "127.0.0.1"), 0);

	CHECK_EQ(rl_fd_setoption(fd, RL_OPT_NODELAY, 1), 0);
	CHECK_NE(getopt_int(fd, IPPROTO_TCP, TCP_NODELAY), 0);
	CHECK_EQ(rl_fd_setoption(fd, RL_OPT_NODELAY, 0), 0);
	CHECK_EQ(getopt_int(fd, IPPROTO_TCP, TCP_NODELAY), 0);
	CHECK_EQ(rl_fd_setoption(fd, RL_OPT_KEEPALIVE, 1), 0);
	CHECK_NE(getopt_int(fd, SOL_SOCKET, SO_KEEPALIVE), 0);
	CHECK_EQ(rl_fd_setoption(fd, RL_OPT_SNDBUF, 65536), 0);
	CHECK_GE(getopt_int(fd, SOL_SOCKET, SO_SNDBUF), 65536);
	CHECK_EQ(rl_fd_setoption(fd, RL_OPT_RCVBUF, 65536), 0);
	CHECK_GE(getopt_int(fd, SOL_SOCKET, SO_RCVBUF), 65536);
	CHECK_EQ(rl_fd_setoption(fd, 999, 1), -EINVAL);

	/* the data path still goes through the fixed file */
	static uint8_t out[100000], in[100000];
	t_pattern(out, sizeof(out), 8, 0);
	peer.out = out;
	peer.outlen = sizeof(out);
	peer.in = in;
	peer.incap = sizeof(in);
	peer.shut_wr = 1;
	echo_on = 1;
	t_echo(t->w, s_slot, s_gen);
	T_WAIT(t, peer_done, 10);
	T_WAIT(t, s_closed, 10);
	echo_on = 0;
	CHECK_EQ(peer.err, 0);
	CHECK_EQ(peer.inlen, sizeof(in));
	CHECK(memcmp(in, out, sizeof(in)) == 0);
	/* the core closed its descriptor with the connection */
	ASSERT(fd_closed(fd), "descriptor %d still open after RL_EV_CLOSED", fd);
	close(peer.fd);
	t_check_idle(t);
}

static int count_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	CHECK(d != NULL);
	while (readdir(d))
		n++;
	closedir(d);
	return n;
}

/* Closing (either way) while the install is in flight: whatever descriptor
 * the install made is closed by the core, none leaks. */
static void close_while_installing(struct t_ctx *t, int how)
{
	s_slot = T_ANY;
	int fds_before = count_fds();
	t_peer_init(&peer, t_tcp_connect("127.0.0.1", t->port, 1));
	T_WAIT(t, accepted, 10);
	CHECK_EQ(rl_conn_fd(t->w, s_slot, s_gen), -EAGAIN);
	CHECK_EQ(rl_conn_close(t->w, s_slot, s_gen, how), 0);
	CHECK_EQ(rl_conn_fd(t->w, s_slot, s_gen), -EPIPE);
	T_WAIT(t, s_closed, 10);
	CHECK_LE(t_count(t, RL_EV_FD, s_slot, s_gen), 1);
	const struct rl_event *fe = t_last(t, RL_EV_FD, s_slot, s_gen);
	if (fe && fe->res >= 0)
		ASSERT(fd_closed(fe->res), "descriptor %d leaked by close(%d) during its install",
		       fe->res, how);
	CHECK_EQ(rl_conn_fd(t->w, s_slot, s_gen), -ESTALE);
	T_WAIT(t, peer_done, 10);
	if (how == RL_CLOSE_RESET)
		ASSERT(peer.err == ECONNRESET, "peer after reset: %s", strerror(peer.err));
	close(peer.fd);
	int fds_after = count_fds();
	ASSERT(fds_after == fds_before, "close(%d) during an install: %d descriptors, then %d",
	       how, fds_before, fds_after);
	t_check_idle(t);
}

static void outbound(struct t_ctx *t)
{
	char addr[64], host[64];
	s_slot = o_slot = T_ANY;
	peer.fd = -1;
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", t->port);
	CHECK_EQ(rl_connect(t->w, addr, 0, 1), 0);
	T_WAIT(t, both_open, 10);
	/* an outbound connection has its descriptor from the start */
	int ofd = rl_conn_fd(t->w, o_slot, o_gen);
	ASSERT(ofd >= 0, "outbound rl_conn_fd: %s", rl_strerror(ofd));
	CHECK_EQ(rl_fd_name(ofd, 1, host, sizeof(host)), t->port);
	int oport = rl_fd_name(ofd, 0, host, sizeof(host));
	CHECK_GT(oport, 0);
	/* the accepted side sees the outbound side's local port */
	int sfd = install(t);
	CHECK_EQ(rl_fd_name(sfd, 1, host, sizeof(host)), oport);
	CHECK_EQ(rl_conn_close(t->w, o_slot, o_gen, RL_CLOSE_GRACEFUL), 0);
	CHECK_EQ(rl_conn_close(t->w, s_slot, s_gen, RL_CLOSE_GRACEFUL), 0);
	T_WAIT(t, both_closed, 10);
	ASSERT(fd_closed(ofd), "outbound descriptor %d leaked", ofd);
	ASSERT(fd_closed(sfd), "inbound descriptor %d leaked", sfd);
	t_check_idle(t);
}

static void inbound_unix(struct t_ctx *t)
{
	char path[108], uaddr[128], host[128], want[128];
	snprintf(path, sizeof(path), "/tmp/rl-test-connfd-%d.sock", (int)getpid());
	snprintf(uaddr, sizeof(uaddr), "unix:%s", path);
	int ul = CHECK_RC(rl_listen(t->w, uaddr, 0));
	s_slot = o_slot = T_ANY;
	CHECK_EQ(rl_connect(t->w, uaddr, 0, 2), 0);
	T_WAIT(t, both_open, 10);
	int sfd = install(t);
	CHECK_EQ(rl_fd_name(sfd, 0, host, sizeof(host)), 0);
	snprintf(want, sizeof(want), "unix:%s", path);
	ASSERT(strcmp(host, want) == 0, "unix name '%s', want '%s'", host, want);
	CHECK_EQ(rl_conn_close(t->w, o_slot, o_gen, RL_CLOSE_GRACEFUL), 0);
	CHECK_EQ(rl_conn_close(t->w, s_slot, s_gen, RL_CLOSE_GRACEFUL), 0);
	T_WAIT(t, both_closed, 10);
	CHECK_EQ(rl_listener_close(t->w, ul), 0);
	unlink(path);
}

int main(void)
{
	struct t_ctx t;
	t_init(&t, NULL);
	fd_install = (rl_worker_features(t.w) & RL_FEAT_FD_INSTALL) != 0;
	t.on_event = on_event;
	t.pump = pump;
	t_listen(&t, NULL);
	char host[8];
	CHECK_EQ(rl_fd_name(-1, 1, host, sizeof(host)), -EBADF);

	inbound_tcp(&t);
	if (fd_install) { /* there is an install to close during */
		close_while_installing(&t, RL_CLOSE_GRACEFUL);
		close_while_installing(&t, RL_CLOSE_RESET);
	}
	outbound(&t);
	inbound_unix(&t);

	peer.fd = -1;
	t_finish(&t);
	return 0;
}
