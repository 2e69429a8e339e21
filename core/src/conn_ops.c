/* SPDX-License-Identifier: MIT */
/*
 * conn_ops.c - the small steps every part of a connection uses: counting
 * its operations in flight, finding it from a completion or a caller's
 * (slot, gen), tagging its SQEs, mirroring the accumulator into the
 * caller's view, the receive window, cancelling one of its operations,
 * the caller's wake-up events and the request for a plain descriptor. A leaf: conn.c, conn_queue.c and conn_api.c call it, it
 * calls none of them.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* Every SQE of a connection is counted until its completion: a slot is
 * closed only once nothing of it is left in the kernel. */
void rl__conn_op_start(struct rl_worker *w, struct rl_conn *c)
{
	c->ops++;
	w->m.ops_inflight++;
}

void rl__conn_op_done(struct rl_worker *w, struct rl_conn *c)
{
	c->ops--;
	w->m.ops_inflight--;
}

struct rl_conn *rl__conn_of_cqe(struct rl_worker *w, const struct io_uring_cqe *cqe)
{
	struct rl_conn *c = rl__conntab_get(&w->conns, rl_ud_index(cqe->user_data),
					    rl_ud_gen(cqe->user_data));
	if (!c)
		w->m.stale_cqes++; /* a tripwire: the close ordering makes it impossible */
	return c;
}

struct rl_conn *rl__conn_sendable(struct rl_worker *w, uint32_t slot, uint32_t gen, int *err)
{
	struct rl_conn *c = rl__conntab_get(&w->conns, slot, gen);
	if (!c)
		*err = -ESTALE;
	else if (c->io.serr)
		*err = c->io.serr;
	else if (rl__conn_closing(c) ||
		 (c->flags & (RL_CONN_F_SHUT_PENDING | RL_CONN_F_SHUT_INFLIGHT)))
		*err = -EPIPE;
	else
		return c;
	return NULL;
}

void rl__conn_set_ud(struct io_uring_sqe *sqe, enum rl_op op, const struct rl_conn *c)
{
	io_uring_sqe_set_data64(sqe, rl_ud_pack(op, c->slot, c->io.gen));
}

void rl__conn_sync_io(struct rl_conn *c)
{
	c->io.rdata = c->acc.buf ? c->acc.buf + c->acc.off : NULL;
	c->io.rlen = c->acc.len;
}

/* Unconsumed bytes at which receiving pauses: recv_window, or what the
 * reader is waiting for when that is more. */
uint64_t rl__conn_window(const struct rl_worker *w, const struct rl_conn *c)
{
	uint64_t win = w->cfg.recv_window;
	if ((c->flags & RL_CONN_F_WANT_RECV) && c->want_recv_min > win)
		win = c->want_recv_min;
	return win;
}

void rl__conn_cancel_ud(struct rl_worker *w, struct rl_conn *c, uint64_t target)
{
	struct io_uring_sqe *sqe = rl__sqe(w);
	if (!sqe)
		return; /* the op completes on its own or at teardown */
	io_uring_prep_cancel64(sqe, target, 0);
	rl__conn_set_ud(sqe, RL_OP_CANCEL, c);
	rl__conn_op_start(w, c);
}

void rl__conn_cancel_op(struct rl_worker *w, struct rl_conn *c, enum rl_op target)
{
	rl__conn_cancel_ud(w, c, rl_ud_pack(target, c->slot, c->io.gen));
}

/* The caller's wake-ups: RL_EV_RECV once the bytes it wants are buffered
 * (or the stream ended), RL_EV_SEND once the unsent bytes fell to its
 * threshold (or the send side failed). */
void rl__conn_maybe_emit_recv(struct rl_worker *w, struct rl_conn *c)
{
	if ((c->flags & RL_CONN_F_WANT_RECV) &&
	    (c->acc.len >= c->want_recv_min || c->io.reof || c->io.rerr)) {
		c->flags &= ~RL_CONN_F_WANT_RECV;
		rl__emit(w, RL_EV_RECV, c->io.rerr, c->slot, c->io.gen, c->acc.len);
	}
}

void rl__conn_maybe_emit_send(struct rl_worker *w, struct rl_conn *c)
{
	if ((c->flags & RL_CONN_F_WANT_SEND) &&
	    (c->io.serr || (!(c->flags & RL_CONN_F_WANT_SEND_ERR) && c->io.unsent <= c->want_send_thresh))) {
		c->flags &= ~(RL_CONN_F_WANT_SEND | RL_CONN_F_WANT_SEND_ERR);
		rl__emit(w, RL_EV_SEND, c->io.serr, c->slot, c->io.gen, c->io.unsent);
	}
}

/* Ask the kernel for a plain descriptor of the connection (conn:fd). */
void rl__conn_fd_install_submit(struct rl_worker *w, struct rl_conn *c)
{
	struct io_uring_sqe *sqe = rl__sqe(w);
	if (!sqe)
		return;
	io_uring_prep_rw(RL_IORING_OP_FIXED_FD_INSTALL, sqe, (int)c->slot, NULL, 0, 0);
	sqe->flags |= IOSQE_FIXED_FILE;
	rl__conn_set_ud(sqe, RL_OP_FD_INSTALL, c);
	c->flags |= RL_CONN_F_FD_PENDING;
	rl__conn_op_start(w, c);
}
