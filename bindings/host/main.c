/* SPDX-License-Identifier: MIT */
/*
 * ringline-lua: the host executable.
 *
 *     ringline-lua [-w N|auto] [--pin|--no-pin] [--drain-timeout s]
 *                  [--set key=value ...] script.lua [args...]
 *
 * It runs N worker threads (thread per core). Each has its own LuaJIT VM
 * and runs the script as the main task of its own worker: the script is
 * loaded as a chunk and handed to the Lua API's own entry point,
 * require("ringline").run(chunk, ...), the same code busted specs use
 * in-process. Workers share nothing on the hot path: each has its own ring,
 * buffers, connections and Lua tables, and with several workers each
 * listens on its own SO_REUSEPORT socket (the kernel spreads connections).
 *
 * The main thread runs no Lua. It parses options, reads the script once,
 * blocks the signals it handles (in every thread, before any starts), starts
 * the workers and then supervises: it waits on a signalfd and an eventfd
 * (a worker ended, or ringline.exit was called) and talks to the workers
 * only through their inboxes (rl_worker_post, RL_MSG_SIGNAL):
 *   SIGINT/SIGTERM  every worker drains (see lua/ringline/worker.lua) and
 *                   the process exits 0; a second one exits 1 at once.
 *   SIGHUP/USR1/USR2  posted to every worker (ringline.on_signal).
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
 */
#include <errno.h>
#include <limits.h>
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
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <luajit.h>
#include <lualib.h>

#include "ringline.h"
#include "cpus.h"
#include "rl_host.h"

#ifndef RL_SOURCE_DIR
#define RL_SOURCE_DIR ""
#endif
/* The Lua modules' directory relative to the executable's when installed,
 * e.g. "../share/lua/5.1" (from GNUInstallDirs, set by CMake). */
#ifndef RL_REL_LUADIR
#define RL_REL_LUADIR "../share/lua/5.1"
#endif

#define EXIT_USAGE 2
#define MAX_WORKERS 1024
#define DRAIN_DEFAULT 5.0
#define DRAIN_MAX 86400.0
/* After the drain deadline the workers reset what is left and tear down,
 * which takes milliseconds; a worker still running this much later is stuck
 * in Lua code that never yields, and the process stops without it. */
#define STOP_GRACE 5.0

static const char *progname = "ringline-lua";

struct options {
	int workers;
	int pin;                 /* -1: default (on when workers == CPUs), 0, 1 */
	double drain_timeout;    /* seconds */
	struct rl_config cfg;   /* where the core validates --set; the worker
	                         * gets the values via ringline.configure */
	/* keys given with --set, in order, for hostinfo.config; lua_key: not
	 * a core key, validated against the Lua API's keys once Lua is up */
	const char *set_keys[64];
	const char *set_text[64];
	int64_t set_values[64];
	int lua_key[64];
	int nset;
	int script;      /* argv index of the script, 0 if none */
	int argc;
	char **argv;
};

static struct options opts;

static void usage_hint(void)
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
	usage_hint();
	exit(EXIT_USAGE);
}

static lua_State *new_lua(const struct options *o, int id, int cpu);
static int push_lua_config_keys(lua_State *L);

/* The CPUs this process may run on (what -w auto counts and --pin uses). */
static int allowed_cpus(cpu_set_t *set)
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

/* ---- options ---- */

/* Keys the Lua API adds to the core's (e.g. line_max), from
 * ringline.config_keys(); nothing when the Lua API cannot be loaded. */
