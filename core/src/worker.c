/* SPDX-License-Identifier: MIT */
/*
 * worker.c - the worker's life: creation, the poll loop that turns
 * completions into events, and a teardown that waits for the kernel before
 * freeing anything. It dispatches completions and implements no resource.
 */
#include <errno.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <unistd.h>

#include "internal.h"

static void wake_arm(struct rl_worker *w)
{
	struct io_uring_sqe *sqe = rl__sqe(w);
	if (!sqe)
		return;
	io_uring_prep_read(sqe, w->wake_fd, &w->wake_buf, sizeof(w->wake_buf), 0);
	io_uring_sqe_set_data64(sqe, rl_ud_pack(RL_OP_WAKE, 0, 0));
	w->wake_armed = 1;
}

/* What the workers of this process want of RLIMIT_NOFILE together: where
 * inbound connections hold a plain descriptor (no FIXED_FD_INSTALL) they
 * all count against the one process limit. */
static uint64_t nofile_wanted;

/* need: what this worker cannot start without (its file table is checked
 * against the limit); want: its share of the process's descriptors. The
 * limit is raised to the sum of the shares as far as the hard limit lets. */
static pthread_mutex_t nofile_lock = PTHREAD_MUTEX_INITIALIZER;

/* Under a lock: workers start on their own threads at once, and two
 * read-add-set sequences interleaved could leave the lower sum in force. */
static int raise_nofile(uint32_t need, uint32_t want)
{
	struct rlimit rl;
	int rc = 0;
	pthread_mutex_lock(&nofile_lock);
	if (getrlimit(RLIMIT_NOFILE, &rl) < 0) {
		rc = -errno;
		goto out;
	}
	if (rl.rlim_max < need) {
		rc = -EMFILE;
		goto out;
	}
	uint64_t total = nofile_wanted + want;
	rlim_t to = total > need ? (rlim_t)total : need;
	if (to > rl.rlim_max)
		to = rl.rlim_max;
	if (rl.rlim_cur < to) {
		rl.rlim_cur = to;
		if (setrlimit(RLIMIT_NOFILE, &rl) < 0) {
			rc = -errno;
			goto out;
		}
	}
	nofile_wanted = total;
out:
	pthread_mutex_unlock(&nofile_lock);
	return rc;
}

/* max_connections 0: RL_AUTO_MAX_CONNECTIONS, or what the hard limit
 * leaves above the margin (a host with a low hard limit still starts; an
 * explicit value that does not fit is refused by raise_nofile). Said once
 * per process, on stderr, when it is fewer. */
static int auto_max_connections(uint32_t *out, char *msg, size_t msglen)
{
	static int warned;
	struct rlimit rl;
	uint64_t fit;

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	fit = rl.rlim_max == RLIM_INFINITY ? UINT64_MAX : (uint64_t)rl.rlim_max;
	if (fit >= RL_AUTO_MAX_CONNECTIONS + RL_NOFILE_MARGIN) {
		*out = RL_AUTO_MAX_CONNECTIONS;
		return 0;
	}
	if (fit <= 2 * RL_NOFILE_MARGIN) {
		if (msg)
			snprintf(msg, msglen, "max_connections: the hard RLIMIT_NOFILE (%llu) leaves "
				 "no room for connections (ulimit -Hn)", (unsigned long long)fit);
		return -EMFILE;
	}
	*out = (uint32_t)(fit - RL_NOFILE_MARGIN);
	if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
		fprintf(stderr, "ringline: max_connections: %u per worker (not %u): the hard "
			"RLIMIT_NOFILE is %llu; raise it (ulimit -Hn) or set max_connections\n",
			*out, RL_AUTO_MAX_CONNECTIONS, (unsigned long long)fit);
	return 0;
}

static void drop_nofile_share(struct rl_worker *w)
{
	pthread_mutex_lock(&nofile_lock);
	nofile_wanted -= w->nofile_share;
	pthread_mutex_unlock(&nofile_lock);
	w->nofile_share = 0;
}

