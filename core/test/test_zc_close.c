/* SPDX-License-Identifier: MIT */
/*
 * test_zc_close - the end of a connection, or of its send, with guarded
 * sends (rl_conn_sendv) in flight: every guard still comes back exactly
 * once, held memory is never released early, nothing leaks (see
 * zc_helpers.h for the guard rules).
 *
 * Phases:
 *  C. the peer resets (SO_LINGER 0) while 16 MiB of guarded parts are queued.
 *  D. local close with guarded sends in flight: graceful (everything still
 *     arrives), reset with the send blocked on a peer that does not read
 *     (must not wait for that peer), reset before the send was even
 *     submitted, and rl_worker_destroy with a guarded send blocked.
 *  E. graceful close with the send done but its notification still due (the
 *     peer has not taken the bytes): the socket is held until it came, and
 *     rl_worker_destroy meanwhile resets it and ends at once.
 *  F. the kernel fails the send (-EFAULT on a held part it cannot read).
 *  G. graceful close to a peer that never reads: after close_timeout
 *     without progress it is reset, and the slab entries come free; one
 *     that reads slowly but steadily is not.
 */
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "zc_helpers.h"

/* ---- C, D: errors and closes with guarded sends in flight ---- */

#define BIG_PARTS 14

/* 16 MiB of guarded parts with a few copies: > 16 iovecs, > 8 guards. */
static int big_plan(struct spec *s)
{
	int n = 0;
	uint32_t used = 0;
	for (int i = 0; i < BIG_PARTS; i++) {
		if (i % 4 == 0)
			s[n++] = (struct spec){ K_COPY, 100 + (uint32_t)i };
		s[n++] = (struct spec){ i % 2 ? K_PINNED : K_REGION, 1u << 20 };
	}
	for (int i = 0; i < n; i++)
		used += s[i].len;
	/* top up to exactly 16 MiB with region parts */
	s[n++] = (struct spec){ K_REGION, (1u << 20) };
	s[n++] = (struct spec){ K_REGION, (16u << 20) - used - (1u << 20) };
	return n;
}

static int peer_has_bytes(struct t_ctx *t)
{
	int n = 0;
	CHECK(ioctl(cur->peer.fd, FIONREAD, &n) == 0);
	return n > 0;
}

static int read_some(struct t_ctx *t)
{
	return cur->peer.inlen >= cur->peer.read_limit;
}

static int send_failed_and_released(struct t_ctx *t)
{
	return rl_conn_io(t->w, cur->slot)->serr != 0 && released == issued;
}

static int guards_back(struct t_ctx *t)
{
	return released == issued;
}

static int closed_and_released(struct t_ctx *t)
{
	return server_closed(t) && released == issued;
}

static int peer_failed(struct t_ctx *t)
{
	return cur->peer.err || cur->peer.eof;
}

static int peer_done(struct t_ctx *t)
{
	return cur->peer.eof && cur->peer.inlen == cur->queued;
}

