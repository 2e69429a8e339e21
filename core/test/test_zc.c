/* SPDX-License-Identifier: MIT */
/*
 * test_zc - guarded scatter-gather sends (rl_conn_sendv) over loopback.
 *
 * Every byte a server connection sends is byte i of a deterministic stream
 * (t_pattern with the connection's seed), whatever part kind carried it:
 * copied parts (RL_PART_COPY), slices of a registered region and
 * RL_PART_PINNED heap buffers. The peer checks the stream piecewise as it
 * reads, so a dropped, duplicated or reordered byte fails at once.
 *
 * Guards are tracked per token: each must come back as RL_EV_GUARD exactly
 * once (a second one, or one for a token never handed out or rejected,
 * fails in the event handler; a missing one fails the wait). A guarded part
 * at least zc_threshold long is held: right after rl_conn_sendv it counts in
 * guards_outstanding and rl_region_inflight, rl_region_free says -EBUSY, and
 * when its guard comes back the kernel has taken its bytes (unsent shows it)
 * and a zero-copy notification arrived since it was queued. A smaller one is
 * copied and its guard is delivered by the very next poll. Released memory
 * is poisoned at once, and copied parts are poisoned as soon as
 * rl_conn_sendv returns, so a core still reading either shows in the stream.
 *
 * Phases:
 *  A. sizes 1 B .. 16 MiB on one connection, mixed part kinds, sends with
 *     more iovecs (> 16) and guards (> 8) than one slab entry holds, copied
 *     parts larger than half a copy slot; then the zc metrics. Run twice,
 *     the second time with one event per poll (see main).
 *  B. misuse: unknown / freed regions, slices outside a region (-ERANGE with
 *     nothing queued and no guard), bad kinds, stale names, empty sends.
 *  C. the peer resets (SO_LINGER 0) while 16 MiB of guarded parts are queued.
 *  D. local close with guarded sends in flight: graceful (everything still
 *     arrives), reset with the send blocked on a peer that does not read
 *     (must not wait for that peer), reset before the send was even
 *     submitted, and rl_worker_destroy with a guarded send blocked.
 *  F. the kernel fails the send (-EFAULT on a held part it cannot read).
 *  E. a slab of 2 entries and many guarded sends queued at once: parts that
 *     find no entry are copied (zc_fallbacks) and reported at once, bytes
 *     stay in order.
 * Throughout, no completion may arrive for an entry already released
 * (stale_cqes stays 0): that is what releasing before a notification that
 * is still due looks like on loopback, where the kernel copies anyway.
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.h"

#define THR 4096u       /* zc_threshold used by every worker here */
#define MAXTOK 8192
#define TOK0 1000u      /* tokens start here: 0 never names a guard */
#define MAXPARTS 64
#define T_REGIONS 64

enum { K_COPY, K_REGION, K_PINNED, K_BAD };

/* K_BAD: a pinned part at this address, which the kernel cannot read */
static uint8_t *bad_ptr;

struct spec {
	int kind;
	uint32_t len;
};

struct reg {
	int id;
	uint8_t *base;
	size_t size; /* what was asked for */
	size_t off;  /* next free byte for a part */
	int held;    /* held guards on it the test has not seen released */
};

struct sconn {
	uint32_t slot, gen;
	uint64_t queued; /* stream bytes handed to the core */
	uint32_t seed;
	struct t_peer peer;
};

struct guard {
	uint8_t used;    /* handed out and accepted by rl_conn_sendv */
	uint8_t zc;      /* held by the core (not copied) */
	uint8_t check;   /* no error on its connection: check the release order */
	uint8_t heap;    /* pinned: malloc'd by the test */
	int seen;
	int32_t region;
	uint8_t *ptr;
	uint32_t len;
	struct sconn *conn;
	uint32_t gen;
	uint64_t end;       /* stream offset just past its bytes */
	uint64_t notifs_at; /* zc_notifs when it was queued */
};

static struct guard guards[MAXTOK];
static uint32_t next_tok = TOK0;
static uint32_t issued, released;   /* guards accepted / seen back */
static uint32_t held_outstanding;  /* held guards not yet seen back */
static uint32_t immediate[MAXTOK]; /* copied guards of sends not yet polled */
static int nimmediate;
static struct reg *regs[T_REGIONS];

static uint32_t acc_slot = T_ANY, acc_gen;
static uint32_t closed_slot = T_ANY, closed_gen;
static struct sconn *cur; /* the connection the predicates look at */

/* ---- bookkeeping ---- */

static struct reg *reg_of(int id)
{
	for (int i = 0; i < T_REGIONS; i++)
		if (regs[i] && regs[i]->id == id)
			return regs[i];
	return NULL;
}

