/* SPDX-License-Identifier: MIT */
/*
 * udp.c - UDP sockets. Each socket keeps one multishot RECVMSG armed that
 * selects from the worker's UDP provided-buffer ring (its own group, sized
 * for whole datagrams); every datagram is copied into the socket's bounded
 * queue and its buffer recycled at once, so datagrams are never merged or
 * split and a socket nobody reads holds no ring buffer. Sends are copied
 * into a record that lives until the send's completion. (A malloc each
 * way per datagram: profiled under bench/udp.sh, all of libc is 2% of the
 * server's CPU and the kernel 93%, so the records are not pooled.)
 *
 * An id is (generation << 10 | index): a closed socket's id never reaches
 * the next socket in the same place.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

#define IDX_BITS 10
#define IDX_MASK ((1u << IDX_BITS) - 1)

static int make_id(const struct rl_udp *u, uint32_t idx)
{
	return (int)(((u->gen & 0x7ffff) << IDX_BITS) | idx);
}

static struct rl_udp *lookup(struct rl_worker *w, int id)
{
	if (id < 0 || !w->udp)
		return NULL;
	uint32_t idx = (uint32_t)id & IDX_MASK;
	struct rl_udp *u = &w->udp[idx];
	if (!u->used || u->closing || (u->gen & 0x7ffff) != ((uint32_t)id >> IDX_BITS))
		return NULL;
	return u;
}

static uint32_t index_of(struct rl_worker *w, struct rl_udp *u)
{
	return (uint32_t)(u - w->udp);
}

static int lazy_init(struct rl_worker *w)
{
	if (w->udp)
		return 0;
	if (!w->ubufs.br) {
		/* room for the recvmsg header and the sender's address too */
		uint32_t size = w->cfg.udp_buffer_size + (uint32_t)sizeof(struct io_uring_recvmsg_out) +
				(uint32_t)sizeof(struct sockaddr_storage);
		int rc = rl__bufring_init(&w->ubufs, &w->ring, w->cfg.udp_buffers, size, RL_UDP_BGID);
		if (rc)
			return rc;
	}
	w->udp = calloc(RL_MAX_UDP, sizeof(*w->udp));
	if (!w->udp)
		return -ENOMEM;
	for (uint32_t i = 0; i < RL_MAX_UDP; i++) {
		w->udp[i].fd = -1;
		w->udp[i].gen = 1;
	}
	return 0;
}