static void phase_c_peer_reset(struct t_ctx *t)
{
	struct sconn c;
	struct spec s[MAXPARTS];
	conn_open(t, &c, 13, 65536);
	c.peer.read_limit = 256 * 1024;
	int n = big_plan(s);
	struct reg r;
	region_new(t, &r, region_bytes(s, n));
	/* not `check`: after the reset parts go without their bytes sent */
	CHECK_EQ(sendv(t, &c, &r, s, n, c.gen, 0, 0), 0);
	CHECK_EQ(rl_conn_want_send(t->w, c.slot, c.gen, 0), 0);
	poll_immediate(t);
	T_WAIT(t, read_some, 10);
	const struct rl_conn_io *io = rl_conn_io(t->w, c.slot);
	CHECK_GT(io->unsent, 0); /* mid-send */
	CHECK_EQ(io->serr, 0);
	CHECK_GT(rl_worker_metrics(t->w)->guards_outstanding, 0);
	CHECK_GT(rl_region_inflight(t->w, r.id), 0);
	CHECK_EQ(rl_region_free(t->w, r.id), -EBUSY);
	t_close_reset(c.peer.fd);
	c.peer.fd = -1;

	/* the error alone releases everything, before the caller closes */
	T_WAIT(t, send_failed_and_released, 10);
	ASSERT(io->serr == -ECONNRESET || io->serr == -EPIPE, "serr %d (%s)", io->serr,
	       rl_strerror(io->serr));
	CHECK_EQ(t_count(t, RL_EV_SEND, c.slot, c.gen), 1);
	CHECK_EQ(t_last(t, RL_EV_SEND, c.slot, c.gen)->res, io->serr);
	CHECK_EQ(io->unsent, 0);
	CHECK_EQ(io->state, RL_CONN_OPEN);
	check_guards_idle(t);
	CHECK_EQ(rl_worker_metrics(t->w)->send_bytes_queued, 0);
	/* a send on the failed connection is refused with its error */
	s[0] = (struct spec){ K_PINNED, 8192 };
	CHECK_EQ(sendv(t, &c, &r, s, 1, c.gen, 0, 0), io->serr);
	region_free(t, &r);
	CHECK_EQ(rl_conn_close(t->w, c.slot, c.gen, RL_CLOSE_GRACEFUL), 0);
	T_WAIT(t, server_closed, 10);
	cur = NULL;
	check_guards_idle(t);
	t_check_idle(t);
}

static void phase_d_graceful(struct t_ctx *t)
{
	struct sconn c;
	struct spec s[MAXPARTS];
	conn_open(t, &c, 14, 0);
	int n = big_plan(s);
	struct reg r;
	region_new(t, &r, region_bytes(s, n) + 300000);
	CHECK_EQ(sendv(t, &c, &r, s, n, c.gen, 1, 0), 0);
	uint64_t rs = 99;
	n = plan(s, 20, 300000, &rs);
	CHECK_EQ(sendv(t, &c, &r, s, n, c.gen, 1, 0), 0);
	/* close before the first poll: everything still goes out, in order */
	CHECK_EQ(rl_conn_close(t->w, c.slot, c.gen, RL_CLOSE_GRACEFUL), 0);
	s[0] = (struct spec){ K_PINNED, 5000 };
	CHECK_EQ(sendv(t, &c, &r, s, 1, c.gen, 1, 0), -EPIPE);
	poll_immediate(t);
	T_WAIT(t, peer_done, 60);
	CHECK_EQ(c.peer.err, 0);
	T_WAIT(t, closed_and_released, 10);
	check_guards_idle(t);
	region_free(t, &r);
	close(c.peer.fd);
	cur = NULL;
	t_check_idle(t);
}

static void phase_d_reset(struct t_ctx *t, int before_submit)
{
	struct sconn c;
	struct spec s[MAXPARTS];
	conn_open(t, &c, before_submit ? 16 : 15, 65536);
	c.peer.no_read = 1;
	int n = big_plan(s);
	struct reg r;
	region_new(t, &r, region_bytes(s, n));
	CHECK_EQ(sendv(t, &c, &r, s, n, c.gen, 0, 0), 0);
	if (!before_submit) {
		poll_immediate(t);
		/* the send is in flight once bytes wait in the peer's socket */
		T_WAIT(t, peer_has_bytes, 10);
		CHECK_GT(rl_conn_io(t->w, c.slot)->unsent, 0);
		CHECK_GT(rl_region_inflight(t->w, r.id), 0);
	}
	CHECK_EQ(rl_conn_close(t->w, c.slot, c.gen, RL_CLOSE_RESET), 0);
	CHECK_EQ(rl_conn_io(t->w, c.slot)->state, RL_CONN_CLOSING);
	if (before_submit)
		poll_immediate(t);
	/* a reset does not wait for the peer: it still reads nothing */
	T_WAIT(t, closed_and_released, 10);
	check_guards_idle(t);
	region_free(t, &r);
	/* what arrived is a prefix of the stream (pattern-checked), then the
	 * reset (SO_LINGER on the descriptor FIXED_FD_INSTALL made, or on the
	 * plain one the connection was accepted as without it) */
	c.peer.no_read = 0;
	T_WAIT(t, peer_failed, 10);
	ASSERT(c.peer.err == ECONNRESET, "peer read: %s, eof %d after %zu bytes",
	       strerror(c.peer.err), c.peer.eof, c.peer.inlen);
	CHECK_LT(c.peer.inlen, c.queued);
	close(c.peer.fd);
	cur = NULL;
	t_check_idle(t);
}

