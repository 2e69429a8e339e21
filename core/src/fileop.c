/* SPDX-License-Identifier: MIT */
/*
 * fileop.c - file operations through the ring (rl_fs_*, rl_file_*), the
 * fallback thread pool for what the kernel's ring lacks, and the pipes
 * sendfile splices through.
 *
 * A request record per operation holds everything the kernel reads after
 * the call returns (the path copies, the iovecs, the statx buffer), so the
 * caller's only duty is the data buffer it named. Its user_data is
 * (RL_OP_FILE, request index, generation): a completion for a freed record
 * is stale. Every request ends in exactly one RL_EV_FILE.
 *
 * The pool: the probe at start (ring.c) says which operations the ring has
 * (w->fs.ring_ops); the others, listdir (getdents has no ring operation)
 * and everything under RINGLINE_DISABLE_FEATURES=fs_ring run as plain
 * system calls on up to RL_FS_THREADS threads of the worker, started on
 * first use. A thread puts the finished request on the done list and
 * writes the worker's wake eventfd; every poll takes the done list
 * (rl__fs_pool_reap) and emits the events, so results arrive through the
 * one event sink either way. Teardown waits for the pool's work (a read
 * of a regular file ends) and joins its threads.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include "internal.h"

/* glibc takes struct statx from <linux/stat.h> when the kernel headers
 * have it (then STATX_DIOALIGN and the fields exist); its own older copy
 * ends in padding where the kernel puts them, after stx_mnt_id. */
#ifdef STATX_DIOALIGN
#define RL_STX_DIO(x, a) ((a)[0] = (x)->stx_dio_mem_align, (a)[1] = (x)->stx_dio_offset_align)
#else
#define STATX_DIOALIGN 0x00002000U
#define RL_STX_DIO(x, a) memcpy((a), (const uint8_t *)&(x)->__statx_pad2[1], 2 * sizeof(uint32_t))
#endif

struct rl_fsreq {
	struct rl_fsreq *next;  /* pool queue / done list */
	uint32_t idx;
	uint32_t gen;
	uint32_t token;
	uint8_t op;             /* enum rl_fsop */
	uint8_t used;
	uint8_t pooled;         /* on the pool (else in the ring) */
	uint8_t cancel;         /* rl_fs_cancel asked (pool: skip it if not started) */
	int fd;
	int flags;
	uint32_t mode;
	char *path;
	char *path2;
	void *buf;
	uint32_t len;
	int region;
	int64_t off;
	struct iovec *iov;
	uint32_t niov;
	struct rl_stat *out;
	struct statx stx;
	int32_t res;
	uint32_t aux;
};

struct rl_fspool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct rl_fsreq *qhead, *qtail; /* waiting to run */
	struct rl_fsreq *done;          /* finished, for the worker's next poll */
	pthread_t th[RL_FS_THREADS];
	int nth;
	int idle;
	int stop;
	int queued;                     /* waiting + running: teardown waits for 0 */
	int wake_fd;
};

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

/* ---- the pool ---- */

static int run_listdir(struct rl_fsreq *r)
{
	DIR *d = opendir(r->path);
	if (!d)
		return -errno;
	uint64_t need = 0;
	uint8_t *out = r->buf;
	errno = 0;
	struct dirent *de;
	while ((de = readdir(d))) {
		if (de->d_name[0] == '.' && (!de->d_name[1] || (de->d_name[1] == '.' && !de->d_name[2])))
			continue;
		size_t n = strlen(de->d_name);
		char t = de->d_type == DT_REG ? 'f' : de->d_type == DT_DIR ? 'd'
			 : de->d_type == DT_LNK ? 'l' : '?';
		if (need + n + 2 <= r->len) {
			out[need] = (uint8_t)t;
			memcpy(out + need + 1, de->d_name, n + 1);
		}
		need += n + 2;
	}
	int err = errno;
	closedir(d);
	if (err)
		return -err;
	if (need > r->len) {
		r->aux = need > UINT32_MAX ? UINT32_MAX : (uint32_t)need;
		return -ERANGE;
	}
	return (int)need;
}

