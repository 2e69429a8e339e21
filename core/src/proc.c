/* SPDX-License-Identifier: MIT */
/*
 * proc.c - child processes: posix_spawn, a pidfd, and a wait kept armed in
 * the ring so a child is reaped the moment it exits, whoever waits for it.
 *
 * The wait is IORING_OP_WAITID on the pidfd (kernel 6.7; liburing 2.3 has
 * no prep for it, so the SQE is filled here: fd = the id, len = the id
 * type, file_index = the options, addr2 = the siginfo the kernel fills).
 * Without it (or with RINGLINE_DISABLE_FEATURES=waitid) a POLL_ADD on the
 * pidfd says when the child exited and waitid(2) with WNOHANG reaps it at
 * once. Either way exactly one RL_EV_EXIT follows each spawn.
 *
 * The child's streams are socketpairs rather than pipes: the caller adopts
 * its ends as connections (rl_conn_adopt), so reading and writing a child
 * is the connection machinery unchanged: multishot receives into provided
 * buffers, the receive window as backpressure (a child writing faster than
 * its output is read blocks in write once the socket buffer and the window
 * are full), the ordered send queue, timeouts and close.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"

extern char **environ;

#define RL_P_PIDFD 3 /* idtype_t P_PIDFD (Linux 5.4); glibc 2.36 names it only in an enum */
#define RL_MAX_PROCS 4096u

/* ---- signals a child starts with ---- */

static sigset_t ignored_at_load;

/* Run when the library is loaded: before main() for a program linked with
 * it (the host), so what is recorded is what the process was started with,
 * not what the host set up later (SIGPIPE ignored, its signals blocked). */
__attribute__((constructor)) static void record_ignored(void)
{
	sigemptyset(&ignored_at_load);
	for (int sig = 1; sig < NSIG; sig++) {
		struct sigaction sa;

		if (sigaction(sig, NULL, &sa) == 0 && sa.sa_handler == SIG_IGN)
			sigaddset(&ignored_at_load, sig);
	}
}

void rl_proc_sigdefault(sigset_t *set)
{
	sigfillset(set);
	for (int sig = 1; sig < NSIG; sig++)
		if (sigismember(&ignored_at_load, sig))
			sigdelset(set, sig);
}

/* ---- records ---- */

static struct rl_proc *proc_alloc(struct rl_worker *w)
{
	for (uint32_t i = 0; i < w->nprocs; i++)
		if (!w->procs[i]->used)
			return w->procs[i];
	if (w->nprocs >= RL_MAX_PROCS)
		return NULL;
	struct rl_proc **np = realloc(w->procs, (w->nprocs + 1) * sizeof(*np));
	if (!np)
		return NULL;
	w->procs = np;
	struct rl_proc *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	p->idx = w->nprocs;
	p->pidfd = -1;
	np[w->nprocs++] = p;
	return p;
}

static struct rl_proc *proc_get(struct rl_worker *w, int id, uint32_t gen)
{
	if (id < 0 || (uint32_t)id >= w->nprocs)
		return NULL;
	struct rl_proc *p = w->procs[id];
	return p->used && p->gen == gen ? p : NULL;
}

static void proc_free(struct rl_worker *w, struct rl_proc *p)
{
	close(p->pidfd);
	p->pidfd = -1;
	p->used = 0;
	p->gen++;
	w->procs_live--;
	w->m.procs_running--;
}

void rl__proc_fini(struct rl_worker *w)
{
	for (uint32_t i = 0; i < w->nprocs; i++) {
		if (w->procs[i]->pidfd >= 0)
			close(w->procs[i]->pidfd);
		free(w->procs[i]);
	}
	free(w->procs);
	w->procs = NULL;
	w->nprocs = 0;
}

/* ---- the wait ---- */

static int arm(struct rl_worker *w, struct rl_proc *p)
{
	struct io_uring_sqe *sqe = rl__sqe(w);
	if (!sqe)
		return -EBUSY;
	if (w->features & RL_FEAT_WAITID) {
		io_uring_prep_rw(RL_IORING_OP_WAITID, sqe, p->pidfd, NULL, RL_P_PIDFD, 0);
		sqe->file_index = WEXITED;
		sqe->addr2 = (uint64_t)(uintptr_t)&p->si;
	} else {
		io_uring_prep_poll_add(sqe, p->pidfd, POLLIN);
	}
	io_uring_sqe_set_data64(sqe, rl_ud_pack(RL_OP_PROC, p->idx, p->gen));
	w->m.ops_inflight++;
	return 0;
}

/* The classic wait status of a siginfo from waitid(WEXITED). */
static int32_t status_of(const siginfo_t *si)
{
	switch (si->si_code) {
	case CLD_EXITED:
		return (si->si_status & 0xff) << 8;
	case CLD_DUMPED:
		return (si->si_status & 0x7f) | 0x80;
	default: /* CLD_KILLED */
		return si->si_status & 0x7f;
	}
}

/* A wait the ring could not do: kill the child and reap it here, so no
 * zombie is left whatever went wrong. Blocks only as long as a SIGKILLed
 * process takes to exit. */
static void reap_now(struct rl_proc *p)
{
	siginfo_t si;

	syscall(SYS_pidfd_send_signal, p->pidfd, SIGKILL, NULL, 0);
	while (waitid(RL_P_PIDFD, (id_t)p->pidfd, &si, WEXITED) < 0 && errno == EINTR)
		;
}

