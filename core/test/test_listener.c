/* SPDX-License-Identifier: MIT */
/*
 * test_listener - listener lifetime: peers queued on a listener that is
 * closed before they were accepted are ended (EOF or reset) without an
 * RL_EV_ACCEPTED; connections accepted earlier outlive their listener; the
 * port can be listened on again once the close completed; two listeners
 * serve side by side and RL_EV_ACCEPTED names the right one. Unix socket
 * paths: a live socket is never taken over (-EADDRINUSE, its server still
 * reachable), a stale one is replaced, a file of another kind is left
 * alone, and RL_LISTEN_MODE sets the file's permissions.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "helpers.h"

#define QUEUED 3

static struct t_peer peers[12];
static int npeers;

static int pump(struct t_ctx *t)
{
	return t_peers_pump(peers, npeers);
}

static int first, last;
static int peers_ended(struct t_ctx *t)
{
	for (int i = first; i < last; i++)
		if (!peers[i].eof && !peers[i].err)
			return 0;
	return 1;
}

static int quiet(struct t_ctx *t)
{
	return rl_worker_live(t->w) == 0 && rl_worker_metrics(t->w)->ops_inflight == 0;
}

static int want_accepted;
static int accepted(struct t_ctx *t)
{
	return t_count(t, RL_EV_ACCEPTED, T_ANY, T_ANY) == want_accepted;
}

static int want_closed;
static int closed(struct t_ctx *t)
{
	return t_count(t, RL_EV_CLOSED, T_ANY, T_ANY) == want_closed;
}

static struct t_peer *new_peer(int port)
{
	struct t_peer *p = &peers[npeers++];
	t_peer_init(p, t_tcp_connect("127.0.0.1", port, 1));
	return p;
}

static int unix_socket(const char *path, int do_connect)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	strncpy(sun.sun_path, path, sizeof(sun.sun_path) - 1);
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	CHECK(fd >= 0);
	int rc = do_connect ? connect(fd, (struct sockaddr *)&sun, sizeof(sun))
			    : bind(fd, (struct sockaddr *)&sun, sizeof(sun));
	ASSERT(rc == 0, "%s %s: %s", do_connect ? "connect" : "bind", path, strerror(errno));
	return fd;
}

static struct t_peer *new_unix_peer(const char *path)
{
	struct t_peer *p = &peers[npeers++];
	int fd = unix_socket(path, 1);
	t_set_nonblock(fd);
	t_peer_init(p, fd);
	return p;
}

static void echo_check(struct t_ctx *t, struct t_peer *p, const char *text)
{
	static uint8_t in[12][64];
	int i = (int)(p - peers);
	p->out = (const uint8_t *)text;
	p->outlen = strlen(text);
	p->in = in[i];
	p->incap = strlen(text);
	p->shut_wr = 1;
	first = i;
	last = i + 1;
	T_WAIT(t, peers_ended, 10);
	CHECK_EQ(p->err, 0);
	CHECK_EQ(p->inlen, strlen(text));
	CHECK(memcmp(in[i], text, strlen(text)) == 0);
}

int main(void)
{
	struct t_ctx t;
	t_init(&t, NULL);
	t.on_event = t_echo_event;
	t.pump = pump;

	/* peers queued on a listener closed before any poll accepted them */
	t_listen(&t, NULL);
	int port = t.port;
	for (int i = 0; i < QUEUED; i++)
		new_peer(port);
	CHECK_EQ(rl_listener_close(t.w, t.lid), 0);
	CHECK_EQ(rl_listener_close(t.w, t.lid), -ENOENT);
	t.lid = -1;
	first = 0;
	last = QUEUED;
	T_WAIT(&t, peers_ended, 10);
	for (int i = 0; i < QUEUED; i++) {
		ASSERT(peers[i].eof || peers[i].err == ECONNRESET, "queued peer %d: %s", i,
		       strerror(peers[i].err));
		close(peers[i].fd);
		peers[i].fd = -1;
	}
	T_WAIT(&t, quiet, 10);
	CHECK_EQ(t_count(&t, RL_EV_ACCEPTED, T_ANY, T_ANY), 0);
	CHECK_EQ(t_count(&t, RL_EV_CLOSED, T_ANY, T_ANY), 0);
	t_check_idle(&t);

	/* the port is free again */
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", port);
	int lid = rl_listen(t.w, addr, 0);
	ASSERT(lid >= 0, "listening again on %s: %s", addr, rl_strerror(lid));
	t.lid = lid;
	t.port = port;

	/* an accepted connection outlives its listener */
	struct t_peer *p = new_peer(port);
	want_accepted = 1;
	T_WAIT(&t, accepted, 10);
	CHECK_EQ(t_last(&t, RL_EV_ACCEPTED, T_ANY, T_ANY)->data, lid);
	CHECK_EQ(rl_listener_close(t.w, lid), 0);
	t.lid = -1;
	echo_check(&t, p, "still here after the listener closed");
	want_closed = 1;
	T_WAIT(&t, closed, 10);
	close(p->fd);
	p->fd = -1;
	T_WAIT(&t, quiet, 10);

	/* two listeners side by side */
	int a = CHECK_RC(rl_listen(t.w, "127.0.0.1:0", 0));
	int b = CHECK_RC(rl_listen(t.w, "127.0.0.1:0", 0));
	CHECK_NE(a, b);
	CHECK_NE(rl_listener_port(t.w, a), rl_listener_port(t.w, b));
	p = new_peer(rl_listener_port(t.w, b));
	want_accepted = 2;
	T_WAIT(&t, accepted, 10);
	CHECK_EQ(t_last(&t, RL_EV_ACCEPTED, T_ANY, T_ANY)->data, b);
	echo_check(&t, p, "via b");
	close(p->fd);
	p->fd = -1;
	p = new_peer(rl_listener_port(t.w, a));
	want_accepted = 3;
	T_WAIT(&t, accepted, 10);
	CHECK_EQ(t_last(&t, RL_EV_ACCEPTED, T_ANY, T_ANY)->data, a);
	echo_check(&t, p, "via a");
	close(p->fd);
	p->fd = -1;
	want_closed = 3;
	T_WAIT(&t, closed, 10);
	CHECK_EQ(rl_listener_close(t.w, a), 0);
	CHECK_EQ(rl_listener_close(t.w, b), 0);

	/* unix: a live socket is refused, not taken over */
	char path[96], uaddr[128];
	struct stat st, st2;
	snprintf(path, sizeof(path), "/tmp/rl_test_listener_%d.sock", (int)getpid());
	snprintf(uaddr, sizeof(uaddr), "unix:%s", path);
	unlink(path);
	int u = CHECK_RC(rl_listen(t.w, uaddr, RL_LISTEN_MODE | (0600u << RL_LISTEN_MODE_SHIFT)));
	CHECK_EQ(stat(path, &st), 0);
	CHECK(S_ISSOCK(st.st_mode));
	CHECK_EQ(st.st_mode & 0777, 0600);
	CHECK_EQ(rl_listen(t.w, uaddr, 0), -EADDRINUSE);
	CHECK_EQ(stat(path, &st2), 0);
	CHECK_EQ(st2.st_ino, st.st_ino); /* the same file: not unlinked and rebound */
	p = new_unix_peer(path);
	/* the refused listen's probe connected too: the live server sees one
	 * connection that ends at once */
	want_accepted = 5;
	T_WAIT(&t, accepted, 10);
	CHECK_EQ(t_last(&t, RL_EV_ACCEPTED, T_ANY, T_ANY)->data, u);
	echo_check(&t, p, "the first server still answers");
	close(p->fd);
	p->fd = -1;
	want_closed = 5;
	T_WAIT(&t, closed, 10);
	CHECK_EQ(rl_listener_close(t.w, u), 0);

	/* a stale socket (bound, never listening, closed) is replaced; the
	 * mode goes with the new file, whatever the umask made */
	unlink(path);
	close(unix_socket(path, 0));
	CHECK_EQ(stat(path, &st), 0);
	CHECK(S_ISSOCK(st.st_mode));
	u = CHECK_RC(rl_listen(t.w, uaddr, RL_LISTEN_MODE | (0640u << RL_LISTEN_MODE_SHIFT)));
	CHECK_EQ(stat(path, &st2), 0);
	CHECK_EQ(st2.st_mode & 0777, 0640);
	p = new_unix_peer(path);
	want_accepted = 6;
	T_WAIT(&t, accepted, 10);
	CHECK_EQ(t_last(&t, RL_EV_ACCEPTED, T_ANY, T_ANY)->data, u);
	echo_check(&t, p, "the new server answers");
	close(p->fd);
	p->fd = -1;
	want_closed = 6;
	T_WAIT(&t, closed, 10);
	CHECK_EQ(rl_listener_close(t.w, u), 0);
	unlink(path);

	/* a file of another kind is never removed */
	FILE *f = fopen(path, "w");
	CHECK(f != NULL);
	fclose(f);
	CHECK_EQ(rl_listen(t.w, uaddr, 0), -EADDRINUSE);
	CHECK_EQ(stat(path, &st), 0);
	CHECK(S_ISREG(st.st_mode));
	unlink(path);

	/* a mode is for unix sockets only */
	CHECK_EQ(rl_listen(t.w, "127.0.0.1:0", RL_LISTEN_MODE | (0600u << RL_LISTEN_MODE_SHIFT)),
		 -EINVAL);
	t_finish(&t);
	return 0;
}
