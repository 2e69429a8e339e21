-- ringline.conn_send: the writing methods of connections (send,
-- send_nowait, send_from, flush) and the writers' wait; ringline.conn puts
-- them in its methods table (install).
--
-- Writes copy into the core's send queue (rl_conn_send copies before it
-- returns, so Lua strings are passed as they are). A writer waits only while
-- more than the high watermark is unsent, until the low watermark.
-- Sends with guarded parts (slices of a region, and Lua strings of at least
-- zc_threshold bytes, alone or in arrays) go through ringline.region: sent
-- zero-copy, the string anchored until the kernel's notification released
-- it; flush also waits until their guards are released.
--
-- Memory stays bounded by waiting, never by copying more:
-- - a copied send that would take unsent past the high watermark plus one
--   send slot (S.sendcap) queues up to there, waits for the low watermark,
--   and goes on (send_big); so one 64 MiB string costs about
--   send_high_watermark + send_slot_size of queue, not 64 MiB;
-- - a guarded part that finds every send slab entry in use waits for one
--   (RL_EV_SLAB) instead of being copied (guarded_rest).
-- While such a send waits, it holds the connection's send lock (c.sending):
-- other sends on the connection wait for it, so a message is never
-- interleaved with another task's. send_nowait never waits: it answers
-- "busy" while the lock is held, and copies guarded parts when the slab is
-- full (rl_conn_sendv, counted in zc_fallbacks).
local ffi = require "ffi"
local C = require "ringline.lib"
local sched = require "ringline.sched"
local errors = require "ringline.errors"
local check = require "ringline.check"
local is_buffer = check.is_buffer
local region = require "ringline.region"
local read = require "ringline.conn_read"
local fs = require "ringline.fs"

local type, select, tostring, error, getmetatable, pairs = type, select, tostring, error, getmetatable, pairs
local ffi_cast = ffi.cast
local table_remove = table.remove
local MUST_WAIT = "conn: a send that must wait needs a ringline task"
local errstr = errors.errstr
local wake, wait_park, wait_end = sched.wake, sched.wait_park, sched.wait_end
local has_slice, any_slice, send_guarded = region.has_slice, region.any_slice, region.send
local zc_threshold = region.threshold
local resume_guarded, abandon_guarded = region.resume, region.abandon
local view, begin_wait = read.methods.view, read.begin_wait

local _ = C.rl_worker_want_slab   -- resolved at load time (see sched.lua)
_ = C.rl_conn_sendfile_with
_ = C.rl_conn_want_send_error
local EV_SLAB = C.RL_EV_SLAB
local PART_COPY = C.RL_PART_COPY

local MORE = {}          -- send_check: "more than the threshold is still unsent"

local M = {}
local methods = {}
M.methods = methods
local conn_mt = false    -- ringline.conn's metatable (install): send_from's source has it

local function misuse(msg, lvl)
  error("ringline: " .. msg, lvl + 1)
end

local send_big   -- below: a copied piece that must wait for room on the way

-- Queue n bytes at p; wait: the caller may wait (send), so a piece that
-- would pass S.sendcap is queued progressively.
local function send_bytes(c, p, n, wait)
  if n > 0 then
    if wait and c.io.unsent + n > c.S.sendcap then
      local k, err = send_big(c, p, n)   -- not a tail call: keeps the trace simple
      return k, err
    end
    local rc = C.rl_conn_send(c.w, c.slot, c.gen, p, n)
    if rc < 0 then return nil, errstr(rc) end
  end
  return n
end

-- send_part(c, x, lvl, wait): queue one argument; lvl is the misuse error
-- level that names the caller of send (each nesting adds two frames).
-- Arrays of up to four elements are unrolled, for the same reason as
-- queue's args.
local send_part

