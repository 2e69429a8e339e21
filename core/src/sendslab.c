/* SPDX-License-Identifier: MIT */
/*
 * sendslab.c - scatter-gather and zero-copy sends: the in-flight send slab.
 *
 * A slab entry is one logical send of several parts: copied parts gathered
 * into one copy chunk, guarded parts referenced in place. It takes its turn
 * in the connection's send queue like any chunk (one send in flight per
 * connection keeps the bytes in order), goes out as SENDMSG_ZC when it has a
 * guard (plain SENDMSG otherwise), and advances its iovecs on partial sends.
 *
 * The kernel may still read guarded memory after the operation completed:
 * an operation CQE with IORING_CQE_F_MORE promises one notification CQE
 * (IORING_CQE_F_NOTIF) later, and only an operation CQE with F_MORE does.
 * The entry is released, and each guard handed back as RL_EV_GUARD, only
 * when no further operation will be submitted for it and every promised
 * notification has arrived; both CQE kinds carry the entry's generation.
 *
 * Until then the kernel holds the bytes in the socket's send queue, and only
 * the socket can give them back: a notification comes when the peer has
 * taken the bytes, or when the queue is purged (a reset). So the owning
 * connection counts the notifications due (zc_notifs) and a graceful close
 * keeps the socket open until they came; a reset close does not wait, its
 * SO_LINGER{1,0} close purges the queue and they follow at once.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int rl__slab_init(struct rl_slab *s, uint32_t count)
{
	memset(s, 0, sizeof(*s));
	s->e = calloc(count, sizeof(*s->e));
	if (!s->e)
		return -ENOMEM;
	s->count = count;
	for (uint32_t i = 0; i < count; i++) {
		s->e[i].index = i;
		s->e[i].gen = 1;
		s->e[i].next_free = i + 1 < count ? i + 1 : UINT32_MAX;
	}
	s->free_head = 0;
	return 0;
}

void rl__slab_fini(struct rl_slab *s)
{
	free(s->e);
	memset(s, 0, sizeof(*s));
}

struct rl_slab_entry *rl__slab_alloc(struct rl_slab *s)
{
	if (s->free_head == UINT32_MAX)
		return NULL;
	struct rl_slab_entry *e = &s->e[s->free_head];
	s->free_head = e->next_free;
	uint32_t index = e->index, gen = e->gen;
	memset(e, 0, sizeof(*e));
	e->index = index;
	e->gen = gen;
	e->used = 1;
	e->node.zc = e;
	e->node.pool_slot = -1;
	s->used++;
	return e;
}

void rl__slab_free(struct rl_slab *s, struct rl_slab_entry *e)
{
	e->used = 0;
	e->gen++;
	if (e->gen == 0)
		e->gen = 1;
	e->next_free = s->free_head;
	s->free_head = e->index;
	s->used--;
}

void rl__slab_advance(struct rl_slab_entry *e, uint32_t n)
{
	while (n && e->iov_first < e->niov) {
		struct iovec *v = &e->iov[e->iov_first];
		if (n >= v->iov_len) {
			n -= (uint32_t)v->iov_len;
			v->iov_len = 0;
			e->iov_first++;
		} else {
			v->iov_base = (char *)v->iov_base + n;
			v->iov_len -= n;
			n = 0;
		}
	}
}

static void maybe_release(struct rl_worker *w, struct rl_slab_entry *e)
{
	if (e->queued || !e->op_final || e->notifs)
		return;
	for (uint32_t i = 0; i < e->nguards; i++) {
		int32_t r = e->regions[i];
		if (r >= 0 && r < RL_MAX_REGIONS)
			w->regions[r].inflight--;
		w->m.guards_outstanding--;
		rl__emit(w, RL_EV_GUARD, 0, (uint32_t)r, 0, e->tokens[i]);
	}
	if (e->copy)
		rl__chunk_put(&w->pool, e->copy);
	rl__slab_free(&w->slab, e);
	if (w->slab.want) { /* a sender waits for an entry (rl_worker_want_slab) */
		w->slab.want = 0;
		rl__emit(w, RL_EV_SLAB, 0, 0, 0, w->slab.count - w->slab.used);
	}
}

int rl_worker_want_slab(struct rl_worker *w)
{
	uint32_t nfree = w->slab.count - w->slab.used;
	if (nfree)
		return nfree > INT32_MAX ? INT32_MAX : (int)nfree;
	w->slab.want = 1;
	return 0;
}

