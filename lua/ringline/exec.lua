-- ringline.exec: child processes without blocking the worker.
--
--   local p = assert(ringline.exec({ "sort", "-u" }, { stdin = "pipe" }))
--   p.stdin:send("b\na\nb\n"); p.stdin:close()
--   local out = p.stdout:receive("*a")
--   local ok, how, code = p:wait()          -- as os.execute: true, "exit", 0
--
-- The core starts the program (rl_proc_spawn: posix_spawn, signals at their
-- defaults, an empty mask), holds a pidfd and keeps a wait armed in the
-- ring, so the child is reaped the moment it exits, whether or not anybody
-- waits: RL_EV_EXIT (data = our token) records the status here and wakes the
-- waiters. Its streams are socketpairs whose parent ends are adopted as
-- ordinary connections (rl_conn_adopt): p.stdout is a ringline.conn, with
-- receive patterns, receiveany, timeouts and the receive window as
-- backpressure (a child flooding its output while nobody reads blocks in
-- write: memory stays bounded by the socket buffer plus recv_window).
--
-- Ownership. The process belongs to the task that started it, like a
-- connection: when that task ends (returns, raises or is canceled) a
-- process still running is killed with SIGKILL and its streams are closed;
-- the armed wait reaps it. A task hands a process on by returning it. The
-- end of a run kills and reaps what is left before the worker is destroyed.
local ffi = require "ffi"
local bit = require "bit"
local C = require "ringline.lib"
local sched = require "ringline.sched"
local conn = require "ringline.conn"
local errors = require "ringline.errors"
local check = require "ringline.check"
local log = require "ringline.log"

local type, tostring, error, pairs, setmetatable = type, tostring, error, pairs, setmetatable
local band, rshift = bit.band, bit.rshift
local concat = table.concat
local errstr = errors.errstr
local wake = sched.wake
local wait_begin, wait_park, wait_end = sched.wait_begin, sched.wait_park, sched.wait_end
local timer_arm, timer_disarm = sched.timer_arm, sched.timer_disarm

local _ = C.rl_proc_spawn, C.rl_proc_kill, C.rl_conn_adopt, C.rl_connect_cancel -- resolved at load

local U32MAX = 0xffffffff
local SIGKILL, SIGTERM = 9, 15
local RESET = C.RL_CLOSE_RESET

local M = {}

local VALID = {
  cwd = true,      -- the child's working directory
  env = true,      -- { NAME = "value", ... }: the child's whole environment
  stdin = true,    -- "null" (default), "pipe", "inherit", or a string fed to it
  stdout = true,   -- "pipe" (default), "null", "inherit"
  stderr = true,   -- "inherit" (default), "pipe", "stdout", "null"
  timeout = true,  -- ms: killed (SIGKILL) if still running then
}
M.VALID = VALID
local CAPTURE_VALID = {}
for k, v in pairs(VALID) do CAPTURE_VALID[k] = v end
CAPTURE_VALID.max_output = true  -- bytes of stdout kept (default 16 MiB)
CAPTURE_VALID.stdout = "exec_capture always reads stdout"
M.CAPTURE_VALID = CAPTURE_VALID

local MODES = {
  stdin = { null = C.RL_PROC_NULL, pipe = C.RL_PROC_PIPE, inherit = C.RL_PROC_INHERIT },
  stdout = { null = C.RL_PROC_NULL, pipe = C.RL_PROC_PIPE, inherit = C.RL_PROC_INHERIT },
  stderr = { null = C.RL_PROC_NULL, pipe = C.RL_PROC_PIPE, inherit = C.RL_PROC_INHERIT,
             stdout = C.RL_PROC_STDOUT },
}
local DEFAULT = { stdin = "null", stdout = "pipe", stderr = "inherit" }

M.DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024

local function misuse(msg)
  error("ringline: " .. msg, errors.caller_level())
end

------------------------------------------------------------------------
-- The process object
------------------------------------------------------------------------

local Proc = {}
local mt = {
  __index = Proc,
  __name = "ringline.process",
  __tostring = function(p) return ("ringline.process(%d)"):format(p.pidn) end,
}
M.mt = mt

-- os.execute's three results from a wait status (or -errno: the wait
-- itself failed, which the core reports only if someone else reaped it).
local function results(st)
  if st < 0 then return nil, errstr(st) end
  local sig = band(st, 0x7f)
  if sig ~= 0 then return nil, "signal", sig end
  local code = band(rshift(st, 8), 0xff)
  if code == 0 then return true, "exit", 0 end
  return nil, "exit", code
