/* SPDX-License-Identifier: MIT */
/*
 * ringline-lua: the host executable.
 *
 *     ringline-lua [-w N|auto] [--pin|--no-pin] [--accept reuseport|acceptor]
 *                  [--drain-timeout s] [--allow-bytecode] [--set key=value ...]
 *                  [--metrics addr] [--log-file path] [--log-level l] [--log-format f]
 *                  [--lua-alloc luajit|malloc]
 *                  [--shared-dict name=size ...]
 *                  [-e code ...] [script.lua [args...]]
 *
 * It runs N worker threads (thread per core). Each has its own LuaJIT VM
 * and runs the script as the main task of its own worker: the script is
 * loaded as a chunk and handed to the Lua API's own entry point,
 * require("ringline").run(chunk, ...), the same code busted specs use
 * in-process. Workers share nothing on the hot path: each has its own ring,
 * buffers, connections and Lua tables, and with several workers each
 * listens on its own SO_REUSEPORT socket (the kernel spreads connections),
 * or with --accept acceptor one thread accepts on one socket and hands the
 * connections round robin to the workers (acceptor.c).
 *
 * The main thread runs no Lua. It parses options, reads the script once,
 * blocks the signals it handles (in every thread, before any starts), starts
 * the workers and then supervises: it waits on a signalfd and an eventfd
 * (a worker ended, or ringline.exit was called) and talks to the workers
 * only through their inboxes (rl_worker_post, RL_MSG_SIGNAL):
 *   SIGINT/SIGTERM  every worker drains (see lua/ringline/worker.lua) and
 *                   the process exits 0; a second one exits 1 at once.
 *   SIGHUP/USR1/USR2  posted to every worker (ringline.on_signal); USR1
 *                   first reopens --log-file (logw.c); without a handler,
 *                   HUP reloads and USR2 upgrades (workers.c).
 *   a worker fails  (its script does not load or raises at top level): the
 *                   others are stopped the same way and the status is 1.
 *   ringline.exit(code)  the others are stopped; the status is code.
 * A stop that does not finish within the drain timeout plus a grace period
 * (a task that never yields) ends the process with status 1.
 *
 * libringline is linked in whole and its symbols are exported from the
 * executable (see bindings/CMakeLists.txt), so the Lua side reaches the core
 * through ffi.C, and the host's own functions (rl_host.h) the same way. The
 * preloaded module "ringline.hostinfo" tells ringline.lib it is inside the
 * host, and tells the Lua API the worker's id, the worker count, the drain
 * timeout, the signal numbers and the configuration given with --set.
 *
 * Exit status: 0 clean run or graceful stop, 1 a worker failed (or a forced
 * stop), 2 bad options, or the code given to ringline.exit.
 *
 * This file: the options and main(). The parts are listed in host.h.
 */
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>

#include "host.h"
#include "rl_host.h"

const char *progname = "ringline-lua";
struct options opts;

void host_usage_hint(void)
{
	fprintf(stderr, "Try '%s --help' for more information.\n", progname);
}

/* A bad option: the message names it; exit 2. */
__attribute__((format(printf, 1, 2), noreturn))
static void bad_option(const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "%s: ", progname);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	host_usage_hint();
	exit(EXIT_USAGE);
}

/* ---- options ---- */

/* Keys the Lua API adds to the core's (e.g. line_max), from
 * ringline.config_keys(); nothing when the Lua API cannot be loaded. */
static void print_lua_keys(const struct options *o,
			   const struct rl_config_key *keys, int n)
{
	lua_State *L = host_new_lua(o, 0, -1);

	if (!L)
		return;
	if (host_push_lua_config_keys(L)) {
		lua_pushnil(L);
		while (lua_next(L, -2)) {
			const char *name = lua_tostring(L, -2);
			int core = 0;

			for (int i = 0; i < n && name; i++)
				core |= strcmp(keys[i].name, name) == 0;
			if (name && !core && lua_istable(L, -1)) {
				lua_getfield(L, -1, "default");
				lua_getfield(L, -2, "min");
				lua_getfield(L, -3, "max");
				lua_getfield(L, -4, "doc");
				printf("  %-20s default %-8.0f range %.0f..%.0f\n", name,
				       lua_tonumber(L, -4), lua_tonumber(L, -3),
				       lua_tonumber(L, -2));
				if (lua_isstring(L, -1))
					printf("  %-20s %s\n", "", lua_tostring(L, -1));
				lua_pop(L, 4);
			}
			lua_pop(L, 1);
		}
	}
	lua_close(L);
}

