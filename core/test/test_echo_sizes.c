/* SPDX-License-Identifier: MIT */
/*
 * test_echo_sizes - a worker echoing (echo.c's logic) messages of 1 B to
 * 8 MiB back byte-exact: all sizes at once on their own connections, each
 * ended by the peer's FIN (the server closes after echoing everything), then
 * all sizes one after another on a single connection.
 */
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "helpers.h"

static const size_t sizes[] = { 1, 100, 4096, 65536, 1u << 20, 8u << 20 };
#define NSIZES (sizeof(sizes) / sizeof(sizes[0]))

static struct t_peer peers[NSIZES];
static int npeers;
static int closed;

static void on_event(struct t_ctx *t, const struct rl_event *e)
{
	if (e->type == RL_EV_ACCEPTED) {
		CHECK_EQ(e->res, 0);
		CHECK_EQ(e->data, (uint32_t)t->lid);
	}
	t_echo_event(t, e);
	closed += e->type == RL_EV_CLOSED;
}

static int pump(struct t_ctx *t)
{
	return t_peers_pump(peers, npeers);
}

static int all_echoed_and_closed(struct t_ctx *t)
{
	for (int i = 0; i < npeers; i++)
		if (!peers[i].eof)
			return 0;
	return closed == npeers;
}

static int first_done(struct t_ctx *t)
{
	return peers[0].inlen == peers[0].incap;
}

static int first_eof(struct t_ctx *t)
{
	return peers[0].eof && closed == 1;
}

int main(void)
{
	struct t_ctx t;
	t_init(&t, NULL);
	t.on_event = on_event;
	t.pump = pump;
	t_listen(&t, NULL);

	uint8_t *out[NSIZES], *in[NSIZES];
	uint64_t total = 0;
	for (size_t i = 0; i < NSIZES; i++) {
		out[i] = malloc(sizes[i]);
		in[i] = malloc(sizes[i]);
		CHECK(out[i] && in[i]);
		t_pattern(out[i], sizes[i], (uint32_t)(i + 1), 0);
		total += sizes[i];
	}

	/* every size at once, one connection each, ended by the peer's FIN */
	for (size_t i = 0; i < NSIZES; i++) {
		struct t_peer *p = &peers[npeers++];
		t_peer_init(p, t_tcp_connect("127.0.0.1", t.port, 1));
		p->out = out[i];
		p->outlen = sizes[i];
		p->in = in[i];
		p->incap = sizes[i];
		p->shut_wr = 1;
	}
	T_WAIT(&t, all_echoed_and_closed, 30);
	for (size_t i = 0; i < NSIZES; i++) {
		struct t_peer *p = &peers[i];
		ASSERT(p->err == 0, "peer %zu: %s", i, strerror(p->err));
		ASSERT(p->inlen == sizes[i], "size %zu: %zu bytes came back", sizes[i], p->inlen);
		ASSERT(memcmp(in[i], out[i], sizes[i]) == 0, "size %zu: echo differs", sizes[i]);
		close(p->fd);
	}
	const struct rl_metrics *m = rl_worker_metrics(t.w);
	CHECK_EQ(m->bytes_in, total);
	CHECK_EQ(m->bytes_out, total);
	CHECK_EQ(m->conns_accepted, NSIZES);
	CHECK_EQ(m->conns_closed, NSIZES);
	t_check_idle(&t);

	/* every size in turn on one connection: message boundaries are the
	 * test's, the stream must stay exact across them */
	npeers = 1;
	closed = 0;
	struct t_peer *p = &peers[0];
	t_peer_init(p, t_tcp_connect("127.0.0.1", t.port, 1));
	for (size_t i = 0; i < NSIZES; i++) {
		memset(in[i], 0, sizes[i]);
		p->out = out[i];
		p->outlen = sizes[i];
		p->outoff = 0;
		p->in = in[i];
		p->incap = sizes[i];
		p->inlen = 0;
		T_WAIT(&t, first_done, 20);
		ASSERT(memcmp(in[i], out[i], sizes[i]) == 0, "size %zu differs (one connection)",
		       sizes[i]);
	}
	CHECK_EQ(closed, 0);
	CHECK_EQ(shutdown(p->fd, SHUT_WR), 0);
	T_WAIT(&t, first_eof, 10);
	CHECK_EQ(p->err, 0);
	close(p->fd);
	m = rl_worker_metrics(t.w);
	CHECK_EQ(m->bytes_in, 2 * total);
	CHECK_EQ(m->bytes_out, 2 * total);

	t.pump = NULL;
	t_finish(&t);
	for (size_t i = 0; i < NSIZES; i++) {
		free(out[i]);
		free(in[i]);
	}
	return 0;
}
