/* SPDX-License-Identifier: MIT */
/*
 * test_accept_limit - max_connections = 4: with four connections open, the
 * 5th..10th peers are refused (their read ends with EOF or ECONNRESET) and
 * counted in conns_refused, no RL_EV_ACCEPTED is raised for them, an
 * outbound rl_connect fails with RL_EV_CONNECTED(-EMFILE), the four keep
 * echoing, and once they close the worker accepts again.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

#define LIMIT 4
#define EXTRA 6

static struct t_peer peers[LIMIT + EXTRA + 1];
static int npeers;

static void on_event(struct t_ctx *t, const struct rl_event *e)
{
	if (e->type != RL_EV_CONNECTED) /* the refused connect: read from the log */
		t_echo_event(t, e);
}

static int pump(struct t_ctx *t)
{
	return t_peers_pump(peers, npeers);
}

static int want_accepted;
static int accepted(struct t_ctx *t)
{
	return t_count(t, RL_EV_ACCEPTED, T_ANY, T_ANY) == want_accepted;
}

static int connect_done(struct t_ctx *t)
{
	return t_count(t, RL_EV_CONNECTED, T_ANY, T_ANY) == 1;
}

static int refused_all(struct t_ctx *t)
{
	if (rl_worker_metrics(t->w)->conns_refused < EXTRA)
		return 0;
	for (int i = LIMIT; i < LIMIT + EXTRA; i++)
		if (!peers[i].eof && !peers[i].err)
			return 0;
	return 1;
}

static int first, last, want_closed;
static int echoed_and_closed(struct t_ctx *t)
{
	for (int i = first; i < last; i++)
		if (!peers[i].eof || peers[i].err)
			return 0;
	return t_count(t, RL_EV_CLOSED, T_ANY, T_ANY) == want_closed;
}

static void echo_round(struct t_ctx *t, int from, int to, const uint8_t *msg, size_t len,
		       uint8_t (*in)[256])
{
	for (int i = from; i < to; i++) {
		peers[i].out = msg;
		peers[i].outlen = len;
		peers[i].in = in[i];
		peers[i].incap = len;
		peers[i].shut_wr = 1;
	}
}

int main(void)
{
	struct rl_config cfg;
	t_config_small(&cfg);
	cfg.max_connections = LIMIT;
	struct t_ctx t;
	t_init(&t, &cfg);
	t.on_event = on_event;
	t.pump = pump;
	t_listen(&t, NULL);

	for (int i = 0; i < LIMIT; i++) {
		t_peer_init(&peers[npeers++], t_tcp_connect("127.0.0.1", t.port, 1));
		want_accepted = i + 1;
		T_WAIT(&t, accepted, 10);
	}
	CHECK_EQ(rl_worker_metrics(t.w)->conns_open, LIMIT);

	/* the table is full: the next ones are refused */
	for (int i = 0; i < EXTRA; i++) {
		struct t_peer *p = &peers[npeers++];
		t_peer_init(p, t_tcp_connect("127.0.0.1", t.port, 1));
		if (i % 2) {
			/* unread bytes make the refusal an RST */
			p->out = (const uint8_t *)"knock";
			p->outlen = 5;
		}
	}
	T_WAIT(&t, refused_all, 10);
	for (int i = LIMIT; i < LIMIT + EXTRA; i++) {
		struct t_peer *p = &peers[i];
		ASSERT(p->eof || p->err == ECONNRESET, "refused peer %d: %s", i, strerror(p->err));
		CHECK_EQ(p->inlen, 0);
		close(p->fd);
		p->fd = -1;
	}
	const struct rl_metrics *m = rl_worker_metrics(t.w);
	CHECK_EQ(m->conns_refused, EXTRA);
	CHECK_EQ(m->conns_accepted, LIMIT);
	CHECK_EQ(m->conns_open, LIMIT);
	CHECK_EQ(t_count(&t, RL_EV_ACCEPTED, T_ANY, T_ANY), LIMIT);

	/* an outbound connect finds no free slot either */
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", t.port);
	CHECK_EQ(rl_connect(t.w, addr, 0, 11), 0);
	T_WAIT(&t, connect_done, 10);
	const struct rl_event *ce = t_last(&t, RL_EV_CONNECTED, T_ANY, T_ANY);
	ASSERT(ce->res == -EMFILE || ce->res == -ENFILE, "connect with a full table: %d (%s)",
	       ce->res, rl_strerror(ce->res));
	CHECK_EQ(ce->slot, 0);
	CHECK_EQ(ce->gen, 0);
	CHECK_EQ(ce->data, 11);
	CHECK_EQ(rl_worker_metrics(t.w)->conns_open, LIMIT);

	/* the four still echo */
	static uint8_t msg[200], in[LIMIT + EXTRA + 1][256];
	t_pattern(msg, sizeof(msg), 5, 0);
	echo_round(&t, 0, LIMIT, msg, sizeof(msg), in);
	first = 0;
	last = LIMIT;
	want_closed = LIMIT;
	T_WAIT(&t, echoed_and_closed, 10);
	for (int i = 0; i < LIMIT; i++) {
		CHECK_EQ(peers[i].inlen, sizeof(msg));
		CHECK(memcmp(in[i], msg, sizeof(msg)) == 0);
		close(peers[i].fd);
		peers[i].fd = -1;
	}

	/* slots are free again: a new peer is accepted and served */
	t_peer_init(&peers[npeers++], t_tcp_connect("127.0.0.1", t.port, 1));
	want_accepted = LIMIT + 1;
	T_WAIT(&t, accepted, 10);
	echo_round(&t, LIMIT + EXTRA, LIMIT + EXTRA + 1, msg, 100, in);
	first = LIMIT + EXTRA;
	last = LIMIT + EXTRA + 1;
	want_closed = LIMIT + 1;
	T_WAIT(&t, echoed_and_closed, 10);
	CHECK(memcmp(in[LIMIT + EXTRA], msg, 100) == 0);
	close(peers[LIMIT + EXTRA].fd);
	peers[LIMIT + EXTRA].fd = -1;
	m = rl_worker_metrics(t.w);
	CHECK_EQ(m->conns_refused, EXTRA);
	CHECK_EQ(m->conns_accepted, LIMIT + 1);
	t_finish(&t);
	return 0;
}
