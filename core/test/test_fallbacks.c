/* SPDX-License-Identifier: MIT */
/*
 * test_fallbacks - the worker on a kernel without what it probes for
 * (RINGLINE_DISABLE_FEATURES=all: no DEFER_TASKRUN, SINGLE_ISSUER,
 * SENDMSG_ZC, FIXED_FD_INSTALL or MSG_RING): it still serves. A ring without
 * the setup flags echoes; an inbound connection, accepted as a plain
 * descriptor and installed, has its names at once and resets with an RST;
 * a guarded send goes out copied and its guard is released; a
 * post with the sender's ring as doorbell falls back to the eventfd; a
 * hand-off group cannot be made and says so. Zero-copy sends work without
 * the copy report (6.1). Out of descriptors, a plain accept refuses the
 * peer instead of spinning. The list is parsed by name.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

static struct t_peer peer;
static int pump(struct t_ctx *t)
{
	(void)t;
	return t_peers_pump(&peer, 1);
}

static int peer_ended(struct t_ctx *t)
{
	(void)t;
	return peer.eof || peer.err;
}

static int nclosed;
static int closed(struct t_ctx *t)
{
	return t_count(t, RL_EV_CLOSED, T_ANY, T_ANY) == nclosed;
}

static int got_message(struct t_ctx *t)
{
	return t_count(t, RL_EV_MESSAGE, T_ANY, T_ANY) > 0;
}

static void quiet(struct t_ctx *t, const struct rl_event *e)
{
	(void)t;
	(void)e;
}

/* One accepted connection of the fixture, as (slot, gen). */
static const struct rl_event *accept_one(struct t_ctx *t)
{
	int before = t_count(t, RL_EV_ACCEPTED, T_ANY, T_ANY);
	t_peer_init(&peer, t_tcp_connect("127.0.0.1", t->port, 1));
	while (t_count(t, RL_EV_ACCEPTED, T_ANY, T_ANY) == before)
		t_step(t, 10);
	return t_last(t, RL_EV_ACCEPTED, T_ANY, T_ANY);
}

static void echo(void)
{
	struct t_ctx t;
	t_init(&t, NULL);
	CHECK_EQ(rl_worker_features(t.w), 0);
	t.on_event = t_echo_event;
	t.pump = pump;
	t_listen(&t, NULL);
	static uint8_t in[64];
	t_peer_init(&peer, t_tcp_connect("127.0.0.1", t.port, 1));
	peer.out = (const uint8_t *)"no flags, no probes\n";
	peer.outlen = strlen((const char *)peer.out);
	peer.in = in;
	peer.incap = sizeof(in);
	peer.shut_wr = 1;
	T_WAIT(&t, peer_ended, 10);
	CHECK_EQ(peer.err, 0);
	CHECK_EQ(peer.inlen, peer.outlen);
	CHECK(memcmp(in, peer.out, peer.outlen) == 0);
	close(peer.fd);
	peer.fd = -1;
	t_finish(&t);
}

/* One connection: an 8 KiB guarded part sent, its guard back once, the
 * bytes right at the peer, then a graceful close (the nclosed-th). */
static void guarded_send(struct t_ctx *t)
{
	static uint8_t body[8192];
	t_pattern(body, sizeof(body), 5, 0);
	const struct rl_event *a = accept_one(t);
	peer.in = NULL;
	peer.check_in = 1;
	peer.in_seed = 5;
	int guards = t_count(t, RL_EV_GUARD, T_ANY, T_ANY);
	struct rl_part part = { .ptr = body, .len = sizeof(body), .region = RL_PART_PINNED,
				.token = 77 };
	CHECK_RC(rl_conn_sendv(t->w, a->slot, a->gen, &part, 1));
	while (t_count(t, RL_EV_GUARD, T_ANY, T_ANY) == guards)
		t_step(t, 10), pump(t);
	CHECK_EQ(t_count(t, RL_EV_GUARD, T_ANY, T_ANY), guards + 1);
	CHECK_EQ(t_last(t, RL_EV_GUARD, T_ANY, T_ANY)->data, 77);
	CHECK_RC(rl_conn_close(t->w, a->slot, a->gen, RL_CLOSE_GRACEFUL));
	T_WAIT(t, closed, 10);
	T_WAIT(t, peer_ended, 10);
	CHECK_EQ(peer.err, 0);
	CHECK_EQ(peer.inlen, sizeof(body));
	close(peer.fd);
}