static void region_new(struct t_ctx *t, struct reg *r, size_t size)
{
	void *p = NULL;
	memset(r, 0, sizeof(*r));
	r->id = CHECK_RC(rl_region_new(t->w, size, &p));
	CHECK(p != NULL);
	CHECK_EQ(rl_region_inflight(t->w, r->id), 0);
	r->base = p;
	r->size = size;
	memset(r->base, 0xAB, size); /* the whole size is writable */
	for (int i = 0; i < T_REGIONS; i++) {
		CHECK(regs[i] == NULL || regs[i]->id != r->id);
	}
	for (int i = 0; i < T_REGIONS; i++) {
		if (!regs[i]) {
			regs[i] = r;
			return;
		}
	}
	FAIL("too many regions");
}

/* Free a region the test is done with: only once nothing is in flight. */
static void region_free(struct t_ctx *t, struct reg *r)
{
	CHECK_EQ(r->held, 0);
	CHECK_EQ(rl_region_inflight(t->w, r->id), 0);
	CHECK_EQ(rl_region_free(t->w, r->id), 0);
	CHECK_EQ(rl_region_inflight(t->w, r->id), -ENOENT);
	CHECK_EQ(rl_region_free(t->w, r->id), -ENOENT);
	for (int i = 0; i < T_REGIONS; i++)
		if (regs[i] == r)
			regs[i] = NULL;
}

static void on_guard(struct t_ctx *t, const struct rl_event *e)
{
	uint32_t tok = e->data;
	ASSERT(tok >= TOK0 && tok < MAXTOK && guards[tok].used,
	       "RL_EV_GUARD for token %u, never handed out (or rejected)", tok);
	struct guard *g = &guards[tok];
	g->seen++;
	ASSERT(g->seen == 1, "token %u released %d times", tok, g->seen);
	ASSERT(e->slot == (uint32_t)g->region, "token %u: slot %u, its region is %d", tok, e->slot,
	       g->region);
	const struct rl_metrics *m = rl_worker_metrics(t->w);
	if (g->zc) {
		held_outstanding--;
		if (g->region >= 0) {
			struct reg *r = reg_of(g->region);
			CHECK(r != NULL);
			r->held--;
			int inflight = rl_region_inflight(t->w, r->id);
			/* the core may already have released later guards of
			 * this batch, never fewer than the test has seen */
			CHECK_GE(inflight, 0);
			CHECK_LE(inflight, r->held);
			if (inflight > 0)
				CHECK_EQ(rl_region_free(t->w, r->id), -EBUSY);
		}
		if (g->check) {
			/* only after the kernel took its bytes ... */
			const struct rl_conn_io *io = rl_conn_io(t->w, g->conn->slot);
			if (io->gen == g->gen) {
				uint64_t taken = g->conn->queued - io->unsent;
				ASSERT(taken >= g->end,
				       "token %u released with %llu stream bytes taken, its end is %llu",
				       tok, (unsigned long long)taken, (unsigned long long)g->end);
			}
			/* ... and after a notification for it */
			ASSERT(m->zc_notifs > g->notifs_at,
			       "token %u released with no zero-copy notification since it was queued",
			       tok);
		}
	}
	CHECK_LE(m->guards_outstanding, held_outstanding);
	/* the memory is the caller's again: scribble on it */
	if (g->ptr)
		memset(g->ptr, 0xEE, g->len);
	if (g->heap)
		free(g->ptr);
	g->ptr = NULL;
	released++;
}

static void on_event(struct t_ctx *t, const struct rl_event *e)
{
	switch (e->type) {
	case RL_EV_ACCEPTED:
		CHECK_EQ(e->res, 0);
		CHECK_EQ(e->data, (uint32_t)t->lid);
		CHECK_EQ(acc_slot, T_ANY);
		acc_slot = e->slot;
		acc_gen = e->gen;
		break;
	case RL_EV_GUARD:
		on_guard(t, e);
		break;
	case RL_EV_CLOSED:
		ASSERT(e->res == 0, "connection closed with %s", rl_strerror(e->res));
		closed_slot = e->slot;
		closed_gen = e->gen;
		break;
	case RL_EV_SEND:
	case RL_EV_RECV:
		break; /* looked at through the log and rl_conn_io */
	default:
		FAIL("unexpected event %u", e->type);
	}
}

static int pump(struct t_ctx *t)
{
	return cur && t_peer_pump(&cur->peer) > 0;
}

static int accepted(struct t_ctx *t)
{
	return acc_slot != T_ANY;
}