/* rl_worker_destroy with a guarded send blocked on a peer that does not
 * read: the teardown resets the connection and waits for the send and its
 * notification, without the peer's help and without leaking. */
static void phase_d_teardown(void)
{
	struct t_ctx t;
	struct sconn c;
	struct spec s[MAXPARTS];
	zc_start(&t, NULL);
	conn_open(&t, &c, 17, 65536);
	c.peer.no_read = 1;
	int n = big_plan(s);
	struct reg r;
	region_new(&t, &r, region_bytes(s, n));
	uint32_t tok0 = next_tok;
	CHECK_EQ(sendv(&t, &c, &r, s, n, c.gen, 0, 0), 0);
	poll_immediate(&t);
	T_WAIT(&t, peer_has_bytes, 10);
	CHECK_GT(rl_region_inflight(t.w, r.id), 0);
	CHECK_GE(rl_worker_live(t.w), 2); /* listener, connection */
	double t0 = t_now();
	int rc = rl_worker_destroy(t.w);
	double took = t_now() - t0;
	/* live at the call: reported, still torn down (never -ETIMEDOUT) */
	ASSERT(rc == -EBUSY, "rl_worker_destroy: %s (%d)", rl_strerror(rc), rc);
	ASSERT(took < 5.0, "rl_worker_destroy took %.1f s", took);
	/* the peer reads a prefix of the stream (pattern-checked), then the
	 * connection's end: nobody else will end it now */
	c.peer.no_read = 0;
	for (double end = t_now() + 10; !c.peer.err && !c.peer.eof;) {
		ASSERT(t_now() < end, "peer not disconnected by the teardown");
		struct pollfd pfd = { .fd = c.peer.fd, .events = POLLIN };
		if (!t_peer_pump(&c.peer) && !c.peer.err && !c.peer.eof)
			CHECK(poll(&pfd, 1, 1000) >= 0); /* the worker is gone: wait on the socket */
	}
	CHECK_LT(c.peer.inlen, c.queued);
	/* the core is gone: the guards it never reported are ours again */
	for (uint32_t k = tok0; k < next_tok; k++) {
		struct guard *g = &guards[k];
		if (g->used && !g->seen) {
			if (g->heap)
				free(g->ptr);
			g->used = 0;
			if (g->zc)
				held_outstanding--;
			issued--;
		}
	}
	for (int i = 0; i < T_REGIONS; i++)
		if (regs[i] == &r)
			regs[i] = NULL;
	close(c.peer.fd);
	cur = NULL;
	free(t.log);
	CHECK_EQ(held_outstanding, 0);
}

/* ---- E: a graceful close while a zero-copy notification is due ---- */

/* The send has completed (its bytes are in the socket's send queue) but the
 * kernel still holds them: the peer has not taken them. */
static int sent_not_notified(struct t_ctx *t)
{
	return rl_conn_io(t->w, cur->slot)->unsent == 0 && held_outstanding > 0;
}

static t_event_fn zc_on_event;
static int held_at_close = -1; /* held guards still out when RL_EV_CLOSED came */

static void on_event_e(struct t_ctx *t, const struct rl_event *e)
{
	zc_on_event(t, e);
	if (e->type == RL_EV_CLOSED)
		held_at_close = (int)held_outstanding;
}

static int closed_or_only_notif_due(struct t_ctx *t)
{
	return server_closed(t) || rl_worker_metrics(t->w)->ops_inflight == 1;
}