void rl__proc_on_cqe(struct rl_worker *w, struct io_uring_cqe *cqe)
{
	w->m.ops_inflight--;
	struct rl_proc *p = proc_get(w, (int)rl_ud_index(cqe->user_data), rl_ud_gen(cqe->user_data));
	if (!p) {
		w->m.stale_cqes++;
		return;
	}
	int res = cqe->res;
	if (!(w->features & RL_FEAT_WAITID) && res >= 0) {
		/* the pidfd is readable: the child has exited; reap it */
		memset(&p->si, 0, sizeof(p->si));
		if (waitid(RL_P_PIDFD, (id_t)p->pidfd, &p->si, WEXITED | WNOHANG) < 0)
			res = -errno;
		else if (p->si.si_pid == 0)
			res = -EAGAIN; /* not yet after all: wait again */
		else
			res = 0;
	}
	if ((res == -EINTR || res == -EAGAIN) && arm(w, p) == 0)
		return;
	int32_t status;
	if (res == 0) {
		status = status_of(&p->si);
	} else {
		if (res != -ECHILD)
			reap_now(p);
		status = res;
	}
	uint32_t gen = p->gen, token = p->token;
	proc_free(w, p);
	rl__emit(w, RL_EV_EXIT, status, p->idx, gen, token);
}

void rl__proc_kill_all(struct rl_worker *w)
{
	for (uint32_t i = 0; i < w->nprocs; i++)
		if (w->procs[i]->used)
			syscall(SYS_pidfd_send_signal, w->procs[i]->pidfd, SIGKILL, NULL, 0);
}

/* ---- spawn and kill ---- */

static void close_all(int *fds, int n)
{
	for (int i = 0; i < n; i++)
		if (fds[i] >= 0)
			close(fds[i]);
}

/* The child's end (*theirs) of stream i as asked, and the caller's end
 * (*mine) for a pipe. 0 or -errno. */
static int stream(uint32_t how, int *mine, int *theirs)
{
	int sv[2];

	switch (how) {
	case RL_PROC_NULL:
		*theirs = open("/dev/null", O_RDWR | O_CLOEXEC);
		return *theirs < 0 ? -errno : 0;
	case RL_PROC_PIPE:
		if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
			return -errno;
		*mine = sv[0];
		*theirs = sv[1];
		return 0;
	default:
		return 0;
	}
}

int rl_proc_spawn(struct rl_worker *w, const char *const *argv, const char *const *envp,
		  const char *cwd, uint32_t stdio, uint32_t token, struct rl_proc_info *out)
{
	uint32_t how[3] = { (stdio >> RL_PROC_STDIN_SHIFT) & 3, (stdio >> RL_PROC_STDOUT_SHIFT) & 3,
			    (stdio >> RL_PROC_STDERR_SHIFT) & 3 };
	int mine[3] = { -1, -1, -1 }, theirs[3] = { -1, -1, -1 };
	int rc;

	if (!argv || !argv[0] || !argv[0][0] || !out || how[0] == RL_PROC_STDOUT ||
	    how[1] == RL_PROC_STDOUT)
		return -EINVAL;
	struct rl_proc *p = proc_alloc(w);
	if (!p)
		return w->nprocs >= RL_MAX_PROCS ? -EAGAIN : -ENOMEM;
	for (int i = 0; i < 3; i++) {
		rc = stream(how[i], &mine[i], &theirs[i]);
		if (rc) {
			close_all(mine, 3);
			close_all(theirs, 3);
			return rc;
		}
	}

	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, dfl;
	pid_t pid;

	posix_spawn_file_actions_init(&fa);
	/* dup2 clears close-on-exec on the copy; the originals close at exec */
	for (int i = 0; i < 3; i++)
		if (theirs[i] >= 0)
			posix_spawn_file_actions_adddup2(&fa, theirs[i], i);
	if (how[2] == RL_PROC_STDOUT)
		posix_spawn_file_actions_adddup2(&fa, 1, 2);
	if (cwd)
		posix_spawn_file_actions_addchdir_np(&fa, cwd);
	sigemptyset(&none);
	rl_proc_sigdefault(&dfl);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	/* glibc's posix_spawn reports an exec failure (a missing program) as
	 * its return value and has reaped that child already */
	rc = posix_spawnp(&pid, argv[0], &fa, &attr, (char *const *)argv,
			  envp ? (char *const *)envp : environ);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	close_all(theirs, 3);
	if (rc) {
		close_all(mine, 3);
		return -rc;
	}

	/* The child is ours and not reaped yet, so its pid cannot have been
	 * reused: the pidfd names it. */
	int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pidfd < 0) {
		rc = -errno;
		kill(pid, SIGKILL);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
		close_all(mine, 3);
		return rc;
	}
	p->used = 1;
	p->pidfd = pidfd;
	p->pid = pid;
	p->token = token;
	w->procs_live++;
	w->m.procs_running++;
	w->m.procs_started++;
	rc = arm(w, p);
	if (rc) {
		reap_now(p);
		proc_free(w, p);
		close_all(mine, 3);
		return rc;
	}
	out->id = (int32_t)p->idx;
	out->gen = p->gen;
	out->pid = pid;
	for (int i = 0; i < 3; i++)
		out->fds[i] = mine[i];
	return 0;
}

int rl_proc_kill(struct rl_worker *w, int id, uint32_t gen, int sig)
{
	struct rl_proc *p = proc_get(w, id, gen);
	if (!p)
		return -ESRCH;
	if (syscall(SYS_pidfd_send_signal, p->pidfd, sig, NULL, 0) < 0)
		return -errno;
	return 0;
}
