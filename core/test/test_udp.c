/* SPDX-License-Identifier: MIT */
/*
 * test_udp.c - UDP sockets: datagrams arrive whole and in order with the
 * sender's address, truncation is reported (kernel buffer and caller cap),
 * a full queue drops and counts, connected sockets send without an address,
 * an IPv6 destination for an IPv4 socket is refused at once and a send the
 * kernel refuses is counted, a closed id is dead, and teardown is clean.
 * Sections 1-6 run twice: with SEND taking the destination (RL_FEAT_SENDTO,
 * 6.1; required of a kernel that new unless the caller disabled it), and
 * as on a kernel without it, where sends to an address take a SENDMSG.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>

#include "helpers.h"

static struct rl_event ev[64];

/* Poll until a datagram is queued on id (with a deadline). */
static void wait_dgram(struct rl_worker *w, int id)
{
	double deadline = t_now() + 10;
	if (rl_udp_want(w, id) == 1)
		return;
	for (;;) {
		CHECK(t_now() < deadline);
		int n = rl_worker_poll(w, ev, 64, 50);
		for (int i = 0; i < n; i++)
			if (ev[i].type == RL_EV_UDP && (int)ev[i].slot == id) {
				CHECK_EQ(ev[i].res, 0);
				return;
			}
	}
}

static char addr_of(struct rl_worker *w, int id, char *buf, size_t len)
{
	snprintf(buf, len, "127.0.0.1:%d", rl_udp_port(w, id));
	return 0;
}

/* Everything below on one worker; returns whether its sends to an address
 * took the SEND with a destination (RL_FEAT_SENDTO). */
static int exchanges(struct rl_config *cfg)
{
	struct rl_worker *w;
	char msg[256];
	CHECK_EQ(rl_worker_new(cfg, &w, msg, sizeof(msg)), 0);
	int has_sendto = (rl_worker_features(w) & RL_FEAT_SENDTO) != 0;

	int srv = rl_udp_open(w, "127.0.0.1:0");
	int cli = rl_udp_open(w, "127.0.0.1:0");
	CHECK_GE(srv, 0);
	CHECK_GE(cli, 0);
	CHECK_GT(rl_udp_port(w, srv), 0);
	char srv_addr[64], cli_addr[64];
	addr_of(w, srv, srv_addr, sizeof(srv_addr));
	addr_of(w, cli, cli_addr, sizeof(cli_addr));

	/* 1. whole datagrams, in order, with the sender's address; echo back */
	static uint8_t out[4096], in[4096];
	char host[64];
	int32_t meta[2];
	for (int k = 0; k < 6; k++) {
		size_t len = (size_t)(1 + k * 400); /* 1 .. 2001 bytes, below 2048 */
		t_pattern(out, len, (uint32_t)k, 0);
		CHECK_EQ(rl_udp_sendto(w, cli, srv_addr, out, len), 0);
	}
	for (int k = 0; k < 6; k++) {
		size_t len = (size_t)(1 + k * 400);
		wait_dgram(w, srv);
		int n = rl_udp_take(w, srv, in, sizeof(in), host, sizeof(host), meta);
		CHECK_EQ(n, (int)len);
		CHECK_EQ(t_pattern_find_bad(in, len, (uint32_t)k, 0), -1LL);
		CHECK(strcmp(host, "127.0.0.1") == 0);
		CHECK_EQ(meta[0], rl_udp_port(w, cli));
		CHECK_EQ(meta[1], 0);
		/* echo to the sender */
		char back[80];
		snprintf(back, sizeof(back), "%s:%d", host, meta[0]);
		CHECK_EQ(rl_udp_sendto(w, srv, back, in, (size_t)n), 0);
		wait_dgram(w, cli);
		CHECK_EQ(rl_udp_take(w, cli, out, sizeof(out), NULL, 0, meta), n);
		CHECK(memcmp(out, in, (size_t)n) == 0);
	}

	/* 2. truncation: by the kernel (datagram > udp_buffer_size) ... */
	t_pattern(out, 3000, 99, 0);
	CHECK_EQ(rl_udp_sendto(w, cli, srv_addr, out, 3000), 0);
	wait_dgram(w, srv);
	CHECK_EQ(rl_udp_take(w, srv, in, sizeof(in), host, sizeof(host), meta), 2048);
	CHECK_EQ(meta[1], 1);
	CHECK(memcmp(in, out, 2048) == 0);
	CHECK_GE(rl_worker_metrics(w)->udp_truncated, 1u);
	/* ... and by the caller's cap: the rest of the datagram is dropped */
	CHECK_EQ(rl_udp_sendto(w, cli, srv_addr, out, 100), 0);
	CHECK_EQ(rl_udp_sendto(w, cli, srv_addr, "next", 4), 0);
	wait_dgram(w, srv);
	CHECK_EQ(rl_udp_take(w, srv, in, 10, NULL, 0, meta), 10);
	CHECK_EQ(meta[1], 1);
	wait_dgram(w, srv);
	CHECK_EQ(rl_udp_take(w, srv, in, sizeof(in), NULL, 0, meta), 4);
	CHECK(memcmp(in, "next", 4) == 0);
	CHECK_EQ(rl_udp_take(w, srv, in, sizeof(in), NULL, 0, meta), -EAGAIN);

	/* 3. a full queue drops new datagrams and counts them */
	uint64_t dropped0 = rl_worker_metrics(w)->udp_dropped;
	uint64_t in0 = rl_worker_metrics(w)->udp_in;
	for (int k = 0; k < 20; k++)
		CHECK_EQ(rl_udp_sendto(w, cli, srv_addr, &k, sizeof(k)), 0);
	double deadline = t_now() + 10;
	while (rl_worker_metrics(w)->udp_in - in0 < 20) {
		CHECK(t_now() < deadline);
		rl_worker_poll(w, ev, 64, 20);
	}
	CHECK_EQ(rl_worker_metrics(w)->udp_dropped - dropped0, 12u);
	for (int k = 0; k < 8; k++) { /* the first 8, in order */
		int v = -1;
		CHECK_EQ(rl_udp_take(w, srv, &v, sizeof(v), NULL, 0, meta), (int)sizeof(v));
		CHECK_EQ(v, k);
	}
	CHECK_EQ(rl_udp_take(w, srv, in, sizeof(in), NULL, 0, meta), -EAGAIN);

	/* 4. connected: send without an address */
	CHECK_EQ(rl_udp_connect(w, cli, srv_addr), 0);
	CHECK_EQ(rl_udp_sendto(w, cli, NULL, "hi", 2), 0);
	wait_dgram(w, srv);
	CHECK_EQ(rl_udp_take(w, srv, in, sizeof(in), host, sizeof(host), meta), 2);
	CHECK_EQ(meta[0], rl_udp_port(w, cli));

	/* 5. bad input: an IPv6 destination for an IPv4 socket is refused at
	 * once, nothing queued; a datagram the kernel refuses later (a
	 * broadcast without SO_BROADCAST: EACCES) is counted, not sent */
	uint64_t live0 = (uint64_t)rl_worker_live(w), ops0 = rl_worker_metrics(w)->ops_inflight;
	CHECK_EQ(rl_udp_sendto(w, cli, "[::1]:9", "x", 1), -EAFNOSUPPORT);
	CHECK_EQ((uint64_t)rl_worker_live(w), live0);
	CHECK_EQ(rl_worker_metrics(w)->ops_inflight, ops0);
	uint64_t out0 = rl_worker_metrics(w)->udp_out;
	CHECK_EQ(rl_worker_metrics(w)->udp_send_errors, 0u); /* none failed so far */
	CHECK_EQ(rl_udp_sendto(w, srv, "255.255.255.255:9", "x", 1), 0);
	deadline = t_now() + 10;
	while (rl_worker_metrics(w)->udp_send_errors < 1) {
		CHECK(t_now() < deadline);
		rl_worker_poll(w, ev, 64, 20);
	}
	CHECK_EQ(rl_worker_metrics(w)->udp_send_errors, 1u);
	CHECK_EQ(rl_worker_metrics(w)->udp_out, out0);
	CHECK_EQ(rl_udp_open(w, "unix:/tmp/x"), -EAFNOSUPPORT);
	CHECK_EQ(rl_udp_open(w, "not an address"), -EINVAL);
	CHECK_EQ(rl_udp_sendto(w, cli, NULL, out, 70000), -EMSGSIZE);

	/* 6. close: the id is dead at once; the slot is reused with a new id */
	CHECK_EQ(rl_udp_close(w, srv), 0);
	CHECK_EQ(rl_udp_close(w, srv), -ENOENT);
	CHECK_EQ(rl_udp_sendto(w, srv, cli_addr, "x", 1), -ENOENT);
	CHECK_EQ(rl_udp_close(w, cli), 0);
	deadline = t_now() + 10;
	while (rl_worker_live(w) || rl_worker_metrics(w)->ops_inflight) {
		CHECK(t_now() < deadline);
		rl_worker_poll(w, ev, 64, 20);
	}
	int again = rl_udp_open(w, "127.0.0.1:0");
	CHECK_GE(again, 0);
	CHECK_NE(again, srv);
	CHECK_EQ(rl_udp_close(w, again), 0);
	deadline = t_now() + 10;
	while (rl_worker_live(w) || rl_worker_metrics(w)->ops_inflight) {
		CHECK(t_now() < deadline);
		rl_worker_poll(w, ev, 64, 20);
	}
	CHECK_EQ(rl_worker_metrics(w)->udp_open, 0u);
	CHECK_EQ(rl_worker_destroy(w), 0);
	return has_sendto;
}