static void print_help(const struct options *o)
{
	int n = 0;
	const struct rl_config_key *keys = rl_config_keys(&n);
	cpu_set_t set;
	int ncpu = host_allowed_cpus(&set);

	printf("Usage: %s [options] [-e code ...] [script.lua [args...]]\n"
	       "Run script.lua on ringline workers (io_uring + LuaJIT): each worker is a\n"
	       "thread with its own event loop and Lua VM, and runs the script as its main\n"
	       "task. Inside the script, `arg` and `...` hold the arguments, as with luajit;\n"
	       "ringline.worker_id() tells the workers apart.\n"
	       "\n"
	       "Options:\n"
	       "  -h, --help           show this help and exit\n"
	       "  -v, --version        show versions and exit\n"
	       "  -w N|auto            worker threads, 1..%d (default 1; auto = one per\n"
	       "                       CPU this process may use: %d here). With several\n"
	       "                       workers each listens on its own SO_REUSEPORT socket\n"
	       "                       unless --accept acceptor\n"
	       "  --accept MODE        how several workers share a listening address:\n"
	       "                       reuseport (default): a socket per worker, the\n"
	       "                       kernel hashes each connection to one; acceptor:\n"
	       "                       one socket, a thread accepts and hands connections\n"
	       "                       to the workers round robin (unix sockets always)\n"
	       "  --pin, --no-pin      pin worker i to one CPU, one physical core each\n"
	       "                       before any SMT sibling (default: on when workers\n"
	       "                       equals the CPU count and is more than 1)\n"
	       "  --drain-timeout s    on SIGINT/SIGTERM, seconds to let connections finish\n"
	       "                       and sends flush before resetting the rest, 0..%.0f\n"
	       "                       (default %.0f)\n"
	       "  --allow-bytecode     run a precompiled script (luajit -b output); refused\n"
	       "                       without it: only source is expected\n"
	       "  --log-file PATH      write log lines to PATH (appending) instead of stderr;\n"
	       "                       SIGUSR1 reopens it (after logrotate renamed it)\n"
	       "  --log-level LEVEL    error, warn, notice, info (default) or debug, or\n"
	       "                       4..8; overrides RINGLINE_LOG_LEVEL\n"
	       "  --log-format FORMAT  text (default) or json: one object a line with time,\n"
	       "                       level, worker, msg and caller\n"
	       "  --lua-alloc A        the Lua heap's allocator: luajit (default; fastest)\n"
	       "                       or malloc (pages go back to the system after a\n"
	       "                       burst of connections, at some speed)\n"
	       "  --metrics ADDR       serve /metrics (Prometheus text format) and /healthz\n"
	       "                       on ADDR (host:port, [v6]:port or port) from a host\n"
	       "                       thread of its own\n"
	       "  --set key=value      set a configuration key (see below) for every worker;\n"
	       "                       k/m/g suffixes multiply by 1024, 1024^2, 1024^3\n"
	       "  --shared-dict name=size  a shared dictionary every worker sees as\n"
	       "                       ringline.shared.name (ngx.shared.DICT), size 16k..64g\n"
	       "                       with k/m/g suffixes; may be repeated\n"
	       "  -e code              run code (a Lua chunk) before the script, as lua -e\n"
	       "                       does; may be repeated, and the script then optional\n"
	       "  --                   end of options; the next argument is the script\n"
	       "  script.lua           the script ('-' reads it from stdin), at most %u MiB\n"
	       "\n"
	       "Configuration keys (--set key=value, per worker):\n",
	       progname, MAX_WORKERS, ncpu, DRAIN_MAX, DRAIN_DEFAULT, SCRIPT_MAX >> 20);
	for (int i = 0; i < n; i++) {
		printf("  %-20s default %-8u range %u..%u%s\n", keys[i].name,
		       keys[i].def, keys[i].min, keys[i].max,
		       keys[i].pow2 ? ", power of two" : "");
		if (keys[i].doc && keys[i].doc[0])
			printf("  %-20s %s\n", "", keys[i].doc);
	}
	print_lua_keys(o, keys, n);
	printf("\n"
	       "Signals: SIGINT/SIGTERM stop accepting and drain every worker, then exit 0;\n"
	       "a second one exits 1 at once. SIGHUP reloads the script into new workers that\n"
	       "take the listening sockets over while the old ones drain; SIGUSR2 starts a\n"
	       "new process of the executable that takes them over, then this one drains\n"
	       "and exits. SIGUSR1 reopens --log-file. A ringline.on_signal handler for HUP,\n"
	       "USR2 (or USR1) runs\n"
	       "instead. systemd: LISTEN_FDS sockets are adopted, NOTIFY_SOCKET is told.\n"
	       "\n"
	       "Exit status: 0 after a clean run or a graceful stop, 1 when a worker's script\n"
	       "fails to load or raises (message and traceback on stderr, naming the worker)\n"
	       "or a stop was forced, 2 for bad options, or the code passed to ringline.exit.\n");
}

