/* SPDX-License-Identifier: MIT */
/*
 * fileop.c - file operations through the ring (rl_fs_*, rl_file_*): the
 * request records, their submission and their one ending.
 *
 * A request record per operation holds everything the kernel reads after
 * the call returns (the path copies, the iovecs, the statx buffer), so the
 * caller's only duty is the data buffer it named. Its user_data is
 * (RL_OP_FILE, request index, generation): a completion for a freed record
 * is stale. Every request ends in exactly one RL_EV_FILE.
 *
 * The probe at start (ring.c) says which operations the ring has
 * (w->fs.ring_ops); the others go to the thread pool (fspool.c), whose
 * finished requests every poll takes (rl__fs_pool_reap) and ends here, so
 * results arrive through the one event sink either way. Teardown stops
 * the pool (its threads finish what they hold: a read of a regular file
 * ends) and ends what it finished.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fsreq.h"

/* ---- requests ---- */

static struct rl_fsreq *req_new(struct rl_worker *w, int op, uint32_t token)
{
	struct rl_fs *fs = &w->fs;
	struct rl_fsreq *r;
	if (fs->nfree) {
		r = fs->reqs[fs->free[--fs->nfree]];
	} else {
		if (fs->nreqs >= RL_MAX_FILE_OPS)
			return NULL;
		if (!fs->reqs) {
			fs->reqs = calloc(RL_MAX_FILE_OPS, sizeof(*fs->reqs));
			fs->free = calloc(RL_MAX_FILE_OPS, sizeof(*fs->free));
			if (!fs->reqs || !fs->free) {
				free(fs->reqs);
				free(fs->free);
				fs->reqs = NULL;
				fs->free = NULL;
				return NULL;
			}
		}
		r = calloc(1, sizeof(*r));
		if (!r)
			return NULL;
		r->idx = fs->nreqs;
		fs->reqs[fs->nreqs++] = r;
	}
	uint32_t idx = r->idx, gen = r->gen;
	memset(r, 0, sizeof(*r));
	r->idx = idx;
	r->gen = gen;
	r->used = 1;
	r->op = (uint8_t)op;
	r->token = token;
	r->fd = -1;
	r->region = -1;
	r->off = -1;
	return r;
}

static void req_free(struct rl_worker *w, struct rl_fsreq *r)
{
	free(r->path);
	free(r->path2);
	free(r->iov);
	r->path = r->path2 = NULL;
	r->iov = NULL;
	r->used = 0;
	r->gen++;
	w->fs.free[w->fs.nfree++] = r->idx;
}

static void fill_stat(struct rl_stat *o, const struct statx *x)
{
	memset(o, 0, sizeof(*o));
	o->size = x->stx_size;
	o->blocks = x->stx_blocks;
	o->ino = x->stx_ino;
	o->dev = ((uint64_t)x->stx_dev_major << 32) | x->stx_dev_minor;
	o->mtime_sec = x->stx_mtime.tv_sec;
	o->mtime_nsec = x->stx_mtime.tv_nsec;
	o->atime_sec = x->stx_atime.tv_sec;
	o->atime_nsec = x->stx_atime.tv_nsec;
	o->ctime_sec = x->stx_ctime.tv_sec;
	o->ctime_nsec = x->stx_ctime.tv_nsec;
	o->mode = x->stx_mode;
	o->nlink = x->stx_nlink;
	o->uid = x->stx_uid;
	o->gid = x->stx_gid;
	o->blksize = x->stx_blksize;
	if (x->stx_mask & STATX_DIOALIGN) {
		uint32_t a[2];
		RL_STX_DIO(x, a);
		o->dio_mem_align = a[0];
		o->dio_offset_align = a[1];
	}
}

/* The one way a request ends: its event, then the record is free. */
static void finish(struct rl_worker *w, struct rl_fsreq *r, int32_t res)
{
	if (r->op == RL_FSOP_STAT && res == 0 && r->out)
		fill_stat(r->out, &r->stx);
	/* teardown drops events: an open nobody will hear of is closed here */
	if (r->op == RL_FSOP_OPEN && res >= 0 && w->destroying) {
		close(res);
		res = -ECANCELED;
	}
	w->fs.live--;
	w->m.fs_inflight = w->fs.live;
	rl__emit_aux(w, RL_EV_FILE, res, r->idx, 0, r->token, r->aux);
	req_free(w, r);
}

void rl__fs_on_cqe(struct rl_worker *w, struct io_uring_cqe *cqe)
{
	uint32_t idx = rl_ud_index(cqe->user_data);
	w->m.ops_inflight--;
	if (idx >= w->fs.nreqs || !w->fs.reqs[idx]->used ||
	    w->fs.reqs[idx]->gen != rl_ud_gen(cqe->user_data) || w->fs.reqs[idx]->pooled) {
		w->m.stale_cqes++;
		return;
	}
	w->m.fs_ops++;
	finish(w, w->fs.reqs[idx], cqe->res);
}

