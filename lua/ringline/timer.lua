-- ringline.timer: timer.at / timer.every (OpenResty's ngx.timer.at/every,
-- with a handle to cancel).
--
-- A pending timer is one small table (the handle) and one entry of the
-- core's timer heap: no task and no coroutine exists until it fires, so
-- 100k idle timers cost what their handles cost. The handle sits in
-- S.timers under its core timer id like a sleeping task would; its `fire`
-- method (found through the metatable, which tasks do not have) tells the
-- dispatcher to call it instead of waking a task. Firing spawns
-- fn(premature, ...) as a new task; an `every` timer is re-armed first, on
-- a fixed schedule (due + interval), so runs may overlap if fn takes longer
-- than the interval, as in OpenResty.
--
-- Shutdown. Pending timers do not keep a run alive: when the main task and
-- every other task have finished and no listener is open, the pending
-- timers (at and every alike) fire once more with premature = true, each in
-- its own task, and the run ends when those tasks have. From then on
-- timer.at/every return nil, "process exiting". (ringline.exit, when it
-- comes, stops the run through the same path: the ending hook.)
local C = require "ringline.lib"
local sched = require "ringline.sched"
local check = require "ringline.check"

local type, select, error, setmetatable = type, select, error, setmetatable
local unpack = unpack or table.unpack
local timer_arm, timer_disarm, spawn = sched.timer_arm, sched.timer_disarm, sched.spawn

local _ = C.rl_timer_add, C.rl_timer_cancel, C.rl_worker_now  -- resolved at load, not in a trace

local M = {}

local Timer = {}
local mt = { __index = Timer, __name = "ringline.timer" }
M.mt = mt

local function pack(...) return { n = select("#", ...), ... } end

local function run(S, h, premature)
  local a = h.args
  if a then
    spawn(S, h.fn, premature, unpack(a, 1, a.n))
  else
    spawn(S, h.fn, premature)
  end
end

-- Called by the dispatcher when the handle's core timer fired (the entry in
-- S.timers and h.timer_id are already cleared).
function Timer.fire(S, h)
  local ival = h.ival
  if ival then
    local now = C.rl_worker_now(S.w)
    local due = h.due + ival
    if due < now then due = now end   -- late (a long stall): catch up once, not in a burst
    h.due = due
    if not timer_arm(S, h, due - now, false) then
      S.ntimers = S.ntimers - 1
    end
  else
    S.ntimers = S.ntimers - 1
  end
  run(S, h, false)
end

-- True if the timer was pending and will not run any more.
function Timer.cancel(h)
  local S = h.S
  if not h.timer_id or S.dead then return false end
  timer_disarm(S, h)
  S.ntimers = S.ntimers - 1
  return true
end

function Timer.pending(h)
  return h.timer_id ~= nil and not h.S.dead
end

local function add(what, S, delay, ival, fn, ...)
  if type(fn) ~= "function" then error("ringline.timer." .. what .. ": expected a function", 3) end
  if S.exiting then return nil, "process exiting" end
  local w = S.w or sched.start(S)
  local h = setmetatable({ S = S, fn = fn, args = select("#", ...) > 0 and pack(...) or false,
                           ival = ival, due = C.rl_worker_now(w) + delay,
                           timer_id = nil, timer_token = 0, timer_reason = false }, mt)
  local id, err = timer_arm(S, h, delay, false)
  if not id then return nil, err end
  S.ntimers = (S.ntimers or 0) + 1
  return h
end

-- h, err = timer.at(delay, fn, ...): fn(premature, ...) in a new task after
-- delay seconds.
function M.at(delay, fn, ...)
  check.seconds(delay, "ringline.timer.at: delay", true)
  return add("at", sched.need("ringline.timer.at"), delay, false, fn, ...)
end

-- h, err = timer.every(interval, fn, ...): fn(premature, ...) in a new task
-- every interval seconds, the first time after one interval.
function M.every(interval, fn, ...)
  if check.seconds(interval, "ringline.timer.every: interval", true) == 0 then
    error("ringline.timer.every: interval must be seconds > 0", 2)
  end
  return add("every", sched.need("ringline.timer.every"), interval, interval, fn, ...)
end

-- Timers armed and not yet fired (every timers count until canceled).
function M.pending_count()
  return sched.need("ringline.timer.pending_count").ntimers or 0
end

-- The end of a run: every pending timer runs once more, premature.
local function on_ending(S)
  S.exiting = true
  local n = S.ntimers
  if not n or n == 0 then return false end
  local list, k = {}, 0
  for _, h in pairs(S.timers) do
    if h.fire then
      k = k + 1
      list[k] = h
    end
  end
  S.ntimers = 0
  -- in the order they were due, as they would have fired
  table.sort(list, function(a, b) return a.due < b.due end)
  for i = 1, k do
    local h = list[i]
    timer_disarm(S, h)
    run(S, h, true)
  end
  return k > 0
end

-- ringline (init.lua) installs the ending hook (ringline.sched lists them).
function M.attach(sched_)
  sched_.hook("ending", on_ending)
end

return M