static void print_version(void)
{
	printf("%s %s (libringline %s, %s)\n", progname, RL_VERSION_STRING,
	       rl_version(), LUAJIT_VERSION);
}

/* Integer with an optional binary suffix; 0 on success. */
static int parse_size(const char *s, int64_t *out)
{
	char *end;
	long long v;
	int shift = 0;

	if (!*s)
		return -1;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno || end == s)
		return -1;
	switch (*end) {
	case 'k': case 'K': shift = 10; end++; break;
	case 'm': case 'M': shift = 20; end++; break;
	case 'g': case 'G': shift = 30; end++; break;
	default: break;
	}
	if (*end)
		return -1;
	if (shift && (v > (INT64_MAX >> shift) || v < (INT64_MIN >> shift)))
		return -1;
	*out = (int64_t)v * ((int64_t)1 << shift);
	return 0;
}

static void parse_workers(struct options *o, const char *v)
{
	char *end;
	long n;

	if (strcmp(v, "auto") == 0) {
		cpu_set_t set;

		n = host_allowed_cpus(&set);
		if (n > MAX_WORKERS)
			n = MAX_WORKERS;
	} else {
		errno = 0;
		n = strtol(v, &end, 10);
		if (errno || end == v || *end || n < 1 || n > MAX_WORKERS)
			bad_option("-w: expected a worker count 1..%d or 'auto', got '%s'",
				   MAX_WORKERS, v);
	}
	o->workers = (int)n;
}

static void parse_drain(struct options *o, const char *v)
{
	char *end;
	double s;

	errno = 0;
	s = strtod(v, &end);
	if (errno || end == v || *end || !isfinite(s) || s < 0 || s > DRAIN_MAX)
		bad_option("--drain-timeout: expected seconds 0..%.0f, got '%s'", DRAIN_MAX, v);
	o->drain_timeout = s;
}

static void parse_set(struct options *o, const char *kv)
{
	char key[128], msg[256];
	const char *eq = strchr(kv, '=');
	int64_t value;
	size_t klen;
	int rc;

	if (!eq || eq == kv)
		bad_option("--set: expected key=value, got '%s'", kv);
	klen = (size_t)(eq - kv);
	if (klen >= sizeof(key))
		bad_option("--set: key too long in '%s'", kv);
	memcpy(key, kv, klen);
	key[klen] = '\0';
	if (parse_size(eq + 1, &value))
		bad_option("--set %s: '%s' is not an integer", key, eq + 1);
	msg[0] = '\0';
	rc = rl_config_set(&o->cfg, key, value, msg, sizeof(msg));
	if (o->nset == (int)(sizeof(o->set_keys) / sizeof(o->set_keys[0])))
		bad_option("--set: too many settings (at '%s')", kv);
	o->lua_key[o->nset] = rc == -ENOENT;
	if (rc < 0 && rc != -ENOENT) {
		if (!msg[0])
			snprintf(msg, sizeof(msg), "value out of range");
		/* The core's message names the key and its range. */
		fprintf(stderr, "%s: --set %s: %s\n", progname, kv, msg);
		host_usage_hint();
		exit(EXIT_USAGE);
	}
	/* The name alone, without "=value", for hostinfo.config. */
	o->set_keys[o->nset] = strndup(kv, klen);
	o->set_text[o->nset] = kv;
	o->set_values[o->nset] = value;
	o->nset++;
}

