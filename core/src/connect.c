/* SPDX-License-Identifier: MIT */
/*
 * connect.c - outbound connections.
 *
 * The socket is made with socket(2) (so options can be set on a plain
 * descriptor, which the connection keeps), installed into the fixed table
 * with FILES_UPDATE at an index the kernel allocates (the kernel stays the
 * only allocator of indexes, so accepts and connects never collide), then
 * connected with CONNECT, optionally linked to a LINK_TIMEOUT.
 *
 * The same install serves inbound connections accepted as plain
 * descriptors (on kernels without FIXED_FD_INSTALL, see listener.c): the
 * request then names its listener, and the install ends in an accept.
 */
#include <errno.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* Requests are allocated once and reused; the free ones' indexes are kept
 * on a stack, so taking one costs the same however many are in flight.
 * Records never move: the kernel reads their fds, addr and ts. */
static int req_grow(struct rl_worker *w)
{
	uint32_t n = w->nreqs ? w->nreqs * 2 : 16;
	if (n > RL_UD_INDEX_MAX)
		return -ENOSPC;
	struct rl_connreq **nr = realloc(w->reqs, n * sizeof(*nr));
	if (!nr)
		return -ENOMEM;
	w->reqs = nr;
	uint32_t *nf = realloc(w->reqfree, n * sizeof(*nf));
	if (!nf)
		return -ENOMEM;
	w->reqfree = nf;
	uint32_t i;
	for (i = w->nreqs; i < n && (nr[i] = calloc(1, sizeof(**nr))); i++) {
		nr[i]->idx = i;
		nf[w->nreqfree++] = i;
	}
	w->nreqs = i; /* keep what could be allocated */
	return w->nreqfree ? 0 : -ENOMEM;
}

/* A free request, marked used and reset; its index, or a negative errno. */
static int req_alloc(struct rl_worker *w)
{
	if (!w->nreqfree) {
		int rc = req_grow(w);
		if (rc)
			return rc;
	}
	struct rl_connreq *r = w->reqs[w->reqfree[--w->nreqfree]];
	r->used = 1;
	r->cancel = 0;
	r->slot = -1;
	r->listener = -1;
	r->token = 0;
	r->adopt = 0;
	return (int)r->idx;
}

static void req_free(struct rl_worker *w, struct rl_connreq *r)
{
	if (!r->used) /* already free: a second push would hand it out twice */
		return;
	r->used = 0;
	r->gen++;
	w->reqfree[w->nreqfree++] = r->idx;
}

void rl__connect_fini(struct rl_worker *w)
{
	for (uint32_t i = 0; i < w->nreqs; i++)
		free(w->reqs[i]);
	free(w->reqs);
	free(w->reqfree);
	w->reqs = NULL;
	w->reqfree = NULL;
	w->nreqs = w->nreqfree = 0;
}

/* The local end of an outbound socket, fixed before the connect. Only
 * numeric addresses: a name would block here (the caller resolves it). */
static int bind_local(int fd, int family, const char *bind_addr)
{
	struct sockaddr_storage bs;
	socklen_t blen;
	int rc = rl__parse_addr(bind_addr, 0, &bs, &blen);
	if (rc)
		return rc == -EAFNOSUPPORT ? -EINVAL : rc;
	if (bs.ss_family != family)
		return -EAFNOSUPPORT;
	if (family == AF_INET || family == AF_INET6) {
		/* port 0: take the ephemeral port at connect time, per
		 * destination, not at bind time from the global pool */
		int one = 1;
		uint16_t port = family == AF_INET ? ((struct sockaddr_in *)&bs)->sin_port
						  : ((struct sockaddr_in6 *)&bs)->sin6_port;
		if (port == 0)
			setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
	}
	if (bind(fd, (struct sockaddr *)&bs, blen) < 0)
		return -errno;
	return 0;
}

int rl_connect(struct rl_worker *w, const char *addr, uint32_t timeout_ms, uint32_t token)
{
	return rl_connect_from(w, addr, NULL, timeout_ms, token);
}

int rl_connect_from(struct rl_worker *w, const char *addr, const char *bind_addr, uint32_t timeout_ms,
		    uint32_t token)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int rc = rl__parse_addr(addr, 0, &ss, &len);
	if (rc)
		return rc;
	int idx = req_alloc(w);
	if (idx < 0)
		return idx;
	struct rl_connreq *r = w->reqs[idx];
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		rc = -errno;
		req_free(w, r);
		return rc;
	}
	if (ss.ss_family != AF_UNIX) {
		int one = 1;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	if (bind_addr) {
		rc = bind_local(fd, ss.ss_family, bind_addr);
		if (rc) {
			close(fd);
			req_free(w, r);
			return rc;
		}
	}
	r->addr = ss;
	r->addrlen = len;
	r->rawfd = fd;
	r->fds[0] = fd;
	r->timeout_ms = timeout_ms;
	r->token = token;
	r->ts.tv_sec = timeout_ms / 1000;
	r->ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;

	struct io_uring_sqe *sqe = rl__sqe(w);
	if (!sqe) {
		close(fd);
		req_free(w, r);
		return -EBUSY;
	}
	io_uring_prep_files_update(sqe, r->fds, 1, (int)IORING_FILE_INDEX_ALLOC);
	io_uring_sqe_set_data64(sqe, rl_ud_pack(RL_OP_SOCK_INSTALL, (uint32_t)idx, r->gen));
	w->m.ops_inflight++;
	return 0;
}

