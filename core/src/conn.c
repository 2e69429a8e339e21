/* SPDX-License-Identifier: MIT */
/*
 * conn.c - one connection's state machine, driven by completions: receive
 * path, send queue, TLS records and close. The calls callers make are
 * conn_api.c's; the small shared steps are conn_ops.c's, building the
 * send queue (tail room, the TLS sink, a sendfile node's splices) is
 * conn_queue.c's, and a sendfile node's completions are
 * conn_sendfile.c's.
 *
 * Receive: one recv at a time per connection, each completion bringing one
 * buffer from the provided ring; its bytes are appended to the accumulator
 * and the buffer is recycled at once. rl__conn_recv_update() is the single place that
 * decides whether a recv should be armed: it arms one when the connection is
 * open, the window has room and the ring is not dry, and cancels the armed one
 * only when the connection closes. Where the kernel can bound a multishot
 * recv's total (RL_FEAT_RECV_LIMIT, 6.17) the recv is one multishot limited
 * to the window's room at arming: it stays armed across messages (no SQE
 * per message) and ends by itself at the limit. Elsewhere it is single-shot,
 * one buffer per recv. Either way the buffered bytes never exceed the window
 * plus one provided buffer, whatever the kernel holds. (A multishot recv
 * without a limit, cancelled when the window filled, let the kernel deliver
 * every buffer it could take before the cancel landed: a window of 256 KiB
 * held over 500 KB.)
 *
 * Send: a FIFO of chunks with exactly one SEND in flight, always for the head
 * chunk's unsent range, so bytes reach the wire in queue order whatever the
 * kernel does with partial sends. Appends may land in the tail chunk beyond
 * the range the kernel is reading; the next submit covers them. A node may
 * be a slab entry (sendv.c pushes them): this queue still alone submits it
 * (SENDMSG or SENDMSG_ZC), pops or drops it, and then hands it back to the
 * slab (sendslab.c), which never touches the queue.
 *
 * Close: a phase (enum rl_conn_phase) that only moves forward, except that
 * a graceful close made a reset goes back to RESET: (reset: RESET, the send
 * cancelled, the queue dropped, SO_LINGER 0) -> DRAIN, the queue empty ->
 * CANCEL, the recv cancelled and every other op completed -> NOTIFS
 * (graceful: every zero-copy notification in) -> CLOSE, the fixed file's
 * close submitted -> the slot freed on its completion. What the
 * connection's operations are doing, and what its caller asked for, are
 * bits of one flag word (enum rl_conn_flag).
 */
#include <errno.h>
#include <string.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

static void starve(struct rl_worker *w, struct rl_conn *c)
{
	if (c->flags & RL_CONN_F_STARVED)
		return;
	c->flags |= RL_CONN_F_STARVED;
	c->next_starved = w->starved_head;
	w->starved_head = c->slot + 1;
}

static void recv_arm(struct rl_worker *w, struct rl_conn *c)
{
	struct io_uring_sqe *sqe = rl__sqe(w);
	if (!sqe) {
		starve(w, c); /* retried after this batch */
		return;
	}
	if (w->features & RL_FEAT_RECV_LIMIT) {
		/* up to the window's room, then the kernel ends it: what it
		 * brings past the room is less than one buffer. Never more than
		 * recv_window at once, even for a reader waiting for more: once
		 * its want is met the window shrinks back, and an armed recv
		 * cannot be shortened, so what it may still bring stays within
		 * one window. */
		uint64_t room = rl__conn_window(w, c) - c->acc.len;
		if (room > w->cfg.recv_window)
			room = w->cfg.recv_window;
		io_uring_prep_recv_multishot(sqe, (int)c->slot, NULL, 0, 0);
		rl__sqe_set_recv_limit(sqe, (uint32_t)room);
		c->flags |= RL_CONN_F_RECV_MULTI;
	} else {
		/* len 0: one whole provided buffer. When the last recv left the
		 * socket empty, wait for data first rather than try a recv bound
		 * to fail. */
		io_uring_prep_recv(sqe, (int)c->slot, NULL, 0, 0);
		if (c->flags & RL_CONN_F_RECV_IDLE)
			sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
		c->flags &= ~RL_CONN_F_RECV_MULTI;
	}
	sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
	sqe->buf_group = w->bufs.bgid;
	rl__conn_set_ud(sqe, RL_OP_RECV, c);
	c->flags = (c->flags | RL_CONN_F_RECV_ARMED) & ~RL_CONN_F_RECV_PAUSED;
	rl__conn_op_start(w, c);
}