static int64_t run_sync(struct rl_fsreq *r)
{
	ssize_t n;
	/* the ring ignores the offset of a file that cannot seek (a FIFO,
	 * a character device): so does the pool, as read(2) would */
	if (r->off >= 0 && r->op != RL_FSOP_OPEN && r->fd >= 0 && lseek(r->fd, 0, SEEK_CUR) < 0 &&
	    errno == ESPIPE)
		r->off = -1;
	switch (r->op) {
	case RL_FSOP_OPEN:
		n = openat(AT_FDCWD, r->path, r->flags | O_CLOEXEC, r->mode);
		break;
	case RL_FSOP_READ:
	case RL_FSOP_READ_FIXED:
		n = r->off < 0 ? read(r->fd, r->buf, r->len) : pread(r->fd, r->buf, r->len, r->off);
		break;
	case RL_FSOP_WRITE:
	case RL_FSOP_WRITE_FIXED:
		n = r->off < 0 ? write(r->fd, r->buf, r->len) : pwrite(r->fd, r->buf, r->len, r->off);
		break;
	case RL_FSOP_READV:
		n = r->off < 0 ? readv(r->fd, r->iov, (int)r->niov)
			       : preadv(r->fd, r->iov, (int)r->niov, r->off);
		break;
	case RL_FSOP_WRITEV:
		n = r->off < 0 ? writev(r->fd, r->iov, (int)r->niov)
			       : pwritev(r->fd, r->iov, (int)r->niov, r->off);
		break;
	case RL_FSOP_FSYNC:
		n = r->flags ? fdatasync(r->fd) : fsync(r->fd);
		break;
	case RL_FSOP_STAT:
		n = statx(r->path ? AT_FDCWD : r->fd, r->path ? r->path : "", r->flags,
			  STATX_BASIC_STATS | STATX_DIOALIGN, &r->stx);
		break;
	case RL_FSOP_UNLINK:
		n = unlinkat(AT_FDCWD, r->path, r->flags);
		break;
	case RL_FSOP_RENAME:
		n = renameat(AT_FDCWD, r->path, AT_FDCWD, r->path2);
		break;
	case RL_FSOP_MKDIR:
		n = mkdirat(AT_FDCWD, r->path, r->mode);
		break;
	case RL_FSOP_CLOSE:
		n = close(r->fd);
		break;
	case RL_FSOP_LISTDIR:
		return run_listdir(r);
	default:
		return -EINVAL;
	}
	return n < 0 ? -errno : n;
}

static void *pool_main(void *arg)
{
	struct rl_fspool *p = arg;
	pthread_mutex_lock(&p->lock);
	for (;;) {
		while (!p->qhead && !p->stop) {
			p->idle++;
			pthread_cond_wait(&p->cond, &p->lock);
			p->idle--;
		}
		if (!p->qhead)
			break; /* stopping, nothing left */
		struct rl_fsreq *r = p->qhead;
		p->qhead = r->next;
		if (!p->qhead)
			p->qtail = NULL;
		int cancel = __atomic_load_n(&r->cancel, __ATOMIC_RELAXED);
		pthread_mutex_unlock(&p->lock);
		int64_t res = cancel ? -ECANCELED : run_sync(r);
		r->res = res > INT32_MAX ? INT32_MAX : (int32_t)res;
		pthread_mutex_lock(&p->lock);
		r->next = p->done;
		p->done = r;
		uint64_t one = 1;
		/* the worker's next poll takes it (its wake read completes) */
		if (write(p->wake_fd, &one, sizeof(one)) < 0) {
			/* the eventfd cannot overflow at one write per request */
		}
	}
	pthread_mutex_unlock(&p->lock);
	return NULL;
}

