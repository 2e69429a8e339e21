-- ringline.conn_read: the reading methods of connections (receive,
-- receiveany, lines, view, consume, with_data, receiveuntil); ringline.conn
-- puts them in its methods table (install).
--
-- Reads are served in place from the core's receive buffer: io.rdata/io.rlen
-- of the connection's `struct rl_conn_io`, which the core keeps current. A
-- Lua string is made (ffi.string) only for what the caller asked for, and a
-- call that the buffered bytes already satisfy never yields and never asks
-- the core for an event. Otherwise the reader asks for one RL_EV_RECV with
-- rl_conn_want_recv(min) and parks; each wake-up re-checks the buffer.
--
-- A receive's timeout is a deadline for the whole call, armed with a core
-- timer only when the call actually has to wait; a timed-out receive
-- consumes nothing.
--
-- Sizes the peer chooses are bounded: receive(n), receive("*a") and
-- view(min) answer nil, "too large" (consuming nothing) rather than buffer
-- more than max_receive bytes (the configuration key, or opts.max of the
-- call); the core's window then holds at most that plus one buffer.
local ffi = require "ffi"
local C = require "ringline.lib"
local sched = require "ringline.sched"
local errors = require "ringline.errors"
local check = require "ringline.check"

local ffi_string = ffi.string
local type, tostring, tonumber, error, pairs = type, tostring, tonumber, error, pairs
local math_floor, math_ceil = math.floor, math.ceil
local errstr = errors.errstr
local waiter, wake = sched.waiter, sched.wake
local wait_begin, wait_park, wait_end = sched.wait_begin, sched.wait_park, sched.wait_end
local todeadline, totimeout = sched.todeadline, sched.totimeout

-- libc helpers under private names (asm labels), so these declarations can
-- never clash with anyone else's declaration of memchr/memmem.
ffi.cdef [[
const uint8_t *ringline_lua_memchr(const uint8_t *s, int c, size_t n) __asm__("memchr");
const uint8_t *ringline_lua_memmem(const uint8_t *h, size_t hl, const char *n, size_t nl) __asm__("memmem");
]]
local libc = ffi.C
local _ = libc.ringline_lua_memchr, libc.ringline_lua_memmem  -- resolved now, not in a trace

local U32MAX = 0xffffffff
local MAX_RECEIVE = 2 ^ 30 -- the largest max_receive (config.lua's range)
local MORE = {}          -- "the buffer does not satisfy the call yet"

local M = {}
local methods = {}
M.methods = methods

local function misuse(msg, lvl)
  error("ringline: " .. msg, lvl + 1)
end

-- Every wait of a connection's I/O starts here (conn_send's too; conn:fd
-- waits on its own): the running task, about to wait in a `what`
-- ("receive", "send" or "flush"), with the call's deadline (timeout:
-- seconds or false) armed by sched.wait_begin; a receiver also becomes c's
-- reader. nil, err when the timer cannot be armed. A misuse (no task, or a
-- coroutine ringline did not make) raises before anything is registered,
-- naming the user's line. end_read (a receive) and sched.wait_end (a send)
-- end it.
local function begin_wait(c, timeout, what)
  local S = c.S
  local t = waiter(S, "conn: a " .. what .. " that must wait needs a ringline task")
  local ok, err = wait_begin(S, t, timeout)
  if not ok then return nil, err end
  if what == "receive" then
    c.reading = true
    local n = S.rseq + 1  -- how long it has been idle, for shed_idle
    S.rseq, c.rsince = n, n
  end
  return t
end
M.begin_wait = begin_wait

local function end_read(c, t)
  if t then
    c.reading = false
    wait_end(c.S, t)
  end
end

-- A graceful stop (ringline.worker) serves what has arrived on accepted
-- connections, and then their readers get "closed": a read that would wait
-- first asks the core whether the kernel holds unread bytes
-- (rl_conn_probe, answered by RL_EV_PENDING after every receive completion
-- already posted). Bytes there: wait for them like any read (for any more,
-- not for `need`, so the next look comes as soon as they are in). None:
-- "closed", whatever the caller has buffered stays its partial result.
local EV_PENDING = C.RL_EV_PENDING
local _ = C.rl_conn_probe   -- resolved now, not in a trace

local function on_pending(S, ev)
  local c = S.conns[ev.slot]
  if c and c.gen == ev.gen then
    c.probe_res = ev.res
    local t = c.rtask
    if t then wake(S, t, nil) end
  end
