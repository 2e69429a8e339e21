/* SPDX-License-Identifier: MIT */
/*
 * test_worker - the worker's own API: an idle worker destroys cleanly; one
 * destroyed with live connections, listeners and timers reports -EBUSY yet
 * frees everything (the sanitizer build checks); rl_worker_wake from another
 * thread ends a blocking poll, many times over; a poll sleeps its timeout;
 * a teardown with connects that can never finish is prompt; argument checks
 * of the poll, listener and connection calls.
 */
#include <errno.h>
#include <pthread.h>
#include <semaphore.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "helpers.h"

static void test_idle_destroy(void)
{
	struct rl_worker *w = NULL;
	char msg[128] = "";
	int rc = rl_worker_new(NULL, &w, msg, sizeof(msg));
	if (rc == -ENOSYS || rc == -EPERM)
		exit(T_SKIP);
	ASSERT(rc == 0, "rl_worker_new(defaults): %s (%s)", rl_strerror(rc), msg);
	CHECK_EQ(rl_worker_live(w), 0);
	CHECK_EQ(rl_worker_destroy(w), 0);
	CHECK_EQ(rl_worker_destroy(NULL), 0);
}

static struct rl_worker *wake_w;
static sem_t go, done;
static int wake_rounds;

static void *waker(void *arg)
{
	for (int i = 0; i < wake_rounds; i++) {
		sem_wait(&go);
		CHECK_EQ(rl_worker_wake(wake_w), 0);
		sem_post(&done);
	}
	return NULL;
}

static void test_wake(void)
{
	struct t_ctx t;
	t_init(&t, NULL);
	wake_w = t.w;
	wake_rounds = 200;
	CHECK(sem_init(&go, 0, 0) == 0);
	CHECK(sem_init(&done, 0, 0) == 0);
	pthread_t th;
	CHECK(pthread_create(&th, NULL, waker, NULL) == 0);
	/* a far timer only bounds a failure: a wake must end the wait long
	 * before it */
	int guard = CHECK_RC(rl_timer_add(t.w, 30.0, 1));
	struct rl_event ev[8];
	for (int i = 0; i < wake_rounds; i++) {
		sem_post(&go);
		if (i % 2)
			sem_wait(&done); /* the wake may land before or during the wait */
		double t0 = t_now();
		int n = rl_worker_poll(t.w, ev, 8, -1);
		double took = t_now() - t0;
		CHECK_EQ(n, 0);
		ASSERT(took < 10.0, "round %d: a wake took %.3f s to end the wait", i, took);
		if (!(i % 2))
			sem_wait(&done);
		/* anything the wake left behind is drained without blocking */
		CHECK_EQ(rl_worker_poll(t.w, ev, 8, 0), 0);
	}
	CHECK(pthread_join(th, NULL) == 0);
	CHECK_EQ(rl_timer_cancel(t.w, guard), 0);
	t_finish(&t);
	sem_destroy(&go);
	sem_destroy(&done);
}

static uint32_t s_slot = T_ANY, s_gen;

static void on_event(struct t_ctx *t, const struct rl_event *e)
{
	if (e->type == RL_EV_ACCEPTED) {
		s_slot = e->slot;
		s_gen = e->gen;
	}
}

static int accepted(struct t_ctx *t)
{
	return s_slot != T_ANY;
}

static uint32_t want_rlen;
static int got_bytes(struct t_ctx *t)
{
	return rl_conn_io(t->w, s_slot)->rlen >= want_rlen;
}