static int pool_submit(struct rl_worker *w, struct rl_fsreq *r)
{
	struct rl_fspool *p = w->fs.pool;
	if (!p) {
		p = calloc(1, sizeof(*p));
		if (!p)
			return -ENOMEM;
		pthread_mutex_init(&p->lock, NULL);
		pthread_cond_init(&p->cond, NULL);
		p->wake_fd = w->wake_fd;
		w->fs.pool = p;
	}
	r->pooled = 1;
	r->next = NULL;
	pthread_mutex_lock(&p->lock);
	if (p->qtail)
		p->qtail->next = r;
	else
		p->qhead = r;
	p->qtail = r;
	p->queued++;
	int rc = 0;
	if (!p->idle && p->nth < RL_FS_THREADS) {
		rc = -pthread_create(&p->th[p->nth], NULL, pool_main, p);
		if (rc == 0)
			p->nth++;
		else if (p->nth > 0)
			rc = 0; /* a running thread takes it later */
	}
	if (rc) { /* no thread at all: take it back */
		p->qhead = p->qtail = NULL;
		p->queued--;
	} else {
		pthread_cond_signal(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	if (!rc)
		w->m.fs_pool_ops++;
	return rc;
}

void rl__fs_pool_reap(struct rl_worker *w)
{
	struct rl_fspool *p = w->fs.pool;
	if (!p || !__atomic_load_n(&p->done, __ATOMIC_RELAXED))
		return;
	pthread_mutex_lock(&p->lock);
	struct rl_fsreq *list = p->done;
	p->done = NULL;
	pthread_mutex_unlock(&p->lock);
	/* the list is newest first: deliver in completion order */
	struct rl_fsreq *rev = NULL;
	while (list) {
		struct rl_fsreq *n = list->next;
		list->next = rev;
		rev = list;
		list = n;
	}
	while (rev) {
		struct rl_fsreq *n = rev->next;
		pthread_mutex_lock(&p->lock);
		p->queued--;
		pthread_mutex_unlock(&p->lock);
		rev->pooled = 0;
		finish(w, rev, rev->res);
		rev = n;
	}
}

void rl__fs_fini(struct rl_worker *w)
{
	struct rl_fspool *p = w->fs.pool;
	if (p) {
		pthread_mutex_lock(&p->lock);
		p->stop = 1;
		pthread_cond_broadcast(&p->cond);
		pthread_mutex_unlock(&p->lock);
		for (int i = 0; i < p->nth; i++)
			pthread_join(p->th[i], NULL);
		w->destroying = 1;
		rl__fs_pool_reap(w); /* opens among them are closed */
		pthread_mutex_destroy(&p->lock);
		pthread_cond_destroy(&p->cond);
		free(p);
		w->fs.pool = NULL;
	}
	while (w->fs.npipes) {
		w->fs.npipes--;
		close(w->fs.pipes[w->fs.npipes][0]);
		close(w->fs.pipes[w->fs.npipes][1]);
	}
	w->m.sendfile_pipes = 0;
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
		int rc = pool_submit(w, r);
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

/* ---- sendfile's pipes ---- */

/* Big enough that a splice moves a useful amount per round trip; the
 * kernel caps it at /proc/sys/fs/pipe-max-size (1 MiB by default) and
 * an unprivileged user's pipe quota, so a refusal keeps the default. */
#define RL_PIPE_WANT (1024u * 1024u)

int rl__pipe_get(struct rl_worker *w, int p[2], uint32_t *size)
{
	if (w->fs.npipes) {
		w->fs.npipes--;
		p[0] = w->fs.pipes[w->fs.npipes][0];
		p[1] = w->fs.pipes[w->fs.npipes][1];
		*size = w->fs.pipe_size;
		return 0;
	}
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	int sz = fcntl(p[1], F_SETPIPE_SZ, (int)RL_PIPE_WANT);
	if (sz < 0)
		sz = fcntl(p[1], F_GETPIPE_SZ);
	*size = sz > 0 ? (uint32_t)sz : 65536u;
	w->fs.pipe_size = *size;
	w->m.sendfile_pipes++;
	return 0;
}

void rl__pipe_put(struct rl_worker *w, int p[2], int dirty)
{
	if (!dirty && w->fs.npipes < RL_PIPE_CACHE && !w->destroying) {
		w->fs.pipes[w->fs.npipes][0] = p[0];
		w->fs.pipes[w->fs.npipes][1] = p[1];
		w->fs.npipes++;
		return;
	}
	close(p[0]);
	close(p[1]);
	w->m.sendfile_pipes--;
}