void rl__conn_recv_update(struct rl_worker *w, struct rl_conn *c)
{
	int open = c->io.state == RL_CONN_OPEN && !(c->flags & RL_CONN_F_CONNECTING) &&
		   !c->io.reof && !c->io.rerr;
	int full = c->acc.len >= rl__conn_window(w, c);
	if (open && !full && !(c->flags & (RL_CONN_F_STARVED | RL_CONN_F_RECV_ARMED))) {
		recv_arm(w, c);
	} else if (open && full && !(c->flags & (RL_CONN_F_RECV_ARMED | RL_CONN_F_RECV_PAUSED))) {
		c->flags |= RL_CONN_F_RECV_PAUSED; /* counted once per pause */
		w->m.recv_pauses++;
	} else if (rl__conn_closing(c) && (c->flags & (RL_CONN_F_RECV_ARMED | RL_CONN_F_RECV_CANCEL)) ==
						  RL_CONN_F_RECV_ARMED) {
		c->flags |= RL_CONN_F_RECV_CANCEL;
		rl__conn_cancel_op(w, c, RL_OP_RECV);
	}
}

/* ---- TLS: conn.c drives tls.c, which calls back only through the sink
 * (rl__conn_tls_sink, conn_queue.c) ---- */

/* After the engine ran: send what it queued, unless a send is in flight
 * (its completion sends the rest). */
void rl__conn_tls_flush(struct rl_worker *w, struct rl_conn *c)
{
	if (!(c->flags & (RL_CONN_F_SEND_INFLIGHT | RL_CONN_F_CONNECTING)) && c->sq_head &&
	    !(c->flags & RL_CONN_F_RESET))
		rl__conn_send_submit(w, c);
}

static void tls_timer_cancel(struct rl_worker *w, struct rl_conn *c)
{
	if (c->tls_timer) {
		rl__timers_cancel(&w->tls_timers, (int)(c->tls_timer - 1));
		c->tls_timer = 0;
	}
}

/* The handshake ended without a session: one RL_EV_TLS says so. Receiving
 * ends with it; queued bytes (the engine's alert) still go out on a
 * graceful close. */
void rl__conn_tls_fail(struct rl_worker *w, struct rl_conn *c, int err)
{
	if (!(c->flags & RL_CONN_F_TLS_PENDING))
		return;
	c->flags &= ~RL_CONN_F_TLS_PENDING;
	tls_timer_cancel(w, c);
	w->m.tls_failures++;
	if (!c->io.rerr)
		c->io.rerr = err;
	rl__emit(w, RL_EV_TLS, err, c->slot, c->io.gen, 0);
	rl__conn_maybe_emit_recv(w, c);
}

/* Ciphertext was fed: move the handshake on, or decrypt what it completed
 * into the accumulator. Everything fed is decrypted at once, so plaintext
 * held stays within the window plus one buffer (plus under one record). */
void rl__conn_tls_progress(struct rl_worker *w, struct rl_conn *c)
{
	struct rl_tls *t = c->tls;
	if (!rl__tls_done(t)) {
		if (!(c->flags & RL_CONN_F_TLS_PENDING))
			return; /* failed already */
		int r = rl__tls_handshake(t);
		rl__conn_tls_flush(w, c);
		if (r < 0) {
			rl__conn_tls_fail(w, c, r);
			return;
		}
		if (r == 0)
			return;
		c->flags &= ~RL_CONN_F_TLS_PENDING;
		tls_timer_cancel(w, c);
		w->m.tls_handshakes++;
		rl__emit(w, RL_EV_TLS, 0, c->slot, c->io.gen, 0);
	}
	if (c->io.rerr || c->io.reof)
		return;
	rl__accum_prime(&c->acc, &w->spares, &w->m.accum_bytes);
	int r = rl__tls_read(t, &c->acc, rl__conn_window(w, c) + w->bufs.size, &w->m.accum_bytes);
	rl__accum_shed(&c->acc, &w->spares, &w->m.accum_bytes); /* when it decrypted nothing */
	rl__conn_tls_flush(w, c);
	if (r > 0) {
		c->io.reof = 1;
	} else if (r < 0) {
		/* a record the engine refused (garbage, oversized, a renegotiation
		 * attempt): this connection's receiving ends, counted as a failure */
		c->io.rerr = r;
		w->m.tls_failures++;
	}
	rl__conn_sync_io(c);
}