/* 256 KiB held, to a peer with a 4 KiB receive buffer. */
static void send_held(struct t_ctx *t, struct sconn *c, struct reg *r)
{
	struct spec s[1] = { { K_REGION, 256 * 1024 } };
	conn_open(t, c, 22, 4096);
	c->peer.no_read = 1;
	region_new(t, r, region_bytes(s, 1));
	CHECK_EQ(sendv(t, c, r, s, 1, c->gen, 0, 0), 0);
	poll_immediate(t);
	T_WAIT(t, sent_not_notified, 10);
}

/* The close completes only after the kernel gave the bytes back: the socket
 * stays open (and resettable) meanwhile, and every byte still arrives. */
static void phase_e_graceful_held(struct t_ctx *t)
{
	struct sconn c;
	struct reg r;
	send_held(t, &c, &r);
	zc_on_event = t->on_event;
	t->on_event = on_event_e;
	held_at_close = -1;
	CHECK_EQ(rl_conn_close(t->w, c.slot, c.gen, RL_CLOSE_GRACEFUL), 0);
	/* every operation of the close done (the listener's accept is left),
	 * or the connection gone: it must still be there, waiting */
	T_WAIT(t, closed_or_only_notif_due, 10);
	CHECK(!server_closed(t));
	CHECK_EQ(rl_conn_io(t->w, c.slot)->state, RL_CONN_CLOSING);
	c.peer.no_read = 0;
	T_WAIT(t, peer_done, 10);
	T_WAIT(t, closed_and_released, 10);
	ASSERT(held_at_close == 0, "closed with %d held guard(s) still out", held_at_close);
	t->on_event = zc_on_event;
	check_guards_idle(t);
	region_free(t, &r);
	close(c.peer.fd);
	cur = NULL;
	t_check_idle(t);
}

/* rl_worker_destroy after such a graceful close began, the peer never
 * reading: teardown resets the socket, which brings the notification, and
 * ends at once (it used to wait 10 s for a notification that only the
 * peer's reading could bring, then fail with -ETIMEDOUT). */
static void phase_e_teardown(void)
{
	struct t_ctx t;
	struct sconn c;
	struct reg r;
	zc_start(&t, NULL);
	uint32_t tok0 = next_tok;
	send_held(&t, &c, &r);
	CHECK_EQ(rl_conn_close(t.w, c.slot, c.gen, RL_CLOSE_GRACEFUL), 0);
	poll_immediate(&t);
	double t0 = t_now();
	int rc = rl_worker_destroy(t.w);
	double took = t_now() - t0;
	ASSERT(rc == -EBUSY, "rl_worker_destroy: %s (%d)", rl_strerror(rc), rc);
	ASSERT(took < 1.0, "rl_worker_destroy took %.2f s", took);
	/* the peer sees a prefix of the stream, then the reset */
	c.peer.no_read = 0;
	for (double end = t_now() + 10; !c.peer.err && !c.peer.eof;) {
		ASSERT(t_now() < end, "peer not disconnected by the teardown");
		struct pollfd pfd = { .fd = c.peer.fd, .events = POLLIN };
		if (!t_peer_pump(&c.peer) && !c.peer.err && !c.peer.eof)
			CHECK(poll(&pfd, 1, 1000) >= 0);
	}
	ASSERT(c.peer.err == ECONNRESET, "peer: %s, eof %d", strerror(c.peer.err), c.peer.eof);
	for (uint32_t k = tok0; k < next_tok; k++) {
		struct guard *g = &guards[k];
		if (g->used && !g->seen) {
			g->used = 0;
			if (g->zc)
				held_outstanding--;
			issued--;
		}
	}
	for (int i = 0; i < T_REGIONS; i++)
		if (regs[i] == &r)
			regs[i] = NULL;
	close(c.peer.fd);
	cur = NULL;
	free(t.log);
	CHECK_EQ(held_outstanding, 0);
}

/* ---- G: a graceful close to a peer that never reads ends in a reset ---- */

/* close_timeout without send progress: the close becomes a reset, so the
 * queue and its slab entries come free (they were held forever: a few
 * hundred such peers left no entry for any zero-copy send). Both ways a
 * graceful close waits: its send blocked (queue not drained), and its
 * send done with the notification due (bytes in the socket's queue). */
