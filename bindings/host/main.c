/* SPDX-License-Identifier: MIT */
/*
 * ringline-lua: the host executable.
 *
 *     ringline-lua [options] script.lua [args...]
 *
 * It embeds LuaJIT and runs the script as the main task of one worker:
 * the script is loaded as a chunk and handed to the Lua API's own entry
 * point, require("ringline").run(chunk, ...), the same code busted specs use
 * in-process. The host adds only what a process needs around it: options,
 * the module path, the `arg` table, exit status and signals.
 *
 * libringline is linked in whole and its symbols are exported from the
 * executable (see bindings/CMakeLists.txt), so the Lua side reaches the core
 * through ffi.C. The preloaded module "ringline.hostinfo" tells ringline.lib
 * it is inside the host, and tells the Lua API the worker's id, the worker
 * count and the configuration given with --set.
 *
 * Exit status: 0 clean run, 1 the script failed to load or raised, 2 bad
 * options.
 */
#include <errno.h>
#include <limits.h>
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
#include <lualib.h>

#include "ringline.h"

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

static const char *progname = "ringline-lua";

struct options {
	int workers;
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
};

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

static lua_State *new_lua(const struct options *o);
static int push_lua_config_keys(lua_State *L);

/* Keys the Lua API adds to the core's (e.g. line_max), from
 * ringline.config_keys(); nothing when the Lua API cannot be loaded. */
static void print_lua_keys(const struct options *o,
			   const struct rl_config_key *keys, int n)
{
	lua_State *L = new_lua(o);

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

	printf("Usage: %s [options] script.lua [args...]\n"
	       "Run script.lua as the main task of a ringline worker (io_uring + LuaJIT).\n"
	       "Inside the script, `arg` and `...` hold the arguments, as with luajit.\n"
	       "\n"
	       "Options:\n"
	       "  -h, --help           show this help and exit\n"
	       "  -v, --version        show versions and exit\n"
	       "  -w N|auto            worker threads (default 1; auto = one per CPU);\n"
	       "                       only 1 is supported so far\n"
	       "  --set key=value      set a configuration key (see below); k/m/g suffixes\n"
	       "                       multiply by 1024, 1024^2, 1024^3\n"
	       "  --                   end of options; the next argument is the script\n"
	       "  script.lua           the script ('-' reads it from stdin)\n"
	       "\n"
	       "Configuration keys (--set key=value):\n",
	       progname);
	for (int i = 0; i < n; i++) {
		printf("  %-20s default %-8u range %u..%u%s\n", keys[i].name,
		       keys[i].def, keys[i].min, keys[i].max,
		       keys[i].pow2 ? ", power of two" : "");
		if (keys[i].doc && keys[i].doc[0])
			printf("  %-20s %s\n", "", keys[i].doc);
	}
	print_lua_keys(o, keys, n);
	printf("\n"
	       "Exit status: 0 after a clean run, 1 when the script fails to load or\n"
	       "raises (message and traceback on stderr), 2 for bad options.\n"
	       "SIGINT and SIGTERM end the process with status 0.\n");
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
		n = sysconf(_SC_NPROCESSORS_ONLN);
		if (n < 1)
			n = 1;
	} else {
		errno = 0;
		n = strtol(v, &end, 10);
		if (errno || end == v || *end || n < 1 || n > MAX_WORKERS)
			bad_option("-w: expected a worker count 1..%d or 'auto', got '%s'",
				   MAX_WORKERS, v);
	}
	if (n > 1) {
		/* Parsed and validated now so scripts and wrappers can already
		 * pass it; one VM per worker thread comes with a later change. */
		fprintf(stderr, "%s: -w %s: %ld workers requested, but multiple "
			"workers are not yet supported (use -w 1)\n",
			progname, v, n);
		usage_hint();
		exit(EXIT_USAGE);
	}
	o->workers = (int)n;
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
			snprintf(msg, sizeof(msg), "%s", rc == -ENOENT ?
				 "unknown key" : "value out of range");
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

