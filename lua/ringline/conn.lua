-- ringline.conn: the connection object (OpenResty cosocket names).
--
-- Reads are served in place from the core's receive buffer: io.rdata/io.rlen
-- of the connection's `struct rl_conn_io`, which the core keeps current. A
-- Lua string is made (ffi.string) only for what the caller asked for, and a
-- call that the buffered bytes already satisfy never yields and never asks
-- the core for an event. Otherwise the reader asks for one RL_EV_RECV with
-- rl_conn_want_recv(min) and parks; each wake-up re-checks the buffer.
--
-- Writes copy into the core's send queue (rl_conn_send copies before it
-- returns, so Lua strings are passed as they are). A writer waits only while
-- more than the high watermark is unsent, until the low watermark.
--
-- Timeouts are deadlines for a whole call, armed with a core timer only when
-- the call actually has to wait; a timed-out receive consumes nothing.
local ffi = require "ffi"
local C = require "ringline.lib"
local sched = require "ringline.sched"
local errors = require "ringline.errors"
local region = require "ringline.region"

local ffi_string = ffi.string
local type, select, tostring, tonumber, error, getmetatable = type, select, tostring, tonumber, error, getmetatable
local setmetatable = setmetatable
local math_floor = math.floor
local errstr = errors.errstr
local park, wake = sched.park, sched.wake
local timer_arm, timer_disarm = sched.timer_arm, sched.timer_disarm
local has_slice, any_slice, send_guarded = region.has_slice, region.any_slice, region.send

-- libc helpers under private names (asm labels), so these declarations can
-- never clash with anyone else's declaration of memchr/memmem.
ffi.cdef [[
const uint8_t *ringline_lua_memchr(const uint8_t *s, int c, size_t n) __asm__("memchr");
const uint8_t *ringline_lua_memmem(const uint8_t *h, size_t hl, const char *n, size_t nl) __asm__("memmem");
]]
local libc = ffi.C
local _ = libc.ringline_lua_memchr, libc.ringline_lua_memmem  -- resolved now, not in a trace

local U32MAX = 0xffffffff
local MORE = {}          -- "the buffer does not satisfy the call yet"
local RESET = 1

local M = {}
local methods = {}
M.methods = methods
local mt = {
  __index = methods,
  __name = "ringline.conn",
  __tostring = function(c) return ("ringline.conn(%d/%d)"):format(c.slot, c.gen) end,
}
M.mt = mt

function M.new(S, slot, gen)
  local w = S.w
  -- Every field is present from the start (false = none) so the table's
  -- shape never changes on the hot paths.
  local c = setmetatable({
    S = S, w = w, slot = slot, gen = gen, io = C.rl_conn_io(w, slot),
    closed = false, freed = false, reading = false, rtask = false,
    wq = false, nw = 0,
    guards = 0,          -- its guarded send parts not yet released (region.lua)
    fd = false, fdpending = false, fdw = false, fderr = false,
    read_to = false, send_to = false, connect_to = false,
    listener = false, owner = false, heir_of = false,
  }, mt)
  S.conns[slot] = c
  return c
end

------------------------------------------------------------------------
-- Reading
------------------------------------------------------------------------

local function misuse(msg, lvl)
  error("ringline: " .. msg, lvl + 1)
end

-- The running task becomes the reader; the deadline (if any) is armed.
local function begin_read(c, timeout)
  local S = c.S
  local t = S.current
  if not t then misuse("conn: a receive that must wait needs a ringline task", 3) end
  if timeout then
    local id, err = timer_arm(S, t, timeout, "timeout")
    if not id then return nil, err end
  end
  c.reading = true
  return t
end

local function end_read(c, t)
  if t then
    c.reading = false
    if t.tmr then timer_disarm(c.S, t) end
  end
end

