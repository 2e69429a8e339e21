/* SPDX-License-Identifier: MIT */
/*
 * upgrade.c - the binary upgrade (SIGUSR2), as nginx's: a new process
 * image of the executable takes the listening sockets over while this one
 * serves on, and this one drains and exits once the new one is ready.
 *
 *   old: posix_spawn(the executable's path as it was at start, same argv)
 *        with the serving generation's listening sockets left open across
 *        exec, RINGLINE_INHERIT=fd,worker,addr;... naming them, and
 *        RINGLINE_UPGRADE_FD=n, the write end of a pipe;
 *   new: adopts them in listen (listeners.c) and, once every worker of its
 *        first generation is ready, writes "READY\n" there (and tells the
 *        service manager MAINPID=its pid, READY=1);
 *   old: on READY drains as on SIGTERM but leaves the sockets open, then
 *        exits 0. On end of file without READY (the new process failed to
 *        start, or exited) the upgrade failed: logged, the old one serves on.
 *
 * The path is the one /proc/self/exe named at start, so a binary replaced
 * on disk (install(1) renames over it) is the one started.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "host.h"

extern char **environ;

static char exe[PATH_MAX];
static pid_t child = -1;         /* the new process, while it starts */
static int ready_fd = -1;        /* its pipe's read end */
static char got[8];
static size_t ngot;
static int parent_fd = -1;       /* started by SIGUSR2: the old process's pipe */

void host_upgrade_init(void)
{
	ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
	const char *fd = getenv("RINGLINE_UPGRADE_FD");

	exe[n > 0 ? n : 0] = '\0';
	if (fd) {
		char *end;
		long v = strtol(fd, &end, 10);

		if (end != fd && !*end && v > 2 && fcntl((int)v, F_GETFD) >= 0) {
			parent_fd = (int)v;
			fcntl(parent_fd, F_SETFD, FD_CLOEXEC);
		}
		unsetenv("RINGLINE_UPGRADE_FD");
	}
}

int host_upgrade_fd(void)
{
	return ready_fd;
}

/* Every worker of our first generation is ready. */
void host_upgrade_ready(void)
{
	char msg[64];

	if (parent_fd < 0)
		return;
	if (write(parent_fd, "READY\n", 6) != 6)
		host_log(LOG_WARN, 0, "upgrade: cannot tell the old process we are ready: %s",
			 strerror(errno));
	close(parent_fd);
	parent_fd = -1;
	/* the manager follows the new main process (NotifyAccess=all) */
	snprintf(msg, sizeof(msg), "MAINPID=%d\n", (int)getpid());
	host_notify(msg);
}

static void reap(const char *why)
{
	int st = 0;

	if (child > 0 && waitpid(child, &st, 0) == child) {
		if (WIFEXITED(st))
			host_log(LOG_ERR, 0, "upgrade failed: the new process %d %s (exit status %d); "
				 "serving on", (int)child, why, WEXITSTATUS(st));
		else
			host_log(LOG_ERR, 0, "upgrade failed: the new process %d %s (signal %d); "
				 "serving on", (int)child, why, WIFSIGNALED(st) ? WTERMSIG(st) : 0);
	}
	child = -1;
}

/* The pipe is readable: 1 when the new process is ready (it then runs on
 * by itself), 0 when not yet, -1 when the upgrade failed. */
int host_upgrade_check(void)
{
	ssize_t n;

	if (ready_fd < 0)
		return 0;
	n = read(ready_fd, got + ngot, sizeof(got) - 1 - ngot);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return 0;
	if (n > 0) {
		ngot += (size_t)n;
		got[ngot] = '\0';
		if (!strstr(got, "READY\n") && ngot < sizeof(got) - 1)
			return 0;
	}
	close(ready_fd);
	ready_fd = -1;
	if (n > 0 && strstr(got, "READY\n")) {
		host_log(LOG_NOTICE, 0, "upgrade: the new process %d is ready; draining and exiting",
			 (int)child);
		child = -1;    /* not ours to wait for any more: it outlives us */
		return 1;
	}
	reap("exited before it was ready");
	return -1;
}

