/* SPDX-License-Identifier: MIT */
/*
 * test_recv_window - the receive window is a hard bound, and a wanted
 * receive always completes while the kernel holds the bytes.
 *
 * Flood: peers write 8 MiB each to a server that never consumes. Every
 * connection's buffered bytes stay at most its window plus one provided
 * buffer (recv_window + recv_buffer_size), the accumulator's allocation at
 * most that rounded up to a page, whatever the kernel had queued, and the
 * peers' writes block. Then the server consumes and every byte arrives in
 * order. A want the accumulator could never hold is refused (-EMSGSIZE).
 *
 * Wants past the window: a reader asks for more than the window holds
 * (rl_conn_want_recv(min > recv_window)) while a peer streams; it must get
 * RL_EV_RECV with at most min plus one buffer buffered. Then it asks for
 * less than what is buffered (the window shrinks back), consumes only
 * part, asks again: the sequence of issue 17's hung receive (a big receive
 * completes, the window falls back to recv_window with more than that
 * buffered, the reader then asks for more than the window). Many rounds
 * with seeded random sizes over several connections: each want completes.
 *
 * Both receive shapes are held to it: a multishot recv limited to the
 * window's room (RL_FEAT_RECV_LIMIT, required of 6.17+ unless the caller
 * disabled it) and the single-shot recv of older kernels (CI's second pass
 * runs with RINGLINE_DISABLE_FEATURES=...,recv_limit).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "helpers.h"

#define NPEERS 4
#define WINDOW 16384
#define BUFSZ 4096
#define FLOOD (8u << 20)
#define SEED0 21

struct srv {
	uint32_t slot, gen;
	int idx;            /* peer index (by accept order) */
	uint64_t recvd;     /* stream offset consumed */
	uint32_t want;      /* the outstanding want, 0 when none */
	uint32_t hi;        /* largest want since rlen last grew */
	uint32_t prev_rlen;
	int rounds;
	double want_at;
	uint32_t max_rlen_over; /* worst rlen - allowed seen */
};

static struct t_peer peers[NPEERS];
static struct srv srv[NPEERS];
static int naccepted;
static int mode;       /* 1: flood, never consume; 2: consume all; 3: random wants */
static uint64_t rs = 1234;
static uint32_t max_allowed_over;
static uint64_t max_accum;
static int rounds_goal;

static struct srv *by_slot(uint32_t slot, uint32_t gen)
{
	for (int i = 0; i < naccepted; i++)
		if (srv[i].slot == slot && srv[i].gen == gen)
			return &srv[i];
	return NULL;
}

/* The bound: bytes arriving never take the unconsumed bytes past the
 * window (recv_window, or the reader's want when larger) plus one buffer.
 * A receive armed under an earlier, larger want may still land once, so
 * the window is the largest want since the bytes last grew. */
static void check_bound(struct t_ctx *t)
{
	const struct rl_metrics *m = rl_worker_metrics(t->w);
	if (m->accum_bytes > max_accum)
		max_accum = m->accum_bytes;
	for (int i = 0; i < naccepted; i++) {
		struct srv *s = &srv[i];
		const struct rl_conn_io *io = rl_conn_io(t->w, s->slot);
		if (io->gen != s->gen)
			continue;
		if (io->rlen > s->prev_rlen) {
			uint32_t win = s->hi > WINDOW ? s->hi : WINDOW;
			if (io->rlen > win + BUFSZ && io->rlen - (win + BUFSZ) > max_allowed_over)
				max_allowed_over = io->rlen - (win + BUFSZ);
			s->hi = s->want;
		}
		s->prev_rlen = io->rlen;
	}
}

static void check_stream(struct t_ctx *t, struct srv *s, uint32_t n)
{
	const struct rl_conn_io *io = rl_conn_io(t->w, s->slot);
	long long bad = t_pattern_find_bad(io->rdata, n, SEED0 + (uint32_t)s->idx, s->recvd);
	ASSERT(bad < 0, "conn %d: stream byte %llu wrong", s->idx,
	       (unsigned long long)s->recvd + (unsigned long long)bad);
}

/* Mode 3: pick the next want; the reader may first consume part. */
static void next_want(struct t_ctx *t, struct srv *s)
{
	const struct rl_conn_io *io = rl_conn_io(t->w, s->slot);
	for (;;) {
		if (s->rounds >= rounds_goal) {
			s->want = 0;
			return;
		}
		uint64_t r = t_rand(&rs);
		/* a third of the wants are far beyond the window */
		uint32_t want = (r % 3 == 0) ? WINDOW * (2 + (uint32_t)((r >> 8) % 6))
					     : 1 + (uint32_t)((r >> 16) % (2 * WINDOW));
		s->want = want;
		if (want > s->hi)
			s->hi = want;
		s->want_at = t_now();
		int rc = CHECK_RC(rl_conn_want_recv(t->w, s->slot, s->gen, want));
		CHECK_EQ(io->rerr, 0);
		CHECK_EQ(io->reof, 0);
		if (rc == 0)
			return;
		/* satisfied at once: consume some (maybe none) and go again */
		CHECK_GE(io->rlen, want);
		uint32_t n = (uint32_t)((r >> 32) % (io->rlen + 1));
		check_stream(t, s, io->rlen);
		s->recvd += n;
		CHECK_EQ(rl_conn_consume(t->w, s->slot, s->gen, n), 0);
		s->prev_rlen = io->rlen;
		s->rounds++;
	}
}

