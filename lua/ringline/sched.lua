-- ringline.sched: tasks, the ready queue, parking and waking, timers, and
-- the worker loop that turns core events into task wake-ups.
--
-- The model
-- ---------
-- A task is a coroutine plus a small table. A task that must wait records
-- what it waits on in the object it waits for (conn.rtask, conn.wq,
-- S.timers[id], S.connecting[token], task.joiners, conn.fdw) and parks:
-- it yields the private SENTINEL to the scheduler. The event dispatcher looks
-- up exactly that task and wakes it: the task is put on the ready queue with
-- a reason in task.r1 (nil = "re-check your condition", or an error string
-- such as "timeout", "closed", "canceled"). Every park site loops on its own
-- condition, so a spurious wake-up is harmless, and a reason given while a
-- task is already queued (a deadline firing in the same batch as its data)
-- is kept rather than lost.
--
-- Waking never resumes a coroutine directly: wakes only queue, and the loop
-- resumes queued tasks after the whole event batch has been dispatched. So
-- no task ever runs nested inside another, and the event array is never
-- touched while Lua code runs.
--
-- The yield sentinel
-- ------------------
-- Every scheduler yield passes SENTINEL, a value no user code can see. A user
-- coroutine made with ringline.coroutine.wrap/resume that yields SENTINEL
-- (because something inside it blocked) passes it on outward and hands the
-- wake-up back in, so user generators inside handlers cannot swallow the
-- scheduler's resumptions. A blocking call from inside a plain coroutine is
-- detected (S.cur_co) and raised as misuse instead of corrupting the task.
--
-- State
-- -----
-- Everything worker-scoped hangs off one table S created per ringline.run.
-- The module keeps only `cur`, the S of the run in progress on this thread,
-- set on entry to run and restored on exit.
local ffi = require "ffi"
local bit = require "bit"
local C = require "ringline.lib"
local errors = require "ringline.errors"
local log = require "ringline.log"

local co_create, co_resume, co_yield = coroutine.create, coroutine.resume, coroutine.yield
local co_status, co_running = coroutine.status, coroutine.running
local band = bit.band
local select, type, error, tostring, setmetatable = select, type, error, tostring, setmetatable
local unpack = unpack or table.unpack
local math_ceil, math_max = math.ceil, math.max
local errstr = errors.errstr
local ffi_string, ffi_new = ffi.string, ffi.new
local traceback = debug.traceback

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

-- Event types (enum rl_event_type).
local EV_ACCEPTED, EV_RECV, EV_SEND, EV_CLOSED = 1, 2, 3, 4
local EV_CONNECTED, EV_TIMER, EV_FD, EV_LISTENER = 5, 6, 7, 8

-- Task states.
local READY, RUNNING, PARKED, DEAD = 1, 2, 3, 4
M.READY, M.RUNNING, M.PARKED, M.DEAD = READY, RUNNING, PARKED, DEAD

local NEVS = 256          -- events per poll; the array is allocated once per worker
local MSGLEN = 256

local SENTINEL = setmetatable({}, { __name = "ringline.yield",
  __tostring = function() return "ringline.yield" end })

local cur = nil           -- the worker state of the run in progress

-- Hooks installed by other modules at load time (they require this one).
-- started(S, w) / stopping(S, w): the C worker was created / is about to be
-- destroyed (ringline.worker registers it with the host in between).
local hooks = { accepted = nil, ending = nil, started = nil, stopping = nil }
M.hooks = hooks

------------------------------------------------------------------------
-- Ready queue: an array ring indexed by ever-growing head/tail counters.
------------------------------------------------------------------------

local function rq_grow(S)
  local old, mask = S.rq, S.rq_mask
  local n = S.rq_tail - S.rq_head
  local new = {}
  for i = 0, n - 1 do new[i] = old[band(S.rq_head + i, mask)] end
  S.rq, S.rq_mask, S.rq_head, S.rq_tail = new, mask * 2 + 1, 0, n
end

local function push(S, t)
  local tail = S.rq_tail
  if tail - S.rq_head > S.rq_mask then
    rq_grow(S)
    tail = S.rq_tail
  end
  S.rq[band(tail, S.rq_mask)] = t
  S.rq_tail = tail + 1
