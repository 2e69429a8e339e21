/* SPDX-License-Identifier: MIT */
/*
 * listeners.c - the process's listening sockets, kept across generations
 * of workers, and the ones it was given at start.
 *
 * A reload (SIGHUP) starts new workers while the old ones still accept; a
 * binary upgrade (SIGUSR2) starts a new process while this one does. Neither
 * may close a listening socket in between: a peer arriving then would be
 * refused, and the connections queued on a closed socket are reset. So the
 * host keeps one descriptor of every listening socket its workers opened
 * (the `held` table), and a worker's listen (rl_host_listen) first looks
 * there: a socket held for the same address and the same worker index is
 * adopted (a dup of it, rl_listen_fd) instead of bound anew. Old and new
 * workers then accept on the same socket, with the same queue, until the
 * old ones release theirs (rl_listener_release) and drain.
 *
 * Entries are keyed by the address text as given to listen and the worker
 * index (each worker has its own SO_REUSEPORT socket); port 0 keeps its
 * port across a reload that way. Each entry remembers which generation of
 * each half of the worker slots took it (taken[]): when a generation has
 * ended, the sockets nobody else took are closed; a script's own
 * listener:close() gives the entry up too.
 *
 * Sockets given at start:
 *   systemd socket activation: LISTEN_PID (ours), LISTEN_FDS (from fd 3),
 *   LISTEN_FDNAMES. A listen whose address matches one (getsockname: the
 *   same port, and the same host or both wildcards; a unix path) adopts
 *   it, in every worker: they share that one socket. They are never closed
 *   by the host. Ones no listen took are reported once every worker of the
 *   first generation is ready.
 *   RINGLINE_INHERIT (a binary upgrade, below): "fd,worker,addr;..." -
 *   the sockets of the process that exec'd us, adopted as if held here
 *   (worker -1: shared, as systemd's; -2: the host's own --metrics one).
 * Both variables are removed from the environment once read, so children
 * (os.execute) do not see them.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "host.h"
#include "rl_host.h"

#define MAX_HELD 256

enum { SRC_BOUND, SRC_SYSTEMD, SRC_INHERIT, SRC_HOST };

/* The worker index of a socket of the host's own (--metrics): passed on by
 * an upgrade like the workers' ones, never a worker's listen. */
#define HOST_OWN (-2)

