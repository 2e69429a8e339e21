/* SPDX-License-Identifier: MIT */
/*
 * listener.c - listening sockets with one multishot accept each, accepting
 * straight into the fixed file table (the kernel picks the index, which is
 * the connection slot).
 *
 * When the table is full the kernel fails that accept with ENFILE after
 * taking the peer off the backlog and closing it: the peer is refused, the
 * refusal is counted and the accept re-armed. Transient errors re-arm too;
 * errors that mean the socket itself is unusable stop the listener and are
 * reported with RL_EV_LISTENER.
 *
 * A listener is one of three kinds: local (accepts and serves), acceptor
 * (accepts and hands each connection to a hand-off group's member, see
 * handoff.c) or member (no socket; serves what an acceptor hands it).
 */
#include <errno.h>
#include <fcntl.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

/* Accepted sockets go straight into the fixed table, except on a kernel
 * without FIXED_FD_INSTALL (6.8): there a plain descriptor is the only way
 * to a connection's names, options and SO_LINGER, so a local listener takes
 * plain descriptors and installs each one (rl__install_inbound). An
 * acceptor's connections must be fixed files to be passed on. */
static int accepts_plain(const struct rl_worker *w, const struct rl_listener *l)
{
	return l->kind == RL_LISTENER_LOCAL && !(w->features & RL_FEAT_FD_INSTALL);
}

/* IORING_ACCEPT_DONTWAIT (Linux 6.10): fail with EAGAIN instead of
 * waiting for a peer. liburing 2.3's header does not name it yet. */
#ifndef IORING_ACCEPT_DONTWAIT
#define IORING_ACCEPT_DONTWAIT (1U << 1)
#endif

static void accept_arm(struct rl_worker *w, int id)
{
	struct rl_listener *l = &w->listeners[id];
	struct io_uring_sqe *sqe = rl__sqe(w);
	if (!sqe)
		return;
	if (accepts_plain(w, l))
		io_uring_prep_multishot_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
	else
		io_uring_prep_multishot_accept_direct(sqe, l->fd, NULL, NULL, 0);
	io_uring_sqe_set_data64(sqe, rl_ud_pack(RL_OP_ACCEPT, (uint32_t)id, l->gen));
	l->armed = 1;
	w->m.ops_inflight++;
}

/*
 * A released socket goes on accepting in another ring (the worker that took
 * it over), and the kernel wakes one accept of a listening socket per peer
 * (io_uring's accept waits exclusively). A peer whose wake-up went to our
 * accept while its cancel was under way (the cancel wins: the accept ends
 * without taking it) is left queued with nobody woken for it: it waits for
 * the next peer to wake the other ring, or forever. So once our accept has
 * ended, take what is queued with accepts that never wait (one at a time,
 * each serving its peer as a late one) until the queue is empty. A peer
 * the other ring was woken for may come here instead: served all the same.
 * At most RL_SWEEP_MAX: under a steady stream of new peers the queue may
 * never be empty, and each new peer wakes the other ring anyway (which
 * then takes the whole queue), so a stranded peer only waits that long.
 * Returns whether one was submitted. A kernel without DONTWAIT fails it
 * with EINVAL, and the release is as before.
 */
#define RL_SWEEP_MAX 16

static int sweep_arm(struct rl_worker *w, int id)
{
	struct rl_listener *l = &w->listeners[id];
	struct io_uring_sqe *sqe = rl__sqe(w);
	if (!sqe)
		return 0;
	if (accepts_plain(w, l))
		io_uring_prep_accept(sqe, l->fd, NULL, NULL, SOCK_CLOEXEC);
	else
		/* liburing stores index + 1: ALLOC - 1 asks the kernel to pick */
		io_uring_prep_accept_direct(sqe, l->fd, NULL, NULL, 0, IORING_FILE_INDEX_ALLOC - 1);
	sqe->ioprio |= IORING_ACCEPT_DONTWAIT;
	io_uring_sqe_set_data64(sqe, rl_ud_pack(RL_OP_ACCEPT, (uint32_t)id, l->gen));
	l->armed = 1;
	l->sweeps++;
	w->m.ops_inflight++;
	return 1;
}

