-- ringline.conn: the connection object (OpenResty cosocket names): its
-- creation, timeouts, shutdown and close, names and socket options, and
-- ownership. The reading methods are ringline.conn_read's, the writing ones
-- ringline.conn_send's; this module puts them all in one methods table.
--
-- Timeouts are deadlines for a whole call, armed with a core timer only when
-- the call actually has to wait; a timed-out receive consumes nothing.
local ffi = require "ffi"
local C = require "ringline.lib"
local sched = require "ringline.sched"
local errors = require "ringline.errors"
local check = require "ringline.check"
local read = require "ringline.conn_read"
local send = require "ringline.conn_send"
local tls = require "ringline.tls"

local ffi_string = ffi.string
local type, tostring, error, getmetatable = type, tostring, error, getmetatable
local setmetatable = setmetatable
local errstr = errors.errstr
local wake = sched.wake
local wake_writers = send.wake_writers

local RESET = C.RL_CLOSE_RESET

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
  -- Every field the hot paths set is present from the start (false =
  -- none), so the table never rehashes there. At most 32 of them: 33 make
  -- LuaJIT size the hash part 64 nodes, 768 bytes more for every idle
  -- connection (docs/operations.md, "Memory per connection"). Fields only
  -- rare paths set are left out (nil = none): fderr (a failed descriptor
  -- fetch), heir_of (a task returned the connection).
  local c = setmetatable({
    S = S, w = w, slot = slot, gen = gen, io = C.rl_conn_io(w, slot),
    closed = false, reading = false, rtask = false,
    writers = false, nwriters = 0,
    guards = 0,          -- its guarded send parts not yet released (region.lua)
    fd = false, fdpending = false, fd_waiters = false,
    -- the run's defaults (read_timeout, send_timeout: ms, 0 = none) until
    -- settimeout(s) says otherwise
    read_to = S.read_to_s, send_to = S.send_to_s,
    listener = false, owner = false,
    ip = false,          -- its peer's address, when counted for max_connections_per_ip
    rsince = 0,          -- S.rseq when its last receive began to wait (shed_idle)
    sending = false,     -- a send holds its send lock (conn_send.lua)
    probe_res = false,   -- the answer of its pending-bytes probe (conn_read.lua)
    probe_rlen = 0,      -- rlen when that probe was asked
    tls = false,         -- false: plaintext; 1: handshake running; true: TLS (tls.lua)
    -- the keep-alive pool (pool.lua): its key (connect sets it), the pool
    -- counting it, idle in it, times taken from it, idle deadline and ms
    pool_key = false, pool = false, pooled = false, reused = 0,
    idle_until = false, idle_ms = 0,
    fresh = false,       -- accepted, nothing sent yet: a drain waits for its first request
  }, mt)
  S.conns[slot] = c
  return c
end

-- receive and the other reads (conn_read.lua), send and the other writes
-- (conn_send.lua); the rest of the methods follow here.
read.install(methods)
send.install(methods, mt)

local function misuse(msg, lvl)
  error("ringline: " .. msg, lvl + 1)
end

------------------------------------------------------------------------
-- Timeouts, shutdown, close
------------------------------------------------------------------------

-- Milliseconds (OpenResty) -> seconds; nil or 0 = no timeout. NaN (which
-- compares false with everything, and made every wait time out at once)
-- and infinities are misuse, raised at the caller's line.
local function ms(v, what)
  check.milliseconds(v, what)
  if v == nil or v == 0 then return false end
  return v / 1000
end

function methods.settimeout(c, t)
  local s = ms(t, "conn:settimeout")
  c.send_to, c.read_to = s, s
end

-- connect_ms is checked and has no effect: a connection object exists only
-- once connected (ringline.connect takes opts.timeout).
function methods.settimeouts(c, connect_ms, send_ms, read_ms)
  ms(connect_ms, "conn:settimeouts")
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
  if c.nwriters > 0 then wake_writers(c, why) end
  local fd_waiters = c.fd_waiters
  if fd_waiters then
    c.fd_waiters = false
    for j = 1, #fd_waiters do wake(S, fd_waiters[j], why) end
  end
end

function methods.close(c, how)
  if how ~= nil and how ~= "reset" then misuse("conn:close: how must be nil or \"reset\"", 2) end
  if c.closed then return nil, "closed" end
  c.closed = true
  C.rl_conn_close(c.w, c.slot, c.gen, how == "reset" and RESET or C.RL_CLOSE_GRACEFUL)
  wake_all(c, "closed")
  if c.pool then M.pool_forget(c) end   -- its pool's count (pool.lua)
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
-- TLS (ringline.tls): upgrade and what was negotiated
------------------------------------------------------------------------

