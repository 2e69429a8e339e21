/* SPDX-License-Identifier: MIT */
/*
 * test_tls - TLS through the core's memory-BIO record layer, server and
 * client in one worker: a certificate made at test time (openssl CLI, into a
 * temporary directory: no key is committed); echo of 1 B .. 1 MiB both ways
 * on one verified TLS 1.3 connection, closed by close_notify; a client that
 * cannot verify (system store, wrong name) fails with a reason; a plaintext
 * peer and a silent one on the TLS port cost only their own connection
 * (-EPROTO, -ETIMEDOUT after tls_handshake_timeout) while a TLS connection
 * goes on; ALPN, an SNI sub-context and a resumed session, with every
 * context freed while its connections are open; the worker ends idle.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"
#include "internal.h"

#define MAXS 64
enum { NONE, SERVER, CLIENT };
static int role[MAXS];
static uint32_t cli_slot, cli_gen;
static int cli_tls = 1;   /* RL_EV_TLS res of the client, 1 until it comes */
static int srv_fail_res;  /* the last failed server handshake's res */
static int srv_fails;
static int connected;
static int closed;
static struct rl_tls_ctx *sctx, *cctx;
static const char *cli_name = "localhost";
static struct rl_tls_session *cli_sess; /* offered by the next client */

static uint8_t *out, *in;
static size_t inlen, want;

static void client_read(struct rl_worker *w)
{
	const struct rl_conn_io *io = rl_conn_io(w, cli_slot);
	if (io->gen != cli_gen)
		return;
	if (io->rlen) {
		CHECK_LE(inlen + io->rlen, want);
		memcpy(in + inlen, io->rdata, io->rlen);
		inlen += io->rlen;
		CHECK_RC(rl_conn_consume(w, cli_slot, cli_gen, io->rlen));
	}
	if (!io->reof && !io->rerr)
		CHECK_RC(rl_conn_want_recv(w, cli_slot, cli_gen, 1));
}

static void on_event(struct t_ctx *t, const struct rl_event *e)
{
	struct rl_worker *w = t->w;
	switch (e->type) {
	case RL_EV_ACCEPTED:
		CHECK_LT(e->slot, MAXS);
		role[e->slot] = SERVER;
		CHECK_RC(rl_conn_tls_start(w, e->slot, e->gen, sctx, NULL, NULL));
		break;
	case RL_EV_CONNECTED:
		CHECK_EQ(e->res, 0);
		role[e->slot] = CLIENT;
		cli_slot = e->slot;
		cli_gen = e->gen;
		cli_tls = 1;
		connected++;
		CHECK_RC(rl_conn_tls_start(w, e->slot, e->gen, cctx, cli_name, cli_sess));
		break;
	case RL_EV_TLS:
		if (role[e->slot] == CLIENT) {
			cli_tls = e->res;
			if (e->res == 0)
				client_read(w);
		} else if (e->res == 0) {
			t_echo(w, e->slot, e->gen);
		} else {
			srv_fails++;
			srv_fail_res = e->res;
			struct rl_tls_info info;
			CHECK_RC(rl_conn_tls_info(w, e->slot, e->gen, &info));
			CHECK(info.error[0] != 0);
			CHECK_EQ(info.established, 0);
			CHECK_RC(rl_conn_close(w, e->slot, e->gen, RL_CLOSE_RESET));
		}
		break;
	case RL_EV_RECV:
		if (role[e->slot] == CLIENT)
			client_read(w);
		else
			t_echo(w, e->slot, e->gen);
		break;
	case RL_EV_CLOSED:
		closed++;
		role[e->slot] = NONE;
		break;
	case RL_EV_SEND:
	case RL_EV_GUARD:
		break;
	default:
		FAIL("unexpected event %u", e->type);
	}
}

static int tls_ended(struct t_ctx *t) { return cli_tls != 1; }
static int echoed(struct t_ctx *t) { return inlen == want; }
static int fails_1(struct t_ctx *t) { return srv_fails == 1; }
static int fails_2(struct t_ctx *t) { return srv_fails == 2; }
static int fails_3(struct t_ctx *t) { return srv_fails == 3; }
static int cli_eof(struct t_ctx *t) { return rl_conn_io(t->w, cli_slot)->reof != 0; }
static int all_closed(struct t_ctx *t) { return rl_worker_metrics(t->w)->conns_open == 0; }

static char dir[] = "/tmp/rl_tls_XXXXXX";
static char cert[128], key[128];

