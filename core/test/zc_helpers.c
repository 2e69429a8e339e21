/* SPDX-License-Identifier: MIT */
/* zc_helpers.c - the guarded-send tests' shared fixture (see zc_helpers.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "zc_helpers.h"

uint8_t *bad_ptr;

struct guard guards[MAXTOK];
uint32_t next_tok = TOK0;
uint32_t issued, released;
uint32_t held_outstanding;
static uint32_t immediate[MAXTOK]; /* copied guards of sends not yet polled */
static int nimmediate;
struct reg *regs[T_REGIONS];

static uint32_t acc_slot = T_ANY, acc_gen;
static uint32_t closed_slot = T_ANY, closed_gen;
struct sconn *cur;

/* ---- bookkeeping ---- */

static struct reg *reg_of(int id)
{
	for (int i = 0; i < T_REGIONS; i++)
		if (regs[i] && regs[i]->id == id)
			return regs[i];
	return NULL;
}

void region_new(struct t_ctx *t, struct reg *r, size_t size)
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

void region_free(struct t_ctx *t, struct reg *r)
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

int pump(struct t_ctx *t)
{
	return cur && t_peer_pump(&cur->peer) > 0;
}

static int accepted(struct t_ctx *t)
{
	return acc_slot != T_ANY;
}

void conn_open(struct t_ctx *t, struct sconn *c, uint32_t seed, int rcvbuf)
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

int server_closed(struct t_ctx *t)
{
	return closed_slot == cur->slot && closed_gen == cur->gen;
}

int sendv(struct t_ctx *t, struct sconn *c, struct reg *r, const struct spec *s, int n,
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

void poll_immediate(struct t_ctx *t)
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

int delivered(struct t_ctx *t)
{
	return cur->peer.inlen == cur->queued && released == issued;
}

void check_guards_idle(struct t_ctx *t)
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

size_t region_bytes(const struct spec *s, int n)
{
	size_t b = 0;
	for (int i = 0; i < n; i++)
		if (s[i].kind == K_REGION)
			b += s[i].len;
	return b ? b : 1;
}

int plan(struct spec *s, int k, size_t total, uint64_t *rs)
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

void zc_start(struct t_ctx *t, const struct rl_config *cfg)
{
	struct rl_config c;
	if (!cfg) {
		t_config_small(&c);
		c.zc_threshold = THR;
		cfg = &c;
	}
	t_init(t, cfg);
	/* which guarded parts are held (see sendv) follows from THR */
	CHECK_EQ(t->cfg.zc_threshold, THR);
	if (!(rl_worker_features(t->w) & RL_FEAT_SENDMSG_ZC)) {
		fprintf(stderr, "skip: the kernel has no IORING_OP_SENDMSG_ZC\n");
		CHECK_EQ(rl_worker_destroy(t->w), 0);
		exit(T_SKIP);
	}
	t->on_event = on_event;
	t->pump = pump;
	t_listen(t, NULL);
}
