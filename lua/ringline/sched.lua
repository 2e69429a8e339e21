-- ringline.sched: the worker loop that turns core events into task
-- wake-ups, and ringline.run around it. The tasks it wakes and resumes are
-- ringline.task's.
--
-- The model
-- ---------
-- A task is a coroutine plus a small table. A task that must wait records
-- what it waits on in the object it waits for (conn.rtask, conn.writers,
-- S.timers[id], S.connecting[token], task.joiners, conn.fd_waiters) and parks:
-- it yields the private SENTINEL to the scheduler. The event dispatcher looks
-- up exactly that task and wakes it: the task is put on the ready queue with
-- a reason in task.wake_reason (nil = "re-check your condition", or an
-- error string such as "timeout", "closed", "canceled"). Every blocking
-- call waits the same way, through ringline.task's wait (wait_begin arms
-- the call's one deadline, wait_park parks and re-checks the call's
-- condition after each wake-up, wait_end disarms), so a spurious wake-up is
-- harmless, and a reason given while a task is already queued (a deadline
-- firing in the same batch as its data) is kept rather than lost.
--
-- Waking never resumes a coroutine directly: wakes only queue, and the loop
-- resumes queued tasks after the whole event batch has been dispatched. So
-- no task ever runs nested inside another, and the event array is never
-- touched while Lua code runs.
--
-- The yield sentinel and ringline.coroutine, which let scheduler yields
-- through user coroutines, are described in ringline.task.
--
-- State
-- -----
-- Everything worker-scoped hangs off one table S created per ringline.run.
-- ringline.task keeps `cur`, the S of the run in progress on this thread,
-- set on entry to run and restored on exit.
--
-- Files
-- -----
-- sched.lua (this one): the worker state, the event dispatch, the loop, and
-- run's set-up and teardown; ringline.task: tasks, the ready queue, parking,
-- task timers, ringline.coroutine; ringline.config: configuration and the C
-- worker's creation. This module re-exports what the others use of both, so
-- they need only require "ringline.sched".
local ffi = require "ffi"
local C = require "ringline.lib"
local errors = require "ringline.errors"
local log = require "ringline.log"
local config = require "ringline.config"
local task = require "ringline.task"
local TIMER_KEY = task.TIMER_KEY
local watchdog = require "ringline.watchdog"
local metric = require "ringline.metric"

local type, error, tostring = type, error, tostring
local unpack = unpack or table.unpack
local math_ceil, math_max = math.ceil, math.max
local errstr = errors.errstr
local ffi_new = ffi.new
local traceback = debug.traceback
local wake, pop, resume_task, spawn = task.wake, task.pop, task.resume_task, task.spawn
local deadline_fired = task.deadline_fired
local state, set_state = task.state, task.set_state
local start, configure, hooks = config.start, config.configure, config.hooks
local NEVS, MSGLEN = config.NEVS, config.MSGLEN

local M = {}

-- Resolve every C function the Lua layer calls now, at load time. A trace
-- cannot resolve a symbol the library namespace has not looked up yet (it
-- aborts with "symbol not in cache"), which would otherwise happen whenever
-- a function's first call is also the first one recorded.
for name in ([[rl_config_init rl_config_keys rl_config_set rl_config_validate
    rl_conn_close rl_conn_consume rl_conn_fd rl_conn_io rl_conn_send rl_conn_shutdown
    rl_conn_want_recv rl_conn_want_send rl_connect rl_fd_name rl_fd_setoption rl_listen
    rl_listener_close rl_listener_port rl_strerror rl_timer_add rl_timer_cancel
    rl_worker_destroy rl_worker_live rl_worker_metrics rl_worker_new rl_worker_now
    rl_worker_poll]]):gmatch("%S+") do
  local _ = C[name]
end

-- Event types (enum rl_event_type): numbers read from the header.
local EV_TIMER, EV_MESSAGE = C.RL_EV_TIMER, C.RL_EV_MESSAGE

-- Tasks (ringline.task).
M.READY, M.RUNNING, M.PARKED, M.DEAD = task.READY, task.RUNNING, task.PARKED, task.DEAD
M.Task_mt = task.Task_mt
M.wake, M.park, M.current, M.waiter, M.yield_now = wake, task.park, task.current, task.waiter,
  task.yield_now