end

-- Queue a parked task with a reason (nil = re-check). A task already queued
-- keeps its first non-nil reason, so "timeout" or "canceled" is never lost.
local function wake(S, t, why)
  local st = t.st
  if st == PARKED then
    t.st = READY
    t.r1 = why
    push(S, t)
  elseif st == READY and why ~= nil and t.r1 == nil then
    t.r1 = why
  end
end
M.wake = wake

------------------------------------------------------------------------
-- Parking
------------------------------------------------------------------------

-- The running task, or a misuse error naming the API call.
local function current(S, what)
  local t = S and S.current
  if not t then
    error("ringline: " .. what .. " must be called from a ringline task", 3)
  end
  return t
end
M.current = current

-- Park the running task until something wakes it; returns the reason.
local function park(S, t)
  if co_running() ~= S.cur_co then
    error("ringline: blocking call inside a coroutine not made by ringline.coroutine", 3)
  end
  if t.cpend then
    -- canceled while running or queued: this blocking call ends at once
    t.cpend = false
    return "canceled"
  end
  t.st = PARKED
  local why = co_yield(SENTINEL)
  if why == "canceled" then t.cpend = false end
  return why
end
M.park = park

-- Yield to the other ready tasks (sleep(0)).
local function yield_now(S, t)
  if co_running() ~= S.cur_co then
    error("ringline: blocking call inside a coroutine not made by ringline.coroutine", 3)
  end
  if t.cpend then
    t.cpend = false
    return "canceled"
  end
  t.st = READY
  t.r1 = nil
  push(S, t)
  return (co_yield(SENTINEL))
end
M.yield_now = yield_now

------------------------------------------------------------------------
-- Timers. A task holds at most one: a deadline for the call it is in
-- (why = "timeout") or the timer it sleeps on (why = false). The token
-- guards against a fired id being reused before its event is dispatched.
------------------------------------------------------------------------

local function timer_arm(S, t, delay, why)
  local tok = S.tok + 1
  if tok > 0xffffffff then tok = 1 end
  S.tok = tok
  if delay < 0 then delay = 0 end
  local id = C.rl_timer_add(S.w or start(S), delay, tok)
  if id < 0 then return nil, errstr(id) end
  S.timers[id] = t
  t.tmr, t.ttok, t.twhy = id, tok, why
  return id
end
M.timer_arm = timer_arm

local function timer_disarm(S, t)
  local id = t.tmr
  if id then
    t.tmr = nil
    if S.timers[id] == t then S.timers[id] = nil end
    C.rl_timer_cancel(S.w, id)
  end
end
M.timer_disarm = timer_disarm

------------------------------------------------------------------------
-- Tasks
------------------------------------------------------------------------

local Task = {}
local Task_mt = { __index = Task, __name = "ringline.task" }
M.Task_mt = Task_mt

local function pack(...) return { n = select("#", ...), ... } end

-- The body of spawned tasks (and the main task): keeps the results for join.
local function spawn_body(t, fn, ...)
  t.res = pack(fn(...))
end

local function new_task(S, co)
  S.ntasks = S.ntasks + 1
  local t = setmetatable({ S = S, co = co, st = READY, r1 = nil, args = nil, cpend = false,
                        conn = nil, tmr = nil, ttok = 0, twhy = false,
                        joiners = nil, res = nil, err = nil, failed = false }, Task_mt)
  S.live[t] = true
  return t
end

-- A task running fn(...); results kept for join.
local function spawn(S, fn, ...)
  local t = new_task(S, co_create(spawn_body))
  t.args = pack(t, fn, ...)
  push(S, t)
  return t
end
M.spawn = spawn

-- A connection handler task: the coroutine is the handler itself, its only
-- argument the connection (passed as the first resume value), its results
-- dropped. No closure or argument table per connection.
local function spawn_handler(S, handler, conn)
  local t = new_task(S, co_create(handler))
  t.r1 = conn
  t.conn = conn
  conn.owner = t
  push(S, t)
  return t
end
M.spawn_handler = spawn_handler