-- Wait once for rlen >= need (or EOF/error); returns nil to re-check, or
-- the reason the read cannot go on ("closed" also means EOF).
local function wait_bytes(c, t, need)
  if c.closed then return "closed" end
  -- a graceful stop: accepted connections get no more waiting reads
  if c.S.draining and c.listener then return "closed" end
  local io = c.io
  if io.reof ~= 0 then return "closed" end
  local e = io.rerr
  if e ~= 0 then return errstr(e) end
  if need > U32MAX then need = U32MAX end
  local rc = C.rl_conn_want_recv(c.w, c.slot, c.gen, need)
  if rc < 0 then return errstr(rc) end
  c.rtask = t
  local why = park(c.S, t)
  c.rtask = false
  return why
end

local function take(c, io, n)
  local s = ffi_string(io.rdata, n)
  C.rl_conn_consume(c.w, c.slot, c.gen, n)
  return s
end

-- A failed read: nil, err, and (except for timeouts, cancels and local
-- closes, which consume nothing) the bytes received so far.
local function fail(c, t, why)
  end_read(c, t)
  if why == "timeout" or why == "canceled" or c.closed then return nil, why end
  local io = c.io
  local n = io.rlen
  if n > 0 then return nil, why, take(c, io, n) end
  return nil, why, ""
end

-- The slow paths below make their first wait before entering any loop:
-- the trace of a caller's hot loop then ends at the yield (a stitch) rather
-- than aborting on an inner loop it has not seen loop yet.

local function recv_n_slow(c, n)
  if n > U32MAX then misuse("conn:receive: size too large", 4) end
  local io = c.io
  local t, err = begin_read(c, c.read_to)
  if not t then return nil, err end
  local why = wait_bytes(c, t, n)
  while not why and io.rlen < n do
    why = wait_bytes(c, t, n)
  end
  if why then return fail(c, t, why) end
  end_read(c, t)
  return take(c, io, n)
end

local function recv_n(c, n)
  local io = c.io
  if io.rlen >= n then return take(c, io, n) end
  return recv_n_slow(c, n)
end

-- Look for "\n" in the buffer from `scanned` on. Returns the line (consumed),
-- or nil and the new scanned count, or false when the line is too long.
local function scan_line(c, scanned)
  local io = c.io
  local len = io.rlen
  local max = c.S.line_max
  if len > scanned then
    local p = io.rdata
    local q = libc.ringline_lua_memchr(p + scanned, 10, len - scanned)
    if q ~= nil then
      local i = tonumber(q - p)
      if i > max then return false end
      local n = i
      if n > 0 and p[n - 1] == 13 then n = n - 1 end
      local s = ffi_string(p, n)
      C.rl_conn_consume(c.w, c.slot, c.gen, i + 1)
      return s
    end
    scanned = len
  end
  if scanned > max then return false end
  return nil, scanned
end

local function recv_line_slow(c, scanned)
  local t, err = begin_read(c, c.read_to)
  if not t then return nil, err end
  local why = wait_bytes(c, t, scanned + 1)
  while not why do
    local line
    line, scanned = scan_line(c, scanned)
    if line then
      end_read(c, t)
      return line
    elseif line == false then
      end_read(c, t)
      return nil, "too long"
    end
    why = wait_bytes(c, t, scanned + 1)
  end
  return fail(c, t, why)
end

local function recv_line(c)
  local line, scanned = scan_line(c, 0)
  if line then return line end
  if line == false then return nil, "too long" end
  return recv_line_slow(c, scanned)
end

-- Everything up to EOF: ask for geometrically more each time, so a big body
-- costs O(log n) wake-ups.
local function all_need(io)
  local len = io.rlen
  return len + (len > 65536 and len or 65536)
end

local function recv_all(c)
  local io = c.io
  if io.reof == 0 then
    local t, err = begin_read(c, c.read_to)
    if not t then return nil, err end
    local why = wait_bytes(c, t, all_need(io))
    while not why do
      why = wait_bytes(c, t, all_need(io))
    end
    -- wait_bytes says "closed" at EOF: that is success here.
    if c.closed or io.reof == 0 then return fail(c, t, why) end
    end_read(c, t)
  end
  local n = io.rlen
  if n > 0 then return take(c, io, n) end
  return ""