static void listener_free(struct rl_worker *w, struct rl_listener *l, int err)
{
	if (l->fd >= 0)
		close(l->fd);
	if (l->kind == RL_LISTENER_ACCEPTOR) {
		rl__handoff_acceptor_gone(l->h, err);
		w->acceptors--;
	} else if (l->kind == RL_LISTENER_MEMBER) {
		w->members--;
	}
	l->fd = -1;
	l->h = NULL;
	l->kind = RL_LISTENER_LOCAL;
	l->used = 0;
	l->closing = 0;
	l->released = 0;
	l->sweeps = 0;
	l->installs = 0;
	l->linger_until = 0;
	l->gen++;
}

/* Before binding a unix socket path: a socket file left by an earlier run
 * (nobody accepts on it: connect says ECONNREFUSED) would make bind fail and
 * is removed; a live one (connect succeeds, or its backlog is full) belongs
 * to a server that is running, which must not silently lose its address to
 * us: -EADDRINUSE. Only sockets are removed, never another kind of file
 * (bind then fails with EADDRINUSE by itself). Two servers starting at the
 * same instant can still both find the file stale; that race is theirs. */
static int unix_path_free(const struct sockaddr_storage *ss, socklen_t len)
{
	struct stat st;
	const char *path = ((const struct sockaddr_un *)ss)->sun_path;
	if (stat(path, &st) != 0 || !S_ISSOCK(st.st_mode))
		return 0;
	int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (probe < 0)
		return -errno;
	int rc = connect(probe, (const struct sockaddr *)ss, len) == 0 ? 0 : -errno;
	close(probe);
	switch (rc) {
	case -ECONNREFUSED: /* stale: nobody listens */
		if (unlink(path) < 0 && errno != ENOENT)
			return -errno;
		return 0;
	case -ENOENT: /* gone meanwhile */
		return 0;
	case 0:
	case -EAGAIN: /* listening, its backlog full */
	case -EINPROGRESS:
		return -EADDRINUSE;
	default: /* e.g. EACCES: cannot tell, so leave it alone */
		return rc;
	}
}

/* Permissions of a unix socket file: applied after bind (which created it)
 * and before listen, so no peer can connect through the umask's mode in
 * between (a connect to a socket that is not listening yet is refused).
 * chmod on the path: fchmod on a socket changes the socket's inode, not
 * the file. The directory must not be writable by others anyway. */
static int unix_path_mode(const struct sockaddr_storage *ss, uint32_t flags)
{
	if (!(flags & RL_LISTEN_MODE))
		return 0;
	mode_t mode = (mode_t)((flags >> RL_LISTEN_MODE_SHIFT) & 0777);
	if (chmod(((const struct sockaddr_un *)ss)->sun_path, mode) < 0)
		return -errno;
	return 0;
}

int rl__listen_socket(const char *addr, uint32_t flags, uint32_t backlog, int *port)
{
	struct sockaddr_storage ss;
	socklen_t len;
	int rc = rl__parse_addr(addr, 1, &ss, &len);
	if (rc)
		return rc;
	if (ss.ss_family == AF_UNIX) {
		rc = unix_path_free(&ss, len);
		if (rc)
			return rc;
	} else if (flags & RL_LISTEN_MODE) {
		return -EINVAL; /* a mode is for unix socket files only */
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	int one = 1;
	if (ss.ss_family != AF_UNIX) {
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (flags & RL_LISTEN_REUSEPORT)
			setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one));
		if (flags & RL_LISTEN_NODELAY) /* accepted sockets inherit it */
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	if (bind(fd, (struct sockaddr *)&ss, len) < 0) {
		rc = -errno;
		close(fd);
		return rc;
	}
	rc = ss.ss_family == AF_UNIX ? unix_path_mode(&ss, flags) : 0;
	if (rc == 0 && listen(fd, (int)backlog) < 0)
		rc = -errno;
	if (rc) {
		if (ss.ss_family == AF_UNIX) /* ours: bound a moment ago */
			unlink(((struct sockaddr_un *)&ss)->sun_path);
		close(fd);
		return rc;
	}
	rc = rl_fd_name(fd, 0, NULL, 0);
	*port = rc > 0 ? rc : 0;
	return fd;
}

