-- ringline.worker: the process around one worker - its place among the
-- host's workers, messages between workers, signals, the graceful stop and
-- ringline.exit.
--
-- Workers
-- -------
-- The host (bindings/host/main.c) runs the script once per worker thread,
-- each in its own VM with its own ringline.run; nothing Lua-side is shared.
-- When this worker's C worker is created (the started hook) it is
-- registered with the host under its id, and unregistered before it is
-- destroyed, so the host and the other workers can post into its inbox by
-- id (rl_host_post, under the registry's lock). Outside the host (plain
-- LuaJIT, busted) there is one worker, id 0, and posts go straight into its
-- own inbox, so the same code runs in specs.
--
-- Messages: worker.post(id, s) copies s into worker id's inbox with kind
-- RL_MSG_USER and from = our id; the doorbell is a MSG_RING submitted with
-- this worker's next batch. The receiver queues them (sched.on_message) and
-- one task at a time hands them, in arrival order, to the function set with
-- worker.on_message: a handler that blocks delays the next message instead
-- of reordering them, and a handler that raises costs only that message.
-- Messages that arrive before a handler is set wait for it.
--
-- The graceful stop
-- -----------------
-- SIGINT/SIGTERM reach every worker as RL_MSG_SIGNAL from the host's main
-- thread (from = the signal number; 0 = a stop that is not a signal:
-- ringline.exit somewhere, or another worker failed). The worker then
--   1. closes its listeners (no new connections; connections still queued
--      on a closed socket are reset, or moved to another listener of the
--      port with net.ipv4.tcp_migrate_req),
--   2. serves what has arrived and no more: a receive on an accepted
--      connection that would wait (the ones blocked now are woken to look
--      again) first asks the core whether the kernel holds unread bytes
--      (rl_conn_probe): if it does, they are read and served like any; if
--      not, the receive returns nil, "closed" (with what was buffered as
--      the partial result). So a request that reached the kernel before
--      the stop is answered, even if no receive had taken it yet, and
--      handlers waiting for the next request on an idle connection end at
--      once; outbound connections (ringline.connect) keep working,
--      so a handler can finish what it is doing with an upstream; other
--      modules' servers do the same in the functions they give sched.on_stop (bound UDP
--      sockets),
--   3. runs pending timers now with premature = true (the ending hook,
--      ringline.timer's), and timer.at/every refuse new ones,
--   4. lets the run end the normal way: when the tasks have returned, queued
--      sends are flushed and guards released while the connections close,
-- all within the drain timeout (--drain-timeout, default 5 s), after which
-- the loop gives up (sched abort "drain") and the worker's teardown resets
-- whatever is left. The run then returns normally and the host exits 0.
local ffi = require "ffi"
local C = require "ringline.lib"
local H = require "ringline.host"
local sched = require "ringline.sched"
local errors = require "ringline.errors"
local log = require "ringline.log"

local type, tostring, tonumber, error, pairs = type, tostring, tonumber, error, pairs
local ffi_string = ffi.string
local errstr = errors.errstr
local need, wake, spawn = sched.need, sched.wake, sched.spawn

-- the host's settings, inside the host (ringline.host says whether it is)
local hostinfo = require "ringline.host" and require "ringline.hostinfo" or nil

local M = {}

local ID, COUNT = log.worker_id, log.workers
M.ID, M.COUNT = ID, COUNT
-- The host's slot of this worker and of worker 0 of its generation (the
-- host runs a reload's new generation beside the old one: its registry
-- and posts take slots, not worker ids).
local SLOT = hostinfo and tonumber(hostinfo.slot) or ID
local BASE = hostinfo and tonumber(hostinfo.slot_base) or 0
M.SLOT = SLOT
-- The `from` of RL_MSG_SIGNAL that retires this worker: drain as on
-- SIGTERM, but release the listening sockets (a new generation or a new
-- process accepts on them).
local RETIRE = hostinfo and tonumber(hostinfo.retire) or -1

-- Message kinds (enum rl_msg_kind).
local MSG_SIGNAL, MSG_USER = C.RL_MSG_SIGNAL, C.RL_MSG_USER
local ESHUTDOWN = errors.ESHUTDOWN

-- Signal numbers by name: the host's (signal.h), else Linux's.
local SIGNALS = hostinfo and hostinfo.signals or { HUP = 1, INT = 2, USR1 = 10, USR2 = 12, TERM = 15 }
local SIGNAME = {}
for name, n in pairs(SIGNALS) do SIGNAME[n] = name end
local HANDLED = { HUP = true, USR1 = true, USR2 = true }