static void print_lua_keys(const struct options *o,
			   const struct rl_config_key *keys, int n)
{
	lua_State *L = new_lua(o, 0, -1);

	if (!L)
		return;
	if (push_lua_config_keys(L)) {
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
	int ncpu = allowed_cpus(&set);

	printf("Usage: %s [options] script.lua [args...]\n"
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
	       "  --pin, --no-pin      pin worker i to one CPU, one physical core each\n"
	       "                       before any SMT sibling (default: on when workers\n"
	       "                       equals the CPU count and is more than 1)\n"
	       "  --drain-timeout s    on SIGINT/SIGTERM, seconds to let connections finish\n"
	       "                       and sends flush before resetting the rest, 0..%.0f\n"
	       "                       (default %.0f)\n"
	       "  --set key=value      set a configuration key (see below) for every worker;\n"
	       "                       k/m/g suffixes multiply by 1024, 1024^2, 1024^3\n"
	       "  --                   end of options; the next argument is the script\n"
	       "  script.lua           the script ('-' reads it from stdin)\n"
	       "\n"
	       "Configuration keys (--set key=value, per worker):\n",
	       progname, MAX_WORKERS, ncpu, DRAIN_MAX, DRAIN_DEFAULT);
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
	       "a second one exits 1 at once. SIGHUP, SIGUSR1, SIGUSR2 run the handlers the\n"
	       "script set with ringline.on_signal on every worker.\n"
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

		n = allowed_cpus(&set);
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
		usage_hint();
		exit(EXIT_USAGE);
	}
	/* The name alone, without "=value", for hostinfo.config. */
	o->set_keys[o->nset] = strndup(kv, klen);
	o->set_text[o->nset] = kv;
	o->set_values[o->nset] = value;
	o->nset++;
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
		} else if (strcmp(a, "--pin") == 0) {
			o->pin = 1;
		} else if (strcmp(a, "--no-pin") == 0) {
			o->pin = 0;
		} else if (is_option(a, "--drain-timeout")) {
			parse_drain(o, option_value(argc, argv, &i, "--drain-timeout", "seconds"));
		} else if (is_option(a, "--set")) {
			parse_set(o, option_value(argc, argv, &i, "--set", "key=value"));
		} else {
			bad_option("unknown option '%s'", a);
		}
	}
	if (i >= argc) {
		fprintf(stderr, "%s: no script given\n"
			"Usage: %s [options] script.lua [args...]\n", progname, progname);
		usage_hint();
		exit(EXIT_USAGE);
	}
	{
		char msg[256] = "";

		if (rl_config_validate(&o->cfg, msg, sizeof(msg)) < 0) {
			fprintf(stderr, "%s: --set: %s\n", progname,
				msg[0] ? msg : "invalid configuration");
			usage_hint();
			exit(EXIT_USAGE);
		}
	}
	o->script = i;
}

/* ---- module path ---- */

static int is_file(const char *path)
{
	return access(path, R_OK) == 0;
}

/* The directory of the running executable, without a trailing slash. */
static int exe_dir(char *buf, size_t len)
{
	ssize_t n = readlink("/proc/self/exe", buf, len - 1);
	char *slash;

	if (n <= 0)
		return -1;
	buf[n] = '\0';
	slash = strrchr(buf, '/');
	if (!slash)
		return -1;
	*slash = '\0';
	return 0;
}

static void canonical(char *path, size_t len)
{
	char real[PATH_MAX];

	if (realpath(path, real) && strlen(real) < len)
		strcpy(path, real);
}

/*
 * Prepend the ringline modules to package.path. The first layout that holds
 * ringline/init.lua wins:
 *   installed:   <exe>/../share/lua/5.1/ringline/{init,lib,...}.lua
 *   beside:      <exe>/../lua/ringline, <exe>/../bindings/ringline
 *   build tree:  <exe>/../../lua, <exe>/../../bindings (build/bindings/ringline-lua)
 *   source dir:  baked in at compile time, the fallback for a moved build dir
 * LUA_PATH, if set, still applies after these (luaL_openlibs read it).
 */
