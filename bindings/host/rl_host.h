/* SPDX-License-Identifier: MIT */
/*
 * rl_host.h - what the host executable ringline-lua exports to the Lua side
 * of its workers (reached through ffi.C; the FFI declarations are in
 * bindings/ringline/host.lua and must match these).
 *
 * The host keeps a registry of its workers: slot `id` (0 .. workers-1) holds
 * that worker's struct rl_worker once its Lua side created it. Any thread can
 * then post into any worker's inbox by id. Messages for a worker that has not
 * created its C worker yet (it does so at its first I/O, so that
 * ringline.configure still works until then) wait in the host and are
 * delivered when it registers; a worker that has ended takes none.
 *
 * Lifetime: a worker unregisters before it destroys its struct rl_worker, and
 * every post happens under the registry's lock, so no post ever reaches
 * freed memory.
 */
#ifndef RL_HOST_H
#define RL_HOST_H

#include <stddef.h>
#include <stdint.h>

struct rl_worker;

#define RL_HOST_API __attribute__((visibility("default")))

/* The calling worker's thread created w: messages queued for it are posted
 * now. Returns 0, or -EINVAL for a bad id. */
RL_HOST_API int rl_host_register(int id, struct rl_worker *w);
/* Before rl_worker_destroy(w): no post reaches w after this returns. A call
 * with a w that is not the registered one does nothing. */
RL_HOST_API int rl_host_unregister(int id, struct rl_worker *w);
/* rl_worker_post into worker `to` (via: the caller's own worker, whose ring
 * then carries a MSG_RING doorbell; NULL for an eventfd wake). Returns 0,
 * -EINVAL (no such worker), -ESHUTDOWN (it has ended), or the post's error. */
RL_HOST_API int rl_host_post(int to, uint32_t from, uint32_t kind, const void *data, size_t len,
			     struct rl_worker *via);
/* A listener of w on addr shared with the other workers: one socket for the
 * process, accepted on by the host's acceptor thread and handed round robin
 * to the workers that listen on the same addr. The worker that binds it
 * sets its flags (RL_LISTEN_*) and backlog. Returns w's listener id (close
 * it with rl_listener_close), or -errno: the bind's error for a worker that
 * found no group to join (each gets its own), -EOPNOTSUPP when the kernel
 * cannot pass descriptors between rings (MSG_RING SEND_FD reporting the
 * allocated index: Linux 6.3). */
RL_HOST_API int rl_host_listen_shared(struct rl_worker *w, const char *addr, uint32_t flags,
					uint32_t backlog);
/*
 * Generations (reload on SIGHUP): the ids above are host slots, 0 ..
 * 2 * workers - 1; a worker's slot is hostinfo.slot, and the slot of
 * worker index i of the same generation is hostinfo.slot_base + i.
 */
/* A listener of w on addr (flags RL_LISTEN_*, backlog for a new socket):
 * a socket the host holds for this address and worker index (an earlier
 * generation's, or one passed by systemd or an upgrade) is adopted, else
 * one is bound and the host keeps a descriptor of it. Returns w's listener
 * id, or -errno. */
RL_HOST_API int rl_host_listen(struct rl_worker *w, int slot, const char *addr, uint32_t flags,
			       uint32_t backlog);
/* The script closed its listener on addr: the host stops holding the
 * socket (once no other generation uses it). */
RL_HOST_API int rl_host_unlisten(int slot, const char *addr);
/* The worker in slot is up: its main chunk returned, or its loop waits
 * with a listener open. A reload switches over once all new ones are. */
RL_HOST_API int rl_host_ready(int slot);
/* Ask for a reload (SIGHUP's default, ringline.reload) or a binary
 * upgrade (SIGUSR2's, ringline.upgrade); asks of several workers of the
 * serving generation make one. */
RL_HOST_API int rl_host_reload(int slot);
RL_HOST_API int rl_host_upgrade(int slot);
/* ringline.exit(code): stop every worker gracefully, then exit with code
 * (the first request's code wins). Returns 0. */