static void parse_options(struct options *o, int argc, char **argv)
{
	int i;

	o->workers = 1;
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
		if (strcmp(a, "-w") == 0 || strcmp(a, "--workers") == 0) {
			if (i + 1 >= argc)
				bad_option("option '%s' needs a value (N or auto)", a);
			parse_workers(o, argv[++i]);
		} else if (a[1] == 'w' && a[2] != '\0') {
			parse_workers(o, a + 2);          /* -w4, -wauto */
		} else if (strncmp(a, "--workers=", 10) == 0) {
			parse_workers(o, a + 10);
		} else if (strcmp(a, "--set") == 0) {
			if (i + 1 >= argc)
				bad_option("option '%s' needs key=value", a);
			parse_set(o, argv[++i]);
		} else if (strncmp(a, "--set=", 6) == 0) {
			parse_set(o, a + 6);
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

static void preload_hostinfo(lua_State *L, const struct options *o)
{
	lua_getglobal(L, "package");
	lua_getfield(L, -1, "preload");

	lua_createtable(L, 0, 6);
	lua_pushboolean(L, 1);
	lua_setfield(L, -2, "host");
	lua_pushinteger(L, 0);
	lua_setfield(L, -2, "worker_id");
	lua_pushinteger(L, o->workers);
	lua_setfield(L, -2, "workers");
	lua_pushstring(L, RL_VERSION_STRING);
	lua_setfield(L, -2, "version");
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

static int run(lua_State *L, int argc, char **argv, int script)
{
	const char *name = argv[script];
	int nargs = argc - script - 1;
	int rc;

	lua_pushcfunction(L, traceback);
	if (luaL_loadbuffer(L, bootstrap, sizeof(bootstrap) - 1, "=ringline-lua") != 0) {
		fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
		return 1;
	}
	rc = luaL_loadfile(L, strcmp(name, "-") == 0 ? NULL : name);
	if (rc != 0) {
		fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
		return 1;
	}
	luaL_checkstack(L, nargs + 4, "too many arguments");
	for (int i = script + 1; i < argc; i++)
		lua_pushstring(L, argv[i]);
	if (lua_pcall(L, 1 + nargs, 0, -(nargs + 3)) != 0) {
		const char *msg = lua_tostring(L, -1);
		fprintf(stderr, "%s: %s\n", progname, msg ? msg : "(error object)");
		return 1;
	}
	return 0;
}

/* ---- signals ---- */

/*
 * For now SIGINT/SIGTERM end the process at once with status 0, the way
 * SIG_DFL would but with a clean status for supervisors and the bench
 * harness. Only _exit() runs in the handler (async-signal-safe; no stdio,
 * no Lua): the kernel tears down the ring and sockets, and stdout is line
 * buffered, so at most a partial line is lost. The graceful drain of the
 * design (stop accepting, flush, deadline) replaces this with a signalfd
 * read through the ring in a later change.
 */
static void on_stop_signal(int sig)
{
	(void)sig;
	_exit(0);
}

static void set_signals(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigaction(SIGPIPE, &sa, NULL);   /* a peer reset must not kill us */
	sa.sa_handler = on_stop_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
}

/* ---- Lua state ---- */

static lua_State *new_lua(const struct options *o)
{
	lua_State *L = luaL_newstate();

	if (!L)
		return NULL;
	luaL_openlibs(L);
	set_path(L);
	preload_hostinfo(L, o);
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

int main(int argc, char **argv)
{
	static struct options o;
	lua_State *L;
	int status;

	parse_options(&o, argc, argv);
	set_signals();
	/* Line-buffered even into a pipe: a server's "listening on" line must
	 * reach a supervisor or log before the first request. */
	setvbuf(stdout, NULL, _IOLBF, 0);

	L = new_lua(&o);
	if (!L) {
		fprintf(stderr, "%s: cannot create the Lua state\n", progname);
		return 1;
	}
	check_lua_keys(L, &o);
	set_arg(L, argc, argv, o.script);
	status = run(L, argc, argv, o.script);
	lua_close(L);
	fflush(stdout);
	return status;
}