static void recv_arm(struct rl_worker *w, struct rl_udp *u)
{
	struct io_uring_sqe *sqe = rl__sqe(w);
	if (!sqe)
		return;
	io_uring_prep_recvmsg_multishot(sqe, u->fd, &u->rmsg, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = RL_UDP_BGID;
	io_uring_sqe_set_data64(sqe, rl_ud_pack(RL_OP_UDP_RECV, index_of(w, u), u->gen));
	u->armed = 1;
	w->m.ops_inflight++;
}

static void release(struct rl_worker *w, struct rl_udp *u)
{
	struct rl_dgram *d = u->qhead;
	while (d) {
		struct rl_dgram *next = d->next;
		free(d);
		d = next;
	}
	if (u->fd >= 0)
		close(u->fd);
	uint32_t gen = u->gen + 1;
	memset(u, 0, sizeof(*u));
	u->fd = -1;
	u->gen = gen ? gen : 1;
	w->udp_live--;
}

static void try_finish_close(struct rl_worker *w, struct rl_udp *u)
{
	if (u->closing && !u->armed && !u->sends && !u->cancel_sent)
		release(w, u);
}

int rl_udp_open(struct rl_worker *w, const char *bind_addr)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int rc = rl__parse_addr(bind_addr, 1, &ss, &len);
	if (rc)
		return rc;
	if (ss.ss_family == AF_UNIX)
		return -EAFNOSUPPORT;
	rc = lazy_init(w);
	if (rc)
		return rc;
	uint32_t idx = RL_MAX_UDP;
	for (uint32_t i = 0; i < RL_MAX_UDP; i++) {
		if (!w->udp[i].used) {
			idx = i;
			break;
		}
	}
	if (idx == RL_MAX_UDP)
		return -EMFILE;
	int fd = socket(ss.ss_family, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	struct rl_udp *u = &w->udp[idx];
	u->fd = fd;
	u->family = ss.ss_family;
	u->used = 1;
	u->rmsg.msg_namelen = sizeof(struct sockaddr_storage);
	w->udp_live++;
	recv_arm(w, u);
	return make_id(u, idx);
}

int rl_udp_connect(struct rl_worker *w, int id, const char *addr)
{
	struct rl_udp *u = lookup(w, id);
	if (!u)
		return -ENOENT;
	struct sockaddr_storage ss;
	socklen_t len;
	int rc = rl__parse_addr(addr, 0, &ss, &len);
	if (rc)
		return rc;
	if (connect(u->fd, (struct sockaddr *)&ss, len) < 0)
		return -errno;
	return 0;
}

int rl_udp_port(struct rl_worker *w, int id)
{
	struct rl_udp *u = lookup(w, id);
	if (!u)
		return -ENOENT;
	return rl_fd_name(u->fd, 0, NULL, 0);
}

int rl_udp_sendto(struct rl_worker *w, int id, const char *addr, const void *data, size_t len)
{
	struct rl_udp *u = lookup(w, id);
	if (!u)
		return -ENOENT;
	if (len > 65535)
		return -EMSGSIZE;
	struct rl_udp_send *s = malloc(sizeof(*s) + len);
	if (!s)
		return -ENOMEM;
	memset(s, 0, sizeof(*s));
	if (addr) {
		socklen_t alen;
		int rc = rl__parse_addr(addr, 0, &s->addr, &alen);
		if (rc == 0 && s->addr.ss_family == AF_INET6 && u->family == AF_INET)
			rc = -EAFNOSUPPORT; /* what the kernel would answer, said now, not lost */
		if (rc) {
			free(s);
			return rc;
		}
		s->msg.msg_name = &s->addr;
		s->msg.msg_namelen = alen;
	}
	if (len)
		memcpy(s->data, data, len);
	s->iov.iov_base = s->data;
	s->iov.iov_len = len;
	s->msg.msg_iov = &s->iov;
	s->msg.msg_iovlen = 1;
	s->sock = index_of(w, u);
	s->gen = u->gen;
	struct io_uring_sqe *sqe = rl__sqe(w);
	if (!sqe) {
		free(s);
		return -EBUSY;
	}
	/* A plain SEND reads neither a msghdr nor an iovec: measured 2-3%
	 * cheaper per datagram than SENDMSG (bench/udp.sh). Kernels without
	 * sendto on SEND take the msghdr. */
	if (!addr) {
		io_uring_prep_send(sqe, u->fd, s->data, len, MSG_NOSIGNAL);
	} else if (w->features & RL_FEAT_SENDTO) {
		io_uring_prep_send(sqe, u->fd, s->data, len, MSG_NOSIGNAL);
		io_uring_prep_send_set_addr(sqe, (struct sockaddr *)&s->addr,
					    (uint16_t)s->msg.msg_namelen);
	} else {
		io_uring_prep_sendmsg(sqe, u->fd, &s->msg, MSG_NOSIGNAL);
	}
	io_uring_sqe_set_data64(sqe, ((uint64_t)RL_OP_UDP_SEND << 56) | (uint64_t)(uintptr_t)s);
	u->sends++;
	w->m.ops_inflight++;
	return 0;
}

int rl_udp_want(struct rl_worker *w, int id)
{
	struct rl_udp *u = lookup(w, id);
	if (!u)
		return -ENOENT;
	if (u->qhead)
		return 1;
	u->want = 1;
	return 0;
}

int rl_udp_take(struct rl_worker *w, int id, void *buf, size_t cap, char *host, size_t hostlen,
		int32_t *meta)
{
	struct rl_udp *u = lookup(w, id);
	if (!u)
		return -ENOENT;
	struct rl_dgram *d = u->qhead;
	if (!d)
		return -EAGAIN;
	u->qhead = d->next;
	if (!u->qhead)
		u->qtail = NULL;
	u->qlen--;
	uint32_t n = d->len < cap ? d->len : (uint32_t)cap;
	memcpy(buf, d->data, n);
	int port = rl__format_addr(&d->addr, d->alen, host, host ? hostlen : 0);
	if (meta) {
		meta[0] = port > 0 ? port : 0;
		meta[1] = d->trunc || n < d->len;
	}
	free(d);
	return (int)n;
}

int rl_udp_close(struct rl_worker *w, int id)
{
	struct rl_udp *u = lookup(w, id);
	if (!u)
		return -ENOENT;
	u->closing = 1;
	u->want = 0;
	if (u->armed && !u->cancel_sent) {
		struct io_uring_sqe *sqe = rl__sqe(w);
		if (sqe) {
			io_uring_prep_cancel64(sqe, rl_ud_pack(RL_OP_UDP_RECV, index_of(w, u), u->gen), 0);
			io_uring_sqe_set_data64(sqe, rl_ud_pack(RL_OP_UDP_CANCEL, index_of(w, u), u->gen));
			u->cancel_sent = 1;
			w->m.ops_inflight++;
		}
	}
	try_finish_close(w, u);
	return 0;
}

static struct rl_udp *owner(struct rl_worker *w, uint64_t ud)
{
	uint32_t idx = rl_ud_index(ud);
	if (!w->udp || idx >= RL_MAX_UDP)
		return NULL;
	struct rl_udp *u = &w->udp[idx];
	return u->used && u->gen == rl_ud_gen(ud) ? u : NULL;
}

void rl__udp_on_recv(struct rl_worker *w, struct io_uring_cqe *cqe)
{
	struct rl_udp *u = owner(w, cqe->user_data);
	uint8_t *buf = NULL;
	uint16_t bid = 0;
	if (cqe->flags & IORING_CQE_F_BUFFER) {
		bid = (uint16_t)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
		buf = rl__bufring_addr(&w->ubufs, bid);
	}
	if (!u) {
		if (buf)
			rl__bufring_recycle(&w->ubufs, bid);
		w->m.stale_cqes++;
		return;
	}
	if (cqe->res > 0 && buf && !u->closing) {
		struct io_uring_recvmsg_out *o =
			io_uring_recvmsg_validate(buf, cqe->res, &u->rmsg);
		if (o) {
			uint32_t plen = (uint32_t)io_uring_recvmsg_payload_length(o, cqe->res, &u->rmsg);
			w->m.udp_in++;
			int trunc = (o->flags & MSG_TRUNC) != 0;
			if (trunc)
				w->m.udp_truncated++;
			if (u->qlen >= w->cfg.udp_queue) {
				w->m.udp_dropped++;
			} else {
				struct rl_dgram *d = malloc(sizeof(*d) + plen);
				if (!d) {
					w->m.udp_dropped++;
				} else {
					d->next = NULL;
					d->len = plen;
					d->trunc = (uint8_t)trunc;
					memset(&d->addr, 0, sizeof(d->addr));
					d->alen = o->namelen < sizeof(d->addr) ? o->namelen : sizeof(d->addr);
					memcpy(&d->addr, io_uring_recvmsg_name(o), d->alen);
					memcpy(d->data, io_uring_recvmsg_payload(o, &u->rmsg), plen);
					if (u->qtail)
						u->qtail->next = d;
					else
						u->qhead = d;
					u->qtail = d;
					u->qlen++;
				}
			}
		}
	}
	if (buf)
		rl__bufring_recycle(&w->ubufs, bid);
	int err = cqe->res < 0 && cqe->res != -ENOBUFS && cqe->res != -ECANCELED ? cqe->res : 0;
	if (u->want && (u->qhead || err)) {
		u->want = 0;
		rl__emit(w, RL_EV_UDP, err, (uint32_t)make_id(u, index_of(w, u)), 0, 0);
	}
	if (!(cqe->flags & IORING_CQE_F_MORE)) {
		u->armed = 0;
		w->m.ops_inflight--;
		/* ENOBUFS: every buffer is recycled at once, so the ring has
		 * room again after this batch; re-arming here is not a spin. */
		if (!u->closing)
			recv_arm(w, u);
		else
			try_finish_close(w, u);
	}
}

void rl__udp_on_send(struct rl_worker *w, struct io_uring_cqe *cqe)
{
	struct rl_udp_send *s = (struct rl_udp_send *)(uintptr_t)(cqe->user_data & ((1ull << 56) - 1));
	w->m.ops_inflight--;
	struct rl_udp *u = w->udp && s->sock < RL_MAX_UDP ? &w->udp[s->sock] : NULL;
	uint32_t gen = s->gen;
	if (cqe->res >= 0)
		w->m.udp_out++;
	else
		w->m.udp_send_errors++; /* the datagram is lost, as UDP allows */
	free(s);
	if (u && u->used && u->gen == gen) {
		u->sends--;
		try_finish_close(w, u);
	}
}

void rl__udp_on_cancel(struct rl_worker *w, struct io_uring_cqe *cqe)
{
	w->m.ops_inflight--;
	struct rl_udp *u = owner(w, cqe->user_data);
	if (!u)
		return;
	u->cancel_sent = 0;
	try_finish_close(w, u);
}

void rl__udp_close_all(struct rl_worker *w)
{
	if (!w->udp)
		return;
	for (uint32_t i = 0; i < RL_MAX_UDP; i++) {
		struct rl_udp *u = &w->udp[i];
		if (u->used && u->closing && u->armed && !u->cancel_sent)
			u->closing = 0; /* its close got no SQE for the cancel: again */
		if (u->used && !u->closing)
			rl_udp_close(w, make_id(u, i));
	}
}

void rl__udp_fini(struct rl_worker *w)
{
	if (w->ubufs.br)
		rl__bufring_fini(&w->ubufs, &w->ring);
	free(w->udp);
	w->udp = NULL;
}