/* What the pool finished, delivered as the ring's completions are. */
void rl__fs_pool_reap(struct rl_worker *w)
{
	struct rl_fsreq *r = rl__fspool_take(w);
	while (r) {
		struct rl_fsreq *n = r->next;
		r->pooled = 0;
		finish(w, r, r->res);
		r = n;
	}
}

void rl__fs_fini(struct rl_worker *w)
{
	rl__fspool_stop(w);
	if (w->fs.pool) {
		w->destroying = 1;
		rl__fs_pool_reap(w); /* opens among them are closed */
		rl__fspool_free(w);
	}
	rl__pipe_fini(w);
	for (uint32_t i = 0; i < w->fs.nreqs; i++) {
		struct rl_fsreq *r = w->fs.reqs[i];
		free(r->path);
		free(r->path2);
		free(r->iov);
		free(r);
	}
	free(w->fs.reqs);
	free(w->fs.free);
	memset(&w->fs, 0, sizeof(w->fs));
}

/* ---- submission ---- */

static int submit(struct rl_worker *w, struct rl_fsreq *r)
{
	w->fs.live++;
	w->m.fs_inflight = w->fs.live;
	int ring = r->op != RL_FSOP_LISTDIR && (w->fs.ring_ops & (1u << r->op));
	if (!ring) {
		int rc = rl__fspool_submit(w, r);
		if (rc) {
			w->fs.live--;
			w->m.fs_inflight = w->fs.live;
			req_free(w, r);
			return rc;
		}
		return (int)r->idx;
	}
	struct io_uring_sqe *sqe = rl__sqe(w);
	if (!sqe) {
		w->fs.live--;
		w->m.fs_inflight = w->fs.live;
		req_free(w, r);
		return -EBUSY;
	}
	switch (r->op) {
	case RL_FSOP_OPEN:
		io_uring_prep_openat(sqe, AT_FDCWD, r->path, r->flags | O_CLOEXEC, r->mode);
		break;
	case RL_FSOP_READ:
		io_uring_prep_read(sqe, r->fd, r->buf, r->len, (uint64_t)r->off);
		break;
	case RL_FSOP_WRITE:
		io_uring_prep_write(sqe, r->fd, r->buf, r->len, (uint64_t)r->off);
		break;
	case RL_FSOP_READ_FIXED:
		io_uring_prep_read_fixed(sqe, r->fd, r->buf, r->len, (uint64_t)r->off, r->region);
		break;
	case RL_FSOP_WRITE_FIXED:
		io_uring_prep_write_fixed(sqe, r->fd, r->buf, r->len, (uint64_t)r->off, r->region);
		break;
	case RL_FSOP_READV:
		io_uring_prep_readv(sqe, r->fd, r->iov, r->niov, (uint64_t)r->off);
		break;
	case RL_FSOP_WRITEV:
		io_uring_prep_writev(sqe, r->fd, r->iov, r->niov, (uint64_t)r->off);
		break;
	case RL_FSOP_FSYNC:
		io_uring_prep_fsync(sqe, r->fd, r->flags ? IORING_FSYNC_DATASYNC : 0);
		break;
	case RL_FSOP_STAT:
		io_uring_prep_statx(sqe, r->path ? AT_FDCWD : r->fd, r->path ? r->path : "", r->flags,
				    STATX_BASIC_STATS | STATX_DIOALIGN, &r->stx);
		break;
	case RL_FSOP_UNLINK:
		io_uring_prep_unlinkat(sqe, AT_FDCWD, r->path, r->flags);
		break;
	case RL_FSOP_RENAME:
		io_uring_prep_renameat(sqe, AT_FDCWD, r->path, AT_FDCWD, r->path2, 0);
		break;
	case RL_FSOP_MKDIR:
		io_uring_prep_mkdirat(sqe, AT_FDCWD, r->path, r->mode);
		break;
	case RL_FSOP_CLOSE:
		io_uring_prep_close(sqe, r->fd);
		break;
	}
	io_uring_sqe_set_data64(sqe, rl_ud_pack(RL_OP_FILE, r->idx, r->gen));
	w->m.ops_inflight++;
	return (int)r->idx;
}

static struct rl_fsreq *req_path(struct rl_worker *w, int op, const char *path, uint32_t token,
				 int *err)
{
	if (!path) {
		*err = -EINVAL;
		return NULL;
	}
	struct rl_fsreq *r = req_new(w, op, token);
	if (!r) {
		*err = -EBUSY;
		return NULL;
	}
	r->path = strdup(path);
	if (!r->path) {
		req_free(w, r);
		*err = -ENOMEM;
		return NULL;
	}
	return r;
}

