-- ringline: the public Lua API (docs/api.md is its reference).
--
--   local ringline = require "ringline"
--   ringline.run(function()
--     local lst = assert(ringline.listen("127.0.0.1:0", function(conn)
--       for line in conn:lines() do conn:send(line, "\n") end
--     end))
--     ...
--   end)
--
-- This module only validates arguments and forwards to the modules that do
-- the work: sched (tasks, loop), conn (connections), listener, errors, log.
local ffi = require "ffi"
local C = require "ringline.lib"
local sched = require "ringline.sched"
local conn = require "ringline.conn"
local listener = require "ringline.listener"
local client = require "ringline.client"
local timer = require "ringline.timer"
local sync = require "ringline.sync"
local udp = require "ringline.udp"
local log = require "ringline.log"
local check = require "ringline.check"
local task = require "ringline.task"
local conn_read = require "ringline.conn_read"
local conn_send = require "ringline.conn_send"
local region = require "ringline.region"
local watchdog = require "ringline.watchdog"
local worker = require "ringline.worker"
local tls = require "ringline.tls"
local exec = require "ringline.exec"
local nvme = require "ringline.nvme"
local pool = require "ringline.pool"
local fs = require "ringline.fs"

-- The event dispatch table and the lifecycle hooks (ringline.sched lists
-- both) are filled here, once, in this order, and nowhere else: no module
-- installs anything when it is loaded. Each attach says what it installs.
sched.attach()              -- RL_EV_TIMER, RL_EV_MESSAGE
conn.attach(sched)          -- RL_EV_CLOSED, RL_EV_FD
conn_read.attach(sched)     -- RL_EV_RECV, RL_EV_PENDING
conn_send.attach(sched)     -- RL_EV_SEND, RL_EV_SLAB; hook conn_idle
listener.attach(sched)      -- RL_EV_ACCEPTED, RL_EV_LISTENER
client.attach(sched)        -- RL_EV_CONNECTED; message RL_MSG_RESOLVED
tls.attach(sched)           -- RL_EV_TLS
region.attach(sched)        -- RL_EV_GUARD; hook destroyed
udp.attach(sched)           -- RL_EV_UDP; a graceful stop's and the drain's steps
timer.attach(sched)         -- hook ending
watchdog.attach(sched)      -- hook configured
fs.attach(sched)            -- RL_EV_FILE; drain: files left open
worker.attach(sched)        -- messages RL_MSG_SIGNAL, RL_MSG_USER; hooks started, stopping (in a host)
exec.attach(sched)          -- RL_EV_EXIT; a drain step; os.execute/io.popen warn in a run
nvme.attach(sched)          -- RL_EV_NVME; a drain step
pool.attach(sched)          -- conn:setkeepalive/getreusedtimes; conn's close and idle-receive hooks

local type, error, tonumber = type, error, tonumber
local need = sched.need

local M = {}

M._VERSION = "0.1.0"
M.ERR, M.WARN, M.NOTICE, M.INFO, M.DEBUG = log.ERR, log.WARN, log.NOTICE, log.INFO, log.DEBUG

-- ringline.coroutine: create/resume/wrap/yield/status/running whose
-- resume and wrap let blocking ringline calls inside them work.
M.coroutine = sched.coroutine

M.run = sched.run
M.region = region.new   -- registered memory for guarded sends
M.fs = { open = fs.open, stat = fs.stat, unlink = fs.unlink, rmdir = fs.rmdir, rename = fs.rename,
  mkdir = fs.mkdir, readfile = fs.readfile, writefile = fs.writefile, listdir = fs.listdir }
-- ringline.shared.NAME: the process-wide dictionaries (ngx.shared.DICT)
M.shared = require "ringline.shdict"

function M.configure(t)
  if type(t) ~= "table" then error("ringline.configure: expected a table", 2) end
  local S = need("ringline.configure")
  if S.w then
    error("ringline.configure: the worker has started I/O already; configure before the first "
      .. "listen/connect/sleep (or pass the keys in ringline.run's opts)", 2)
  end
  sched.configure(S, t, 2)
end

-- The configuration keys: name -> {default, min, max, pow2, doc}.
function M.config_keys()
  local n = ffi.new("int[1]")
  local keys = C.rl_config_keys(n)
  local r = {}
  for i = 0, n[0] - 1 do
    local k = keys[i]
    r[ffi.string(k.name)] = { default = k.def, min = k.min, max = k.max, pow2 = k.pow2 ~= 0,
                              doc = ffi.string(k.doc) }
  end
  for k, v in pairs(sched.LUA_KEYS) do
    r[k] = { default = v[4], min = v[1], max = v[2], pow2 = false, doc = v[3] }
  end
  return r
end

-- The effective value of one configuration key in this run.
function M.config(key)
  local S = need("ringline.config")
  if sched.LUA_KEYS[key] then return S[key] end
  local ok, v = pcall(function() return S.cfg[key] end)
  if not ok then
    error(("ringline.config: unknown configuration key '%s' (valid: %s)"):format(tostring(key),
      check.list(require("ringline.config").valid_keys())), 2)
  end
  return tonumber(v)