static void reset_and_guard(void)
{
	struct t_ctx t;
	struct rl_config cfg;
	t_config_small(&cfg);
	cfg.zc_threshold = 1024;
	t_init(&t, &cfg);
	t.on_event = quiet;
	t.pump = pump;
	t_listen(&t, NULL);

	/* accepted as a plain descriptor: the peer's name without a wait, and
	 * a reset that is an RST (SO_LINGER on that descriptor) */
	const struct rl_event *a = accept_one(&t);
	int fd = CHECK_RC(rl_conn_fd(t.w, a->slot, a->gen));
	char host[64];
	CHECK_EQ(rl_fd_name(fd, 1, host, sizeof(host)), t_local_port(peer.fd));
	CHECK(strcmp(host, "127.0.0.1") == 0);
	CHECK_EQ(rl_worker_metrics(t.w)->conns_accepted, 1);
	nclosed = 1;
	CHECK_RC(rl_conn_close(t.w, a->slot, a->gen, RL_CLOSE_RESET));
	T_WAIT(&t, closed, 10);
	T_WAIT(&t, peer_ended, 10);
	CHECK_EQ(peer.err, ECONNRESET);
	close(peer.fd);

	/* a guarded part over zc_threshold: copied, released once */
	nclosed = 2;
	guarded_send(&t);
	CHECK_EQ(rl_worker_metrics(t.w)->zc_sends, 0);
	peer.fd = -1;
	t_finish(&t);
}

/* Without IORING_SEND_ZC_REPORT_USAGE (6.1): zero-copy sends still go out,
 * they just cannot say the kernel copied; with it, loopback says so. */
static void zc_without_usage(const char *off, int usage)
{
	struct t_ctx t;
	struct rl_config cfg;
	setenv("RINGLINE_DISABLE_FEATURES", off, 1);
	t_config_small(&cfg);
	cfg.zc_threshold = 1024;
	t_init(&t, &cfg);
	CHECK((rl_worker_features(t.w) & RL_FEAT_SENDMSG_ZC) != 0);
	CHECK_EQ((rl_worker_features(t.w) & RL_FEAT_ZC_REPORT_USAGE) != 0, usage);
	t.on_event = quiet;
	t.pump = pump;
	t_listen(&t, NULL);
	nclosed = 1;
	guarded_send(&t);
	const struct rl_metrics *m = rl_worker_metrics(t.w);
	CHECK_GE(m->zc_sends, 1);
	CHECK_GE(m->zc_notifs, 1);
	if (usage)
		CHECK_GE(m->zc_copied, 1); /* loopback always copies */
	else
		CHECK_EQ(m->zc_copied, 0);
	peer.fd = -1;
	t_finish(&t);
}

static void post_and_handoff(void)
{
	struct t_ctx a, b;
	t_init(&a, NULL);
	t_init(&b, NULL);
	/* "via b" would be a MSG_RING from b's ring; without it, the eventfd */
	uint64_t before = rl_worker_metrics(b.w)->ops_inflight;
	CHECK_RC(rl_worker_post(a.w, 1, RL_MSG_USER, "hi", 2, b.w));
	CHECK_EQ(rl_worker_metrics(b.w)->ops_inflight, before); /* nothing on b's ring */
	T_WAIT(&a, got_message, 10);
	char buf[8];
	uint32_t from = 0, kind = 0;
	CHECK_EQ(rl_worker_take_message(a.w, buf, sizeof(buf), &from, &kind), 2);
	CHECK(memcmp(buf, "hi", 2) == 0);
	CHECK_EQ(from, 1);
	CHECK_EQ(kind, RL_MSG_USER);

	struct rl_handoff *h = NULL;
	CHECK_EQ(rl_handoff_new("127.0.0.1:0", 0, 16, &h), -EOPNOTSUPP);
	CHECK(h == NULL);
	t_finish(&a);
	t_finish(&b);
}

/* Out of descriptors, a plain accept fails with EMFILE and leaves the
 * peer queued: the listener refuses it with its reserve descriptor instead
 * of failing again and again (a spin), and serves once there are some. */