void rl__slab_dropped(struct rl_worker *w, struct rl_slab_entry *e)
{
	e->queued = 0;
	e->op_final = 1;
	maybe_release(w, e);
}

void rl__slab_submit(struct rl_worker *w, struct rl_conn *c, struct rl_slab_entry *e)
{
	struct io_uring_sqe *sqe = rl__sqe(w);
	if (!sqe) {
		c->io.serr = -EBUSY;
		return;
	}
	e->msg.msg_iov = &e->iov[e->iov_first];
	e->msg.msg_iovlen = (size_t)(e->niov - e->iov_first);
	if (e->zc) {
		io_uring_prep_sendmsg_zc(sqe, (int)c->slot, &e->msg, MSG_NOSIGNAL);
		if (w->features & RL_FEAT_ZC_REPORT_USAGE)
			sqe->ioprio |= RL_IORING_SEND_ZC_REPORT_USAGE;
		w->m.zc_sends++;
	} else {
		io_uring_prep_sendmsg(sqe, (int)c->slot, &e->msg, MSG_NOSIGNAL | MSG_WAITALL);
	}
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, rl_ud_pack(RL_OP_SEND_SLAB, e->index, e->gen));
	c->send_inflight = 1;
	rl__conn_op_start(w, c);
}

void rl__slab_on_cqe(struct rl_worker *w, struct io_uring_cqe *cqe)
{
	uint32_t idx = rl_ud_index(cqe->user_data);
	struct rl_slab_entry *e = idx < w->slab.count ? &w->slab.e[idx] : NULL;
	if (!e || !e->used || e->gen != rl_ud_gen(cqe->user_data)) {
		w->m.stale_cqes++;
		return;
	}
	if (cqe->flags & IORING_CQE_F_NOTIF) {
		e->notifs--;
		w->m.zc_notifs++;
		if ((uint32_t)cqe->res & RL_IORING_NOTIF_USAGE_ZC_COPIED)
			w->m.zc_copied++;
		/* A reset close does not wait for notifications, so the
		 * connection may be gone (or its slot reused) by now. */
		struct rl_conn *owner = rl__conntab_get(&w->conns, e->slot, e->conn_gen);
		maybe_release(w, e);
		if (owner && owner->zc_notifs) {
			owner->zc_notifs--;
			if (owner->closing)
				rl__conn_close_step(w, owner);
		}
		return;
	}
	/* the connection cannot be gone: its send holds an op count */
	struct rl_conn *c = &w->conns.conns[e->slot];
	if (cqe->flags & IORING_CQE_F_MORE) {
		e->notifs++;
		c->zc_notifs++;
	}
	int res = cqe->res;
	if (res > 0) {
		e->node.off += (uint32_t)res;
		if (e->zc)
			w->m.zc_bytes += (uint64_t)res;
		if (e->node.off < e->node.len) {
			rl__slab_advance(e, (uint32_t)res);
		} else {
			c->sq_head = e->node.next;
			if (!c->sq_head)
				c->sq_tail = NULL;
			e->queued = 0;
			e->op_final = 1;
		}
	}
	uint32_t egen = e->gen;
	rl__conn_send_done(w, c, res);
	/* send_done may have dropped (and released) this very entry */
	if (e->used && e->gen == egen)
		maybe_release(w, e);
}

/* ---- building a scatter-gather send ---- */

static void finish(struct rl_worker *w, struct rl_conn *c, struct rl_slab_entry *e)
{
	if (!e)
		return;
	uint32_t total = 0;
	for (uint32_t i = 0; i < e->niov; i++)
		total += (uint32_t)e->iov[i].iov_len;
	if (total == 0) { /* defensive: an empty entry is never sent */
		e->op_final = 1;
		maybe_release(w, e);
		return;
	}
	e->node.len = total;
	e->queued = 1;
	e->slot = c->slot; /* its completions are accounted on this connection */
	e->conn_gen = c->io.gen;
	rl__conn_enqueue(w, c, &e->node);
}

static uint32_t copy_room(const struct rl_slab_entry *e)
{
	return e->copy ? e->copy->cap - e->copy->len : 0;
}

/* The body of rl_conn_sendv (wait 0: a guarded part that finds no entry is
 * copied) and rl_conn_sendv_upto (wait 1: the call stops before it). */
