/* SPDX-License-Identifier: MIT */
/*
 * conn_queue.c - building a connection's send queue (conn.c sends it):
 * room for copied bytes at its tail, the TLS engine's sink that writes
 * records there as they are made (sendfile.c prepares a sendfile node's
 * steps). A leaf but for conn_ops.c: it queues, it never submits or
 * completes.
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