M.timer_arm, M.timer_disarm = task.timer_arm, task.timer_disarm
-- The wait every blocking call makes (ringline.task describes it).
M.wait_begin, M.wait_park, M.wait_end = task.wait_begin, task.wait_park, task.wait_end
M.todeadline, M.totimeout, M.never, M.finished = task.todeadline, task.totimeout, task.never,
  task.finished
M.spawn, M.spawn_handler, M.collect = spawn, task.spawn_handler, task.collect
M.remove_joiner, M.own = task.remove_joiner, task.own
M.coroutine = task.coroutine
M.errvalue_string = task.errvalue_string
M.state, M.need = state, task.need

-- Configuration and the C worker (ringline.config); the hooks (M.hook,
-- below) live in ringline.config's table, since it runs two of them.
M.hooks = hooks
M.LUA_KEYS = config.LUA_KEYS
M.configure, M.start = configure, start

------------------------------------------------------------------------
-- Worker state and the loop
------------------------------------------------------------------------

local function new_state()
  local S = {
    w = nil, evs = nil,
    cfg = ffi_new("struct rl_config"),
    msg = ffi_new("char[?]", MSGLEN),
    namebuf = ffi_new("char[?]", 256),
    conns = {}, listeners = {}, nlisteners = 0,
    timers = {}, connecting = {}, tok = 0, ctok = 0,
    rq = {}, rq_mask = 255, rq_head = 0, rq_tail = 0,
    ntasks = 0, live = {}, current = nil, cur_co = nil, main = nil,
    task_peak = 0,        -- most live tasks since the last trim (task.lua)
    trim_due = false,     -- a burst of tasks ended: trim when the loop goes idle
    on_error = nil, abort = nil, deadline = nil,
    hiwat = 0, lowat = 0,
    guards_out = 0,       -- guarded send parts not yet released (ringline.region)
    wd = watchdog.new_slot(), -- the host watchdog's view of this loop (ringline.watchdog)
    hs = metric._stats_slot(), -- the metrics endpoint's view of the counters below
    rseq = 0,             -- counts receives that began to wait: c.rsince orders idleness
    per_ip = {},          -- accepted connections by peer address (max_connections_per_ip)
    -- Lua-level counters, in ringline.metrics()
    tasks_refused = 0,    -- spawns and accepts refused at max_tasks
    ip_refused = 0,       -- accepts reset by max_connections_per_ip
    shed = 0,             -- idle connections reset by shed_idle to make room
  }
  C.rl_config_init(S.cfg)
  config.lua_defaults(S)
  return S
end

------------------------------------------------------------------------
-- Event dispatch and lifecycle hooks
------------------------------------------------------------------------

-- The dispatch table: dispatch[C.RL_EV_X] = fn(S, ev), one function per
-- event type, called for each event of a poll's batch. Nothing fills it at
-- load time: ringline (init.lua) calls M.attach and each module's
-- attach(sched), once, in the order it lists; they install their events
-- here with on_event and their hooks with hook. Who handles what:
--   sched       RL_EV_TIMER (tasks' deadlines and sleeps, ringline.timer
--               handles), RL_EV_MESSAGE (the inbox, by message kind)
--   conn        RL_EV_CLOSED, RL_EV_FD
--   conn_read   RL_EV_RECV, RL_EV_PENDING
--   conn_send   RL_EV_SEND, RL_EV_SLAB
--   listener    RL_EV_ACCEPTED, RL_EV_LISTENER
--   client      RL_EV_CONNECTED
--   tls         RL_EV_TLS
--   region      RL_EV_GUARD
--   udp         RL_EV_UDP
--   exec        RL_EV_EXIT
--   nvme        RL_EV_NVME
--   fs          RL_EV_FILE (file operations; its drain closes files left open)
local dispatch = {}
M.dispatch = dispatch

-- Install the handler of event type ty; a second one for a type is a bug.
function M.on_event(ty, fn)
  if dispatch[ty] then error("ringline.sched: event type " .. ty .. " is handled already", 2) end
  dispatch[ty] = fn
end