int rl_conn_adopt(struct rl_worker *w, int fd, uint32_t token)
{
	if (fd < 0)
		return -EBADF;
	int idx = req_alloc(w);
	struct io_uring_sqe *sqe = idx >= 0 ? rl__sqe(w) : NULL;
	if (!sqe) {
		if (idx >= 0)
			req_free(w, w->reqs[idx]);
		close(fd);
		return idx < 0 ? idx : -EBUSY;
	}
	struct rl_connreq *r = w->reqs[idx];
	r->rawfd = fd;
	r->fds[0] = fd;
	r->token = token;
	r->adopt = 1;
	io_uring_prep_files_update(sqe, r->fds, 1, (int)IORING_FILE_INDEX_ALLOC);
	io_uring_sqe_set_data64(sqe, rl_ud_pack(RL_OP_SOCK_INSTALL, (uint32_t)idx, r->gen));
	w->m.ops_inflight++;
	return 0;
}

static void fail(struct rl_worker *w, uint32_t token, int res)
{
	rl__emit(w, RL_EV_CONNECTED, res, 0, 0, token);
}

void rl__install_inbound(struct rl_worker *w, uint32_t lid, uint32_t lgen, int fd)
{
	int idx = req_alloc(w);
	struct io_uring_sqe *sqe = idx >= 0 ? rl__sqe(w) : NULL;
	if (!sqe) {
		if (idx >= 0)
			req_free(w, w->reqs[idx]);
		close(fd);
		w->m.conns_refused++;
		struct rl_listener *l = rl__listener_get(w, lid, lgen);
		if (l)
			rl__listener_install_done(w, l);
		return;
	}
	struct rl_connreq *r = w->reqs[idx];
	r->rawfd = fd;
	r->fds[0] = fd;
	r->listener = (int32_t)lid;
	r->lgen = lgen;
	io_uring_prep_files_update(sqe, r->fds, 1, (int)IORING_FILE_INDEX_ALLOC);
	io_uring_sqe_set_data64(sqe, rl_ud_pack(RL_OP_SOCK_INSTALL, (uint32_t)idx, r->gen));
	w->m.ops_inflight++;
}

/* An inbound install completed: the connection is accepted, or refused when
 * the table is full or its listener went away meanwhile. */
static void inbound_installed(struct rl_worker *w, struct rl_connreq *r, int res)
{
	int fd = r->rawfd;
	uint32_t lid = (uint32_t)r->listener, slot = (uint32_t)r->fds[0];
	struct rl_listener *l = rl__listener_get(w, lid, r->lgen);
	req_free(w, r);
	if (res < 0 || !l) {
		if (res >= 0)
			rl__listener_close_slot(w, slot);
		close(fd);
		w->m.conns_refused++;
		if (l)
			rl__listener_install_done(w, l);
		return;
	}
	rl__listener_adopt(w, l, lid, slot, fd);
	rl__listener_install_done(w, l);
}