-- OpenResty's tcpsock:sslhandshake(reused_session, server_name, ssl_verify)
-- for a client; a table argument ({ cert = ..., key = ... }) makes it the
-- server side. Unlike OpenResty, ssl_verify defaults to true (nil: verify
-- against the system store). Returns a session object to pass back as
-- reused_session next time (true when reused_session is false).
function methods.sslhandshake(c, reused_session, server_name, ssl_verify, opts)
  local S = c.S
  local t = sched.current(S, "conn:sslhandshake")
  local ctx, err, sess
  local client = type(reused_session) ~= "table"
  if not client then
    ctx, err = tls.server_ctx(S, tls.server_opts(reused_session, "conn:sslhandshake"))
    server_name = nil
  else
    if server_name ~= nil and type(server_name) ~= "string" then
      misuse("conn:sslhandshake: server_name must be a string", 2)
    end
    sess = tls.session(reused_session, "conn:sslhandshake: reused_session")
    local o = tls.client_opts({ verify = ssl_verify ~= false, server_name = server_name,
                                ca = type(opts) == "table" and opts.ca or nil }, nil,
                              "conn:sslhandshake")
    server_name = o.server_name
    ctx, err = tls.client_ctx(S, o)
  end
  if not ctx then return nil, err end
  local ok
  ok, err = tls.handshake(S, t, c, ctx, server_name or nil, nil, sess)
  if not ok then return nil, err end
  if client and reused_session ~= false then return tls.session_of(c) or true end
  return true
end

methods.sslinfo = tls.sslinfo

------------------------------------------------------------------------
-- Descriptors: names and options
------------------------------------------------------------------------

-- wait_park's ready for conn:fd: the core answered.
local function fd_known(c) return not c.fdpending end

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
  local t = sched.waiter(S, "conn: getting the socket's descriptor needs a ringline task")
  local fd_waiters = c.fd_waiters
  if not fd_waiters then fd_waiters = {}; c.fd_waiters = fd_waiters end
  fd_waiters[#fd_waiters + 1] = t
  local why = sched.wait_park(S, t, fd_known, c)   -- no deadline
  if why then
    fd_waiters = c.fd_waiters
    if fd_waiters then
      for i = #fd_waiters, 1, -1 do
        if fd_waiters[i] == t then table.remove(fd_waiters, i) end
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

-- option names -> enum rl_sockopt
local OPTS = { ["tcp-nodelay"] = C.RL_OPT_NODELAY, keepalive = C.RL_OPT_KEEPALIVE,
               sndbuf = C.RL_OPT_SNDBUF, rcvbuf = C.RL_OPT_RCVBUF }

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
  if task and task.state == sched.DEAD then misuse("conn:setowner: the task has finished", 2) end
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
  c.owner = false
  if task then sched.own(task, c) end
  return true
end

function methods.getowner(c)
  return c.owner or nil
end

-- RL_EV_CLOSED: the core freed the connection's slot (its close completed):
-- it reads as closed, and leaves its listener's and its address's counts.
local function on_closed(S, ev)
  local conns = S.conns
  local slot = ev.slot
  local c = conns[slot]
  if c and c.gen == ev.gen then
    conns[slot] = nil
    c.closed = true
    local l = c.listener
    if l then l.nconns = l.nconns - 1 end
    local ip = c.ip
    if ip then
      local per_ip = S.per_ip
      local k = per_ip[ip] - 1
      per_ip[ip] = k > 0 and k or nil
    end
  end
end

-- RL_EV_FD: the socket's descriptor (or why there is none) for conn:fd.
local function on_fd(S, ev)
  local c = S.conns[ev.slot]
  if c and c.gen == ev.gen then
    local res = ev.res
    c.fdpending = false
    if res >= 0 then c.fd = res else c.fderr = errstr(res) end
    local fd_waiters = c.fd_waiters
    if fd_waiters then
      c.fd_waiters = false
      for j = 1, #fd_waiters do wake(S, fd_waiters[j], nil) end
    end
  end
end

-- ringline (init.lua) installs this module's events (ringline.sched lists them).
function M.attach(sched_)
  sched_.on_event(C.RL_EV_CLOSED, on_closed)
  sched_.on_event(C.RL_EV_FD, on_fd)
end

return M