static int open_flags(int f)
{
	static const struct {
		int rl, os;
	} map[] = {
		{ RL_O_CREAT, O_CREAT },     { RL_O_EXCL, O_EXCL },
		{ RL_O_TRUNC, O_TRUNC },     { RL_O_APPEND, O_APPEND },
		{ RL_O_DIRECT, O_DIRECT },   { RL_O_DIRECTORY, O_DIRECTORY },
		{ RL_O_NOFOLLOW, O_NOFOLLOW },
	};
	int acc = f & 3, os = acc == RL_O_WRONLY ? O_WRONLY : acc == RL_O_RDWR ? O_RDWR : O_RDONLY;
	if (acc == 3 || (f & ~511))
		return -1;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (f & map[i].rl)
			os |= map[i].os;
	return os;
}

int rl_fs_open(struct rl_worker *w, const char *path, int flags, uint32_t mode, uint32_t token)
{
	int err, os = open_flags(flags);
	if (os < 0)
		return -EINVAL;
	struct rl_fsreq *r = req_path(w, RL_FSOP_OPEN, path, token, &err);
	if (!r)
		return err;
	r->flags = os;
	r->mode = mode;
	return submit(w, r);
}

int rl_fs_open_now(struct rl_worker *w, const char *path, int flags)
{
	int os = open_flags(flags);
	if (os < 0 || !path)
		return -EINVAL;
	/* where the ring would go async at once (a create or truncate writes),
	 * or the ring has no OPENAT (the pool runs opens: its tests say so) */
	if ((os & (O_CREAT | O_TRUNC)) || !(w->fs.ring_ops & (1u << RL_FSOP_OPEN)) ||
	    w->fs.no_open_now)
		return -EAGAIN;
	struct open_how how = { .flags = (uint64_t)(os | O_CLOEXEC), .resolve = RESOLVE_CACHED };
	long fd = syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof(how));
	if (fd >= 0) {
		w->m.fs_ops++;
		return (int)fd;
	}
	int err = errno;
	if (err == ENOSYS) /* before 5.6 (5.6-5.11 lack RESOLVE_CACHED: EINVAL below) */
		w->fs.no_open_now = 1;
	/* EAGAIN: a component is not cached, or needs revalidation; EINVAL
	 * may be the resolve flag itself: let the ring's open decide */
	if (err == EAGAIN || err == EINVAL || err == ENOSYS)
		return -EAGAIN;
	w->m.fs_ops++;
	return -err;
}

static int rw(struct rl_worker *w, int op, int fd, void *buf, uint32_t len, int64_t offset,
	      int region, uint32_t token)
{
	if (fd < 0 || (len && !buf) || offset < -1)
		return -EINVAL;
	if (region >= 0) {
		int rc = rl__region_check(w, region, buf, len);
		if (rc)
			return rc;
		/* an unregistered region (no sparse table) reads plainly */
		if (w->regions[region].registered)
			op = op == RL_FSOP_READ ? RL_FSOP_READ_FIXED : RL_FSOP_WRITE_FIXED;
	}
	struct rl_fsreq *r = req_new(w, op, token);
	if (!r)
		return -EBUSY;
	r->fd = fd;
	r->buf = buf;
	r->len = len;
	r->off = offset;
	r->region = region;
	return submit(w, r);
}

int rl_file_read(struct rl_worker *w, int fd, void *buf, uint32_t len, int64_t offset, int region,
		 uint32_t token)
{
	return rw(w, RL_FSOP_READ, fd, buf, len, offset, region, token);
}

int rl_file_write(struct rl_worker *w, int fd, const void *buf, uint32_t len, int64_t offset,
		  int region, uint32_t token)
{
	return rw(w, RL_FSOP_WRITE, fd, (void *)buf, len, offset, region, token);
}

static int rwv(struct rl_worker *w, int op, int fd, const struct rl_part *parts, int n,
	       int64_t offset, uint32_t token)
{
	if (fd < 0 || n < 1 || n > RL_FILE_MAX_IOV || !parts || offset < -1)
		return -EINVAL;
	struct rl_fsreq *r = req_new(w, op, token);
	if (!r)
		return -EBUSY;
	r->iov = malloc((size_t)n * sizeof(*r->iov));
	if (!r->iov) {
		req_free(w, r);
		return -ENOMEM;
	}
	for (int i = 0; i < n; i++) {
		r->iov[i].iov_base = (void *)parts[i].ptr;
		r->iov[i].iov_len = parts[i].len;
	}
	r->niov = (uint32_t)n;
	r->fd = fd;
	r->off = offset;
	return submit(w, r);
}

int rl_file_readv(struct rl_worker *w, int fd, const struct rl_part *parts, int n, int64_t offset,
		  uint32_t token)
{
	return rwv(w, RL_FSOP_READV, fd, parts, n, offset, token);
}