end
M.results = results

local function exited(p) return p.status ~= false end

-- RL_EV_EXIT: the process ended and the core reaped it.
local function on_exit(S, ev)
  local procs = S.procs
  local p = procs and procs[ev.data]
  if not p then return end
  procs[ev.data] = nil
  p.status = ev.res
  if p.timer_id then timer_disarm(S, p) end
  local ws = p.waiters
  if ws then
    p.waiters = false
    for i = 1, #ws do wake(S, ws[i], nil) end
  end
end

-- Its opts.timeout: sched's timer dispatch calls fire() on a handle that
-- has one (as ringline.timer's do).
function Proc.fire(S, p)
  if p.status == false then
    p.timed_out = true
    C.rl_proc_kill(S.w, p.id, p.gen, SIGKILL)
  end
end

function Proc.pid(p) return p.pidn end

-- true once opts.timeout killed it.
function Proc.timedout(p) return p.timed_out end

-- wait([timeout]): true, "exit", 0 / nil, "exit", code / nil, "signal", n;
-- nil, "timeout" when timeout seconds passed first (it still runs).
function Proc.wait(p, timeout)
  timeout = check.seconds(timeout, "process:wait")
  if p.status ~= false then return results(p.status) end
  local S = p.S
  local t = sched.current(S, "process:wait")
  local ok, err = wait_begin(S, t, timeout)
  if not ok then return nil, err end
  local ws = p.waiters
  if not ws then ws = {}; p.waiters = ws end
  ws[#ws + 1] = t
  local why = wait_park(S, t, exited, p)
  wait_end(S, t)
  if why then
    ws = p.waiters
    if ws then
      for i = #ws, 1, -1 do if ws[i] == t then table.remove(ws, i) break end end
    end
    return nil, why
  end
  return results(p.status)
end

-- kill([sig]): SIGTERM by default; a number or "TERM", "KILL", "INT", ...
local SIGNALS = { HUP = 1, INT = 2, QUIT = 3, KILL = 9, USR1 = 10, USR2 = 12, PIPE = 13,
                  ALRM = 14, TERM = 15, CONT = 18, STOP = 19 }
function Proc.kill(p, sig)
  if sig == nil then sig = SIGTERM end
  if type(sig) == "string" then
    local n = SIGNALS[sig:upper():gsub("^SIG", "")]
    if not n then misuse("process:kill: unknown signal " .. sig) end
    sig = n
  elseif type(sig) ~= "number" or sig < 0 or sig > 64 or sig % 1 ~= 0 then
    misuse("process:kill: bad signal " .. tostring(sig))
  end
  if p.status ~= false then return nil, "exited" end
  local rc = C.rl_proc_kill(p.S.w, p.id, p.gen, sig)
  if rc < 0 then return nil, rc == -errors.ESRCH and "exited" or errstr(rc) end
  return true
end

-- close([how]): kill it (SIGKILL) if it still runs and close its streams;
-- the owning task's end calls it. The core reaps it when it has died.
function Proc.close(p)
  if p.closed then return nil, "closed" end
  p.closed = true
  local S = p.S
  if p.status == false and S.w then C.rl_proc_kill(S.w, p.id, p.gen, SIGKILL) end
  for _, k in pairs { "stdin", "stdout", "stderr" } do
    local c = p[k]
    if c and not c.closed then c:close() end
  end
  local o = p.owner
  if o then
    p.owner = false
    local owned = o.owned
    if owned then owned[p] = nil end
  end
  return true
end

------------------------------------------------------------------------
-- exec
------------------------------------------------------------------------

local function next_token(S, field)
  local tok = (S[field] or 0) + 1
  if tok > U32MAX then tok = 1 end
  S[field] = tok
  return tok
end

local function all_adopted(recs)
  for i = 1, 3 do
    local r = recs[i]
    if r and r.cres == nil then return false end
  end
  return true
end

-- Adopt the caller's ends of the child's pipes (info.fds) as connections:
-- all three are handed to the core at once (which owns them from then on),
-- then the task waits for every RL_EV_CONNECTED. On a cancel or a failure
-- nothing is left: pending adoptions are canceled, finished ones closed.
local function adopt_streams(S, t, w, info)
  local recs = {}
  local err
  for i = 1, 3 do
    local fd = info.fds[i - 1]
    if fd >= 0 then
      local tok = S.ctok + 1
      if tok > U32MAX then tok = 1 end
      S.ctok = tok
      local r = { adopter = t, tok = tok, cres = nil, cslot = 0, cgen = 0 }
      recs[i] = r
      local rc = C.rl_conn_adopt(w, fd, tok)
      if rc < 0 then r.cres = rc else S.connecting[tok] = r end
    end
  end
  local why = nil
  if not all_adopted(recs) then why = wait_park(S, t, all_adopted, recs) end
  local conns = {}
  for i = 1, 3 do
    local r = recs[i]
    if r then
      if r.cres == nil then
        S.connecting[r.tok] = nil
        C.rl_connect_cancel(w, r.tok)   -- its RL_EV_CONNECTED finds no waiter
      elseif r.cres < 0 then
        err = err or errstr(r.cres)
      else
        conns[i] = conn.new(S, r.cslot, r.cgen)
      end
    end
  end
  err = why or err
  if err then
    for i = 1, 3 do if conns[i] then conns[i]:close("reset") end end
    return nil, err
  end
  return conns
end

local function check_argv(argv, what)
  if type(argv) ~= "table" or type(argv[1]) ~= "string" or argv[1] == "" then
    misuse(what .. ": argv must be a table of strings, the program first")
  end
  local n = #argv
  for i = 1, n do
    if type(argv[i]) ~= "string" then
      misuse(what .. ": argv[" .. i .. "] must be a string")
    end
    if argv[i]:find("\0", 1, true) then misuse(what .. ": argv[" .. i .. "] holds a NUL byte") end
  end
  return n
end

-- A NULL-terminated char *[] of the strings (kept alive by the caller
-- holding the returned anchor table until the spawn returned).
local function cstrings(list, n)
  local arr = ffi.new("const char *[?]", n + 1)
  for i = 1, n do arr[i - 1] = list[i] end
  arr[n] = nil
  return arr
end

local function env_array(env, what)
  if type(env) ~= "table" then misuse(what .. ": opts.env must be a table of NAME = value") end
  local list = {}
  for k, v in pairs(env) do
    if type(k) ~= "string" or k == "" or k:find("[=%z]") then
      misuse(what .. ": opts.env: bad name " .. tostring(k))
    end
    if type(v) == "number" then v = tostring(v) end
    if type(v) ~= "string" or v:find("\0", 1, true) then
      misuse(what .. ": opts.env." .. k .. " must be a string")
    end
    list[#list + 1] = k .. "=" .. v
  end
  table.sort(list)
  return list
end

local function stream_mode(opts, name, what)
  local v = opts and opts[name]
  if v == nil then v = DEFAULT[name] end
  if type(v) ~= "string" then misuse(what .. ": opts." .. name .. " must be a string") end
  local mode = MODES[name][v]
  if mode then return mode, nil end
  if name == "stdin" then return C.RL_PROC_PIPE, v end  -- the bytes to feed it
  local valid = {}
  for k in pairs(MODES[name]) do valid[#valid + 1] = '"' .. k .. '"' end
  table.sort(valid)
  misuse(what .. ": opts." .. name .. " must be one of " .. concat(valid, ", "))
end

-- exec(S, argv, opts, what, valid) -> p, or nil and an error: "<program>:
-- No such file or directory", ...
local function exec(S, argv, opts, what, valid)
  local n = check_argv(argv, what)
  check.options(opts, valid or VALID, what)
  local cwd = opts and opts.cwd
  if cwd ~= nil and (type(cwd) ~= "string" or cwd == "") then misuse(what .. ": opts.cwd must be a path") end
  local ms = opts and opts.timeout
  check.milliseconds(ms, what .. ": opts.timeout")
  local in_mode, feed = stream_mode(opts, "stdin", what)
  local out_mode = stream_mode(opts, "stdout", what)
  local err_mode = stream_mode(opts, "stderr", what)
  local envl = opts and opts.env ~= nil and env_array(opts.env, what)
  local t = sched.current(S, what)
  local w = sched.start(S)
  local cargv = cstrings(argv, n)
  local cenv = envl and cstrings(envl, #envl) or nil
  local info = ffi.new("struct rl_proc_info")
  local tok = next_token(S, "ptok")
  local stdio = in_mode * 2 ^ C.RL_PROC_STDIN_SHIFT + out_mode * 2 ^ C.RL_PROC_STDOUT_SHIFT
    + err_mode * 2 ^ C.RL_PROC_STDERR_SHIFT
  local rc = C.rl_proc_spawn(w, cargv, cenv, cwd, stdio, tok, info)
  local _ = argv, envl -- the strings stay alive up to here
  if rc < 0 then
    if rc == -errors.ENOENT then
      return nil, argv[1] .. ": " .. (cwd and "no such program or directory" or "no such program")
    end
    return nil, argv[1] .. ": " .. errstr(rc)
  end
  local p = setmetatable({
    S = S, id = info.id, gen = info.gen, pidn = info.pid, token = tok,
    status = false, waiters = false, timed_out = false, closed = false,
    owner = false, heir_of = false,
    stdin = false, stdout = false, stderr = false,
  }, mt)
  local procs = S.procs
  if not procs then procs = {}; S.procs = procs end
  procs[tok] = p
  sched.own(t, p)
  if ms and ms > 0 then
    local ok, terr = timer_arm(S, p, ms / 1000, false)
    if not ok then
      p:close()
      return nil, terr
    end
  end
  local conns, err = adopt_streams(S, t, w, info)
  if not conns then
    p:close()
    return nil, err
  end
  p.stdin, p.stdout, p.stderr = conns[1] or false, conns[2] or false, conns[3] or false
  if feed then
    -- queued whole (copied) and closed behind it: the child reads it at
    -- its own pace and sees EOF after; nothing here waits on it
    local c = p.stdin
    p.stdin = false
    if #feed > 0 then C.rl_conn_send(w, c.slot, c.gen, feed, #feed) end
    c:close()
  end
  return p
end

function M.exec(S, argv, opts)
  return exec(S, argv, opts, "ringline.exec")
end

-- exec_capture: run to the end; out, ok, how, code (out is stdout whole,
-- at most opts.max_output bytes: more kills the process and returns nil,
-- "output too large").
function M.exec_capture(S, argv, opts)
  local max = opts and opts.max_output
  if max ~= nil and (type(max) ~= "number" or max < 0 or max % 1 ~= 0) then
    misuse("ringline.exec_capture: opts.max_output must be a byte count")
  end
  max = max or M.DEFAULT_MAX_OUTPUT
  if opts and opts.stdin == "pipe" then
    misuse("ringline.exec_capture: opts.stdin = \"pipe\" would never end (give the bytes instead)")
  end
  local o = { stdout = "pipe" }
  if opts then for k, v in pairs(opts) do if k ~= "max_output" then o[k] = v end end end
  check.options(opts, CAPTURE_VALID, "ringline.exec_capture")
  local p, err = exec(S, argv, o, "ringline.exec_capture", VALID)
  if not p then return nil, err end
  local out = p.stdout
  out:settimeout(0)   -- the process's own timeout bounds it, not read_timeout
  local parts, total = {}, 0
  while true do
    local data, e = out:receiveany(65536)
    if not data then
      if e ~= "closed" then p:close(); return nil, e end
      break
    end
    total = total + #data
    if total > max then
      p:close()
      p:wait()
      return nil, "output too large"
    end
    parts[#parts + 1] = data
  end
  local ok, how, code = p:wait()
  p:close()
  if how == nil then return nil, ok end
  return concat(parts), ok, how, code
end

------------------------------------------------------------------------
-- os.execute and io.popen inside a worker
------------------------------------------------------------------------

local warned = {}
local function blocking(name, fn)
  return function(...)
    if sched.state() and not warned[name] then
      warned[name] = true
      log.log(log.WARN, name, " blocks the whole worker until the command ends: ",
        "use ringline.exec or ringline.exec_capture")
    end
    return fn(...)
  end
end
M.warned = warned

-- The run's end (ringline.sched's drain): kill what is left, so the
-- drain's wait for an idle worker reaps them.
local function drain(S)
  local procs = S.procs
  if not procs then return end
  for _, p in pairs(procs) do
    if not p.closed then p:close() end
  end
end

function M.attach(sched_)
  sched_.on_event(C.RL_EV_EXIT, on_exit)
  sched_.on_drain(drain)
  if not warned.installed then
    warned.installed = true
    os.execute = blocking("os.execute", os.execute)
    io.popen = blocking("io.popen", io.popen)
  end
end

return M
