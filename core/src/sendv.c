/* SPDX-License-Identifier: MIT */
/*
 * sendv.c - building a scatter-gather send: rl_conn_sendv and
 * rl_conn_sendv_upto; and a sendfile: rl_conn_sendfile(_with).
 *
 * The policy that turns a caller's parts into queue nodes lives here, above
 * the two things it composes: a guarded part of at least zc_threshold bytes
 * goes into a slab entry (sendslab.c) to be sent in place with SENDMSG_ZC;
 * small copied parts are gathered into an entry's copy chunk; a big copied
 * part goes out as a plain copy send (rl_conn_send). Each entry, once full
 * or at the end, is sealed and pushed onto the connection's send queue
 * (conn.c), which alone submits, pops and drops it. Neither conn.c nor
 * sendslab.c calls back here.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "internal.h"

/* No more parts go into e: push it onto c's queue (an empty one is
 * released at once instead). */
static void finish(struct rl_worker *w, struct rl_conn *c, struct rl_slab_entry *e)
{
	if (!e)
		return;
	struct rl_chunk *node = rl__slab_seal(w, e, c->slot, c->io.gen);
	if (node)
		rl__conn_enqueue(w, c, node);
}

/* The body of rl_conn_sendv (wait 0: a guarded part that finds no entry is
 * copied) and rl_conn_sendv_upto (wait 1: the call stops before it). */
static int sendv(struct rl_worker *w, uint32_t slot, uint32_t gen, const struct rl_part *parts,
		 int n, int wait)
{
	int err;
	struct rl_conn *c = rl__conn_sendable(w, slot, gen, &err);
	if (!c)
		return err;
	if (n < 0 || (n > 0 && !parts))
		return -EINVAL;
	uint64_t total = 0;
	for (int i = 0; i < n; i++) {
		const struct rl_part *p = &parts[i];
		if (p->region >= 0) {
			int rc = rl__region_check(w, p->region, p->ptr, p->len);
			if (rc)
				return rc;
		} else if (p->region != RL_PART_COPY && p->region != RL_PART_PINNED) {
			return -EINVAL;
		}
		total += p->len;
	}
	if (total > (uint64_t)(UINT32_MAX - c->io.unsent))
		return -ENOBUFS;

	if (c->tls) {
		/* The record layer is in userspace: every part is encrypted
		 * now, so a guarded part's memory is free at once. */
		for (int i = 0; i < n; i++) {
			const struct rl_part *p = &parts[i];
			int rc = p->len ? rl_conn_send(w, slot, gen, p->ptr, p->len) : 0;
			if (rc)
				return rc; /* parts before it were queued (as -ENOMEM) */
			if (p->region != RL_PART_COPY)
				rl__emit(w, RL_EV_GUARD, 0, (uint32_t)p->region, 0, p->token);
		}
		return wait ? n : 0;
	}
	uint32_t thr = w->cfg.zc_threshold;
	int zc_ok = (w->features & RL_FEAT_SENDMSG_ZC) != 0;
	uint32_t big_copy = w->pool.slot_size / 2;
	struct rl_slab_entry *e = NULL;
	for (int i = 0; i < n; i++) {
		const struct rl_part *p = &parts[i];
		int guarded_kind = p->region != RL_PART_COPY;
		if (p->len == 0) { /* nothing to send; a guard is free at once */
			if (guarded_kind)
				rl__emit(w, RL_EV_GUARD, 0, (uint32_t)p->region, 0, p->token);
			continue;
		}
		if (guarded_kind && zc_ok && p->len >= thr) {
			if (!e || !rl__slab_guard_fits(e)) {
				finish(w, c, e);
				e = rl__slab_alloc(&w->slab);
			}
			if (!e && wait) {
				/* Backpressure, not a copy: the caller waits for an
				 * entry and sends parts[i..] then. Everything before
				 * it is queued (finish above), in order. */
				w->m.slab_waits++;
				return i;
			}
			if (e) {
				rl__slab_add_guarded(w, e, p);
				continue;
			}
			w->m.zc_fallbacks++; /* slab full: copy instead, still in order */
		}
		/* copied part: gathered into the entry's copy chunk */
		if (p->len > big_copy) {
			finish(w, c, e);
			e = NULL;
		} else if (!e || !rl__slab_copy_fits(e, p->len)) {
			finish(w, c, e);
			e = rl__slab_alloc(&w->slab);
		}
		if (!e) {
			int rc = rl_conn_send(w, c->slot, c->io.gen, p->ptr, p->len);
			if (rc)
				return rc;
		} else if (rl__slab_add_copy(w, e, p->ptr, p->len)) {
			finish(w, c, e); /* what it holds goes out and is released as usual */
			return -ENOMEM;
		}
		if (guarded_kind) /* copied: its memory is free again at once */
			rl__emit(w, RL_EV_GUARD, 0, (uint32_t)p->region, 0, p->token);
	}
	finish(w, c, e);
	return wait ? n : 0;
}

int rl_conn_sendv(struct rl_worker *w, uint32_t slot, uint32_t gen, const struct rl_part *parts,
		  int n)
{
	return sendv(w, slot, gen, parts, n, 0);
}