static void set_path(lua_State *L)
{
	char dir[PATH_MAX], probe[PATH_MAX + 64], lua[PATH_MAX + 64], bind[PATH_MAX + 64];
	const char *layouts[4][2] = {
		{ "/" RL_REL_LUADIR, NULL },
		{ "/../lua", "/../bindings" },
		{ "/../../lua", "/../../bindings" },
		{ NULL, NULL },
	};
	int found = 0;

	if (exe_dir(dir, sizeof(dir)) == 0) {
		for (int i = 0; i < 3 && !found; i++) {
			snprintf(probe, sizeof(probe), "%s%s/ringline/init.lua", dir, layouts[i][0]);
			if (!is_file(probe))
				continue;
			snprintf(lua, sizeof(lua), "%s%s", dir, layouts[i][0]);
			snprintf(bind, sizeof(bind), "%s%s", dir,
				 layouts[i][1] ? layouts[i][1] : layouts[i][0]);
			found = 1;
		}
	}
	if (!found && RL_SOURCE_DIR[0]) {
		snprintf(lua, sizeof(lua), "%s/lua", RL_SOURCE_DIR);
		snprintf(bind, sizeof(bind), "%s/bindings", RL_SOURCE_DIR);
		found = 1;
	}
	if (!found)
		return;  /* require "ringline" then reports where it looked */
	/* Canonical paths read better in tracebacks than ".../bindings/../../lua". */
	canonical(lua, sizeof(lua));
	canonical(bind, sizeof(bind));

	lua_getglobal(L, "package");
	lua_getfield(L, -1, "path");
	lua_pushfstring(L, "%s/?.lua;%s/?/init.lua;%s/?.lua;%s", lua, lua, bind,
			lua_tostring(L, -1));
	lua_setfield(L, -3, "path");
	lua_pop(L, 2);
}

/* ---- ringline.hostinfo ---- */

static int hostinfo_loader(lua_State *L)
{
	lua_pushvalue(L, lua_upvalueindex(1));
	return 1;
}

static void preload_hostinfo(lua_State *L, const struct options *o, int id, int cpu)
{
	static const struct { const char *name; int signo; } sigs[] = {
		{ "HUP", SIGHUP }, { "INT", SIGINT }, { "TERM", SIGTERM },
		{ "USR1", SIGUSR1 }, { "USR2", SIGUSR2 },
	};

	lua_getglobal(L, "package");
	lua_getfield(L, -1, "preload");

	lua_createtable(L, 0, 9);
	lua_pushboolean(L, 1);
	lua_setfield(L, -2, "host");
	lua_pushinteger(L, id);
	lua_setfield(L, -2, "worker_id");
	lua_pushinteger(L, o->workers);
	lua_setfield(L, -2, "workers");
	lua_pushinteger(L, cpu);
	lua_setfield(L, -2, "cpu");            /* the pinned CPU, -1 when not pinned */
	lua_pushnumber(L, o->drain_timeout);
	lua_setfield(L, -2, "drain_timeout");
	lua_pushstring(L, RL_VERSION_STRING);
	lua_setfield(L, -2, "version");
	/* The numbers the host posts as RL_MSG_SIGNAL `from`, by name. */
	lua_createtable(L, 0, (int)(sizeof(sigs) / sizeof(sigs[0])));
	for (size_t i = 0; i < sizeof(sigs) / sizeof(sigs[0]); i++) {
		lua_pushinteger(L, sigs[i].signo);
		lua_setfield(L, -2, sigs[i].name);
	}
	lua_setfield(L, -2, "signals");
	/* config: only the keys given with --set, already validated by the
	 * core; the Lua API applies them to the worker it creates. */
	lua_createtable(L, 0, o->nset);
	for (int i = 0; i < o->nset; i++) {
		lua_pushnumber(L, (lua_Number)o->set_values[i]);
		lua_setfield(L, -2, o->set_keys[i]);
	}
	lua_setfield(L, -2, "config");

	lua_pushcclosure(L, hostinfo_loader, 1);
	lua_setfield(L, -2, "ringline.hostinfo");
	lua_pop(L, 2);
}

/* ---- arg, script, run ---- */

/* The script, read once by the main thread (stdin can be read only once)
 * and loaded by every worker from this copy. */
static char *script_text;
static size_t script_len;
static char script_chunkname[PATH_MAX + 2];