void rl__connect_on_install(struct rl_worker *w, struct io_uring_cqe *cqe)
{
	uint32_t idx = rl_ud_index(cqe->user_data);
	w->m.ops_inflight--;
	if (idx >= w->nreqs || !w->reqs[idx]->used || w->reqs[idx]->gen != rl_ud_gen(cqe->user_data)) {
		w->m.stale_cqes++;
		return;
	}
	struct rl_connreq *r = w->reqs[idx];
	uint32_t token = r->token;
	if (r->listener >= 0) {
		inbound_installed(w, r, cqe->res);
		return;
	}
	if (cqe->res < 0) {
		close(r->rawfd);
		req_free(w, r);
		fail(w, token, cqe->res == -ENFILE ? -EMFILE : cqe->res);
		return;
	}
	uint32_t slot = (uint32_t)r->fds[0];
	struct rl_conn *c = rl__conntab_open(&w->conns, slot);
	if (!c) {
		close(r->rawfd);
		req_free(w, r);
		w->m.stale_cqes++;
		fail(w, token, -EBADSLT);
		return;
	}
	c->rawfd = r->rawfd;
	if (r->adopt) { /* connected already: open it as rl_connect would */
		int cancel = r->cancel || w->destroying;
		c->token = token;
		req_free(w, r);
		if (cancel) {
			c->flags |= RL_CONN_F_SILENT;
			fail(w, token, -ECANCELED);
			rl__conn_begin_close(w, c, RL_CLOSE_RESET, -ECANCELED);
			return;
		}
		w->m.conns_connected++;
		rl__conn_start(w, c);
		rl__emit(w, RL_EV_CONNECTED, 0, c->slot, c->io.gen, token);
		return;
	}
	c->flags |= RL_CONN_F_CONNECTING;
	c->token = token;
	c->connreq = (int32_t)idx;
	r->slot = (int32_t)slot;
	if (r->cancel || w->destroying) {
		/* canceled (or the worker torn down) while the socket was being
		 * installed: teardown resets only connections that exist, so one
		 * made now must not go on to connect */
		c->flags &= ~RL_CONN_F_CONNECTING;
		c->connreq = -1;
		c->flags |= RL_CONN_F_SILENT;
		req_free(w, r);
		fail(w, token, -ECANCELED);
		rl__conn_begin_close(w, c, RL_CLOSE_RESET, -ECANCELED);
		return;
	}

	/* CONNECT and its LINK_TIMEOUT must reach the kernel together. */
	struct io_uring_sqe *sqe = rl__sq_room(w, 2) >= 2 ? io_uring_get_sqe(&w->ring) : NULL;
	if (!sqe) { /* the kernel refuses submissions */
		c->flags &= ~RL_CONN_F_CONNECTING;
		c->flags |= RL_CONN_F_SILENT;
		req_free(w, r);
		c->connreq = -1;
		fail(w, token, -EBUSY);
		rl__conn_begin_close(w, c, RL_CLOSE_GRACEFUL, -EBUSY);
		return;
	}
	io_uring_prep_connect(sqe, (int)slot, (struct sockaddr *)&r->addr, r->addrlen);
	sqe->flags |= IOSQE_FIXED_FILE;
	io_uring_sqe_set_data64(sqe, rl_ud_pack(RL_OP_CONNECT, slot, c->io.gen));
	rl__conn_op_start(w, c);
	if (r->timeout_ms) {
		sqe->flags |= IOSQE_IO_LINK;
		struct io_uring_sqe *t = io_uring_get_sqe(&w->ring);
		io_uring_prep_link_timeout(t, &r->ts, 0);
		io_uring_sqe_set_data64(t, rl_ud_pack(RL_OP_LINK_TIMEOUT, slot, c->io.gen));
		rl__conn_op_start(w, c);
	}
}

void rl__connect_on_connect(struct rl_worker *w, struct io_uring_cqe *cqe)
{
	struct rl_conn *c = rl__conn_of_cqe(w, cqe);
	if (!c)
		return;
	rl__conn_op_done(w, c);
	if (c->connreq >= 0) {
		/* the kernel copied the address and timeout at submission */
		req_free(w, w->reqs[c->connreq]);
		c->connreq = -1;
	}
	c->flags &= ~RL_CONN_F_CONNECTING;
	int res = cqe->res;
	if (rl__conn_closing(c)) /* rl_connect_cancel (or teardown) got there first */
		res = -ECANCELED;
	if (res == 0 && !w->destroying) {
		w->m.conns_connected++;
		rl__conn_start(w, c);
		rl__emit(w, RL_EV_CONNECTED, 0, c->slot, c->io.gen, c->token);
		return;
	}
	if (res == 0 || (res == -ECANCELED && !rl__conn_closing(c)))
		res = res == 0 ? -ECANCELED : -ETIMEDOUT; /* the link timeout fired */
	fail(w, c->token, res);
	c->flags |= RL_CONN_F_SILENT;
	rl__conn_begin_close(w, c, RL_CLOSE_GRACEFUL, res);
}

int rl_connect_cancel(struct rl_worker *w, uint32_t token)
{
	for (uint32_t i = 0; i < w->nreqs; i++) {
		struct rl_connreq *r = w->reqs[i];
		if (!r->used || r->listener >= 0 || r->token != token || r->cancel)
			continue;
		if (r->slot < 0) {
			r->cancel = 1; /* finished when the install completes */
			return 0;
		}
		struct rl_conn *c = &w->conns.conns[r->slot];
		if (!(c->flags & RL_CONN_F_CONNECTING) || rl__conn_closing(c))
			return -ENOENT;
		c->flags |= RL_CONN_F_SILENT;
		/* closing cancels the CONNECT; its completion reports -ECANCELED */
		return rl__conn_begin_close(w, c, RL_CLOSE_RESET, -ECANCELED);
	}
	return -ENOENT;
}

void rl__connect_on_timeout(struct rl_worker *w, struct io_uring_cqe *cqe)
{
	struct rl_conn *c = rl__conn_of_cqe(w, cqe);
	if (!c)
		return;
	rl__conn_op_done(w, c);
	if (rl__conn_closing(c))
		rl__conn_close_step(w, c);
}