end

function M.listen(addr, handler, opts)
  return listener.listen(need("ringline.listen"), addr, handler, opts)
end

function M.connect(host, port, opts)
  if type(port) == "table" and opts == nil then port, opts = nil, port end
  return client.connect(need("ringline.connect"), host, port, opts)
end

-- addrs, err = ringline.resolve(name [, family]): the numeric addresses of
-- a name (family 4 or 6 restricts them), resolved without blocking the loop.
function M.resolve(name, family)
  if type(name) ~= "string" or name == "" then error("ringline.resolve: expected a host name", 2) end
  if family ~= nil and family ~= 4 and family ~= 6 then error("ringline.resolve: family must be 4 or 6", 2) end
  local S = need("ringline.resolve")
  return client.resolve(S, sched.current(S, "ringline.resolve"), client.unbracket(name), family or 0)
end

function M.sleep(s)
  check.seconds(s, "ringline.sleep", true)
  local S = need("ringline.sleep")
  local t = sched.current(S, "ringline.sleep")
  if s <= 0 then
    local why = sched.yield_now(S, t)
    if why then return nil, why end
    return true
  end
  -- the call's deadline is the sleep: "timeout" is its normal end
  local ok, err = sched.wait_begin(S, t, s)
  if not ok then return nil, err end
  local why = sched.wait_park(S, t, sched.never)
  sched.wait_end(S, t)
  if why ~= "timeout" then return nil, why end
  return true
end

function M.now()
  local S = need("ringline.now")
  return C.rl_worker_now(S.w or sched.start(S))
end

function M.spawn(fn, ...)
  if type(fn) ~= "function" then error("ringline.spawn: expected a function", 2) end
  return task.spawn_user(need("ringline.spawn"), fn, ...)
end

-- ringline.timer.at/every(delay, fn, ...) -> handle (h:cancel()), pending_count().
M.timer = { at = timer.at, every = timer.every, pending_count = timer.pending_count }

-- ok, res... = ringline.wait(t1, t2, ...): the first of the tasks to finish.
M.wait = sync.wait
M.semaphore = sync.semaphore
M.channel = sync.channel

-- Child processes (ringline.exec): p, err / out, ok, how, code.
function M.exec(argv, opts)
  return exec.exec(need("ringline.exec"), argv, opts)
end
function M.exec_capture(argv, opts)
  return exec.exec_capture(need("ringline.exec_capture"), argv, opts)
end

-- NVMe passthrough: ringline.nvme.open(path [, opts]) -> device.
M.nvme = {
  open = function(path, opts) return nvme.open(need("ringline.nvme.open"), path, opts) end,
}

-- A UDP socket (made by its first bind, setpeername or sendto).
function M.udp(opts)
  return udp.new(need("ringline.udp"), opts)
end

-- The counters of struct rl_metrics, in declaration order, read from the
-- declarations themselves so a counter added to the header shows up here.
local METRICS = {}
do
  local body = require("ringline.cdef"):match("struct%s+rl_metrics%s*(%b{})")
  for name in body:gmatch("uint64_t%s+([%w_]+)%s*;") do METRICS[#METRICS + 1] = name end
end
M._METRICS = METRICS

function M.metrics()
  local S = need("ringline.metrics")
  local m = C.rl_worker_metrics(S.w or sched.start(S))
  local r = {}
  for i = 1, #METRICS do
    local k = METRICS[i]
    r[k] = tonumber(m[k])
  end
  r.tasks = S.ntasks
  r.listeners = S.nlisteners
  -- the Lua layer's protections (docs/operations.md, Limits and defaults)
  r.tasks_refused = S.tasks_refused
  r.conns_refused_per_ip = S.ip_refused
  r.conns_shed = S.shed
  r.watchdog_stalls = tonumber(S.wd.fired)
  -- the keep-alive pools (ringline.pool): idle connections, queued connects
  r.pool_idle, r.pool_waiting = pool.counts(S)
  return r
end

-- A script's own metrics for the host's /metrics (ringline.metric).
M.metric = require "ringline.metric"

M.log = log.log
M.log_level = log.level

function M.on_error(fn)
  if fn ~= nil and type(fn) ~= "function" then error("ringline.on_error: expected a function", 2) end
  local S = need("ringline.on_error")
  local old = S.on_error
  S.on_error = fn
  return old
end

function M.worker_id() return log.worker_id end
function M.workers() return log.workers end

-- Several workers, signals, the graceful stop (ringline.worker).
M.worker = { post = worker.post, broadcast = worker.broadcast, on_message = worker.on_message,
             id = worker.id, count = worker.count }
M.exit = worker.exit
M.reload = worker.reload
M.upgrade = worker.upgrade
M.exiting = worker.exiting
M.on_signal = worker.on_signal

-- The running task (nil outside a task).
function M.current()
  local S = sched.state()
  return S and S.current or nil
end

return M
