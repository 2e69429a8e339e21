/* SPDX-License-Identifier: MIT */
/*
 * handoff.c - one listening socket, one worker accepting on it, and the
 * connections passed round robin to the group's members.
 *
 * The pass is one IORING_OP_MSG_RING with IORING_MSG_SEND_FD: the kernel
 * takes the file from the acceptor's fixed table and installs it in the
 * member's at an index it allocates (the member's connection slot), then
 * posts the member a completion carrying that index. When the pass
 * completes the acceptor closes its own index; when it failed (the member's
 * table is full, its thread is gone) the next member is tried first, so a
 * connection is refused only when no member could take it.
 *
 * The only cross-thread state is the member list, under the group's lock.
 * A member's ring is named by our own dup of its descriptor, and each pass
 * is submitted before the lock is released: a member that has left (and
 * closed that dup under the same lock) can never be the target of a
 * descriptor number that meanwhile means some other file (with SQPOLL the
 * kernel's thread reads the SQE after the submit: the pass waits for that
 * under the lock, rl__sq_drain). A pass already
 * submitted holds its own reference to the member's ring; one arriving after
 * the member's listener closed is closed by the member (its generation no
 * longer matches).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
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
	int err;           /* why the acceptor stopped, for the members left */
	struct rl_worker *acceptor;
	struct rl_member *m;
	uint32_t n;
	uint32_t cap;
	uint32_t next;     /* round-robin cursor */
};

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

/*
 * Does this kernel pass fixed files between rings the way hand-off needs?
 * The MSG_RING opcode alone does not say: IORING_MSG_SEND_FD came in 6.0,
 * and until 6.3 (and in 6.1 kernels without the backport) the target's
 * completion does not carry the index the kernel allocated. So try it once
 * on two scratch rings, the target's index 0 taken: it must report 1.
 */
static int send_fd_ok;
static pthread_once_t send_fd_once = PTHREAD_ONCE_INIT;

static void probe_send_fd(void)
{
	struct io_uring a, b;
	struct io_uring_cqe *cqe;
	int sv[2] = { -1, -1 };
	const uint64_t tag = 0x5e4dfdULL;

	if (rl__disabled_features() & RL_FEAT_MSG_RING)
		return;
	if (io_uring_queue_init(4, &a, 0) < 0)
		return;
	if (io_uring_queue_init(4, &b, 0) < 0) {
		io_uring_queue_exit(&a);
		return;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0 ||
	    io_uring_register_files_sparse(&a, 1) < 0 || io_uring_register_files_sparse(&b, 2) < 0 ||
	    io_uring_register_files_update(&a, 0, &sv[0], 1) != 1 ||
	    io_uring_register_files_update(&b, 0, &sv[1], 1) != 1)
		goto out;
	struct io_uring_sqe *sqe = io_uring_get_sqe(&a);
	prep_send_fd(sqe, b.ring_fd, 0, tag);
	if (io_uring_submit_and_wait(&a, 1) < 1 || io_uring_peek_cqe(&a, &cqe) < 0 || cqe->res < 0)
		goto out;
	send_fd_ok = io_uring_peek_cqe(&b, &cqe) == 0 && cqe->user_data == tag && cqe->res == 1;
out:
	if (sv[0] >= 0) {
		close(sv[0]);
		close(sv[1]);
	}
	io_uring_queue_exit(&b);
	io_uring_queue_exit(&a);
}