RL_HOST_API int rl_host_exit(int code);

/*
 * The watchdog (watchdog.c): a host thread that notices a worker whose loop
 * has not turned for its timeout - a task that never yields - and says so
 * (a log line naming the worker and where the running task started), and
 * with abort set aborts the process so a supervisor restarts it.
 *
 * Each worker's Lua side writes its slot with plain stores (no call, no
 * lock: the loop's hot path): beat is bumped to odd before the worker
 * waits for events and to even after, loc names the task it resumes. The
 * watchdog thread only reads them (aligned 32-bit words; a stale value
 * delays a report by one tick at most).
 */
struct rl_host_watch {
	volatile uint32_t beat;       /* odd: waiting for events; even: running Lua */
	volatile uint32_t loc;        /* rl_host_watch_loc id of the running task's start, 0 = none */
	volatile uint32_t timeout_ms; /* 0: not watched (before and after its run) */
	volatile uint32_t abort;      /* 1: abort the process on a stall */
	volatile uint32_t fired;      /* stalls reported (the watchdog writes it) */
	uint32_t pad;
};

/* Worker id's slot (valid for the life of the process), NULL for a bad id. */
RL_HOST_API struct rl_host_watch *rl_host_watch(int id);
/* An id (>= 1) for a task's start location ("source:line"), the text kept
 * for the process's life; 0 once too many were registered (reports then
 * say "?"). Callers cache ids: one call per distinct location. */
RL_HOST_API uint32_t rl_host_watch_loc(const char *where);

/*
 * Logging (logw.c): ringline.log's lines in the host. rl_host_log appends
 * one whole line to worker id's bounded buffer, which the host's writer
 * thread writes to the log (--log-file, else stderr); it never blocks:
 * 0, or -ENOBUFS when the buffer is full (the line is dropped and counted
 * in ringline_log_dropped_total). rl_host_log_config writes the format
 * ("text" or "json") into format and returns the level threshold.
 */
RL_HOST_API int rl_host_log(int id, const char *line, size_t len);
RL_HOST_API int rl_host_log_config(char *format, size_t cap);

/*
 * Metrics (metrics.c, the endpoint metrics_http.c). rl_host_metrics_listen serves /metrics and /healthz
 * on addr from a host thread (--metrics, ringline.configure{metrics=});
 * the same addr again is no change, another is refused. 0 or -errno with a
 * message in msg.
 */
RL_HOST_API int rl_host_metrics_listen(const char *addr, char *msg, size_t msglen);
/* The address it listens on ("host:port", the port chosen for port 0)
 * into out; its length, 0 when not serving. */
RL_HOST_API int rl_host_metrics_address(char *out, size_t cap);

/* The Lua side's own counters of worker id, written by its loop at each
 * poll with plain stores and read by a scrape (ringline.metrics() has the
 * same values). */
struct rl_host_stats {
	double tasks;
	double listeners;
	double tasks_refused;
	double conns_refused_per_ip;
	double conns_shed;
};
RL_HOST_API struct rl_host_stats *rl_host_stats(int id);

/* A script's metric family (ringline.metric): name and label names are
 * checked by the Lua side; labelnames is their comma-separated list.
 * Returns its id (the same for the same definition from any worker),
 * -EEXIST for the name registered with another definition, or -errno. */
enum { RL_HOST_METRIC_COUNTER = 1, RL_HOST_METRIC_GAUGE = 2, RL_HOST_METRIC_HISTOGRAM = 3 };
RL_HOST_API int rl_host_metric_family(const char *name, const char *help, int type,
				      const char *labelnames, const double *buckets, int nbuckets,
				      char *msg, size_t msglen);
/* Worker's cell of the family's label set (labels rendered k="v",...):
 * one double (counter, gauge) or nbuckets + 1 bucket counts and the sum
 * (histogram). Valid for the process's life; only that worker writes it.
 * NULL with a message when the label sets are too many. */
RL_HOST_API double *rl_host_metric_cell(int family, int worker, const char *labels, char *msg,
					size_t msglen);

#endif