end

function methods.receive(c, pat)
  if c.closed then return nil, "closed" end
  if c.reading then return nil, "socket busy reading" end
  if type(pat) == "number" then
    if pat < 0 or pat ~= pat then misuse("conn:receive: bad size " .. tostring(pat), 2) end
    local n = math_floor(pat)
    if n == 0 then return "" end
    return recv_n(c, n)
  end
  if pat == nil or pat == "*l" or pat == "l" then return recv_line(c) end
  if pat == "*a" or pat == "a" then return recv_all(c) end
  misuse("conn:receive: bad pattern " .. tostring(pat) .. " (\"*l\", \"*a\" or a number)", 2)
end

local function wait_any(c, min, timeout)
  local io = c.io
  local t, err = begin_read(c, timeout)
  if not t then return err end
  local why = wait_bytes(c, t, min)
  while not why and io.rlen < min do
    why = wait_bytes(c, t, min)
  end
  end_read(c, t)
  return why
end

function methods.receiveany(c, max)
  if type(max) ~= "number" or max < 1 then
    misuse("conn:receiveany: max must be a number >= 1", 2)
  end
  if c.closed then return nil, "closed" end
  if c.reading then return nil, "socket busy reading" end
  local io = c.io
  local len = io.rlen
  if len == 0 then
    local why = wait_any(c, 1, c.read_to)
    if why then return nil, why end
    len = io.rlen
  end
  max = math_floor(max)
  if len > max then len = max end
  return take(c, io, len)
end

local function lines_iter(c)
  return (methods.receive(c, "*l"))
end

-- for line in conn:lines() do ... end: lines until close or any error.
function methods.lines(c)
  return lines_iter, c
end

-- Zero-copy access: ptr, len with len >= min (waiting if needed), valid
-- until the next operation on the connection. Nothing is consumed.
function methods.view(c, min, timeout)
  if min == nil then min = 1 end
  if type(min) ~= "number" or min < 0 then misuse("conn:view: bad min " .. tostring(min), 2) end
  if timeout ~= nil and type(timeout) ~= "number" then misuse("conn:view: timeout must be seconds", 2) end
  if c.closed then return nil, "closed" end
  if c.reading then return nil, "socket busy reading" end
  local io = c.io
  if io.rlen < min then
    local why = wait_any(c, min, timeout or c.read_to)
    if why then return nil, why end
  end
  return io.rdata, io.rlen
end

function methods.consume(c, n)
  if type(n) ~= "number" or n < 0 or n % 1 ~= 0 then misuse("conn:consume: bad count " .. tostring(n), 2) end
  if c.closed then return nil, "closed" end
  if n > c.io.rlen then misuse("conn:consume: " .. n .. " is more than the " .. c.io.rlen .. " bytes buffered", 2) end
  if n > 0 then C.rl_conn_consume(c.w, c.slot, c.gen, n) end
  return true
end

-- fn(ptr, len) -> consumed [, result]; 0 (or nil) consumed = need more.
-- Returns result (or the count consumed when fn gave none), or nil, err.
-- One wait of with_data's slow path: the reader flag and the deadline timer
-- are held only here, so fn, which runs between waits, can raise without
-- leaving anything behind. The deadline stays one for the whole call.
local function wd_wait(c, need, deadline)
  local io = c.io
  local t, err = begin_read(c, deadline and deadline - C.rl_worker_now(c.w))
  if not t then return err end
  local why = wait_bytes(c, t, need)
  while not why and io.rlen < need do
    why = wait_bytes(c, t, need)
  end
  end_read(c, t)
  return why
end