int rl_file_writev(struct rl_worker *w, int fd, const struct rl_part *parts, int n, int64_t offset,
		   uint32_t token)
{
	return rwv(w, RL_FSOP_WRITEV, fd, parts, n, offset, token);
}

int rl_file_fsync(struct rl_worker *w, int fd, int datasync, uint32_t token)
{
	if (fd < 0)
		return -EINVAL;
	struct rl_fsreq *r = req_new(w, RL_FSOP_FSYNC, token);
	if (!r)
		return -EBUSY;
	r->fd = fd;
	r->flags = datasync != 0;
	return submit(w, r);
}

int rl_file_stat(struct rl_worker *w, int fd, struct rl_stat *out, uint32_t token)
{
	if (fd < 0 || !out)
		return -EINVAL;
	struct rl_fsreq *r = req_new(w, RL_FSOP_STAT, token);
	if (!r)
		return -EBUSY;
	r->fd = fd;
	r->flags = AT_EMPTY_PATH;
	r->out = out;
	return submit(w, r);
}

int rl_file_stat_now(int fd, struct rl_stat *out)
{
	struct statx x;
	if (fd < 0 || !out)
		return -EINVAL;
	if (statx(fd, "", AT_EMPTY_PATH, STATX_BASIC_STATS | STATX_DIOALIGN, &x) < 0)
		return -errno;
	fill_stat(out, &x);
	return 0;
}

int rl_file_close(struct rl_worker *w, int fd, uint32_t token)
{
	if (fd < 0)
		return -EINVAL;
	struct rl_fsreq *r = req_new(w, RL_FSOP_CLOSE, token);
	if (!r)
		return -EBUSY;
	r->fd = fd;
	return submit(w, r);
}

int rl_file_close_now(int fd)
{
	return close(fd) < 0 ? -errno : 0;
}

int rl_fs_stat(struct rl_worker *w, const char *path, int nofollow, struct rl_stat *out,
	       uint32_t token)
{
	int err;
	if (!out)
		return -EINVAL;
	struct rl_fsreq *r = req_path(w, RL_FSOP_STAT, path, token, &err);
	if (!r)
		return err;
	r->flags = nofollow ? AT_SYMLINK_NOFOLLOW : 0;
	r->out = out;
	return submit(w, r);
}

int rl_fs_unlink(struct rl_worker *w, const char *path, int rmdir, uint32_t token)
{
	int err;
	struct rl_fsreq *r = req_path(w, RL_FSOP_UNLINK, path, token, &err);
	if (!r)
		return err;
	r->flags = rmdir ? AT_REMOVEDIR : 0;
	return submit(w, r);
}

int rl_fs_rename(struct rl_worker *w, const char *from, const char *to, uint32_t token)
{
	int err;
	if (!to)
		return -EINVAL;
	struct rl_fsreq *r = req_path(w, RL_FSOP_RENAME, from, token, &err);
	if (!r)
		return err;
	r->path2 = strdup(to);
	if (!r->path2) {
		req_free(w, r);
		return -ENOMEM;
	}
	return submit(w, r);
}

int rl_fs_mkdir(struct rl_worker *w, const char *path, uint32_t mode, uint32_t token)
{
	int err;
	struct rl_fsreq *r = req_path(w, RL_FSOP_MKDIR, path, token, &err);
	if (!r)
		return err;
	r->mode = mode;
	return submit(w, r);
}

int rl_fs_listdir(struct rl_worker *w, const char *path, void *buf, uint32_t cap, uint32_t token)
{
	int err;
	if (cap && !buf)
		return -EINVAL;
	struct rl_fsreq *r = req_path(w, RL_FSOP_LISTDIR, path, token, &err);
	if (!r)
		return err;
	r->buf = buf;
	r->len = cap;
	return submit(w, r);
}

int rl_fs_cancel(struct rl_worker *w, int id, uint32_t token)
{
	if (id < 0 || (uint32_t)id >= w->fs.nreqs)
		return -ENOENT;
	struct rl_fsreq *r = w->fs.reqs[id];
	if (!r->used || r->token != token)
		return -ENOENT;
	if (r->pooled) {
		/* not started: the thread skips it; running: it ends by itself */
		__atomic_store_n(&r->cancel, 1, __ATOMIC_RELAXED);
		return 0;
	}
	if (r->cancel)
		return 0;
	struct io_uring_sqe *sqe = rl__sqe(w);
	if (!sqe)
		return -EBUSY;
	r->cancel = 1;
	io_uring_prep_cancel64(sqe, rl_ud_pack(RL_OP_FILE, r->idx, r->gen), 0);
	io_uring_sqe_set_data64(sqe, rl_ud_pack(RL_OP_UNOWNED, RL_UD_INDEX_MAX, 0));
	w->m.ops_inflight++;
	return 0;
}

