/* SPDX-License-Identifier: MIT */
/*
 * handoff.c - one listening socket, one worker accepting on it, and the
 * connections passed round robin to the group's members.
 *
 * The pass is one IORING_OP_MSG_RING with IORING_MSG_SEND_FD: the kernel
 * takes the file from the acceptor's fixed table and installs it in the
 * member's at an index it allocates (the member's connection slot), then
 * posts the member a completion carrying that index. A close of the
 * acceptor's own index is hard-linked behind the pass, so it runs after the
 * kernel holds the file whether the pass worked or not, and the acceptor
 * keeps no state per pass.
 *
 * The only cross-thread state is the member list, under the group's lock.
 * A member's ring is named by our own dup of its descriptor, and each pass
 * is submitted before the lock is released: a member that has left (and
 * closed that dup under the same lock) can never be the target of a
 * descriptor number that meanwhile means some other file. A pass already
 * submitted holds its own reference to the member's ring; one arriving after
 * the member's listener closed is closed by the member (its generation no
 * longer matches).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>

#include "internal.h"

struct rl_member {
	struct rl_worker *w;
	int id;            /* the member's listener id */
	int ring_fd;       /* our dup of the member's ring descriptor */
	uint64_t tag;      /* user_data of the arrival in the member's ring */
};

struct rl_handoff {
	pthread_mutex_t lock;
	int fd;            /* the listening socket until an acceptor takes it */
	int port;
	int closed;        /* its socket is closed (or closing): no new members */
	struct rl_worker *acceptor;
	struct rl_member *m;
	uint32_t n;
	uint32_t cap;
	uint32_t next;     /* round-robin cursor */
};

int rl_handoff_new(const char *addr, uint32_t flags, uint32_t backlog, struct rl_handoff **out)
{
	if (!addr || !out || backlog == 0)
		return -EINVAL;
	struct rl_handoff *h = calloc(1, sizeof(*h));
	if (!h)
		return -ENOMEM;
	int rc = -pthread_mutex_init(&h->lock, NULL);
	if (rc) {
		free(h);
		return rc;
	}
	h->fd = rl__listen_socket(addr, flags, backlog, &h->port);
	if (h->fd < 0) {
		rc = h->fd;
		pthread_mutex_destroy(&h->lock);
		free(h);
		return rc;
	}
	*out = h;
	return 0;
}

void rl_handoff_free(struct rl_handoff *h)
{
	if (!h)
		return;
	if (h->fd >= 0)
		close(h->fd);
	for (uint32_t i = 0; i < h->n; i++)
		close(h->m[i].ring_fd);
	free(h->m);
	pthread_mutex_destroy(&h->lock);
	free(h);
}

int rl_handoff_port(struct rl_handoff *h)
{
	return h ? h->port : -EINVAL;
}

int rl_handoff_members(struct rl_handoff *h)
{
	if (!h)
		return -EINVAL;
	pthread_mutex_lock(&h->lock);
	int n = (int)h->n;
	pthread_mutex_unlock(&h->lock);
	return n;
}

int rl_handoff_accept(struct rl_worker *w, struct rl_handoff *h)
{
	if (!w || !h)
		return -EINVAL;
	if (!(w->features & RL_FEAT_MSG_RING))
		return -EOPNOTSUPP;
	pthread_mutex_lock(&h->lock);
	int fd = h->fd;
	if (fd < 0 || h->acceptor) {
		pthread_mutex_unlock(&h->lock);
		return -EBUSY;
	}
	if (!h->n) { /* everybody left before anyone accepted: nothing to serve */
		close(fd);
		h->fd = -1;
		h->closed = 1;
		pthread_mutex_unlock(&h->lock);
		return -ESHUTDOWN;
	}
	h->fd = -1;
	h->acceptor = w;
	pthread_mutex_unlock(&h->lock);

	int id = rl__listener_add(w, fd, h->port, RL_LISTENER_ACCEPTOR, h);
	if (id < 0) { /* the group keeps its socket */
		pthread_mutex_lock(&h->lock);
		h->fd = fd;
		h->acceptor = NULL;
		pthread_mutex_unlock(&h->lock);
	}
	return id;
}

int rl_listen_handoff(struct rl_worker *w, struct rl_handoff *h)
{
	if (!w || !h)
		return -EINVAL;
	int id = rl__listener_add(w, -1, h->port, RL_LISTENER_MEMBER, h);
	if (id < 0)
		return id;
	int rc = 0;
	pthread_mutex_lock(&h->lock);
	if (h->closed) {
		rc = -ESHUTDOWN; /* its socket is closed or closing */
	} else if (h->n == h->cap) {
		uint32_t cap = h->cap ? h->cap * 2 : 8;
		struct rl_member *m = realloc(h->m, cap * sizeof(*m));
		if (m) {
			h->m = m;
			h->cap = cap;
		} else {
			rc = -ENOMEM;
		}
	}
	if (!rc) {
		int fd = fcntl(w->ring.ring_fd, F_DUPFD_CLOEXEC, 0);
		if (fd < 0) {
			rc = -errno;
		} else {
			h->m[h->n++] = (struct rl_member){
				.w = w, .id = id, .ring_fd = fd,
				.tag = rl_ud_pack(RL_OP_HANDIN, (uint32_t)id, w->listeners[id].gen),
			};
		}
	}
	pthread_mutex_unlock(&h->lock);
	if (rc) {
		w->listeners[id].kind = RL_LISTENER_LOCAL; /* not a member: nothing to leave */
		w->listeners[id].h = NULL;
		rl_listener_close(w, id);
	}
	return rc ? rc : id;
}