int rl_worker_new(const struct rl_config *cfg, struct rl_worker **out, char *msg, size_t msglen)
{
	struct rl_worker *w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	if (cfg)
		w->cfg = *cfg;
	else
		rl_config_init(&w->cfg);
	int rc = rl_config_validate(&w->cfg, msg, msglen);
	if (rc)
		goto fail;
	w->wake_fd = -1;
	w->spare_fd = -1;
	for (int i = 0; i < RL_MAX_LISTENERS; i++)
		w->listeners[i].fd = -1;

	if (w->cfg.max_connections == 0) {
		rc = auto_max_connections(&w->cfg.max_connections, msg, msglen);
		if (rc)
			goto fail;
	}
	/* The kernel checks a file table registration against RLIMIT_NOFILE. */
	uint32_t nofile = w->cfg.max_connections + RL_NOFILE_MARGIN;
	rc = raise_nofile(nofile, nofile);
	if (rc == 0)
		w->nofile_share = nofile;
	if (rc) {
		if (msg)
			snprintf(msg, msglen,
				 "max_connections: %u needs RLIMIT_NOFILE >= %u (ulimit -n)",
				 w->cfg.max_connections, nofile);
		goto fail;
	}
	rc = rl__ring_setup(w, msg, msglen);
	if (rc)
		goto fail;
	/* inbound connections take plain descriptors (listener.c): one kept in
	 * reserve lets a listener refuse a peer when there is none left */
	if (!(w->features & RL_FEAT_FD_INSTALL))
		w->spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	rc = io_uring_register_files_sparse(&w->ring, w->cfg.max_connections);
	if (rc) {
		if (msg)
			snprintf(msg, msglen, "registering %u fixed files failed: %s",
				 w->cfg.max_connections, strerror(-rc));
		goto fail;
	}
	rc = rl__bufring_init(&w->bufs, &w->ring, w->cfg.recv_buffers, w->cfg.recv_buffer_size, 0);
	if (rc) {
		if (msg)
			snprintf(msg, msglen, "provided buffer ring setup failed: %s (kernel 5.19+)",
				 strerror(-rc));
		goto fail;
	}
	w->m.recv_buffers_free = w->cfg.recv_buffers;
	rc = rl__sendpool_init(&w->pool, w->cfg.send_slots, w->cfg.send_slot_size);
	if (rc)
		goto fail;
	rc = rl__conntab_init(&w->conns, w->cfg.max_connections);
	if (rc)
		goto fail;
	rc = rl__slab_init(&w->slab, w->cfg.send_slab_entries);
	if (rc)
		goto fail;
	rl__regions_init(w);
	rl__timers_init(&w->timers, w->cfg.max_timers);
	rl__timers_init(&w->close_timers, w->cfg.max_connections);
	rl__timers_init(&w->tls_timers, w->cfg.max_connections);
	rc = rl__inbox_init(&w->inbox);
	if (rc)
		goto fail;
	w->inbox_ok = 1;
	w->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (w->wake_fd < 0) {
		rc = -errno;
		goto fail;
	}
	wake_arm(w);
	w->now = rl__clock_now();
	*out = w;
	return 0;
fail:
	if (rc == -ENOMEM && msg)
		snprintf(msg, msglen, "out of memory creating the worker");
	rl__conntab_fini(&w->conns);
	rl__sendpool_fini(&w->pool);
	rl__slab_fini(&w->slab);
	if (w->ring_ok) {
		rl__bufring_fini(&w->bufs, &w->ring);
		io_uring_queue_exit(&w->ring);
	}
	if (w->wake_fd >= 0)
		close(w->wake_fd);
	if (w->spare_fd >= 0)
		close(w->spare_fd);
	drop_nofile_share(w);
	if (w->inbox_ok)
		rl__inbox_fini(&w->inbox);
	free(w);
	return rc;
}