static void phase_g_close_timeout(void)
{
	struct t_ctx t;
	struct rl_config cfg;
	t_config_small(&cfg);
	cfg.zc_threshold = THR;
	cfg.close_timeout = 100;
	zc_start(&t, &cfg);
	for (int held = 0; held < 2; held++) {
		struct sconn c;
		struct reg r;
		struct spec s[MAXPARTS];
		if (held) {
			send_held(&t, &c, &r);
		} else {
			conn_open(&t, &c, 23, 65536);
			c.peer.no_read = 1;
			int n = big_plan(s);
			region_new(&t, &r, region_bytes(s, n));
			CHECK_EQ(sendv(&t, &c, &r, s, n, c.gen, 0, 0), 0);
			poll_immediate(&t);
			T_WAIT(&t, peer_has_bytes, 10);
			CHECK_GT(rl_conn_io(t.w, c.slot)->unsent, 0);
		}
		CHECK_GT(rl_worker_metrics(t.w)->slab_used, 0);
		uint64_t resets = rl_worker_metrics(t.w)->close_resets;
		CHECK_EQ(rl_conn_close(t.w, c.slot, c.gen, RL_CLOSE_GRACEFUL), 0);
		/* the peer still reads nothing */
		T_WAIT(&t, closed_and_released, 10);
		CHECK_EQ(rl_worker_metrics(t.w)->close_resets, resets + 1);
		CHECK_EQ(rl_worker_metrics(t.w)->slab_used, 0);
		check_guards_idle(&t);
		region_free(&t, &r);
		c.peer.no_read = 0;
		T_WAIT(&t, peer_failed, 10);
		ASSERT(c.peer.err == ECONNRESET, "peer read: %s, eof %d after %zu bytes",
		       strerror(c.peer.err), c.peer.eof, c.peer.inlen);
		close(c.peer.fd);
		cur = NULL;
		t_check_idle(&t);
	}
	t.pump = NULL;
	t_finish(&t);
}

static double pace_until;

static int paced(struct t_ctx *t)
{
	return t_now() >= pace_until;
}

/* A peer that reads slowly but steadily is not reset: each send completion
 * and notification moves the deadline. What the core sees as progress is a
 * send completing, which needs the peer to take about half of the sending
 * socket's buffer (the kernel wakes a blocked send only then): so each
 * round the peer reads one tcp_wmem maximum, then pauses 250 ms; rounds go
 * on for 2.5 times close_timeout, so two deadlines pass while it reads. */
static void phase_g_progress(void)
{
	struct t_ctx t;
	struct rl_config cfg;
	t_config_small(&cfg);
	cfg.zc_threshold = THR;
	cfg.close_timeout = 600;
	zc_start(&t, &cfg);
	size_t step = t_tcp_wmem_max();
	if (step < (1u << 20))
		step = 1u << 20;
	struct sconn c;
	struct reg r;
	struct spec s[32];
	for (int i = 0; i < 32; i++) /* 8 steps: more than the rounds take */
		s[i] = (struct spec){ K_REGION, (uint32_t)(step / 4) };
	conn_open(&t, &c, 24, 256 * 1024);
	c.peer.no_read = 1;
	region_new(&t, &r, region_bytes(s, 32));
	CHECK_EQ(sendv(&t, &c, &r, s, 32, c.gen, 1, 0), 0);
	poll_immediate(&t);
	T_WAIT(&t, peer_has_bytes, 10);
	CHECK_EQ(rl_conn_close(t.w, c.slot, c.gen, RL_CLOSE_GRACEFUL), 0);
	double end = t_now() + 1.5;
	while (t_now() < end) {
		c.peer.read_limit = c.peer.inlen + step;
		c.peer.no_read = 0;
		T_WAIT(&t, read_some, 10);
		c.peer.no_read = 1;
		pace_until = t_now() + 0.25;
		T_WAIT(&t, paced, 10);
		CHECK_EQ(rl_worker_metrics(t.w)->close_resets, 0);
		CHECK(!server_closed(&t));
	}
	CHECK_LT(c.peer.inlen, c.queued); /* it was still sending all along */
	c.peer.read_limit = 0;
	c.peer.no_read = 0;
	T_WAIT(&t, peer_done, 60);
	CHECK_EQ(c.peer.err, 0);
	T_WAIT(&t, closed_and_released, 10);
	CHECK_EQ(rl_worker_metrics(t.w)->close_resets, 0);
	check_guards_idle(&t);
	region_free(&t, &r);
	close(c.peer.fd);
	cur = NULL;
	t_check_idle(&t);
	t.pump = NULL;
	t_finish(&t);
}

