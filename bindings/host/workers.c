/* SPDX-License-Identifier: MIT */
/*
 * workers.c - the worker threads and the main thread's supervision.
 *
 * Each worker thread (pinned first, when pinning) creates its own VM and
 * runs the script (vm.c). The registry behind rl_host.h lets any thread post
 * into any worker's inbox by id. The main thread runs no Lua: with the
 * handled signals blocked in every thread, it waits on a signalfd and an
 * eventfd (a worker ended, or ringline.exit) and turns what it sees into
 * inbox messages (RL_MSG_SIGNAL) for every worker, until all have ended.
 */
#include <errno.h>
#include <math.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>

#include "cpus.h"
#include "host.h"
#include "rl_host.h"

/* After the drain deadline the workers reset what is left and tear down,
 * which takes milliseconds (rl_worker_destroy waits for the kernel 2 s at
 * most: a reset gives back even zero-copy pages a peer never read); a
 * worker still running this much later is stuck in Lua code that never
 * yields, and the process stops without it. */
#define STOP_GRACE 5.0

cpu_set_t host_process_cpus;

/* The CPUs this process may run on (what -w auto counts and --pin uses). */
int host_allowed_cpus(cpu_set_t *set)
{
	long n;

	if (sched_getaffinity(0, sizeof(*set), set) == 0 && CPU_COUNT(set) > 0)
		return CPU_COUNT(set);
	n = sysconf(_SC_NPROCESSORS_ONLN);
	if (n < 1)
		n = 1;
	if (n > CPU_SETSIZE)
		n = CPU_SETSIZE;
	CPU_ZERO(set);
	for (long i = 0; i < n; i++)
		CPU_SET((int)i, set);
	return (int)n;
}


/* ---- log lines of the host (the format of ringline.log) ---- */

/* The format and destination are logw.c's (--log-format, --log-file). */
void host_log(int level, int id, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	host_log_v(level, id, fmt, ap);
	va_end(ap);
}

/* ---- the worker registry (rl_host.h) ---- */

/* A message for a worker that has not registered yet. */
struct pending {
	struct pending *next;
	uint32_t from, kind;
	size_t len;
	char data[];
};

struct slot {
	pthread_t thread;
	int cpu;                 /* pinned to this CPU, -1 when not pinned */
	int started;             /* its thread exists */
	int done;                /* its thread has ended */
	int ended;               /* its Lua side unregistered: it takes no more posts */
	int status;              /* its exit status, once done */
	int ready;               /* its script is up (rl_host_ready) */
	struct rl_worker *w;     /* registered worker, NULL before and after */
	struct pending *head, *tail;
};

/*
 * Generations. The slots are two halves of opts.workers each: the serving
 * generation's workers in one (cur), a reload's new generation in the
 * other while it starts, then the old one there while it drains. Slot
 * id = half * workers + worker index; the Lua side knows its slot
 * (hostinfo.slot) and posts to slot base + index.
 */
static struct slot *slots;
static int nslots;
static int half_gen[2];          /* generation running in each half, 0: none */
static int cur;                  /* the serving half */
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static int notify_fd = -1;       /* eventfd: a worker ended, or an exit request */
static int exit_requested, exit_code;
static int reload_requested, upgrade_requested;
/* a reload is starting: asks now (the other workers' for the same
 * SIGHUP) are part of it */
static int reload_busy;

int host_slot_info(int slot, int *half, int *worker, int *gen)
{
	if (!slots || slot < 0 || slot >= nslots)
		return -EINVAL;
	*half = slot / opts.workers;
	*worker = slot % opts.workers;
	*gen = half_gen[*half];
	return 0;
}

static void notify_main(void)
{
	uint64_t one = 1;

	if (write(notify_fd, &one, sizeof(one)) != sizeof(one))
		perror("ringline-lua: eventfd write");
}

static void free_pending(struct slot *s)
{
	struct pending *p = s->head;

	while (p) {
		struct pending *next = p->next;
		free(p);
		p = next;
	}
	s->head = s->tail = NULL;
}

/* Post into slot s, or keep the message until it registers. Lock held. */
static int post_locked(struct slot *s, uint32_t from, uint32_t kind, const void *data, size_t len,
		       struct rl_worker *via)
{
	struct pending *p;