-- The lifecycle hooks (the table is ringline.config's, which runs two of
-- them): one function each, set with M.hook from an attach.
--   configured(S)    a run's keys were set (ringline.watchdog)
--   started(S, w)    the C worker was created (ringline.worker, in a host)
--   ending(S)        nothing is left to run: premature timers; true when
--                    that started tasks (ringline.timer)
--   held(S)          nothing is left to run, but the core may still report
--                    peers to serve: a released listener it keeps (ringline.listener)
--   stopping(S, w)   before rl_worker_destroy (ringline.worker, in a host)
--   destroyed(S, rc) after it (ringline.region: guard anchors)
--   conn_idle(c)     c's last guard was released while writers wait
--                    (ringline.conn_send, called by ringline.region)
local HOOKS = { configured = true, started = true, ending = true, held = true, stopping = true,
                destroyed = true, conn_idle = true }
function M.hook(name, fn)
  if not HOOKS[name] then error("ringline.sched: no hook named " .. tostring(name), 2) end
  if hooks[name] then error("ringline.sched: hook " .. name .. " is set already", 2) end
  hooks[name] = fn
end

-- Inbox messages by kind: msg_handlers[kind] = fn(S, from, ptr, len); the
-- bytes at ptr are valid only during the call.
local msg_handlers = {}
M.msg_handlers = msg_handlers
function M.on_message(kind, fn) msg_handlers[kind] = fn end

local function on_message(S, ev)
  local w = S.w
  local buf, cap = S.msgbuf, S.msgcap
  if not buf then
    cap = 65536
    buf = ffi_new("uint8_t[?]", cap)
    S.msgbuf, S.msgcap, S.msgmeta = buf, cap, ffi_new("uint32_t[2]")
  end
  local meta = S.msgmeta
  while true do
    local n = C.rl_worker_take_message(w, buf, cap, meta, meta + 1)
    if n == -errors.EMSGSIZE then
      cap = cap * 2
      buf = ffi_new("uint8_t[?]", cap)
      S.msgbuf, S.msgcap = buf, cap
    elseif n < 0 then
      break
    else
      local h = msg_handlers[meta[1]]
      if h then
        h(S, meta[0], buf, n)
      else
        log.log(log.WARN, "inbox message of unknown kind ", tonumber(meta[1]), " dropped")
      end
    end
  end
end

-- A task's deadline or sleep, or a ringline.timer handle, fired. The token
-- tells a fired timer from a newer one that reuses its id.
local function on_timer(S, ev)
  local timers = S.timers
  local key = ev.slot + TIMER_KEY         -- see task.lua: never an array index
  local t = timers[key]
  if t and t.timer_token == ev.data then
    timers[key] = nil
    t.timer_id = nil
    local fire = t.fire   -- a ringline.timer handle, not a task
    if fire then fire(S, t) else deadline_fired(S, t) end
  end
end

-- sched's own events (ringline calls this first).
function M.attach()
  M.on_event(EV_TIMER, on_timer)
  M.on_event(EV_MESSAGE, on_message)
end

-- Dispatch one event: record results and wake the waiting task(s).
local function dispatch_one(S, ev)
  local fn = dispatch[ev.type]
  if fn then fn(S, ev) end
end

local function poll(S, w, tmo)
  -- the watchdog: odd while waiting (idle is no stall), even while running
  local wd = S.wd
  wd.beat = wd.beat + 1
  -- published for a scrape (ringline.metric): plain stores, once a poll
  local hs = S.hs
  hs.tasks, hs.listeners = S.ntasks, S.nlisteners
  hs.tasks_refused, hs.conns_refused_per_ip, hs.conns_shed = S.tasks_refused, S.ip_refused, S.shed
  local n = C.rl_worker_poll(w, S.evs, NEVS, tmo)
  wd.beat = wd.beat + 1
  if n < 0 then
    if n == -errors.EINTR then return 0 end
    error("ringline: rl_worker_poll failed: " .. errstr(n), 0)
  end
  return n
end

-- Poll and dispatch everything (teardown only; the loop interleaves).
local function poll_dispatch(S, w, tmo)
  local n = poll(S, w, tmo)
  local evs = S.evs
  for i = 0, n - 1 do dispatch_one(S, evs[i]) end
end

-- The loop alternates two phases: run the tasks that were ready when the
-- phase began (tasks they wake wait for the next round, after the next poll,
-- so a busy task cannot starve I/O), then poll once and dispatch the events.
-- A round runs at most ROUND tasks: a burst of spawns (or of wake-ups)
-- then takes several rounds, and the loop keeps polling in between.
-- It is written as one flat loop doing one step per iteration (dispatch an
-- event, resume a task, or poll): a nested loop with a trip count of one or
-- two would make LuaJIT abort its traces ("leaving loop in root trace").
local ROUND = 4096