local function with_data_slow(c, fn, need)
  local io = c.io
  local max = c.S.line_max
  local timeout = c.read_to
  local deadline = timeout and C.rl_worker_now(c.w) + timeout
  local why = wd_wait(c, need, deadline)
  while not why do
    local len = io.rlen
    local used, res = fn(io.rdata, len)
    if used ~= nil and used ~= 0 then return used, res end
    need = len + 1
    if len >= max then return nil, "too long" end
    why = wd_wait(c, need, deadline)
  end
  return nil, why
end

function methods.with_data(c, fn)
  if type(fn) ~= "function" then misuse("conn:with_data: expected a function", 2) end
  if c.closed then return nil, "closed" end
  if c.reading then return nil, "socket busy reading" end
  local io = c.io
  local len = io.rlen
  local used, res
  if len > 0 then
    used, res = fn(io.rdata, len)
  end
  if used == nil or used == 0 then
    if len >= c.S.line_max then return nil, "too long" end
    used, res = with_data_slow(c, fn, len + 1)
    if not used then return nil, res end
    len = io.rlen
  end
  if type(used) ~= "number" or used < 0 or used > len or used % 1 ~= 0 then
    misuse("conn:with_data: fn consumed " .. tostring(used) .. " of " .. len .. " bytes", 2)
  end
  C.rl_conn_consume(c.w, c.slot, c.gen, used)
  if res == nil then return used end
  return res
end

-- OpenResty's receiveuntil. iter() returns the data before the delimiter
-- (with it when opts.inclusive); iter(size) returns it in pieces of at most
-- size bytes and then nil, nil at the end of each part.
function methods.receiveuntil(c, delim, opts)
  if type(delim) ~= "string" or #delim == 0 then
    misuse("conn:receiveuntil: the delimiter must be a non-empty string", 2)
  end
  if opts ~= nil and type(opts) ~= "table" then misuse("conn:receiveuntil: opts must be a table", 2) end
  local inclusive = opts and opts.inclusive and true or false
  local max = opts and opts.max or c.S.line_max
  local dlen = #delim
  local d1 = delim:byte(1)
  -- State across calls in size mode: bytes of a found part still to hand
  -- out, the delimiter bytes to drop after them, and "part ended".
  local pend, skip, ended = 0, 0, false

  -- One look at the buffer from `scanned` on: the results for the caller,
  -- or MORE and the new scanned count.
  local function search(size, scanned)
    local io = c.io
    local len = io.rlen
    if len >= dlen and len > scanned then
      local from = scanned - dlen + 1
      if from < 0 then from = 0 end
      local p = io.rdata
      local q
      if dlen == 1 then
        q = libc.ringline_lua_memchr(p + from, d1, len - from)
      else
        q = libc.ringline_lua_memmem(p + from, len - from, delim, dlen)
      end
      if q ~= nil then
        local i = tonumber(q - p)
        local n = inclusive and i + dlen or i
        if not size then
          if i > max then return nil, "too long" end
          local s = ffi_string(p, n)
          C.rl_conn_consume(c.w, c.slot, c.gen, i + dlen)
          return s
        end
        if n == 0 then
          C.rl_conn_consume(c.w, c.slot, c.gen, dlen)
          return nil, nil
        end
        if n > size then
          pend, skip = n - size, inclusive and 0 or dlen
          return take(c, io, size)
        end
        local s = ffi_string(p, n)
        C.rl_conn_consume(c.w, c.slot, c.gen, i + dlen)
        ended = true
        return s
      end
      scanned = len
    end
    if size then
      -- Bytes before the last dlen-1 cannot start a delimiter.
      if len - dlen + 1 >= size then return take(c, io, size) end
    elseif len - dlen + 1 > max then
      return nil, "too long"
    end
    return MORE, scanned
  end

  return function(size)
    if size ~= nil then
      if type(size) ~= "number" or size < 1 then misuse("receiveuntil iterator: bad size " .. tostring(size), 2) end
      size = math_floor(size)
    end
    if ended then
      ended = false
      return nil, nil
    end
    if c.closed then return nil, "closed" end
    if c.reading then return nil, "socket busy reading" end
    local io = c.io
    if pend > 0 then
      local k = (size and size < pend) and size or pend
      local s = take(c, io, k)
      pend = pend - k
      if pend == 0 then
        if skip > 0 then C.rl_conn_consume(c.w, c.slot, c.gen, skip) end
        ended = size ~= nil
      end
      return s
    end
    local r, a = search(size, 0)
    if r ~= MORE then return r, a end
    local t, err = begin_read(c, c.read_to)
    if not t then return nil, err end
    local scanned = a
    local why = wait_bytes(c, t, io.rlen + 1)
    while not why do
      r, a = search(size, scanned)
      if r ~= MORE then
        end_read(c, t)
        return r, a
      end
      scanned = a
      why = wait_bytes(c, t, io.rlen + 1)
    end
    return fail(c, t, why)
  end