void rl__conn_tls_deadlines(struct rl_worker *w)
{
	uint32_t slot;
	int id;
	while ((id = rl__timers_pop_due(&w->tls_timers, w->now, &slot)) >= 0) {
		struct rl_conn *c = &w->conns.conns[slot];
		if (c->tls_timer != (uint32_t)id + 1)
			continue; /* a tripwire: a freed slot cancelled its timer */
		c->tls_timer = 0;
		if (c->tls && (c->flags & RL_CONN_F_TLS_PENDING)) {
			rl__tls_set_error(c->tls, "handshake timed out");
			rl__conn_tls_fail(w, c, -ETIMEDOUT);
		}
	}
}

void rl__conn_start(struct rl_worker *w, struct rl_conn *c)
{
	rl__conn_sync_io(c);
	rl__conn_recv_update(w, c);
}

void rl__conn_rearm_starved(struct rl_worker *w)
{
	uint32_t s = w->starved_head;
	w->starved_head = 0;
	while (s) {
		struct rl_conn *c = &w->conns.conns[s - 1];
		s = c->next_starved;
		c->flags &= ~RL_CONN_F_STARVED;
		if (rl__conn_closing(c))
			rl__conn_close_step(w, c);
		else
			rl__conn_recv_update(w, c);
	}
}

void rl__conn_on_recv(struct rl_worker *w, struct io_uring_cqe *cqe)
{
	uint32_t slot = rl_ud_index(cqe->user_data);
	int res = cqe->res;
	uint8_t *buf = NULL;
	uint16_t bid = 0;

	if (cqe->flags & IORING_CQE_F_BUFFER) {
		bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		buf = rl__bufring_addr(&w->bufs, bid);
		w->m.recv_buffers_free--;
	}
	struct rl_conn *c = rl__conntab_get(&w->conns, slot, rl_ud_gen(cqe->user_data));
	if (!c) {
		/* Cannot happen while slots are freed only after their ops
		 * complete; still, never lose the ring buffer. */
		if (buf)
			rl__bufring_recycle(&w->bufs, bid);
		w->m.stale_cqes++;
		return;
	}

	if (res > 0 && c->accepted_at > 0) {
		double d = w->now - c->accepted_at;
		rl_hist_observe(&w->lat.first_byte, d > 0 ? (uint64_t)(d * 1e9) : 0);
		c->accepted_at = 0;
	}
	if (res > 0 && buf && c->tls) {
		/* ciphertext: the engine decrypts it into the accumulator */
		w->m.bytes_in += (uint64_t)res;
		int rc = rl__tls_feed(c->tls, buf, (uint32_t)res);
		if (rc)
			c->io.rerr = rc;
		else
			rl__conn_tls_progress(w, c);
		if ((uint32_t)res < w->bufs.size && !(cqe->flags & IORING_CQE_F_SOCK_NONEMPTY))
			c->flags |= RL_CONN_F_RECV_IDLE;
		else
			c->flags &= ~RL_CONN_F_RECV_IDLE;
	} else if (res > 0) {
		if (buf) {
			/* the most this connection may hold: its window plus one buffer */
			uint64_t hint = rl__conn_window(w, c) + w->bufs.size;
			rl__accum_prime(&c->acc, &w->spares, &w->m.accum_bytes);
			int rc = rl__accum_append(&c->acc, buf, (uint32_t)res, hint,
						  &w->m.accum_bytes);
			if (rc)
				c->io.rerr = rc;
			w->m.bytes_in += (uint64_t)res;
			rl__conn_sync_io(c);
			/* a short read drained the socket: the next recv polls first */
			if ((uint32_t)res < w->bufs.size &&
			    !(cqe->flags & IORING_CQE_F_SOCK_NONEMPTY))
				c->flags |= RL_CONN_F_RECV_IDLE;
			else
				c->flags &= ~RL_CONN_F_RECV_IDLE;
		}
	} else if (res == 0) {
		c->io.reof = 1;
	} else if (res == -ENOBUFS) {
		w->m.recv_enobufs++;
		starve(w, c);
	} else if (res != -ECANCELED) {
		/* The connection failed (the peer reset it): its send side
		 * with it. A writer waiting for something else than this
		 * connection's sends (a slab entry) hears it now, not when
		 * nothing of the connection is in flight to fail. */
		c->io.rerr = res;
		if (!c->io.serr)
			c->io.serr = res;
	}
	if (buf)
		rl__bufring_recycle(&w->bufs, bid);
	if ((c->flags & RL_CONN_F_TLS_PENDING) && (c->io.reof || c->io.rerr)) {
		if (!c->io.rerr)
			rl__tls_set_error(c->tls, "handshake failed: the peer closed the connection");
		rl__conn_tls_fail(w, c, c->io.rerr ? c->io.rerr : -EPROTO);
	}
	rl__conn_maybe_emit_recv(w, c);
	if (res < 0 && c->io.serr == res)
		rl__conn_maybe_emit_send(w, c);

	/* a multishot goes on (its limit not reached); single-shot: every
	 * completion is the recv's last. Then decide the next. */
	if ((c->flags & RL_CONN_F_RECV_MULTI) && (cqe->flags & IORING_CQE_F_MORE))
		return;
	c->flags &= ~(RL_CONN_F_RECV_ARMED | RL_CONN_F_RECV_CANCEL);
	rl__conn_op_done(w, c);
	if (rl__conn_closing(c))
		rl__conn_close_step(w, c);
	else
		rl__conn_recv_update(w, c);
}