static void conn_open(struct t_ctx *t, struct sconn *c, uint32_t seed, int rcvbuf)
{
	memset(c, 0, sizeof(*c));
	acc_slot = T_ANY;
	closed_slot = T_ANY;
	cur = c;
	t_peer_init(&c->peer, t_tcp_connect_rcvbuf("127.0.0.1", t->port, 1, rcvbuf));
	c->peer.check_in = 1;
	c->peer.in_seed = seed;
	c->seed = seed;
	T_WAIT(t, accepted, 10);
	c->slot = acc_slot;
	c->gen = acc_gen;
}

static int server_closed(struct t_ctx *t)
{
	return closed_slot == cur->slot && closed_gen == cur->gen;
}

/*
 * rl_conn_sendv of the parts `s` on connection c, each filled with its
 * stream bytes. Region parts take the next bytes of r. check: the
 * connection is healthy, so held guards must come back in order (see
 * on_guard). may_fall_back: the slab may be full (phase E); each send then
 * has at most one guarded part, so the zc_fallbacks delta names it.
 * Returns rl_conn_sendv's result; on success everything is accounted.
 */
static int sendv(struct t_ctx *t, struct sconn *c, struct reg *r, const struct spec *s, int n,
		 uint32_t gen, int check, int may_fall_back)
{
	struct rl_part parts[MAXPARTS];
	uint8_t *copies[MAXPARTS];
	uint32_t toks[MAXPARTS];
	int ntoks = 0, nheld = 0, nheld_region = 0;
	CHECK_LE(n, MAXPARTS);
	struct rl_metrics *m = rl_worker_metrics(t->w);
	uint64_t fb0 = m->zc_fallbacks, out0 = m->guards_outstanding;
	uint64_t queued0 = m->send_bytes_queued;
	int inflight0 = r ? rl_region_inflight(t->w, r->id) : 0;
	const struct rl_conn_io *io = rl_conn_io(t->w, c->slot);
	uint32_t unsent0 = io->unsent;
	size_t roff0 = r ? r->off : 0;
	uint64_t off = c->queued;
	for (int i = 0; i < n; i++) {
		uint32_t len = s[i].len;
		uint8_t *p;
		int32_t region;
		copies[i] = NULL;
		if (s[i].kind == K_REGION) {
			CHECK(r != NULL);
			ASSERT(r->off + len <= r->size, "region too small for the plan");
			p = r->base + r->off;
			r->off += len;
			region = r->id;
		} else if (s[i].kind == K_BAD) {
			p = bad_ptr;
			region = RL_PART_PINNED;
		} else {
			p = malloc(len ? len : 1);
			CHECK(p != NULL);
			region = s[i].kind == K_COPY ? RL_PART_COPY : RL_PART_PINNED;
			if (s[i].kind == K_COPY)
				copies[i] = p;
		}
		if (s[i].kind != K_BAD)
			t_pattern(p, len, c->seed, off);
		parts[i] = (struct rl_part){ .ptr = p, .len = len, .region = region };
		if (s[i].kind != K_COPY) {
			CHECK_LT(next_tok, MAXTOK);
			uint32_t tok = next_tok++;
			struct guard *g = &guards[tok];
			memset(g, 0, sizeof(*g));
			g->zc = len >= THR;
			g->check = (uint8_t)check;
			g->heap = s[i].kind == K_PINNED;
			g->region = region;
			g->ptr = s[i].kind == K_BAD ? NULL : p;
			g->len = len;
			g->conn = c;
			g->gen = c->gen;
			g->end = off + len;
			g->notifs_at = m->zc_notifs;
			parts[i].token = tok;
			toks[ntoks++] = tok;
			if (g->zc) {
				nheld++;
				nheld_region += region >= 0;
			}
		}
		off += len;
	}
	uint64_t total = off - c->queued;

	int rc = rl_conn_sendv(t->w, c->slot, gen, parts, n);

	/* copied means copied: the core must not look at these again */
	for (int i = 0; i < n; i++) {
		if (copies[i]) {
			memset(copies[i], 0xCC, parts[i].len);
			free(copies[i]);
		}
	}
	m = rl_worker_metrics(t->w);
	if (rc < 0) {
		/* nothing queued, no guard will come: any event for these
		 * tokens fails in on_guard (used stays 0) */
		CHECK_EQ(io->unsent, unsent0);
		CHECK_EQ(m->send_bytes_queued, queued0);
		CHECK_EQ(m->guards_outstanding, out0);
		CHECK_EQ(m->zc_fallbacks, fb0);
		if (r) {
			CHECK_EQ(rl_region_inflight(t->w, r->id), inflight0);
			r->off = roff0;
		}
		for (int i = 0; i < ntoks; i++)
			if (guards[toks[i]].heap)
				free(guards[toks[i]].ptr);
		return rc;
	}
	c->queued += total;
	CHECK_EQ(io->unsent, unsent0 + total);
	CHECK_EQ(m->send_bytes_queued, queued0 + total);
	uint64_t fb = m->zc_fallbacks - fb0;
	if (fb) {
		ASSERT(may_fall_back, "%llu guarded parts copied with a slab of %u entries",
		       (unsigned long long)fb, t->cfg.send_slab_entries);
		ASSERT(nheld == 1 && fb == 1, "%d held parts, %llu fallbacks", nheld,
		       (unsigned long long)fb);
		for (int i = 0; i < ntoks; i++)
			guards[toks[i]].zc = 0;
		nheld = nheld_region = 0;
	}
	CHECK_EQ(m->guards_outstanding, out0 + nheld);
	if (r) {
		int inflight = rl_region_inflight(t->w, r->id);
		CHECK_EQ(inflight, inflight0 + nheld_region);
		if (inflight > 0)
			CHECK_EQ(rl_region_free(t->w, r->id), -EBUSY);
	}
	for (int i = 0; i < ntoks; i++) {
		struct guard *g = &guards[toks[i]];
		g->used = 1;
		issued++;
		if (g->zc) {
			held_outstanding++;
			if (g->region >= 0)
				r->held++;
		} else {
			immediate[nimmediate++] = toks[i];
		}
	}
	return 0;
}