int main(void)
{
	struct rl_config cfg;
	rl_config_init(&cfg);
	cfg.max_connections = 64;
	cfg.udp_buffer_size = 2048;
	cfg.udp_queue = 8;
	struct rl_worker *w;
	char msg[256];
	/* as the kernel (and the caller's RINGLINE_DISABLE_FEATURES) has it,
	 * then with sendto taken away as well */
	const char *env = getenv("RINGLINE_DISABLE_FEATURES");
	char off[256];
	snprintf(off, sizeof(off), "%s%ssendto", env ? env : "", env && *env ? "," : "");
	int first = exchanges(&cfg);
	struct utsname un;
	int major = 0, minor = 0;
	if (uname(&un) == 0)
		sscanf(un.release, "%d.%d", &major, &minor);
	if ((major > 6 || (major == 6 && minor >= 1)) &&
	    !(env && (strstr(env, "sendto") || strstr(env, "all"))))
		CHECK(first); /* the probe must find it on 6.1+ */
	setenv("RINGLINE_DISABLE_FEATURES", off, 1);
	CHECK_EQ(exchanges(&cfg), 0);
	printf("udp: sends to an address as %s, then as SENDMSG\n", first ? "SEND" : "SENDMSG");

	/* 7. teardown with a socket still open: cleaned up, reported as -EBUSY */
	CHECK_EQ(rl_worker_new(&cfg, &w, msg, sizeof(msg)), 0);
	CHECK_GE(rl_udp_open(w, "127.0.0.1:0"), 0);
	CHECK_EQ(rl_worker_destroy(w), -EBUSY);
	printf("udp: ok\n");
	return 0;
}
