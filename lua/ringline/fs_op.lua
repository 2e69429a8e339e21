-- ringline.fs_op: one file operation of ringline.fs for the running task.
-- begin() registers a record under a token (never 0) in S.fs.ops and the
-- task's wait (its timeout included); the caller submits the core call
-- with that token; await() parks until the operation's RL_EV_FILE (or the
-- timeout / a cancel, which cancels the operation in the core). The record
-- keeps the memory the kernel uses (rec.anchor) and the file reachable
-- until the event arrives, also when the task gave up; an open that
-- completes for nobody has its descriptor closed then.
local C = require "ringline.lib"
local sched = require "ringline.sched"
local errors = require "ringline.errors"

local setmetatable = setmetatable
local errstr = errors.errstr
local wake, wait_begin, wait_park, wait_end = sched.wake, sched.wait_begin, sched.wait_park, sched.wait_end
local _ = C.rl_fs_cancel, C.rl_file_close   -- resolved now, not in a trace

local EV_FILE = C.RL_EV_FILE

local M = {}

local function state(S)
  local st = S.fs
  if st then return st end
  st = { ops = {}, tok = 0, files = setmetatable({}, { __mode = "k" }), bounce = {} }
  S.fs = st
  return st
end

local function is_done(rec) return rec.done end

-- Begin an operation for the running task: t, st, token, record.
local function begin(what, timeout)
  local S = sched.need("ringline.fs." .. what)
  local t = sched.current(S, "ringline.fs." .. what)
  if not S.w then sched.start(S) end   -- the C worker is made at first need
  local st = state(S)
  local ok, err = wait_begin(S, t, timeout)
  if not ok then return nil, err end
  local tok = st.tok % 4294967295 + 1   -- never 0: token 0 is "nobody's"
  st.tok = tok
  local rec = { task = t, done = false, res = 0, aux = 0, anchor = false, file = false, open = false }
  st.ops[tok] = rec
  return S, t, tok, rec
end

-- The operation's id from the core (or -errno): wait for its event.
-- Returns res (>= 0), aux; or nil, err.
local function await(S, t, tok, rec, id)
  local st = S.fs
  if id < 0 then
    st.ops[tok] = nil
    wait_end(S, t)
    return nil, errstr(id)
  end
  local why = wait_park(S, t, is_done, rec)
  wait_end(S, t)
  if why and not rec.done then
    C.rl_fs_cancel(S.w, id, tok)
    rec.task = false                 -- the event still comes (on_file)
    return nil, why
  end
  rec.task = false
  local res = rec.res
  if res < 0 then return nil, errstr(res), rec.aux end
  return res, rec.aux
end

local function on_file(S, ev)
  local st = S.fs
  if not st then return end
  local tok = ev.data
  local rec = st.ops[tok]
  if not rec then return end
  st.ops[tok] = nil
  rec.res, rec.aux, rec.done = ev.res, ev.aux, true
  rec.anchor = false
  local t = rec.task
  if t then
    wake(S, t, nil)
  elseif rec.open and ev.res >= 0 then
    C.rl_file_close(S.w, ev.res, 0)  -- an open nobody waits for any more
  end
end

-- The scheduler's state for a call that completes at once (no wait): it
-- must still come from a task, as every file call must.
local function need_task(what)
  local S = sched.need(what)
  sched.current(S, what)
  if not S.w then sched.start(S) end
  return S
end

M.state, M.begin, M.await, M.need_task = state, begin, await, need_task

-- In-flight file operations (for specs: back to 0 at idle).
function M.pending(S)
  local st = (S or sched.state()).fs
  local n = 0
  if st then for _ in pairs(st.ops) do n = n + 1 end end
  return n
end

function M.attach(sched_)
  sched_.on_event(EV_FILE, on_file)
end

return M