local function compact(t)
  local n = {}
  for k, v in pairs(t) do n[k] = v end
  return n
end
local function loop(S)
  local evs = S.evs
  local n, i = 0, 0         -- events of the last poll, events dispatched
  local batch = 0           -- tasks still to run in this round
  local polling = false     -- the round has run: poll next
  while true do
    if i < n then
      dispatch_one(S, evs[i])
      i = i + 1
    elseif batch > 0 then
      batch = batch - 1
      resume_task(S, pop(S))
      if S.abort then return end
    elseif not polling then
      batch = S.rq_tail - S.rq_head
      if batch > ROUND then batch = ROUND end
      polling = true
    else
      polling = false
      local ready = S.rq_tail ~= S.rq_head
      if not ready and S.ntasks == 0 and S.nlisteners == 0 then
        -- the held hook (ringline.listener): a released listener's late
        -- peers still come (their handlers must run: the drain after the
        -- loop only polls), so wait for them or for the core to let go
        local held = hooks.held
        if not (held and held(S)) then
          -- the ending hook (ringline.timer): run pending timers as premature;
          -- true when that started tasks, so the run goes on until they end
          local h = hooks.ending
          if not (h and h(S)) then return end
          ready = true
        end
      end
      local w = S.w or start(S)
      -- the host's readiness (ringline.worker sets S.unready): the main
      -- chunk returned, or a listener is open, before the first wait
      local up = S.unready
      if up and (S.nlisteners > 0 or S.main:status() == "dead") then
        S.unready = false
        up(S)
      end
      local tmo = ready and 0 or -1
      if S.trim_due and not ready then
        -- A burst of connections (tasks) ended and nothing is ready: a
        -- full collection frees their coroutines and tables, and the
        -- worker's trim gives the pages back (rl_worker_trim; the host's
        -- Lua heap is on malloc). Once per burst, only when idle.
        S.trim_due, S.task_peak = false, S.ntasks
        -- tables that grew with the burst keep their size (LuaJIT shrinks
        -- one only when it rehashes): copies hold the live entries alone
        S.live, S.timers, S.conns = compact(S.live), compact(S.timers), compact(S.conns)
        collectgarbage()
        C.rl_worker_trim(w)
      end
      local dl = S.deadline
      if dl then
        local left = dl - C.rl_worker_now(w)
        if left <= 0 then
          -- deadline_why = "drain": a graceful stop's deadline (ringline.worker)
          S.abort = S.deadline_why or "timeout"
          return
        end
        if tmo < 0 then tmo = math_max(1, math_ceil(left * 1000)) end
      end
      n, i = poll(S, w, tmo), 0
      evs = S.evs
    end
  end
end