void rl__handoff_leave(struct rl_handoff *h, struct rl_worker *w, int id)
{
	pthread_mutex_lock(&h->lock);
	for (uint32_t i = 0; i < h->n; i++) {
		if (h->m[i].w != w || h->m[i].id != id)
			continue;
		close(h->m[i].ring_fd);
		h->m[i] = h->m[--h->n];
		if (h->next > h->n)
			h->next = 0;
		break;
	}
	if (h->n == 0 && h->acceptor) /* it closes its socket at its next poll,
					 unless somebody joined again by then */
		rl_worker_wake(h->acceptor);
	pthread_mutex_unlock(&h->lock);
}

void rl__handoff_acceptor_gone(struct rl_handoff *h)
{
	pthread_mutex_lock(&h->lock);
	h->acceptor = NULL;
	pthread_mutex_unlock(&h->lock);
}

void rl__handoff_reap(struct rl_worker *w)
{
	if (!w->acceptors)
		return;
	for (int i = 0; i < RL_MAX_LISTENERS; i++) {
		struct rl_listener *l = &w->listeners[i];
		if (!l->used || l->closing || l->kind != RL_LISTENER_ACCEPTOR)
			continue;
		pthread_mutex_lock(&l->h->lock);
		int empty = l->h->n == 0;
		if (empty)
			l->h->closed = 1;
		pthread_mutex_unlock(&l->h->lock);
		if (empty)
			rl_listener_close(w, i);
	}
}

/* liburing 2.3 has no helper for IORING_MSG_SEND_FD; this is the SQE the
 * kernel (6.0+) reads: addr = the command, addr3 = our fixed index,
 * file_index = where to put it in the target (ALLOC: the kernel picks),
 * off = the user_data of the target's completion. */
static void prep_send_fd(struct io_uring_sqe *sqe, int ring_fd, uint32_t slot, uint64_t tag)
{
	io_uring_prep_rw(IORING_OP_MSG_RING, sqe, ring_fd, (void *)(uintptr_t)IORING_MSG_SEND_FD, 0,
			 tag);
	sqe->addr3 = slot;
	sqe->file_index = IORING_FILE_INDEX_ALLOC;
	sqe->msg_ring_flags = 0;
}

void rl__handoff_pass(struct rl_worker *w, struct rl_handoff *h, uint32_t slot)
{
	/* The pass and the close linked behind it go in one submission: an SQ
	 * flush between them would split the link. */
	if (io_uring_sq_space_left(&w->ring) < 2)
		rl__submit(w);
	struct io_uring_sqe *pass = rl__sqe(w);
	struct io_uring_sqe *close_sqe = pass ? rl__sqe(w) : NULL;
	if (!close_sqe) { /* the kernel refuses submissions: close it if we can */
		if (pass) {
			io_uring_prep_close_direct(pass, slot);
			io_uring_sqe_set_data64(pass, rl_ud_pack(RL_OP_UNOWNED, 0, 0));
			w->m.ops_inflight++;
		}
		w->m.handoff_errors++;
		return;
	}
	io_uring_prep_close_direct(close_sqe, slot);
	io_uring_sqe_set_data64(close_sqe, rl_ud_pack(RL_OP_UNOWNED, 0, 0));
	w->m.ops_inflight += 2;

	pthread_mutex_lock(&h->lock);
	if (!h->n) { /* nobody to serve it: the close alone refuses the peer */
		pthread_mutex_unlock(&h->lock);
		io_uring_prep_nop(pass);
		io_uring_sqe_set_data64(pass, rl_ud_pack(RL_OP_UNOWNED, 0, 0));
		w->m.conns_refused++;
		return;
	}
	if (h->next >= h->n)
		h->next = 0;
	struct rl_member *m = &h->m[h->next++];
	prep_send_fd(pass, m->ring_fd, slot, m->tag);
	pass->flags |= IOSQE_IO_HARDLINK;
	io_uring_sqe_set_data64(pass, rl_ud_pack(RL_OP_HANDOFF, slot, 0));
	/* now, while m->ring_fd surely names the member's ring */
	rl__submit(w);
	pthread_mutex_unlock(&h->lock);
}

void rl__handoff_on_pass(struct rl_worker *w, struct io_uring_cqe *cqe)
{
	w->m.ops_inflight--;
	if (cqe->res >= 0)
		w->m.handoffs++;
	else
		w->m.handoff_errors++; /* the linked close still closes it */
}

void rl__handoff_on_arrival(struct rl_worker *w, struct io_uring_cqe *cqe)
{
	uint32_t id = rl_ud_index(cqe->user_data);
	struct rl_listener *l = rl__listener_get(w, id, rl_ud_gen(cqe->user_data));
	if (cqe->res < 0) {
		w->m.stale_cqes++;
		return;
	}
	if (!l || l->kind != RL_LISTENER_MEMBER) {
		/* it left after this pass was submitted */
		rl__listener_close_slot(w, (uint32_t)cqe->res);
		w->m.conns_refused++;
		return;
	}
	rl__listener_adopt(w, l, id, (uint32_t)cqe->res);
}
