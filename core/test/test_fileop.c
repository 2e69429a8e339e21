/* SPDX-License-Identifier: MIT */
/*
 * test_fileop - file operations (rl_fs_*, rl_file_*) and rl_conn_sendfile.
 * Every operation is run twice: through the ring, then with
 * RINGLINE_DISABLE_FEATURES=fs_ring on the fallback thread pool, and must
 * give the same results and errors either way: open (missing file,
 * exclusive create, a directory opened for writing), read/write at offsets,
 * readv/writev, READ_FIXED/WRITE_FIXED into a region, fsync, stat of a path
 * and a descriptor, mkdir, rename, unlink, rmdir, listdir (and its -ERANGE
 * with the size needed), cancel. Then sendfile: a file's bytes ordered
 * between two copy sends to a loopback peer, and a file truncated while it
 * is sent failing the send side with -ENODATA. Descriptors (/proc/self/fd)
 * and the gauges are back at idle after each part.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "helpers.h"

static char dir[256];
static uint32_t next_token = 1;

static int count_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	while ((de = readdir(d)))
		n += de->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the DIR's own */
}

static uint32_t want_token;
static int32_t got_res;
static uint32_t got_aux;
static int got;

static void on_event(struct t_ctx *t, const struct rl_event *e)
{
	(void)t;
	if (e->type == RL_EV_FILE && e->data == want_token) {
		got = 1;
		got_res = e->res;
		got_aux = e->aux;
	}
}

static int done(struct t_ctx *t)
{
	(void)t;
	return got;
}

/* Wait for the RL_EV_FILE of the operation just queued (id, or -errno). */
static int32_t wait_op(struct t_ctx *t, int id, uint32_t token)
{
	if (id < 0)
		return id;
	want_token = token;
	got = 0;
	T_WAIT(t, done, 10);
	return got_res;
}

#define OP(t, call)                                                                          \
	({                                                                                   \
		uint32_t tok_ = next_token;                                                  \
		int id_ = (call);                                                            \
		next_token++;                                                                \
		wait_op((t), id_, tok_);                                                     \
	})
#define TOK (next_token)

static void path(char *out, const char *name)
{
	snprintf(out, 300, "%s/%s", dir, name);
}