int rl_handoff_new(const char *addr, uint32_t flags, uint32_t backlog, struct rl_handoff **out)
{
	if (!addr || !out || backlog == 0)
		return -EINVAL;
	pthread_once(&send_fd_once, probe_send_fd);
	if (!send_fd_ok)
		return -EOPNOTSUPP;
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

int rl_handoff_finished(struct rl_handoff *h)
{
	if (!h)
		return -EINVAL;
	pthread_mutex_lock(&h->lock);
	int done = h->closed && !h->acceptor && h->n == 0;
	pthread_mutex_unlock(&h->lock);
	return done;
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
	for (uint32_t i = 0; i < h->n; i++) {
		if (h->m[i].w == w) { /* the kernel does not pass a file to its own ring */
			pthread_mutex_unlock(&h->lock);
			return -EINVAL;
		}
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
	if (h->acceptor == w) {
		rc = -EINVAL; /* the kernel does not pass a file to its own ring */
	} else if (h->closed) {
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
		w->members--;
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

void rl__handoff_acceptor_gone(struct rl_handoff *h, int err)
{
	pthread_mutex_lock(&h->lock);
	h->acceptor = NULL;
	h->closed = 1;
	h->err = err;
	/* members left (its listener closed, its socket failed, its worker
	 * destroyed): they hear it at their next poll */
	for (uint32_t i = 0; i < h->n; i++)
		rl_worker_wake(h->m[i].w);
	pthread_mutex_unlock(&h->lock);
}

void rl__handoff_reap(struct rl_worker *w)
{
	if (!w->acceptors && !w->members)
		return;
	for (int i = 0; i < RL_MAX_LISTENERS; i++) {
		struct rl_listener *l = &w->listeners[i];
		if (!l->used || l->closing || l->kind == RL_LISTENER_LOCAL)
			continue;
		pthread_mutex_lock(&l->h->lock);
		int stop, err = 0;
		if (l->kind == RL_LISTENER_ACCEPTOR) {
			stop = l->h->n == 0; /* still empty: nobody rejoined */
			/* Refuse peers before saying so: whoever reads
			 * `closed` may listen on the same path next, and a
			 * socket still taking peers there would make that
			 * listen fail with "address already in use". */
			if (stop) {
				rl__listener_refuse(l);
				l->h->closed = 1;
			}
		} else {
			stop = l->h->closed && !l->h->acceptor;
			err = l->h->err ? l->h->err : -ECONNABORTED;
		}
		pthread_mutex_unlock(&l->h->lock);
		if (!stop)
			continue;
		if (l->kind == RL_LISTENER_MEMBER) /* its acceptor's listener ended */
			rl__emit(w, RL_EV_LISTENER, err, (uint32_t)i, l->gen, 0);
		rl_listener_close(w, i);
	}
}


/* The pass's user_data: index = our fixed index; gen = the attempt (8
 * bits), the member tried first (10), the acceptor listener's id (6) and
 * the low 8 bits of its generation. A retry tries the member after the
 * one that failed: the round-robin cursor may have moved since. */
static uint32_t pass_gen(uint32_t attempt, uint32_t first, uint32_t lid, uint32_t lgen)
{
	return (attempt & 0xff) | (first & 0x3ff) << 8 | (lid & 0x3f) << 18 | (lgen & 0xff) << 24;
}

static void pass(struct rl_worker *w, uint32_t lid, uint32_t slot, uint32_t attempt, uint32_t first)
{
	struct rl_listener *l = &w->listeners[lid];
	struct rl_handoff *h = l->h;
	struct io_uring_sqe *sqe = rl__sqe(w);
	if (!sqe) { /* the kernel refuses submissions: nothing else can be done */
		w->m.handoff_errors++;
		return;
	}
	pthread_mutex_lock(&h->lock);
	if (attempt >= h->n || attempt > 0xff) { /* nobody (else) can take it */
		pthread_mutex_unlock(&h->lock);
		rl__prep_close_slot(w, sqe, slot);
		w->m.conns_refused++;
		return;
	}
	if (attempt == 0) {
		if (h->next >= h->n)
			h->next = 0;
		first = h->next++;
	}
	struct rl_member *m = &h->m[(first + attempt) % h->n];
	prep_send_fd(sqe, m->ring_fd, slot, m->tag);
	io_uring_sqe_set_data64(sqe, rl_ud_pack(RL_OP_HANDOFF, slot,
						pass_gen(attempt, first, lid, l->gen)));
	/* Now, while m->ring_fd surely names the member's ring. Ours is the
	 * last SQE: if the kernel did not take it, it must not go out after
	 * the lock is released (the member may leave and its dup be reused),
	 * so it becomes the close of our index. */
	rl__submit(w);
	rl__sq_drain(w); /* SQPOLL: the kernel's thread reads it while we hold the lock */
	if (io_uring_sq_ready(&w->ring) > 0) {
		rl__prep_close_slot(w, sqe, slot);
		w->m.handoff_errors++;
		w->m.conns_refused++;
	} else {
		w->m.ops_inflight++;
	}
	pthread_mutex_unlock(&h->lock);
}

void rl__handoff_pass(struct rl_worker *w, uint32_t lid, uint32_t slot)
{
	pass(w, lid, slot, 0, 0);
}

void rl__handoff_on_pass(struct rl_worker *w, struct io_uring_cqe *cqe)
{
	uint32_t slot = rl_ud_index(cqe->user_data), gen = rl_ud_gen(cqe->user_data);
	uint32_t attempt = gen & 0xff, first = (gen >> 8) & 0x3ff, lid = (gen >> 18) & 0x3f;
	w->m.ops_inflight--;
	if (cqe->res >= 0) {
		w->m.handoffs++;
		rl__listener_close_slot(w, slot);
		return;
	}
	w->m.handoff_errors++;
	struct rl_listener *l = &w->listeners[lid];
	/* -EOVERFLOW: the member has the file but was not told; never pass
	 * it twice. Otherwise (its table full, its thread gone) try the next. */
	if (cqe->res != -EOVERFLOW && l->used && !l->closing && !w->destroying &&
	    l->kind == RL_LISTENER_ACCEPTOR && (l->gen & 0xff) == gen >> 24) {
		pass(w, lid, slot, attempt + 1, first);
		return;
	}
	rl__listener_close_slot(w, slot);
	w->m.conns_refused++;
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
	rl__listener_adopt(w, l, id, (uint32_t)cqe->res, -1);
}