static int three_refused(struct t_ctx *t)
{
	return rl_worker_metrics(t->w)->conns_refused == 3;
}

static void out_of_descriptors(void)
{
	struct t_ctx t;
	struct rlimit saved, low;
	setenv("RINGLINE_DISABLE_FEATURES", "fd_install", 1);
	t_init(&t, NULL);
	t.on_event = t_echo_event;
	t.pump = pump;

	/* the peers' sockets first; then nothing left to accept with (the
	 * kernel reads the limit when the accept is armed: listen after) */
	int pfds[3];
	for (int i = 0; i < 3; i++)
		CHECK((pfds[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0)) >= 0);
	CHECK_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
	int fill[256], n = 0;
	low = saved;
	low.rlim_cur = 0;
	for (int fd = 0; fd < 4096; fd++)
		if (fcntl(fd, F_GETFD) >= 0)
			low.rlim_cur = (rlim_t)fd + 1;
	low.rlim_cur += 8;
	CHECK_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
	int fd;
	while (n < 256 && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
		fill[n++] = fd;
	CHECK_EQ(errno, EMFILE);
	close(fill[--n]); /* the listening socket's */
	t_listen(&t, NULL);
	t_step(&t, 0);

	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)t.port) };
	sin.sin_addr.s_addr = htonl(0x7f000001);
	/* three at once: each refusal must leave the reserve to refuse the next
	 * with (it is taken back after the refused socket is closed) */
	for (int i = 0; i < 3; i++)
		CHECK_EQ(connect(pfds[i], (struct sockaddr *)&sin, sizeof(sin)), 0);
	T_WAIT(&t, three_refused, 10);
	const struct rl_metrics *m = rl_worker_metrics(t.w);
	CHECK_EQ(m->conns_refused, 3);
	CHECK_EQ(m->conns_accepted, 0);
	for (int i = 0; i < 3; i++) { /* each was closed: EOF or a reset */
		char b;
		ssize_t r = recv(pfds[i], &b, 1, 0);
		ASSERT(r == 0 || (r < 0 && errno == ECONNRESET), "peer %d: %zd (%s)", i, r,
		       strerror(errno));
	}
	/* no spin: a while of polling adds no failed accepts */
	uint64_t errs = m->accept_errors;
	double t0 = t_now();
	for (int i = 0; i < 20; i++)
		t_step(&t, 5);
	/* at most one try per RL_ACCEPT_RETRY_S (0.1 s), and one to start */
	CHECK_LE(m->accept_errors, errs + 2 + (uint64_t)((t_now() - t0) / 0.1));
	for (int i = 0; i < 3; i++)
		close(pfds[i]);

	/* descriptors again: the next peer is served */
	while (n > 0)
		close(fill[--n]);
	CHECK_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
	static uint8_t in[16];
	t_peer_init(&peer, t_tcp_connect("127.0.0.1", t.port, 1));
	peer.out = (const uint8_t *)"again\n";
	peer.outlen = 6;
	peer.in = in;
	peer.incap = sizeof(in);
	peer.shut_wr = 1;
	T_WAIT(&t, peer_ended, 10);
	CHECK_EQ(peer.err, 0);
	CHECK_EQ(peer.inlen, 6);
	close(peer.fd);
	peer.fd = -1;
	t_finish(&t);
}

/* Inbound installs share the outbound requests' pool: a cancel of connect
 * token 0 must not find one (inbound requests carry token 0). */
static void cancel_is_outbound_only(void)
{
	struct t_ctx t;
	setenv("RINGLINE_DISABLE_FEATURES", "fd_install", 1);
	t_init(&t, NULL);
	t.on_event = quiet;
	t.pump = pump;
	t_listen(&t, NULL);
	int live = rl_worker_live(t.w);
	t_peer_init(&peer, t_tcp_connect("127.0.0.1", t.port, 1));
	/* the accept completed and its install is queued (it goes out with
	 * the next poll's submission): an inbound request is live */
	while (rl_worker_live(t.w) == live)
		t_step(&t, 1);
	CHECK_EQ(t_count(&t, RL_EV_ACCEPTED, T_ANY, T_ANY), 0);
	CHECK_EQ(rl_connect_cancel(t.w, 0), -ENOENT);
	while (!t_count(&t, RL_EV_ACCEPTED, T_ANY, T_ANY))
		t_step(&t, 1);
	const struct rl_event *a = t_last(&t, RL_EV_ACCEPTED, T_ANY, T_ANY);
	CHECK_RC(rl_conn_close(t.w, a->slot, a->gen, RL_CLOSE_RESET));
	nclosed = 1;
	T_WAIT(&t, closed, 10);
	close(peer.fd);
	peer.fd = -1;
	t_finish(&t);
}

