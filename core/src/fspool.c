/* SPDX-License-Identifier: MIT */
/*
 * fspool.c - the fallback thread pool for file operations the ring lacks:
 * listdir (getdents has no ring operation), and whatever the probe at
 * start (ring.c) did not find or RINGLINE_DISABLE_FEATURES=fs_ring turned
 * off. Up to RL_FS_THREADS threads of the worker, started on first use,
 * run plain system calls; a finished request goes on the done list and the
 * worker's wake eventfd is written, so the worker's next poll takes it
 * (fileop.c's rl__fs_pool_reap) and its event leaves through the one sink.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "fsreq.h"

struct rl_fspool {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	struct rl_fsreq *qhead, *qtail; /* waiting to run */
	struct rl_fsreq *done;          /* finished, for the worker's next poll */
	pthread_t th[RL_FS_THREADS];
	int nth;
	int idle;
	int stop;
	int wake_fd;
};

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

int rl__fspool_submit(struct rl_worker *w, struct rl_fsreq *r)
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
	} else {
		pthread_cond_signal(&p->cond);
	}
	pthread_mutex_unlock(&p->lock);
	if (!rc)
		w->m.fs_pool_ops++;
	return rc;
}

struct rl_fsreq *rl__fspool_take(struct rl_worker *w)
{
	struct rl_fspool *p = w->fs.pool;
	if (!p || !__atomic_load_n(&p->done, __ATOMIC_RELAXED))
		return NULL;
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
	return rev;
}

void rl__fspool_stop(struct rl_worker *w)
{
	struct rl_fspool *p = w->fs.pool;
	if (!p)
		return;
	pthread_mutex_lock(&p->lock);
	p->stop = 1;
	pthread_cond_broadcast(&p->cond);
	pthread_mutex_unlock(&p->lock);
	for (int i = 0; i < p->nth; i++)
		pthread_join(p->th[i], NULL);
	p->nth = 0;
}

void rl__fspool_free(struct rl_worker *w)
{
	struct rl_fspool *p = w->fs.pool;
	if (!p)
		return;
	pthread_mutex_destroy(&p->lock);
	pthread_cond_destroy(&p->cond);
	free(p);
	w->fs.pool = NULL;
}