static void dispatch(struct rl_worker *w, struct io_uring_cqe *cqe)
{
	switch (rl_ud_op(cqe->user_data)) {
	case RL_OP_ACCEPT:
		rl__listener_on_accept(w, cqe);
		break;
	case RL_OP_RECV:
		rl__conn_on_recv(w, cqe);
		break;
	case RL_OP_SEND:
	case RL_OP_SEND_SLAB: /* the queue's owner asks the slab what it means */
		rl__conn_on_send(w, cqe);
		break;
	case RL_OP_CLOSE:
		rl__conn_on_close(w, cqe);
		/* A descriptor came free: a listener stopped at the process's
		 * limit may accept again (its retry timer covers the rest). */
		rl__listeners_fd_freed(w);
		break;
	case RL_OP_CANCEL:
	case RL_OP_SHUTDOWN:
	case RL_OP_FD_INSTALL:
	case RL_OP_PROBE:
		rl__conn_on_simple(w, cqe);
		break;
	case RL_OP_SOCK_INSTALL:
		rl__connect_on_install(w, cqe);
		break;
	case RL_OP_CONNECT:
		rl__connect_on_connect(w, cqe);
		break;
	case RL_OP_LINK_TIMEOUT:
		rl__connect_on_timeout(w, cqe);
		break;
	case RL_OP_UDP_RECV:
		rl__udp_on_recv(w, cqe);
		break;
	case RL_OP_UDP_SEND:
		rl__udp_on_send(w, cqe);
		break;
	case RL_OP_UDP_CANCEL:
		rl__udp_on_cancel(w, cqe);
		break;
	case RL_OP_UNOWNED:
		w->m.ops_inflight--;
		break;
	case RL_OP_WAKE:
		w->wake_armed = 0;
		if (!w->destroying && cqe->res != -ECANCELED)
			wake_arm(w);
		rl__inbox_ring(w);
		rl__handoff_reap(w);
		break;
	case RL_OP_HANDOFF:
		rl__handoff_on_pass(w, cqe);
		break;
	case RL_OP_HANDIN:
		rl__handoff_on_arrival(w, cqe);
		break;
	case RL_OP_PROC:
		rl__proc_on_cqe(w, cqe);
		break;
	case RL_OP_FILE:
		rl__fs_on_cqe(w, cqe);
		break;
	case RL_OP_SPLICE:
		rl__conn_on_splice(w, cqe);
		break;
	case RL_OP_INBOX:
		if (rl_ud_index(cqe->user_data) == 1) {
			w->m.ops_inflight--; /* our own MSG_RING completed */
			break;
		}
		rl__inbox_ring(w);
		break;
	default:
		w->m.stale_cqes++;
		break;
	}
}

static void wait_for_completions(struct rl_worker *w, int timeout_ms)
{
	double limit = timeout_ms < 0 ? -1.0 : timeout_ms / 1000.0;
	double next = rl__timers_next(&w->timers);
	double close_next = rl__timers_next(&w->close_timers);
	if (close_next >= 0 && (next < 0 || close_next < next))
		next = close_next;
	double tls_next = rl__timers_next(&w->tls_timers);
	if (tls_next >= 0 && (next < 0 || tls_next < next))
		next = tls_next;
	if (w->accept_retry_at > 0 && (next < 0 || w->accept_retry_at < next))
		next = w->accept_retry_at;
	if (w->linger_until > 0 && (next < 0 || w->linger_until < next))
		next = w->linger_until;
	if (next >= 0) {
		double d = next - rl__clock_now();
		if (d < 0)
			d = 0;
		if (limit < 0 || d < limit)
			limit = d;
	}
	unsigned queued = io_uring_sq_ready(&w->ring);
	struct io_uring_cqe *cqe;
	int rc;
	if (limit == 0) {
		rc = io_uring_submit_and_get_events(&w->ring);
	} else if (limit < 0) {
		rc = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, NULL, NULL);
	} else {
		struct __kernel_timespec ts;
		limit += 0.0005; /* round up: never wake just before a deadline */
		ts.tv_sec = (long long)limit;
		ts.tv_nsec = (long long)((limit - (double)ts.tv_sec) * 1e9);
		rc = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
	}
	/* EINTR, EBUSY and ETIME are not failures: the loop goes on. */
	if (rc >= 0 || rc == -ETIME || rc == -EINTR)
		w->m.sqes_submitted += queued - io_uring_sq_ready(&w->ring);
}

static int reap(struct rl_worker *w)
{
	int total = 0;
	while (w->nev < w->maxev) {
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		io_uring_for_each_cqe(&w->ring, head, cqe) {
			/* the caller's array is full: the rest waits in the CQ
			 * (events beyond it from one completion are queued) */
			if (w->nev >= w->maxev)
				break;
			dispatch(w, cqe);
			n++;
		}
		io_uring_cq_advance(&w->ring, n);
		w->m.cqes_reaped += n;
		total += (int)n;
		if (!n)
			break;
	}
	return total;
}

