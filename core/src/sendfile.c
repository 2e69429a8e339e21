/* SPDX-License-Identifier: MIT */
/*
 * sendfile.c - the steps of a sendfile node on a connection's send queue
 * (conn.c runs the queue, conn_sendfile.c the node's completions; this
 * file prepares the node's operations and makes its plain system calls,
 * and never submits or completes).
 *
 * Two ways to move a file's bytes to the socket:
 *
 * - Inline (RL_FEAT_CACHESTAT): bytes the page cache already holds go out
 *   by sendfile(2) on the connection's plain descriptor, made non-blocking,
 *   from the worker itself: what nginx does, without its risk, since
 *   cachestat(2) says first whether any page would have to come from the
 *   disk. Those that would are spliced file -> pipe by the ring (an io-wq
 *   thread waits for the disk, not the worker), and the pipe drained by
 *   splice(2) inline. A full socket is waited for with a POLL_ADD.
 *   Why: every IORING_OP_SPLICE runs on an io-wq thread (the kernel forces
 *   it async), two thread hops per pipeful; for a 64 KiB file that cost
 *   more than the whole of nginx's response.
 * - Ring splices only (no cachestat, no plain descriptor): file -> pipe ->
 *   socket as two linked IORING_OP_SPLICEs per pipeful.
 *
 * A connection whose descriptor was made non-blocking never takes the
 * second way again: a splice to a non-blocking socket returns -EAGAIN
 * instead of waiting (io_uring's own SEND and RECV ignore the flag).
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/sendfile.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"

/* cachestat(2) (6.5), not in Debian 12's headers: the UAPI's layout. */
#ifndef __NR_cachestat
#define __NR_cachestat 451
#endif
struct rl_cachestat_range {
	uint64_t off;
	uint64_t len;
};
struct rl_cachestat {
	uint64_t nr_cache;
	uint64_t nr_dirty;
	uint64_t nr_writeback;
	uint64_t nr_evicted;
	uint64_t nr_recently_evicted;
};

/* At most this much is checked and sent per sendfile(2): cachestat walks
 * the range's pages, so a 64 MiB file is not walked whole on every call. */
#define RL_SF_WINDOW (1024u * 1024u)

int rl__cachestat_ok(void)
{
	struct rl_cachestat_range r = { 0, 1 };
	struct rl_cachestat cs;
	/* -1 is no descriptor: EBADF where the call exists, ENOSYS where not */
	return syscall(__NR_cachestat, -1, &r, &cs, 0) < 0 && errno == EBADF;
}

/* Whether every page of [off, off + len) is in the page cache. A failure
 * (a file the call does not know) says no: the ring's splice reads it. */
static int cached(int fd, int64_t off, uint32_t len)
{
	static long page;
	if (!page)
		page = sysconf(_SC_PAGESIZE);
	struct rl_cachestat_range r = { (uint64_t)off, len };
	struct rl_cachestat cs;
	if (syscall(__NR_cachestat, fd, &r, &cs, 0) < 0)
		return 0;
	uint64_t first = (uint64_t)off / (uint64_t)page;
	uint64_t last = ((uint64_t)off + len - 1) / (uint64_t)page;
	return cs.nr_cache >= last - first + 1;
}

int rl__sendfile_push(int sock, struct rl_sendfile *sf, int *stop)
{
	uint32_t total = 0;
	*stop = 0;
	while ((sf->inpipe || sf->left) && total < (1u << 30)) {
		ssize_t n;
		uint32_t want;
		if (sf->inpipe) {
			want = sf->inpipe;
			n = splice(sf->pipe[0], NULL, sock, NULL, want,
				   SPLICE_F_NONBLOCK | (sf->left ? SPLICE_F_MORE : 0));
			if (n > 0)
				sf->inpipe -= (uint32_t)n;
		} else {
			want = sf->left < RL_SF_WINDOW ? sf->left : RL_SF_WINDOW;
			if (!cached(sf->fd, sf->off, want)) {
				*stop = RL_SF_STOP_FILL;
				return (int)total;
			}
			off_t o = sf->off;
			n = sendfile(sock, sf->fd, &o, want);
			if (n == 0) { /* the file ends before count: truncated */
				*stop = -ENODATA;
				return (int)total;
			}
			if (n > 0) {
				sf->off += n;
				sf->left -= (uint32_t)n;
			}
		}
		if (n < 0) {
			if (errno == EINTR)
				continue;
			*stop = errno == EWOULDBLOCK ? -EAGAIN : -errno;
			return (int)total;
		}
		total += (uint32_t)n;
		/* short: the socket's buffer is full (the bytes were there), so
		 * wait for room now rather than learn it from one more call */
		if ((uint32_t)n < want && (sf->inpipe || sf->left)) {
			*stop = -EAGAIN;
			return (int)total;
		}
	}
	return (int)total;
}

int rl__sendfile_nonblock(int sock)
{
	int fl = fcntl(sock, F_GETFL);
	if (fl < 0 || (!(fl & O_NONBLOCK) && fcntl(sock, F_SETFL, fl | O_NONBLOCK) < 0))
		return -errno;
	return 0;
}

void rl__sendfile_prep_fill(struct rl_worker *w, struct io_uring_sqe *sqe, struct rl_sendfile *sf)
{
	w->m.sendfile_fills++;
	uint32_t n = sf->left < sf->pipe_size ? sf->left : sf->pipe_size;
	io_uring_prep_splice(sqe, sf->fd, sf->off, sf->pipe[1], -1, n, 0);
	sf->step = RL_SF_FILL;
}

void rl__sendfile_prep_wait(struct io_uring_sqe *sqe, const struct rl_conn *c, struct rl_sendfile *sf)
{
	io_uring_prep_poll_add(sqe, (int)c->slot, POLLOUT);
	sqe->flags |= IOSQE_FIXED_FILE;
	sf->step = RL_SF_POLL;
}

/* A ring-splices node's next splice: drain what the pipe holds into the
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
	w->m.sendfile_fills++;
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
 * descriptor closes, its pipe (if it took one) is cached unless bytes
 * are left in it. */
void rl__sendfile_free(struct rl_worker *w, struct rl_sendfile *sf)
{
	close(sf->fd);
	if (sf->pipe[0] >= 0)
		rl__pipe_put(w, sf->pipe, sf->inpipe != 0);
	free(sf);
}