end

-- wait_park's ready for the probe: answered, or bytes came meanwhile.
local function probe_answered(c)
  return c.probe_res ~= false or c.io.rlen ~= c.probe_rlen
end

-- Returns false to wait for bytes the kernel holds, nil to re-check (bytes
-- came meanwhile), or the reason the read ends.
local function drain_look(c, t)
  local io = c.io
  local rlen = io.rlen
  c.probe_res = false
  if C.rl_conn_probe(c.w, c.slot, c.gen) < 0 then return "closed" end
  c.rtask = t
  c.probe_rlen = rlen
  local why = wait_park(c.S, t, probe_answered, c)   -- inside the receive's deadline
  c.rtask = false
  if why then return why end
  if io.rlen ~= rlen then return nil end
  local p = c.probe_res
  if p == 1 then return false end
  if p < 0 then return errstr(p) end
  return "closed"
end

-- Wait once for rlen >= need (or EOF/error); returns nil to re-check, or
-- the reason the read cannot go on ("closed" also means EOF).
local function wait_bytes(c, t, need)
  if c.closed then return "closed" end
  local io = c.io
  if io.reof ~= 0 then return "closed" end
  local e = io.rerr
  if e ~= 0 then return errstr(e) end
  -- In a hand-over's drain (a reload, an upgrade: S.handover) a connection
  -- that has sent nothing yet (c.fresh, ringline.conn_send) is waited for
  -- as usual, within the deadline: a peer accepted just before or during
  -- it has its first request on the way, and closing now would fail it
  -- (on SIGTERM the socket closes and such peers are reset anyway).
  local S = c.S
  if S.draining and c.listener and not (c.fresh and S.handover) then
    local why = drain_look(c, t)
    if why ~= false then return why end
    need = io.rlen + 1
  end
  if need > U32MAX then need = U32MAX end
  local rc = C.rl_conn_want_recv(c.w, c.slot, c.gen, need)
  if rc < 0 then return errstr(rc) end
  -- 1: already satisfied, nothing was registered and no event will come:
  -- parking now would wait forever with the bytes there (the caller
  -- re-checks; needs are whole numbers, so it does not ask again)
  if rc > 0 then return nil end
  c.rtask = t
  local why = wait_park(c.S, t)
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
  local io = c.io
  local t, err = begin_wait(c, c.read_to, "receive")
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
  local t, err = begin_wait(c, c.read_to, "receive")
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
-- costs O(log n) wake-ups, but never for more than max + 1 (one byte past
-- the limit says the stream is too large).
local function all_need(io, max)
  local len = io.rlen
  local need = len + (len > 65536 and len or 65536)
  if need > max + 1 then need = max + 1 end
  return need
end

local function recv_all(c, max)
  local io = c.io
  if io.rlen > max then return nil, "too large" end
  if io.reof == 0 then
    local t, err = begin_wait(c, c.read_to, "receive")
    if not t then return nil, err end
    local why = wait_bytes(c, t, all_need(io, max))
    while not why and io.rlen <= max do
      why = wait_bytes(c, t, all_need(io, max))
    end
    if io.rlen > max and not c.closed then
      end_read(c, t)
      return nil, "too large"
    end
    -- wait_bytes says "closed" at EOF: that is success here.
    if c.closed or io.reof == 0 then return fail(c, t, why) end
    end_read(c, t)
  end
  local n = io.rlen
  if n > 0 then return take(c, io, n) end
  return ""
end

-- The byte limit of one call: opts.max, else the max_receive key. A bad
-- value is the caller's mistake (raised at its line: lvl counts from here).
local function max_of(c, opts, what, lvl)
  if opts == nil then return c.S.max_receive end
  if type(opts) ~= "table" then misuse(what .. ": opts must be a table", lvl + 1) end
  local m = opts.max
  if m == nil then return c.S.max_receive end
  if type(m) ~= "number" or m ~= m or m < 1 or m > MAX_RECEIVE then
    misuse(what .. ": opts.max must be a number of bytes in 1.." .. MAX_RECEIVE .. ", got "
      .. tostring(m), lvl + 1)
  end
  return math_floor(m)
end