local function send_elem(c, v, lvl, wait)
  if type(v) == "string" then return send_bytes(c, v, #v, wait) end
  local n, err = send_part(c, v, lvl + 2, wait)   -- not a tail call: two frames a level
  return n, err
end

send_part = function(c, x, lvl, wait)
  local tx = type(x)
  if tx == "string" then
    return send_bytes(c, x, #x, wait)
  elseif tx == "number" then
    local s = tostring(x)
    return send_bytes(c, s, #s, wait)
  elseif tx == "table" then
    if lvl > 68 then misuse("conn:send: arrays nested too deep (a cycle?)", lvl) end
    local n = #x
    if n == 0 then return 0 end
    local total, err = send_elem(c, x[1], lvl, wait)
    if not total or n == 1 then return total, err end
    local k
    k, err = send_elem(c, x[2], lvl, wait)
    if not k then return nil, err end
    total = total + k
    if n == 2 then return total end
    k, err = send_elem(c, x[3], lvl, wait)
    if not k then return nil, err end
    total = total + k
    if n == 3 then return total end
    k, err = send_elem(c, x[4], lvl, wait)
    if not k then return nil, err end
    total = total + k
    for i = 5, n do
      k, err = send_elem(c, x[i], lvl, wait)
      if not k then return nil, err end
      total = total + k
    end
    return total
  elseif is_buffer(x) then
    local p, n = x:ref()
    return send_bytes(c, p, n, wait)
  end
  misuse("conn:send: cannot send a " .. tx .. " (strings, numbers, arrays, string.buffers)", lvl)
end

local guarded_rest   -- below: a guarded send the full slab stopped

-- Queue every argument in order; total bytes or nil, err. One, two and
-- three arguments are unrolled: a loop that runs two or three times per
-- call would make LuaJIT abort traces ("leaving loop in root trace").
-- wait: the caller may wait on the way (send; not send_nowait).
local function queue(c, wait, ...)
  c.fresh = false   -- it has answered something (ringline.conn_read: the drain)
  local nargs = select("#", ...)
  local S = c.S
  local thr = S.zc_thr or zc_threshold(S)   -- strings this big go zero-copy, guarded
  if nargs == 1 then
    local x = ...
    if type(x) == "string" then
      local n = #x
      if n < thr then return send_bytes(c, x, n, wait) end
      local k, err, st = send_guarded(c, wait, 4, 1, x)
      if st then k, err = guarded_rest(c, k, st) end
      return k, err
    end
    if type(x) == "table" and has_slice(x, thr) then
      local n, err, st = send_guarded(c, wait, 4, 1, x)   -- not a tail call: keeps the misuse level
      if st then n, err = guarded_rest(c, n, st) end
      return n, err
    end
    local n, err = send_part(c, x, 4, wait)  -- not a tail call: keeps the error level right
    return n, err
  end
  if nargs == 0 then misuse("conn:send: nothing to send", 3) end
  -- a slice anywhere: the whole send is one rl_conn_sendv (region.lua)
  if any_slice(thr, nargs, ...) then
    local n, err, st = send_guarded(c, wait, 4, nargs, ...)
    if st then n, err = guarded_rest(c, n, st) end
    return n, err
  end
  local a, b, x = ...
  local n1, n2, err
  if type(a) == "string" then n1, err = send_bytes(c, a, #a, wait) else n1, err = send_part(c, a, 4, wait) end
  if not n1 then return nil, err end
  if type(b) == "string" then n2, err = send_bytes(c, b, #b, wait) else n2, err = send_part(c, b, 4, wait) end
  if not n2 then return nil, err end
  if nargs == 2 then return n1 + n2 end
  local total = n1 + n2
  if nargs == 3 then
    if type(x) == "string" then n1, err = send_bytes(c, x, #x, wait) else n1, err = send_part(c, x, 4, wait) end
    if not n1 then return nil, err end
    return total + n1
  end
  for i = 3, nargs do
    n1, err = send_part(c, (select(i, ...)), 4, wait)
    if not n1 then return nil, err end
    total = total + n1
  end
  return total
end

local function remove_writer(c, t)
  local writers, nwriters = c.writers, c.nwriters
  for i = 1, nwriters do
    if writers[i] == t then
      for j = i, nwriters - 1 do writers[j] = writers[j + 1] end
      writers[nwriters] = nil
      c.nwriters = nwriters - 1
      return
    end
  end
end

-- nil when unsent <= thresh, MORE while above it, or the error.
local function send_check(c, io, thresh)
  if c.closed then return "closed" end
  local e = io.serr
  if e ~= 0 then return errstr(e) end
  if io.unsent <= thresh then return nil end
  return MORE
end

-- Park t among c's writers until it is woken: by RL_EV_SEND, asked for
-- here when thresh is a number (unsent <= thresh, or a send error), or,
-- with thresh false, by the release of c's last guard (the conn_idle hook, called by ringline.region).
-- nil to re-check, else the reason (the writer has then left the list).
local function park_writer(c, t, thresh)
  if thresh then
    local rc = C.rl_conn_want_send(c.w, c.slot, c.gen, thresh)
    if rc < 0 then return errstr(rc) end
  end
  local writers = c.writers
  if not writers then writers = {}; c.writers = writers end
  local nwriters = c.nwriters + 1
  c.nwriters = nwriters
  writers[nwriters] = t
  local why = wait_park(c.S, t)
  if why then remove_writer(c, t) end
  return why
end

-- Wait until unsent <= thresh; nil on success, else the reason.
local function wait_send(c, thresh, timeout)
  local io = c.io
  local r = send_check(c, io, thresh)
  if r ~= MORE then return r end
  local t, err = begin_wait(c, timeout, "send")
  if not t then return err end
  r = park_writer(c, t, thresh) or send_check(c, io, thresh)
  while r == MORE do
    r = park_writer(c, t, thresh) or send_check(c, io, thresh)
  end
  wait_end(c.S, t)
  return r
end

-- ---- The send lock: held by a send that waits half-way (send_big,
-- guarded_rest), so no other send's bytes land inside its message. ----

local wake_writers   -- below (wakes every parked writer and flusher of c)

-- Take c's send lock (the caller found it free and has not yielded since).
local function lock(c)
  c.sending = true
end

-- Release it; the sends waiting for it re-check (they are c's writers).
local function unlock(c)
  c.sending = false
  if c.nwriters > 0 then wake_writers(c, nil) end
end

-- Wait until no other send holds c's lock; nil, or the reason.
local function wait_unlocked(c)
  local t, err = begin_wait(c, c.send_to, "send")
  if not t then return err end
  local why = park_writer(c, t, false)
  while not why and c.sending do
    why = park_writer(c, t, false)
  end
  if not why and c.closed then why = "closed" end
  wait_end(c.S, t)
  return why
end

-- Queue n bytes at p without taking unsent past S.sendcap: up to the cap,
-- wait for the low watermark, go on. The caller holds c's send lock.
-- Returns nil, or the reason it stopped (then a prefix was queued).
local function copy_bounded(c, p, n)
  local S, io = c.S, c.io
  p = ffi_cast("const uint8_t *", p)
  local left = n
  while true do
    local room = S.sendcap - io.unsent
    if room >= left then break end
    if room > 0 then
      local rc = C.rl_conn_send(c.w, c.slot, c.gen, p, room)
      if rc < 0 then return errstr(rc) end
      p, left = p + room, left - room
    end
    local why = wait_send(c, S.lowat, c.send_to)
    if why then return why end
  end
  local rc = C.rl_conn_send(c.w, c.slot, c.gen, p, left)
  if rc < 0 then return errstr(rc) end
  return nil
end

-- n bytes at p would take unsent past S.sendcap: queue them bounded, under
-- c's send lock. Returns n, or nil, err (then a prefix was queued, as with
-- any failed send: close the connection).
send_big = function(c, p, n)
  sched.waiter(c.S, MUST_WAIT)   -- misuse raises before anything is locked
  lock(c)
  local why = copy_bounded(c, p, n)
  unlock(c)
  if why then return nil, why end
  return n
end

-- Park t until a slab entry comes free (RL_EV_SLAB), c closes or fails (the
-- core's RL_EV_SEND on a send error or the peer's reset, asked for here),
-- or the send timeout passes; nil to try again, else the reason.
local function wait_slab(c)
  if c.closed then return "closed" end
  local e = c.io.serr
  if e ~= 0 then return errstr(e) end
  if C.rl_worker_want_slab(c.w) ~= 0 then return nil end   -- one is free already
  local rc = C.rl_conn_want_send_error(c.w, c.slot, c.gen)
  if rc ~= 0 then return errstr(rc < 0 and rc or c.io.serr) end
  local t, err = begin_wait(c, c.send_to, "send")
  if not t then return err end
  local S = c.S
  local q = S.slabq
  if not q then q = {}; S.slabq = q end
  q[#q + 1] = t
  local why = park_writer(c, t, false)   -- among c's writers: a close wakes it
  for i = 1, #q do                       -- woken another way: leave the queue
    if q[i] == t then table_remove(q, i) break end
  end
  remove_writer(c, t)
  wait_end(S, t)
  if not why then
    e = c.io.serr
    if e ~= 0 then why = errstr(e) end
  end
  return why
end

-- A guarded send stopped (region.send's pending state st) at a full slab or
-- at a copied part past the copy limit: wait for entries, or queue that
-- part bounded, and queue the rest, under c's send lock. Each wait is
-- bounded by the send timeout. Returns total, or nil, err.
guarded_rest = function(c, total, st)
  local ok, err = pcall(sched.waiter, c.S, MUST_WAIT)
  if not ok then
    abandon_guarded(c, st)   -- misuse: no anchor is left behind
    error(err, 0)
  end
  lock(c)
  local why, done
  repeat
    local off = st.off
    if st.parts[off].region == PART_COPY then   -- off < st.n: resume said so
      -- stopped at the copy limit (a stop at a full slab is before a
      -- guarded part): this part goes piece by piece
      local part = st.parts[off]
      why = copy_bounded(c, part.ptr, part.len)
      if not why then st.off = off + 1 end
    else
      why = wait_slab(c)
    end
    if why then
      abandon_guarded(c, st)   -- the parts never queued: their tokens go back
      break
    end
    done, why = resume_guarded(c, st)   -- nil, err: it dropped the rest itself
  until done ~= false
  unlock(c)
  if why then return nil, why end
  return total
end

-- RL_EV_SLAB: an entry came free; every send waiting for one tries again
-- (in the order they came; the ones that find none wait again).
local function on_slab(S)
  local q = S.slabq
  if not q then return end
  for i = 1, #q do
    local t = q[i]
    q[i] = nil
    wake(S, t, nil)
  end
end

function methods.send(c, ...)
  if c.closed then return nil, "closed" end
  local io = c.io
  local e = io.serr
  if e ~= 0 then return nil, errstr(e) end
  if c.sending then
    local why = wait_unlocked(c)
    if why then return nil, why end
  end
  local total, err = queue(c, true, ...)
  if not total then return nil, err end
  local S = c.S
  if io.unsent > S.hiwat then
    local why = wait_send(c, S.lowat, c.send_to)
    if why then return nil, why end
  end
  return total
end

function methods.send_nowait(c, ...)
  if c.closed then return nil, "closed" end
  local io = c.io
  local e = io.serr
  if e ~= 0 then return nil, errstr(e) end
  if io.unsent > c.S.hiwat or c.sending then return nil, "busy" end
  local n, err = queue(c, false, ...)  -- not a tail call: keeps the misuse level
  return n, err
end

-- dst:send_from(src [, max]): move what src has buffered (waiting for at
-- least one byte; at most max) into dst's send queue and consume it from
-- src: one copy, straight from src's receive buffer, and no Lua string -
-- what an echo or a proxy pump wants. Returns the bytes moved, or nil, err,
-- side with side "receive" (src ended or failed; err as receive's) or
-- "send" (dst failed). Yields like send above the high watermark.
function methods.send_from(c, src, max)
  if getmetatable(src) ~= conn_mt then misuse("conn:send_from: the source must be a connection", 2) end
  if max ~= nil and (type(max) ~= "number" or max < 1) then
    misuse("conn:send_from: bad max " .. tostring(max), 2)
  end
  if c.closed then return nil, "closed", "send" end
  local io = c.io
  local e = io.serr
  if e ~= 0 then return nil, errstr(e), "send" end
  local p, n = view(src, 1)
  if not p then return nil, n, "receive" end
  while c.sending do   -- another send is half-way (view may have waited)
    local why = wait_unlocked(c)
    if why then return nil, why, "send" end
    p, n = view(src, 1)
    if not p then return nil, n, "receive" end
  end
  if max and n > max then n = max end
  local before = io.unsent
  local rc = C.rl_conn_send(c.w, c.slot, c.gen, p, n)
  if rc < 0 then
    -- out of memory after a prefix was queued: it goes out, so it is
    -- consumed from src (a retry would send it twice)
    local queued = io.unsent - before
    if queued > 0 then C.rl_conn_consume(src.w, src.slot, src.gen, queued) end
    return nil, errstr(rc), "send"
  end
  C.rl_conn_consume(src.w, src.slot, src.gen, n)
  local S = c.S
  if io.unsent > S.hiwat then
    local why = wait_send(c, S.lowat, c.send_to)
    if why then return nil, why, "send" end
  end
  return n
end

-- conn:sendfile's read-and-send path (TLS: the record layer is in
-- userspace, so the bytes must pass through it; or no splice): the file
-- read through the ring 64 KiB at a time into one buffer of the call's,
-- each piece sent in order from it (no Lua string per piece: a string and
-- a string.buffer per 64 KiB read let a busy server's heap grow to
-- gigabytes before the collector caught up).
local SF_PIECE = 65536
local u8buf = ffi.typeof("uint8_t[?]")
-- The caller holds c's send lock; each piece waits for room first (to the
-- low watermark), so it never takes the lock-taking path of send.
local function sendfile_copy(c, f, off, count)
  local S, io = c.S, c.io
  local left = count
  local buf = u8buf(left < SF_PIECE and left or SF_PIECE)
  while left > 0 do
    local n = left < SF_PIECE and left or SF_PIECE
    if io.unsent + n > S.sendcap then
      local why = wait_send(c, S.lowat, c.send_to)
      if why then return nil, why end
    end
    local got, err = fs.read_into(f, buf, n, off, buf)
    if not got then return nil, err end
    if got == 0 then return nil, "file truncated" end
    if c.closed then return nil, "closed" end
    local rc = C.rl_conn_send(c.w, c.slot, c.gen, buf, got)
    if rc < 0 then return nil, errstr(rc) end
    off, left = off + got, left - got
  end
  if io.unsent > S.hiwat then
    local why = wait_send(c, S.lowat, c.send_to)
    if why then return nil, why end
  end
  return count
end

local SF_MAX = 2 ^ 30    -- bytes one rl_conn_sendfile queues (unsent is 32-bit)

-- conn:sendfile(f, offset, count [, head]): count bytes of file f from
-- offset, never through Lua (what the page cache holds by sendfile(2), the
-- rest spliced from the disk by the ring), after head (a string or a
-- string.buffer, not consumed: a response's head, which then leaves in
-- the same packets), in order with the sends around it, waiting above the
-- high watermark as send does. A file that ends early fails the
-- connection's send side ("file truncated": the peer was promised count
-- bytes). TLS connections take the read-and-send path.
local u8ptr = ffi.typeof("const uint8_t *")
function methods.sendfile(c, f, offset, count, head)
  if not fs.is_file(f) then misuse("conn:sendfile: expected a file (ringline.fs.open)", 2) end
  offset = offset or 0
  if type(offset) ~= "number" or offset < 0 or offset % 1 ~= 0 then
    misuse("conn:sendfile: offset must be an integer >= 0", 2)
  end
  if count ~= nil and (type(count) ~= "number" or count < 0 or count % 1 ~= 0) then
    misuse("conn:sendfile: count must be an integer >= 0", 2)
  end
  local hp, hn = nil, 0
  if head ~= nil then
    if type(head) == "string" then hp, hn = ffi_cast(u8ptr, head), #head
    elseif is_buffer(head) then hp, hn = head:ref()
    else misuse("conn:sendfile: head must be a string or a string.buffer", 2) end
  end
  if c.closed then return nil, "closed" end
  if f.closed then return nil, "file closed" end
  local io = c.io
  local e = io.serr
  if e ~= 0 then return nil, errstr(e) end
  if not count then
    local size, err = f:size()
    if not size then return nil, err end
    count = size > offset and size - offset or 0
  end
  if count == 0 then
    if hn > 0 then
      local ok, err = c:send(head)
      if not ok then return nil, err end
    end
    return 0
  end
  if c.sending then
    local why = wait_unlocked(c)
    if why then return nil, why end
  end
  local S = c.S
  lock(c)
  local off, left = offset, count
  while left > 0 do
    local n = left < SF_MAX and left or SF_MAX
    local rc = c.tls and -errors.EOPNOTSUPP
      or C.rl_conn_sendfile_with(c.w, c.slot, c.gen, hp, hn, f.fd, off, n)
    if rc == -errors.EOPNOTSUPP then
      -- TLS (the record layer is in userspace) or no splice in this
      -- kernel: read through the ring and send
      if hn > 0 then
        rc = C.rl_conn_send(c.w, c.slot, c.gen, hp, hn)
        if rc < 0 then
          unlock(c)
          return nil, errstr(rc)
        end
      end
      local k, err = sendfile_copy(c, f, off, left)
      unlock(c)
      if not k then return nil, err end
      return count
    end
    if rc < 0 then
      unlock(c)
      return nil, errstr(rc)
    end
    hp, hn = nil, 0
    off, left = off + n, left - n
    if io.unsent > S.hiwat then
      local why = wait_send(c, S.lowat, c.send_to)
      if why then
        unlock(c)
        return nil, why
      end
    end
  end
  unlock(c)
  return count
end

local GUARDS = {}        -- flush_check: "all sent, but guards are still out"

-- nil when nothing is unsent and no guard of c is out; MORE or GUARDS
-- while something is; or the error.
local function flush_check(c, io)
  local why = send_check(c, io, 0)
  if why == nil and c.guards > 0 then return GUARDS end
  return why
end

-- Park for what flush_check said is missing (a send completion for MORE,
-- the release of c's last guard for GUARDS), then check again.
local function flush_step(c, t, io, missing)
  return park_writer(c, t, missing == MORE and 0 or false) or flush_check(c, io)
end

-- Wait, under one deadline, until nothing is unsent and every guard of c
-- has been released; nil on success, else the reason.
local function wait_guards(c, timeout)
  local io = c.io
  local why = flush_check(c, io)
  if why ~= MORE and why ~= GUARDS then return why end -- done (or failed) already
  local t, err = begin_wait(c, timeout, "flush")
  if not t then return err end
  -- The first wait is outside the loop (as in wait_send): one wake-up is
  -- the common case, and a loop entered for it would be left after one
  -- turn, which the JIT cannot compile ("leaving loop in root trace").
  why = flush_step(c, t, io, why)
  while why == MORE or why == GUARDS do
    why = flush_step(c, t, io, why)
  end
  wait_end(c.S, t)
  return why
end

-- Wake every parked writer and flusher of c with why: when c's last guard
-- is released (the conn_idle hook, why nil) and when c closes (ringline.conn).
wake_writers = function(c, why)
  local S, writers = c.S, c.writers
  for j = 1, c.nwriters do
    local t = writers[j]
    writers[j] = nil
    wake(S, t, why)
  end
  c.nwriters = 0
end
M.wake_writers = wake_writers

function methods.flush(c, timeout)
  check.milliseconds(timeout, "conn:flush: timeout")   -- ms, as settimeout
  local why = wait_guards(c, check.call_ms(timeout, c.send_to))
  if why then return nil, why end
  return true
end

-- ringline.conn: add these methods to the connection's, whose metatable is mt.
function M.install(conn_methods, mt)
  conn_mt = mt
  for k, f in pairs(methods) do conn_methods[k] = f end
end

-- RL_EV_SEND: unsent fell to what c's writers asked for with
-- rl_conn_want_send (or the send failed): they re-check. The hot path:
-- the usual single writer is woken without a loop (a loop that runs once
-- would abort the trace: "leaving loop in root trace").
local function on_send(S, ev)
  local c = S.conns[ev.slot]
  if c and c.gen == ev.gen then
    local nwriters = c.nwriters
    if nwriters == 1 then
      local writers = c.writers
      local t = writers[1]
      writers[1] = nil
      c.nwriters = 0
      wake(S, t, nil)
    elseif nwriters > 1 then
      local writers = c.writers
      for j = 1, nwriters do
        local t = writers[j]
        writers[j] = nil
        wake(S, t, nil)
      end
      c.nwriters = 0
    end
  end
end

-- ringline (init.lua) installs this module's events and hook (ringline.sched
-- lists them): a release of c's last guard wakes its flushers (ringline.region).
function M.attach(sched_)
  sched_.on_event(C.RL_EV_SEND, on_send)
  sched_.on_event(EV_SLAB, on_slab)
  sched_.hook("conn_idle", wake_writers)
end

return M