struct held {
	char *addr;       /* as given to listen; NULL: an activated socket */
	char *name;       /* LISTEN_FDNAMES entry, for the log */
	int worker;       /* worker index; -1: shared by every worker */
	int fd;           /* the host's own descriptor (close-on-exec) */
	int source;
	int taken[2];     /* generation of each half of the slots that took it */
	int ever;         /* adopted at least once */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct held held[MAX_HELD];
static int nheld;
static int closed_all;   /* the final stop closed them: no more listens keep one */

static void drop(int i)
{
	if (held[i].fd >= 0)
		close(held[i].fd);
	free(held[i].addr);
	free(held[i].name);
	held[i] = held[--nheld];
}

/* ---- address matching (activated sockets) ---- */

static int wildcard(const char *h)
{
	return !*h || strcmp(h, "*") == 0 || strcmp(h, "0.0.0.0") == 0 || strcmp(h, "::") == 0;
}

/* Does fd's bound address match addr as written for listen? */
static int matches(int fd, const char *addr)
{
	char name[512], host[256];
	int port = rl_fd_name(fd, 0, name, sizeof(name));
	const char *colon;
	long want;
	char *end;

	if (port < 0)
		return 0;
	if (strncmp(addr, "unix:", 5) == 0)
		return strcmp(name, addr) == 0;
	if (addr[0] == '[') {
		const char *close_ = strchr(addr, ']');

		if (!close_ || close_[1] != ':' || (size_t)(close_ - addr - 1) >= sizeof(host))
			return 0;
		memcpy(host, addr + 1, (size_t)(close_ - addr - 1));
		host[close_ - addr - 1] = '\0';
		colon = close_ + 1;
	} else if ((colon = strrchr(addr, ':')) != NULL) {
		if ((size_t)(colon - addr) >= sizeof(host))
			return 0;
		memcpy(host, addr, (size_t)(colon - addr));
		host[colon - addr] = '\0';
	} else {
		host[0] = '\0';      /* "8080" */
		colon = addr - 1;
	}
	want = strtol(colon + 1, &end, 10);
	if (end == colon + 1 || *end || want <= 0 || want != port)
		return 0;
	if (wildcard(host))
		return wildcard(name);
	if (strcmp(host, "localhost") == 0)
		return strcmp(name, "127.0.0.1") == 0 || strcmp(name, "::1") == 0;
	return strcmp(host, name) == 0;
}

/* ---- start: sockets given to us ---- */

static int add_given(int fd, const char *addr, int worker, int source, const char *name)
{
	if (nheld == MAX_HELD)
		return -EMFILE;
	/* ours from now on, and no child of ours (os.execute) gets it */
	fcntl(fd, F_SETFD, FD_CLOEXEC);
	held[nheld] = (struct held){ .fd = fd, .worker = worker, .source = source };
	held[nheld].addr = addr ? strdup(addr) : NULL;
	held[nheld].name = name ? strdup(name) : NULL;
	nheld++;
	return 0;
}

static void read_systemd(void)
{
	const char *pid = getenv("LISTEN_PID"), *nfds = getenv("LISTEN_FDS");
	const char *names = getenv("LISTEN_FDNAMES");
	char *copy = names ? strdup(names) : NULL, *save = NULL;
	char *name = copy ? strtok_r(copy, ":", &save) : NULL;
	long n;

	if (!pid || !nfds || strtol(pid, NULL, 10) != (long)getpid()) {
		free(copy);
		return;
	}
	n = strtol(nfds, NULL, 10);
	for (long i = 0; i < n && i < MAX_HELD; i++) {
		int fd = 3 + (int)i, v = 0;
		socklen_t len = sizeof(v);

		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) < 0 || !v) {
			host_log(LOG_WARN, 0, "LISTEN_FDS: descriptor %d%s%s%s is not a listening "
				 "socket; ignored", fd, name ? " (" : "", name ? name : "",
				 name ? ")" : "");
		} else {
			add_given(fd, NULL, -1, SRC_SYSTEMD, name);
		}
		if (name)
			name = strtok_r(NULL, ":", &save);
	}
	free(copy);
}

static void read_inherit(void)
{
	const char *env = getenv("RINGLINE_INHERIT");
	char *copy = env ? strdup(env) : NULL, *save = NULL;

	for (char *e = copy ? strtok_r(copy, ";", &save) : NULL; e; e = strtok_r(NULL, ";", &save)) {
		char *end, *end2;
		long fd = strtol(e, &end, 10), worker;
		int v = 0;
		socklen_t len = sizeof(v);

		if (end == e || *end != ',')
			goto bad;
		worker = strtol(end + 1, &end2, 10);
		if (end2 == end + 1 || *end2 != ',' || !end2[1] || fd < 3 || worker < HOST_OWN)
			goto bad;
		if (getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) < 0 || !v)
			goto bad;
		/* worker -1: a socket every worker shares (systemd's, passed on):
		 * matched by address, as at activation; -2: the host's own */
		if (worker == HOST_OWN)
			add_given((int)fd, end2 + 1, HOST_OWN, SRC_HOST, NULL);
		else if (worker < 0)
			add_given((int)fd, NULL, -1, SRC_SYSTEMD, end2 + 1);
		else
			add_given((int)fd, end2 + 1, (int)worker, SRC_INHERIT, NULL);
		continue;
bad:
		host_log(LOG_WARN, 0, "RINGLINE_INHERIT: '%s' is not fd,worker,addr of a listening "
			 "socket; ignored", e);
	}
	free(copy);
}

void host_listeners_init(void)
{
	static int done;

	if (done++)
		return;
	read_systemd();
	read_inherit();
	unsetenv("LISTEN_PID");
	unsetenv("LISTEN_FDS");
	unsetenv("LISTEN_FDNAMES");
	unsetenv("RINGLINE_INHERIT");
}

/* ---- the host's own sockets (--metrics) ---- */

