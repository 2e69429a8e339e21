/* SPDX-License-Identifier: MIT */
/*
 * conn_api.c - what callers ask of a connection (the public rl_conn_*
 * calls: consume, want_recv/want_send, send, shutdown, probe, close, fd,
 * TLS start/session/info). Each checks the (slot, gen) and its arguments,
 * changes the connection's state and leaves the kernel side to conn.c, the
 * state machine driven by completions; conn.c never calls back here.
 */
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

/* ---- public connection API ---- */

const struct rl_conn_io *rl_conn_io(struct rl_worker *w, uint32_t slot)
{
	if (slot >= w->conns.count)
		return NULL;
	return &w->conns.conns[slot].io;
}

int rl_conn_consume(struct rl_worker *w, uint32_t slot, uint32_t gen, uint32_t n)
{
	struct rl_conn *c = rl__conntab_get(&w->conns, slot, gen);
	if (!c)
		return -ESTALE;
	if (n > c->acc.len)
		return -EINVAL;
	rl__accum_consume(&c->acc, n, &w->m.accum_bytes);
	/* all consumed: the buffer goes back to the worker, so an idle
	 * connection holds none */
	rl__accum_shed(&c->acc, &w->spares, &w->m.accum_bytes);
	rl__conn_sync_io(c);
	if (!rl__conn_closing(c))
		rl__conn_recv_update(w, c);
	return 0;
}

int rl_conn_want_recv(struct rl_worker *w, uint32_t slot, uint32_t gen, uint32_t min_bytes)
{
	struct rl_conn *c = rl__conntab_get(&w->conns, slot, gen);
	if (!c)
		return -ESTALE;
	if (c->acc.len >= min_bytes || c->io.reof || c->io.rerr)
		return 1;
	/* the window then allows min_bytes plus one buffer: more than the
	 * accumulator can ever hold is refused here, not failed on arrival */
	if ((uint64_t)min_bytes + w->bufs.size > RL_ACCUM_MAX_LEN)
		return -EMSGSIZE;
	c->flags |= RL_CONN_F_WANT_RECV;
	c->want_recv_min = min_bytes;
	if (!rl__conn_closing(c))
		rl__conn_recv_update(w, c);
	return 0;
}

/* Plaintext through the engine, whose records go onto the queue as it
 * makes them (rl__conn_tls_sink). */
static int tls_send(struct rl_worker *w, struct rl_conn *c, const void *data, size_t len)
{
	if (!rl__tls_done(c->tls))
		return c->io.rerr && !(c->flags & RL_CONN_F_TLS_PENDING) ? -EPROTO : -ENOTCONN;
	int rc = rl__tls_write(c->tls, data, len);
	rl__conn_tls_flush(w, c);
	return rc;
}

int rl_conn_send(struct rl_worker *w, uint32_t slot, uint32_t gen, const void *data, size_t len)
{
	int err;
	struct rl_conn *c = rl__conn_sendable(w, slot, gen, &err);
	if (!c)
		return err;
	if (len > (size_t)(UINT32_MAX - c->io.unsent))
		return -ENOBUFS;
	if (c->tls)
		return tls_send(w, c, data, len);
	const uint8_t *p = data;
	size_t left = len;
	int rc = 0;
	while (left) {
		struct rl_chunk *t = rl__conn_tail_room(w, c, left);
		if (!t) {
			rc = -ENOMEM; /* what was copied goes out all the same */
			break;
		}
		uint32_t n = t->cap - t->len;
		if (n > left)
			n = (uint32_t)left;
		memcpy(t->data + t->len, p, n);
		t->len += n;
		p += n;
		left -= n;
		/* account as we go so an ENOMEM above leaves counters true */
		c->io.unsent += n;
		w->m.send_bytes_queued += n;
	}
	if (!(c->flags & (RL_CONN_F_SEND_INFLIGHT | RL_CONN_F_CONNECTING)) && c->sq_head)
		rl__conn_send_submit(w, c);
	return rc;
}

