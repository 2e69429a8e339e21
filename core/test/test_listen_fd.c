/* SPDX-License-Identifier: MIT */
/*
 * test_listen_fd - listeners on sockets made elsewhere (rl_listen_fd: what
 * the host adopts across a reload, from systemd or from the process that
 * exec'd it) and their release (rl_listener_release).
 *
 * A peer queued on a socket whose accept is armed and cancelled in the same
 * submission is accepted by the kernel after the close began (io_uring
 * issues the accept at once, then the cancel): rl_listener_close resets it,
 * rl_listener_release reports it as RL_EV_ACCEPTED, since the socket lives
 * on in another worker and nobody else would serve that peer. A released
 * socket stays open and listening for its other holder (a dup), and a unix
 * socket is not shut for reading by the release. Not a listening socket:
 * -EINVAL, and the caller keeps its descriptor.
 *
 * Two workers on one socket (a reload: the new worker's listener is a dup
 * of the old one's socket): the kernel wakes one accept per peer. A peer
 * whose wake-up went to the releasing worker's accept as its cancel was
 * under way is still accepted (by that worker, as a late peer), not left
 * queued with nobody woken for it.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

static struct t_peer peers[4];
static int npeers;

static int pump(struct t_ctx *t)
{
	(void)t;
	return t_peers_pump(peers, npeers);
}

static int want;
static int accepted(struct t_ctx *t)
{
	return t_count(t, RL_EV_ACCEPTED, T_ANY, T_ANY) == want;
}

static int peer_ended(struct t_ctx *t)
{
	(void)t;
	return peers[0].eof || peers[0].err;
}

static int echoed(struct t_ctx *t)
{
	(void)t;
	return peers[0].inlen >= 5;
}

static int quiet(struct t_ctx *t)
{
	return rl_worker_live(t->w) == 0 && rl_worker_metrics(t->w)->ops_inflight == 0;
}

/* One peer queued on fd (a dup of a listening socket), then a listener on
 * it opened and closed (release or not) before the worker ever polled. */
static void late_peer(int release)
{
	struct t_ctx t;
	int s = t_tcp_bound(16);
	int port = t_local_port(s);
	int fd = dup(s);

	t_init(&t, NULL);
	t.pump = pump;
	npeers = 0;
	t_peer_init(&peers[npeers++], t_tcp_connect("127.0.0.1", port, 1));
	int id = CHECK_RC(rl_listen_fd(t.w, fd, RL_LISTEN_NODELAY));
	CHECK_EQ(rl_listener_port(t.w, id), port);
	if (release)
		CHECK_RC(rl_listener_release(t.w, id));
	else
		CHECK_RC(rl_listener_close(t.w, id));
	if (release) {
		want = 1;
		T_WAIT(&t, accepted, 5);
		const struct rl_event *e = t_last(&t, RL_EV_ACCEPTED, T_ANY, T_ANY);
		CHECK_EQ(e->data, id);
		/* served: it echoes what the peer writes */
		static const uint8_t hello[] = "hello";
		static uint8_t in[8];
		peers[0].out = hello;
		peers[0].outlen = 5;
		peers[0].in = in;
		peers[0].incap = sizeof(in);
		t.on_event = t_echo_event;
		t_echo(t.w, e->slot, e->gen);
		T_WAIT(&t, echoed, 5);
		CHECK(memcmp(in, hello, 5) == 0);
		shutdown(peers[0].fd, SHUT_WR);
		T_WAIT(&t, peer_ended, 5);
	} else {
		T_WAIT(&t, peer_ended, 5);
		CHECK_EQ(t_count(&t, RL_EV_ACCEPTED, T_ANY, T_ANY), 0);
	}
	T_WAIT(&t, quiet, 5);
	close(peers[0].fd);
	t.lid = -1;
	t_finish(&t);
	/* the original descriptor still listens: a new peer connects and
	 * is queued (accept4 takes it) */
	int p = t_tcp_connect("127.0.0.1", port, 0);
	int a = accept4(s, NULL, NULL, SOCK_CLOEXEC);
	CHECK_GE(a, 0);
	close(a);
	close(p);
	close(s);
}