/* Reads the script; on failure prints why and returns -1. */
static int read_script(const char *name)
{
	FILE *f = strcmp(name, "-") == 0 ? stdin : fopen(name, "rb");
	size_t cap = 65536, n = 0;
	char *buf;

	if (!f) {
		fprintf(stderr, "%s: cannot open %s: %s\n", progname, name, strerror(errno));
		return -1;
	}
	buf = malloc(cap);
	while (buf) {
		size_t got = fread(buf + n, 1, cap - n, f);

		n += got;
		if (n < cap)
			break;
		cap *= 2;
		char *nb = realloc(buf, cap);
		if (!nb)
			free(buf);
		buf = nb;
	}
	if (!buf || ferror(f)) {
		fprintf(stderr, "%s: cannot read %s: %s\n", progname, name,
			buf ? strerror(errno) : "out of memory");
		free(buf);
		if (f != stdin)
			fclose(f);
		return -1;
	}
	if (f != stdin)
		fclose(f);
	script_text = buf;
	script_len = n;
	/* the chunk names luaL_loadfile would give, so messages read the same */
	if (f == stdin)
		snprintf(script_chunkname, sizeof(script_chunkname), "=stdin");
	else
		snprintf(script_chunkname, sizeof(script_chunkname), "@%s", name);
	return 0;
}

/* arg as luajit makes it: arg[0] the script, arg[1..] its arguments,
 * arg[-1..] the host's own argv before the script (arg[-n] the program). */
static void set_arg(lua_State *L, int argc, char **argv, int script)
{
	lua_createtable(L, argc - script - 1, script + 1);
	for (int i = 0; i < argc; i++) {
		lua_pushstring(L, argv[i]);
		lua_rawseti(L, -2, i - script);
	}
	lua_setglobal(L, "arg");
}

/* Message handler: add a traceback unless the Lua API already attached the
 * failing task's own (a traceback of the run() call alone would not show
 * where the script failed). */
static int traceback(lua_State *L)
{
	const char *msg = lua_tostring(L, 1);

	if (!msg) {
		if (luaL_callmeta(L, 1, "__tostring") && lua_isstring(L, -1))
			msg = lua_tostring(L, -1);
		else
			msg = lua_pushfstring(L, "(error object is a %s value)",
					      luaL_typename(L, 1));
	}
	if (strstr(msg, "stack traceback:"))
		lua_pushstring(L, msg);
	else
		luaL_traceback(L, L, msg, 1);
	return 1;
}

/*
 * Runs as bootstrap(chunk, ...). The script runs inside the main task under
 * xpcall, so a failure carries the traceback of the script's own coroutine
 * (the error ringline.run re-raises has lost it). Non-string error values
 * pass through untouched. The --set values go through ringline.configure
 * as the task's first act, before any I/O creates the worker.
 */
static const char bootstrap[] =
	"local chunk = ...\n"
	"local ringline = require 'ringline'\n"
	"local config = require('ringline.hostinfo').config\n"
	"local traceback = debug.traceback\n"
	"local function on_error(err)\n"
	"  if type(err) ~= 'string' or err:find('stack traceback:', 1, true) then return err end\n"
	"  return traceback(err, 2)\n"
	"end\n"
	"local function rethrow(ok, ...)\n"
	"  if not ok then error((...), 0) end\n"
	"  return ...\n"
	"end\n"
	"return ringline.run(function(...)\n"
	"  if next(config) ~= nil then ringline.configure(config) end\n"
	"  return rethrow(xpcall(chunk, on_error, ...))\n"
	"end, select(2, ...))\n";

/* "worker 3: " when there are several, so a message names the one that failed. */
static void worker_tag(char *buf, size_t len, int id)
{
	if (opts.workers > 1)
		snprintf(buf, len, "worker %d: ", id);
	else
		buf[0] = '\0';
}

