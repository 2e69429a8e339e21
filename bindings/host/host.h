/* SPDX-License-Identifier: MIT */
/*
 * host.h - what the parts of the host executable share (not installed; the
 * Lua side's view of the host is rl_host.h).
 *
 *   main.c     options, --help, main()
 *   vm.c       one LuaJIT VM per worker: module path, ringline.hostinfo,
 *              the script, the bootstrap that runs it through ringline.run
 *   workers.c  worker threads, the registry behind rl_host.h, pinning,
 *              signals and the supervision of the main thread
 *   cpus.c     the pinning order
 *   acceptor.c the acceptor thread of shared listeners (--accept acceptor)
 *   watchdog.c the thread that reports (and optionally aborts on) a worker
 *              whose loop stopped turning: a task that never yields
 *   spawn.c    system/popen/pclose for os.execute and io.popen: children
 *              with an empty signal mask and default dispositions
 *   listeners.c the listening sockets kept across reloads and upgrades,
 *              and the ones systemd (LISTEN_FDS) or an upgrade passed in
 *   notify.c   sd_notify (READY=1, RELOADING=1, STOPPING=1) without libsystemd
 *   upgrade.c  SIGUSR2: a new process image takes the sockets over
 */
#ifndef RL_HOST_INTERNAL_H
#define RL_HOST_INTERNAL_H

#include <pthread.h>
#include <sched.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>

#include "ringline.h"

#define EXIT_USAGE 2
#define MAX_WORKERS 1024
#define DRAIN_DEFAULT 5.0
#define DRAIN_MAX 86400.0
/* The longest script read: a script is source a person wrote; a bigger file
 * is a mistake (a data file, a device, stdin left open). */
#define SCRIPT_MAX (16u << 20)

extern const char *progname;

struct options {
	int workers;
	int pin;                 /* -1: default (on when workers == CPUs), 0, 1 */
	double drain_timeout;    /* seconds */
	int accept_acceptor;     /* --accept acceptor: listeners share one socket */
	int allow_bytecode;      /* --allow-bytecode: the script may be precompiled */
	const char *metrics;     /* --metrics ADDR, NULL: none */
	const char *log_file;    /* --log-file PATH, NULL: stderr */
	int log_json;            /* --log-format json */
	int log_level;           /* --log-level, 0: not given */
	int lua_malloc;          /* --lua-alloc malloc: the Lua heap on the C allocator */
	struct rl_config cfg;   /* where the core validates --set; the worker
	                         * gets the values via ringline.configure */
	/* keys given with --set, in order, for hostinfo.config; lua_key: not
	 * a core key, validated against the Lua API's keys once Lua is up */
	const char *set_keys[64];
	const char *set_text[64];
	int64_t set_values[64];
	int lua_key[64];
	int nset;
	int script;      /* argv index of the script, argc if none (-e only) */
	const char *exec[64];   /* the chunks of -e, in order, run before the script */
	int nexec;
	int argc;
	char **argv;
};

extern struct options opts;

/* Worker slots the metrics and the log buffers are sized for: a worker
 * writes the ones of its slot (hostinfo.slot, else its worker id), and a
 * scrape adds the slots of one worker index (slot % workers) into its
 * worker="N" series. 1: one generation of workers; a reload that runs two
 * generations side by side in two halves of the slots makes it 2. */
#define HOST_HALVES 2
static inline int host_slots(void)
{
	return opts.workers * HOST_HALVES;
}

/* logw.c: a thread with every signal blocked; 0 or an errno. */
int host_thread_create(pthread_t *t, void *(*fn)(void *));
/* logw.c: the log writer thread (--log-file, --log-format, --log-level). */
extern int host_log_threshold;       /* lines above it are not written */
int host_log_parse_level(const char *s);   /* a name or 4..8; -1 otherwise */
int host_log_start(char *msg, size_t msglen);   /* before any worker starts */
void host_log_reopen(void);          /* SIGUSR1 */
void host_log_stop(void);            /* after every worker has ended */
void host_log_v(int level, int id, const char *fmt, va_list ap);