static void file_ops(int pool)
{
	struct t_ctx t;
	int fds = count_fds();
	t_init(&t, NULL);
	t.on_event = on_event;
	const struct rl_metrics *m = rl_worker_metrics(t.w);
	uint64_t ring0 = m->fs_ops, pool0 = m->fs_pool_ops;
	if (!pool)
		ASSERT(rl_worker_features(t.w) & RL_FEAT_FS_RING, "the ring has every file op (6.1+)");
	else
		CHECK_EQ(rl_worker_features(t.w) & RL_FEAT_FS_RING, 0);

	char a[300], b[300], sub[300];
	path(a, "a.txt");
	path(b, "b.txt");
	path(sub, "sub");

	/* missing file, exclusive create, a directory for writing */
	char missing[300];
	path(missing, "nope/x");
	CHECK_EQ(OP(&t, rl_fs_open(t.w, missing, RL_O_RDONLY, 0, TOK)), -ENOENT);
	int fd = OP(&t, rl_fs_open(t.w, a, RL_O_RDWR | RL_O_CREAT | RL_O_EXCL, 0644, TOK));
	CHECK_GE(fd, 0);
	CHECK_EQ(OP(&t, rl_fs_open(t.w, a, RL_O_RDWR | RL_O_CREAT | RL_O_EXCL, 0644, TOK)), -EEXIST);
	CHECK_EQ(OP(&t, rl_fs_open(t.w, dir, RL_O_WRONLY, 0, TOK)), -EISDIR);
	CHECK_EQ(rl_fs_open(t.w, a, 3, 0, TOK), -EINVAL);
	CHECK_EQ(rl_fs_open(t.w, a, 1024, 0, TOK), -EINVAL);

	/* write and read at offsets */
	CHECK_EQ(OP(&t, rl_file_write(t.w, fd, "hello world", 11, 0, -1, TOK)), 11);
	CHECK_EQ(OP(&t, rl_file_write(t.w, fd, "W", 1, 6, -1, TOK)), 1);
	char buf[64] = { 0 };
	CHECK_EQ(OP(&t, rl_file_read(t.w, fd, buf, sizeof(buf), 0, -1, TOK)), 11);
	CHECK(memcmp(buf, "hello World", 11) == 0);
	CHECK_EQ(OP(&t, rl_file_read(t.w, fd, buf, sizeof(buf), 11, -1, TOK)), 0); /* EOF */

	/* vectored */
	struct rl_part parts[3] = {
		{ .ptr = "ab", .len = 2, .region = RL_PART_COPY },
		{ .ptr = "cde", .len = 3, .region = RL_PART_COPY },
		{ .ptr = "f", .len = 1, .region = RL_PART_COPY },
	};
	CHECK_EQ(OP(&t, rl_file_writev(t.w, fd, parts, 3, 11, TOK)), 6);
	char x[4] = { 0 }, y[4] = { 0 };
	struct rl_part rparts[2] = { { .ptr = x, .len = 3 }, { .ptr = y, .len = 3 } };
	CHECK_EQ(OP(&t, rl_file_readv(t.w, fd, rparts, 2, 11, TOK)), 6);
	CHECK(memcmp(x, "abc", 3) == 0 && memcmp(y, "def", 3) == 0);
	CHECK_EQ(rl_file_readv(t.w, fd, rparts, 0, 0, TOK), -EINVAL);

	/* a region: READ_FIXED / WRITE_FIXED (registered memory) */
	void *rp;
	int rid = CHECK_RC(rl_region_new(t.w, 4096, &rp));
	memcpy(rp, "REGION", 6);
	CHECK_EQ(OP(&t, rl_file_write(t.w, fd, rp, 6, 100, rid, TOK)), 6);
	memset(rp, 0, 16);
	CHECK_EQ(OP(&t, rl_file_read(t.w, fd, (char *)rp + 1, 6, 100, rid, TOK)), 6);
	CHECK(memcmp((char *)rp + 1, "REGION", 6) == 0);
	CHECK_EQ(rl_file_read(t.w, fd, (char *)rp + 4000, 200, 0, rid, TOK), -ERANGE);
	CHECK_RC(rl_region_free(t.w, rid));

	/* fsync, stat */
	CHECK_EQ(OP(&t, rl_file_fsync(t.w, fd, 0, TOK)), 0);
	CHECK_EQ(OP(&t, rl_file_fsync(t.w, fd, 1, TOK)), 0);
	struct rl_stat st;
	memset(&st, 0xff, sizeof(st));
	CHECK_EQ(OP(&t, rl_file_stat(t.w, fd, &st, TOK)), 0);
	CHECK_EQ(st.size, 106);
	CHECK(S_ISREG(st.mode));
	CHECK_EQ(st.mode & 0777, 0644);
	CHECK_EQ(OP(&t, rl_fs_stat(t.w, dir, 0, &st, TOK)), 0);
	CHECK(S_ISDIR(st.mode));
	CHECK_EQ(OP(&t, rl_fs_stat(t.w, missing, 0, &st, TOK)), -ENOENT);
	CHECK_EQ(OP(&t, rl_file_close(t.w, fd, TOK)), 0);
	CHECK_EQ(OP(&t, rl_file_close(t.w, fd, TOK)), -EBADF);

	/* mkdir, rename, listdir, unlink, rmdir */
	CHECK_EQ(OP(&t, rl_fs_mkdir(t.w, sub, 0755, TOK)), 0);
	CHECK_EQ(OP(&t, rl_fs_mkdir(t.w, sub, 0755, TOK)), -EEXIST);
	CHECK_EQ(OP(&t, rl_fs_rename(t.w, a, b, TOK)), 0);
	char list[64];
	CHECK_EQ(OP(&t, rl_fs_listdir(t.w, dir, list, 4, TOK)), -ERANGE);
	CHECK_EQ(got_aux, strlen("fb.txt") + 1 + strlen("dsub") + 1);
	int n = OP(&t, rl_fs_listdir(t.w, dir, list, sizeof(list), TOK));
	CHECK_EQ(n, 12);
	int saw_file = 0, saw_dir = 0;
	for (int i = 0; i < n; i += (int)strlen(list + i) + 1) {
		saw_file |= strcmp(list + i, "fb.txt") == 0;
		saw_dir |= strcmp(list + i, "dsub") == 0;
	}
	CHECK(saw_file && saw_dir);
	CHECK_EQ(OP(&t, rl_fs_listdir(t.w, b, list, sizeof(list), TOK)), -ENOTDIR);
	CHECK_EQ(OP(&t, rl_fs_unlink(t.w, sub, 0, TOK)), -EISDIR);
	CHECK_EQ(OP(&t, rl_fs_unlink(t.w, sub, 1, TOK)), 0);
	CHECK_EQ(OP(&t, rl_fs_unlink(t.w, b, 0, TOK)), 0);
	CHECK_EQ(OP(&t, rl_fs_unlink(t.w, b, 0, TOK)), -ENOENT);

	/* cancel: the event still comes, once, canceled or with its result */
	uint32_t tok = next_token++;
	int id = CHECK_RC(rl_fs_stat(t.w, dir, 0, &st, tok));
	CHECK_RC(rl_fs_cancel(t.w, id, tok));
	CHECK_EQ(rl_fs_cancel(t.w, id, tok + 1000), -ENOENT);
	int32_t r = wait_op(&t, id, tok);
	CHECK(r == 0 || r == -ECANCELED);
	CHECK_EQ(rl_fs_cancel(t.w, id, tok), -ENOENT);

	m = rl_worker_metrics(t.w);
	if (pool) {
		CHECK_EQ(m->fs_ops, ring0);
		CHECK_GT(m->fs_pool_ops, pool0 + 20);
	} else {
		CHECK_GT(m->fs_ops, ring0 + 20);
		CHECK_EQ(m->fs_pool_ops, pool0 + 3); /* the listdirs */
	}
	CHECK_EQ(m->fs_inflight, 0);
	t_finish(&t);
	CHECK_EQ(count_fds(), fds);
}