int rl_worker_poll(struct rl_worker *w, struct rl_event *events, int max, int timeout_ms)
{
	if (!events || max <= 0)
		return -EINVAL;
	w->ev = events;
	w->maxev = max;
	w->nev = 0;
	w->m.loop_iterations++;
	{
		/* the one clock read this adds per iteration: the caller's work
		 * on the last batch, for the loop histogram */
		double t = rl__clock_now();
		if (w->poll_returned > 0 && t > w->poll_returned)
			rl_hist_observe(&w->lat.loop, (uint64_t)((t - w->poll_returned) * 1e9));
	}

	uint32_t i = 0;
	while (i < w->npending && w->nev < max)
		events[w->nev++] = w->pending_ev[i++];
	if (i) {
		memmove(w->pending_ev, w->pending_ev + i, (w->npending - i) * sizeof(*events));
		w->npending -= i;
	}

	int may_wait = timeout_ms != 0 && w->nev == 0 && !io_uring_cq_ready(&w->ring);
	wait_for_completions(w, may_wait ? timeout_ms : 0);
	/* completions below stamp a closing connection's progress with it */
	w->now = rl__clock_now();
	reap(w);
	rl__nvme_reap(w);
	rl__fs_pool_reap(w);

	/* Return this batch's buffers, then re-arm receives the dry ring
	 * stopped: the re-arm is driven by the replenish, never a spin. */
	w->m.recv_buffers_free += rl__bufring_publish(&w->bufs);
	if (w->ubufs.br)
		rl__bufring_publish(&w->ubufs);
	if (w->starved_head)
		rl__conn_rearm_starved(w);

	w->now = rl__clock_now();
	if (w->accept_retry_at > 0 && w->now >= w->accept_retry_at)
		rl__listeners_fd_freed(w);
	if (w->linger_until > 0 && w->now >= w->linger_until)
		rl__listeners_linger_end(w);
	rl__conn_close_deadlines(w);
	rl__conn_tls_deadlines(w);
	uint32_t token;
	int id;
	while (w->nev < max && (id = rl__timers_pop_due(&w->timers, w->now, &token)) >= 0)
		rl__emit(w, RL_EV_TIMER, 0, (uint32_t)id, 0, token);

	int n = w->nev;
	w->ev = NULL;
	w->poll_returned = w->now;
	return n;
}

struct rl_metrics *rl_worker_metrics(struct rl_worker *w)
{
	w->m.conns_open = w->conns.open;
	w->m.send_slots_used = rl__sendpool_used(&w->pool);
	w->m.send_heap_chunks = w->pool.heap_chunks;
	w->m.send_heap_bytes = w->pool.heap_bytes;
	w->m.timers_active = w->timers.nheap;
	w->m.slab_used = w->slab.used;
	w->m.udp_open = w->udp_live;
	return &w->m;
}

void rl_worker_metrics_read(const struct rl_worker *w, struct rl_metrics *out)
{
	*out = w->m;
	out->conns_open = w->conns.open;
	out->send_slots_used = rl__sendpool_used(&w->pool);
	out->send_heap_chunks = w->pool.heap_chunks;
	out->send_heap_bytes = w->pool.heap_bytes;
	out->timers_active = w->timers.nheap;
	out->slab_used = w->slab.used;
	out->udp_open = w->udp_live;
}

const struct rl_latency *rl_worker_latency(const struct rl_worker *w)
{
	return &w->lat;
}

uint32_t rl_worker_features(const struct rl_worker *w)
{
	return w->features;
}

const struct rl_config *rl_worker_config(const struct rl_worker *w)
{
	return &w->cfg;
}

double rl_worker_now(const struct rl_worker *w)
{
	return w->now;
}

int rl_worker_trim(struct rl_worker *w)
{
	rl__accum_spares_fini(&w->spares);
	rl__sendpool_trim(&w->pool);
#ifdef __GLIBC__
	return malloc_trim(0);
#else
	return 0;
#endif
}

int rl_worker_live(const struct rl_worker *w)
{
	int n = (int)w->conns.open + (int)w->timers.nheap;
	for (int i = 0; i < RL_MAX_LISTENERS; i++)
		n += w->listeners[i].used;
	return n + (int)(w->nreqs - w->nreqfree) + (int)w->udp_live + (int)w->procs_live;
}

int rl_timer_add(struct rl_worker *w, double delay, uint32_t token)
{
	if (!(delay >= 0))
		delay = 0;
	return rl__timers_add(&w->timers, rl__clock_now() + delay, token);
}

int rl_timer_cancel(struct rl_worker *w, int id)
{
	return rl__timers_cancel(&w->timers, id);
}