local function errvalue_string(err)
  if type(err) == "table" and err.message ~= nil then return tostring(err.message) end
  return tostring(err)
end

local function report(S, t, err)
  local tb = traceback(t.co, errvalue_string(err))
  local h = S.on_error
  if h then
    local ok, e2 = pcall(h, err, tb, t)
    if ok then return end
    log.log(log.ERR, "on_error handler failed: ", tostring(e2), "\noriginal error: ", tb)
  else
    log.log(log.ERR, "task error: ", tb)
  end
end

-- Connections a task owns (t.owned: opened by ringline.connect in it, or
-- given to it with conn:setowner) close when it ends, reset if it raised.
-- Those among its return values are handed on instead: unowned until a
-- task collects the results with join or wait, which then owns them.
local function release_owned(t, ok)
  local owned = t.owned
  t.owned = nil
  local r = ok and t.res
  if r then
    for i = 1, r.n do
      local c = r[i]
      if type(c) == "table" and owned[c] and c.owner == t then
        owned[c] = nil
        c.owner = false
        c.heir_of = t
      end
    end
  end
  for c in pairs(owned) do
    if c.owner == t then
      c.owner = false
      if not c.closed then c:close(not ok and "reset" or nil) end
    end
  end
end

-- The results of finished task t for the task me that collects them (join,
-- wait): connections t returned become me's.
local function collect(me, t)
  if t.failed then return false, t.err end
  local r = t.res
  if not r then return true end
  for i = 1, r.n do
    local c = r[i]
    if type(c) == "table" and c.heir_of == t then
      c.heir_of = false
      if not c.closed then
        c.owner = me
        local owned = me.owned
        if not owned then owned = {}; me.owned = owned end
        owned[c] = true
      end
    end
  end
  return true, unpack(r, 1, r.n)
end
M.collect = collect

local function finish(S, t, ok, err)
  t.st = DEAD
  S.ntasks = S.ntasks - 1
  S.live[t] = nil
  timer_disarm(S, t)
  if not ok then
    t.failed, t.err = true, err
    if t == S.main then
      S.abort = "error"
    else
      report(S, t, err)
    end
  end
  local c = t.conn
  if c and not c.closed then
    c:close(not ok and "reset" or nil)
  end
  if t.owned then release_owned(t, ok) end
  local js = t.joiners
  if js then
    t.joiners = nil
    for i = 1, #js do wake(S, js[i], nil) end
  end
end

local function resume_task(S, t)
  local co = t.co
  S.current, S.cur_co = t, co
  t.st = RUNNING
  local ok, a
  local args = t.args
  if args then
    t.args = nil
    ok, a = co_resume(co, unpack(args, 1, args.n))
  else
    local why = t.r1
    t.r1 = nil
    ok, a = co_resume(co, why)
  end
  S.current, S.cur_co = nil, nil
  if ok then
    if a == SENTINEL then return end
    if co_status(co) ~= "dead" then
      -- A plain coroutine.yield at the top of a task: a cooperative yield.
      t.st = READY
      push(S, t)
      return
    end
    finish(S, t, true)
  else
    finish(S, t, false, a)
  end
end

-- Take the task at the head of the ready queue.
local function pop(S)
  local h = S.rq_head
  local i = band(h, S.rq_mask)
  local rq = S.rq
  local t = rq[i]
  rq[i] = nil
  h = h + 1
  if h == S.rq_tail then
    S.rq_head, S.rq_tail = 0, 0
  else
    S.rq_head = h
  end
  return t
end

function Task.join(t, timeout)
  local S = t.S
  local me = current(S, "task:join")
  if me == t then error("ringline: a task cannot join itself", 2) end
  if timeout ~= nil and type(timeout) ~= "number" then
    error("ringline: task:join: timeout must be a number of seconds", 2)
  end
  if t.st ~= DEAD then
    local js = t.joiners
    if not js then js = {}; t.joiners = js end
    js[#js + 1] = me
    if timeout then
      local id, err = timer_arm(S, me, timeout, "timeout")
      if not id then return nil, err end
    end
    local why
    repeat
      why = park(S, me)
    until why or t.st == DEAD
    timer_disarm(S, me)
    if why then
      js = t.joiners
      if js then
        for i = #js, 1, -1 do
          if js[i] == me then table.remove(js, i) break end
        end
      end
      return nil, why
    end
  end
  return collect(me, t)
end

-- The task's current blocking call (or its next one, if it is running or
-- queued) returns nil, "canceled". Returns false for a finished task.
function Task.cancel(t)
  local st = t.st
  if st == DEAD then return false end
  if st == PARKED then
    wake(t.S, t, "canceled")
  else
    t.cpend = true
  end
  return true