int rl__listener_add(struct rl_worker *w, int fd, int port, int kind, struct rl_handoff *h)
{
	int id = -1;
	for (int i = 0; i < RL_MAX_LISTENERS; i++) {
		if (!w->listeners[i].used) {
			id = i;
			break;
		}
	}
	if (id < 0)
		return -EMFILE;
	struct rl_listener *l = &w->listeners[id];
	l->fd = fd;
	l->port = port;
	l->h = h;
	l->kind = (uint8_t)kind;
	l->used = 1;
	l->closing = 0;
	l->released = 0;
	if (kind == RL_LISTENER_MEMBER) {
		w->members++;
		return id;
	}
	if (kind == RL_LISTENER_ACCEPTOR)
		w->acceptors++;
	accept_arm(w, id);
	if (!l->armed) {
		if (kind == RL_LISTENER_ACCEPTOR)
			w->acceptors--;
		/* the caller still owns fd, and a group stays as it was */
		l->fd = -1;
		l->kind = RL_LISTENER_LOCAL;
		l->h = NULL;
		listener_free(w, l, 0);
		return -EBUSY;
	}
	return id;
}

int rl_listen(struct rl_worker *w, const char *addr, uint32_t flags)
{
	int port;
	int fd = rl__listen_socket(addr, flags, w->cfg.listen_backlog, &port);
	if (fd < 0)
		return fd;
	int id = rl__listener_add(w, fd, port, RL_LISTENER_LOCAL, NULL);
	if (id < 0)
		close(fd);
	return id;
}

int rl_listen_socket(const char *addr, uint32_t flags, uint32_t backlog)
{
	int port;
	if (!addr || backlog == 0)
		return -EINVAL;
	return rl__listen_socket(addr, flags, backlog, &port);
}

int rl_listen_fd(struct rl_worker *w, int fd, uint32_t flags)
{
	int v = 0, type = 0;
	socklen_t len = sizeof(v);
	if (fd < 0)
		return -EBADF;
	if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &v, &len) < 0)
		return -errno;
	len = sizeof(type);
	if (!v || getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM)
		return -EINVAL;
	if (flags & RL_LISTEN_NODELAY) {
		int one = 1, domain = 0;
		len = sizeof(domain);
		if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) == 0 && domain != AF_UNIX)
			setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	}
	int rc = rl_fd_name(fd, 0, NULL, 0);
	return rl__listener_add(w, fd, rc > 0 ? rc : 0, RL_LISTENER_LOCAL, NULL);
}

struct rl_listener *rl__listener_get(struct rl_worker *w, uint32_t id, uint32_t gen)
{
	struct rl_listener *l = id < RL_MAX_LISTENERS ? &w->listeners[id] : NULL;
	return l && l->used && l->gen == gen ? l : NULL;
}

int rl_listener_port(struct rl_worker *w, int id)
{
	if (id < 0 || id >= RL_MAX_LISTENERS || !w->listeners[id].used)
		return -ENOENT;
	return w->listeners[id].port;
}

int rl_listener_gen(struct rl_worker *w, int id, uint32_t *gen)
{
	if (id < 0 || id >= RL_MAX_LISTENERS || !w->listeners[id].used || !gen)
		return -ENOENT;
	*gen = w->listeners[id].gen;
	return 0;
}

void rl__listener_refuse(struct rl_listener *l)
{
	/* A unix socket refuses new peers from now on (connect sees
	 * ECONNREFUSED once SHUT_RD is set), not only once its accept is
	 * cancelled: a listener opened on its path right after this finds the
	 * file stale and takes it, as it would after the close completed. */
	int domain = 0;
	socklen_t dlen = sizeof(domain);
	if (l->fd >= 0 && getsockopt(l->fd, SOL_SOCKET, SO_DOMAIN, &domain, &dlen) == 0 &&
	    domain == AF_UNIX)
		shutdown(l->fd, SHUT_RD);
}

int rl_listener_close(struct rl_worker *w, int id)
{
	if (id < 0 || id >= RL_MAX_LISTENERS || !w->listeners[id].used ||
	    w->listeners[id].closing)
		return -ENOENT;
	struct rl_listener *l = &w->listeners[id];
	l->closing = 1;
	if (l->kind == RL_LISTENER_MEMBER)
		rl__handoff_leave(l->h, w, id);
	if (!l->released) /* a released socket goes on accepting elsewhere */
		rl__listener_refuse(l);
	if (l->kind == RL_LISTENER_MEMBER && l->released && !w->destroying) {
		/* passes submitted before it left may still arrive: serve them */
		l->linger_until = rl__clock_now() + RL_MEMBER_LINGER_S;
		if (!w->linger_until || l->linger_until < w->linger_until)
			w->linger_until = l->linger_until;
		return 0;
	}
	if (!l->armed) {
		if (!l->installs)
			listener_free(w, l, 0);
		return 0;
	}
	struct io_uring_sqe *sqe = rl__sqe(w);
	if (!sqe) { /* not closing after all: a later close tries again (teardown
		     * tries once, then waits out its bound) */
		l->closing = 0;
		return -EBUSY;
	}
	io_uring_prep_cancel64(sqe, rl_ud_pack(RL_OP_ACCEPT, (uint32_t)id, l->gen), 0);
	io_uring_sqe_set_data64(sqe, rl_ud_pack(RL_OP_UNOWNED, (uint32_t)id, l->gen));
	w->m.ops_inflight++;
	return 0;
}