/* Copied guards are reported by the very next poll. */
static void poll_immediate(struct t_ctx *t)
{
	int maxev = t->maxev;
	t->maxev = 0; /* room for all of them */
	t_step(t, 0);
	t->maxev = maxev;
	for (int i = 0; i < nimmediate; i++)
		ASSERT(guards[immediate[i]].seen == 1,
		       "copied guard %u not reported by the first poll after its send",
		       immediate[i]);
	nimmediate = 0;
}


static int delivered(struct t_ctx *t)
{
	return cur->peer.inlen == cur->queued && released == issued;
}

static void check_guards_idle(struct t_ctx *t)
{
	struct rl_metrics *m = rl_worker_metrics(t->w);
	CHECK_EQ(released, issued);
	CHECK_EQ(held_outstanding, 0);
	CHECK_EQ(m->guards_outstanding, 0);
	CHECK_EQ(m->slab_used, 0);
	/* a notification for an entry already released would land here */
	CHECK_EQ(m->stale_cqes, 0);
	for (uint32_t k = TOK0; k < next_tok; k++)
		if (guards[k].used)
			ASSERT(guards[k].seen == 1, "token %u seen %d times", k, guards[k].seen);
}

/* ---- plans ---- */

static size_t region_bytes(const struct spec *s, int n)
{
	size_t b = 0;
	for (int i = 0; i < n; i++)
		if (s[i].kind == K_REGION)
			b += s[i].len;
	return b ? b : 1;
}

/* k parts totalling `total` bytes: random kinds, small copied parts and
 * small (copied) guarded parts, the rest shared by held guarded parts. */
static int plan(struct spec *s, int k, size_t total, uint64_t *rs)
{
	if ((size_t)k > total)
		k = (int)total;
	size_t small = 0;
	int nbig = 0;
	for (int i = 0; i < k; i++) {
		switch (t_rand(rs) % 5) {
		case 0:
			s[i] = (struct spec){ K_COPY, 1 + (uint32_t)(t_rand(rs) % 1500) };
			break;
		case 1:
			s[i] = (struct spec){ K_REGION, 1 + (uint32_t)(t_rand(rs) % (THR - 1)) };
			break;
		case 2:
		case 3:
			s[i] = (struct spec){ K_REGION, 0 };
			nbig++;
			break;
		default:
			s[i] = (struct spec){ K_PINNED, 0 };
			nbig++;
			break;
		}
		small += s[i].len;
	}
	if (small + (size_t)nbig * THR > total) {
		/* too small for held parts: equal shares, kinds kept */
		for (int i = 0; i < k; i++)
			s[i].len = (uint32_t)(total / (size_t)k);
		s[k - 1].len += (uint32_t)(total % (size_t)k);
	} else if (nbig == 0) {
		s[k - 1].len += (uint32_t)(total - small);
	} else {
		size_t rest = total - small, share = rest / (size_t)nbig;
		for (int i = 0, b = 0; i < k; i++) {
			if (s[i].len)
				continue;
			s[i].len = (uint32_t)(++b == nbig ? rest - share * (size_t)(nbig - 1) : share);
		}
	}
	size_t sum = 0;
	for (int i = 0; i < k; i++) {
		CHECK_GT(s[i].len, 0);
		sum += s[i].len;
	}
	CHECK_EQ(sum, total);
	return k;
}