static void on_event(struct t_ctx *t, const struct rl_event *e)
{
	check_bound(t);
	switch (e->type) {
	case RL_EV_ACCEPTED: {
		CHECK_LT(naccepted, NPEERS);
		struct srv *s = &srv[naccepted];
		memset(s, 0, sizeof(*s));
		s->slot = e->slot;
		s->gen = e->gen;
		s->idx = naccepted; /* peers connect one at a time, in order */
		naccepted++;
		if (mode == 3)
			next_want(t, s);
		break;
	}
	case RL_EV_RECV: {
		struct srv *s = by_slot(e->slot, e->gen);
		CHECK(s != NULL);
		CHECK_EQ(mode, 3);
		const struct rl_conn_io *io = rl_conn_io(t->w, s->slot);
		CHECK_EQ(e->res, 0);
		CHECK_GE(io->rlen, s->want);
		s->rounds++;
		uint64_t r = t_rand(&rs);
		uint32_t n = (uint32_t)(r % (io->rlen + 1));
		check_stream(t, s, io->rlen);
		s->recvd += n;
		CHECK_EQ(rl_conn_consume(t->w, s->slot, s->gen, n), 0);
		s->prev_rlen = io->rlen;
		next_want(t, s);
		break;
	}
	case RL_EV_CLOSED:
		CHECK_EQ(e->res, 0);
		break;
	default:
		FAIL("unexpected event %u", e->type);
	}
}

static int pump(struct t_ctx *t)
{
	int moved = t_peers_pump(peers, NPEERS);
	check_bound(t);
	/* mode 3: a want that does not complete within 5 s is the hang */
	if (mode == 3)
		for (int i = 0; i < naccepted; i++)
			ASSERT(!srv[i].want || t_now() - srv[i].want_at < 5,
			       "conn %d: want_recv(%u) pending for 5 s with rlen %u (peer wrote %zu, "
			       "server consumed %llu)", i, srv[i].want,
			       rl_conn_io(t->w, srv[i].slot)->rlen, peers[i].outoff,
			       (unsigned long long)srv[i].recvd);
	return moved;
}

static int all_accepted(struct t_ctx *t)
{
	(void)t;
	return naccepted == NPEERS;
}

static uint64_t last_in;
static int still;

static int flood_stalled(struct t_ctx *t)
{
	uint64_t in = rl_worker_metrics(t->w)->bytes_in;
	if (in != last_in) {
		last_in = in;
		still = 0;
		return 0;
	}
	for (int i = 0; i < NPEERS; i++)
		if (!peers[i].write_blocked)
			return 0;
	return ++still >= 50;
}

static void connect_peers(struct t_ctx *t, uint8_t **bufs, size_t len)
{
	naccepted = 0;
	for (int i = 0; i < NPEERS; i++) {
		t_peer_init(&peers[i], t_tcp_connect("127.0.0.1", t->port, 1));
		peers[i].out = bufs[i];
		peers[i].outlen = len;
		peers[i].shut_wr = 1;
		/* accept in connect order, so srv[i] is peers[i] */
		while (naccepted < i + 1)
			t_step(t, 10);
	}
	T_WAIT(t, all_accepted, 10);
}

static int flood_done(struct t_ctx *t)
{
	for (int i = 0; i < NPEERS; i++)
		if (t_count(t, RL_EV_CLOSED, srv[i].slot, srv[i].gen) != 1 || !peers[i].eof)
			return 0;
	return 1;
}

static void drain_all(struct t_ctx *t)
{
	/* consume as it arrives (t_consume_stream closes after EOF) */
	for (int i = 0; i < NPEERS; i++)
		t_consume_stream(t->w, srv[i].slot, srv[i].gen, SEED0 + (uint32_t)i, &srv[i].recvd);
}

static void consume_event(struct t_ctx *t, const struct rl_event *e)
{
	if (e->type == RL_EV_RECV) {
		struct srv *s = by_slot(e->slot, e->gen);
		CHECK(s != NULL);
		t_consume_stream(t->w, s->slot, s->gen, SEED0 + (uint32_t)s->idx, &s->recvd);
		return;
	}
	on_event(t, e);
}