int rl_conn_want_send(struct rl_worker *w, uint32_t slot, uint32_t gen, uint32_t threshold)
{
	struct rl_conn *c = rl__conntab_get(&w->conns, slot, gen);
	if (!c)
		return -ESTALE;
	if (c->io.unsent <= threshold || c->io.serr)
		return 1;
	c->flags |= RL_CONN_F_WANT_SEND;
	c->flags &= ~RL_CONN_F_WANT_SEND_ERR; /* a threshold fires on an error too */
	c->want_send_thresh = threshold;
	return 0;
}

int rl_conn_want_send_error(struct rl_worker *w, uint32_t slot, uint32_t gen)
{
	struct rl_conn *c = rl__conntab_get(&w->conns, slot, gen);
	if (!c)
		return -ESTALE;
	if (c->io.serr)
		return 1;
	if (!(c->flags & RL_CONN_F_WANT_SEND)) {
		c->flags |= RL_CONN_F_WANT_SEND | RL_CONN_F_WANT_SEND_ERR;
	}
	return 0;
}

int rl_conn_shutdown(struct rl_worker *w, uint32_t slot, uint32_t gen)
{
	struct rl_conn *c = rl__conntab_get(&w->conns, slot, gen);
	if (!c)
		return -ESTALE;
	if (rl__conn_closing(c))
		return -EPIPE;
	if (c->flags & (RL_CONN_F_SHUT_PENDING | RL_CONN_F_SHUT_INFLIGHT))
		return 0;
	if (c->tls && rl__tls_done(c->tls) && !c->io.serr) {
		rl__tls_close_notify(c->tls); /* before the FIN: a clean end, not a truncation */
		rl__conn_tls_flush(w, c);
	}
	c->flags |= RL_CONN_F_SHUT_PENDING;
	if (!(c->flags & (RL_CONN_F_SEND_INFLIGHT | RL_CONN_F_CONNECTING)) && !c->sq_head)
		rl__conn_shutdown_submit(w, c);
	return 0;
}

/* A graceful stop serves what has arrived, and only that: a peek that does
 * not wait (MSG_DONTWAIT makes io_uring complete it with -EAGAIN instead of
 * arming a poll) tells whether the socket holds unread bytes. Its answer
 * follows every completion already posted, so bytes a receive took before
 * it are in the accumulator by then. */
int rl_conn_probe(struct rl_worker *w, uint32_t slot, uint32_t gen)
{
	struct rl_conn *c = rl__conntab_get(&w->conns, slot, gen);
	if (!c)
		return -ESTALE;
	if (rl__conn_closing(c))
		return -EPIPE;
	if (c->flags & RL_CONN_F_CONNECTING)
		return -ENOTCONN;
	if (c->flags & RL_CONN_F_PROBE_INFLIGHT)
		return 0; /* its answer serves this call too */
	struct io_uring_sqe *sqe = rl__sqe(w);
	if (!sqe)
		return -EBUSY;
	io_uring_prep_recv(sqe, (int)c->slot, &w->probe_byte, 1, MSG_PEEK | MSG_DONTWAIT);
	sqe->flags |= IOSQE_FIXED_FILE;
	rl__conn_set_ud(sqe, RL_OP_PROBE, c);
	c->flags |= RL_CONN_F_PROBE_INFLIGHT;
	rl__conn_op_start(w, c);
	return 0;
}

int rl_conn_close(struct rl_worker *w, uint32_t slot, uint32_t gen, int how)
{
	struct rl_conn *c = rl__conntab_get(&w->conns, slot, gen);
	if (!c)
		return -ESTALE;
	if (how != RL_CLOSE_GRACEFUL && how != RL_CLOSE_RESET)
		return -EINVAL;
	if (how == RL_CLOSE_GRACEFUL && c->tls && rl__tls_done(c->tls) && !c->io.serr &&
	    !rl__conn_closing(c) && !(c->flags & (RL_CONN_F_SHUT_PENDING | RL_CONN_F_SHUT_INFLIGHT))) {
		rl__tls_close_notify(c->tls);
		rl__conn_tls_flush(w, c);
	}
	return rl__conn_begin_close(w, c, how, 0);
}