end

function Task.status(t)
  local st = t.st
  return st == DEAD and "dead" or st == RUNNING and "running" or st == READY and "ready" or "parked"
end

------------------------------------------------------------------------
-- ringline.coroutine: user coroutines that let scheduler yields through.
------------------------------------------------------------------------

local ucoro = {}
M.coroutine = ucoro

local resume_pass

-- After a resume of user coroutine co: SENTINEL means a blocking call inside
-- it parked the task; pass the yield outward and feed the wake-up back in.
local function after_resume(co, prev, ok, a, ...)
  local S = cur
  if ok and a == SENTINEL then
    if S then S.cur_co = prev end
    local why = co_yield(SENTINEL)
    return resume_pass(co, prev, why)
  end
  if S then S.cur_co = prev end
  return ok, a, ...
end

resume_pass = function(co, prev, ...)
  local S = cur
  if S then S.cur_co = co end
  return after_resume(co, prev, co_resume(co, ...))
end

function ucoro.resume(co, ...)
  local S = cur
  return resume_pass(co, S and S.cur_co, ...)
end

local function wrap_result(ok, ...)
  if not ok then error((...), 0) end
  return ...
end

function ucoro.wrap(fn)
  local co = co_create(fn)
  return function(...)
    return wrap_result(ucoro.resume(co, ...))
  end
end

ucoro.create = coroutine.create
ucoro.yield = coroutine.yield
ucoro.status = coroutine.status
ucoro.running = coroutine.running
ucoro.isyieldable = coroutine.isyieldable

------------------------------------------------------------------------
-- Worker state and the loop
------------------------------------------------------------------------

-- Lua-level configuration keys (not in struct rl_config).
local LUA_KEYS = { line_max = { 1, 2 ^ 31 - 1,
  "longest line or receiveuntil part buffered before \"too long\"" } }
M.LUA_KEYS = LUA_KEYS

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
    on_error = nil, abort = nil, deadline = nil,
    line_max = 1048576, hiwat = 0, lowat = 0,
    guards_out = 0,       -- guarded send parts not yet released (ringline.region)
  }
  C.rl_config_init(S.cfg)
  return S
end

-- Apply a table of configuration keys to S (all or nothing). lvl: the error level.
local function configure(S, t, lvl, skip)
  lvl = lvl + 1
  local tmp = ffi_new("struct rl_config")
  ffi.copy(tmp, S.cfg, ffi.sizeof(tmp))
  local line_max = S.line_max
  for k, v in pairs(t) do
    if not (skip and skip[k]) then
      if type(k) ~= "string" then
        error("ringline.configure: keys must be strings, got " .. type(k), lvl)
      end
      if type(v) ~= "number" or v ~= v or v % 1 ~= 0 then
        error("ringline.configure: " .. k .. ": expected an integer, got " .. tostring(v), lvl)
      end
      local lk = LUA_KEYS[k]
      if lk then
        if v < lk[1] or v > lk[2] then
          error(("ringline.configure: %s: %s is out of range (%d..%d)"):format(k, tostring(v),
            lk[1], lk[2]), lvl)
        end
        line_max = v
      else
        local rc = C.rl_config_set(tmp, k, v, S.msg, MSGLEN)
        if rc < 0 then error("ringline.configure: " .. ffi_string(S.msg), lvl) end
      end
    end
  end
  local rc = C.rl_config_validate(tmp, S.msg, MSGLEN)
  if rc < 0 then error("ringline.configure: " .. ffi_string(S.msg), lvl) end
  ffi.copy(S.cfg, tmp, ffi.sizeof(tmp))
  S.line_max = line_max
