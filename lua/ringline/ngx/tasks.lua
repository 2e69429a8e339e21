-- ringline.ngx.tasks: ngx.sleep, ngx.timer, ngx.thread, ngx.worker,
-- ngx.exit outside a request, ngx.get_phase - on ringline's tasks and
-- timers.
--
-- ngx.thread.spawn runs the new thread before it returns (it yields once).
-- ngx.exit outside a request, and a thread's end by ngx.thread.kill, unwind
-- the task with a sentinel error; the functions this module starts (timer
-- callbacks, threads) catch it and end quietly, as OpenResty's would.
-- ringline cannot stop a task from outside: kill cancels the thread's
-- blocking call and marks it, and the thread's next ngx.sleep or
-- ngx.thread.wait (or the canceled one) unwinds it.
local ffi = require "ffi"
local ringline = require "ringline"
local sched = require "ringline.sched"
local http_server = require "ringline.http_server"
local req = require "ringline.ngx.req"

pcall(ffi.cdef, "int getpid(void);")

local type, error, select, pcall = type, error, select, pcall
local unpack = unpack or table.unpack

local M = {}

local EXIT = http_server.EXIT
local KILL = setmetatable({}, { __tostring = function() return "ngx.thread.kill" end })
M.KILL = KILL

-- killed threads (weak: a finished task goes away)
local killed = setmetatable({}, { __mode = "k" })

local function pack(...) return { n = select("#", ...), ... } end

-- Run fn(...), turning the exit and kill sentinels into a normal end.
local function guarded(fn, ...)
  local r = pack(pcall(fn, ...))
  if r[1] then return unpack(r, 2, r.n) end
  local e = r[2]
  if e == EXIT or e == KILL then return end
  error(e, 0)
end
M.guarded = guarded

-- A wait that ended with "canceled" in a killed thread unwinds it.
local function check_killed(why)
  if why == "canceled" then
    local t = ringline.current()
    if t and killed[t] then error(KILL, 0) end
  end
end

function M.sleep(s)
  if type(s) ~= "number" or not (s >= 0) then error("ngx.sleep: expected seconds >= 0", 2) end
  local ok, why = ringline.sleep(s)
  if not ok then
    check_killed(why)
    return nil, why
  end
  return 1
end

------------------------------------------------------------------------
-- ngx.timer
------------------------------------------------------------------------

local running = 0

local function add(kind, delay, cb, ...)
  if type(cb) ~= "function" then error("ngx.timer." .. kind .. ": expected a function", 3) end
  if type(delay) ~= "number" or not (delay >= 0) then
    error("ngx.timer." .. kind .. ": expected a delay in seconds >= 0", 3)
  end
  local function run(premature, ...)
    running = running + 1
    local r = pack(pcall(guarded, cb, premature, ...))
    running = running - 1
    if not r[1] then error(r[2], 0) end
  end
  local h, err
  if kind == "at" then
    h, err = ringline.timer.at(delay, run, ...)
  else
    if delay == 0 then error("ngx.timer.every: the interval must be > 0", 3) end
    h, err = ringline.timer.every(delay, run, ...)
  end
  if not h then return nil, err end
  return true
end

M.timer = {
  at = function(delay, cb, ...) return add("at", delay, cb, ...) end,
  every = function(delay, cb, ...) return add("every", delay, cb, ...) end,
  running_count = function() return running end,
  pending_count = function() return ringline.timer.pending_count() end,
}

------------------------------------------------------------------------
-- ngx.thread
------------------------------------------------------------------------

local function is_task(t) return getmetatable(t) == sched.Task_mt end

M.thread = {
  spawn = function(fn, ...)
    if type(fn) ~= "function" then error("ngx.thread.spawn: expected a function", 2) end
    local parent = ringline.current()
    local t, err = ringline.spawn(guarded, fn, ...)
    if not t then error("ngx.thread.spawn: " .. tostring(err), 2) end
    if parent then
      req.inherit(t, parent)
      -- OpenResty runs the new thread at once, until it waits: yield once,
      -- behind it in the ready queue. A cancel this yield meets is put
      -- back for the parent's next wait.
      local ok, why = ringline.sleep(0)
      if not ok and why == "canceled" then
        check_killed(why)
        parent:cancel()
      end
    end
    return t
  end,
  wait = function(...)
    for i = 1, select("#", ...) do
      if not is_task((select(i, ...))) then error("ngx.thread.wait: expected threads", 2) end
    end
    local r = pack(ringline.wait(...))
    if r[1] == nil then check_killed(r[2]) end
    return unpack(r, 1, r.n)
  end,
  kill = function(t)
    if not is_task(t) then error("ngx.thread.kill: expected a thread", 2) end
    if t:status() == "dead" then return nil, "already terminated" end
    if t == ringline.current() then error("ngx.thread.kill: a thread cannot kill itself", 2) end
    killed[t] = true
    t:cancel()
    return true
  end,
}

------------------------------------------------------------------------
-- ngx.worker, ngx.exit, ngx.get_phase
------------------------------------------------------------------------

M.worker = {
  id = function() return ringline.worker.id() end,
  count = function() return ringline.worker.count() end,
  pid = function() return ffi.C.getpid() end,
  exiting = function()
    local ok, v = pcall(ringline.exiting)
    return ok and v or false
  end,
}

function M.exit(status)
  if type(status) ~= "number" then error("ngx.exit: expected a status number", 2) end
  if req.active() then return req.exit(status) end
  error(EXIT, 0)
end

function M.get_phase()
  if req.active() then return "content" end
  if sched.state() and ringline.current() then return "timer" end
  return "init"
end

return M