/* Each worker's connections count against the one process's descriptor
 * limit (plain accepts): the soft limit covers all workers together. */
static void nofile_for_all(void)
{
	struct rl_config cfg;
	struct rlimit rl;
	struct rl_worker *a, *b;
	char msg[256];
	t_config_small(&cfg);
	cfg.max_connections = 3000;
	struct rlimit saved;
	CHECK_EQ(getrlimit(RLIMIT_NOFILE, &saved), 0);
	/* the machine's hard limit must leave room for the sum (6128 here) */
	CHECK_GE(saved.rlim_max, 2 * (3000 + 64));
	rl = saved;
	rl.rlim_cur = 1024;
	CHECK_EQ(setrlimit(RLIMIT_NOFILE, &rl), 0);
	CHECK_RC(rl_worker_new(&cfg, &a, msg, sizeof(msg)));
	CHECK_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
	CHECK_GE(rl.rlim_cur, 3000 + 64);
	CHECK_RC(rl_worker_new(&cfg, &b, msg, sizeof(msg)));
	CHECK_EQ(getrlimit(RLIMIT_NOFILE, &rl), 0);
	CHECK_GE(rl.rlim_cur, 2 * (3000 + 64));
	CHECK_EQ(rl_worker_destroy(a), 0);
	CHECK_EQ(rl_worker_destroy(b), 0);
	CHECK_EQ(setrlimit(RLIMIT_NOFILE, &saved), 0);
}

/* The list is parsed by name; unknown names are ignored (and reported once, on stderr). */
static void by_name(void)
{
	struct rl_worker *w;
	char msg[256];
	setenv("RINGLINE_DISABLE_FEATURES", "sendmsg_zc,bogus,fd_install", 1);
	CHECK_RC(rl_worker_new(NULL, &w, msg, sizeof(msg)));
	uint32_t f = rl_worker_features(w);
	CHECK_EQ(f & (RL_FEAT_SENDMSG_ZC | RL_FEAT_FD_INSTALL), 0);
	CHECK(f & RL_FEAT_MSG_RING);
	CHECK(f & RL_FEAT_DEFER_TASKRUN);
	CHECK_EQ(rl_worker_destroy(w), 0);
	setenv("RINGLINE_DISABLE_FEATURES", "defer_taskrun", 1);
	CHECK_RC(rl_worker_new(NULL, &w, msg, sizeof(msg)));
	f = rl_worker_features(w);
	CHECK_EQ(f & RL_FEAT_DEFER_TASKRUN, 0);
	CHECK(f & RL_FEAT_SINGLE_ISSUER);
	CHECK(f & RL_FEAT_COOP_TASKRUN);
	CHECK_EQ(rl_worker_destroy(w), 0);
}

int main(void)
{
	/* what this kernel has, to compare with */
	struct rl_worker *w;
	char msg[256];
	unsetenv("RINGLINE_DISABLE_FEATURES");
	if (rl_worker_new(NULL, &w, msg, sizeof(msg)) < 0) {
		fprintf(stderr, "skip: no io_uring: %s\n", msg);
		return T_SKIP;
	}
	uint32_t all = rl_worker_features(w);
	CHECK_EQ(rl_worker_destroy(w), 0);
	if (!(all & RL_FEAT_DEFER_TASKRUN) || !(all & RL_FEAT_MSG_RING)) {
		fprintf(stderr, "skip: this kernel lacks the features to take away\n");
		return T_SKIP;
	}
	by_name();
	nofile_for_all();
	out_of_descriptors();
	cancel_is_outbound_only();
	zc_without_usage("zc_report_usage", 0);
	zc_without_usage("", 1);
	setenv("RINGLINE_DISABLE_FEATURES", "all", 1);
	echo();
	reset_and_guard();
	post_and_handoff();
	printf("fallbacks: ok\n");
	return 0;
}
