-- ringline.task: tasks, the ready queue, parking and waking, the timer a
-- task waits with, and ringline.coroutine. ringline.sched's top comment
-- describes the model; its loop resumes the tasks queued here.
--
-- The yield sentinel
-- ------------------
-- Every scheduler yield passes SENTINEL, a value no user code can see. A user
-- coroutine made with ringline.coroutine.wrap/resume that yields SENTINEL
-- (because something inside it blocked) passes it on outward and hands the
-- wake-up back in, so user generators inside handlers cannot swallow the
-- scheduler's resumptions. A blocking call from inside a plain coroutine is
-- detected (S.cur_co) and raised as misuse instead of corrupting the task.
-- Parking, resuming and ringline.coroutine all live here so that SENTINEL
-- stays private to this file.
--
-- State
-- -----
-- The module keeps only `cur`, the S of the run in progress on this thread,
-- which ringline.sched's run sets on entry and restores on exit.
local bit = require "bit"
local C = require "ringline.lib"
local errors = require "ringline.errors"
local log = require "ringline.log"
local config = require "ringline.config"
local check = require "ringline.check"
local watchdog = require "ringline.watchdog"

-- The plain coroutine functions, even after ringline.ngx put ringline's
-- pass-through resume/wrap into the global table (as OpenResty does): it
-- keeps the originals in the registry, which a module reload (busted's
-- insulation) does not reset.
local rawco = debug.getregistry()["ringline.rawco"] or coroutine
local co_create, co_resume, co_yield = rawco.create, rawco.resume, rawco.yield
local co_status, co_running = rawco.status, rawco.running
local band = bit.band
local select, type, error, tostring, setmetatable = select, type, error, tostring, setmetatable
local unpack = unpack or table.unpack
local errstr = errors.errstr
local ENOSPC = errors.ENOSPC
local traceback = debug.traceback
local start = config.start

local M = {}

-- Task states.
local READY, RUNNING, PARKED, DEAD = 1, 2, 3, 4
M.READY, M.RUNNING, M.PARKED, M.DEAD = READY, RUNNING, PARKED, DEAD

local SENTINEL = setmetatable({}, { __name = "ringline.yield",
  __tostring = function() return "ringline.yield" end })

local cur = nil           -- the worker state of the run in progress

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
  local st = t.state
  if st == PARKED then
    t.state = READY
    t.wake_reason = why
    push(S, t)
  elseif st == READY and why ~= nil and t.wake_reason == nil then
    t.wake_reason = why
  end
end
M.wake = wake

------------------------------------------------------------------------
-- Parking
------------------------------------------------------------------------

-- A blocking call from a coroutine ringline did not make cannot park the
-- task: it raises, naming the user's line. Calls check this before they
-- register anything for their wait (a timer, a reader, a joiner), so a
-- misuse leaves nothing behind.
local function check_yieldable(S)
  if co_running() ~= S.cur_co then
    error("ringline: blocking call inside a coroutine not made by ringline.coroutine", errors.caller_level())
  end
end

-- The running task of a blocking API call, or a misuse error naming it.
local function current(S, what)
  local t = S and S.current
  if not t then
    error("ringline: " .. what .. " must be called from a ringline task", 3)
  end
  check_yieldable(S)
  return t
end
M.current = current

-- The same for a call that only sometimes waits, checked when it is about
-- to: `msg` says what needs a task.
local function waiter(S, msg)
  local t = S.current
  if not t then error("ringline: " .. msg, errors.caller_level()) end
  check_yieldable(S)
  return t
end
M.waiter = waiter

-- Before the running task gives way: misuse raises; "canceled" when it was
-- canceled while running or queued (this blocking call ends at once).
local function may_yield(S, t)
  check_yieldable(S)
  if t.cancel_pending then
    t.cancel_pending = false
    return "canceled"
  end
end

-- Park the running task until something wakes it; returns the reason.
local function park(S, t)
  local c = may_yield(S, t)
  if c then return c end
  t.state = PARKED
  local why = co_yield(SENTINEL)
  if why == "canceled" then t.cancel_pending = false end
  return why
end
M.park = park

-- Yield to the other ready tasks (sleep(0)).
local function yield_now(S, t)
  local c = may_yield(S, t)
  if c then return c end
  t.state = READY
  t.wake_reason = nil
  push(S, t)
  return (co_yield(SENTINEL))
end
M.yield_now = yield_now

------------------------------------------------------------------------
-- Timers. A task holds at most one: a deadline for the call it is in
-- (why = "timeout") or the timer it sleeps on (why = false). The token
-- guards against a fired id being reused before its event is dispatched.
------------------------------------------------------------------------

