-- ringline.sync: waiting on tasks and between tasks of one worker:
-- ringline.wait (the first of several tasks to finish), semaphores and
-- bounded channels.
--
-- Waiters queue in FIFO order as small records {t = task, ok, v}. Whoever
-- satisfies a waiter (post, put, get) takes the first record whose task is
-- still waiting, marks it done (ok = true, with the value) and wakes it; the
-- woken task finds its record done and returns. A waiter whose wait ended
-- otherwise (timeout, cancel) leaves the queue: its record is marked gone
-- and skipped when it reaches the front. A task already woken with a reason
-- (the timeout or the cancel fired, it has not run yet) is skipped too, so
-- a post never goes to a task that is about to return "timeout", and a
-- cancel is never lost to a grant.
local sched = require "ringline.sched"
local check = require "ringline.check"

local type, select, error, getmetatable, setmetatable = type, select, error, getmetatable, setmetatable
local wake, current, need = sched.wake, sched.current, sched.need
local wait_begin, wait_park, wait_end = sched.wait_begin, sched.wait_park, sched.wait_end
local PARKED, READY, DEAD = sched.PARKED, sched.READY, sched.DEAD
local Task_mt = sched.Task_mt
local remove_joiner = sched.remove_joiner

local M = {}

local function misuse(msg, lvl)
  error("ringline: " .. msg, lvl + 1)
end

local function check_timeout(timeout, what)
  check.seconds(timeout, what .. ": timeout")
end

------------------------------------------------------------------------
-- FIFO wait queues
------------------------------------------------------------------------

local function q_new()
  return { h = 1, t = 0, n = 0 }    -- records at [h..t]; n = those still waiting
end

local function q_push(q, rec)
  local t = q.t + 1
  q.t = t
  q[t] = rec
  q.n = q.n + 1
end

-- A task that can still be satisfied: parked, or queued without a reason.
local function waiting(t)
  local st = t.state
  return st == PARKED or (st == READY and t.wake_reason == nil)
end

-- The first record whose task still waits, taken off the queue; nil if none.
local function q_take(q)
  local h = q.h
  while h <= q.t do
    local rec = q[h]
    q[h] = nil
    h = h + 1
    local t = rec.t
    if t then
      rec.t = false
      q.n = q.n - 1
      if waiting(t) then
        q.h = h
        return rec, t
      end
      -- woken with a timeout or cancel: it returns that, finding rec not done
    end
  end
  q.h, q.t = 1, 0
  return nil
end

-- The waiter of rec gives up (timeout, cancel, close).
local function q_leave(q, rec)
  if rec.t then
    rec.t = false
    q.n = q.n - 1
  end
end

-- wait_park's ready for a queued waiter: its record is done.
local function rec_done(rec) return rec.ok end

-- Park the running task t in queue q until its record is done or the wait
-- ends otherwise. Returns rec.ok, or nil and the reason.
local function q_wait(S, q, t, rec, timeout)
  local ok, err = wait_begin(S, t, timeout)
  if not ok then return nil, err end
  q_push(q, rec)
  local why = wait_park(S, t, rec_done, rec)
  wait_end(S, t)
  -- A done record wins over a reason that came later (a timeout firing in
  -- the same batch): what it was given is not lost. A cancel that came
  -- after the record was done stays pending for the next blocking call.
  if rec.ok then return true end
  q_leave(q, rec)
  return nil, why
end

------------------------------------------------------------------------
-- ringline.wait
------------------------------------------------------------------------

-- wait_park's ready for ringline.wait: the first of the tasks ts that has
-- finished, if any.
local function first_finished(ts)
  for i = 1, #ts do
    local t = ts[i]
    if t.state == DEAD then return t end
  end
end

