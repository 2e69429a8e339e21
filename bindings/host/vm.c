/* SPDX-License-Identifier: MIT */
/*
 * vm.c - one LuaJIT VM per worker: the module path, the preloaded
 * ringline.hostinfo, the `arg` table, the script (read once by the main
 * thread, loaded by every worker from that copy) and the bootstrap that runs
 * it as the main task of require("ringline").run - the same entry point
 * busted specs use in-process.
 */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include "host.h"

#ifndef RL_SOURCE_DIR
#define RL_SOURCE_DIR ""
#endif
/* The Lua modules' directory relative to the executable's when installed,
 * e.g. "../share/lua/5.1" (from GNUInstallDirs, set by CMake). */
#ifndef RL_REL_LUADIR
#define RL_REL_LUADIR "../share/lua/5.1"
#endif

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

static void preload_hostinfo(lua_State *L, const struct options *o, int id, int cpu, int slot,
			     int gen)
{
	static const struct { const char *name; int signo; } sigs[] = {
		{ "HUP", SIGHUP }, { "INT", SIGINT }, { "TERM", SIGTERM },
		{ "USR1", SIGUSR1 }, { "USR2", SIGUSR2 },
	};

	lua_getglobal(L, "package");
	lua_getfield(L, -1, "preload");

	lua_createtable(L, 0, 10);
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
	lua_pushstring(L, o->accept_acceptor ? "acceptor" : "reuseport");
	lua_setfield(L, -2, "accept");
	lua_pushstring(L, RL_VERSION_STRING);
	lua_setfield(L, -2, "version");
	/* the host's slot of this worker (rl_host_post/register take slots:
	 * a reload's generation runs in the other half) and its generation */
	lua_pushinteger(L, slot);
	lua_setfield(L, -2, "slot");
	lua_pushinteger(L, slot - id);
	lua_setfield(L, -2, "slot_base");
	lua_pushinteger(L, gen);
	lua_setfield(L, -2, "generation");
	lua_pushinteger(L, 0x10000);   /* RETIRE_FROM (workers.c) */
	lua_setfield(L, -2, "retire");
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
		if (n > SCRIPT_MAX) {
			/* read one byte past the cap at most: stdin may never end */
			fprintf(stderr, "%s: %s: script too large (more than %u bytes; the limit is "
				"%u MiB)\n", progname, name, SCRIPT_MAX, SCRIPT_MAX >> 20);
			free(buf);
			if (f != stdin)
				fclose(f);
			return -1;
		}
		cap = cap * 2 > SCRIPT_MAX + 1 ? SCRIPT_MAX + 1 : cap * 2;
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
	/* Precompiled bytecode skips the parser's checks and LuaJIT does not
	 * verify it: a crafted file can corrupt the VM. Only on request. */
	if (n > 0 && buf[0] == LUA_SIGNATURE[0] && !opts.allow_bytecode) {
		fprintf(stderr, "%s: %s: precompiled bytecode refused (run it with "
			"--allow-bytecode, or give the source)\n", progname, name);
		free(buf);
		return -1;
	}
	script_text = buf;
	script_len = n;
	/* the chunk names luaL_loadfile would give, so messages read the same */
	if (f == stdin)
		snprintf(script_chunkname, sizeof(script_chunkname), "=stdin");
	else
		snprintf(script_chunkname, sizeof(script_chunkname), "@%s", name);
	return 0;
}

/* The script as a chunk on L's stack (or its error): text only, unless
 * --allow-bytecode (read_script refused bytecode already; the mode makes
 * the loader hold to it too). */
static int load_script(lua_State *L)
{
	return luaL_loadbufferx(L, script_text, script_len, script_chunkname,
				opts.allow_bytecode ? "bt" : "t");
}

/* arg as luajit makes it: arg[0] the script, arg[1..] its arguments,
 * arg[-1..] the host's own argv before the script (arg[-n] the program). */
