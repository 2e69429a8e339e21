/* SPDX-License-Identifier: MIT */
/*
 * conn_sendfile.c - the completions of a sendfile node at the head of a
 * connection's send queue (RL_OP_SPLICE): the inline node's kick, wait
 * for room and fill (the plain calls are sendfile.c's), and the ring
 * splices' fills and drains. The queue itself is conn.c's: a step ends
 * through rl__conn_send_done as any send does. Nothing calls back here
 * but the worker's completion dispatch.
 */
#include <errno.h>

#include "internal.h"

/* An inline sendfile node's operation completed (the kick, a wait for
 * room, a fill of the pipe from the disk): push what can go now, then wait
 * for room, fill, or end the node. Bytes pushed are accounted as a send's
 * are; the node's operation count carries over to the next step. */
static void sendfile_inline(struct rl_worker *w, struct rl_conn *c, struct rl_chunk *h, int res)
{
	struct rl_sendfile *sf = h->sf;
	uint8_t step = sf->step;
	sf->step = 0;
	if (step == RL_SF_FILL && res > 0) {
		sf->inpipe += (uint32_t)res;
		sf->left -= (uint32_t)res;
		sf->off += res;
	}
	if (c->flags & (RL_CONN_F_SEND_CANCEL | RL_CONN_F_RESET)) {
		rl__conn_send_done(w, c, -ECANCELED);
		return;
	}
	if (step == RL_SF_FILL && res <= 0) {
		rl__conn_send_done(w, c, res == 0 ? -ENODATA : res); /* the file ended early */
		return;
	}
	if (c->rawfd < 0) { /* its install failed: the ring splices it */
		c->flags |= RL_CONN_F_NO_RAWFD;
		sf->inl = 0;
		int err = rl__pipe_get(w, sf->pipe, &sf->pipe_size);
		if (err) {
			rl__conn_send_done(w, c, err);
			return;
		}
		rl__conn_op_done(w, c);
		c->flags &= ~RL_CONN_F_SEND_INFLIGHT;
		rl__conn_send_submit(w, c);
		return;
	}
	if (!(c->flags & RL_CONN_F_RAW_NB)) {
		int err = rl__sendfile_nonblock(c->rawfd);
		if (err) {
			rl__conn_send_done(w, c, err);
			return;
		}
		c->flags |= RL_CONN_F_RAW_NB;
	}
	int stop;
	int n = rl__sendfile_push(c->rawfd, sf, &stop);
	if (n > 0)
		h->off += (uint32_t)n;
	if (stop == -EAGAIN || stop == RL_SF_STOP_FILL) {
		struct io_uring_sqe *sqe = rl__sqe(w);
		int err = 0;
		if (stop == RL_SF_STOP_FILL && sf->pipe[0] < 0)
			err = rl__pipe_get(w, sf->pipe, &sf->pipe_size);
		if (!sqe || err) {
			rl__conn_send_account(w, c, n);
			rl__conn_send_done(w, c, sqe ? err : -EBUSY);
			return;
		}
		if (stop == -EAGAIN)
			rl__sendfile_prep_wait(sqe, c, sf);
		else
			rl__sendfile_prep_fill(w, sqe, sf);
		rl__conn_set_ud(sqe, RL_OP_SPLICE, c);
		rl__conn_send_account(w, c, n);
		rl__conn_maybe_emit_send(w, c);
		return;
	}
	if (stop) { /* an error: what moved before it counts, then the error */
		rl__conn_send_account(w, c, n);
		rl__conn_send_done(w, c, stop);
		return;
	}
	/* all of it went */
	c->sq_head = h->next;
	if (!c->sq_head)
		c->sq_tail = NULL;
	rl__conn_send_done(w, c, n);
	rl__sendfile_free(w, sf);
}

/* RL_OP_SPLICE: a step of the sendfile node at the queue's head. A fill
 * moved file bytes into the pipe (nothing went out: the drain follows at
 * once); a drain sent pipe bytes, accounted as any send. A fill that finds
 * the end of the file before count bytes means the file was truncated
 * while being sent: the send side fails with -ENODATA, since the peer was
 * promised count bytes (a Content-Length) and must not wait for them. */
void rl__conn_on_splice(struct rl_worker *w, struct io_uring_cqe *cqe)
{
	struct rl_conn *c = rl__conn_of_cqe(w, cqe);
	if (!c)
		return;
	int res = cqe->res;
	struct rl_chunk *h = c->sq_head;
	struct rl_sendfile *sf = h->sf;
	if (sf->inl) {
		sendfile_inline(w, c, h, res);
		return;
	}
	if (sf->filling && sf->linked) {
		/* a fill with its drain linked: the drain's completion follows */
		sf->filling = 0;
		if (res > 0) {
			sf->inpipe += (uint32_t)res;
			sf->left -= (uint32_t)res;
			sf->off += res;
		}
		if (res != (int)sf->linked) {
			sf->link_broken = 1; /* its drain comes -ECANCELED */
			sf->fill_res = res;
		}
		rl__conn_op_done(w, c);
		return;
	}
	if (sf->linked) {
		sf->linked = 0;
		if (sf->link_broken) {
			/* the drain of a short fill, cancelled by the kernel: go on
			 * from the fill's result as an unlinked fill would */
			sf->link_broken = 0;
			res = sf->fill_res;
			if (res > 0 && !(c->flags & (RL_CONN_F_SEND_CANCEL | RL_CONN_F_RESET))) {
				rl__conn_op_done(w, c);
				c->flags &= ~RL_CONN_F_SEND_INFLIGHT;
				rl__conn_send_submit(w, c);
				return;
			}
			rl__conn_send_done(w, c, res > 0 ? -ECANCELED : res == 0 ? -ENODATA : res);
			return;
		}
	}
	if (sf->filling) {
		sf->filling = 0;
		if (res > 0 && !(c->flags & (RL_CONN_F_SEND_CANCEL | RL_CONN_F_RESET))) {
			sf->inpipe += (uint32_t)res;
			sf->left -= (uint32_t)res;
			sf->off += res;
			rl__conn_op_done(w, c);
			c->flags &= ~RL_CONN_F_SEND_INFLIGHT;
			rl__conn_send_submit(w, c);
			return;
		}
		if (res > 0) {
			sf->inpipe += (uint32_t)res; /* dropped with the queue: the pipe is dirty */
			res = -ECANCELED;
		} else if (res == 0) {
			res = -ENODATA;
		}
		rl__conn_send_done(w, c, res);
		return;
	}
	struct rl_sendfile *sent = NULL;
	if (res > 0) {
		sf->inpipe -= (uint32_t)res;
		h->off += (uint32_t)res;
		if (h->off == h->len) {
			c->sq_head = h->next;
			if (!c->sq_head)
				c->sq_tail = NULL;
			sent = sf;
		}
	}
	rl__conn_send_done(w, c, res);
	if (sent)
		rl__sendfile_free(w, sent);
}