-- S.timers is keyed by the core's timer id plus 2^32: ids of a first
-- generation are small integers that would give the table an array part,
-- and a later id (generation bits set) looked up in a table with an array
-- part aborts every trace through it ("NYI: mixed sparse/dense table").
-- Offset, no key is ever an array index.
local TIMER_KEY = 4294967296
M.TIMER_KEY = TIMER_KEY

local function timer_arm(S, t, delay, why)
  local tok = S.tok + 1
  if tok > 0xffffffff then tok = 1 end
  S.tok = tok
  -- NaN and negatives fire at once; infinities wait ~31 years (the
  -- callers reject what is misuse; this keeps the core's clock arithmetic
  -- finite whatever reaches it)
  if not (delay >= 0) then delay = 0 elseif delay > 1e9 then delay = 1e9 end
  local id = C.rl_timer_add(S.w or start(S), delay, tok)
  if id < 0 then
    -- -ENOSPC: max_timers are armed; the OS text ("no space left on
    -- device") would send a user looking at disks
    return nil, id == -ENOSPC and "too many timers" or errstr(id)
  end
  S.timers[id + TIMER_KEY] = t
  t.timer_id, t.timer_token, t.timer_reason = id, tok, why
  return id
end
M.timer_arm = timer_arm

local function timer_disarm(S, t)
  local id = t.timer_id
  if id then
    t.timer_id = nil
    local k = id + TIMER_KEY
    if S.timers[k] == t then S.timers[k] = nil end
    C.rl_timer_cancel(S.w, id)
  end
end
M.timer_disarm = timer_disarm

------------------------------------------------------------------------
-- The wait. Every blocking call of the API (receive, send, flush, connect,
-- resolve, join, wait, semaphore, channel, sleep, UDP, conn:fd, the drain
-- probe, the slab wait) waits in the same three steps, in this order:
--
--   local ok, err = wait_begin(S, t, timeout)  -- arm the call's deadline
--   ... register t where the event that ends the wait will find it ...
--   local why = wait_park(S, t [, ready, arg]) -- as often as the call needs
--   ... deregister t ...
--   wait_end(S, t)                              -- on every path out
--
-- t comes from current() or waiter(), which refuse a plain coroutine before
-- anything is registered. A wait with no deadline of its own (ringline.wait,
-- conn:fd, a connect attempt, whose deadline is the kernel's, and the drain
-- probe, which parks inside a receive's) only parks: wait_end would disarm
-- an enclosing call's deadline. wait_begin arms a core timer only for a timeout
-- (seconds; nil or false: none), one per call: a call that parks several
-- times (a receive waiting for more bytes) keeps the one deadline, and
-- with_data, which runs user code between waits, carries it across
-- separate waits with todeadline/totimeout (cqueues' names). When it fires
-- it wakes t with "timeout". wait_end disarms it unless it has fired.
--
-- wait_park returns why t was woken: nil ("re-check your condition"), or a
-- reason ("timeout", "canceled", "closed", ...). With ready it parks again
-- until ready(arg) holds after a wake-up (then nil) or a reason comes; the
-- first park is made before its loop, so a caller's trace ends at the yield
-- instead of aborting on a loop it has not seen loop yet. Whether something
-- that finished in the same batch as a reason wins over it is the caller's
-- to say (join, wait, semaphore and channel let it win).
------------------------------------------------------------------------

-- Deadlines are lazy: a task keeps its core timer across waits. A wait
-- whose deadline is no earlier than the armed timer keeps it; when the
-- timer fires (sched's on_timer, below: deadline_fired) a task past its
-- wait's deadline is woken with "timeout", one still short of it gets the
-- timer again for the rest, and one in no timed wait lets it go. So a
-- request-response connection with a 60 s read timeout arms one core timer
-- a minute, not one per request (arming and cancelling each wait cost ~8%
-- of an HTTP hello's server CPU). finish() cancels a dead task's timer.
local function wait_begin(S, t, timeout)
  if not timeout then
    t.wait_deadline = false
    return true
  end
  local d = C.rl_worker_now(S.w or start(S)) + timeout
  t.wait_deadline = d
  if t.timer_id then
    if t.timer_at <= d then return true end   -- it comes first and re-checks
    timer_disarm(S, t)
  end
  local id, err = timer_arm(S, t, timeout, "timeout")
  if not id then
    t.wait_deadline = false
    return nil, err
  end
  t.timer_at = d
  return true
end
M.wait_begin = wait_begin

-- The core timer of task t fired (its id and S.timers entry are cleared).
local function deadline_fired(S, t)
  local d = t.wait_deadline
  if not d then return end                  -- in no timed wait: let it go
  local now = C.rl_worker_now(S.w)
  if now + 1e-6 >= d then
    wake(S, t, "timeout")
  elseif timer_arm(S, t, d - now, "timeout") then
    t.timer_at = d
  end
end
M.deadline_fired = deadline_fired

local function wait_park(S, t, ready, arg)
  local why = park(S, t)
  if ready then
    while not why and not ready(arg) do why = park(S, t) end
  end
  return why
end
M.wait_park = wait_park

local function wait_end(S, t)
  t.wait_deadline = false                   -- the timer stays armed (lazy)
end
M.wait_end = wait_end

-- The deadline of a timeout (seconds) on the loop clock, and back: nil
-- stays nil (no deadline).
function M.todeadline(S, timeout)
  return timeout and C.rl_worker_now(S.w or start(S)) + timeout or nil
end
function M.totimeout(S, deadline)
  return deadline and deadline - C.rl_worker_now(S.w) or nil
end

-- A ready() that never holds: wait until a reason comes (sleep).
local function never() return false end
M.never = never

------------------------------------------------------------------------
-- Tasks
------------------------------------------------------------------------

-- Bursts of fewer tasks than this end without a trim (sched.lua).
local TRIM_MIN = 256

local Task = {}
local Task_mt = { __index = Task, __name = "ringline.task" }
M.Task_mt = Task_mt

local function pack(...) return { n = select("#", ...), ... } end

-- The body of spawned tasks (and the main task): keeps the results for join.
local function spawn_body(t, fn, ...)
  t.res = pack(fn(...))
end

-- The coroutine is made when the task first runs (resume_task), not here:
-- a burst of spawns then allocates only the task tables, and a task that
-- ends at its first run never has more than one coroutine alive with it.
-- Thousands of live coroutines are what makes a spawn loop slow (LuaJIT's
-- collector traverses every live coroutine again in each cycle's atomic
-- phase): 1e6 spawns took 5.3 s with one coroutine each, ~0.6 s without.
local locate = watchdog.locate

-- fn: the coroutine's body; loc: where the task starts (the watchdog's id).
local function new_task(S, fn, loc)
  local n = S.ntasks + 1
  S.ntasks = n
  if n > S.task_peak then S.task_peak = n end
  local t = setmetatable({ S = S, co = false, fn = fn, loc = loc, state = READY, wake_reason = nil, args = nil, cancel_pending = false,
                        conn = nil, timer_id = nil, timer_token = 0, timer_reason = false,
                        wait_deadline = false, timer_at = 0,
                        joiners = nil, res = nil, err = nil, failed = false }, Task_mt)
  S.live[t] = true
  return t
end

-- A task running fn(...); results kept for join.
local function spawn(S, fn, ...)
  local t = new_task(S, spawn_body, locate(fn))
  t.args = pack(t, fn, ...)
  push(S, t)
  return t
end
M.spawn = spawn

-- ringline.spawn: a task, or nil, "too many tasks" at max_tasks (the
-- runtime's own tasks - signal handlers, message delivery - are not
-- refused, but count).
function M.spawn_user(S, fn, ...)
  if S.ntasks >= S.max_tasks then
    S.tasks_refused = S.tasks_refused + 1
    return nil, "too many tasks"
  end
  return spawn(S, fn, ...)
end

-- A connection handler task: the coroutine is the handler itself, its only
-- argument the connection (passed as the first resume value), its results
-- dropped. No closure or argument table per connection.
-- named: the function the watchdog names (the listener's handler when
-- handler wraps it).
local function spawn_handler(S, handler, conn, named)
  local t = new_task(S, handler, locate(named or handler))
  t.wake_reason = conn
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

-- "host:port" of a connection's peer when its descriptor is known without
-- waiting; nil otherwise (an accepted connection's descriptor may still be
-- on its way from the kernel: ask again from a task).
local function peer_now(c)
  if c.closed then return nil end
  local fd = c.fd
  if not fd then
    if c.fdpending then return nil end
    local rc = C.rl_conn_fd(c.w, c.slot, c.gen)
    if rc < 0 then
      if rc == -errors.EAGAIN then c.fdpending = true end
      return nil
    end
    c.fd, fd = rc, rc
  end
  local S = c.S
  local port = C.rl_fd_name(fd, 1, S.namebuf, 256)
  if port < 0 then return nil end
  local h = require("ffi").string(S.namebuf)
  return (h:find(":", 1, true) and "[" .. h .. "]" or h) .. ":" .. tostring(port)
end

-- A raising task's error, logged once with its traceback (and, for a
-- connection's handler, the peer's address), unless on_error takes it.
local function report(S, t, err)
  local tb = traceback(t.co, errvalue_string(err))
  local h = S.on_error
  if h then
    local ok, e2 = pcall(h, err, tb, t)
    if ok then return end
    log.log(log.ERR, "on_error handler failed: ", tostring(e2), "\noriginal error: ", tb)
    return
  end
  local c = t.conn
  local peer = c and peer_now(c)
  if c and not peer and not c.closed and c.fdpending then
    -- the address needs a wait: a task of its own takes the connection
    -- (so it is not reset before), logs the error and then resets it
    t.conn = nil
    c.owner = false
    spawn(S, function()
      local host, port = c:getpeername()
      local p = host and ((host:find(":", 1, true) and "[" .. host .. "]" or host) .. ":" .. port)
      log.log(log.ERR, "task error (peer ", p or "?", "): ", tb)
      if not c.closed then c:close("reset") end
    end)
    return
  end
  log.log(log.ERR, "task error", peer and (" (peer " .. peer .. ")") or "", ": ", tb)
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

-- Task t owns connection c from now on: c is closed when t ends.
local function own(t, c)
  c.owner = t
  local owned = t.owned
  if not owned then owned = {}; t.owned = owned end
  owned[c] = true
end
M.own = own

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
      if not c.closed then own(me, c) end
    end
  end
  return true, unpack(r, 1, r.n)
end
M.collect = collect

local function finish(S, t, ok, err)
  t.state = DEAD
  local n = S.ntasks - 1
  S.ntasks = n
  -- a burst ended (tasks fell below a quarter of their peak): the loop
  -- gives the memory back when it next goes idle (sched.lua, trim)
  if n * 4 < S.task_peak and S.task_peak >= TRIM_MIN then
    S.trim_due = true
    S.task_peak = n
  end
  S.live[t] = nil
  wait_end(S, t)     -- a task that raised in a wait leaves no deadline behind
  if t.timer_id then timer_disarm(S, t) end   -- nor a lazily kept timer
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
  S.wd.loc = t.loc          -- what the watchdog names if this never yields
  local co = t.co
  if not co then
    co = co_create(t.fn)
    t.co, t.fn = co, false
  end
  S.current, S.cur_co = t, co
  t.state = RUNNING
  local ok, a
  local args = t.args
  if args then
    t.args = nil
    ok, a = co_resume(co, unpack(args, 1, args.n))
  else
    local why = t.wake_reason
    t.wake_reason = nil
    ok, a = co_resume(co, why)
  end
  S.current, S.cur_co = nil, nil
  if ok then
    if a == SENTINEL then return end
    if co_status(co) ~= "dead" then
      -- A plain coroutine.yield at the top of a task: a cooperative yield.
      t.state = READY
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

-- Take me out of t's joiners (a join or wait that ended otherwise).
local function remove_joiner(t, me)
  local js = t.joiners
  if js then
    for i = #js, 1, -1 do
      if js[i] == me then table.remove(js, i) break end
    end
  end
end
M.remove_joiner = remove_joiner

-- wait_park's ready for a join: t has finished.
local function finished(t) return t.state == DEAD end
M.finished = finished

function Task.join(t, timeout)
  local S = t.S
  local me = current(S, "task:join")
  if me == t then error("ringline: a task cannot join itself", 2) end
  check.seconds(timeout, "task:join: timeout")
  -- 0: do not wait (as semaphore:wait(0) and the channel calls)
  if timeout == 0 and t.state ~= DEAD then return nil, "timeout" end
  if t.state ~= DEAD then
    local ok, err = wait_begin(S, me, timeout)
    if not ok then return nil, err end
    local js = t.joiners
    if not js then js = {}; t.joiners = js end
    js[#js + 1] = me
    local why = wait_park(S, me, finished, t)
    wait_end(S, me)
    -- A task that ended wins over a reason that came in the same batch (a
    -- timeout firing): its results (and connections it hands on) are not
    -- lost.
    if why and t.state ~= DEAD then
      remove_joiner(t, me)
      return nil, why
    end
  end
  return collect(me, t)
end

-- The task's current blocking call (or its next one, if it is running or
-- queued) returns nil, "canceled". Returns false for a finished task.
function Task.cancel(t)
  local st = t.state
  if st == DEAD then return false end
  if st == PARKED then
    wake(t.S, t, "canceled")
  else
    t.cancel_pending = true
  end
  return true
end

function Task.status(t)
  local st = t.state
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

ucoro.create = rawco.create
ucoro.yield = rawco.yield
ucoro.status = rawco.status
ucoro.running = rawco.running
ucoro.isyieldable = rawco.isyieldable

------------------------------------------------------------------------
-- The run in progress
------------------------------------------------------------------------

-- The worker state of the run in progress (nil outside ringline.run).
function M.state() return cur end

-- ringline.sched's run: S on entry, nil on exit.
function M.set_state(S) cur = S end

-- The state, or a misuse error for API calls made outside ringline.run.
function M.need(what)
  local S = cur
  if not S then error("ringline: " .. what .. " must be called inside ringline.run", 3) end
  return S
end

-- For ringline.sched's loop.
M.pop, M.resume_task = pop, resume_task
M.errvalue_string = errvalue_string

return M