-- Other modules' resources to close at the end of a run (UDP sockets):
-- fn(S), registered with M.on_drain from their attach.
local drainers = {}
function M.on_drain(fn) drainers[#drainers + 1] = fn end

-- Functions a graceful stop (ringline.worker) runs when it begins, so other
-- modules' servers stop waiting too (UDP sockets): fn(S), registered with
-- M.on_stop from their attach.
local stoppers = {}
M.stoppers = stoppers
function M.on_stop(fn) stoppers[#stoppers + 1] = fn end

-- After a normal end: close what the script left open, let graceful closes
-- drain (bounded), so destroy finds an idle worker.
local function drain(S, limit)
  local w = S.w
  for _, c in pairs(S.conns) do
    if not c.closed then c:close() end
  end
  for _, l in pairs(S.listeners) do l:close() end
  for i = 1, #drainers do drainers[i](S) end
  local until_t = C.rl_worker_now(w) + limit
  while C.rl_worker_live(w) > 0 or S.guards_out > 0 do
    local left = until_t - C.rl_worker_now(w)
    if left <= 0 then return false end
    poll_dispatch(S, w, math_max(1, math_ceil(left * 1000)))
  end
  return true
end

-- Which tasks were still waiting: the first thing one wants to know when a
-- run times out.
local function dump_tasks(S)
  log.log(log.WARN, "ringline.run: timeout with ", S.ntasks, " task(s) alive")
  local k = 0
  for t in pairs(S.live) do
    k = k + 1
    if k > 10 then break end
    local msg = "task " .. tostring(t) .. " (" .. t:status() .. ")"
    -- a task gets its coroutine when it first runs (ringline.task):
    -- traceback(false, msg) would return false
    log.log(log.WARN, t.co and traceback(t.co, msg) or msg .. ": not started")
  end
end

local function teardown(S, normal)
  local w = S.w
  if not w then
    S.dead = true
    return 0
  end
  if normal then
    -- after a graceful stop, only what is left of its deadline
    local limit = S.drain_timeout or 5
    if S.drain_until then limit = math_max(0, S.drain_until - C.rl_worker_now(w)) end
    if not drain(S, limit) and S.drain_until then
      -- a graceful stop's deadline passed while connections were still
      -- closing (a peer not reading what they flush): reset like below
      S.abort = "drain"
      log.log(log.WARN, "drain timeout: resetting what is left (",
        C.rl_worker_live(w), " connection(s), listener(s) or timer(s))")
    end
  end
  local h = hooks.stopping
  if h then h(S, w) end
  -- whatever the script still holds reads as closed from now on (a normal
  -- end closed these already; a raise, a timeout or the drain's deadline
  -- did not)
  for _, c in pairs(S.conns) do c.closed = true end
  for _, l in pairs(S.listeners) do l.closed = true end
  if S.udps then for _, u in pairs(S.udps) do u.closed = true end end
  S.dead = true
  S.w = nil
  local rc = C.rl_worker_destroy(w)
  -- the destroyed hook (ringline.region): the anchors of guards the kernel
  -- gave back during destroy can go now
  local h = hooks.destroyed
  if h then h(S, rc) end
  return rc
end

-- run([opts,] fn, ...): the worker loop with fn(...) as the main task.
function M.run(opts, fn, ...)
  if type(opts) == "function" then
    return M.run(nil, opts, fn, ...)
  end
  if opts ~= nil and type(opts) ~= "table" then
    error("ringline.run: opts must be a table", 2)
  end
  if type(fn) ~= "function" then
    error("ringline.run: expected a function", 2)
  end
  if state() then error("ringline.run: a worker is already running on this thread", 2) end
  local S = new_state()
  if opts then
    if require("ringline.check").seconds(opts.timeout, "ringline.run: opts.timeout") == 0 then
      error("ringline.run: opts.timeout must be a positive number of seconds", 2)
    end
    require("ringline.check").seconds(opts.drain_timeout, "ringline.run: opts.drain_timeout")
    if opts.on_error ~= nil and type(opts.on_error) ~= "function" then
      error("ringline.run: opts.on_error must be a function", 2)
    end
    S.on_error = opts.on_error
    S.drain_timeout = opts.drain_timeout
    configure(S, opts, 2, { timeout = true, on_error = true, drain_timeout = true })
  end
  local main = spawn(S, fn, ...)
  S.main = main
  set_state(S)
  local t0
  if opts and opts.timeout then
    -- The deadline needs the loop clock, so the worker starts now.
    local ok, err = pcall(start, S)
    if not ok then set_state(nil); error(err, 2) end
    S.deadline = C.rl_worker_now(S.w) + opts.timeout
  end
  local ok, err = pcall(loop, S)
  local abort = S.abort
  if ok and abort == "timeout" then pcall(dump_tasks, S) end
  if ok and abort == "drain" then
    log.log(log.WARN, "drain timeout: resetting what is left (", S.ntasks, " task(s), ",
      C.rl_worker_live(S.w), " connection(s), listener(s) or timer(s))")
  end
  local tok, rc = pcall(teardown, S, ok and not abort)
  abort = S.abort
  watchdog.unwatch(S)
  set_state(nil)
  if not ok then error(err, 0) end
  if abort == "error" then error(main.err, 0) end
  if abort == "timeout" then error("timeout", 0) end
  if not tok then error(rc, 0) end
  -- Something was left live after the drain: a bug, unless a graceful
  -- stop's deadline passed and the rest was reset on purpose.
  if rc ~= 0 and not (abort == "drain" and rc == -errors.EBUSY) then
    error("ringline.run: unclean worker teardown (" .. errstr(rc) .. ")", 0)
  end
  local r = main.res
  if r then return unpack(r, 1, r.n) end
end

return M
