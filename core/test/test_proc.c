/* SPDX-License-Identifier: MIT */
/*
 * test_proc - processes through the ring, on both wait paths (WAITID, and
 * a poll on the pidfd with RINGLINE_DISABLE_FEATURES=waitid):
 *  - a child's stdout, adopted as a connection (rl_conn_adopt), reads its
 *    output then EOF; exactly one RL_EV_EXIT with the wait status;
 *  - the child starts with an empty signal mask and nothing ignored though
 *    the worker blocks SIGTERM and ignores SIGPIPE;
 *  - a missing program fails at once with -ENOENT, nothing left running;
 *  - rl_proc_kill delivers a signal; after the exit it is -ESRCH;
 *  - an adoption canceled before its install completes reports -ECANCELED
 *    and leaves nothing open;
 *  - a worker destroyed with a child still running kills and reaps it
 *    (no zombie: the pid is gone) and says the caller leaked it (-EBUSY).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

static const struct rl_event *exit_of(struct t_ctx *t, const struct rl_proc_info *pi)
{
	return t_last(t, RL_EV_EXIT, (uint32_t)pi->id, pi->gen);
}

static struct rl_proc_info cur;
static uint32_t conn_tok;

static int exited(struct t_ctx *t) { return exit_of(t, &cur) != NULL; }
static int adopted(struct t_ctx *t) { return t_last(t, RL_EV_CONNECTED, T_ANY, T_ANY) &&
					    t_last(t, RL_EV_CONNECTED, T_ANY, T_ANY)->data == conn_tok; }
static int idle(struct t_ctx *t)
{
	return rl_worker_live(t->w) == 0 && rl_worker_metrics(t->w)->ops_inflight == 0;
}

/* Run argv with stdout to a pipe; return everything it wrote (static
 * buffer) and its wait status in *status. */
static const char *run(struct t_ctx *t, const char *const *argv, int *status)
{
	static char out[4096];
	size_t len = 0;

	CHECK_RC(rl_proc_spawn(t->w, argv, NULL, NULL, RL_PROC_PIPE << RL_PROC_STDOUT_SHIFT, 7, &cur));
	CHECK_EQ(cur.fds[0], -1);
	CHECK_GE(cur.fds[1], 0);
	CHECK_EQ(cur.fds[2], -1);
	conn_tok++;
	CHECK_RC(rl_conn_adopt(t->w, cur.fds[1], conn_tok));
	T_WAIT(t, adopted, 10);
	const struct rl_event *e = t_last(t, RL_EV_CONNECTED, T_ANY, T_ANY);
	CHECK_EQ(e->res, 0);
	uint32_t slot = e->slot, gen = e->gen;
	const struct rl_conn_io *io = rl_conn_io(t->w, slot);
	double deadline = t_now() + 10;
	while (!io->reof && !io->rerr) {
		CHECK(t_now() < deadline);
		if (io->rlen) {
			CHECK(len + io->rlen < sizeof(out));
			memcpy(out + len, io->rdata, io->rlen);
			len += io->rlen;
			CHECK_RC(rl_conn_consume(t->w, slot, gen, io->rlen));
		}
		CHECK_RC(rl_conn_want_recv(t->w, slot, gen, 1));
		t_step(t, 20);
	}
	CHECK(len + io->rlen < sizeof(out));
	if (io->rlen) /* rdata is NULL while nothing is buffered */
		memcpy(out + len, io->rdata, io->rlen);
	len += io->rlen;
	out[len] = 0;
	CHECK_EQ(io->rerr, 0);
	CHECK_RC(rl_conn_close(t->w, slot, gen, RL_CLOSE_GRACEFUL));
	T_WAIT(t, exited, 10);
	e = exit_of(t, &cur);
	CHECK_EQ(e->data, 7);
	*status = e->res;
	return out;
}