/* metrics.c: what the endpoint serves; metrics_http.c: the endpoint. */
int host_metrics_init(void);          /* before any worker starts */
void host_metrics_stop(void);         /* after every worker has ended */
/* Before the endpoint serves: the scrape's buffers (-ENOMEM). */
int host_metrics_prepare(void);
/* The /metrics text (malloc'd, *len bytes), NULL without memory. */
char *host_metrics_text(size_t *len);
/* msg <- the formatted reason; returns -EINVAL. */
__attribute__((format(printf, 3, 4)))
int host_metrics_fail(char *msg, size_t len, const char *fmt, ...);
void host_metrics_log_dropped(int id);
uint64_t host_metrics_log_drops(int id);
/* A worker leaves its slot (before its C worker is destroyed): its last
 * counters and histograms are kept for the scrapes after it. */
void host_metrics_worker_ending(int id, struct rl_worker *w);
extern volatile int host_draining;    /* /healthz answers 503 from now */

/* main.c */
void host_usage_hint(void);

/* vm.c */
lua_State *host_new_lua(const struct options *o, int id, int cpu);
/* A worker's VM: worker index id in host slot `slot` of generation gen. */
lua_State *host_new_lua_slot(const struct options *o, int id, int cpu, int slot, int gen);
/* Read and compile the script again for a reload: 0, or -1 and why. */
int host_reload_script(char *why, size_t len);
/* Pushes ringline.config_keys() and returns 1, or pushes nothing and
 * returns 0 when the Lua API cannot be loaded. */
int host_push_lua_config_keys(lua_State *L);
/* Lua keys of --set (exit 2), the script read and compiled (exit 1). */
void host_preflight(void);
/* Runs the script on worker id's VM; its exit status (0 or 1). */
int host_run_script(lua_State *L, int id);

/* acceptor.c: after every worker has ended, stop the acceptor thread (if
 * one started) and free the shared sockets. */
void host_acceptor_stop(void);


/* watchdog.c: the slots of rl_host_watch and the thread watching them;
 * before any worker starts. 0 or -errno (the workers then run unwatched). */
int host_watchdog_start(int workers);

/* listeners.c: the listening sockets kept across generations, and those
 * given at start (systemd's LISTEN_FDS, RINGLINE_INHERIT). */
void host_listeners_init(void);   /* once; later calls do nothing */
int host_listeners_take_own(const char *addr);
void host_listeners_keep_own(const char *addr, int fd);
void host_listeners_retire(int half, int gen);
void host_listeners_report_unused(void);
void host_listeners_close_all(void);
int host_listeners_export(int half, char *buf, size_t len, int *fds, int max);

/* notify.c: sd_notify datagrams to NOTIFY_SOCKET (none when unset). */
int host_notify(const char *msg);
int host_notify_reloading(void);

/* upgrade.c: SIGUSR2, a new process image taking the sockets over. */
void host_upgrade_init(void);
int host_upgrade_fd(void);
int host_upgrade_check(void);
void host_upgrade_ready(void);
void host_upgrade_start(int half);
void host_upgrade_finish(void);

/* workers.c */
/* Slot -> its half, worker index and generation; -EINVAL for a bad slot. */
int host_slot_info(int slot, int *half, int *worker, int *gen);
enum { LOG_ERR = 4, LOG_WARN = 5, LOG_NOTICE = 6, LOG_INFO = 7, LOG_DEBUG = 8 };
/* A line in the format of ringline.log (--log-format), subject to the
 * level (--log-level, else RINGLINE_LOG_LEVEL), to the log (logw.c);
 * id -1 is the acceptor thread, -2 another host thread. */
__attribute__((format(printf, 3, 4)))
void host_log(int level, int id, const char *fmt, ...);
/* The CPUs this process may run on (what -w auto counts and --pin uses). */
int host_allowed_cpus(cpu_set_t *set);
/* Those CPUs as they were before any worker was pinned: a thread started
 * from a pinned worker (the acceptor) gets this mask, not the worker's. */
extern cpu_set_t host_process_cpus;
/* metrics.c: worker id's counters and histograms, read in place under the
 * registry's lock (so it cannot be destroyed meanwhile); 0, or -ENOENT when
 * it has no C worker now. */
int host_worker_sample(int id, struct rl_metrics *m, struct rl_latency *lat);
/* Blocks the handled signals, starts the workers, supervises them until
 * all have ended; returns the process's exit status. */
int host_run_workers(void);

#endif
