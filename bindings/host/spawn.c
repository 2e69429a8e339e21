/* SPDX-License-Identifier: MIT */
/*
 * spawn.c - system(3), popen(3) and pclose(3) for the host's Lua code
 * (os.execute, io.popen), with the signals a child expects.
 *
 * The host blocks SIGINT, SIGTERM, SIGHUP, SIGUSR1 and SIGUSR2 in every
 * thread (they arrive through the main thread's signalfd) and ignores
 * SIGPIPE. A blocked mask and ignored dispositions survive exec, so a
 * process started with libc's own system or popen would not die of SIGTERM
 * or of a closed pipe. These versions start the child with posix_spawn,
 * an empty signal mask and the dispositions the host itself was started
 * with (a signal ignored then, under nohup say, stays ignored: the core's
 * rl_proc_sigdefault, which ringline.exec uses too); otherwise
 * they behave like glibc's (2.33 and later), but for one thing: system
 * does not ignore SIGINT and SIGQUIT while it waits, since those reach
 * the host through its signalfd, as a stop request. The executable exports
 * them (-rdynamic), so LuaJIT, a shared library, binds to them instead of
 * libc's.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "host.h"
#include "ringline.h"

#define SPAWN_API __attribute__((visibility("default")))

extern char **environ;

/* Which signals the child gets back at their defaults is the core's
 * knowledge (rl_proc_sigdefault: all but those ignored when the process
 * started, recorded before main), shared with ringline.exec. */
static int spawn_shell(pid_t *pid, const char *cmd, posix_spawn_file_actions_t *fa)
{
	posix_spawnattr_t attr;
	sigset_t none, dfl;
	char *argv[] = { "sh", "-c", (char *)cmd, NULL };
	int rc;

	sigemptyset(&none);
	rl_proc_sigdefault(&dfl);
	posix_spawnattr_init(&attr);
	posix_spawnattr_setsigmask(&attr, &none);
	posix_spawnattr_setsigdefault(&attr, &dfl);
	posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	rc = posix_spawn(pid, "/bin/sh", fa, &attr, argv, environ);
	posix_spawnattr_destroy(&attr);
	return rc;
}

static int wait_child(pid_t pid)
{
	int status;

	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return status;
}

SPAWN_API int system(const char *cmd)
{
	pid_t pid;
	int rc;

	if (!cmd)
		return access("/bin/sh", X_OK) == 0;
	rc = spawn_shell(&pid, cmd, NULL);
	if (rc != 0) {
		/* as glibc (2.33+): the status of a shell that exited with 127 */
		errno = rc;
		return W_EXITCODE(127, 0);
	}
	return wait_child(pid);
}

/* The streams popen returned and their children, for pclose. */
struct child {
	struct child *next;
	FILE *fp;
	pid_t pid;
};

static struct child *children;
static pthread_mutex_t children_lock = PTHREAD_MUTEX_INITIALIZER;

SPAWN_API FILE *popen(const char *cmd, const char *mode)
{
	posix_spawn_file_actions_t fa;
	struct child *c;
	int fds[2], reading, mine, theirs, rc;
	pid_t pid;
	FILE *fp;

	/* "r" or "w", and "e" (close-on-exec, which ours always is) */
	if (!cmd || !mode || (mode[0] != 'r' && mode[0] != 'w') ||
	    (mode[1] && (mode[1] != 'e' || mode[2]))) {
		errno = EINVAL;
		return NULL;
	}
	reading = mode[0] == 'r';
	c = malloc(sizeof(*c));
	if (!c)
		return NULL;
	/* close-on-exec: no other child inherits this pipe (POSIX asks popen
	 * to keep one child's pipe out of the next one's) */
	if (pipe2(fds, O_CLOEXEC) < 0) {
		free(c);
		return NULL;
	}
	mine = reading ? fds[0] : fds[1];
	theirs = reading ? fds[1] : fds[0];
	posix_spawn_file_actions_init(&fa);
	/* dup2 clears close-on-exec on the copy */
	posix_spawn_file_actions_adddup2(&fa, theirs, reading ? STDOUT_FILENO : STDIN_FILENO);
	rc = spawn_shell(&pid, cmd, &fa);
	posix_spawn_file_actions_destroy(&fa);
	close(theirs);
	if (rc != 0) {
		close(mine);
		free(c);
		errno = rc;
		return NULL;
	}
	fp = fdopen(mine, reading ? "r" : "w");
	if (!fp) {
		close(mine);
		wait_child(pid);
		free(c);
		return NULL;
	}
	c->fp = fp;
	c->pid = pid;
	pthread_mutex_lock(&children_lock);
	c->next = children;
	children = c;
	pthread_mutex_unlock(&children_lock);
	return fp;
}

SPAWN_API int pclose(FILE *fp)
{
	struct child **pp, *c = NULL;
	pid_t pid;

	pthread_mutex_lock(&children_lock);
	for (pp = &children; *pp; pp = &(*pp)->next) {
		if ((*pp)->fp == fp) {
			c = *pp;
			*pp = c->next;
			break;
		}
	}
	pthread_mutex_unlock(&children_lock);
	if (!c) { /* not ours: closed all the same, as libc does */
		fclose(fp);
		errno = ECHILD;
		return -1;
	}
	pid = c->pid;
	free(c);
	fclose(fp);
	return wait_child(pid);
}