-- receive(pat [, opts]): opts.max overrides max_receive for this call.
function methods.receive(c, pat, opts)
  local max = max_of(c, opts, "conn:receive", 2)
  if c.closed then return nil, "closed" end
  if c.reading then return nil, "socket busy reading" end
  if type(pat) == "number" then
    if pat < 0 or pat ~= pat then misuse("conn:receive: bad size " .. tostring(pat), 2) end
    local n = math_floor(pat)
    if n == 0 then return "" end
    if n > max then return nil, "too large" end
    return recv_n(c, n)
  end
  if pat == nil or pat == "*l" or pat == "l" then return recv_line(c) end
  if pat == "*a" or pat == "a" then return recv_all(c, max) end
  misuse("conn:receive: bad pattern " .. tostring(pat) .. " (\"*l\", \"*a\" or a number)", 2)
end

-- One whole wait, from begin_wait to end_read, until rlen >= min: nil,
-- else the reason (nothing consumed).
local function wait_any(c, min, timeout)
  local io = c.io
  local t, err = begin_wait(c, timeout, "receive")
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

-- An empty buffer has no storage in the core (rdata is NULL): view hands out
-- this instead, so the pointer is never a NULL cdata (which is truthy yet
-- equal to nil, and would slip past `if not p`).
local EMPTY_BUF = ffi.new("uint8_t[1]")   -- kept alive by this upvalue
local EMPTY = ffi.cast("const uint8_t *", EMPTY_BUF)

-- Zero-copy access: ptr, len with len >= min (waiting if needed), valid
-- until the next operation on the connection. Nothing is consumed.
-- view(min [, timeout] [, opts]): min past opts.max (else max_receive) is
-- nil, "too large"; opts may take timeout's place.
function methods.view(c, min, timeout, opts)
  if min == nil then min = 1 end
  if type(min) ~= "number" or min < 0 or min ~= min then misuse("conn:view: bad min " .. tostring(min), 2) end
  min = math_ceil(min)  -- whole bytes: view(1.5) waits for 2
  if type(timeout) == "table" and opts == nil then timeout, opts = nil, timeout end
  check.milliseconds(timeout, "conn:view: timeout")   -- ms, as settimeout
  local max = max_of(c, opts, "conn:view", 2)
  if c.closed then return nil, "closed" end
  if c.reading then return nil, "socket busy reading" end
  if min > max then return nil, "too large" end
  local io = c.io
  if io.rlen < min then
    local why = wait_any(c, min, check.call_ms(timeout, c.read_to))
    if why then return nil, why end
  end
  local n = io.rlen
  if n == 0 then return EMPTY, 0 end
  return io.rdata, n
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
-- Each wait of with_data's slow path is one wait_any: the reader flag and
-- the deadline timer are held only during it, so fn, which runs between
-- waits, can raise without leaving anything behind. The deadline stays one
-- for the whole call.
local function with_data_slow(c, fn, need)
  local io = c.io
  local max = c.S.line_max
  local S = c.S
  local deadline = todeadline(S, c.read_to)
  local why = wait_any(c, need, totimeout(S, deadline))
  while not why do
    local len = io.rlen
    local used, res = fn(io.rdata, len)
    if used ~= nil and used ~= 0 then return used, res end
    need = len + 1
    if len >= max then return nil, "too long" end
    why = wait_any(c, need, totimeout(S, deadline))
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
  local max = opts and opts.max
  if max == nil then
    max = c.S.line_max
  elseif type(max) ~= "number" or max ~= max or max < 0 or max == math.huge then
    misuse("conn:receiveuntil: opts.max must be a finite number >= 0, got " .. tostring(max), 2)
  elseif max > c.S.max_receive then
    -- no part may be buffered past the connection's max_receive: a larger
    -- max would end in the core's refusal ("message too long") instead
    max = c.S.max_receive
  end
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
    local t, err = begin_wait(c, c.read_to, "receive")
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

-- ringline.conn: add these methods to the connection's.
function M.install(conn_methods)
  for k, f in pairs(methods) do conn_methods[k] = f end
end

-- RL_EV_RECV: what c's reader asked for with rl_conn_want_recv arrived (or
-- EOF, or an error): it re-checks the buffer. The hot path: one lookup.
local function on_recv(S, ev)
  local c = S.conns[ev.slot]
  if c and c.gen == ev.gen then
    local t = c.rtask
    if t then
      wake(S, t, nil)
    elseif c.pooled then
      M.idle_event(c)          -- idle in a keep-alive pool (pool.lua)
    end
  end
end

-- ringline (init.lua) installs this module's events (ringline.sched lists them).
function M.attach(sched_)
  sched_.on_event(C.RL_EV_RECV, on_recv)
  sched_.on_event(EV_PENDING, on_pending)
end

return M