local DRAIN_TIMEOUT = hostinfo and tonumber(hostinfo.drain_timeout) or 5

------------------------------------------------------------------------
-- The host registry
------------------------------------------------------------------------

local function ready() H.rl_host_ready(SLOT) end
local function on_started(S, w)
  H.rl_host_register(SLOT, w)
  S.unready = ready
end
local function on_stopping(_, w) H.rl_host_unregister(SLOT, w) end

------------------------------------------------------------------------
-- The graceful stop
------------------------------------------------------------------------

-- Start draining this worker (see the top of the file). False if it was
-- draining already.
local function stop(S, why, release)
  if S.draining then return false end
  S.draining = true
  S.handover = release or false   -- ringline.conn_read: fresh connections are served
  local limit = S.drain_timeout or DRAIN_TIMEOUT
  local w = S.w or sched.start(S)
  local dl = C.rl_worker_now(w) + limit
  S.drain_until = dl
  if not S.deadline or dl < S.deadline then
    S.deadline, S.deadline_why = dl, "drain"
  end
  log.log(log.DEBUG, "stopping (", why, "): draining for up to ", limit, " s")
  for _, l in pairs(S.listeners) do
    if release then l:_release() else l:_stop() end
  end
  for _, c in pairs(S.conns) do
    local t = c.rtask
    if t and c.listener then wake(S, t, nil) end   -- re-checks: conn_read's drain_look
  end
  local stoppers = sched.stoppers
  for i = 1, #stoppers do stoppers[i](S) end
  local h = sched.hooks.ending
  if h then h(S) end
  return true
end
M.stop = stop

-- True once this worker is stopping (a signal, ringline.exit, the end of
-- the run with its premature timers).
function M.exiting()
  local S = sched.state()
  return S ~= nil and (S.draining or S.exiting) and true or false
end

local function check_code(code, what)
  if code == nil then return 0 end
  if type(code) ~= "number" or code % 1 ~= 0 or code < 0 or code > 255 then
    error("ringline." .. what .. ": the exit code must be an integer 0..255, got " .. tostring(code), 3)
  end
  return code
end

-- ringline.exit([code]): every worker stops gracefully, then the process
-- exits with code. Returns at once (like ngx.exit, write `return
-- ringline.exit(n)`); without the host it only stops this run.
function M.exit(code)
  code = check_code(code, "exit")
  local S = need("ringline.exit")
  if S.exit_code == nil then S.exit_code = code end
  if H then H.rl_host_exit(code) end
  stop(S, "ringline.exit(" .. code .. ")")
  return true
end

------------------------------------------------------------------------
-- Signals
------------------------------------------------------------------------

local function signal_name(name, what)
  if type(name) ~= "string" then
    error("ringline." .. what .. ": expected a signal name (\"HUP\", \"USR1\", \"USR2\")", 3)
  end
  local n = name:upper():gsub("^SIG", "")
  if n == "INT" or n == "TERM" then
    error("ringline." .. what .. ": SIG" .. n .. " stops the workers gracefully and cannot be "
      .. "handled; check ringline.exiting() to notice the stop", 3)
  end
  if not HANDLED[n] then
    error("ringline." .. what .. ": unknown or unsupported signal " .. tostring(name)
      .. " (\"HUP\", \"USR1\", \"USR2\")", 3)
  end
  return n
end

-- ringline.on_signal(name, fn): fn(name) runs in a new task on this worker
-- each time the process gets the signal (the script runs on every worker,
-- so every worker that set a handler runs it). nil removes it. Returns the
-- previous handler.
function M.on_signal(name, fn)
  name = signal_name(name, "on_signal")
  if fn ~= nil and type(fn) ~= "function" then
    error("ringline.on_signal: expected a function or nil", 2)
  end
  local S = need("ringline.on_signal")
  local hs = S.sig_handlers
  if not hs then hs = {}; S.sig_handlers = hs end
  local old = hs[name]
  hs[name] = fn
  return old
end

