-- ringline.pool: the keep-alive pool of outbound connections
-- (conn:setkeepalive, conn:getreusedtimes; ringline.connect's pool,
-- pool_size and backlog options), with OpenResty's cosocket semantics.
--
-- One pool per key per worker and per run (S.pools): the key is
-- opts.pool, else "host:port" (or the unix path) as the caller wrote it,
-- plus the TLS server name for ringline.connect's ssl option. A pool holds
-- its idle connections (p.idle, the most recently put last: a connect
-- takes the newest, an overflow evicts the oldest) and counts every open
-- connection that belongs to it (p.total: idle or in use), which
-- `backlog` bounds by `size`: a connect finding `size` open waits in a
-- FIFO of at most `backlog` records, for a connection put back (handed
-- straight to the first waiter) or closed (its slot handed on).
--
-- An idle connection is unowned (no task's end closes it) and asks the
-- core for one receive event: a peer that closes it or sends anything
-- makes it useless, and it is closed at once (conn_read's RL_EV_RECV finds
-- no reader and calls on_idle_event). Idle timeouts share one timer per
-- pool, armed for the earliest expiry.
local C = require "ringline.lib"
local sched = require "ringline.sched"
local conn = require "ringline.conn"

local type, error, setmetatable = type, error, setmetatable
local wake, wait_begin, wait_park, wait_end = sched.wake, sched.wait_begin, sched.wait_park, sched.wait_end
local timer_arm, timer_disarm = sched.timer_arm, sched.timer_disarm
local PARKED, READY = sched.PARKED, sched.READY

local _ = C.rl_conn_want_recv, C.rl_worker_now  -- resolved at load

local M = {}

-- OpenResty's lua_socket_pool_size and lua_socket_keepalive_timeout.
M.DEFAULT_SIZE = 30
M.DEFAULT_TIMEOUT_MS = 60000

local function pools(S)
  local ps = S.pools
  if not ps then
    ps = {}
    S.pools = ps
    S.pool_idle, S.pool_waiting = 0, 0
  end
  return ps
end

local function new_pool(S, key, size, backlog)
  local p = { S = S, key = key, size = size, backlog = backlog or false,
              total = 0, idle = {}, nidle = 0,
              q = {}, qh = 1, qt = 0, nwait = 0,
              timer = false }
  pools(S)[key] = p
  return p
end

-- The pool of key, created with size/backlog when it does not exist and
-- either is given (connect) or always (setkeepalive).
function M.get(S, key, size, backlog, create)
  local p = pools(S)[key]
  if not p and (create or size or backlog) then
    p = new_pool(S, key, size or M.DEFAULT_SIZE, backlog)
  end
  return p
end

------------------------------------------------------------------------
-- Idle connections
------------------------------------------------------------------------

local function idle_remove(p, c)
  local idle = p.idle
  for i = p.nidle, 1, -1 do
    if idle[i] == c then
      table.remove(idle, i)
      p.nidle = p.nidle - 1
      p.S.pool_idle = p.S.pool_idle - 1
      break
    end
  end
  c.pooled = false
  -- no idle connection left: no sweep (a timer armed at teardown would
  -- keep the worker from being destroyed cleanly)
  if p.nidle == 0 and p.timer and p.timer.timer_id then timer_disarm(p.S, p.timer) end
end

-- A waiting record still waits (its task has not been woken for a
-- timeout or cancel).
local function waiting(t)
  local st = t.state
  return st == PARKED or (st == READY and t.wake_reason == nil)
end

-- The first waiter still waiting, off the queue; nil if none.
local function q_take(p)
  local q = p.q
  while p.qh <= p.qt do
    local h = p.qh
    local rec = q[h]
    q[h] = nil
    p.qh = h + 1
    if rec.t then
      local t = rec.t
      rec.t = false
      p.nwait = p.nwait - 1
      p.S.pool_waiting = p.S.pool_waiting - 1
      if waiting(t) then return rec, t end
    end
  end
  p.qh, p.qt = 1, 0
  return nil
end

-- One of p's open connections is gone: its slot goes to the first waiter
-- (which then connects anew, counted already), else the count drops.
local function slot_free(p)
  local rec, t = q_take(p)
  if rec then
    rec.slot = true
    wake(p.S, t, nil)
  else
    p.total = p.total - 1
  end
end

-- c no longer belongs to its pool (closed). Called by conn:close
-- (ringline.conn's hook), so evictions and discards come here too.
local function forget(c)
  local p = c.pool
  if not p then return end
  if c.pooled then idle_remove(p, c) end
  c.pool = false
  slot_free(p)
end
M.forget = forget

-- The sweep: close the idle connections whose time is up, re-arm for the
-- next. h is the pool's timer handle (the dispatcher calls h.fire; at the
-- end of a run with user timers, ringline.timer runs h.fn premature).
-- (no closure here: a function made in arm would stop the JIT's traces
-- through every setkeepalive)
local function premature(_, p) M.close_idle(p) end

local function arm(p, due)
  local S = p.S
  local h = p.timer
  if not h then
    h = { fire = M.sweep, fn = premature, args = { n = 1, p }, p = p, due = 0,
          timer_id = nil, timer_token = 0, timer_reason = false }
    p.timer = h
  elseif h.timer_id then
    if h.due <= due then return end
    timer_disarm(S, h)
  end
  h.due = due
  timer_arm(S, h, due - C.rl_worker_now(S.w), false)
end

function M.sweep(S, h)
  local p = h.p
  local now = C.rl_worker_now(S.w)
  local idle = p.idle
  local next_due
  local i = 1
  while i <= p.nidle do
    local c = idle[i]
    local u = c.idle_until
    if u and u <= now then
      c:close()               -- forget() takes it off the list
    else
      if u and (not next_due or u < next_due) then next_due = u end
      i = i + 1
    end
  end
  if next_due then arm(p, next_due) end
end

function M.close_idle(p)
  while p.nidle > 0 do p.idle[1]:close() end
end

-- RL_EV_RECV for a connection with no reader (ringline.conn_read): an
-- idle pooled one that got data, EOF or an error is no longer usable.
function M.on_idle_event(c)
  if c.pooled and not c.closed then
    local io = c.io
    if io.rlen > 0 or io.reof ~= 0 or io.rerr ~= 0 then c:close() end
  end
end

------------------------------------------------------------------------
-- Taking a connection (ringline.connect)
------------------------------------------------------------------------

-- A connection handed to its next user starts as a new one would: the
-- run's default timeouts (a previous user's settimeout is not inherited),
-- owned by the task that takes it.
local function hand_over(c, t)
  local S = c.S
  c.read_to, c.send_to = S.read_to_s, S.send_to_s
  c.reused = c.reused + 1
  sched.own(t, c)
  return c