end

------------------------------------------------------------------------
-- Writing
------------------------------------------------------------------------

local function send_bytes(c, p, n)
  if n > 0 then
    local rc = C.rl_conn_send(c.w, c.slot, c.gen, p, n)
    if rc < 0 then return nil, errstr(rc) end
  end
  return n
end

-- send_part(c, x, lvl): queue one argument; lvl is the misuse error level
-- that names the caller of send (each nesting adds two frames). Arrays of
-- up to four elements are unrolled, for the same reason as queue's args.
local send_part

local function send_elem(c, v, lvl)
  if type(v) == "string" then return send_bytes(c, v, #v) end
  return send_part(c, v, lvl + 2)
end

send_part = function(c, x, lvl)
  local tx = type(x)
  if tx == "string" then
    return send_bytes(c, x, #x)
  elseif tx == "number" then
    local s = tostring(x)
    return send_bytes(c, s, #s)
  elseif tx == "table" then
    if lvl > 68 then misuse("conn:send: arrays nested too deep (a cycle?)", lvl) end
    local n = #x
    if n == 0 then return 0 end
    local total, err = send_elem(c, x[1], lvl)
    if not total or n == 1 then return total, err end
    local k
    k, err = send_elem(c, x[2], lvl)
    if not k then return nil, err end
    total = total + k
    if n == 2 then return total end
    k, err = send_elem(c, x[3], lvl)
    if not k then return nil, err end
    total = total + k
    if n == 3 then return total end
    k, err = send_elem(c, x[4], lvl)
    if not k then return nil, err end
    total = total + k
    for i = 5, n do
      k, err = send_elem(c, x[i], lvl)
      if not k then return nil, err end
      total = total + k
    end
    return total
  elseif tx == "userdata" and getmetatable(x) == "buffer" then
    local p, n = x:ref()
    return send_bytes(c, p, n)
  end
  misuse("conn:send: cannot send a " .. tx .. " (strings, numbers, arrays, string.buffers)", lvl)
end

-- Queue every argument in order; total bytes or nil, err. One, two and
-- three arguments are unrolled: a loop that runs two or three times per
-- call would make LuaJIT abort traces ("leaving loop in root trace").
local function queue(c, ...)
  local nargs = select("#", ...)
  if nargs == 1 then
    local x = ...
    if type(x) == "string" then return send_bytes(c, x, #x) end
    if type(x) == "table" and has_slice(x) then
      local n, err = send_guarded(c, 4, 1, x)   -- not a tail call: keeps the misuse level
      return n, err
    end
    local n, err = send_part(c, x, 4)  -- not a tail call: keeps the error level right
    return n, err
  end
  if nargs == 0 then misuse("conn:send: nothing to send", 3) end
  -- a slice anywhere: the whole send is one rl_conn_sendv (region.lua)
  if any_slice(nargs, ...) then
    local n, err = send_guarded(c, 4, nargs, ...)
    return n, err
  end
  local a, b, x = ...
  local n1, n2, err
  if type(a) == "string" then n1, err = send_bytes(c, a, #a) else n1, err = send_part(c, a, 4) end
  if not n1 then return nil, err end
  if type(b) == "string" then n2, err = send_bytes(c, b, #b) else n2, err = send_part(c, b, 4) end
  if not n2 then return nil, err end
  if nargs == 2 then return n1 + n2 end
  local total = n1 + n2
  if nargs == 3 then
    if type(x) == "string" then n1, err = send_bytes(c, x, #x) else n1, err = send_part(c, x, 4) end
    if not n1 then return nil, err end
    return total + n1
  end
  for i = 3, nargs do
    n1, err = send_part(c, (select(i, ...)), 4)
    if not n1 then return nil, err end
    total = total + n1
  end
  return total
end

local function remove_writer(c, t)
  local wq, nw = c.wq, c.nw
  for i = 1, nw do
    if wq[i] == t then
      for j = i, nw - 1 do wq[j] = wq[j + 1] end
      wq[nw] = nil
      c.nw = nw - 1
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

local function send_wait_once(c, t, thresh)
  local rc = C.rl_conn_want_send(c.w, c.slot, c.gen, thresh)
  if rc < 0 then return errstr(rc) end
  local wq = c.wq
  if not wq then wq = {}; c.wq = wq end
  local nw = c.nw + 1
  c.nw = nw
  wq[nw] = t
  local why = park(c.S, t)
  if why then remove_writer(c, t) end
  return why
end

-- Wait until unsent <= thresh; nil on success, else the reason.
local function wait_send(c, thresh, timeout)
  local io = c.io
  local r = send_check(c, io, thresh)
  if r ~= MORE then return r end
  local S = c.S
  local t = S.current
  if not t then misuse("conn: a send that must wait needs a ringline task", 4) end
  if timeout then
    local id, err = timer_arm(S, t, timeout, "timeout")
    if not id then return err end
  end
  r = send_wait_once(c, t, thresh) or send_check(c, io, thresh)
  while r == MORE do
    r = send_wait_once(c, t, thresh) or send_check(c, io, thresh)
  end
  if t.tmr then timer_disarm(S, t) end
  return r
end

function methods.send(c, ...)
  if c.closed then return nil, "closed" end
  local io = c.io
  local e = io.serr
  if e ~= 0 then return nil, errstr(e) end
  local total, err = queue(c, ...)
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
  if io.unsent > c.S.hiwat then return nil, "busy" end
  local n, err = queue(c, ...)  -- not a tail call: keeps the misuse level
  return n, err
end

-- dst:send_from(src [, max]): move what src has buffered (waiting for at
-- least one byte; at most max) into dst's send queue and consume it from
-- src: one copy, straight from src's receive buffer, and no Lua string -
-- what an echo or a proxy pump wants. Returns the bytes moved, or nil, err,
-- side with side "receive" (src ended or failed; err as receive's) or
-- "send" (dst failed). Yields like send above the high watermark.
function methods.send_from(c, src, max)
  if getmetatable(src) ~= mt then misuse("conn:send_from: the source must be a connection", 2) end
  if max ~= nil and (type(max) ~= "number" or max < 1) then
    misuse("conn:send_from: bad max " .. tostring(max), 2)
  end
  if c.closed then return nil, "closed", "send" end
  local io = c.io
  local e = io.serr
  if e ~= 0 then return nil, errstr(e), "send" end
  local p, n = methods.view(src, 1)
  if not p then return nil, n, "receive" end
  if max and n > max then n = max end
  local rc = C.rl_conn_send(c.w, c.slot, c.gen, p, n)
  if rc < 0 then return nil, errstr(rc), "send" end
  C.rl_conn_consume(src.w, src.slot, src.gen, n)
  local S = c.S
  if io.unsent > S.hiwat then
    local why = wait_send(c, S.lowat, c.send_to)
    if why then return nil, why, "send" end
  end
  return n
end

-- Flushed but guards are out: park among the writers until a guard
-- release brings c.guards to 0 (region.conn_idle wakes them).
local function guard_wait_once(c, t)
  local wq = c.wq
  if not wq then wq = {}; c.wq = wq end
  local nw = c.nw + 1
  c.nw = nw
  wq[nw] = t
  local why = park(c.S, t)
  if why then remove_writer(c, t) end
  return why
end

-- Wait, under one deadline, until nothing is unsent and every guard of c
-- has been released; nil on success, else the reason.
local function wait_guards(c, timeout)
  local S = c.S
  local t = S.current
  if not t then misuse("conn: a flush that must wait needs a ringline task", 4) end
  if timeout then
    local id, err = timer_arm(S, t, timeout, "timeout")
    if not id then return err end
  end
  local io = c.io
  local why
  repeat
    why = send_check(c, io, 0)
    if why == MORE then
      why = send_wait_once(c, t, 0) or MORE
    elseif why == nil and c.guards > 0 then
      why = guard_wait_once(c, t) or MORE
    end
  until why ~= MORE
  if t.tmr then timer_disarm(S, t) end
  return why
end

region.conn_idle = function(c)
  local S, wq = c.S, c.wq
  for j = 1, c.nw do
    local t = wq[j]
    wq[j] = nil
    wake(S, t, nil)
  end
  c.nw = 0
end

function methods.flush(c, timeout)
  if timeout ~= nil and type(timeout) ~= "number" then misuse("conn:flush: timeout must be seconds", 2) end
  local tmo = timeout or c.send_to
  local why
  if c.guards == 0 then why = wait_send(c, 0, tmo) end
  -- guarded parts out (or queued by another task meanwhile): wait for them too
  if not why and c.guards > 0 then why = wait_guards(c, tmo) end
  if why then return nil, why end
  return true
end

------------------------------------------------------------------------
-- Timeouts, shutdown, close
------------------------------------------------------------------------

-- Milliseconds (OpenResty) -> seconds; nil or 0 = no timeout.
local function ms(v, what)
  if v == nil then return false end
  if type(v) ~= "number" or v < 0 then misuse(what .. ": timeout must be milliseconds >= 0", 3) end
  if v == 0 then return false end
  return v / 1000
end

function methods.settimeout(c, t)
  local s = ms(t, "conn:settimeout")
  c.connect_to, c.send_to, c.read_to = s, s, s
end

function methods.settimeouts(c, connect_ms, send_ms, read_ms)
  c.connect_to = ms(connect_ms, "conn:settimeouts")
  c.send_to = ms(send_ms, "conn:settimeouts")
  c.read_to = ms(read_ms, "conn:settimeouts")
end

function methods.shutdown(c, what)
  if what ~= "send" then misuse("conn:shutdown: only \"send\" is supported", 2) end
  if c.closed then return nil, "closed" end
  local rc = C.rl_conn_shutdown(c.w, c.slot, c.gen)
  if rc < 0 then return nil, errstr(rc) end
  return true
end

local function wake_all(c, why)
  local S = c.S
  local t = c.rtask
  if t then
    c.rtask = false
    wake(S, t, why)
  end
  local nw = c.nw
  if nw > 0 then
    local wq = c.wq
    for j = 1, nw do
      t = wq[j]
      wq[j] = nil
      wake(S, t, why)
    end
    c.nw = 0
  end
  local fdw = c.fdw
  if fdw then
    c.fdw = false
    for j = 1, #fdw do wake(S, fdw[j], why) end
  end
end

function methods.close(c, how)
  if how ~= nil and how ~= "reset" then misuse("conn:close: how must be nil or \"reset\"", 2) end
  if c.closed then return nil, "closed" end
  c.closed = true
  C.rl_conn_close(c.w, c.slot, c.gen, how == "reset" and RESET or 0)
  wake_all(c, "closed")
  local o = c.owner
  if o then
    -- a long-lived task that opens and closes many keeps no trace of them
    c.owner = false
    local owned = o.owned
    if owned then owned[c] = nil end
  end
  return true
end

------------------------------------------------------------------------
-- Descriptors: names and options
------------------------------------------------------------------------

local function conn_fd(c)
  if c.closed then return nil, "closed" end
  local fd = c.fd
  if fd then return fd end
  if not c.fdpending then
    local rc = C.rl_conn_fd(c.w, c.slot, c.gen)
    if rc >= 0 then
      c.fd = rc
      return rc
    end
    if rc ~= -errors.EAGAIN then return nil, errstr(rc) end
    c.fdpending = true
  end
  local S = c.S
  local t = S.current
  if not t then misuse("conn: getting the socket's descriptor needs a ringline task", 4) end
  local fdw = c.fdw
  if not fdw then fdw = {}; c.fdw = fdw end
  fdw[#fdw + 1] = t
  local why
  repeat
    why = park(S, t)
  until why or not c.fdpending
  if why then
    fdw = c.fdw
    if fdw then
      for i = #fdw, 1, -1 do
        if fdw[i] == t then table.remove(fdw, i) end
      end
    end
    return nil, why
  end
  if c.fd then return c.fd end
  return nil, c.fderr or "closed"
end

local function name(c, peer)
  local fd, err = conn_fd(c)
  if not fd then return nil, err end
  local S = c.S
  local port = C.rl_fd_name(fd, peer, S.namebuf, 256)
  if port < 0 then return nil, errstr(port) end
  return ffi_string(S.namebuf), port
end

function methods.getpeername(c) return name(c, 1) end
function methods.getsockname(c) return name(c, 0) end

local OPTS = { ["tcp-nodelay"] = 1, keepalive = 2, sndbuf = 3, rcvbuf = 4 }

function methods.setoption(c, opt, value)
  local o = OPTS[opt]
  if not o then misuse("conn:setoption: unknown option " .. tostring(opt), 2) end
  local v
  if type(value) == "boolean" then
    v = value and 1 or 0
  elseif type(value) == "number" and value >= 0 and value % 1 == 0 and value <= 0x7fffffff then
    v = value
  else
    misuse("conn:setoption: bad value " .. tostring(value) .. " for " .. opt, 2)
  end
  local fd, err = conn_fd(c)
  if not fd then return nil, err end
  local rc = C.rl_fd_setoption(fd, o, v)
  if rc < 0 then return nil, errstr(rc) end
  return true
end

-- Unique in the worker while the connection lives: the generation makes a
-- stale id differ from the next occupant of the slot.
function methods.id(c)
  return c.gen * 16777216 + c.slot
end

------------------------------------------------------------------------
-- Ownership (ringline.client opens outbound connections; sched closes a
-- task's connections when it ends)
------------------------------------------------------------------------

-- Give the connection to task (closed when that task ends instead), or
-- with nil to nobody (it then lives until closed or the run ends).
function methods.setowner(c, task)
  if task ~= nil and getmetatable(task) ~= sched.Task_mt then
    misuse("conn:setowner: expected a task (ringline.spawn's result) or nil", 2)
  end
  if task and task.st == sched.DEAD then misuse("conn:setowner: the task has finished", 2) end
  if c.closed then return nil, "closed" end
  local old = c.owner
  if old then
    if old.conn == c then
      old.conn = nil
    elseif old.owned then
      old.owned[c] = nil
    end
  end
  c.heir_of = false
  c.owner = task or false
  if task then
    local owned = task.owned
    if not owned then owned = {}; task.owned = owned end
    owned[c] = true
  end
  return true
end

function methods.getowner(c)
  return c.owner or nil
end

return M