int rl_listener_release(struct rl_worker *w, int id)
{
	if (id < 0 || id >= RL_MAX_LISTENERS || !w->listeners[id].used ||
	    w->listeners[id].closing)
		return -ENOENT;
	/* a member's late arrivals are connections handed to it before it
	 * left; an acceptor's socket is its group's alone */
	if (w->listeners[id].kind != RL_LISTENER_ACCEPTOR)
		w->listeners[id].released = 1;
	int rc = rl_listener_close(w, id);
	if (rc < 0 && w->listeners[id].used)
		w->listeners[id].released = 0;
	return rc;
}

void rl__listeners_close_all(struct rl_worker *w)
{
	for (int i = 0; i < RL_MAX_LISTENERS; i++)
		if (w->listeners[i].used && !w->listeners[i].closing)
			rl_listener_close(w, i);
	if (w->destroying)
		rl__listeners_linger_end(w);
}

void rl__listeners_linger_end(struct rl_worker *w)
{
	double next = 0;
	for (int i = 0; i < RL_MAX_LISTENERS; i++) {
		struct rl_listener *l = &w->listeners[i];
		if (!l->used || l->kind != RL_LISTENER_MEMBER || !l->closing || !l->released)
			continue;
		if (w->destroying || w->now >= l->linger_until)
			listener_free(w, l, 0);
		else if (!next || l->linger_until < next)
			next = l->linger_until;
	}
	w->linger_until = next;
}

static int transient(int err)
{
	switch (err) {
	case -ENFILE: case -EMFILE: case -ENOBUFS: case -ENOMEM: case -ECONNABORTED:
	case -EPERM: case -EINTR: case -EAGAIN: case -EPROTO: case -ENETDOWN:
	case -ENOPROTOOPT: case -EHOSTDOWN: case -ENONET: case -EHOSTUNREACH:
	case -EOPNOTSUPP: case -ENETUNREACH: case -ECANCELED:
		return 1;
	default:
		return 0;
	}
}

void rl__prep_close_slot(struct rl_worker *w, struct io_uring_sqe *sqe, uint32_t slot)
{
	io_uring_prep_close_direct(sqe, slot);
	io_uring_sqe_set_data64(sqe, rl_ud_pack(RL_OP_UNOWNED, 0, 0)); /* its completion only counts */
	w->m.ops_inflight++;
}

void rl__listener_close_slot(struct rl_worker *w, uint32_t slot)
{
	struct io_uring_sqe *sqe = rl__sqe(w);
	if (sqe)
		rl__prep_close_slot(w, sqe, slot);
}

void rl__listener_adopt(struct rl_worker *w, struct rl_listener *l, uint32_t id, uint32_t slot,
			int rawfd)
{
	struct rl_conn *c = rl__conntab_open(&w->conns, slot);
	if (!c) {
		/* The kernel gave an index whose slot is still live: a broken
		 * invariant. Close the file, keep the slot. */
		rl__listener_close_slot(w, slot);
		if (rawfd >= 0)
			close(rawfd);
		w->m.stale_cqes++;
		return;
	}
	c->rawfd = rawfd;
	c->accepted_at = w->now;   /* accept-to-first-byte starts here */
	w->m.conns_accepted++;
	rl__conn_start(w, c);
	if ((l->closing && !l->released) || w->destroying) {
		c->flags |= RL_CONN_F_SILENT;
		rl__conn_begin_close(w, c, RL_CLOSE_RESET, -ECANCELED);
	} else {
		rl__emit_aux(w, RL_EV_ACCEPTED, 0, c->slot, c->io.gen, id, l->gen);
	}
}

void rl__listener_install_done(struct rl_worker *w, struct rl_listener *l)
{
	if (l->installs)
		l->installs--;
	if (!l->installs && l->closing && !l->armed)
		listener_free(w, l, 0);
}

