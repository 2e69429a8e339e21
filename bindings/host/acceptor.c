/* SPDX-License-Identifier: MIT */
/*
 * acceptor.c - the acceptor thread: one listening socket per address shared
 * by all workers, accepted on a ring of its own and handed round robin to
 * the workers (the core's hand-off groups, core/src/handoff.c).
 *
 * Used for --accept acceptor, and always for unix sockets with several
 * workers (SO_REUSEPORT does not apply to them: a second bind would replace
 * the first worker's socket file). A worker's ringline.listen joins the
 * group for its address (creating it, and binding, when it is the first):
 * the bind error, if any, is the caller's to report. The thread starts with
 * the first shared listener, runs no Lua, holds nothing but its ring and
 * accepts; it is stopped after every worker has ended, and the groups are
 * freed then. When the last worker leaves a group (its listener closed, or
 * its drain began) the acceptor closes that socket, so the kernel refuses
 * new peers instead of accepting them into nowhere.
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "host.h"
#include "rl_host.h"

#define MAX_SHARES 64

struct share {
	char *addr;
	struct rl_handoff *h;
	int taken;               /* the acceptor called rl_handoff_accept on it */
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct share shares[MAX_SHARES];
static int nshares;
static pthread_t thread;
static int started, stopping;
/* The thread's setup result, for the listen that started it (which waits
 * holding `lock`, so that no other listen sees a group half made). */
static pthread_mutex_t start_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t start_cond = PTHREAD_COND_INITIALIZER;
static int start_rc = 1;             /* 1 while it sets up, then 0 or -errno */
static struct rl_worker *acceptor;   /* while its thread runs */

/* Start accepting on the groups that are new. Lock held. */
static void take_new(struct rl_worker *w)
{
	for (int i = 0; i < nshares; i++) {
		struct share *s = &shares[i];
		int id;

		if (s->taken)
			continue;
		s->taken = 1;
		id = rl_handoff_accept(w, s->h);
		/* -ESHUTDOWN: its workers all left before it got here */
		if (id < 0 && id != -ESHUTDOWN) {
			host_log(LOG_ERR, -1, "cannot accept on %s: %s; stopping",
				 s->addr, rl_strerror(id));
			rl_host_exit(1);
		}
	}
}

static void *acceptor_main(void *arg)
{
	struct rl_config cfg = opts.cfg;
	struct rl_event ev[64];
	struct rl_worker *w;
	char msg[256] = "";
	int rc;

	(void)arg;
	/* It holds a connection only between its accept and its pass; the
	 * sizes of the workers' data paths are not its business. */
	cfg.recv_buffers = 1;
	cfg.send_slots = 1;
	cfg.send_slab_entries = 1;
	/* Its table holds connections between accept and pass only: the
	 * workers' max_connections (which a script's configure may have set
	 * lower, to fit RLIMIT_NOFILE) would only ask for descriptors. */
	if (cfg.max_connections == 0 || cfg.max_connections > 1024)   /* 0: automatic */
		cfg.max_connections = 1024;
	rc = rl_worker_new(&cfg, &w, msg, sizeof(msg));
	if (rc < 0) /* the listen that started it fails, and says why */
		host_log(LOG_ERR, -1, "cannot start: %s", msg[0] ? msg : rl_strerror(rc));
	pthread_mutex_lock(&start_lock);
	start_rc = rc < 0 ? rc : 0;
	pthread_cond_signal(&start_cond);
	pthread_mutex_unlock(&start_lock);
	if (rc < 0)
		return NULL;
	pthread_mutex_lock(&lock);
	acceptor = w;
	for (;;) {
		take_new(w);
		if (stopping)
			break;
		pthread_mutex_unlock(&lock);
		int n = rl_worker_poll(w, ev, 64, -1);
		for (int i = 0; i < n; i++)
			if (ev[i].type == RL_EV_LISTENER)
				host_log(LOG_ERR, -1, "a listener stopped: %s",
					 rl_strerror(ev[i].res));
		pthread_mutex_lock(&lock);
	}
	acceptor = NULL;
	pthread_mutex_unlock(&lock);
	rl_worker_destroy(w);
	return NULL;
}

/* Start the acceptor thread and wait for its ring: 0, or why it could
 * not start (the thread has ended then). Lock held. */