/* --shared-dict name=size: the dictionary is opened here, in the main
 * thread before any worker starts, so every worker finds the same one in
 * ringline.shared (core/src/shdict.c keeps the process's registry). */
static void parse_shared_dict(const char *kv)
{
	char name[64];
	const char *eq = strchr(kv, '=');
	struct rl_shdict *d;
	size_t size, n;
	int rc;

	if (!eq || eq == kv)
		bad_option("--shared-dict: expected name=size (e.g. cache=10m), got '%s'", kv);
	n = (size_t)(eq - kv);
	if (n >= sizeof(name))
		bad_option("--shared-dict: name too long (at most 63 bytes) in '%s'", kv);
	memcpy(name, kv, n);
	name[n] = '\0';
	rc = rl_shdict_parse_size(eq + 1, &size);
	if (rc < 0)
		bad_option("--shared-dict %s: '%s' is not a size (bytes, or with k/m/g)", name, eq + 1);
	rc = rl_shdict_open(name, size, &d);
	if (rc == -EINVAL)
		bad_option("--shared-dict %s: bad name or size (names: A-Z a-z 0-9 _; "
			   "sizes 16k..64g)", kv);
	if (rc == -EEXIST)
		bad_option("--shared-dict %s: '%s' was given with another size", kv, name);
	if (rc < 0)
		bad_option("--shared-dict %s: %s", kv, strerror(-rc));
}

/* The value of option a: the next argument (advancing *i) or after '='. */
static const char *option_value(int argc, char **argv, int *i, const char *name, const char *what)
{
	const char *a = argv[*i];
	size_t n = strlen(name);

	if (a[n] == '=')
		return a + n + 1;
	if (*i + 1 >= argc)
		bad_option("option '%s' needs %s", name, what);
	return argv[++*i];
}

static int is_option(const char *a, const char *name)
{
	size_t n = strlen(name);

	return strncmp(a, name, n) == 0 && (a[n] == '\0' || a[n] == '=');
}

