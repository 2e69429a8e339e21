/* SPDX-License-Identifier: MIT */
/*
 * pipecache.c - the pipes a sendfile node splices through (file -> pipe
 * -> socket), a few kept per worker so a response does not pay for
 * pipe2(2) and F_SETPIPE_SZ. A pipe that still holds bytes (a node
 * dropped mid-way) is closed, never cached.
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "internal.h"

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

void rl__pipe_fini(struct rl_worker *w)
{
	while (w->fs.npipes) {
		w->fs.npipes--;
		close(w->fs.pipes[w->fs.npipes][0]);
		close(w->fs.pipes[w->fs.npipes][1]);
	}
	w->m.sendfile_pipes = 0;
}