end

-- Create the C worker on first use, so configure() works until the first I/O.
start = function(S)
  local w = S.w
  if w then return w end
  if S.dead then error("ringline: the worker of this run is gone", 3) end
  local pw = ffi_new("struct rl_worker *[1]")
  ffi.fill(S.msg, MSGLEN)
  local rc = C.rl_worker_new(S.cfg, pw, S.msg, MSGLEN)
  if rc < 0 then
    local m = ffi_string(S.msg)
    error("ringline: cannot create the worker: " .. (m ~= "" and m or errstr(rc)), 3)
  end
  w = pw[0]
  S.w = w
  S.evs = ffi_new("struct rl_event[?]", NEVS)
  S.hiwat = S.cfg.send_high_watermark
  S.lowat = S.cfg.send_low_watermark
  local h = hooks.started
  if h then h(S, w) end
  return w
end
M.start = start

-- Event types handled by other modules: handlers[type] = fn(S, ev), set
-- with M.on_event at their load time (region: RL_EV_GUARD, udp: RL_EV_UDP).
local handlers = {}
M.handlers = handlers
function M.on_event(ty, fn) handlers[ty] = fn end

-- Inbox messages by kind: msg_handlers[kind] = fn(S, from, ptr, len); the
-- bytes at ptr are valid only during the call.
local msg_handlers = {}
M.msg_handlers = msg_handlers
function M.on_message(kind, fn) msg_handlers[kind] = fn end

local EV_MESSAGE = 10
handlers[EV_MESSAGE] = function(S, ev)
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

-- Dispatch one event: record results and wake the waiting task(s).
local function dispatch_one(S, ev)
  local conns, timers = S.conns, S.timers
  do
    local ty = ev.type
    if ty == EV_RECV then
      local c = conns[ev.slot]
      if c and c.gen == ev.gen then
        local t = c.rtask
        if t then wake(S, t, nil) end
      end
    elseif ty == EV_SEND then
      local c = conns[ev.slot]
      if c and c.gen == ev.gen then
        local nw = c.nw
        if nw == 1 then
          -- the usual single writer, without a loop (a loop that runs once
          -- would abort the trace: "leaving loop in root trace")
          local wq = c.wq
          local t = wq[1]
          wq[1] = nil
          c.nw = 0
          wake(S, t, nil)
        elseif nw > 1 then
          local wq = c.wq
          for j = 1, nw do
            local t = wq[j]
            wq[j] = nil
            wake(S, t, nil)
          end
          c.nw = 0
        end
      end
    elseif ty == EV_TIMER then
      local id = ev.slot
      local t = timers[id]
      if t and t.ttok == ev.data then
        timers[id] = nil
        t.tmr = nil
        local fire = t.fire   -- a ringline.timer handle, not a task
        if fire then fire(S, t) else wake(S, t, t.twhy or nil) end
      end
    elseif ty == EV_ACCEPTED then
      hooks.accepted(S, ev.slot, ev.gen, ev.data)
    elseif ty == EV_CLOSED then
      local slot = ev.slot
      local c = conns[slot]
      if c and c.gen == ev.gen then
        conns[slot] = nil
        c.closed = true
        c.freed = true
        local l = c.listener
        if l then l.nconns = l.nconns - 1 end
      end
    elseif ty == EV_CONNECTED then
      local tok = ev.data
      local t = S.connecting[tok]
      S.connecting[tok] = nil
      if t then
        t.cres, t.cslot, t.cgen = ev.res, ev.slot, ev.gen
        wake(S, t, nil)
      elseif ev.res >= 0 then
        -- Nobody waits any more (the connecting task was canceled and the
        -- connect completed before rl_connect_cancel reached it): drop it.
        C.rl_conn_close(S.w, ev.slot, ev.gen, 1)
      end
    elseif ty == EV_FD then
      local c = conns[ev.slot]
      if c and c.gen == ev.gen then
        local res = ev.res
        c.fdpending = false
        if res >= 0 then c.fd = res else c.fderr = errstr(res) end
        local fdw = c.fdw
        if fdw then
          c.fdw = false
          for j = 1, #fdw do wake(S, fdw[j], nil) end
        end
      end
    elseif ty == EV_LISTENER then
      local l = S.listeners[ev.slot]
      if l then
        log.log(log.WARN, "listener ", tostring(l.addr), " stopped: ", errstr(ev.res))
        l:_drop()
      end
    else
      -- events of the other modules (guards, UDP, inbox messages)
      local h = handlers[ty]
      if h then h(S, ev) end
    end
  end