/* ---- A: ordered mixed sends ---- */

static void send_case(struct t_ctx *t, struct sconn *c, const struct spec *s, int n)
{
	struct reg r;
	region_new(t, &r, region_bytes(s, n));
	CHECK_EQ(sendv(t, c, &r, s, n, c->gen, 1, 0), 0);
	poll_immediate(t);
	T_WAIT(t, delivered, 60);
	CHECK_EQ(c->peer.err, 0);
	const struct rl_conn_io *io = rl_conn_io(t->w, c->slot);
	CHECK_EQ(io->unsent, 0);
	CHECK_EQ(io->serr, 0);
	check_guards_idle(t);
	region_free(t, &r);
}

static void phase_a(struct t_ctx *t, uint32_t seed)
{
	struct sconn c;
	uint64_t out0 = rl_worker_metrics(t->w)->bytes_out;
	conn_open(t, &c, seed, 0);
	struct spec s[MAXPARTS];
	uint64_t rs = 1234;

	/* 1 byte, a guarded part below the threshold: copied */
	s[0] = (struct spec){ K_REGION, 1 };
	send_case(t, &c, s, 1);
	/* 100 bytes of all three kinds, all copied */
	s[0] = (struct spec){ K_COPY, 40 };
	s[1] = (struct spec){ K_PINNED, 30 };
	s[2] = (struct spec){ K_REGION, 30 };
	send_case(t, &c, s, 3);
	/* at the threshold and one below */
	s[0] = (struct spec){ K_REGION, THR };
	s[1] = (struct spec){ K_PINNED, THR - 1 };
	s[2] = (struct spec){ K_PINNED, THR };
	s[3] = (struct spec){ K_REGION, THR - 1 };
	send_case(t, &c, s, 4);
	/* 20 held parts, no copies: > 16 iovecs and > 8 guards */
	for (int i = 0; i < 20; i++)
		s[i] = (struct spec){ i % 3 ? K_REGION : K_PINNED, 5000 + (uint32_t)i };
	send_case(t, &c, s, 20);
	/* 40 parts alternating copied and held: > 16 iovecs even with the
	 * copies gathered */
	for (int i = 0; i < 40; i++)
		s[i] = i % 2 ? (struct spec){ K_REGION, 4096 + 17 * (uint32_t)i }
			     : (struct spec){ K_COPY, 1 + 37 * (uint32_t)i };
	send_case(t, &c, s, 40);
	/* copied parts bigger than half a copy slot, between held ones */
	s[0] = (struct spec){ K_PINNED, 70000 };
	s[1] = (struct spec){ K_COPY, 100000 };
	s[2] = (struct spec){ K_REGION, 9000 };
	s[3] = (struct spec){ K_COPY, 3000 };
	s[4] = (struct spec){ K_COPY, 7 };
	s[5] = (struct spec){ K_REGION, 65536 };
	s[6] = (struct spec){ K_COPY, 2049 };
	send_case(t, &c, s, 7);

	static const struct {
		size_t total;
		int parts;
	} sizes[] = {
		{ 100, 5 },        { 4096, 2 },       { 5000, 3 },        { 65536, 7 },
		{ 300000, 45 },    { 1u << 20, 20 },  { 4u << 20, 30 },   { 16u << 20, 24 },
	};
	for (size_t i = 0; i < sizeof(sizes) / sizeof(sizes[0]); i++) {
		int n = plan(s, sizes[i].parts, sizes[i].total, &rs);
		send_case(t, &c, s, n);
	}

	/* several sends queued back to back before any poll, one region */
	struct reg r;
	region_new(t, &r, 8u << 20);
	for (int k = 0; k < 6; k++) {
		int n = plan(s, 12, (size_t)(k + 1) * 200000, &rs);
		CHECK_EQ(sendv(t, &c, &r, s, n, c.gen, 1, 0), 0);
	}
	poll_immediate(t);
	T_WAIT(t, delivered, 60);
	check_guards_idle(t);
	region_free(t, &r);

	struct rl_metrics *m = rl_worker_metrics(t->w);
	CHECK_GT(m->zc_sends, 0);
	CHECK_GT(m->zc_notifs, 0);
	/* no errors here: every SENDMSG_ZC had exactly one notification */
	CHECK_EQ(m->zc_notifs, m->zc_sends);
	CHECK_LE(m->zc_copied, m->zc_notifs);
	CHECK_GT(m->zc_bytes, 0);
	CHECK_LE(m->zc_bytes, m->bytes_out);
	CHECK_EQ(m->bytes_out - out0, c.queued);
	CHECK_EQ(m->zc_fallbacks, 0);

	CHECK_EQ(rl_conn_close(t->w, c.slot, c.gen, RL_CLOSE_GRACEFUL), 0);
	T_WAIT(t, server_closed, 10);
	close(c.peer.fd);
	cur = NULL;
	check_guards_idle(t);
	t_check_idle(t);
}