/* ---- sendfile ---- */

static struct t_peer peer;
static int pump(struct t_ctx *t)
{
	(void)t;
	return t_peers_pump(&peer, 1);
}

static uint32_t cslot, cgen;
static int accepted;
static void sf_event(struct t_ctx *t, const struct rl_event *e)
{
	(void)t;
	if (e->type == RL_EV_ACCEPTED) {
		cslot = e->slot;
		cgen = e->gen;
		accepted = 1;
	}
	on_event(t, e);
}
static int is_accepted(struct t_ctx *t) { (void)t; return accepted; }
static size_t want_in;
static int peer_has(struct t_ctx *t) { (void)t; return peer.inlen >= want_in; }
static int send_failed(struct t_ctx *t) { return rl_conn_io(t->w, cslot)->serr != 0; }
static int closed(struct t_ctx *t) { return t_count(t, RL_EV_CLOSED, cslot, cgen) == 1; }

/* How the file's bytes go: SF_CACHED, from the page cache by sendfile(2)
 * on the worker (RL_FEAT_CACHESTAT); SF_DISK, the page cache dropped
 * first, so the ring's splices fill the pipe from the disk and the worker
 * drains it; SF_RING (cachestat disabled), ring splices for everything. */
enum sf_mode { SF_CACHED, SF_DISK, SF_RING };