static int start_locked(void)
{
	pthread_attr_t attr;
	int rc;

	/* not on the CPU of the (maybe pinned) worker starting it */
	pthread_attr_init(&attr);
	pthread_attr_setaffinity_np(&attr, sizeof(host_process_cpus), &host_process_cpus);
	start_rc = 1;
	rc = pthread_create(&thread, &attr, acceptor_main, NULL);
	pthread_attr_destroy(&attr);
	if (rc != 0) {
		host_log(LOG_ERR, -1, "cannot start the acceptor thread: %s", strerror(rc));
		return -rc;
	}
	pthread_setname_np(thread, "ringline-accept");
	pthread_mutex_lock(&start_lock);
	while (start_rc == 1)
		pthread_cond_wait(&start_cond, &start_lock);
	rc = start_rc;
	pthread_mutex_unlock(&start_lock);
	if (rc < 0) {
		pthread_join(thread, NULL);
		return rc;
	}
	started = 1;
	return 0;
}

/* Forget groups that closed and that nobody uses any more (a worker that
 * listens on an address again after every worker closed it makes a new
 * one). Lock held. */
static void reclaim(void)
{
	int n = 0;

	for (int i = 0; i < nshares; i++) {
		if (shares[i].taken && rl_handoff_finished(shares[i].h) == 1) {
			rl_handoff_free(shares[i].h);
			free(shares[i].addr);
		} else {
			shares[n++] = shares[i];
		}
	}
	nshares = n;
}

RL_HOST_API int rl_host_listen_shared(struct rl_worker *w, const char *addr, uint32_t flags,
				       uint32_t backlog)
{
	struct share *s = NULL;
	int id, rc;

	if (!w || !addr)
		return -EINVAL;
	if (!(rl_worker_features(w) & RL_FEAT_MSG_RING))
		return -EOPNOTSUPP;
	pthread_mutex_lock(&lock);
	if (stopping) {
		pthread_mutex_unlock(&lock);
		return -ESHUTDOWN;
	}
	/* by address alone: a second socket on it would be a second REUSEPORT
	 * group (TCP) or replace the first one's socket file (unix); the first
	 * worker's flags hold */
	for (int i = 0; i < nshares; i++)
		if (strcmp(shares[i].addr, addr) == 0)
			s = &shares[i];           /* the newest one for addr */
	if (s) {
		id = rl_listen_handoff(w, s->h);
		if (id != -ESHUTDOWN)
			goto out;
		/* that group emptied and is closing: a new one, a new socket */
	}
	reclaim();
	if (nshares == MAX_SHARES) {
		id = -EMFILE;
		goto out;
	}
	s = &shares[nshares];
	memset(s, 0, sizeof(*s));
	s->addr = strdup(addr);
	if (!s->addr) {
		id = -ENOMEM;
		goto out;
	}
	rc = rl_handoff_new(addr, flags, backlog, &s->h);
	/* the group first (a kernel that cannot hand off says so there), then
	 * the thread: no group is ever left without one to accept on it */
	if (rc == 0 && !started) {
		rc = start_locked();
		if (rc < 0)
			rl_handoff_free(s->h);
	}
	if (rc < 0) {
		free(s->addr);
		id = rc;
		goto out;
	}
	nshares++;
	id = rl_listen_handoff(w, s->h);
	if (acceptor)
		rl_worker_wake(acceptor);
out:
	pthread_mutex_unlock(&lock);
	return id;
}

void host_acceptor_stop(void)
{
	pthread_mutex_lock(&lock);
	stopping = 1;
	if (acceptor)
		rl_worker_wake(acceptor);
	pthread_mutex_unlock(&lock);
	if (started) {
		/* bounded: it only has to close its sockets; a thread that does
		 * not end is left behind, with the groups it may still use */
		struct timespec until;

		clock_gettime(CLOCK_REALTIME, &until);
		until.tv_sec += 5;
		if (pthread_timedjoin_np(thread, NULL, &until) != 0) {
			host_log(LOG_ERR, -1, "the acceptor thread did not stop; exiting without it");
			return;
		}
	}
	for (int i = 0; i < nshares; i++) {
		rl_handoff_free(shares[i].h);
		free(shares[i].addr);
	}
	nshares = 0;
}