/* ---- send queue ---- */

/* An inline sendfile node's first step: a NOP whose completion pushes the
 * bytes (conn_sendfile.c), so the pushing always runs where completions
 * run and the queue's bookkeeping stays in one place (rl__conn_send_done). A
 * connection with no plain descriptor gets one first: the install goes
 * linked before the NOP, and a failed install leaves the node to the ring
 * splices. */
static void sendfile_kick(struct rl_worker *w, struct rl_conn *c, struct io_uring_sqe *sqe,
			  struct rl_sendfile *sf)
{
	if (c->rawfd < 0 && !(c->flags & RL_CONN_F_FD_PENDING)) {
		struct io_uring_sqe *nop = io_uring_sq_space_left(&w->ring) ? io_uring_get_sqe(&w->ring) : NULL;
		if (nop) {
			io_uring_prep_rw(RL_IORING_OP_FIXED_FD_INSTALL, sqe, (int)c->slot, NULL, 0, 0);
			sqe->flags |= IOSQE_FIXED_FILE | IOSQE_IO_LINK;
			rl__conn_set_ud(sqe, RL_OP_FD_INSTALL, c);
			c->flags |= RL_CONN_F_FD_PENDING;
			rl__conn_op_start(w, c);
			sqe = nop;
		}
	}
	io_uring_prep_nop(sqe);
	rl__conn_set_ud(sqe, RL_OP_SPLICE, c);
	sf->step = RL_SF_KICK;
}

void rl__conn_send_submit(struct rl_worker *w, struct rl_conn *c)
{
	struct rl_chunk *h = c->sq_head;
	struct rl_slab_entry *e = h->zc;
	struct io_uring_sqe *sqe = rl__sqe(w);
	if (!sqe) {
		c->io.serr = -EBUSY; /* reported, never silently dropped */
		return;
	}
	if (h->sf) {
		if (h->sf->inl)
			sendfile_kick(w, c, sqe, h->sf);
		else
			rl__conn_splice_prep(w, sqe, c, h->sf);
		c->flags |= RL_CONN_F_SEND_INFLIGHT;
		rl__conn_op_start(w, c);
		return;
	}
	if (e && e->zc) { /* guarded parts: sent in place, released on notification */
		io_uring_prep_sendmsg_zc(sqe, (int)c->slot, rl__slab_msg(e), MSG_NOSIGNAL);
		if (e->zc_at == 0)
			e->zc_at = w->now;   /* guard hold time starts at the first submission */
		if (w->features & RL_FEAT_ZC_REPORT_USAGE)
			sqe->ioprio |= RL_IORING_SEND_ZC_REPORT_USAGE;
		w->m.zc_sends++;
	} else if (e) {
		io_uring_prep_sendmsg(sqe, (int)c->slot, rl__slab_msg(e), MSG_NOSIGNAL | MSG_WAITALL);
	} else {
		/* MSG_WAITALL: the kernel retries a short send in place, one CQE.
		 * MSG_MORE before a sendfile: a response's head leaves with the
		 * first bytes of its body, not in a packet of its own. */
		io_uring_prep_send(sqe, (int)c->slot, h->data + h->off, h->len - h->off,
				   MSG_NOSIGNAL | MSG_WAITALL |
					   (h->next && h->next->sf ? MSG_MORE : 0));
	}
	sqe->flags |= IOSQE_FIXED_FILE;
	if (e) /* a slab entry's completions name the entry (its notifications too) */
		io_uring_sqe_set_data64(sqe, rl_ud_pack(RL_OP_SEND_SLAB, e->index, e->gen));
	else
		rl__conn_set_ud(sqe, RL_OP_SEND, c);
	c->flags |= RL_CONN_F_SEND_INFLIGHT;
	rl__conn_op_start(w, c);
}