static int run(lua_State *L, int id)
{
	int argc = opts.argc, script = opts.script;
	char **argv = opts.argv;
	int nargs = argc - script - 1;
	char tag[32];

	worker_tag(tag, sizeof(tag), id);
	lua_pushcfunction(L, traceback);
	if (luaL_loadbuffer(L, bootstrap, sizeof(bootstrap) - 1, "=ringline-lua") != 0) {
		fprintf(stderr, "%s: %s%s\n", progname, tag, lua_tostring(L, -1));
		return 1;
	}
	if (luaL_loadbuffer(L, script_text, script_len, script_chunkname) != 0) {
		fprintf(stderr, "%s: %s%s\n", progname, tag, lua_tostring(L, -1));
		return 1;
	}
	luaL_checkstack(L, nargs + 4, "too many arguments");
	for (int i = script + 1; i < argc; i++)
		lua_pushstring(L, argv[i]);
	if (lua_pcall(L, 1 + nargs, 0, -(nargs + 3)) != 0) {
		const char *msg = lua_tostring(L, -1);
		fprintf(stderr, "%s: %s%s\n", progname, tag, msg ? msg : "(error object)");
		return 1;
	}
	return 0;
}

/* ---- Lua state ---- */

static lua_State *new_lua(const struct options *o, int id, int cpu)
{
	lua_State *L = luaL_newstate();

	if (!L)
		return NULL;
	luaL_openlibs(L);
	set_path(L);
	preload_hostinfo(L, o, id, cpu);
	return L;
}

/* Pushes ringline.config_keys() (name -> {default, min, max, ...}) and
 * returns 1, or pushes nothing and returns 0 when the Lua API is missing. */
static int push_lua_config_keys(lua_State *L)
{
	static const char chunk[] =
		"local ok, rl = pcall(require, 'ringline')\n"
		"if ok and type(rl) == 'table' and type(rl.config_keys) == 'function' then\n"
		"  local ok2, keys = pcall(rl.config_keys)\n"
		"  if ok2 and type(keys) == 'table' then return keys end\n"
		"end\n";

	if (luaL_loadbuffer(L, chunk, sizeof(chunk) - 1, "=ringline-lua") != 0 ||
	    lua_pcall(L, 0, 1, 0) != 0) {
		lua_pop(L, 1);
		return 0;
	}
	if (!lua_istable(L, -1)) {
		lua_pop(L, 1);
		return 0;
	}
	return 1;
}

/* --set keys the core did not know: keys of the Lua API (ringline.configure
 * takes them too), checked here so a bad one is still a bad option. */
static void check_lua_keys(lua_State *L, const struct options *o)
{
	int have = -1;

	for (int i = 0; i < o->nset; i++) {
		double v = (double)o->set_values[i], min, max;

		if (!o->lua_key[i])
			continue;
		if (have < 0)
			have = push_lua_config_keys(L);
		if (have)
			lua_getfield(L, -1, o->set_keys[i]);
		if (!have || !lua_istable(L, -1)) {
			fprintf(stderr, "%s: --set %s: unknown configuration key '%s'\n",
				progname, o->set_text[i], o->set_keys[i]);
			usage_hint();
			exit(EXIT_USAGE);
		}
		lua_getfield(L, -1, "min");
		lua_getfield(L, -2, "max");
		min = lua_tonumber(L, -2);
		max = lua_tonumber(L, -1);
		lua_pop(L, 3);
		if (v < min || v > max) {
			fprintf(stderr, "%s: --set %s: %s: %.0f is out of range (%.0f..%.0f)\n",
				progname, o->set_text[i], o->set_keys[i], v, min, max);
			usage_hint();
			exit(EXIT_USAGE);
		}
	}
	if (have > 0)
		lua_pop(L, 1);
}

/* What must hold before any worker starts: the Lua keys of --set are known
 * and in range (exit 2), the script can be read and compiles (exit 1, said
 * once rather than once per worker). */