/* ---- F: the kernel fails the send itself ---- */

static int send_failed(struct t_ctx *t)
{
	return rl_conn_io(t->w, cur->slot)->serr != 0;
}

/* A held part the kernel cannot read (the core never touches held memory,
 * so it cannot tell): the send fails with -EFAULT and every guard of it and
 * of the sends queued behind it still comes back exactly once. With a
 * kernel address the failure comes while the operation is prepared, before
 * any notification exists; with an inaccessible user page it comes while
 * the pages are pinned, with a notification. */
static void phase_f_fault(struct t_ctx *t, uint8_t *addr, uint32_t seed)
{
	struct sconn c;
	struct spec s[6];
	conn_open(t, &c, seed, 0);
	bad_ptr = addr;
	struct reg r;
	region_new(t, &r, 64 * 1024);
	s[0] = (struct spec){ K_COPY, 100 };
	s[1] = (struct spec){ K_REGION, 8192 };
	s[2] = (struct spec){ K_BAD, 8192 };
	s[3] = (struct spec){ K_REGION, 8192 };
	s[4] = (struct spec){ K_PINNED, 8192 };
	CHECK_EQ(sendv(t, &c, &r, s, 5, c.gen, 0, 0), 0);
	s[0] = (struct spec){ K_REGION, 16384 };
	s[1] = (struct spec){ K_COPY, 10 };
	CHECK_EQ(sendv(t, &c, &r, s, 2, c.gen, 0, 0), 0);
	CHECK_EQ(rl_conn_want_send(t->w, c.slot, c.gen, 0), 0);
	poll_immediate(t);
	T_WAIT(t, send_failed, 10);
	const struct rl_conn_io *io = rl_conn_io(t->w, c.slot);
	ASSERT(io->serr == -EFAULT, "serr %d (%s), want -EFAULT", io->serr, rl_strerror(io->serr));
	T_WAIT(t, guards_back, 10);
	check_guards_idle(t);
	CHECK_EQ(io->unsent, 0);
	region_free(t, &r);
	CHECK_EQ(rl_conn_close(t->w, c.slot, c.gen, RL_CLOSE_GRACEFUL), 0);
	T_WAIT(t, server_closed, 10);
	/* what arrived is a prefix of the stream (pattern-checked) */
	t_peer_pump(&c.peer);
	CHECK_LT(c.peer.inlen, c.queued);
	close(c.peer.fd);
	cur = NULL;
	t_check_idle(t);
}

int main(void)
{
	struct t_ctx t;
	zc_start(&t, NULL);
	phase_c_peer_reset(&t);
	phase_d_graceful(&t);
	phase_d_reset(&t, 0);
	phase_d_reset(&t, 1);
	phase_e_graceful_held(&t);
	uint8_t *noaccess = mmap(NULL, 1 << 16, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(noaccess != MAP_FAILED);
	phase_f_fault(&t, noaccess, 20);
	phase_f_fault(&t, (uint8_t *)(uintptr_t)0xffff888000000000ull, 21);
	CHECK_EQ(munmap(noaccess, 1 << 16), 0);
	t.pump = NULL;
	t_finish(&t);

	phase_d_teardown();
	phase_e_teardown();
	phase_g_close_timeout();
	phase_g_progress();
	return 0;
}