	if (s->done || s->ended)
		return -ESHUTDOWN;
	if (s->w)
		return rl_worker_post(s->w, from, kind, data, len, via);
	if (len > (1u << 30))
		return -EINVAL;
	p = malloc(sizeof(*p) + len);
	if (!p)
		return -ENOMEM;
	p->next = NULL;
	p->from = from;
	p->kind = kind;
	p->len = len;
	if (len)
		memcpy(p->data, data, len);
	if (s->tail)
		s->tail->next = p;
	else
		s->head = p;
	s->tail = p;
	return 0;
}

RL_HOST_API int rl_host_register(int id, struct rl_worker *w)
{
	struct slot *s;

	if (!slots || id < 0 || id >= nslots || !w)
		return -EINVAL;
	s = &slots[id];
	pthread_mutex_lock(&reg_lock);
	s->w = w;
	s->ended = 0;
	for (struct pending *p = s->head; p; p = p->next)
		rl_worker_post(w, p->from, p->kind, p->data, p->len, NULL);
	free_pending(s);
	pthread_mutex_unlock(&reg_lock);
	return 0;
}

RL_HOST_API int rl_host_unregister(int id, struct rl_worker *w)
{
	struct slot *s;

	if (!slots || id < 0 || id >= nslots)
		return -EINVAL;
	s = &slots[id];
	pthread_mutex_lock(&reg_lock);
	if (s->w == w) {
		host_metrics_worker_ending(id, w);   /* its last counters, for /metrics */
		s->w = NULL;
		s->ended = 1;
	}
	pthread_mutex_unlock(&reg_lock);
	return 0;
}

RL_HOST_API int rl_host_post(int to, uint32_t from, uint32_t kind, const void *data, size_t len,
			     struct rl_worker *via)
{
	int rc;

	if (!slots || to < 0 || to >= nslots || (len && !data))
		return -EINVAL;
	pthread_mutex_lock(&reg_lock);
	rc = post_locked(&slots[to], from, kind, data, len, via);
	pthread_mutex_unlock(&reg_lock);
	return rc;
}

int host_worker_sample(int id, struct rl_metrics *m, struct rl_latency *lat)
{
	int rc = -ENOENT;

	if (!slots || id < 0 || id >= host_slots())
		return -EINVAL;
	pthread_mutex_lock(&reg_lock);
	if (slots[id].w) {
		rl_worker_metrics_read(slots[id].w, m);
		*lat = *rl_worker_latency(slots[id].w);
		rc = 0;
	}
	pthread_mutex_unlock(&reg_lock);
	return rc;
}

RL_HOST_API int rl_host_exit(int code)
{
	pthread_mutex_lock(&reg_lock);
	if (!exit_requested) {
		exit_requested = 1;
		exit_code = code;
	}
	pthread_mutex_unlock(&reg_lock);
	notify_main();
	return 0;
}

/* A worker's script is up: its main chunk returned, or its loop waits
 * with a listener open. */
RL_HOST_API int rl_host_ready(int id)
{
	if (!slots || id < 0 || id >= nslots)
		return -EINVAL;
	pthread_mutex_lock(&reg_lock);
	slots[id].ready = 1;
	pthread_mutex_unlock(&reg_lock);
	notify_main();
	return 0;
}

/* SIGHUP without a handler of the script's (or ringline.reload()): one
 * reload, however many of the serving generation's workers ask. */
RL_HOST_API int rl_host_reload(int id)
{
	if (!slots || id < 0 || id >= nslots)
		return -EINVAL;
	pthread_mutex_lock(&reg_lock);
	if (id / opts.workers == cur && !reload_busy)
		reload_requested = 1;
	pthread_mutex_unlock(&reg_lock);
	notify_main();
	return 0;
}

/* SIGUSR2 without a handler (or ringline.upgrade()): a new process image. */
RL_HOST_API int rl_host_upgrade(int id)
{
	if (!slots || id < 0 || id >= nslots)
		return -EINVAL;
	pthread_mutex_lock(&reg_lock);
	if (id / opts.workers == cur)
		upgrade_requested = 1;
	pthread_mutex_unlock(&reg_lock);
	notify_main();
	return 0;
}