/*
 * A plain accept out of descriptors (EMFILE/ENFILE) fails before it takes
 * the peer off the queue, so an accept armed again would fail again at once:
 * a spin. Refuse the first queued peer with the descriptor kept in reserve
 * (close it, accept, close that, take it back), as nginx and libev do.
 * The reserve is taken back only after the refused socket is closed: the
 * accept takes the reserve's own number. Returns whether the queue moved:
 * then arming again at once is worth it. With nothing queued it is not:
 * an armed accept takes its descriptor first and fails at once.
 */
static int refuse_queued(struct rl_worker *w, struct rl_listener *l)
{
	struct pollfd pf = { .fd = l->fd, .events = POLLIN };
	if (poll(&pf, 1, 0) != 1)
		return 0; /* nothing queued */
	if (w->spare_fd < 0) /* lost to another thread of the process: try again */
		w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (w->spare_fd < 0)
		return 0;
	close(w->spare_fd);
	int fd = accept4(l->fd, NULL, NULL, SOCK_CLOEXEC);
	int err = fd < 0 ? errno : 0;
	if (fd >= 0) {
		close(fd);
		w->m.conns_refused++;
	}
	w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	/* EAGAIN, ECONNABORTED, ...: the queue moved without us */
	return fd >= 0 || (err != EMFILE && err != ENFILE);
}

/* Arm again the plain listeners that stopped for want of a descriptor:
 * when a connection of ours closed (one is free now), and at
 * accept_retry_at (descriptors are the process's: another thread may have
 * freed some). */
void rl__listeners_fd_freed(struct rl_worker *w)
{
	if (!w->accept_retry_at)
		return;
	w->accept_retry_at = 0;
	for (int i = 0; i < RL_MAX_LISTENERS; i++) {
		struct rl_listener *l = &w->listeners[i];
		if (l->used && !l->armed && !l->closing && l->kind == RL_LISTENER_LOCAL)
			accept_arm(w, i);
	}
}

void rl__listener_on_accept(struct rl_worker *w, struct io_uring_cqe *cqe)
{
	uint32_t id = rl_ud_index(cqe->user_data);
	struct rl_listener *l = rl__listener_get(w, id, rl_ud_gen(cqe->user_data));
	int more = cqe->flags & IORING_CQE_F_MORE;
	int res = cqe->res;

	if (!l) {
		w->m.stale_cqes++;
		return;
	}
	if (res >= 0) {
		if (accepts_plain(w, l) && (!l->closing || l->released) && !w->destroying) {
			l->installs++;
			rl__install_inbound(w, id, l->gen, res);
		}
		else if (accepts_plain(w, l))
			close(res);
		else if (l->kind == RL_LISTENER_ACCEPTOR && !l->closing && !w->destroying)
			rl__handoff_pass(w, id, (uint32_t)res);
		else if (l->kind == RL_LISTENER_ACCEPTOR)
			rl__listener_close_slot(w, (uint32_t)res);
		else
			rl__listener_adopt(w, l, id, (uint32_t)res, -1);
	} else if (res == -ENFILE && !accepts_plain(w, l)) {
		w->m.conns_refused++; /* the table is full: the kernel refused the peer */
	} else if (res != -ECANCELED && !l->sweeps) { /* a sweep ends on EAGAIN */
		w->m.accept_errors++;
	}
	if (more)
		return;
	l->armed = 0;
	w->m.ops_inflight--;
	if (l->closing && l->released && l->kind == RL_LISTENER_LOCAL && !w->destroying &&
	    (!l->sweeps || (res >= 0 && l->sweeps < RL_SWEEP_MAX)) && sweep_arm(w, (int)id))
		return; /* the multishot accept ended, or a sweep took a peer */
	if (l->closing) {
		/* a released listener's late peers still being installed keep
		 * it (their RL_EV_ACCEPTED names it): the last one frees it */
		if (!l->installs)
			listener_free(w, l, 0);
	} else if (accepts_plain(w, l) && (res == -EMFILE || res == -ENFILE) &&
		   !refuse_queued(w, l)) {
		/* armed again when a connection closes, or in a while */
		w->accept_retry_at = rl__clock_now() + RL_ACCEPT_RETRY_S;
	} else if (res >= 0 || transient(res)) {
		accept_arm(w, (int)id);
	} else {
		rl__emit(w, RL_EV_LISTENER, res, id, l->gen, 0);
		listener_free(w, l, res);
	}
}