/* A socket for the host's own listener on addr: the one a binary upgrade
 * passed (the descriptor, now the caller's), or -1 to bind one. */
int host_listeners_take_own(const char *addr)
{
	int fd = -1;

	host_listeners_init();
	pthread_mutex_lock(&lock);
	for (int i = 0; i < nheld; i++) {
		if (held[i].source == SRC_HOST && !held[i].ever && strcmp(held[i].addr, addr) == 0) {
			fd = fcntl(held[i].fd, F_DUPFD_CLOEXEC, 3);
			held[i].ever = 1;
			break;
		}
	}
	pthread_mutex_unlock(&lock);
	return fd;
}

/* Keep a dup of the host's own listening socket on addr, so an upgrade
 * passes it on (the new process could not bind the address while we
 * serve it). */
void host_listeners_keep_own(const char *addr, int fd)
{
	pthread_mutex_lock(&lock);
	for (int i = 0; i < nheld; i++)
		if (held[i].source == SRC_HOST && strcmp(held[i].addr, addr) == 0) {
			pthread_mutex_unlock(&lock);
			return;         /* adopted: the inherited entry is it */
		}
	if (nheld < MAX_HELD) {
		int keep = fcntl(fd, F_DUPFD_CLOEXEC, 3);

		if (keep >= 0) {
			held[nheld] = (struct held){ .fd = keep, .worker = HOST_OWN, .source = SRC_HOST,
						     .ever = 1 };
			held[nheld].addr = strdup(addr);
			if (held[nheld].addr)
				nheld++;
			else
				close(keep);
		}
	}
	pthread_mutex_unlock(&lock);
}

/* ---- listen ---- */

RL_HOST_API int rl_host_listen(struct rl_worker *w, int slot, const char *addr, uint32_t flags,
			       uint32_t backlog)
{
	int half, worker, gen, id, fd, keep = -1, found = -1;

	if (!w || !addr || host_slot_info(slot, &half, &worker, &gen) < 0)
		return -EINVAL;
	pthread_mutex_lock(&lock);
	/* the same address and worker, not taken by this generation yet */
	for (int i = 0; i < nheld && found < 0; i++)
		if (held[i].addr && strcmp(held[i].addr, addr) == 0 &&
		    held[i].worker == worker && held[i].taken[half] != gen)
			found = i;
	/* an activated socket with that address, shared by every worker */
	for (int i = 0; i < nheld && found < 0; i++)
		if (held[i].source == SRC_SYSTEMD && matches(held[i].fd, addr))
			found = i;
	if (found >= 0) {
		fd = fcntl(held[found].fd, F_DUPFD_CLOEXEC, 3);
		if (fd < 0) {
			id = -errno;
			goto out;
		}
		id = rl_listen_fd(w, fd, flags);
		if (id < 0) {
			close(fd);
			goto out;
		}
		held[found].taken[half] = gen;
		held[found].ever = 1;
		goto out;
	}
	fd = rl_listen_socket(addr, flags, backlog);
	if (fd < 0) {
		id = fd;
		goto out;
	}
	/* keep one (not after the final stop began: then the socket must
	 * close with the worker's listener) */
	if (!closed_all && nheld < MAX_HELD)
		keep = fcntl(fd, F_DUPFD_CLOEXEC, 3);
	id = rl_listen_fd(w, fd, flags);
	if (id < 0) {
		close(fd);
		if (keep >= 0)
			close(keep);
		goto out;
	}
	if (keep >= 0) {
		held[nheld] = (struct held){ .fd = keep, .worker = worker, .source = SRC_BOUND,
					     .ever = 1 };
		held[nheld].addr = strdup(addr);
		held[nheld].taken[half] = gen;
		if (!held[nheld].addr)
			close(keep);
		else
			nheld++;
	}
out:
	pthread_mutex_unlock(&lock);
	return id;
}