static void test_args_and_busy_destroy(void)
{
	struct t_ctx t;
	t_init(&t, NULL);
	t.on_event = on_event;
	struct rl_event ev[4];
	CHECK_EQ(rl_worker_poll(t.w, NULL, 4, 0), -EINVAL);
	CHECK_EQ(rl_worker_poll(t.w, ev, 0, 0), -EINVAL);
	CHECK_EQ(rl_worker_poll(t.w, ev, -1, 0), -EINVAL);
	CHECK_EQ(rl_worker_poll(t.w, ev, 4, 0), 0);
	CHECK(rl_conn_io(t.w, t.cfg.max_connections) == NULL);
	CHECK(rl_conn_io(t.w, UINT32_MAX) == NULL);
	CHECK(rl_conn_io(t.w, t.cfg.max_connections - 1) != NULL);
	CHECK_EQ(rl_conn_io(t.w, 0)->state, RL_CONN_FREE);
	CHECK_EQ(strcmp(rl_version(), RL_VERSION_STRING), 0);
	CHECK_EQ(strcmp(rl_strerror(-ECONNRESET), strerror(ECONNRESET)), 0);

	/* listeners */
	CHECK_EQ(rl_listen(t.w, "bogus", 0), -EINVAL);
	CHECK_EQ(rl_listen(t.w, "127.0.0.1:70000", 0), -EINVAL);
	CHECK_EQ(rl_listen(t.w, "[::1", 0), -EINVAL);
	CHECK_EQ(rl_listener_port(t.w, -1), -ENOENT);
	CHECK_EQ(rl_listener_port(t.w, 0), -ENOENT);
	CHECK_EQ(rl_listener_port(t.w, 1 << 20), -ENOENT);
	CHECK_EQ(rl_listener_close(t.w, 0), -ENOENT);
	CHECK_EQ(rl_listener_close(t.w, -5), -ENOENT);
	t_listen(&t, NULL);
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", t.port);
	CHECK_EQ(rl_listen(t.w, addr, 0), -EADDRINUSE);
	/* SO_REUSEPORT: two listeners on one port */
	int r1 = CHECK_RC(rl_listen(t.w, "127.0.0.1:0", RL_LISTEN_REUSEPORT));
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", rl_listener_port(t.w, r1));
	int r2 = CHECK_RC(rl_listen(t.w, addr, RL_LISTEN_REUSEPORT | RL_LISTEN_NODELAY));
	CHECK_NE(r1, r2);
	CHECK_EQ(rl_listener_port(t.w, r2), rl_listener_port(t.w, r1));
	CHECK_EQ(rl_listener_close(t.w, r2), 0);
	CHECK_EQ(rl_listener_close(t.w, r2), -ENOENT);
	CHECK_EQ(rl_listener_close(t.w, r1), 0);
	/* the listener table is bounded */
	int ids[80], n = 0, rc;
	while (n < 80 && (rc = rl_listen(t.w, "127.0.0.1:0", 0)) >= 0)
		ids[n++] = rc;
	ASSERT(rc == -EMFILE, "listener %d: %s", n, rl_strerror(rc));
	CHECK_GT(n, 1);
	for (int i = 0; i < n; i++)
		CHECK_EQ(rl_listener_close(t.w, ids[i]), 0);

	/* a live connection: argument checks, then destroy with it live */
	int fd = t_tcp_connect("127.0.0.1", t.port, 1);
	T_WAIT(&t, accepted, 10);
	CHECK_EQ(rl_conn_close(t.w, s_slot, s_gen, 2), -EINVAL);
	CHECK_EQ(rl_conn_close(t.w, s_slot, s_gen, -1), -EINVAL);
	CHECK_EQ(rl_conn_io(t.w, s_slot)->state, RL_CONN_OPEN);
	CHECK_EQ(rl_conn_consume(t.w, s_slot, s_gen, 1), -EINVAL);
	CHECK_EQ(rl_conn_consume(t.w, s_slot, s_gen, 0), 0);
	CHECK_EQ(write(fd, "abc", 3), 3);
	want_rlen = 3;
	T_WAIT(&t, got_bytes, 10);
	CHECK_EQ(rl_conn_consume(t.w, s_slot, s_gen, 4), -EINVAL);
	CHECK_EQ(rl_conn_io(t.w, s_slot)->rlen, 3);
	CHECK_EQ(rl_conn_send(t.w, s_slot, s_gen, "queued", 6), 0);
	CHECK_RC(rl_timer_add(t.w, 60.0, 3));
	CHECK_GE(rl_worker_live(t.w), 3); /* listener, connection, timer */

	/* teardown with everything live: reported, still torn down */
	CHECK_EQ(rl_worker_destroy(t.w), -EBUSY);
	/* the peer's connection was ended by the teardown */
	char buf[16];
	ssize_t r;
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ASSERT(poll(&pfd, 1, 10000) == 1, "peer not disconnected by the teardown");
		r = read(fd, buf, sizeof(buf));
		if (r == 0 || (r < 0 && errno == ECONNRESET))
			break;
		ASSERT(r > 0 || errno == EAGAIN, "read: %s", strerror(errno));
	}
	close(fd);
	free(t.log);
}

static void test_poll_timeout(void)
{
	struct t_ctx t;
	t_init(&t, NULL);
	struct rl_event ev[4];
	/* nothing happens: the poll sleeps its timeout, no less */
	double t0 = t_now();
	CHECK_EQ(rl_worker_poll(t.w, ev, 4, 50), 0);
	double took = t_now() - t0;
	ASSERT(took >= 0.045 && took < 5.0, "poll(50 ms) took %.3f s", took);
	ASSERT(rl_worker_now(t.w) >= t0 + 0.045, "rl_worker_now not advanced");
	t0 = t_now();
	CHECK_EQ(rl_worker_poll(t.w, ev, 4, 0), 0);
	ASSERT(t_now() - t0 < 1.0, "poll(0) blocked");
	t_finish(&t);
}

/* A connect that can never finish (SYNs dropped by a full accept queue)
 * still lets the worker tear down promptly, reporting it as live. */
static void test_destroy_pending_connect(void)
{
	struct t_ctx t;
	t_init(&t, NULL);
	int lfd = t_tcp_bound(0);
	int filler = t_tcp_connect("127.0.0.1", t_local_port(lfd), 1);
	char addr[64];
	snprintf(addr, sizeof(addr), "127.0.0.1:%d", t_local_port(lfd));
	CHECK_EQ(rl_connect(t.w, addr, 0, 1), 0);
	CHECK_EQ(rl_connect(t.w, addr, 60000, 2), 0);
	/* let the connects reach the kernel */
	for (int i = 0; i < 3; i++)
		CHECK_EQ(t_step(&t, 1), 0);
	CHECK_GE(rl_worker_live(t.w), 2);
	double t0 = t_now();
	CHECK_EQ(rl_worker_destroy(t.w), -EBUSY);
	double took = t_now() - t0;
	ASSERT(took < 5.0, "teardown with pending connects took %.3f s", took);
	close(filler);
	close(lfd);
	free(t.log);
}

int main(void)
{
	test_idle_destroy();
	test_poll_timeout();
	test_destroy_pending_connect();
	test_wake();
	test_args_and_busy_destroy();
	return 0;
}