static void drop_queue(struct rl_worker *w, struct rl_conn *c)
{
	struct rl_chunk *ch = c->sq_head;
	while (ch) {
		struct rl_chunk *next = ch->next;
		if (ch->zc)
			rl__slab_dequeued(w, ch->zc); /* released now or on its notifications */
		else if (ch->sf)
			rl__sendfile_free(w, ch->sf);
		else
			rl__chunk_put(&w->pool, ch);
		ch = next;
	}
	c->sq_head = c->sq_tail = NULL;
	w->m.send_bytes_queued -= c->io.unsent;
	c->io.unsent = 0;
}

void rl__conn_shutdown_submit(struct rl_worker *w, struct rl_conn *c)
{
	struct io_uring_sqe *sqe = rl__sqe(w);
	c->flags &= ~RL_CONN_F_SHUT_PENDING;
	if (!sqe)
		return;
	io_uring_prep_shutdown(sqe, (int)c->slot, SHUT_WR);
	sqe->flags |= IOSQE_FIXED_FILE;
	rl__conn_set_ud(sqe, RL_OP_SHUTDOWN, c);
	c->flags |= RL_CONN_F_SHUT_INFLIGHT;
	rl__conn_op_start(w, c);
}

void rl__conn_enqueue(struct rl_worker *w, struct rl_conn *c, struct rl_chunk *node)
{
	node->next = NULL;
	if (c->sq_tail)
		c->sq_tail->next = node;
	else
		c->sq_head = node;
	c->sq_tail = node;
	c->io.unsent += node->len - node->off;
	w->m.send_bytes_queued += node->len - node->off;
	if (!(c->flags & (RL_CONN_F_SEND_INFLIGHT | RL_CONN_F_CONNECTING)))
		rl__conn_send_submit(w, c);
}

/* Bytes the peer's socket took (n > 0): the queue's and the worker's
 * counters, and the close's progress. */
void rl__conn_send_account(struct rl_worker *w, struct rl_conn *c, int n)
{
	if (n <= 0)
		return;
	c->close_progress = w->now;
	c->io.unsent -= (uint32_t)n;
	w->m.send_bytes_queued -= (uint64_t)n;
	w->m.bytes_out += (uint64_t)n;
}

/* After the head's operation completed (its node already advanced or
 * removed by the caller): account, then decide what the queue does next. */
void rl__conn_send_done(struct rl_worker *w, struct rl_conn *c, int res)
{
	rl__conn_op_done(w, c);
	c->flags &= ~RL_CONN_F_SEND_INFLIGHT;
	if (res > 0)
		rl__conn_send_account(w, c, res);
	else if (res == 0 || (res != -EAGAIN && res != -EINTR && res != -ECANCELED))
		c->io.serr = res ? res : -EPIPE;
	if ((c->flags & RL_CONN_F_SEND_CANCEL) || c->io.serr) {
		c->flags &= ~RL_CONN_F_SEND_CANCEL;
		drop_queue(w, c);
	}
	if (c->sq_head && !(c->flags & RL_CONN_F_RESET))
		rl__conn_send_submit(w, c);
	rl__conn_maybe_emit_send(w, c);
	if (!c->sq_head && (c->flags & (RL_CONN_F_SEND_INFLIGHT | RL_CONN_F_SHUT_PENDING)) ==
				   RL_CONN_F_SHUT_PENDING && !rl__conn_closing(c))
		rl__conn_shutdown_submit(w, c);
	if (rl__conn_closing(c))
		rl__conn_close_step(w, c);
}