int rl_conn_sendv_upto(struct rl_worker *w, uint32_t slot, uint32_t gen, const struct rl_part *parts,
		       int n)
{
	return sendv(w, slot, gen, parts, n, 1);
}

/* Whether a sendfile may go out now, from this call: the inline way is on,
 * the connection has a plain descriptor (made non-blocking here) and
 * nothing queued or in flight that the bytes would overtake. */
static int sendfile_now_ok(struct rl_worker *w, struct rl_conn *c)
{
	if (!(w->features & RL_FEAT_CACHESTAT) || c->rawfd < 0 || c->sq_head ||
	    (c->flags & (RL_CONN_F_SEND_INFLIGHT | RL_CONN_F_CONNECTING | RL_CONN_F_SHUT_PENDING |
			 RL_CONN_F_SHUT_INFLIGHT | RL_CONN_F_NO_RAWFD)))
		return 0;
	if (!(c->flags & RL_CONN_F_RAW_NB)) {
		if (rl__sendfile_nonblock(c->rawfd))
			return 0;
		c->flags |= RL_CONN_F_RAW_NB;
	}
	return 1;
}

/* A sendfile node: the file's bytes go to the socket by sendfile(2) from
 * the worker when the page cache has them, else by splices the ring runs
 * (sendfile.c; conn.c's queue runs the steps), ordered with everything else
 * queued. Here because it is another kind of part the caller queues:
 * conn.c owns the queue, pipecache.c the pipes, and neither calls back. An
 * inline node takes a pipe only when it must fill one; the other kind
 * takes it now, so that running out of descriptors is this call's error.
 *
 * When nothing is queued the bytes (the prefix, then the file) first go
 * out from this call, as far as the socket takes them and the page cache
 * holds them: a small response then costs no queue node, no duplicated
 * descriptor and no ring operation, as nginx's writev and sendfile. Only
 * what is left is queued. */
int rl_conn_sendfile_with(struct rl_worker *w, uint32_t slot, uint32_t gen, const void *prefix,
			  uint32_t prefix_len, int fd, int64_t offset, uint32_t count)
{
	int err;
	struct rl_conn *c = rl__conn_sendable(w, slot, gen, &err);
	if (!c)
		return err;
	if (fd < 0 || offset < 0 || (prefix_len && !prefix))
		return -EINVAL;
	if (c->tls || !(w->features & RL_FEAT_SPLICE))
		return -EOPNOTSUPP;
	if ((uint64_t)count + prefix_len > (uint64_t)(UINT32_MAX - c->io.unsent))
		return -ENOBUFS;
	const uint8_t *pre = prefix;
	if ((count || prefix_len) && sendfile_now_ok(w, c)) {
		uint32_t moved = 0;
		int stop = 0;
		if (prefix_len) {
			ssize_t n = send(c->rawfd, pre, prefix_len,
					 MSG_NOSIGNAL | MSG_DONTWAIT | (count ? MSG_MORE : 0));
			if (n < 0 && errno != EAGAIN && errno != EINTR)
				stop = -errno;
			else if (n > 0)
				moved = (uint32_t)n;
		}
		if (!stop && moved == prefix_len && count) {
			struct rl_sendfile now = { .fd = fd, .pipe = { -1, -1 }, .off = offset, .left = count };
			int n = rl__sendfile_push(c->rawfd, &now, &stop);
			offset = now.off;
			count = now.left;
			moved += (uint32_t)n;
		}
		if (moved) {
			c->close_progress = w->now;
			w->m.bytes_out += moved;
		}
		if (stop < 0 && stop != -EAGAIN) {
			c->io.serr = stop; /* as a failed queued send would */
			return stop;
		}
		uint32_t p = moved < prefix_len ? moved : prefix_len;
		pre += p;
		prefix_len -= p;
	}
	if (prefix_len) {
		err = rl_conn_send(w, slot, gen, pre, prefix_len);
		if (err)
			return err;
	}
	if (count == 0)
		return 0;
	struct rl_sendfile *sf = calloc(1, sizeof(*sf));
	if (!sf)
		return -ENOMEM;
	sf->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	if (sf->fd < 0) {
		err = -errno;
		free(sf);
		return err;
	}
	sf->pipe[0] = sf->pipe[1] = -1;
	sf->inl = (w->features & RL_FEAT_CACHESTAT) && !(c->flags & RL_CONN_F_NO_RAWFD) &&
		  (c->rawfd >= 0 || (w->features & RL_FEAT_FD_INSTALL));
	err = sf->inl ? 0 : rl__pipe_get(w, sf->pipe, &sf->pipe_size);
	if (err) {
		close(sf->fd);
		free(sf);
		return err;
	}
	sf->off = offset;
	sf->left = count;
	sf->node.len = count;
	sf->node.pool_slot = -1;
	sf->node.sf = sf;
	rl__conn_enqueue(w, c, &sf->node);
	return 0;
}

int rl_conn_sendfile(struct rl_worker *w, uint32_t slot, uint32_t gen, int fd, int64_t offset,
		     uint32_t count)
{
	return rl_conn_sendfile_with(w, slot, gen, NULL, 0, fd, offset, count);
}