/* ---- B: misuse ---- */

static void phase_b(struct t_ctx *t)
{
	struct sconn c;
	conn_open(t, &c, 12, 0);
	struct spec s[4];
	struct rl_part p;
	uint8_t buf[16] = { 0 };

	/* unknown regions */
	CHECK_EQ(rl_region_free(t->w, -1), -ENOENT);
	CHECK_EQ(rl_region_free(t->w, 5), -ENOENT);
	CHECK_EQ(rl_region_free(t->w, T_REGIONS), -ENOENT);
	CHECK_EQ(rl_region_free(t->w, 100000), -ENOENT);
	CHECK_EQ(rl_region_inflight(t->w, -1), -ENOENT);
	CHECK_EQ(rl_region_inflight(t->w, 5), -ENOENT);
	CHECK_EQ(rl_region_inflight(t->w, 100000), -ENOENT);
	void *ptr = NULL;
	CHECK_EQ(rl_region_new(t->w, 0, &ptr), -EINVAL);

	struct reg r;
	region_new(t, &r, 3 * 4096);
	/* a valid prefix, then a slice outside the region: nothing queued */
	const struct {
		size_t off;   /* from the region base, may be "negative" */
		int before;   /* the slice starts before the base */
		uint32_t len;
	} bad[] = {
		{ 3 * 4096 - 10, 0, 20 },  /* runs past the end */
		{ 3 * 4096, 0, 1 },        /* starts at the end */
		{ 0, 0, 3 * 4096 + 1 },    /* one byte too long */
		{ 1, 1, 1 },               /* one byte before the base */
		{ 4096, 1, 8192 },         /* starts before, ends inside */
		{ 100, 0, UINT32_MAX },    /* absurd length */
		{ 1u << 30, 0, 4096 },     /* far beyond */
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		/* built by hand: sendv() cannot name a slice outside r */
		struct rl_part parts[4];
		uint8_t *pin = malloc(5000);
		CHECK(pin != NULL);
		parts[0] = (struct rl_part){ .ptr = buf, .len = 10, .region = RL_PART_COPY };
		parts[1] = (struct rl_part){ .ptr = pin, .len = 5000, .region = RL_PART_PINNED,
					     .token = next_tok };
		parts[2] = (struct rl_part){ .ptr = r.base, .len = 5000, .region = r.id,
					     .token = next_tok + 1 };
		const uint8_t *bp = bad[i].before ? r.base - bad[i].off : r.base + bad[i].off;
		parts[3] = (struct rl_part){ .ptr = bp, .len = bad[i].len, .region = r.id,
					     .token = next_tok + 2 };
		next_tok += 3; /* never marked used: any guard event for them fails */
		const struct rl_conn_io *io = rl_conn_io(t->w, c.slot);
		uint32_t unsent0 = io->unsent;
		struct rl_metrics *m = rl_worker_metrics(t->w);
		uint64_t q0 = m->send_bytes_queued, g0 = m->guards_outstanding;
		int rc = rl_conn_sendv(t->w, c.slot, c.gen, parts, 4);
		ASSERT(rc == -ERANGE, "slice %zu: rl_conn_sendv %d (%s), want -ERANGE", i, rc,
		       rl_strerror(rc));
		m = rl_worker_metrics(t->w);
		CHECK_EQ(io->unsent, unsent0);
		CHECK_EQ(m->send_bytes_queued, q0);
		CHECK_EQ(m->guards_outstanding, g0);
		CHECK_EQ(m->slab_used, 0);
		CHECK_EQ(rl_region_inflight(t->w, r.id), 0);
		free(pin);
	}
	/* unknown region id, bad part kind */
	p = (struct rl_part){ .ptr = buf, .len = 16, .region = 7, .token = next_tok++ };
	CHECK_EQ(rl_conn_sendv(t->w, c.slot, c.gen, &p, 1), -ENOENT);
	p = (struct rl_part){ .ptr = buf, .len = 16, .region = T_REGIONS + 1, .token = next_tok++ };
	CHECK_EQ(rl_conn_sendv(t->w, c.slot, c.gen, &p, 1), -ENOENT);
	p = (struct rl_part){ .ptr = buf, .len = 16, .region = -3, .token = next_tok++ };
	CHECK_EQ(rl_conn_sendv(t->w, c.slot, c.gen, &p, 1), -EINVAL);
	/* bad arguments and stale names */
	CHECK_EQ(rl_conn_sendv(t->w, c.slot, c.gen, NULL, 1), -EINVAL);
	CHECK_EQ(rl_conn_sendv(t->w, c.slot, c.gen, &p, -1), -EINVAL);
	p = (struct rl_part){ .ptr = buf, .len = 16, .region = RL_PART_COPY };
	CHECK_EQ(rl_conn_sendv(t->w, c.slot, c.gen + 1, &p, 1), -ESTALE);
	/* an empty send queues nothing */
	CHECK_EQ(rl_conn_sendv(t->w, c.slot, c.gen, NULL, 0), 0);
	CHECK_EQ(rl_conn_io(t->w, c.slot)->unsent, 0);
	CHECK_EQ(rl_worker_metrics(t->w)->slab_used, 0);

	/* a freed region is unknown */
	struct reg gone;
	region_new(t, &gone, 4096);
	int gone_id = gone.id;
	region_free(t, &gone);
	p = (struct rl_part){ .ptr = gone.base, .len = 16, .region = gone_id, .token = next_tok++ };
	CHECK_EQ(rl_conn_sendv(t->w, c.slot, c.gen, &p, 1), -ENOENT);

	/* the rejected sends put nothing on the wire: the stream goes on at
	 * offset 0 with a valid send (and no guard event for any rejected
	 * token fails on_guard) */
	s[0] = (struct spec){ K_COPY, 10 };
	s[1] = (struct spec){ K_PINNED, 5000 };
	s[2] = (struct spec){ K_REGION, 5000 };
	CHECK_EQ(sendv(t, &c, &r, s, 3, c.gen, 1, 0), 0);
	poll_immediate(t);
	T_WAIT(t, delivered, 10);

	/* a whole region in one part, and a zero-length guarded part (below
	 * the threshold: copied, reported at once, harmless) */
	r.off = 0;
	s[0] = (struct spec){ K_REGION, 3 * 4096 };
	CHECK_EQ(sendv(t, &c, &r, s, 1, c.gen, 1, 0), 0);
	poll_immediate(t);
	T_WAIT(t, delivered, 10);
	r.off = 0;
	s[0] = (struct spec){ K_REGION, 0 };
	CHECK_EQ(sendv(t, &c, &r, s, 1, c.gen, 1, 0), 0);
	poll_immediate(t);
	s[0] = (struct spec){ K_COPY, 0 };
	s[1] = (struct spec){ K_PINNED, 0 };
	s[2] = (struct spec){ K_COPY, 5 };
	CHECK_EQ(sendv(t, &c, &r, s, 3, c.gen, 1, 0), 0);
	poll_immediate(t);
	T_WAIT(t, delivered, 10);
	const struct rl_conn_io *io = rl_conn_io(t->w, c.slot);
	ASSERT(io->serr == 0, "zero-length parts broke the connection: serr %s",
	       rl_strerror(io->serr));
	CHECK_EQ(io->unsent, 0);
	check_guards_idle(t);
	region_free(t, &r);

	CHECK_EQ(rl_conn_close(t->w, c.slot, c.gen, RL_CLOSE_GRACEFUL), 0);
	T_WAIT(t, server_closed, 10);
	/* a closed connection refuses */
	p = (struct rl_part){ .ptr = buf, .len = 16, .region = RL_PART_COPY };
	CHECK_EQ(rl_conn_sendv(t->w, c.slot, c.gen, &p, 1), -ESTALE);
	close(c.peer.fd);
	cur = NULL;
	t_check_idle(t);
}

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
	if (rl_worker_features(t->w) & RL_FEAT_FD_INSTALL) {
		/* what arrived is a prefix of the stream (pattern-checked),
		 * then the reset */
		c.peer.no_read = 0;
		T_WAIT(t, peer_failed, 10);
		ASSERT(c.peer.err == ECONNRESET, "peer read: %s, eof %d after %zu bytes",
		       strerror(c.peer.err), c.peer.eof, c.peer.inlen);
		CHECK_LT(c.peer.inlen, c.queued);
	}
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
	struct rl_config cfg;
	struct sconn c;
	struct spec s[MAXPARTS];
	t_config_small(&cfg);
	cfg.zc_threshold = THR;
	t_init(&t, &cfg);
	t.on_event = on_event;
	t.pump = pump;
	t_listen(&t, NULL);
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