static int env_skip(const char *e)
{
	static const char *names[] = { "RINGLINE_INHERIT=", "RINGLINE_UPGRADE_FD=", "LISTEN_PID=",
				       "LISTEN_FDS=", "LISTEN_FDNAMES=" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strncmp(e, names[i], strlen(names[i])) == 0)
			return 1;
	return 0;
}

void host_upgrade_start(int half)
{
	static char inherit[16384];
	char inherit_env[sizeof(inherit) + 32], fd_env[48];
	int fds[256], n, p[2], rc;
	size_t nenv = 0;
	char **envp;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, dfl;

	if (child > 0) {
		/* every worker asks for the one SIGUSR2; a second signal while
		 * the new process starts is part of the same upgrade */
		host_log(LOG_DEBUG, 0, "SIGUSR2: the upgrade under way (process %d) covers it",
			 (int)child);
		return;
	}
	if (!exe[0]) {
		host_log(LOG_ERR, 0, "upgrade failed: the executable's path is unknown");
		return;
	}
	n = host_listeners_export(half, inherit, sizeof(inherit), fds, 256);
	if (n < 0) {
		host_log(LOG_ERR, 0, "upgrade failed: too many listening sockets to pass");
		return;
	}
	if (pipe2(p, O_CLOEXEC) < 0) {
		host_log(LOG_ERR, 0, "upgrade failed: pipe: %s", strerror(errno));
		return;
	}
	while (environ[nenv])
		nenv++;
	envp = calloc(nenv + 3, sizeof(*envp));
	if (!envp) {
		close(p[0]);
		close(p[1]);
		return;
	}
	nenv = 0;
	for (char **e = environ; *e; e++)
		if (!env_skip(*e))
			envp[nenv++] = *e;
	snprintf(inherit_env, sizeof(inherit_env), "RINGLINE_INHERIT=%s", inherit);
	snprintf(fd_env, sizeof(fd_env), "RINGLINE_UPGRADE_FD=%d", p[1]);
	envp[nenv++] = inherit_env;
	envp[nenv++] = fd_env;
	envp[nenv] = NULL;

	posix_spawn_file_actions_init(&fa);
	/* dup2 onto itself clears close-on-exec (POSIX 2024, glibc 2.29) */
	for (int i = 0; i < n; i++)
		posix_spawn_file_actions_adddup2(&fa, fds[i], fds[i]);
	posix_spawn_file_actions_adddup2(&fa, p[1], p[1]);
	posix_spawnattr_init(&attr);
	sigemptyset(&none);
	sigemptyset(&dfl);
	sigaddset(&dfl, SIGINT);
	sigaddset(&dfl, SIGTERM);
	sigaddset(&dfl, SIGHUP);
	sigaddset(&dfl, SIGUSR1);
	sigaddset(&dfl, SIGUSR2);
	sigaddset(&dfl, SIGPIPE);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	rc = posix_spawn(&child, exe, &fa, &attr, opts.argv, envp);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);
	free(envp);
	close(p[1]);
	if (rc != 0) {
		host_log(LOG_ERR, 0, "upgrade failed: cannot start %s: %s; serving on", exe,
			 strerror(rc));
		close(p[0]);
		child = -1;
		return;
	}
	fcntl(p[0], F_SETFL, O_NONBLOCK);
	ready_fd = p[0];
	ngot = 0;
	host_log(LOG_NOTICE, 0, "upgrade: started %s as process %d with %d listening socket(s)",
		 exe, (int)child, n);
}

/* At exit: a new process still starting (not ready: it serves nobody) is
 * stopped; one that is ready was let go already. */
void host_upgrade_finish(void)
{
	if (ready_fd >= 0)
		close(ready_fd);
	ready_fd = -1;
	/* a new process not ready yet serves nobody: it goes with us */
	if (child > 0) {
		kill(child, SIGTERM);
		waitpid(child, NULL, 0);
		child = -1;
	}
}
