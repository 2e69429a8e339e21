/* SPDX-License-Identifier: MIT */
/*
 * sendslab.c - the in-flight send slab: entries of scatter-gather and
 * zero-copy sends.
 *
 * A slab entry is one logical send of several parts: copied parts gathered
 * into one copy chunk, guarded parts referenced in place. This file owns the
 * entries and nothing else: it allocates them, builds their iovecs and guards
 * from parts, advances the iovecs on partial sends, tells what a completion
 * of RL_OP_SEND_SLAB means, and releases entries and their guards. It is a
 * leaf (it calls only the copy pool and the event sink): the connection's
 * send queue (conn.c) queues an entry like a chunk (one send in flight per
 * connection keeps the bytes in order), prepares its SENDMSG_ZC (guarded) or
 * SENDMSG, and pops it; sendv.c splits a caller's parts into entries.
 *
 * The kernel may still read guarded memory after the operation completed:
 * an operation CQE with IORING_CQE_F_MORE promises one notification CQE
 * (IORING_CQE_F_NOTIF) later, and only an operation CQE with F_MORE does.
 * The entry is released, and each guard handed back as RL_EV_GUARD, only
 * when the queue is done with it (rl__slab_dequeued: no further operation
 * will be submitted for it) and every promised notification has arrived;
 * both CQE kinds carry the entry's generation.
 *
 * Until then the kernel holds the bytes in the socket's send queue, and only
 * the socket can give them back: a notification comes when the peer has
 * taken the bytes, or when the queue is purged (a reset). So the owning
 * connection counts the notifications due (zc_notifs, kept by conn.c from
 * what rl__slab_cqe says) and a graceful close keeps the socket open until
 * they came; a reset close does not wait, its SO_LINGER{1,0} close purges
 * the queue and they follow at once.
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
	if (e->nguards && e->zc_at > 0) {
		double d = w->now - e->zc_at;
		rl_hist_observe(&w->lat.guard_hold, d > 0 ? (uint64_t)(d * 1e9) : 0);
	}
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

/* ---- building an entry from parts ---- */

int rl__slab_guard_fits(const struct rl_slab_entry *e)
{
	return e->niov < RL_SLAB_IOVS && e->nguards < RL_SLAB_GUARDS;
}

void rl__slab_add_guarded(struct rl_worker *w, struct rl_slab_entry *e, const struct rl_part *p)
{
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
}

int rl__slab_copy_fits(const struct rl_slab_entry *e, uint32_t len)
{
	return e->niov < RL_SLAB_IOVS && (!e->copy || e->copy->cap - e->copy->len >= len);
}

int rl__slab_add_copy(struct rl_worker *w, struct rl_slab_entry *e, const void *ptr, uint32_t len)
{
	if (!e->copy && !(e->copy = rl__chunk_get(&w->pool, w->pool.slot_size)))
		return -ENOMEM;
	uint8_t *dst = e->copy->data + e->copy->len;
	memcpy(dst, ptr, len);
	e->copy->len += len;
	/* parts copied back to back are one iovec */
	struct iovec *last = e->niov ? &e->iov[e->niov - 1] : NULL;
	if (last && (uint8_t *)last->iov_base + last->iov_len == dst) {
		last->iov_len += len;
	} else {
		e->iov[e->niov].iov_base = dst;
		e->iov[e->niov].iov_len = len;
		e->niov++;
	}
	return 0;
}

struct rl_chunk *rl__slab_seal(struct rl_worker *w, struct rl_slab_entry *e, uint32_t slot,
			       uint32_t conn_gen)
{
	uint32_t total = 0;
	for (uint32_t i = 0; i < e->niov; i++)
		total += (uint32_t)e->iov[i].iov_len;
	if (total == 0) { /* an empty entry is never sent (a copy chunk failed) */
		e->op_final = 1;
		maybe_release(w, e);
		return NULL;
	}
	e->node.len = total;
	e->queued = 1;
	e->slot = slot; /* its completions are accounted on this connection */
	e->conn_gen = conn_gen;
	return &e->node;
}

/* ---- sending and completing an entry ---- */

struct msghdr *rl__slab_msg(struct rl_slab_entry *e)
{
	e->msg.msg_iov = &e->iov[e->iov_first];
	e->msg.msg_iovlen = (size_t)(e->niov - e->iov_first);
	return &e->msg;
}

int rl__slab_cqe(struct rl_worker *w, const struct io_uring_cqe *cqe, struct rl_slab_entry **ep)
{
	uint32_t idx = rl_ud_index(cqe->user_data);
	struct rl_slab_entry *e = idx < w->slab.count ? &w->slab.e[idx] : NULL;
	if (!e || !e->used || e->gen != rl_ud_gen(cqe->user_data)) {
		w->m.stale_cqes++;
		return RL_SLAB_STALE;
	}
	*ep = e;
	if (cqe->flags & IORING_CQE_F_NOTIF) {
		/* the kernel is done with the guarded memory of one send */
		e->notifs--;
		w->m.zc_notifs++;
		if ((uint32_t)cqe->res & RL_IORING_NOTIF_USAGE_ZC_COPIED)
			w->m.zc_copied++;
		return RL_SLAB_NOTIF;
	}
	if (cqe->res > 0 && e->zc)
		w->m.zc_bytes += (uint64_t)cqe->res;
	if (cqe->flags & IORING_CQE_F_MORE) {
		e->notifs++;
		return RL_SLAB_SENT_MORE;
	}
	return RL_SLAB_SENT;
}

void rl__slab_release(struct rl_worker *w, struct rl_slab_entry *e)
{
	maybe_release(w, e);
}

void rl__slab_dequeued(struct rl_worker *w, struct rl_slab_entry *e)
{
	e->queued = 0;
	e->op_final = 1;
	maybe_release(w, e);
}