static void preflight(void)
{
	lua_State *L = new_lua(&opts, 0, -1);

	if (!L) {
		fprintf(stderr, "%s: cannot create the Lua state\n", progname);
		exit(1);
	}
	check_lua_keys(L, &opts);
	if (read_script(opts.argv[opts.script]) != 0) {
		lua_close(L);
		exit(1);
	}
	if (luaL_loadbuffer(L, script_text, script_len, script_chunkname) != 0) {
		fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
		lua_close(L);
		exit(1);
	}
	lua_close(L);
}

/* ---- log lines of the host (the format of ringline.log) ---- */

enum { LOG_ERR = 4, LOG_WARN = 5, LOG_NOTICE = 6, LOG_INFO = 7, LOG_DEBUG = 8 };

/* RINGLINE_LOG_LEVEL as ringline.log reads it: a number or a level name. */
static int log_threshold(void)
{
	static const char *names[] = { "ERR", "WARN", "NOTICE", "INFO", "DEBUG" };
	const char *env = getenv("RINGLINE_LOG_LEVEL");
	char *end;
	long v;

	if (!env || !*env)
		return LOG_INFO;
	v = strtol(env, &end, 10);
	if (!*end)
		return (int)v;
	for (int i = 0; i < 5; i++)
		if (strcasecmp(env, names[i]) == 0)
			return LOG_ERR + i;
	return LOG_INFO;
}

__attribute__((format(printf, 3, 4)))
static void host_log(int level, int id, const char *fmt, ...)
{
	static const char *names[] = { "error", "warn", "notice", "info", "debug" };
	char line[512], when[32];
	time_t now = time(NULL);
	struct tm tm;
	va_list ap;
	int n;

	if (level > log_threshold())
		return;
	strftime(when, sizeof(when), "%Y/%m/%d %H:%M:%S", localtime_r(&now, &tm));
	n = snprintf(line, sizeof(line), "%s [%s] ringline worker %d: ", when,
		     names[level - LOG_ERR], id);
	va_start(ap, fmt);
	vsnprintf(line + n, sizeof(line) - (size_t)n - 1, fmt, ap);
	va_end(ap);
	strcat(line, "\n");
	fputs(line, stderr);   /* one write: lines of workers do not mix */
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
	struct rl_worker *w;     /* registered worker, NULL before and after */
	struct pending *head, *tail;
};