static void flood(struct t_ctx *t, uint8_t **bufs)
{
	mode = 1;
	max_allowed_over = 0;
	max_accum = 0;
	connect_peers(t, bufs, FLOOD);
	last_in = UINT64_MAX;
	T_WAIT(t, flood_stalled, 30);
	const struct rl_metrics *m = rl_worker_metrics(t->w);
	fprintf(stderr, "flood stalled: bytes_in %llu, accum_bytes %llu (max %llu), over %u\n",
		(unsigned long long)m->bytes_in, (unsigned long long)m->accum_bytes,
		(unsigned long long)max_accum, max_allowed_over);
	for (int i = 0; i < NPEERS; i++) {
		const struct rl_conn_io *io = rl_conn_io(t->w, srv[i].slot);
		CHECK_GE(io->rlen, WINDOW);
		CHECK_LE(io->rlen, WINDOW + BUFSZ);
		CHECK_LT(peers[i].outoff, FLOOD);
	}
	ASSERT(max_allowed_over == 0, "buffered bytes went %u past window + one buffer",
	       max_allowed_over);
	/* allocation: window + one buffer per connection, page-rounded */
	uint64_t per = ((uint64_t)WINDOW + BUFSZ + 4095) & ~(uint64_t)4095;
	CHECK_LE(max_accum, NPEERS * per);

	/* a minimum the accumulator could never hold (2^31 - 1 bytes, and the
	 * window lets one buffer past the minimum) is refused at the call */
	CHECK_EQ(rl_conn_want_recv(t->w, srv[0].slot, srv[0].gen, UINT32_MAX), -EMSGSIZE);
	CHECK_EQ(rl_conn_want_recv(t->w, srv[0].slot, srv[0].gen, (1u << 31) - BUFSZ), -EMSGSIZE);
	CHECK_EQ(rl_conn_want_recv(t->w, srv[0].slot, srv[0].gen, (1u << 31) - 1 - BUFSZ), 0);

	/* now read everything: each stream arrives whole and in order */
	mode = 2;
	t->on_event = consume_event;
	drain_all(t);
	T_WAIT(t, flood_done, 60);
	for (int i = 0; i < NPEERS; i++) {
		CHECK_EQ(srv[i].recvd, FLOOD);
		close(peers[i].fd);
		peers[i].fd = -1;
	}
	t->on_event = on_event;
	t_check_idle(t);
}

static int rounds_done(struct t_ctx *t)
{
	(void)t;
	for (int i = 0; i < NPEERS; i++)
		if (srv[i].rounds < rounds_goal)
			return 0;
	return 1;
}

static void random_wants(struct t_ctx *t, uint8_t **bufs, size_t len)
{
	mode = 3;
	rounds_goal = 200;
	max_allowed_over = 0;
	connect_peers(t, bufs, len);
	T_WAIT(t, rounds_done, 60);
	ASSERT(max_allowed_over == 0, "buffered bytes went %u past max(window, want) + one buffer",
	       max_allowed_over);
	/* finish: read the rest, close */
	mode = 2;
	t->on_event = consume_event;
	drain_all(t);
	T_WAIT(t, flood_done, 60);
	for (int i = 0; i < NPEERS; i++) {
		CHECK_EQ(srv[i].recvd, len);
		close(peers[i].fd);
		peers[i].fd = -1;
	}
	t->on_event = on_event;
	t_check_idle(t);
}

int main(void)
{
	struct rl_config cfg;
	t_config_small(&cfg);
	cfg.recv_window = WINDOW;
	cfg.recv_buffers = 16; /* small: the ring runs dry (ENOBUFS) under four streams */
	cfg.recv_buffer_size = BUFSZ;
	struct t_ctx t;
	t_init(&t, &cfg);
	t.on_event = on_event;
	t.pump = pump;
	t_listen(&t, NULL);

	int limited = (rl_worker_features(t.w) & RL_FEAT_RECV_LIMIT) != 0;
	const char *off = getenv("RINGLINE_DISABLE_FEATURES");
	struct utsname un;
	int major = 0, minor = 0;
	if (uname(&un) == 0)
		sscanf(un.release, "%d.%d", &major, &minor);
	if ((major > 6 || (major == 6 && minor >= 17)) &&
	    !(off && (strstr(off, "recv_limit") || strstr(off, "all"))))
		CHECK(limited); /* the probe must find it on 6.17+ */
	printf("recv_window: %s receive\n", limited ? "limited multishot" : "single-shot");

	uint8_t *bufs[NPEERS];
	size_t len = 24u << 20;
	for (int i = 0; i < NPEERS; i++) {
		bufs[i] = malloc(len);
		CHECK(bufs[i] != NULL);
		t_pattern(bufs[i], len, SEED0 + (uint32_t)i, 0);
	}
	flood(&t, bufs);
	random_wants(&t, bufs, len);
	for (int i = 0; i < NPEERS; i++)
		free(bufs[i]);
	t_finish(&t);
	return 0;
}