end

local function take_idle(p, t)
  local idle = p.idle
  while p.nidle > 0 do
    local n = p.nidle
    local c = idle[n]
    idle[n] = nil
    p.nidle = n - 1
    p.S.pool_idle = p.S.pool_idle - 1
    c.pooled = false
    if p.nidle == 0 and p.timer and p.timer.timer_id then timer_disarm(p.S, p.timer) end
    local io = c.io
    if c.closed or io.rlen > 0 or io.reof ~= 0 or io.rerr ~= 0 then
      c:close()
    else
      return hand_over(c, t)
    end
  end
end

local function granted(rec) return rec.conn or rec.slot end

-- Before a connect: an idle connection of the pool (returned), or the
-- right to open one (nil; the caller counts it with M.count once
-- connected and calls M.forget-like release with M.uncount on failure),
-- or nil, err when the backlog is full or the wait timed out.
-- timeout: seconds or nil.
function M.acquire(S, t, p, timeout)
  local c = take_idle(p, t)
  if c then return c end
  if not p.backlog or p.total < p.size then
    p.total = p.total + 1
    return false
  end
  if p.nwait >= p.backlog then return nil, "too many waiting connect operations" end
  local ok, err = wait_begin(S, t, timeout)
  if not ok then return nil, err end
  local rec = { t = t, conn = false, slot = false }
  local qt = p.qt + 1
  p.qt = qt
  p.q[qt] = rec
  p.nwait = p.nwait + 1
  S.pool_waiting = S.pool_waiting + 1
  local why = wait_park(S, t, granted, rec)
  wait_end(S, t)
  if rec.t then               -- still queued: leave
    rec.t = false
    p.nwait = p.nwait - 1
    S.pool_waiting = S.pool_waiting - 1
  end
  c = rec.conn
  if c then
    if why then               -- handed a connection just as the wait ended
      M.put(c, c.idle_ms, nil)
      return nil, why
    end
    return hand_over(c, t)
  end
  if rec.slot then
    if why then                -- pass the slot on
      slot_free(p)
      return nil, why
    end
    return false
  end
  return nil, why or "timeout"