/* An RL_OP_SEND_SLAB completion, as the slab reads it: the connection whose
 * queue head's operation it ends, or NULL when the queue has nothing to do
 * (stale, or a notification: the entry may be released, and a graceful
 * close may have waited for it). */
static struct rl_conn *slab_send_conn(struct rl_worker *w, const struct io_uring_cqe *cqe)
{
	struct rl_slab_entry *e;
	switch (rl__slab_cqe(w, cqe, &e)) {
	case RL_SLAB_NOTIF: {
		/* A reset close does not wait for notifications, so the
		 * connection may be gone (or its slot reused) by now. */
		struct rl_conn *owner = rl__conntab_get(&w->conns, e->slot, e->conn_gen);
		rl__slab_release(w, e); /* if that was all it waited for */
		if (owner && owner->zc_notifs) {
			owner->zc_notifs--;
			owner->close_progress = w->now; /* the peer took bytes */
			if (rl__conn_closing(owner))
				rl__conn_close_step(w, owner);
		}
		return NULL;
	}
	case RL_SLAB_SENT_MORE:
		/* the connection cannot be gone: its send holds an op count */
		w->conns.conns[e->slot].zc_notifs++;
		return &w->conns.conns[e->slot];
	case RL_SLAB_SENT:
		return &w->conns.conns[e->slot];
	default:
		return NULL;
	}
}

/* RL_OP_SEND (a chunk) and RL_OP_SEND_SLAB (a slab entry) completions: the
 * operation of the queue's head. The queue alone pops its nodes; an entry it
 * popped is no longer reachable from the queue, so nothing rl__conn_send_done does
 * (drop_queue on an error, a reset) can release it under us: it is handed
 * back to the slab after, keeping the old event order (RL_EV_SEND before
 * its guards' RL_EV_GUARD). */
void rl__conn_on_send(struct rl_worker *w, struct io_uring_cqe *cqe)
{
	struct rl_conn *c = rl_ud_op(cqe->user_data) == RL_OP_SEND_SLAB ? slab_send_conn(w, cqe)
									 : rl__conn_of_cqe(w, cqe);
	if (!c)
		return;
	int res = cqe->res;
	struct rl_chunk *h = c->sq_head;
	struct rl_slab_entry *sent = NULL;
	if (res > 0) {
		h->off += (uint32_t)res;
		if (h->off == h->len) {
			c->sq_head = h->next;
			if (!c->sq_head)
				c->sq_tail = NULL;
			if (h->zc)
				sent = h->zc;
			else
				rl__chunk_put(&w->pool, h);
		} else if (h->zc) {
			rl__slab_advance(h->zc, (uint32_t)res); /* resubmitted from here */
		}
	}
	rl__conn_send_done(w, c, res);
	if (sent)
		rl__slab_dequeued(w, sent);
}

/* ---- close ---- */

/* A graceful close waits for the peer to take what is queued. A peer that
 * never reads must not hold the queue, and the send slab entries in it,
 * forever (a few hundred such peers would leave no entry for anyone's
 * zero-copy send): close_timeout without send progress turns the close
 * into a reset, whose SO_LINGER 0 close purges the socket's queue, and the
 * zero-copy notifications then arrive. The deadline is checked lazily:
 * when it passes, a close that moved since is given another period.
 * Returns 0 when the close may wait, else it was made a reset (no memory
 * for a deadline: bounded all the same) and must step again. */
static int close_wait(struct rl_worker *w, struct rl_conn *c)
{
	if (c->close_timer || (c->flags & RL_CONN_F_RESET))
		return 0;
	int id = rl__timers_add(&w->close_timers,
				c->close_progress + w->cfg.close_timeout / 1000.0, c->slot);
	if (id >= 0) {
		c->close_timer = (uint32_t)id + 1;
		return 0;
	}
	c->flags |= RL_CONN_F_RESET;
	c->phase = RL_PHASE_RESET;
	return -1;
}

