/* SPDX-License-Identifier: MIT */
/*
 * inbox.c - messages into a worker from other threads (other workers, the
 * host's signal thread). The only state in the core shared across threads:
 * a mutex-protected FIFO of copied messages plus a doorbell that wakes the
 * worker's wait - an eventfd write, or, between workers, a MSG_RING CQE
 * posted straight into the target's completion queue.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

int rl__inbox_init(struct rl_inbox *in)
{
	memset(in, 0, sizeof(*in));
	return -pthread_mutex_init(&in->lock, NULL);
}

void rl__inbox_fini(struct rl_inbox *in)
{
	struct rl_msg *m = in->head;
	while (m) {
		struct rl_msg *next = m->next;
		free(m);
		m = next;
	}
	pthread_mutex_destroy(&in->lock);
}

void rl__inbox_ring(struct rl_worker *w)
{
	pthread_mutex_lock(&w->inbox.lock);
	int waiting = w->inbox.count > 0;
	pthread_mutex_unlock(&w->inbox.lock);
	if (waiting && !w->inbox.ready) {
		w->inbox.ready = 1; /* one event until the caller drained it */
		rl__emit(w, RL_EV_MESSAGE, 0, 0, 0, 0);
	}
}

int rl_worker_post(struct rl_worker *to, uint32_t from, uint32_t kind, const void *data, size_t len,
		   struct rl_worker *via)
{
	if (!to || (len && !data) || len > (1u << 30))
		return -EINVAL;
	struct rl_msg *m = malloc(sizeof(*m) + len);
	if (!m)
		return -ENOMEM;
	m->next = NULL;
	m->from = from;
	m->kind = kind;
	m->len = (uint32_t)len;
	if (len)
		memcpy(m->data, data, len);
	pthread_mutex_lock(&to->inbox.lock);
	if (to->inbox.tail)
		to->inbox.tail->next = m;
	else
		to->inbox.head = m;
	to->inbox.tail = m;
	to->inbox.count++;
	pthread_mutex_unlock(&to->inbox.lock);

	if (via && via != to && (via->features & RL_FEAT_MSG_RING)) {
		struct io_uring_sqe *sqe = rl__sqe(via);
		if (sqe) {
			io_uring_prep_msg_ring(sqe, to->ring.ring_fd, 0,
					       rl_ud_pack(RL_OP_INBOX, 0, 0), 0);
			/* the sender's own CQE for it */
			io_uring_sqe_set_data64(sqe, rl_ud_pack(RL_OP_INBOX, 1, 0));
			via->m.ops_inflight++;
			return 0;
		}
	}
	return rl_worker_wake(to);
}

int rl_worker_take_message(struct rl_worker *w, void *buf, size_t cap, uint32_t *from, uint32_t *kind)
{
	pthread_mutex_lock(&w->inbox.lock);
	struct rl_msg *m = w->inbox.head;
	if (!m) {
		w->inbox.ready = 0;
		pthread_mutex_unlock(&w->inbox.lock);
		return -EAGAIN;
	}
	if (m->len > cap) {
		pthread_mutex_unlock(&w->inbox.lock);
		return -EMSGSIZE;
	}
	w->inbox.head = m->next;
	if (!w->inbox.head)
		w->inbox.tail = NULL;
	w->inbox.count--;
	pthread_mutex_unlock(&w->inbox.lock);
	if (m->len)
		memcpy(buf, m->data, m->len);
	if (from)
		*from = m->from;
	if (kind)
		*kind = m->kind;
	int n = (int)m->len;
	free(m);
	return n;
}

/* The eventfd doorbell: the one way a thread that owns no ring wakes a
 * worker (the host's signal thread, a resolver thread). */
int rl_worker_wake(struct rl_worker *w)
{
	uint64_t one = 1;
	return write(w->wake_fd, &one, sizeof(one)) == sizeof(one) ? 0 : -errno;
}