static void set_arg(lua_State *L, int argc, char **argv, int script)
{
	lua_createtable(L, script < argc ? argc - script - 1 : 0, script + 1);
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
	"if type(chunk) == 'table' then\n"   /* -e chunks, then the script (or not) */
	"  local chunks = chunk\n"
	"  chunk = function(...)\n"
	"    for i = 1, chunks.n - 1 do chunks[i]() end\n"
	"    return chunks[chunks.n](...)\n"
	"  end\n"
	"end\n"
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

/* Loads the -e chunks (as "(command line)", lua's name for them) and the
 * script, if any; pushes one function, or with -e a table {n = count, ...}
 * of them in order; or pushes the message and returns -1. */
static int load_chunks(lua_State *L)
{
	int has_script = opts.script < opts.argc;

	if (!opts.nexec)
		return load_script(L) ? -1 : 0;
	lua_createtable(L, opts.nexec + 1, 1);
	for (int i = 0; i < opts.nexec; i++) {
		if (luaL_loadbufferx(L, opts.exec[i], strlen(opts.exec[i]), "=(command line)",
				     opts.allow_bytecode ? "bt" : "t")) {
			lua_remove(L, -2);
			return -1;
		}
		lua_rawseti(L, -2, i + 1);
	}
	if (has_script) {
		if (load_script(L)) {
			lua_remove(L, -2);
			return -1;
		}
		lua_rawseti(L, -2, opts.nexec + 1);
	}
	lua_pushinteger(L, opts.nexec + has_script);
	lua_setfield(L, -2, "n");
	return 0;
}

int host_run_script(lua_State *L, int id)
{
	int argc = opts.argc, script = opts.script;
	char **argv = opts.argv;
	int nargs = script < argc ? argc - script - 1 : 0;
	char tag[32];

	worker_tag(tag, sizeof(tag), id);
	set_arg(L, argc, argv, script);
	lua_pushcfunction(L, traceback);
	if (luaL_loadbuffer(L, bootstrap, sizeof(bootstrap) - 1, "=ringline-lua") != 0) {
		fprintf(stderr, "%s: %s%s\n", progname, tag, lua_tostring(L, -1));
		return 1;
	}
	if (load_chunks(L) != 0) {
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

/*
 * print as luajit's (tostring of each argument, tabs between, a newline),
 * but the whole line goes out in one fwrite. The standard print writes each
 * piece with its own call, and stdio locks per call, so the lines of
 * workers printing at the same moment would mix mid-line.
 */
static int host_print(lua_State *L)
{
	int n = lua_gettop(L);
	luaL_Buffer b;
	size_t len;
	const char *line;

	luaL_buffinit(L, &b);
	for (int i = 1; i <= n; i++) {
		lua_getglobal(L, "tostring");
		lua_pushvalue(L, i);
		lua_call(L, 1, 1);
		if (!lua_isstring(L, -1))
			return luaL_error(L, "'tostring' must return a string to 'print'");
		if (i > 1)
			luaL_addchar(&b, '\t');
		luaL_addvalue(&b);
	}
	luaL_addchar(&b, '\n');
	luaL_pushresult(&b);
	line = lua_tolstring(L, -1, &len);
	fwrite(line, 1, len, stdout);
	return 0;
}

/* --lua-alloc malloc: the Lua heap on the C allocator rather than
 * LuaJIT's own. LuaJIT's keeps a segment as long as one live object is in
 * it, so after a burst of connections (their coroutines and tables
 * collected) the process keeps their pages; on malloc the worker's trim
 * (rl_worker_trim, malloc_trim) gives them back. The price: an object
 * costs more to allocate and free (bench/http_lua_cost.lua: about 125 ns of
 * Lua per hello request on LuaJIT's allocator, 195 on malloc), so it is
 * not the default. */
static void *host_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	(void)ud;
	(void)osize;
	if (nsize == 0) {
		free(ptr);
		return NULL;
	}
	return realloc(ptr, nsize);
}

/* An error outside any protected call (luaL_newstate's panic does the same). */
static int host_panic(lua_State *L)
{
	const char *m = lua_tostring(L, -1);
	fprintf(stderr, "ringline-lua: PANIC: unprotected error in call to Lua API (%s)\n",
		m ? m : "?");
	return 0;
}

lua_State *host_new_lua_slot(const struct options *o, int id, int cpu, int slot, int gen)
{
	lua_State *L;
#if defined(__SANITIZE_ADDRESS__)
	/* Under AddressSanitizer LuaJIT keeps its own (mmap) allocator: a Lua
	 * heap on malloc, alive at exit (os.exit from a worker), reads as
	 * leaks to LeakSanitizer, which cannot follow GC64's tagged values. */
	L = luaL_newstate();
	(void)host_alloc;
	(void)host_panic;
#else
	if (o->lua_malloc) {
		L = lua_newstate(host_alloc, NULL);
		if (L)
			lua_atpanic(L, host_panic);
	} else {
		L = luaL_newstate();
	}
#endif

	if (!L)
		return NULL;
	luaL_openlibs(L);
	lua_register(L, "print", host_print);
	set_path(L);
	preload_hostinfo(L, o, id, cpu, slot, gen);
	return L;
}

lua_State *host_new_lua(const struct options *o, int id, int cpu)
{
	return host_new_lua_slot(o, id, cpu, id, 1);
}

/* A reload: the script read again from disk and compiled here, so a file
 * that does not load never reaches a worker. On success the new text
 * replaces the old (every worker that used it compiled it long ago: a
 * reload starts only after the previous one's workers were all up or
 * ended). A script read from stdin is run again as it was. Returns 0, or
 * -1 with why in `why`. */
int host_reload_script(char *why, size_t len)
{
	char *old_text = script_text;
	size_t old_len = script_len;
	char old_name[sizeof(script_chunkname)];
	lua_State *L;
	int rc = 0;

	if (opts.script < opts.argc && strcmp(opts.argv[opts.script], "-") != 0) {
		memcpy(old_name, script_chunkname, sizeof(old_name));
		script_text = NULL;
		if (read_script(opts.argv[opts.script]) != 0) {
			snprintf(why, len, "cannot read %s (the message is above)",
				 opts.argv[opts.script]);
			script_text = old_text;
			script_len = old_len;
			memcpy(script_chunkname, old_name, sizeof(old_name));
			return -1;
		}
	}
	L = luaL_newstate();
	if (!L) {
		snprintf(why, len, "cannot create a Lua state");
		rc = -1;
	} else {
		if (load_chunks(L) != 0) {
			snprintf(why, len, "%s", lua_tostring(L, -1));
			rc = -1;
		}
		lua_close(L);
	}
	if (script_text != old_text) {
		if (rc < 0) {
			free(script_text);
			script_text = old_text;
			script_len = old_len;
			memcpy(script_chunkname, old_name, sizeof(old_name));
		} else {
			free(old_text);
		}
	}
	return rc;
}

/* Pushes ringline.config_keys() (name -> {default, min, max, ...}) and
 * returns 1, or pushes nothing and returns 0 when the Lua API is missing. */
int host_push_lua_config_keys(lua_State *L)
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

static int cmp_name(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every key --set takes, sorted, on stderr after "valid: ": the core's and,
 * when the table of ringline.config_keys() is at the top of L, the Lua
 * API's. An unknown key's message lists them, as ringline.configure does. */
static void print_valid_keys(lua_State *L, int have)
{
	int n = 0;
	const struct rl_config_key *keys = rl_config_keys(&n);
	const char *names[256];
	int count = 0;

	for (int i = 0; i < n && count < 256; i++)
		names[count++] = keys[i].name;
	if (have) {
		lua_pushnil(L);
		while (lua_next(L, -2)) {
			const char *name = lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : NULL;
			int dup = 0;

			for (int i = 0; i < n && name; i++)
				dup |= strcmp(keys[i].name, name) == 0;
			/* the strings stay alive: the table holds them */
			if (name && !dup && count < 256)
				names[count++] = name;
			lua_pop(L, 1);
		}
	}
	qsort(names, (size_t)count, sizeof(names[0]), cmp_name);
	fputs("valid: ", stderr);
	for (int i = 0; i < count; i++)
		fprintf(stderr, "%s%s", i ? ", " : "", names[i]);
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
			have = host_push_lua_config_keys(L);
		if (have)
			lua_getfield(L, -1, o->set_keys[i]);
		if (!have || !lua_istable(L, -1)) {
			if (have)
				lua_pop(L, 1);
			fprintf(stderr, "%s: --set %s: unknown configuration key '%s' (",
				progname, o->set_text[i], o->set_keys[i]);
			print_valid_keys(L, have);
			fputs(")\n", stderr);
			host_usage_hint();
			lua_close(L); /* its heap is on malloc: a leak checker sees it */
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
			host_usage_hint();
			lua_close(L);
			exit(EXIT_USAGE);
		}
	}
	if (have > 0)
		lua_pop(L, 1);
}

/* What must hold before any worker starts: the Lua keys of --set are known
 * and in range (exit 2), the script can be read and compiles (exit 1, said
 * once rather than once per worker). */
void host_preflight(void)
{
	lua_State *L = host_new_lua(&opts, 0, -1);

	if (!L) {
		fprintf(stderr, "%s: cannot create the Lua state\n", progname);
		exit(1);
	}
	check_lua_keys(L, &opts);
	if (opts.script < opts.argc && read_script(opts.argv[opts.script]) != 0) {
		lua_close(L);
		exit(1);
	}
	if (load_chunks(L) != 0) {
		fprintf(stderr, "%s: %s\n", progname, lua_tostring(L, -1));
		lua_close(L);
		exit(1);
	}
	lua_close(L);
}