static void sendfile_case(enum sf_mode mode)
{
	struct t_ctx t;
	int fds = count_fds();
	if (mode == SF_RING)
		setenv("RINGLINE_DISABLE_FEATURES", "cachestat", 1);
	t_init(&t, NULL);
	unsetenv("RINGLINE_DISABLE_FEATURES");
	if (mode != SF_RING && !(rl_worker_features(t.w) & RL_FEAT_CACHESTAT)) {
		printf("no cachestat(2): the inline sendfile is not tested\n");
		t_finish(&t);
		return;
	}
	t.on_event = sf_event;
	t.pump = pump;
	if (!(rl_worker_features(t.w) & RL_FEAT_SPLICE)) {
		printf("no IORING_OP_SPLICE: sendfile not tested\n");
		t_finish(&t);
		return;
	}
	t_listen(&t, NULL);
	char f[300];
	if (mode == SF_DISK) /* the working directory (the build tree): not a tmpfs */
		snprintf(f, sizeof(f), "rl_fileop_sf_%d.bin", (int)getpid());
	else
		path(f, "big.bin");
	size_t size = 3 * 1024 * 1024 + 17; /* several pipefuls, an odd tail */
	uint8_t *data = malloc(size);
	t_pattern(data, size, 7, 0);
	int fd = open(f, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	CHECK(fd >= 0);
	CHECK_EQ(write(fd, data, size), (ssize_t)size);
	if (mode == SF_DISK) { /* clean pages can be dropped */
		CHECK_EQ(fsync(fd), 0);
		CHECK_EQ(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), 0);
	}
	uint64_t fills0 = rl_worker_metrics(t.w)->sendfile_fills;

	int cfd = t_tcp_connect("127.0.0.1", t.port, 1);
	t_peer_init(&peer, cfd);
	peer.in = malloc(2 * size + 64);
	peer.incap = 2 * size + 64;
	accepted = 0;
	T_WAIT(&t, is_accepted, 10);

	/* ordered with copy sends around it; the duplicate lets fd close now */
	CHECK_RC(rl_conn_send(t.w, cslot, cgen, "HEAD", 4));
	CHECK_RC(rl_conn_sendfile(t.w, cslot, cgen, fd, 5, (uint32_t)(size - 5)));
	CHECK_RC(rl_conn_send(t.w, cslot, cgen, "TAIL", 4));
	CHECK_EQ(rl_conn_io(t.w, cslot)->unsent, size - 5 + 8);
	CHECK_EQ(rl_conn_sendfile(t.w, cslot, cgen, fd, -1, 1), -EINVAL);
	CHECK_EQ(rl_conn_sendfile(t.w, cslot, cgen, fd, 0, UINT32_MAX), -ENOBUFS);
	want_in = size - 5 + 8;
	T_WAIT(&t, peer_has, 20);
	CHECK(memcmp(peer.in, "HEAD", 4) == 0);
	CHECK(memcmp(peer.in + 4, data + 5, size - 5) == 0);
	CHECK(memcmp(peer.in + 4 + size - 5, "TAIL", 4) == 0);
	CHECK_EQ(rl_conn_io(t.w, cslot)->unsent, 0);
	CHECK_EQ(rl_conn_io(t.w, cslot)->serr, 0);
	const struct rl_metrics *m = rl_worker_metrics(t.w);
	if (mode == SF_CACHED) { /* no pipe, no splice: all by sendfile(2) */
		CHECK_EQ(m->sendfile_pipes, 0);
		CHECK_EQ(m->sendfile_fills, fills0);
	} else {
		CHECK_EQ(m->sendfile_pipes, 1);
		CHECK_GE(m->sendfile_fills, fills0 + 1);
	}

	/* with a head, on a connection that now has its plain descriptor:
	 * from the call itself when it can (RL_FEAT_CACHESTAT), as far as the
	 * socket takes it, the rest queued; in order either way */
	peer.inlen = 0;
	CHECK_RC(rl_conn_sendfile_with(t.w, cslot, cgen, "HEAD2", 5, fd, 0, 1000));
	if (mode == SF_CACHED) /* all of it went at once: nothing queued */
		CHECK_EQ(rl_conn_io(t.w, cslot)->unsent, 0);
	CHECK_RC(rl_conn_sendfile_with(t.w, cslot, cgen, "HEAD3", 5, fd, 0, (uint32_t)size));
	CHECK_RC(rl_conn_send(t.w, cslot, cgen, "END", 3));
	want_in = 5 + 1000 + 5 + size + 3;
	T_WAIT(&t, peer_has, 20);
	CHECK(memcmp(peer.in, "HEAD2", 5) == 0);
	CHECK(memcmp(peer.in + 5, data, 1000) == 0);
	CHECK(memcmp(peer.in + 1005, "HEAD3", 5) == 0);
	CHECK(memcmp(peer.in + 1010, data, size) == 0);
	CHECK(memcmp(peer.in + 1010 + size, "END", 3) == 0);
	CHECK_EQ(rl_conn_io(t.w, cslot)->unsent, 0);
	CHECK_EQ(rl_conn_sendfile_with(t.w, cslot, cgen, NULL, 5, fd, 0, 1), -EINVAL);

	/* truncated while sent: a count past the end fails with -ENODATA
	 * once the file runs out (the bytes it had went out first): from the
	 * call itself or, when a short sendfile(2) looked like a full socket
	 * (or the ring reads the file), from the queue */
	CHECK_EQ(ftruncate(fd, 1000), 0);
	peer.inlen = 0;
	int rc = rl_conn_sendfile(t.w, cslot, cgen, fd, 0, 5000);
	if (rc == 0)
		T_WAIT(&t, send_failed, 10);
	else
		CHECK_EQ(rc, -ENODATA);
	CHECK_EQ(rl_conn_io(t.w, cslot)->serr, -ENODATA);
	CHECK_EQ(rl_conn_send(t.w, cslot, cgen, "x", 1), -ENODATA);
	want_in = 1000;
	T_WAIT(&t, peer_has, 10);
	CHECK(memcmp(peer.in, data, 1000) == 0);
	CHECK_RC(rl_conn_close(t.w, cslot, cgen, RL_CLOSE_GRACEFUL));
	T_WAIT(&t, closed, 10);
	close(fd);
	close(cfd);
	free(peer.in);
	free(data);
	unlink(f);
	t_finish(&t);
	CHECK_EQ(count_fds(), fds);
}

int main(void)
{
	snprintf(dir, sizeof(dir), "/tmp/rl_fileop_%d", (int)getpid());
	CHECK_EQ(mkdir(dir, 0755), 0);
	umask(022);
	file_ops(0);
	setenv("RINGLINE_DISABLE_FEATURES", "fs_ring", 1);
	file_ops(1);
	unsetenv("RINGLINE_DISABLE_FEATURES");
	sendfile_case(SF_CACHED);
	sendfile_case(SF_DISK);
	sendfile_case(SF_RING);
	CHECK_EQ(rmdir(dir), 0);
	printf("ok\n");
	return 0;
}