-- ringline.reload(): start new workers from the script as it is on disk
-- now; they take the listening sockets over and these drain (SIGHUP does
-- this unless the script handles SIGHUP itself). ringline.upgrade(): the
-- same with a new process image of the executable (SIGUSR2's default).
-- Both return at once: true when asked, nil, "not in the host" outside it.
function M.reload()
  if not H then return nil, "not in the host" end
  H.rl_host_reload(SLOT)
  return true
end

function M.upgrade()
  if not H then return nil, "not in the host" end
  H.rl_host_upgrade(SLOT)
  return true
end

-- What SIGHUP and SIGUSR2 do when the script set no handler for them.
local DEFAULT = { HUP = M.reload, USR2 = M.upgrade }

local function on_signal_msg(S, from, ptr, len)
  local signo = tonumber(from)
  local name = SIGNAME[signo]
  if signo == 0 or name == "INT" or name == "TERM" or signo == RETIRE then
    stop(S, len > 0 and ffi_string(ptr, len) or "stop", signo == RETIRE)
    return
  end
  local fn = S.sig_handlers and name and S.sig_handlers[name]
  if fn then
    spawn(S, fn, name)
  elseif DEFAULT[name] and H then
    if ID == 0 then
      log.log(log.NOTICE, "SIG", name, ": ", name == "HUP" and "reloading" or "upgrading")
    end
    DEFAULT[name]()
  else
    log.log(log.NOTICE, "SIG", name or tostring(signo), " ignored (no ringline.on_signal handler)")
  end
end

------------------------------------------------------------------------
-- Messages between workers
------------------------------------------------------------------------

local function check_id(id, what)
  if type(id) ~= "number" or id % 1 ~= 0 or id < 0 or id >= COUNT then
    error(("ringline.worker.%s: no worker %s (ids are 0..%d)"):format(what, tostring(id), COUNT - 1), 3)
  end
end

local function post(S, id, msg)
  local rc
  if H then
    rc = H.rl_host_post(BASE + id, ID, MSG_USER, msg, #msg, S.w)
  else
    rc = C.rl_worker_post(S.w or sched.start(S), ID, MSG_USER, msg, #msg, nil)
  end
  if rc < 0 then return nil, rc == -ESHUTDOWN and "closed" or errstr(rc) end
  return true
end

-- ok, err = worker.post(id, msg): msg (a string) to worker id's
-- on_message handler. nil, "closed" when that worker has ended.
function M.post(id, msg)
  check_id(id, "post")
  if type(msg) ~= "string" then error("ringline.worker.post: msg must be a string", 2) end
  return post(need("ringline.worker.post"), id, msg)
end

-- n = worker.broadcast(msg): post to every other worker; the number reached.
function M.broadcast(msg)
  if type(msg) ~= "string" then error("ringline.worker.broadcast: msg must be a string", 2) end
  local S = need("ringline.worker.broadcast")
  local n = 0
  for id = 0, COUNT - 1 do
    if id ~= ID and post(S, id, msg) then n = n + 1 end
  end
  return n
end

-- The task that hands queued messages to the handler, one at a time: each
-- runs in its own task (errors are reported as any task's and cost only
-- that message), joined before the next.
local function deliver(S)
  local q = S.mailbox
  while q.head <= q.tail do
    local fn = S.on_msg
    if not fn then break end
    local i = q.head
    local from, msg = q.from[i], q.msg[i]
    q.from[i], q.msg[i] = nil, nil
    q.head = i + 1
    spawn(S, fn, from, msg):join()
  end
  S.mailman = false
end

local function kick(S)
  local q = S.mailbox
  if q and S.on_msg and not S.mailman and q.head <= q.tail then
    S.mailman = spawn(S, deliver, S)
  end
end

local function on_user_msg(S, from, ptr, len)
  local q = S.mailbox
  if not q then
    q = { head = 1, tail = 0, from = {}, msg = {} }
    S.mailbox = q
  end
  local i = q.tail + 1
  q.tail = i
  q.from[i], q.msg[i] = tonumber(from), ffi_string(ptr, len)
  kick(S)
end

-- worker.on_message(fn): fn(from_id, msg) for each message posted to this
-- worker, in order. Returns the previous handler.
function M.on_message(fn)
  if fn ~= nil and type(fn) ~= "function" then
    error("ringline.worker.on_message: expected a function or nil", 2)
  end
  local S = need("ringline.worker.on_message")
  local old = S.on_msg
  S.on_msg = fn or false
  kick(S)
  return old or nil
end

function M.id() return ID end
function M.count() return COUNT end

-- ringline (init.lua) installs this module's message handlers and, in a
-- host, the hooks that register the C worker with it (ringline.sched lists
-- them).
function M.attach(sched_)
  sched_.on_message(MSG_SIGNAL, on_signal_msg)
  sched_.on_message(MSG_USER, on_user_msg)
  if H then
    sched_.hook("started", on_started)
    sched_.hook("stopping", on_stopping)
  end
end

return M
