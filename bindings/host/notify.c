/* SPDX-License-Identifier: MIT */
/*
 * notify.c - the service manager's readiness protocol (sd_notify) without
 * libsystemd: one datagram per state change to the AF_UNIX socket named
 * by NOTIFY_SOCKET (a path, or an abstract name written with a leading
 * '@'). Sent from the main thread only:
 *   READY=1                  every worker of the first generation listens
 *   RELOADING=1 + MONOTONIC_USEC=...   a reload (SIGHUP) began
 *   READY=1                  it ended (done, or failed: the old serve on)
 *   STOPPING=1               the final drain began
 *   MAINPID=<pid> + READY=1  a new process image (SIGUSR2) took over
 * The variable is kept (not unset): a process started by SIGUSR2 inherits
 * it and tells the manager its own pid. Without NOTIFY_SOCKET nothing is sent.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "host.h"

int host_notify(const char *msg)
{
	const char *path = getenv("NOTIFY_SOCKET");
	struct sockaddr_un sa = { .sun_family = AF_UNIX };
	size_t n;
	socklen_t len;
	int fd, rc = 0;

	if (!path || !*path)
		return 0;
	n = strlen(path);
	if ((path[0] != '/' && path[0] != '@') || n >= sizeof(sa.sun_path))
		return -EINVAL;
	memcpy(sa.sun_path, path, n);
	if (path[0] == '@')
		sa.sun_path[0] = '\0';     /* abstract: no terminating NUL counts */
	len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + (path[0] == '/'));
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	if (sendto(fd, msg, strlen(msg), MSG_NOSIGNAL, (struct sockaddr *)&sa, len) < 0)
		rc = -errno;
	close(fd);
	if (rc < 0)
		host_log(LOG_WARN, 0, "NOTIFY_SOCKET %s: %s", path, strerror(-rc));
	return rc;
}

/* RELOADING=1 with the monotonic time systemd 253 asks for. */
int host_notify_reloading(void)
{
	struct timespec ts;
	char msg[96];

	clock_gettime(CLOCK_MONOTONIC, &ts);
	snprintf(msg, sizeof(msg), "RELOADING=1\nMONOTONIC_USEC=%llu\n",
		 (unsigned long long)ts.tv_sec * 1000000ull + (unsigned long long)ts.tv_nsec / 1000);
	return host_notify(msg);
}
