-- ringline.watchdog: this worker's side of the host's watchdog
-- (bindings/host/watchdog.c). The loop (ringline.sched) bumps S.wd.beat
-- around each wait for events and the scheduler (ringline.task) stores in
-- S.wd.loc where the task it resumes started; the host's thread reads them
-- and reports a worker whose loop stopped turning for watchdog_timeout ms.
--
-- Outside the host there is no watchdog thread: S.wd is then a private
-- struct that nobody reads, so the same stores run everywhere and the hot
-- paths have no branch for it.
local ffi = require "ffi"
local H = require "ringline.host"
local log = require "ringline.log"

local tostring, tonumber, setmetatable = tostring, tonumber, setmetatable
local getinfo = debug.getinfo

local M = {}

local slot = H and H.rl_host_watch(require("ringline.hostinfo").slot or log.worker_id)
if slot == nil then slot = false end
M.hosted = slot and true or false

-- Location ids: by function (weak: closures come and go) and by text (a
-- closure made in a loop has a new identity but the same text).
local by_fn = setmetatable({}, { __mode = "k" })
local by_text = {}

-- The id of where fn starts ("source:line"), registered with the host once
-- per distinct text; 0 outside the host.
local function locate(fn)
  if not slot then return 0 end
  local id = by_fn[fn]
  if id then return id end
  local info = getinfo(fn, "S")
  local text = info and (info.short_src .. ":" .. tostring(info.linedefined)) or "?"
  id = by_text[text]
  if not id then
    id = tonumber(H.rl_host_watch_loc(text))
    by_text[text] = id
  end
  by_fn[fn] = id
  return id
end
M.locate = locate

-- The slot a run's state writes into: the host's, or one of its own.
local own_slot = ffi.typeof("struct { uint32_t beat, loc, timeout_ms, abort, fired, pad; }")
function M.new_slot()
  if slot then return slot end
  return own_slot()
end

-- The run's keys reach the host as they are set (configure, and the
-- defaults when a run starts).
local function on_configured(S)
  local wd = S.wd
  if wd then
    wd.timeout_ms = S.watchdog_timeout
    wd.abort = S.watchdog_abort
  end
end

-- The run ended: this worker is not watched any more.
function M.unwatch(S)
  local wd = S.wd
  if wd then
    wd.timeout_ms = 0
    wd.loc = 0
  end
end

-- ringline (init.lua) installs the configured hook (ringline.sched lists them).
function M.attach(sched_)
  sched_.hook("configured", on_configured)
end

return M