static void make_cert(void)
{
	CHECK(mkdtemp(dir));
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	char cmd[1024];
	snprintf(cmd, sizeof(cmd),
		 "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
		 "-keyout %s -out %s -days 1 -subj /CN=localhost "
		 "-addext subjectAltName=DNS:localhost,IP:127.0.0.1 >/dev/null 2>&1",
		 key, cert);
	if (system(cmd) != 0) {
		fprintf(stderr, "test_tls: no openssl CLI to make a certificate; skipped\n");
		exit(T_SKIP);
	}
}

static void connect_client(struct t_ctx *t, struct rl_tls_ctx *ctx, const char *name)
{
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", t->port);
	cctx = ctx;
	cli_name = name;
	cli_tls = 1;
	CHECK_RC(rl_connect(t->w, addr, 5000, 7));
	T_WAIT(t, tls_ended, 10);
}

int main(void)
{
	make_cert();
	char msg[256] = "";
	CHECK_EQ(rl_tls_ctx_new_server(cert, "/nonexistent.pem", &sctx, msg, sizeof(msg)), -EINVAL);
	ASSERT(strstr(msg, "/nonexistent.pem"), "message names the file: %s", msg);
	CHECK_RC(rl_tls_ctx_new_server(cert, key, &sctx, msg, sizeof(msg)));
	struct rl_tls_ctx *good, *sys, *noverify;
	CHECK_RC(rl_tls_ctx_new_client(cert, 1, &good, msg, sizeof(msg)));
	CHECK_RC(rl_tls_ctx_new_client(NULL, 1, &sys, msg, sizeof(msg)));
	CHECK_RC(rl_tls_ctx_new_client(NULL, 0, &noverify, msg, sizeof(msg)));

	struct t_ctx t;
	struct rl_config cfg;
	t_config_small(&cfg);
	cfg.tls_handshake_timeout = 300;
	t_init(&t, &cfg);
	t.on_event = on_event;
	t_listen(&t, NULL);

	/* kernel TLS: never claimed where the ULP is not even listed (as on
	 * the CI machines); "ktls" is a name RINGLINE_DISABLE_FEATURES knows */
	char ulp[256] = "";
	FILE *f = fopen("/proc/sys/net/ipv4/tcp_available_ulp", "r");
	if (f) {
		if (!fgets(ulp, sizeof(ulp), f))
			ulp[0] = 0;
		fclose(f);
	}
	if (!strstr(ulp, "tls"))
		CHECK_EQ(rl_worker_features(t.w) & RL_FEAT_KTLS, 0);
	const char *was = getenv("RINGLINE_DISABLE_FEATURES"); /* CI's second pass sets it */
	char saved[256];
	snprintf(saved, sizeof(saved), "%s", was ? was : "");
	CHECK_EQ(setenv("RINGLINE_DISABLE_FEATURES", "ktls", 1), 0);
	CHECK_EQ(rl__disabled_features(), RL_FEAT_KTLS);
	if (was)
		CHECK_EQ(setenv("RINGLINE_DISABLE_FEATURES", saved, 1), 0);
	else
		CHECK_EQ(unsetenv("RINGLINE_DISABLE_FEATURES"), 0);

	/* a verified TLS 1.3 connection */
	connect_client(&t, good, "localhost");
	CHECK_EQ(cli_tls, 0);
	struct rl_tls_info info;
	CHECK_RC(rl_conn_tls_info(t.w, cli_slot, cli_gen, &info));
	CHECK_EQ(info.established, 1);
	CHECK_EQ(info.peer_verified, 1);
	ASSERT(strcmp(info.protocol, "TLSv1.3") == 0, "protocol %s", info.protocol);
	ASSERT(strstr(info.peer_subject, "CN=localhost"), "subject %s", info.peer_subject);
	CHECK_EQ(rl_conn_tls_info(t.w, cli_slot, cli_gen + 1, &info), -ESTALE);

	/* echo 1 B .. 1 MiB, client -> server -> client, through TLS */
	static const size_t sizes[] = { 1, 100, 16383, 16385, 65536, 1u << 20 };
	out = malloc(1u << 20);
	in = malloc(1u << 20);
	CHECK(out && in);
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		t_pattern(out, sizes[i], (uint32_t)i + 1, 0);
		inlen = 0;
		want = sizes[i];
		CHECK_RC(rl_conn_send(t.w, cli_slot, cli_gen, out, sizes[i]));
		T_WAIT(&t, echoed, 20);
		ASSERT(memcmp(in, out, sizes[i]) == 0, "size %zu: echo differs", sizes[i]);
	}
	/* a guarded part on a TLS connection is encrypted at once: its guard
	 * comes back before the send completes */
	struct rl_part part = { .ptr = out, .len = 65536, .region = RL_PART_PINNED, .token = 42 };
	t_pattern(out, 65536, 99, 0);
	inlen = 0;
	want = 65536;
	uint64_t guards = t.nevents[RL_EV_GUARD];
	CHECK_RC(rl_conn_sendv(t.w, cli_slot, cli_gen, &part, 1));
	CHECK_EQ(rl_worker_metrics(t.w)->guards_outstanding, 0);
	T_WAIT(&t, echoed, 20);
	CHECK_EQ(t.nevents[RL_EV_GUARD], guards + 1);
	ASSERT(memcmp(in, out, 65536) == 0, "guarded part: echo differs");

	/* plaintext and silence on the TLS port: only those connections end */
	int junk = t_tcp_connect("127.0.0.1", t.port, 1);
	const char req[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	CHECK_EQ(write(junk, req, sizeof(req) - 1), (ssize_t)(sizeof(req) - 1));
	T_WAIT(&t, fails_1, 10);
	CHECK_EQ(srv_fail_res, -EPROTO);
	double t0 = t_now();
	int silent = t_tcp_connect("127.0.0.1", t.port, 1);
	T_WAIT(&t, fails_2, 10);
	CHECK_EQ(srv_fail_res, -ETIMEDOUT);
	ASSERT(t_now() - t0 >= 0.25, "timed out after %.3f s, before tls_handshake_timeout",
	       t_now() - t0);
	/* a handshake record cut short by the peer's FIN: the core fails it
	 * at the FIN, not at the deadline */
	int cut = t_tcp_connect("127.0.0.1", t.port, 1);
	const uint8_t rec[] = { 0x16, 0x03, 0x01, 0x00, 0x80, 0x01, 0x00, 0x00, 0x7c, 0x03, 0x03 };
	CHECK_EQ(write(cut, rec, sizeof(rec)), (ssize_t)sizeof(rec));
	CHECK_EQ(shutdown(cut, SHUT_WR), 0);
	t0 = t_now();
	T_WAIT(&t, fails_3, 10);
	CHECK_EQ(srv_fail_res, -EPROTO);
	ASSERT(t_now() - t0 < 0.25, "a cut handshake waited %.3f s for the deadline", t_now() - t0);
	CHECK_EQ(rl_worker_metrics(t.w)->tls_failures, 3);
	close(cut);
	close(junk);
	close(silent);
	/* the TLS connection is untouched */
	t_pattern(out, 5000, 77, 0);
	inlen = 0;
	want = 5000;
	CHECK_RC(rl_conn_send(t.w, cli_slot, cli_gen, out, 5000));
	T_WAIT(&t, echoed, 10);
	ASSERT(memcmp(in, out, 5000) == 0, "echo after the bad peers differs");

	/* close_notify: the server reads EOF, closes; the client reads EOF */
	CHECK_RC(rl_conn_shutdown(t.w, cli_slot, cli_gen));
	T_WAIT(&t, cli_eof, 10);
	CHECK_EQ(rl_conn_io(t.w, cli_slot)->rerr, 0);
	CHECK_RC(rl_conn_close(t.w, cli_slot, cli_gen, RL_CLOSE_GRACEFUL));
	T_WAIT(&t, all_closed, 10);

	/* the system store does not know a self-signed certificate */
	connect_client(&t, sys, "localhost");
	CHECK_EQ(cli_tls, -EPROTO);
	CHECK_RC(rl_conn_tls_info(t.w, cli_slot, cli_gen, &info));
	ASSERT(strncmp(info.error, "certificate verify failed: ", 27) == 0, "%s", info.error);
	CHECK_EQ(rl_conn_send(t.w, cli_slot, cli_gen, "x", 1), -EPROTO);
	CHECK_RC(rl_conn_close(t.w, cli_slot, cli_gen, RL_CLOSE_GRACEFUL));
	T_WAIT(&t, all_closed, 10);

	/* the right CA, the wrong name */
	connect_client(&t, good, "example.com");
	CHECK_EQ(cli_tls, -EPROTO);
	CHECK_RC(rl_conn_tls_info(t.w, cli_slot, cli_gen, &info));
	ASSERT(strstr(info.error, "example.com"), "%s", info.error);
	CHECK_RC(rl_conn_close(t.w, cli_slot, cli_gen, RL_CLOSE_GRACEFUL));
	T_WAIT(&t, all_closed, 10);

	/* verify off: established, not verified; an address as the name */
	connect_client(&t, noverify, "127.0.0.1");
	CHECK_EQ(cli_tls, 0);
	CHECK_RC(rl_conn_tls_info(t.w, cli_slot, cli_gen, &info));
	CHECK_EQ(info.peer_verified, 0);
	CHECK_RC(rl_conn_close(t.w, cli_slot, cli_gen, RL_CLOSE_GRACEFUL));
	T_WAIT(&t, all_closed, 10);

	/* configuration misuse */
	CHECK_EQ(rl_tls_ctx_set_alpn(noverify, (const uint8_t *)"\x05h2", 3), -EINVAL);
	CHECK_EQ(rl_tls_ctx_set_alpn(noverify, (const uint8_t *)"", 0), -EINVAL);
	CHECK_EQ(rl_tls_ctx_set_protocols(noverify, 13, 12), -EINVAL);
	CHECK_EQ(rl_tls_ctx_set_protocols(noverify, 11, 13), -EINVAL);
	CHECK_EQ(rl_tls_ctx_add_sni(sctx, "a.*.example", sctx), -EINVAL);
	CHECK_EQ(rl_tls_ctx_set_client_ca(noverify, cert, msg, sizeof(msg)), -EINVAL);

	/* ALPN, SNI to a sub-context, a session resumed; every context is
	 * freed by its owner while connections hold it */
	struct rl_tls_ctx *s2, *sub, *c2;
	static const uint8_t srv_alpn[] = "\x02h2\x08http/1.1", cli_alpn[] = "\x08http/1.1";
	CHECK_RC(rl_tls_ctx_new_server(cert, key, &s2, msg, sizeof(msg)));
	CHECK_RC(rl_tls_ctx_new_server(cert, key, &sub, msg, sizeof(msg)));
	CHECK_RC(rl_tls_ctx_set_alpn(s2, srv_alpn, sizeof(srv_alpn) - 1));
	CHECK_RC(rl_tls_ctx_set_alpn(sub, srv_alpn, sizeof(srv_alpn) - 1));
	CHECK_RC(rl_tls_ctx_add_sni(s2, "*.b.example", sub));
	rl_tls_ctx_free(sub); /* s2 holds it */
	CHECK_RC(rl_tls_ctx_new_client(NULL, 0, &c2, msg, sizeof(msg)));
	CHECK_RC(rl_tls_ctx_set_alpn(c2, cli_alpn, sizeof(cli_alpn) - 1));
	struct rl_tls_ctx *old = sctx;
	sctx = s2;
	struct rl_tls_session *sess = NULL;
	for (int round = 0; round < 2; round++) {
		cli_sess = sess;
		connect_client(&t, c2, "x.b.example");
		CHECK_EQ(cli_tls, 0);
		CHECK_RC(rl_conn_tls_info(t.w, cli_slot, cli_gen, &info));
		ASSERT(strcmp(info.alpn, "http/1.1") == 0, "alpn '%s'", info.alpn);
		CHECK_EQ(info.resumed, round);
		if (!sess)
			CHECK_RC(rl_conn_tls_session(t.w, cli_slot, cli_gen, &sess));
		if (round == 1) {
			rl_tls_ctx_free(s2); /* with a connection open on each side */
			rl_tls_ctx_free(c2);
		}
		/* an echo: the TLS 1.3 ticket comes before it */
		inlen = 0;
		want = 100;
		CHECK_RC(rl_conn_send(t.w, cli_slot, cli_gen, out, 100));
		T_WAIT(&t, echoed, 10);
		CHECK_EQ(rl_tls_session_ready(sess), 1);
		CHECK_RC(rl_conn_close(t.w, cli_slot, cli_gen, RL_CLOSE_GRACEFUL));
		T_WAIT(&t, all_closed, 10);
	}
	rl_tls_session_free(sess);
	cli_sess = NULL;
	sctx = old;

	CHECK_GE(rl_worker_metrics(t.w)->tls_handshakes, 3);
	t_finish(&t);
	rl_tls_ctx_free(sctx);
	rl_tls_ctx_free(good);
	rl_tls_ctx_free(sys);
	rl_tls_ctx_free(noverify);
	free(out);
	free(in);
	unlink(cert);
	unlink(key);
	rmdir(dir);
	return 0;
}