-- ok, res... = wait(t1, t2, ...): the results of the first task to finish
-- (as join gives them: true, results, or false, err), or nil, "canceled".
function M.wait(...)
  local n = select("#", ...)
  if n == 0 then misuse("ringline.wait: expected one or more tasks", 2) end
  local ts = { ... }
  local S = need("ringline.wait")
  local me = current(S, "ringline.wait")
  for i = 1, n do
    local t = ts[i]
    if getmetatable(t) ~= Task_mt then misuse("ringline.wait: argument " .. i .. " is not a task", 2) end
    if t == me then misuse("ringline.wait: a task cannot wait for itself", 2) end
  end
  for i = 1, n do
    local t = ts[i]
    if t.state == DEAD then return sched.collect(me, t) end
  end
  for i = 1, n do
    local t = ts[i]
    local js = t.joiners
    if not js then js = {}; t.joiners = js end
    js[#js + 1] = me
  end
  local why = wait_park(S, me, first_finished, ts)   -- no deadline
  local done = first_finished(ts)
  for i = 1, n do remove_joiner(ts[i], me) end
  if why and not done then return nil, why end -- a task that ended wins, as in join
  return sched.collect(me, done)
end

------------------------------------------------------------------------
-- Semaphores (ngx.semaphore's meaning)
------------------------------------------------------------------------

local Sema = {}
local sema_mt = { __index = Sema, __name = "ringline.semaphore" }
M.sema_mt = sema_mt

function M.semaphore(n)
  if n == nil then n = 0 end
  if type(n) ~= "number" or n < 0 or n % 1 ~= 0 then
    misuse("ringline.semaphore: expected a count >= 0", 2)
  end
  return setmetatable({ n = n, q = q_new() }, sema_mt)
end

-- Add n (default 1) resources; waiters are served first come, first served.
function Sema.post(s, n)
  if n == nil then n = 1 end
  if type(n) ~= "number" or n < 1 or n % 1 ~= 0 then misuse("semaphore:post: expected a count >= 1", 2) end
  local count = s.n + n
  local q = s.q
  if q.n > 0 then
    local S = need("semaphore:post")
    while count > 0 do
      local rec, t = q_take(q)
      if not rec then break end
      count = count - 1
      rec.ok = true
      wake(S, t, nil)
    end
  end
  s.n = count
  return true
end

-- Take one resource, waiting up to timeout seconds (nil = no limit, 0 =
-- do not wait). Returns true, or nil and "timeout" / "canceled".
function Sema.wait(s, timeout)
  check_timeout(timeout, "semaphore:wait")
  local q = s.q
  if s.n > 0 and q.n == 0 then
    s.n = s.n - 1
    return true
  end
  if timeout == 0 then return nil, "timeout" end
  local S = need("semaphore:wait")
  local t = current(S, "semaphore:wait")
  return q_wait(S, q, t, { t = t, ok = false }, timeout)
end

-- Resources available, or minus the number of waiting tasks.
function Sema.count(s)
  return s.n - s.q.n
end

------------------------------------------------------------------------
-- Channels
------------------------------------------------------------------------

local Chan = {}
local chan_mt = { __index = Chan, __name = "ringline.channel" }
M.chan_mt = chan_mt

-- A FIFO of at most capacity values (0: unbuffered, every put waits for
-- its get).
function M.channel(capacity)
  if capacity == nil then capacity = 0 end
  if type(capacity) ~= "number" or capacity < 0 or capacity % 1 ~= 0 then
    misuse("ringline.channel: expected a capacity >= 0", 2)
  end
  return setmetatable({ cap = capacity, buf = {}, bh = 1, bt = 0, getq = q_new(), putq = q_new(),
                        closed = false }, chan_mt)
end

local function buf_push(ch, v)
  local bt = ch.bt + 1
  ch.bt = bt
  ch.buf[bt] = v
end

local function buf_shift(ch)
  local bh = ch.bh
  local buf = ch.buf
  local v = buf[bh]
  buf[bh] = nil
  if bh == ch.bt then
    ch.bh, ch.bt = 1, 0
  else
    ch.bh = bh + 1
  end
  return v
end

-- Put v (not nil), waiting up to timeout seconds for room. Returns true, or
-- nil and "closed" / "timeout" / "canceled" (then v was not put).
function Chan.put(ch, v, timeout)
  if v == nil then misuse("channel:put: cannot put nil", 2) end
  check_timeout(timeout, "channel:put")
  if ch.closed then return nil, "closed" end
  local getq = ch.getq
  if getq.n > 0 then
    -- a getter waits, so the buffer is empty: hand v over directly
    local rec, t = q_take(getq)
    if rec then
      rec.ok, rec.v = true, v
      wake(need("channel:put"), t, nil)
      return true
    end
  end
  if ch.bt - ch.bh + 1 < ch.cap then
    buf_push(ch, v)
    return true
  end
  if timeout == 0 then return nil, "timeout" end
  local S = need("channel:put")
  local t = current(S, "channel:put")
  return q_wait(S, ch.putq, t, { t = t, ok = false, v = v }, timeout)
end

-- The oldest value, waiting up to timeout seconds for one. Returns it, or
-- nil and "closed" (closed and empty) / "timeout" / "canceled".
function Chan.get(ch, timeout)
  check_timeout(timeout, "channel:get")
  local putq = ch.putq
  if ch.bt >= ch.bh then
    local v = buf_shift(ch)
    if putq.n > 0 then
      -- room now: the first waiting putter's value moves into the buffer
      local rec, t = q_take(putq)
      if rec then
        buf_push(ch, rec.v)
        rec.ok, rec.v = true, nil
        wake(need("channel:get"), t, nil)
      end
    end
    return v
  end
  if putq.n > 0 then
    -- unbuffered: take the value straight from the putter
    local rec, t = q_take(putq)
    if rec then
      local v = rec.v
      rec.ok, rec.v = true, nil
      wake(need("channel:get"), t, nil)
      return v
    end
  end
  if ch.closed then return nil, "closed" end
  if timeout == 0 then return nil, "timeout" end
  local S = need("channel:get")
  local t = current(S, "channel:get")
  local rec = { t = t, ok = false, v = nil }
  local ok, err = q_wait(S, ch.getq, t, rec, timeout)
  if not ok then return nil, err end
  return rec.v
end

-- No more puts: waiting putters get nil, "closed" (their values are
-- dropped); getters get the buffered values, then nil, "closed".
function Chan.close(ch)
  if ch.closed then return nil, "closed" end
  ch.closed = true
  local S = sched.state()
  for _, q in ipairs({ ch.getq, ch.putq }) do
    while q.n > 0 do
      local rec, t = q_take(q)
      if not rec then break end
      rec.v = nil
      wake(S, t, "closed")
    end
  end
  return true
end

-- Values buffered (waiting putters not counted).
function Chan.count(ch)
  return ch.bt - ch.bh + 1
end

return M
