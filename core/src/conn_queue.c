/* SPDX-License-Identifier: MIT */
/*
 * conn_queue.c - building a connection's send queue (conn.c sends it):
 * room for copied bytes at its tail, the TLS engine's sink that writes
 * records there as they are made, and a sendfile node's splices and its
 * release. A leaf but for conn_ops.c: it queues and prepares, it never
 * submits or completes.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* The queue's tail chunk when it has room for copied bytes, else a new one
 * appended (NULL only on ENOMEM). */
struct rl_chunk *rl__conn_tail_room(struct rl_worker *w, struct rl_conn *c, size_t want)
{
	struct rl_chunk *t = c->sq_tail;
	if (t && t->len < t->cap && !t->zc && !t->sf)
		return t;
	t = rl__chunk_get(&w->pool, want);
	if (!t)
		return NULL;
	if (c->sq_tail)
		c->sq_tail->next = t;
	else
		c->sq_head = t;
	c->sq_tail = t;
	return t;
}

/* The engine's ciphertext onto the send queue as copy chunks, as the
 * engine makes it, in order with everything queued before. A connection
 * whose queue can no longer send (failed, reset, past draining) drops it.
 * -ENOMEM (no send pool chunk) fails the engine's call: a record lost
 * would break the stream. */
int rl__conn_tls_sink(void *a, void *b, const uint8_t *p, uint32_t n)
{
	struct rl_worker *w = a;
	struct rl_conn *c = b;
	if (c->io.serr || (c->flags & RL_CONN_F_RESET) || c->phase > RL_PHASE_DRAIN)
		return 0;
	while (n) {
		struct rl_chunk *t = rl__conn_tail_room(w, c, n);
		if (!t)
			return -ENOMEM;
		uint32_t k = t->cap - t->len;
		if (k > n)
			k = n;
		memcpy(t->data + t->len, p, k);
		t->len += k;
		p += k;
		n -= k;
		/* account as we go so an ENOMEM above leaves counters true */
		c->io.unsent += k;
		w->m.send_bytes_queued += k;
	}
	return 0;
}

/* A sendfile node's next splice: drain what the pipe holds into the
 * socket (a fixed file: IOSQE_FIXED_FILE names the output), or fill the
 * empty pipe from the file with the drain of those bytes linked after it
 * (IOSQE_IO_LINK: one submission, the drain starts when the fill is
 * done). A fill that comes short (the end of the file, an error) fails
 * the link: its drain completes -ECANCELED and the queue goes on from the
 * fill's result (rl__conn_on_splice). The link needs both SQEs in one
 * submission; when the SQ has no room for two the fill goes alone. */
void rl__conn_splice_prep(struct rl_worker *w, struct io_uring_sqe *sqe, struct rl_conn *c,
			struct rl_sendfile *sf)
{
	rl__conn_set_ud(sqe, RL_OP_SPLICE, c);
	if (sf->inpipe) {
		io_uring_prep_splice(sqe, sf->pipe[0], -1, (int)c->slot, -1, sf->inpipe, 0);
		sqe->flags |= IOSQE_FIXED_FILE;
		rl__conn_set_ud(sqe, RL_OP_SPLICE, c);
		sf->filling = 0;
		return;
	}
	uint32_t n = sf->left < sf->pipe_size ? sf->left : sf->pipe_size;
	io_uring_prep_splice(sqe, sf->fd, sf->off, sf->pipe[1], -1, n, 0);
	rl__conn_set_ud(sqe, RL_OP_SPLICE, c);
	sf->filling = 1;
	sf->linked = 0;
	struct io_uring_sqe *drain = io_uring_sq_space_left(&w->ring) ? io_uring_get_sqe(&w->ring) : NULL;
	if (!drain)
		return;
	sqe->flags |= IOSQE_IO_LINK;
	io_uring_prep_splice(drain, sf->pipe[0], -1, (int)c->slot, -1, n, 0);
	drain->flags |= IOSQE_FIXED_FILE;
	rl__conn_set_ud(drain, RL_OP_SPLICE, c);
	sf->linked = n;
	rl__conn_op_start(w, c);
}

/* A sendfile node leaves the queue (sent, failed or dropped): its
 * descriptor closes, its pipe is cached unless bytes are left in it. */
void rl__sendfile_free(struct rl_worker *w, struct rl_sendfile *sf)
{
	close(sf->fd);
	rl__pipe_put(w, sf->pipe, sf->inpipe != 0);
	free(sf);
}