end

-- A connect that acquire allowed failed: give its slot back.
M.release_slot = slot_free

-- A new connection of pool p (counted by acquire).
function M.adopt(p, c)
  c.pool = p
  c.reused = 0
end

------------------------------------------------------------------------
-- conn:setkeepalive, conn:getreusedtimes
------------------------------------------------------------------------

-- Why c cannot go into a pool, or nil.
local function unfit(c)
  if c.closed then return "closed" end
  if c.rtask or c.nwriters > 0 or c.sending or c.tls == 1 then return "socket busy" end
  local io = c.io
  if io.rlen > 0 then return "unread data in buffer" end
  if io.reof ~= 0 or io.rerr ~= 0 then return "invalid connection" end
end
M.unfit = unfit

-- Put c (fit) into its pool (key c.pool_key) with an idle timeout of ms
-- (0 = none) and, if the pool is created now, size.
function M.put(c, ms, size)
  local S = c.S
  local p = c.pool
  if not p then
    p = M.get(S, c.pool_key, size, nil, true)
    c.pool = p
    p.total = p.total + 1
  end
  c.idle_ms = ms
  -- nobody's: no task's end closes it
  c:setowner(nil)
  local rec, t = q_take(p)
  if rec then
    rec.conn = c
    wake(S, t, nil)
    return true
  end
  if p.nidle >= p.size then
    if p.size <= 0 then
      c:close()
      return true
    end
    p.idle[1]:close()        -- the least recently used makes room
  end
  local n = p.nidle + 1
  p.idle[n] = c
  p.nidle = n
  S.pool_idle = S.pool_idle + 1
  c.pooled = true
  local now = C.rl_worker_now(S.w)
  if ms > 0 then
    c.idle_until = now + ms / 1000
    arm(p, c.idle_until)
  else
    c.idle_until = false
  end
  -- one receive event: EOF, a reset or stray bytes end it (on_idle_event)
  local rc = C.rl_conn_want_recv(c.w, c.slot, c.gen, c.io.rlen + 1)
  if rc ~= 0 then c:close() end
  return true
end

function M.setkeepalive(c, timeout, size)
  if timeout ~= nil and (type(timeout) ~= "number" or not (timeout >= 0) or timeout == math.huge) then
    error("ringline: conn:setkeepalive: timeout must be milliseconds >= 0", 2)
  end
  if size ~= nil and (type(size) ~= "number" or not (size >= 1) or size % 1 ~= 0) then
    error("ringline: conn:setkeepalive: size must be an integer >= 1", 2)
  end
  local why = unfit(c)
  if why then return nil, why end
  if not c.pool_key then return nil, "not pooled (not opened by ringline.connect)" end
  return M.put(c, timeout or M.DEFAULT_TIMEOUT_MS, size)
end

function M.getreusedtimes(c)
  if c.closed then return nil, "closed" end
  return c.reused
end

-- The pool's state for metrics: idle connections, queued connects.
function M.counts(S)
  return S.pool_idle or 0, S.pool_waiting or 0
end

-- ringline.conn: the methods and the close hook.
function M.attach()
  conn.methods.setkeepalive = M.setkeepalive
  conn.methods.getreusedtimes = M.getreusedtimes
  conn.pool_forget = forget
  require("ringline.conn_read").idle_event = M.on_idle_event
end

return M