end

local function poll(S, w, tmo)
  local n = C.rl_worker_poll(w, S.evs, NEVS, tmo)
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
-- It is written as one flat loop doing one step per iteration (dispatch an
-- event, resume a task, or poll): a nested loop with a trip count of one or
-- two would make LuaJIT abort its traces ("leaving loop in root trace").
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
      polling = true
    else
      polling = false
      local ready = S.rq_tail ~= S.rq_head
      if not ready and S.ntasks == 0 and S.nlisteners == 0 then
        -- hooks.ending (ringline.timer): run pending timers as premature;
        -- true when that started tasks, so the run goes on until they end
        local h = hooks.ending
        if not (h and h(S)) then return end
        ready = true
      end
      local w = S.w or start(S)
      local tmo = ready and 0 or -1
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

-- After a normal end: close what the script left open, let graceful closes
-- drain (bounded), so destroy finds an idle worker.
-- Other modules' resources to close at the end of a run (UDP sockets):
-- fn(S), registered with M.on_drain at their load time.
local drainers = {}
function M.on_drain(fn) drainers[#drainers + 1] = fn end

-- Functions a graceful stop (ringline.worker) runs when it begins, so other
-- modules' servers stop waiting too (UDP sockets): fn(S), registered with
-- M.on_stop at their load time.
local stoppers = {}
M.stoppers = stoppers
function M.on_stop(fn) stoppers[#stoppers + 1] = fn end

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
    if left <= 0 then break end
    poll_dispatch(S, w, math_max(1, math_ceil(left * 1000)))
  end
end

-- Which tasks were still waiting: the first thing one wants to know when a
-- run times out.
local function dump_tasks(S)
  log.log(log.WARN, "ringline.run: timeout with ", S.ntasks, " task(s) alive")
  local k = 0
  for t in pairs(S.live) do
    k = k + 1
    if k > 10 then break end
    log.log(log.WARN, traceback(t.co, "task " .. tostring(t) .. " (" .. t:status() .. ")"))
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
    drain(S, limit)
  end
  local h = hooks.stopping
  if h then h(S, w) end
  for _, c in pairs(S.conns) do c.closed = true end
  for _, l in pairs(S.listeners) do l.closed = true end
  S.dead = true
  S.w = nil
  local rc = C.rl_worker_destroy(w)
  -- hooks.destroyed (ringline.region): the anchors of guards the kernel
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
  if cur then error("ringline.run: a worker is already running on this thread", 2) end
  local S = new_state()
  if opts then
    if opts.timeout ~= nil and (type(opts.timeout) ~= "number" or opts.timeout <= 0) then
      error("ringline.run: opts.timeout must be a positive number of seconds", 2)
    end
    if opts.on_error ~= nil and type(opts.on_error) ~= "function" then
      error("ringline.run: opts.on_error must be a function", 2)
    end
    S.on_error = opts.on_error
    S.drain_timeout = opts.drain_timeout
    configure(S, opts, 1, { timeout = true, on_error = true, drain_timeout = true })
  end
  local main = spawn(S, fn, ...)
  S.main = main
  cur = S
  local t0
  if opts and opts.timeout then
    -- The deadline needs the loop clock, so the worker starts now.
    local ok, err = pcall(start, S)
    if not ok then cur = nil; error(err, 2) end
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
  cur = nil
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

-- The worker state of the run in progress (nil outside ringline.run).
function M.state() return cur end

-- The state, or a misuse error for API calls made outside ringline.run.
function M.need(what)
  local S = cur
  if not S then error("ringline: " .. what .. " must be called inside ringline.run", 3) end
  return S
end

M.configure = configure
M.errvalue_string = errvalue_string

return M