void rl__conn_close_deadlines(struct rl_worker *w)
{
	uint32_t slot;
	int id;
	while ((id = rl__timers_pop_due(&w->close_timers, w->now, &slot)) >= 0) {
		struct rl_conn *c = &w->conns.conns[slot];
		if (c->close_timer != (uint32_t)id + 1)
			continue; /* a tripwire: a freed slot cancelled its timer */
		c->close_timer = 0;
		if (!rl__conn_closing(c) || (c->flags & RL_CONN_F_RESET) ||
		    c->phase == RL_PHASE_CLOSE)
			continue;
		if (c->close_progress + w->cfg.close_timeout / 1000.0 > w->now) {
			close_wait(w, c); /* it moved: another period */
			continue;
		}
		w->m.close_resets++;
		rl__conn_begin_close(w, c, RL_CLOSE_RESET, c->close_res);
	}
}

/* RL_PHASE_RESET's work; 0 when done, else the descriptor install (for
 * SO_LINGER) is in flight. */
static int reset_step(struct rl_worker *w, struct rl_conn *c)
{
	if (c->flags & RL_CONN_F_SEND_INFLIGHT) {
		if (!(c->flags & RL_CONN_F_SEND_CANCEL)) {
			c->flags |= RL_CONN_F_SEND_CANCEL; /* its completion drops the queue */
			/* a slab send carries its entry's user_data, not the conn's */
			struct rl_slab_entry *e = c->sq_head ? c->sq_head->zc : NULL;
			if (e)
				rl__conn_cancel_ud(w, c, rl_ud_pack(RL_OP_SEND_SLAB, e->index, e->gen));
			else if (c->sq_head && c->sq_head->sf)
				rl__conn_cancel_op(w, c, RL_OP_SPLICE);
			else
				rl__conn_cancel_op(w, c, RL_OP_SEND);
		}
	} else {
		drop_queue(w, c);
	}
	/* An RST needs SO_LINGER{1,0}, which needs a plain descriptor. */
	if (c->rawfd < 0 && (w->features & RL_FEAT_FD_INSTALL) &&
	    !(c->flags & (RL_CONN_F_FD_PENDING | RL_CONN_F_CONNECTING | RL_CONN_F_LINGER_TRIED))) {
		c->flags |= RL_CONN_F_LINGER_TRIED;
		rl__conn_fd_install_submit(w, c);
	}
	if (c->flags & RL_CONN_F_FD_PENDING)
		return -1;
	if (c->rawfd >= 0) {
		struct linger lg = { .l_onoff = 1, .l_linger = 0 };
		setsockopt(c->rawfd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	}
	return 0;
}

/* Take the close as far as it can go now; every completion of a closing
 * connection calls it again. Each phase falls through to the next once its
 * condition holds. */
void rl__conn_close_step(struct rl_worker *w, struct rl_conn *c)
{
	if (c->flags & RL_CONN_F_STARVED)
		return; /* the re-arm list steps it */
	switch ((enum rl_conn_phase)c->phase) {
	case RL_PHASE_OPEN:
	case RL_PHASE_CLOSE:
		return;
	case RL_PHASE_RESET:
		if (reset_step(w, c))
			return;
		c->phase = RL_PHASE_DRAIN;
		/* fallthrough */
	case RL_PHASE_DRAIN:
		if (c->io.serr && !(c->flags & RL_CONN_F_SEND_INFLIGHT))
			drop_queue(w, c); /* it cannot be sent */
		if ((c->flags & RL_CONN_F_SEND_INFLIGHT) || c->sq_head) {
			if (close_wait(w, c)) /* a reset never waits here */
				rl__conn_close_step(w, c);
			return;
		}
		c->phase = RL_PHASE_CANCEL;
		/* fallthrough */
	case RL_PHASE_CANCEL:
		if (c->flags & RL_CONN_F_RECV_ARMED) {
			if (!(c->flags & RL_CONN_F_RECV_CANCEL)) {
				c->flags |= RL_CONN_F_RECV_CANCEL;
				rl__conn_cancel_op(w, c, RL_OP_RECV);
			}
			return;
		}
		if ((c->flags & (RL_CONN_F_CONNECTING | RL_CONN_F_CONNECT_CANCEL)) ==
		    RL_CONN_F_CONNECTING) {
			c->flags |= RL_CONN_F_CONNECT_CANCEL;
			rl__conn_cancel_op(w, c, RL_OP_CONNECT);
		}
		if (c->ops)
			return;
		c->phase = RL_PHASE_NOTIFS;
		/* fallthrough */
	case RL_PHASE_NOTIFS: {
		/* Zero-copy bytes still in the socket's send queue: a graceful
		 * close waits until the kernel gave them back (the peer took
		 * them). Closing now would leave them to an orphaned socket
		 * nobody can reset, whose notifications come whenever that peer
		 * reads - or never. A reset purges the queue instead, and the
		 * notifications follow the close. */
		if (c->zc_notifs && !(c->flags & RL_CONN_F_RESET)) {
			if (close_wait(w, c))
				rl__conn_close_step(w, c);
			return;
		}
		if (c->rawfd >= 0) {
			close(c->rawfd); /* the fixed entry still holds the socket */
			c->rawfd = -1;
		}
		struct io_uring_sqe *sqe = rl__sqe(w);
		if (!sqe)
			return; /* retried by the next completion or teardown */
		io_uring_prep_close_direct(sqe, c->slot);
		rl__conn_set_ud(sqe, RL_OP_CLOSE, c);
		c->phase = RL_PHASE_CLOSE;
		rl__conn_op_start(w, c);
		return;
	}
	}
}

int rl__conn_begin_close(struct rl_worker *w, struct rl_conn *c, int how, int32_t reason)
{
	if (!rl__conn_closing(c)) {
		c->io.state = RL_CONN_CLOSING;
		c->phase = RL_PHASE_DRAIN;
		c->close_res = reason;
		c->close_progress = w->now;
		c->flags &= ~RL_CONN_F_SHUT_PENDING;
	}
	/* a reset, or a graceful close made one: from its first phase */
	if (how == RL_CLOSE_RESET && !(c->flags & RL_CONN_F_RESET) && c->phase != RL_PHASE_CLOSE) {
		c->flags |= RL_CONN_F_RESET;
		c->phase = RL_PHASE_RESET;
	}
	rl__conn_close_step(w, c);
	return 0;
}

void rl__conn_on_close(struct rl_worker *w, struct io_uring_cqe *cqe)
{
	struct rl_conn *c = rl__conn_of_cqe(w, cqe);
	if (!c)
		return;
	rl__conn_op_done(w, c);
	if (c->close_timer)
		rl__timers_cancel(&w->close_timers, (int)(c->close_timer - 1));
	tls_timer_cancel(w, c);
	rl__tls_free(c->tls);
	uint32_t gen = c->io.gen;
	int silent = (c->flags & RL_CONN_F_SILENT) != 0;
	int32_t reason = c->close_res;
	c->acc.len = 0; /* its unconsumed bytes die with it; the buffer may serve another */
	rl__accum_shed(&c->acc, &w->spares, &w->m.accum_bytes);
	rl__conntab_free(&w->conns, c);
	w->m.conns_closed++;
	if (!silent)
		rl__emit(w, RL_EV_CLOSED, reason, c->slot, gen, 0);
}

/* Completions that only finish a step: cancel, shutdown, fd install, probe. */
void rl__conn_on_simple(struct rl_worker *w, struct io_uring_cqe *cqe)
{
	struct rl_conn *c = rl__conn_of_cqe(w, cqe);
	if (!c)
		return;
	rl__conn_op_done(w, c);
	switch (rl_ud_op(cqe->user_data)) {
	case RL_OP_SHUTDOWN:
		c->flags &= ~RL_CONN_F_SHUT_INFLIGHT;
		break;
	case RL_OP_PROBE:
		c->flags &= ~RL_CONN_F_PROBE_INFLIGHT;
		/* > 0: bytes wait (the receive path brings them); 0 (the peer
		 * ended its side) and -EAGAIN (nothing there): none */
		rl__emit(w, RL_EV_PENDING,
			 cqe->res > 0 ? 1 : (cqe->res == 0 || cqe->res == -EAGAIN) ? 0 : cqe->res,
			 c->slot, c->io.gen, 0);
		break;
	case RL_OP_FD_INSTALL:
		c->flags &= ~RL_CONN_F_FD_PENDING;
		if (cqe->res >= 0) {
			if (c->rawfd >= 0)
				close(cqe->res); /* never overwrite (and leak) one we hold */
			else
				c->rawfd = cqe->res;
		}
		if (c->flags & RL_CONN_F_WANT_FD) {
			c->flags &= ~RL_CONN_F_WANT_FD;
			rl__emit(w, RL_EV_FD, cqe->res >= 0 ? c->rawfd : cqe->res, c->slot, c->io.gen, 0);
		}
		break;
	default:
		break;
	}
	if (rl__conn_closing(c))
		rl__conn_close_step(w, c);
}