static int accepted_by(struct t_ctx *t, const struct rl_event **e)
{
	int n = t_count(t, RL_EV_ACCEPTED, T_ANY, T_ANY);
	if (n)
		*e = t_last(t, RL_EV_ACCEPTED, T_ANY, T_ANY);
	return n;
}

static void release_beside_another(void)
{
	struct t_ctx a, b;
	int s = t_tcp_bound(16);
	int port = t_local_port(s);

	t_init(&a, NULL);
	t_init(&b, NULL);
	/* a's accept waits on the socket first, so the wake-up is its own */
	int ida = CHECK_RC(rl_listen_fd(a.w, dup(s), RL_LISTEN_NODELAY));
	CHECK_EQ(t_step(&a, 0), 0);
	int idb = CHECK_RC(rl_listen_fd(b.w, dup(s), RL_LISTEN_NODELAY));
	CHECK_EQ(t_step(&b, 0), 0);
	npeers = 0;
	t_peer_init(&peers[npeers++], t_tcp_connect("127.0.0.1", port, 1));
	/* the peer is queued and a was woken for it; a has not run that
	 * wake-up (with DEFER_TASKRUN it runs in a's next poll) when it
	 * releases: its accept ends cancelled, without the peer */
	struct pollfd pf = { .fd = s, .events = POLLIN };
	CHECK_EQ(poll(&pf, 1, 5000), 1);
	CHECK_RC(rl_listener_release(a.w, ida));
	const struct rl_event *e = NULL;
	struct t_ctx *by = NULL;
	double until = t_now() + 5;
	while (!by && t_now() < until) {
		t_step(&a, 1);
		t_step(&b, 1);
		if (accepted_by(&a, &e))
			by = &a;
		else if (accepted_by(&b, &e))
			by = &b;
	}
	ASSERT(by, "the peer queued while a released its accept was accepted by nobody");
	CHECK_EQ(t_count(&a, RL_EV_ACCEPTED, T_ANY, T_ANY) + t_count(&b, RL_EV_ACCEPTED, T_ANY, T_ANY),
		 1);
	CHECK_EQ(e->data, by == &a ? ida : idb);
	CHECK_EQ(rl_worker_metrics(a.w)->accept_errors, 0);
	/* served: it echoes what the peer writes */
	static const uint8_t hello[] = "hello";
	static uint8_t in[8];
	peers[0].out = hello;
	peers[0].outlen = 5;
	peers[0].in = in;
	peers[0].incap = sizeof(in);
	by->pump = pump;
	by->on_event = t_echo_event;
	t_echo(by->w, e->slot, e->gen);
	T_WAIT(by, echoed, 5);
	CHECK(memcmp(in, hello, 5) == 0);
	shutdown(peers[0].fd, SHUT_WR);
	T_WAIT(by, peer_ended, 5);
	T_WAIT(&a, quiet, 5);
	CHECK_RC(rl_listener_close(b.w, idb));
	T_WAIT(&b, quiet, 5);
	close(peers[0].fd);
	npeers = 0;
	a.lid = b.lid = -1;
	t_finish(&a);
	t_finish(&b);
	close(s);
}

int main(void)
{
	struct t_ctx t;
	int fds[2];

	late_peer(0);
	late_peer(1);
	release_beside_another();

	/* not listening sockets: refused, the descriptor still the caller's */
	t_init(&t, NULL);
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, fds), 0);
	CHECK_EQ(rl_listen_fd(t.w, fds[0], 0), -EINVAL);
	CHECK(fcntl(fds[0], F_GETFD) >= 0);
	int unbound = socket(AF_INET, SOCK_STREAM, 0);
	CHECK_EQ(rl_listen_fd(t.w, unbound, 0), -EINVAL);
	CHECK_EQ(rl_listen_fd(t.w, -1, 0), -EBADF);
	close(unbound);
	close(fds[0]);
	close(fds[1]);
	t.lid = -1;
	t_finish(&t);
	printf("ok\n");
	return 0;
}