/* Post to every worker of half h (-1: of both) still running. */
static void post_half(int h, uint32_t from, uint32_t kind, const char *text)
{
	pthread_mutex_lock(&reg_lock);
	for (int i = 0; i < nslots; i++)
		if (slots[i].started && (h < 0 || i / opts.workers == h))
			post_locked(&slots[i], from, kind, text, text ? strlen(text) : 0, NULL);
	pthread_mutex_unlock(&reg_lock);
}

static void post_all(uint32_t from, uint32_t kind, const char *text)
{
	post_half(-1, from, kind, text);
}

/* ---- workers ---- */

static void *worker_main(void *arg)
{
	struct slot *s = arg;
	int slot = (int)(s - slots), status = 1;
	int id = slot % opts.workers;
	lua_State *L;

	if (s->cpu >= 0) {
		cpu_set_t one;
		int rc;

		CPU_ZERO(&one);
		CPU_SET(s->cpu, &one);
		/* before the VM exists, so its memory is first touched here */
		rc = pthread_setaffinity_np(pthread_self(), sizeof(one), &one);
		if (rc == 0) {
			host_log(LOG_INFO, id, "pinned to CPU %d", s->cpu);
		} else {
			host_log(LOG_WARN, id, "cannot pin to CPU %d: %s; running unpinned",
				 s->cpu, strerror(rc));
			s->cpu = -1;
		}
	}
	L = host_new_lua_slot(&opts, id, s->cpu, slot, half_gen[slot / opts.workers]);
	if (L) {
		status = host_run_script(L, id);
		lua_close(L);
	} else {
		fprintf(stderr, "%s: worker %d: cannot create the Lua state\n", progname, id);
	}
	pthread_mutex_lock(&reg_lock);
	s->done = 1;
	s->status = status;
	s->w = NULL;
	free_pending(s);
	pthread_mutex_unlock(&reg_lock);
	notify_main();
	return NULL;
}