static int sendv(struct rl_worker *w, uint32_t slot, uint32_t gen, const struct rl_part *parts,
		 int n, int wait)
{
	int err;
	struct rl_conn *c = rl__conn_sendable(w, slot, gen, &err);
	if (!c)
		return err;
	if (n < 0 || (n > 0 && !parts))
		return -EINVAL;
	uint64_t total = 0;
	for (int i = 0; i < n; i++) {
		const struct rl_part *p = &parts[i];
		if (p->region >= 0) {
			int rc = rl__region_check(w, p->region, p->ptr, p->len);
			if (rc)
				return rc;
		} else if (p->region != RL_PART_COPY && p->region != RL_PART_PINNED) {
			return -EINVAL;
		}
		total += p->len;
	}
	if (total > (uint64_t)(UINT32_MAX - c->io.unsent))
		return -ENOBUFS;

	uint32_t thr = w->cfg.zc_threshold;
	int zc_ok = (w->features & RL_FEAT_SENDMSG_ZC) != 0;
	uint32_t big_copy = w->pool.slot_size / 2;
	struct rl_slab_entry *e = NULL;
	for (int i = 0; i < n; i++) {
		const struct rl_part *p = &parts[i];
		int guarded_kind = p->region != RL_PART_COPY;
		if (p->len == 0) { /* nothing to send; a guard is free at once */
			if (guarded_kind)
				rl__emit(w, RL_EV_GUARD, 0, (uint32_t)p->region, 0, p->token);
			continue;
		}
		if (guarded_kind && zc_ok && p->len >= thr) {
			if (!e || e->niov == RL_SLAB_IOVS || e->nguards == RL_SLAB_GUARDS) {
				finish(w, c, e);
				e = rl__slab_alloc(&w->slab);
			}
			if (!e && wait) {
				/* Backpressure, not a copy: the caller waits for an
				 * entry and sends parts[i..] then. Everything before
				 * it is queued (finish above), in order. */
				w->m.slab_waits++;
				return i;
			}
			if (e) {
				e->iov[e->niov].iov_base = (void *)p->ptr;
				e->iov[e->niov].iov_len = p->len;
				e->niov++;
				e->tokens[e->nguards] = p->token;
				e->regions[e->nguards] = p->region;
				e->nguards++;
				e->zc = 1;
				if (p->region >= 0)
					w->regions[p->region].inflight++;
				w->m.guards_outstanding++;
				continue;
			}
			w->m.zc_fallbacks++; /* slab full: copy instead, still in order */
		}
		/* copied part: gathered into the entry's copy chunk */
		if (p->len > big_copy) {
			finish(w, c, e);
			e = NULL;
		} else if (!e || e->niov == RL_SLAB_IOVS || (e->copy && copy_room(e) < p->len)) {
			finish(w, c, e);
			e = rl__slab_alloc(&w->slab);
		}
		if (e && !e->copy && !(e->copy = rl__chunk_get(&w->pool, w->pool.slot_size))) {
			finish(w, c, e); /* what it holds goes out and is released as usual */
			return -ENOMEM;
		}
		if (!e) {
			int rc = rl_conn_send(w, c->slot, c->io.gen, p->ptr, p->len);
			if (rc)
				return rc;
		} else {
			uint8_t *dst = e->copy->data + e->copy->len;
			memcpy(dst, p->ptr, p->len);
			e->copy->len += p->len;
			struct iovec *last = e->niov ? &e->iov[e->niov - 1] : NULL;
			if (last && (uint8_t *)last->iov_base + last->iov_len == dst) {
				last->iov_len += p->len;
			} else {
				e->iov[e->niov].iov_base = dst;
				e->iov[e->niov].iov_len = p->len;
				e->niov++;
			}
		}
		if (guarded_kind) /* copied: its memory is free again at once */
			rl__emit(w, RL_EV_GUARD, 0, (uint32_t)p->region, 0, p->token);
	}
	finish(w, c, e);
	return wait ? n : 0;
}

int rl_conn_sendv(struct rl_worker *w, uint32_t slot, uint32_t gen, const struct rl_part *parts,
		  int n)
{
	return sendv(w, slot, gen, parts, n, 0);
}

int rl_conn_sendv_upto(struct rl_worker *w, uint32_t slot, uint32_t gen, const struct rl_part *parts,
		       int n)
{
	return sendv(w, slot, gen, parts, n, 1);
}