/* ---- E: slab exhaustion ---- */

static void phase_e(void)
{
	struct t_ctx t;
	struct rl_config cfg;
	char msg[128];
	struct sconn c;
	struct spec s[4];
	t_config_small(&cfg);
	CHECK_EQ(rl_config_set(&cfg, "zc_threshold", THR, msg, sizeof(msg)), 0);
	CHECK_EQ(rl_config_set(&cfg, "send_slab_entries", 2, msg, sizeof(msg)), 0);
	t_init(&t, &cfg);
	t.on_event = on_event;
	t.pump = pump;
	t_listen(&t, NULL);
	conn_open(&t, &c, 18, 0);

	struct reg r;
	region_new(&t, &r, 32u << 20);
	/* many guarded sends queued before any poll: two find slab entries */
	enum { K = 24 };
	for (int k = 0; k < K; k++) {
		s[0] = (struct spec){ K_COPY, 100 + (uint32_t)k };
		s[1] = (struct spec){ k % 3 == 2 ? K_PINNED : K_REGION, (256u << 10) + (uint32_t)k };
		s[2] = (struct spec){ K_COPY, 3000 }; /* over half a slot */
		s[3] = (struct spec){ K_COPY, 1 };
		CHECK_EQ(sendv(&t, &c, &r, s, 4, c.gen, 1, 1), 0);
	}
	struct rl_metrics *m = rl_worker_metrics(t.w);
	CHECK_GT(m->zc_fallbacks, 0);
	CHECK_LE(m->guards_outstanding, cfg.send_slab_entries);
	CHECK_EQ(m->guards_outstanding + m->zc_fallbacks, K);
	CHECK_LE(m->slab_used, cfg.send_slab_entries);
	poll_immediate(&t);
	T_WAIT(&t, delivered, 60);
	check_guards_idle(&t);

	/* sends interleaved with polls: entries free up and are reused while
	 * copies of fallen-back parts still sit in the queue */
	uint64_t fb0 = m->zc_fallbacks;
	r.off = 0;
	for (int k = 0; k < 40; k++) {
		s[0] = (struct spec){ K_COPY, 10 };
		s[1] = (struct spec){ k % 2 ? K_PINNED : K_REGION, (512u << 10) + 3 * (uint32_t)k };
		CHECK_EQ(sendv(&t, &c, &r, s, 2, c.gen, 1, 1), 0);
		poll_immediate(&t);
		pump(&t);
	}
	T_WAIT(&t, delivered, 60);
	check_guards_idle(&t);
	m = rl_worker_metrics(t.w);
	CHECK_GT(m->zc_sends, 0);
	CHECK_EQ(m->zc_notifs, m->zc_sends);
	CHECK_GE(m->zc_fallbacks, fb0);
	region_free(&t, &r);

	CHECK_EQ(rl_conn_close(t.w, c.slot, c.gen, RL_CLOSE_GRACEFUL), 0);
	T_WAIT(&t, server_closed, 10);
	close(c.peer.fd);
	cur = NULL;
	t_finish(&t);
}