/* How long teardown waits for the kernel. Everything left is reset or
 * cancelled first, and then completes within milliseconds: a connection
 * waiting for zero-copy notifications is reset, which purges its send queue
 * and brings them (a graceful close holds the socket for this). The bound
 * stays well inside the host's grace after a drain deadline (STOP_GRACE,
 * 5 s), so a graceful stop ends in time even if the kernel is slow. */
#define RL_TEARDOWN_WAIT 2.0

/* Teardown: stop everything, wait until the kernel holds nothing of ours,
 * then free. Memory the kernel might still touch is never freed. */
int rl_worker_destroy(struct rl_worker *w)
{
	if (!w)
		return 0;
	int live = rl_worker_live(w);
	w->destroying = 1;
	rl__resolver_stop(w); /* before the inbox goes: it posts into it */
	rl__listeners_close_all(w);
	rl__udp_close_all(w);
	rl__proc_kill_all(w);
	for (uint32_t i = 0; i < w->conns.count; i++) {
		struct rl_conn *c = &w->conns.conns[i];
		if (c->io.state != RL_CONN_FREE) {
			c->flags |= RL_CONN_F_SILENT;
			rl__conn_begin_close(w, c, RL_CLOSE_RESET, -ECANCELED);
		}
	}
	if (w->wake_armed) {
		struct io_uring_sqe *sqe = rl__sqe(w);
		if (sqe) {
			io_uring_prep_cancel64(sqe, rl_ud_pack(RL_OP_WAKE, 0, 0), 0);
			io_uring_sqe_set_data64(sqe, rl_ud_pack(RL_OP_UNOWNED, RL_UD_INDEX_MAX, 0));
			w->m.ops_inflight++;
		}
	}
	struct rl_event scratch[64];
	double deadline = rl__clock_now() + RL_TEARDOWN_WAIT;
	/* slab entries wait for zero-copy notifications, which are not ops */
	while (w->m.ops_inflight || w->conns.open || w->wake_armed || w->slab.used || w->fs.live ||
	       rl_worker_live(w) - (int)w->timers.nheap) {
		if (rl__clock_now() > deadline) {
			if (!w->m.ops_inflight && !w->conns.open && !w->wake_armed && !w->fs.live &&
			    !(rl_worker_live(w) - (int)w->timers.nheap)) {
				/* Only notifications are missing, and every socket is
				 * closed: no operation of ours is left in the kernel,
				 * so nothing of our memory is (it took the sent pages
				 * by reference). Their CQEs, should they come, go to
				 * a ring that is gone. */
				fprintf(stderr,
					"ringline: %u zero-copy send(s) still unconfirmed by the kernel"
					" %.1f s after their sockets closed; not waiting for them\n",
					w->slab.used, RL_TEARDOWN_WAIT);
				break;
			}
			fprintf(stderr,
				"ringline: worker teardown timed out with %llu operations in flight;"
				" keeping their memory\n",
				(unsigned long long)w->m.ops_inflight);
			io_uring_queue_exit(&w->ring);
			return -ETIMEDOUT;
		}
		rl_worker_poll(w, scratch, 64, 100);
		w->npending = 0; /* nobody is left to read them */
	}
	rl__fs_fini(w);
	rl__regions_fini(w);
	rl__udp_fini(w);
	rl__bufring_fini(&w->bufs, &w->ring);
	io_uring_unregister_files(&w->ring);
	io_uring_queue_exit(&w->ring);
	rl__sendpool_fini(&w->pool);
	rl__conntab_fini(&w->conns);
	rl__accum_spares_fini(&w->spares);
	rl__timers_fini(&w->timers);
	rl__timers_fini(&w->close_timers);
	rl__timers_fini(&w->tls_timers);
	rl__slab_fini(&w->slab);
	rl__connect_fini(w);
	rl__proc_fini(w);
	rl__nvme_fini(w); /* before the wake-up eventfd it posts into */
	free(w->pending_ev);
	close(w->wake_fd);
	if (w->spare_fd >= 0)
		close(w->spare_fd);
	drop_nofile_share(w);
	rl__inbox_fini(&w->inbox);
	free(w);
	return live ? -EBUSY : 0;
}

const char *rl_strerror(int err)
{
	return strerror(err < 0 ? -err : err);
}

const char *rl_version(void)
{
	return RL_VERSION_STRING;
}