static struct slot *slots;
static pthread_mutex_t reg_lock = PTHREAD_MUTEX_INITIALIZER;
static int notify_fd = -1;       /* eventfd: a worker ended, or an exit request */
static int exit_requested, exit_code;

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

	if (!slots || id < 0 || id >= opts.workers || !w)
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

	if (!slots || id < 0 || id >= opts.workers)
		return -EINVAL;
	s = &slots[id];
	pthread_mutex_lock(&reg_lock);
	if (s->w == w) {
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

	if (!slots || to < 0 || to >= opts.workers || (len && !data))
		return -EINVAL;
	pthread_mutex_lock(&reg_lock);
	rc = post_locked(&slots[to], from, kind, data, len, via);
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

/* Post to every worker still running (the main thread's stops and signals). */
static void post_all(uint32_t from, uint32_t kind, const char *text)
{
	pthread_mutex_lock(&reg_lock);
	for (int i = 0; i < opts.workers; i++)
		if (slots[i].started)
			post_locked(&slots[i], from, kind, text, text ? strlen(text) : 0, NULL);
	pthread_mutex_unlock(&reg_lock);
}

/* ---- workers ---- */

static void *worker_main(void *arg)
{
	struct slot *s = arg;
	int id = (int)(s - slots), status = 1;
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
	L = new_lua(&opts, id, s->cpu);
	if (L) {
		set_arg(L, opts.argc, opts.argv, opts.script);
		status = run(L, id);
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
	int ncpu = allowed_cpus(&set), n;
	int *order;
	const char *sysfs = getenv("RINGLINE_SYSFS_CPU");   /* tests: a fake topology */
	int pin = opts.pin;

	for (int i = 0; i < opts.workers; i++)
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
	/* more workers than CPUs: round robin over the same order */
	for (int i = 0; i < opts.workers && n > 0; i++)
		slots[i].cpu = order[i % n];
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
 * The main thread after the workers started: signals in, stops out, until
 * every worker has ended. Returns the process's exit status.
 */
static int supervise(int sfd)
{
	struct pollfd pf[2] = { { .fd = sfd, .events = POLLIN }, { .fd = notify_fd, .events = POLLIN } };
	int stopping = 0, failed = -1, ndone = 0;
	double backstop = 0;
	char reason[128];

	for (;;) {
		int tmo = -1;

		if (stopping) {
			double left = backstop - now_s();

			if (left <= 0)
				force_exit("workers did not stop within the drain timeout; exiting (status 1)");
			tmo = (int)ceil(left * 1000);
		}
		if (poll(pf, 2, tmo) < 0 && errno != EINTR) {
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
					backstop = now_s() + opts.drain_timeout + STOP_GRACE;
					snprintf(reason, sizeof(reason), "%s", signame(signo));
					post_all((uint32_t)signo, RL_MSG_SIGNAL, reason);
				} else {
					post_all((uint32_t)signo, RL_MSG_SIGNAL, signame(signo));
				}
			}
		}
		if (pf[1].revents & POLLIN) {
			uint64_t v;

			if (read(notify_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				perror("ringline-lua: eventfd read");
		}

		int exit_req;
		pthread_mutex_lock(&reg_lock);
		ndone = 0;
		for (int i = 0; i < opts.workers; i++) {
			if (!slots[i].done)
				continue;
			ndone++;
			if (slots[i].status != 0 && failed < 0)
				failed = i;
		}
		exit_req = exit_requested;
		pthread_mutex_unlock(&reg_lock);
		if (ndone == opts.workers)
			break;
		if (!stopping && (failed >= 0 || exit_req)) {
			/* from = 0: a stop that is not a signal */
			stopping = 1;
			backstop = now_s() + opts.drain_timeout + STOP_GRACE;
			if (failed >= 0)
				snprintf(reason, sizeof(reason), "worker %d failed", failed);
			else
				snprintf(reason, sizeof(reason), "ringline.exit(%d)", exit_code);
			post_all(0, RL_MSG_SIGNAL, reason);
		}
	}
	if (failed >= 0)
		return 1;
	return exit_requested ? exit_code : 0;
}

int main(int argc, char **argv)
{
	sigset_t set;
	int sfd, status;
	struct sigaction sa;

	parse_options(&opts, argc, argv);
	preflight();

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);   /* a peer reset must not kill us */
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
	/* Line-buffered even into a pipe: a server's "listening on" line must
	 * reach a supervisor or log before the first request. */
	setvbuf(stdout, NULL, _IOLBF, 0);

	slots = calloc((size_t)opts.workers, sizeof(*slots));
	if (!slots) {
		fprintf(stderr, "%s: out of memory\n", progname);
		return 1;
	}
	plan_pinning();
	for (int i = 0; i < opts.workers; i++) {
		int rc = pthread_create(&slots[i].thread, NULL, worker_main, &slots[i]);

		if (rc != 0) {
			fprintf(stderr, "%s: cannot start worker %d: %s\n", progname, i, strerror(rc));
			/* the ones started are stopped like after a failure */
			pthread_mutex_lock(&reg_lock);
			for (int j = i; j < opts.workers; j++) {
				slots[j].done = 1;
				slots[j].status = 1;
			}
			pthread_mutex_unlock(&reg_lock);
			break;
		}
		{
			char name[32];

			snprintf(name, sizeof(name), "ringline-w%d", i);
			name[15] = '\0';      /* the kernel's limit */
			pthread_setname_np(slots[i].thread, name);
		}
		pthread_mutex_lock(&reg_lock);
		slots[i].started = 1;
		pthread_mutex_unlock(&reg_lock);
	}
	status = supervise(sfd);
	for (int i = 0; i < opts.workers; i++)
		if (slots[i].started)
			pthread_join(slots[i].thread, NULL);
	fflush(stdout);
	return status;
}