RL_HOST_API int rl_host_unlisten(int slot, const char *addr)
{
	int half, worker, gen;

	if (!addr || host_slot_info(slot, &half, &worker, &gen) < 0)
		return -EINVAL;
	pthread_mutex_lock(&lock);
	for (int i = 0; i < nheld; i++) {
		struct held *h = &held[i];

		if (!h->addr || h->source == SRC_SYSTEMD || h->worker != worker ||
		    strcmp(h->addr, addr) != 0 || h->taken[half] != gen)
			continue;
		h->taken[half] = 0;
		if (!h->taken[!half])
			drop(i);
		break;
	}
	pthread_mutex_unlock(&lock);
	return 0;
}

/* Half `half` of the slots has ended (its generation gen is gone): the
 * sockets only it held are closed. */
void host_listeners_retire(int half, int gen)
{
	pthread_mutex_lock(&lock);
	for (int i = 0; i < nheld;) {
		struct held *h = &held[i];

		if (h->taken[half] == gen)
			h->taken[half] = 0;
		if (h->source != SRC_SYSTEMD && h->source != SRC_HOST && !h->taken[0] &&
		    !h->taken[1] && (h->source != SRC_INHERIT || h->ever)) {
			drop(i);
			continue;
		}
		i++;
	}
	pthread_mutex_unlock(&lock);
}

/* Once the first generation is ready: report given sockets nobody took
 * (inherited ones are closed: the new script no longer listens there). */
void host_listeners_report_unused(void)
{
	pthread_mutex_lock(&lock);
	for (int i = 0; i < nheld;) {
		struct held *h = &held[i];
		char name[512] = "?";

		if (h->ever || h->source == SRC_BOUND) {
			i++;
			continue;
		}
		if (h->source == SRC_HOST) {   /* no --metrics here any more */
			drop(i);
			continue;
		}
		rl_fd_name(h->fd, 0, name, sizeof(name));
		if (h->source == SRC_SYSTEMD) {
			host_log(LOG_WARN, 0, "socket activation: descriptor %d (%s%s%s) matches no "
				 "listen of the script; unused", h->fd, name, h->name ? ", " : "",
				 h->name ? h->name : "");
			h->ever = 1;   /* said once */
			i++;
		} else {
			host_log(LOG_WARN, 0, "inherited socket %s (%s) matches no listen of the "
				 "script; closed", h->addr, name);
			drop(i);
		}
	}
	pthread_mutex_unlock(&lock);
}

/* The final stop: close every socket we hold, so the kernel refuses new
 * peers as soon as the workers' own descriptors are closed too. */
void host_listeners_close_all(void)
{
	pthread_mutex_lock(&lock);
	closed_all = 1;
	while (nheld)
		drop(nheld - 1);
	pthread_mutex_unlock(&lock);
}

/* RINGLINE_INHERIT for a new process image: the sockets the serving
 * generation (half) holds, as "fd,worker,addr;...", and their descriptors
 * in fds (at most max). Activated sockets go as "fd,-1,addr" with their
 * address as getsockname tells it. Returns the count, or -ENOSPC. */
int host_listeners_export(int half, char *buf, size_t len, int *fds, int max)
{
	size_t off = 0;
	int n = 0;

	buf[0] = '\0';
	pthread_mutex_lock(&lock);
	for (int i = 0; i < nheld; i++) {
		struct held *h = &held[i];
		char name[512];
		const char *addr = h->addr;
		int k;

		if (!h->taken[half] && h->source != SRC_SYSTEMD && h->source != SRC_HOST)
			continue;
		if (!addr) {
			int port = rl_fd_name(h->fd, 0, name, sizeof(name));

			if (port < 0)
				continue;
			if (strncmp(name, "unix:", 5) != 0) {
				char host[512];

				memcpy(host, name, sizeof(host));
				snprintf(name, sizeof(name), strchr(host, ':') ? "[%s]:%d" : "%s:%d",
					 host, port);
			}
			addr = name;
		}
		if (n == max || strchr(addr, ';')) {
			n = -ENOSPC;
			break;
		}
		k = snprintf(buf + off, len - off, "%s%d,%d,%s", n ? ";" : "", h->fd, h->worker, addr);
		if (k < 0 || (size_t)k >= len - off) {
			n = -ENOSPC;
			break;
		}
		off += (size_t)k;
		fds[n++] = h->fd;
	}
	pthread_mutex_unlock(&lock);
	return n;
}