static void parse_options(struct options *o, int argc, char **argv)
{
	int i;

	o->workers = 1;
	o->pin = -1;
	o->drain_timeout = DRAIN_DEFAULT;
	o->argc = argc;
	o->argv = argv;
	rl_config_init(&o->cfg);
	for (i = 1; i < argc; i++) {
		const char *a = argv[i];

		if (a[0] != '-' || strcmp(a, "-") == 0)
			break;                  /* the script */
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			print_help(o);
			exit(0);
		}
		if (strcmp(a, "-v") == 0 || strcmp(a, "--version") == 0) {
			print_version();
			exit(0);
		}
		if (strcmp(a, "-w") == 0) {
			if (i + 1 >= argc)
				bad_option("option '%s' needs a value (N or auto)", a);
			parse_workers(o, argv[++i]);
		} else if (is_option(a, "--workers")) {
			parse_workers(o, option_value(argc, argv, &i, "--workers", "a value (N or auto)"));
		} else if (a[1] == 'w' && a[2] != '\0') {
			parse_workers(o, a + 2);          /* -w4, -wauto */
		} else if (a[1] == 'e') {
			/* -e code or -ecode, as lua */
			const char *code = a[2] ? a + 2 : NULL;

			if (!code && i + 1 >= argc)
				bad_option("option '-e' needs a Lua chunk");
			if (!code)
				code = argv[++i];
			if (o->nexec == (int)(sizeof(o->exec) / sizeof(o->exec[0])))
				bad_option("-e: too many chunks");
			o->exec[o->nexec++] = code;
		} else if (strcmp(a, "--pin") == 0) {
			o->pin = 1;
		} else if (strcmp(a, "--no-pin") == 0) {
			o->pin = 0;
		} else if (is_option(a, "--accept")) {
			const char *v = option_value(argc, argv, &i, "--accept",
						     "a mode (reuseport or acceptor)");

			if (strcmp(v, "reuseport") == 0)
				o->accept_acceptor = 0;
			else if (strcmp(v, "acceptor") == 0)
				o->accept_acceptor = 1;
			else
				bad_option("--accept: expected reuseport or acceptor, got '%s'", v);
		} else if (strcmp(a, "--allow-bytecode") == 0) {
			o->allow_bytecode = 1;
		} else if (is_option(a, "--drain-timeout")) {
			parse_drain(o, option_value(argc, argv, &i, "--drain-timeout", "seconds"));
		} else if (is_option(a, "--log-file")) {
			o->log_file = option_value(argc, argv, &i, "--log-file", "a path");
			if (!*o->log_file)
				bad_option("--log-file: expected a path, got ''");
		} else if (is_option(a, "--log-level")) {
			const char *v = option_value(argc, argv, &i, "--log-level", "a level");
			int lv = host_log_parse_level(v);

			if (lv < 0)
				bad_option("--log-level: expected error, warn, notice, info, debug "
					   "or 4..8, got '%s'", v);
			o->log_level = lv;
		} else if (is_option(a, "--log-format")) {
			const char *v = option_value(argc, argv, &i, "--log-format", "text or json");

			if (strcmp(v, "text") == 0)
				o->log_json = 0;
			else if (strcmp(v, "json") == 0)
				o->log_json = 1;
			else
				bad_option("--log-format: expected text or json, got '%s'", v);
		} else if (is_option(a, "--lua-alloc")) {
			const char *v = option_value(argc, argv, &i, "--lua-alloc", "luajit or malloc");

			if (strcmp(v, "luajit") == 0)
				o->lua_malloc = 0;
			else if (strcmp(v, "malloc") == 0)
				o->lua_malloc = 1;
			else
				bad_option("--lua-alloc: expected luajit or malloc, got '%s'", v);
		} else if (is_option(a, "--metrics")) {
			o->metrics = option_value(argc, argv, &i, "--metrics", "an address (host:port)");
		} else if (is_option(a, "--set")) {
			parse_set(o, option_value(argc, argv, &i, "--set", "key=value"));
		} else if (is_option(a, "--shared-dict")) {
			parse_shared_dict(option_value(argc, argv, &i, "--shared-dict", "name=size"));
		} else {
			bad_option("unknown option '%s'", a);
		}
	}
	if (i >= argc && !o->nexec) {
		fprintf(stderr, "%s: no script given\n"
			"Usage: %s [options] [-e code ...] [script.lua [args...]]\n",
			progname, progname);
		host_usage_hint();
		exit(EXIT_USAGE);
	}
	{
		char msg[256] = "";

		if (rl_config_validate(&o->cfg, msg, sizeof(msg)) < 0) {
			fprintf(stderr, "%s: --set: %s\n", progname,
				msg[0] ? msg : "invalid configuration");
			host_usage_hint();
			exit(EXIT_USAGE);
		}
	}
	o->script = i;
}


int main(int argc, char **argv)
{
	struct sigaction sa;

	parse_options(&opts, argc, argv);
	{
		int lv = host_log_parse_level(getenv("RINGLINE_LOG_LEVEL"));

		/* the flag, else the environment (a bad value: INFO, as ringline.log says) */
		host_log_threshold = opts.log_level ? opts.log_level : lv > 0 ? lv : LOG_INFO;
	}
	host_preflight();
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);   /* a peer reset must not kill us */
	/* Line-buffered even into a pipe: a server's "listening on" line must
	 * reach a supervisor or log before the first request. */
	setvbuf(stdout, NULL, _IOLBF, 0);
	{
		char msg[256] = "";

		if (host_log_start(msg, sizeof(msg)) < 0) {
			fprintf(stderr, "%s: --log-file: %s\n", progname, msg);
			return 1;
		}
	}
	if (host_metrics_init() < 0) {
		fprintf(stderr, "%s: out of memory\n", progname);
		return 1;
	}
	if (opts.metrics) {
		char msg[256] = "";
		int rc = rl_host_metrics_listen(opts.metrics, msg, sizeof(msg));

		if (rc < 0) {
			fprintf(stderr, "%s: --metrics: %s\n", progname, msg);
			if (rc == -EINVAL)
				host_usage_hint();
			return rc == -EINVAL ? EXIT_USAGE : 1;
		}
	}
	{
		int status = host_run_workers();

		host_metrics_stop();
		host_log_stop();
		return status;
	}
}