int rl_conn_fd(struct rl_worker *w, uint32_t slot, uint32_t gen)
{
	struct rl_conn *c = rl__conntab_get(&w->conns, slot, gen);
	if (!c)
		return -ESTALE;
	if (c->rawfd >= 0)
		return c->rawfd;
	if (!(w->features & RL_FEAT_FD_INSTALL))
		return -EOPNOTSUPP;
	if (rl__conn_closing(c))
		return -EPIPE;
	if (!(c->flags & RL_CONN_F_FD_PENDING))
		rl__conn_fd_install_submit(w, c);
	c->flags |= RL_CONN_F_WANT_FD;
	return -EAGAIN;
}

/* ---- TLS ---- */

int rl_conn_tls_start(struct rl_worker *w, uint32_t slot, uint32_t gen, struct rl_tls_ctx *ctx,
		      const char *server_name, struct rl_tls_session *session)
{
	struct rl_conn *c = rl__conntab_get(&w->conns, slot, gen);
	if (!c)
		return -ESTALE;
	if (!ctx)
		return -EINVAL;
	if (rl__conn_closing(c) || c->io.serr)
		return -EPIPE;
	if (c->flags & RL_CONN_F_CONNECTING)
		return -ENOTCONN;
	if (c->tls)
		return -EALREADY;
	int rc = rl__tls_new(ctx, server_name, session, rl__conn_tls_sink, w, c, &c->tls);
	if (rc)
		return rc;
	uint32_t ms = rl__tls_ctx_handshake_ms(ctx, w->cfg.tls_handshake_timeout);
	int id = rl__timers_add(&w->tls_timers, w->now + ms / 1000.0, c->slot);
	if (id < 0) {
		rl__tls_free(c->tls);
		c->tls = NULL;
		return -ENOMEM;
	}
	c->tls_timer = (uint32_t)id + 1;
	c->flags |= RL_CONN_F_TLS_PENDING;
	/* bytes received and not consumed are the peer's first ciphertext */
	if (c->acc.len) {
		rc = rl__tls_feed(c->tls, c->acc.buf + c->acc.off, c->acc.len);
		rl__accum_consume(&c->acc, c->acc.len, &w->m.accum_bytes);
		rl__accum_shed(&c->acc, &w->spares, &w->m.accum_bytes);
		rl__conn_sync_io(c);
		if (rc)
			c->io.rerr = rc;
	}
	if (c->io.rerr || c->io.reof) {
		rl__tls_set_error(c->tls, "handshake failed: the connection ended");
		rl__conn_tls_fail(w, c, c->io.rerr ? c->io.rerr : -EPROTO);
		return 0;
	}
	rl__conn_tls_progress(w, c); /* a client's hello goes out now */
	rl__conn_recv_update(w, c);
	return 0;
}

int rl_conn_tls_session(struct rl_worker *w, uint32_t slot, uint32_t gen,
			struct rl_tls_session **out)
{
	struct rl_conn *c = rl__conntab_get(&w->conns, slot, gen);
	if (!c)
		return -ESTALE;
	struct rl_tls_session *b = c->tls ? rl__tls_session(c->tls) : NULL;
	if (!b)
		return -ENOENT;
	*out = rl__tls_session_ref(b);
	return 0;
}

int rl_conn_tls_info(struct rl_worker *w, uint32_t slot, uint32_t gen, struct rl_tls_info *out)
{
	struct rl_conn *c = rl__conntab_get(&w->conns, slot, gen);
	if (!c)
		return -ESTALE;
	if (!c->tls)
		return -ENOENT;
	rl__tls_info(c->tls, out);
	return 0;
}