/* Which CPU each worker gets (-1 each when not pinning). */
static void plan_pinning(void)
{
	cpu_set_t set;
	int ncpu = host_allowed_cpus(&set), n;
	int *order;
	const char *sysfs = getenv("RINGLINE_SYSFS_CPU");   /* tests: a fake topology */
	int pin = opts.pin;

	for (int i = 0; i < nslots; i++)
		slots[i].cpu = -1;
	if (pin < 0)
		pin = opts.workers > 1 && opts.workers == ncpu;
	if (!pin)
		return;
	order = malloc(sizeof(*order) * CPU_SETSIZE);
	if (!order)
		return;
	n = host_cpus_order(sysfs && *sysfs ? sysfs : "/sys/devices/system/cpu", &set, order,
			    CPU_SETSIZE);
	/* more workers than CPUs: round robin over the same order; a
	 * reload's generation runs on the same CPUs */
	for (int i = 0; i < opts.workers && n > 0; i++)
		slots[i].cpu = slots[i + opts.workers].cpu = order[i % n];
	free(order);
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A forced stop: say why and end now, without waiting for any thread. The
 * message goes out with write(2): a worker may hold stdio's lock. */
__attribute__((noreturn))
static void force_exit(const char *why)
{
	char msg[256];
	int n = snprintf(msg, sizeof(msg), "%s: %s\n", progname, why);

	if (write(STDERR_FILENO, msg, (size_t)n) < 0)
		_exit(1);
	_exit(1);
}

static const char *signame(int signo)
{
	switch (signo) {
	case SIGINT: return "SIGINT";
	case SIGTERM: return "SIGTERM";
	case SIGHUP: return "SIGHUP";
	case SIGUSR1: return "SIGUSR1";
	case SIGUSR2: return "SIGUSR2";
	default: return "signal";
	}
}

/*
 * One signal sent twice by the same process at once counts once. timeout(1)
 * and similar wrappers forward a signal both to their child and to its
 * process group, so the child gets it twice within microseconds; taken as
 * two, a plain SIGTERM would look like "stop now" to us. A person pressing
 * Ctrl-C twice, or a second kill(1), is slower or comes from another pid.
 */
#define DUP_WINDOW 0.25

static int duplicate(const struct signalfd_siginfo *si)
{
	static struct { uint32_t pid; double at; } last[_NSIG];
	uint32_t signo = si->ssi_signo;
	double now = now_s();
	int dup;

	if (signo >= _NSIG)
		return 0;
	dup = last[signo].at > 0 && last[signo].pid == si->ssi_pid &&
	      now - last[signo].at < DUP_WINDOW;
	last[signo].pid = si->ssi_pid;
	last[signo].at = now;
	return dup;
}

/*
 * Starting a half: its slots are reset (the previous generation there has
 * been joined) and its threads started. Returns 0, or -1 when a thread
 * could not start (those that did are stopped like after a failure; the
 * slots that did not are marked done with status 1).
 */
static int start_half(int h, int gen)
{
	int base = h * opts.workers;

	pthread_mutex_lock(&reg_lock);
	half_gen[h] = gen;
	for (int i = base; i < base + opts.workers; i++) {
		int cpu = slots[i].cpu;

		free_pending(&slots[i]);
		memset(&slots[i], 0, sizeof(slots[i]));
		slots[i].cpu = cpu;
	}
	pthread_mutex_unlock(&reg_lock);
	for (int i = base; i < base + opts.workers; i++) {
		int rc = pthread_create(&slots[i].thread, NULL, worker_main, &slots[i]);

		if (rc != 0) {
			fprintf(stderr, "%s: cannot start worker %d: %s\n", progname, i - base,
				strerror(rc));
			pthread_mutex_lock(&reg_lock);
			for (int j = i; j < base + opts.workers; j++) {
				slots[j].done = 1;
				slots[j].status = 1;
			}
			pthread_mutex_unlock(&reg_lock);
			notify_main();
			return -1;
		}
		{
			char name[32];

			snprintf(name, sizeof(name), "ringline-w%d", i - base);
			name[15] = '\0';      /* the kernel's limit */
			pthread_setname_np(slots[i].thread, name);
		}
		pthread_mutex_lock(&reg_lock);
		slots[i].started = 1;
		pthread_mutex_unlock(&reg_lock);
	}
	return 0;
}

/* Join half h's threads (all done) and forget its generation. */
static void join_half(int h)
{
	int base = h * opts.workers;

	for (int i = base; i < base + opts.workers; i++)
		if (slots[i].started)
			pthread_join(slots[i].thread, NULL);
	pthread_mutex_lock(&reg_lock);
	for (int i = base; i < base + opts.workers; i++)
		slots[i].started = 0;
	pthread_mutex_unlock(&reg_lock);
	host_listeners_retire(h, half_gen[h]);
	half_gen[h] = 0;
}

/* The reload under way ended (switched over, or failed): asks count again. */
static void reload_done(void)
{
	pthread_mutex_lock(&reg_lock);
	reload_busy = 0;
	pthread_mutex_unlock(&reg_lock);
}

/* What a half's workers are doing (reg_lock held). */
struct half_state {
	int started, done, ready, failed;   /* counts; failed: first failed index or -1 */
};

static struct half_state half_state(int h)
{
	struct half_state st = { 0, 0, 0, -1 };
	int base = h * opts.workers;

	for (int i = base; i < base + opts.workers; i++) {
		struct slot *s = &slots[i];

		if (!s->started && !s->done)
			continue;
		st.started++;
		if (s->done) {
			st.done++;
			if (s->status != 0 && st.failed < 0)
				st.failed = i - base;
		}
		/* a script that ended cleanly is as up as it will be */
		if (s->ready || (s->done && s->status == 0))
			st.ready++;
	}
	return st;
}

/* The message a retiring generation's workers get: drain as on SIGTERM,
 * but release the listening sockets (the new generation, or the new
 * process, accepts on them) instead of closing them. */
#define RETIRE_FROM 0x10000u

/*
 * The main thread after the first generation started: signals in, stops
 * and reloads out, until every worker has ended. Returns the process's
 * exit status.
 *
 * A reload: the script is read again and compiled here (a syntax error
 * ends it at once, the old workers serving on); the other half starts
 * with it; when every new worker is ready (rl_host_ready) the old ones are
 * sent RETIRE and drain, and the new half serves; a new worker that fails
 * first ends the reload instead (the new ones are retired). A reload asked
 * for while the other half is still busy waits for it.
 */
static int supervise(int sfd)
{
	struct pollfd pf[3] = { { .fd = sfd, .events = POLLIN }, { .fd = notify_fd, .events = POLLIN },
				{ .fd = -1, .events = POLLIN } };
	int stopping = 0, failed = -1, gen = 1, first_ready = 0;
	int starting = -1;      /* the half a reload is starting, -1: none */
	int retiring = -1;      /* the half draining after a reload, -1: none */
	int retire_late = 0;    /* its backstop passed (said once) */
	int handing_over = 0;   /* an upgrade's new process is ready: we drain */
	double backstop = 0, retire_by = 0, reload_t0 = 0;
	char reason[160];

	for (;;) {
		int tmo = -1;

		if (stopping) {
			double left = backstop - now_s();

			if (left <= 0)
				force_exit("workers did not stop within the drain timeout; exiting (status 1)");
			tmo = (int)ceil(left * 1000);
		} else if (retiring >= 0 && !retire_late) {
			double left = retire_by - now_s();

			tmo = left <= 0 ? 0 : (int)ceil(left * 1000);
		}
		pf[2].fd = host_upgrade_fd();
		if (poll(pf, 3, tmo) < 0 && errno != EINTR) {
			perror("ringline-lua: poll");
			return 1;
		}
		if (pf[0].revents & POLLIN) {
			struct signalfd_siginfo si;

			while (read(sfd, &si, sizeof(si)) == sizeof(si)) {
				int signo = (int)si.ssi_signo;

				if (duplicate(&si))
					continue;
				if (signo == SIGINT || signo == SIGTERM) {
					if (stopping) {
						snprintf(reason, sizeof(reason),
							 "second %s: exiting now without draining (status 1)",
							 signame(signo));
						force_exit(reason);
					}
					stopping = 1;
					host_draining = 1;
					backstop = now_s() + opts.drain_timeout + STOP_GRACE;
					snprintf(reason, sizeof(reason), "%s", signame(signo));
					if (!handing_over)
						host_notify("STOPPING=1");
					host_listeners_close_all();
					post_all((uint32_t)signo, RL_MSG_SIGNAL, reason);
				} else if (!stopping) {
					if (signo == SIGUSR1)
						host_log_reopen();   /* once for the process */
					/* the script's handlers, or (none) a reload or
					 * upgrade asked for by the workers: rl_host_reload */
					post_half(cur, (uint32_t)signo, RL_MSG_SIGNAL, signame(signo));
				}
			}
		}
		if (pf[1].revents & POLLIN) {
			uint64_t v;

			if (read(notify_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				perror("ringline-lua: eventfd read");
		}
		if (pf[2].fd >= 0 && (pf[2].revents & (POLLIN | POLLHUP | POLLERR))) {
			int r = host_upgrade_check();

			if (r > 0 && !stopping) {
				/* the new process serves: drain like on SIGTERM, but
				 * leave the sockets to it */
				handing_over = 1;
				stopping = 1;
				host_draining = 1;   /* /healthz: 503 */
				backstop = now_s() + opts.drain_timeout + STOP_GRACE;
				post_all(RETIRE_FROM, RL_MSG_SIGNAL, "upgrade");
			}
		}

		int exit_req, want_reload, want_upgrade, all_done = 1;
		struct half_state sc, ss = { 0, 0, 0, -1 }, sr = { 0, 0, 0, -1 };

		pthread_mutex_lock(&reg_lock);
		sc = half_state(cur);
		if (starting >= 0)
			ss = half_state(starting);
		if (retiring >= 0)
			sr = half_state(retiring);
		for (int i = 0; i < nslots; i++)
			if (slots[i].started && !slots[i].done)
				all_done = 0;
		exit_req = exit_requested;
		want_reload = reload_requested;
		want_upgrade = upgrade_requested;
		upgrade_requested = 0;
		pthread_mutex_unlock(&reg_lock);

		if (sc.failed >= 0 && failed < 0)
			failed = sc.failed;
		if (all_done && starting < 0)
			break;
		if (!first_ready && sc.ready == sc.started && sc.started == opts.workers &&
		    sc.failed < 0) {
			first_ready = 1;
			host_listeners_report_unused();
			host_upgrade_ready();     /* a process started by SIGUSR2: tell the old one */
			host_notify("READY=1");
		}
		/* a reload's new generation: up, or failed */
		if (starting >= 0 && ss.failed >= 0) {
			host_log(LOG_ERR, ss.failed, "reload failed: the new script failed at start "
				 "(the message is above); the old workers keep serving");
			post_half(starting, RETIRE_FROM, RL_MSG_SIGNAL, "failed reload");
			retiring = starting;
			retire_by = now_s() + opts.drain_timeout + STOP_GRACE;
			retire_late = 0;
			starting = -1;
			host_notify("READY=1");
			reload_done();
		}
		if (starting >= 0 && ss.ready == opts.workers && !stopping) {
			int old = cur;

			cur = starting;
			starting = -1;
			retiring = old;
			retire_by = now_s() + opts.drain_timeout + STOP_GRACE;
			retire_late = 0;
			post_half(old, RETIRE_FROM, RL_MSG_SIGNAL, "reload");
			reload_done();
			host_log(LOG_NOTICE, 0, "reloaded: generation %d serving (%.0f ms); generation "
				 "%d draining", half_gen[cur], (now_s() - reload_t0) * 1000,
				 half_gen[old]);
			host_notify("READY=1");
		}
		if (retiring >= 0 && sr.done == sr.started) {
			join_half(retiring);
			retiring = -1;
		} else if (retiring >= 0 && !retire_late && now_s() >= retire_by) {
			retire_late = 1;
			host_log(LOG_ERR, 0, "the workers of generation %d did not stop within the "
				 "drain timeout (a task that never yields?); further reloads wait "
				 "for them", half_gen[retiring]);
		}
		if (!stopping && (failed >= 0 || exit_req || (sc.done == sc.started && starting < 0))) {
			/* from = 0: a stop that is not a signal (or the serving
			 * generation ended by itself: the rest follow) */
			stopping = 1;
			host_draining = 1;
			backstop = now_s() + opts.drain_timeout + STOP_GRACE;
			if (failed >= 0)
				snprintf(reason, sizeof(reason), "worker %d failed", failed);
			else if (exit_req)
				snprintf(reason, sizeof(reason), "ringline.exit(%d)", exit_code);
			else
				snprintf(reason, sizeof(reason), "the script ended");
			host_listeners_close_all();
			post_all(0, RL_MSG_SIGNAL, reason);
			starting = -1;
		}
		if (want_upgrade && !stopping)
			host_upgrade_start(cur);
		if (want_reload && !stopping && starting < 0 && retiring < 0) {
			pthread_mutex_lock(&reg_lock);
			reload_requested = 0;
			reload_busy = 1;
			pthread_mutex_unlock(&reg_lock);
			reload_t0 = now_s();
			host_notify_reloading();
			char why[512];

			if (host_reload_script(why, sizeof(why)) < 0) {
				host_log(LOG_ERR, 0, "reload failed: %s; the old workers keep serving", why);
				host_notify("READY=1");
				reload_done();
			} else {
				starting = !cur;
				host_log(LOG_NOTICE, 0, "reloading: starting generation %d", gen + 1);
				if (start_half(starting, ++gen) < 0)
					host_log(LOG_ERR, 0, "reload failed: cannot start the workers");
			}
		}
	}
	if (failed >= 0)
		return 1;
	return exit_requested ? exit_code : 0;
}


int host_run_workers(void)
{
	sigset_t set;
	int sfd, status;

	/* Blocked here, so in every thread started from now on: they arrive
	 * only through the signalfd the main thread reads. */
	sigemptyset(&set);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, SIGUSR2);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (sfd < 0 || notify_fd < 0) {
		perror("ringline-lua: signalfd/eventfd");
		return 1;
	}
	host_listeners_init();
	host_upgrade_init();
	nslots = host_slots();   /* HOST_HALVES: two generations during a reload */
	slots = calloc((size_t)nslots, sizeof(*slots));
	if (!slots) {
		fprintf(stderr, "%s: out of memory\n", progname);
		return 1;
	}
	host_allowed_cpus(&host_process_cpus);
	plan_pinning();
	/* the watchdog's slots exist before any worker publishes into them */
	if (host_watchdog_start(nslots) < 0)
		host_log(LOG_WARN, 0, "cannot start the watchdog thread; running unwatched");
	cur = 0;
	start_half(0, 1);
	status = supervise(sfd);
	for (int i = 0; i < nslots; i++)
		if (slots[i].started)
			pthread_join(slots[i].thread, NULL);
	host_acceptor_stop();   /* no worker is left to hand connections to */
	host_upgrade_finish();
	fflush(stdout);
	return status;
}