int main(void)
{
	struct t_ctx t;
	struct rl_config cfg;
	t_config_small(&cfg);
	cfg.zc_threshold = THR;
	t_init(&t, &cfg);
	if (!(rl_worker_features(t.w) & RL_FEAT_SENDMSG_ZC)) {
		fprintf(stderr, "skip: the kernel has no IORING_OP_SENDMSG_ZC\n");
		CHECK_EQ(rl_worker_destroy(t.w), 0);
		return T_SKIP;
	}
	t.on_event = on_event;
	t.pump = pump;
	t_listen(&t, NULL);

	phase_a(&t, 11);
	/* Again with one event per poll: the reap stops at the completion that
	 * raised an event, so on_guard sees the notification count as it was
	 * when the guard was released (not after the rest of the batch). */
	t.maxev = 1;
	phase_a(&t, 19);
	t.maxev = 0;
	phase_b(&t);
	phase_c_peer_reset(&t);
	phase_d_graceful(&t);
	phase_d_reset(&t, 0);
	phase_d_reset(&t, 1);
	uint8_t *noaccess = mmap(NULL, 1 << 16, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	CHECK(noaccess != MAP_FAILED);
	phase_f_fault(&t, noaccess, 20);
	phase_f_fault(&t, (uint8_t *)(uintptr_t)0xffff888000000000ull, 21);
	CHECK_EQ(munmap(noaccess, 1 << 16), 0);
	t.pump = NULL;
	t_finish(&t);

	phase_d_teardown();
	phase_e();
	return 0;
}