static void one_path(int waitid)
{
	struct t_ctx t;
	int status;

	if (waitid)
		unsetenv("RINGLINE_DISABLE_FEATURES");
	else
		setenv("RINGLINE_DISABLE_FEATURES", "waitid", 1);
	t_init(&t, NULL);
	if (waitid && !(rl_worker_features(t.w) & RL_FEAT_WAITID))
		printf("kernel without IORING_OP_WAITID: the waitid pass runs the poll path\n");
	if (!waitid)
		CHECK_EQ(rl_worker_features(t.w) & RL_FEAT_WAITID, 0);

	/* output, EOF, status */
	const char *const hi[] = { "sh", "-c", "printf 'hi there'; exit 7", NULL };
	const char *out = run(&t, hi, &status);
	CHECK(strcmp(out, "hi there") == 0);
	CHECK(WIFEXITED(status));
	CHECK_EQ(WEXITSTATUS(status), 7);
	CHECK_EQ(t_count(&t, RL_EV_EXIT, T_ANY, T_ANY), 1);

	/* the child's signals: nothing blocked, nothing ignored, though we
	 * block SIGTERM and ignore SIGPIPE */
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	pthread_sigmask(SIG_BLOCK, &block, &old);
	signal(SIGPIPE, SIG_IGN);
	const char *const sigs[] = { "grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status", NULL };
	out = run(&t, sigs, &status);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	signal(SIGPIPE, SIG_DFL);
	CHECK_EQ(status, 0);
	/* the standard signals only: glibc's posix_spawn leaves its own two
	 * real-time signals (32, 33) ignored in a child when the parent has
	 * handlers for them, as it does for every spawn */
	const char *blk = strstr(out, "SigBlk:"), *ign = strstr(out, "SigIgn:");
	CHECK(blk && ign);
	ASSERT((strtoull(blk + 7, NULL, 16) & 0xffffffffull) == 0, "child signals: %s", out);
	ASSERT((strtoull(ign + 7, NULL, 16) & 0x7fffffffull) == 0, "child signals: %s", out);

	/* a missing program: -ENOENT at once, nothing running */
	const char *const missing[] = { "/nonexistent/ringline-test", NULL };
	struct rl_proc_info pi;
	CHECK_EQ(rl_proc_spawn(t.w, missing, NULL, NULL, RL_PROC_PIPE << RL_PROC_STDOUT_SHIFT, 1, &pi),
		 -ENOENT);
	const char *const nodir[] = { "true", NULL };
	CHECK_EQ(rl_proc_spawn(t.w, nodir, NULL, "/nonexistent", 0, 1, &pi), -ENOENT);
	CHECK_EQ(rl_worker_metrics(t.w)->procs_running, 0);
	T_WAIT(&t, idle, 10); /* the last run's connection finishes closing */
	CHECK_EQ(rl_worker_live(t.w), 0);
	const char *const empty[] = { NULL };
	CHECK_EQ(rl_proc_spawn(t.w, empty, NULL, NULL, 0, 1, &pi), -EINVAL);
	CHECK_EQ(rl_proc_spawn(t.w, hi, NULL, NULL, RL_PROC_STDOUT << RL_PROC_STDOUT_SHIFT, 1, &pi),
		 -EINVAL);

	/* kill, then -ESRCH */
	const char *const sleeper[] = { "sleep", "30", NULL };
	CHECK_RC(rl_proc_spawn(t.w, sleeper, NULL, NULL, RL_PROC_NULL, 9, &cur));
	CHECK_EQ(rl_worker_metrics(t.w)->procs_running, 1);
	CHECK_EQ(rl_worker_live(t.w), 1);
	CHECK_RC(rl_proc_kill(t.w, cur.id, cur.gen, SIGTERM));
	T_WAIT(&t, exited, 10);
	status = exit_of(&t, &cur)->res;
	CHECK(WIFSIGNALED(status));
	CHECK_EQ(WTERMSIG(status), SIGTERM);
	CHECK_EQ(rl_proc_kill(t.w, cur.id, cur.gen, SIGTERM), -ESRCH);
	CHECK_EQ(kill(cur.pid, 0), -1); /* reaped: not even a zombie answers */
	CHECK_EQ(errno, ESRCH);

	/* an adoption canceled while installing */
	int sv[2];
	CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
	conn_tok++;
	CHECK_RC(rl_conn_adopt(t.w, sv[0], conn_tok));
	CHECK_RC(rl_connect_cancel(t.w, conn_tok));
	T_WAIT(&t, adopted, 10);
	CHECK_EQ(t_last(&t, RL_EV_CONNECTED, T_ANY, T_ANY)->res, -ECANCELED);
	T_WAIT(&t, idle, 10);
	char b;
	CHECK_EQ(read(sv[1], &b, 1), 0); /* our end was closed: EOF */
	close(sv[1]);
	CHECK_EQ(rl_conn_adopt(t.w, -1, 1), -EBADF);
	t_finish(&t);

	/* destroyed with a child running: killed and reaped, -EBUSY */
	struct rl_worker *w;
	char msg[128];
	CHECK_EQ(rl_worker_new(NULL, &w, msg, sizeof(msg)), 0);
	CHECK_RC(rl_proc_spawn(w, sleeper, NULL, NULL, RL_PROC_NULL, 1, &pi));
	CHECK_EQ(rl_worker_destroy(w), -EBUSY);
	CHECK_EQ(kill(pi.pid, 0), -1);
	CHECK_EQ(errno, ESRCH);
	CHECK_EQ(waitpid(-1, NULL, WNOHANG), -1); /* no child at all is left */
	CHECK_EQ(errno, ECHILD);
}

int main(void)
{
	one_path(1);
	one_path(0);
	printf("ok\n");
	return 0;
}
