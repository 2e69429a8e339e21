-- ringline.listener: listening sockets and the accept path.
--
-- The core accepts (multishot, straight into the fixed file table) and
-- reports RL_EV_ACCEPTED; its entry in the dispatch table (on_accepted, installed by attach)
-- makes the connection object and starts the handler task. The handler's
-- task owns the connection: it is closed (gracefully, after the queued data)
-- when the handler returns, and reset when it raises.
local C = require "ringline.lib"
local H = require "ringline.host"   -- false outside the host
local sched = require "ringline.sched"
local conn = require "ringline.conn"
local errors = require "ringline.errors"
local log = require "ringline.log"
local check = require "ringline.check"
local tls = require "ringline.tls"
local addr_errstr = require("ringline.client").addr_errstr

local ffi = require "ffi"

local type, tostring, error, setmetatable, pairs = type, tostring, error, setmetatable, pairs
local errstr = errors.errstr
local conn_new, spawn_handler = conn.new, sched.spawn_handler
local admit, shed_if_full   -- below

local LISTEN_REUSEPORT, LISTEN_NODELAY = C.RL_LISTEN_REUSEPORT, C.RL_LISTEN_NODELAY
local LISTEN_MODE, MODE_SHIFT = C.RL_LISTEN_MODE, 2 ^ C.RL_LISTEN_MODE_SHIFT
local RESET = C.RL_CLOSE_RESET
local EV_LISTENER = C.RL_EV_LISTENER

-- How several workers share an address: "reuseport" (a socket each) or
-- "acceptor" (one socket; the host's acceptor thread hands connections to
-- the workers round robin). The host's --accept sets the default.
local ACCEPT = require "ringline.host" and require("ringline.hostinfo").accept or "reuseport"
-- This worker's host slot: in the host, listen goes through the host's
-- registry of listening sockets (bindings/host/listeners.c), which keeps
-- them open across a reload and adopts those systemd or an upgrade passed.
local SLOT = H and require("ringline.hostinfo").slot

-- The options of listen, one entry each (ringline.check: true = valid, a
-- string = refused with that reason).
local VALID = {
  max_connections = true,   -- this listener's cap (connections over it are reset)
  accept = true,            -- "reuseport" or "acceptor" (several workers)
  reuseport = true,         -- SO_REUSEPORT (default: on with several workers)
  nodelay = true,           -- TCP_NODELAY on accepted connections (default on)
  backlog = true,           -- accepted and ignored: the backlog is per worker
  mode = true,              -- unix sockets: the socket file's permissions
  ssl = true,               -- { cert = PATH, key = PATH }: TLS (ringline.tls)
  ssl_cert = "not supported (use ssl = { cert = ..., key = ... })",
  ssl_key = "not supported (use ssl = { cert = ..., key = ... })",
}
-- A misuse raises at the user's line: ringline.listen tail-calls listen
-- below, so a fixed level would name no line.
local function misuse(msg)
  error(msg, errors.caller_level())
end

local M = {}
M.VALID = VALID
local methods = {}
local mt = {
  __index = methods,
  __name = "ringline.listener",
  __tostring = function(l) return "ringline.listener(" .. tostring(l.addr) .. ")" end,
}
M.mt = mt

-- The host part of an address as given to listen (the core binds it).
local function addr_host(addr)
  if addr:sub(1, 5) == "unix:" then return addr:sub(6) end
  local v6 = addr:match("^%[(.*)%]:%d*$")
  if v6 then return v6 end
  local h = addr:match("^(.*):%d*$")
  if h and h ~= "" then return h end
  return "0.0.0.0"
end

-- opts.mode: the unix socket file's permissions, a number (0660 written
-- tonumber("660", 8)) or a string of octal digits ("660", "0660").
local function file_mode(mode)
  if type(mode) == "string" then
    if not mode:match("^0?[0-7][0-7][0-7]$") then return nil end
    return tonumber(mode, 8)
  end
  if type(mode) == "number" and mode >= 0 and mode <= 511 and mode % 1 == 0 then return mode end
  return nil
end

function M.listen(S, addr, handler, opts)
  if type(addr) == "number" then
    if addr < 0 or addr > 65535 or addr % 1 ~= 0 then
      misuse("ringline.listen: bad port " .. tostring(addr))
    end
    addr = tostring(addr)
  elseif type(addr) ~= "string" then
    misuse("ringline.listen: addr must be a string or a port number")
  end
  if type(handler) ~= "function" then misuse("ringline.listen: handler must be a function") end
  check.options(opts, VALID, "ringline.listen")
  opts = opts or {}
  local max = opts.max_connections
  if max ~= nil and (type(max) ~= "number" or max < 0 or max % 1 ~= 0) then
    misuse("ringline.listen: opts.max_connections must be an integer >= 0")
  end
  if max == 0 then max = nil end   -- 0: no cap of its own, as the config keys' 0
  local accept = opts.accept
  if accept == nil then
    accept = ACCEPT
  elseif accept ~= "reuseport" and accept ~= "acceptor" then
    misuse("ringline.listen: opts.accept must be \"reuseport\" or \"acceptor\"")
  end
  local unix = addr:sub(1, 5) == "unix:"
  local mode = opts.mode
  if mode ~= nil then
    mode = file_mode(mode)
    if not mode then
      misuse("ringline.listen: opts.mode must be permissions 0..0777, a number or an octal "
        .. "string such as \"0660\"")
    end
    if not unix then misuse("ringline.listen: opts.mode is for unix sockets only") end
  end
  -- SO_REUSEPORT does not apply to unix sockets: a second worker's bind
  -- would replace the first one's socket file. They always share one.
  local shared = H and log.workers > 1 and (accept == "acceptor" or unix)
  -- opts.backlog: the backlog is per worker (configure{listen_backlog=}),
  -- fixed when the worker starts; a per-listener value is accepted and ignored.
  -- A shared socket takes the backlog of the worker that binds it.
  -- (a shared socket sets REUSEPORT too: a worker listening again on the
  -- address right after the last one closed it binds while the acceptor is
  -- still closing the old socket)
  local reuseport = opts.reuseport
  if reuseport == nil then reuseport = log.workers > 1 end
  local flags = (opts.nodelay ~= false and LISTEN_NODELAY or 0) + (reuseport and LISTEN_REUSEPORT or 0)
  if mode then flags = flags + LISTEN_MODE + mode * MODE_SHIFT end
  local ssl = tls.server_opts(opts.ssl, "ringline.listen")
  local w = sched.start(S)
  local tls_ctx = false
  if ssl then
    local err
    tls_ctx, err = tls.server_ctx(S, ssl)
    if not tls_ctx then return nil, err end
  end
  local id
  if shared then
    id = H.rl_host_listen_shared(w, addr, flags, S.cfg.listen_backlog)
    if id == -errors.EOPNOTSUPP then
      return nil, "the kernel cannot pass connections between workers (IORING_OP_MSG_RING "
        .. "with IORING_MSG_SEND_FD reporting the slot, Linux 6.3); "
        .. (unix and "listen on a TCP address, or run one worker (-w 1)"
                  or "use --accept reuseport")
    end
  elseif H then
    id = H.rl_host_listen(w, SLOT, addr, flags, S.cfg.listen_backlog)
  else
    id = C.rl_listen(w, addr, flags)
  end
  if id < 0 then return nil, addr_errstr(id) end
  local gen = ffi.new("uint32_t[1]")
  C.rl_listener_gen(w, id, gen)
  if log.workers > 1 and log.worker_id == 0 and not shared
     and (addr == "0" or addr:find(":0$")) then
    -- each worker's socket gets a port of its own: rarely what was meant
    log.log(log.WARN, "listening on port 0 with ", log.workers, " workers: each worker gets ",
      "a different port; give a fixed port to share one")
  end
  local l = setmetatable({ S = S, id = id, gen = gen[0], addr = addr, handler = handler,
                           max = max or false, nconns = 0, refused = 0, closed = false,
                           tls_ctx = tls_ctx, tls_failed = 0,
                           hosted = H and not shared or false, released = false }, mt)
  S.listeners[id] = l
  S.nlisteners = S.nlisteners + 1
  return l
end

-- Forget the listener (closed by us, or stopped by the core for good).
function methods._drop(l)
  if l.closed then return end
  l.closed = true
  local S = l.S
  if S.listeners[l.id] == l then
    S.listeners[l.id] = nil
    S.nlisteners = S.nlisteners - 1
  end
end

-- The graceful stop's close (ringline.worker): the host closes the
-- sockets it holds itself then.
function methods._stop(l)
  if l.closed then return nil, "closed" end
  local S = l.S
  local rc = C.rl_listener_close(S.w, l.id)
  -- the core could not cancel its accept (no SQE): it stays open, and a
  -- close later tries again
  if rc == -errors.EBUSY then return nil, errstr(rc) end
  l:_drop()
  if rc < 0 and rc ~= -errors.ENOENT then return nil, errstr(rc) end
  return true
end

-- The script's close: the host stops holding the socket too, so it
-- closes (the port is free again) once no other generation uses it.
function methods.close(l)
  local ok, err = l:_stop()
  if ok and l.hosted then H.rl_host_unlisten(SLOT, l.addr) end
  return ok, err
end

-- A retiring worker (reload, upgrade): stop accepting, but the socket
-- stays open for the workers that took it over, and the peers the kernel
-- accepted here before the cancel are still served (S.released finds
-- their listener).
function methods._release(l)
  if l.closed then return nil, "closed" end
  local S = l.S
  local rc = C.rl_listener_release(S.w, l.id)
  if rc == -errors.EBUSY then return nil, errstr(rc) end
  l:_drop()
  l.released = true
  local r = S.released
  if not r then r = {}; S.released = r end
  r[l.id] = l
  return true
end

function methods.getsockname(l)
  if l.closed then return nil, "closed" end
  local port = C.rl_listener_port(l.S.w, l.id)
  if port < 0 then return nil, errstr(port) end
  return addr_host(l.addr), port
end

-- Connections this listener accepted that are not yet closed.
function methods.connections(l) return l.nconns end

-- The core stopped a listener for good (its socket failed, or the acceptor
-- of a shared one did) and freed its id. An event for an earlier listener
-- whose id a newer one has taken since carries the earlier generation.
local function on_listener(S, ev)
  local l = S.listeners[ev.slot]
  if l and l.gen == ev.gen then
    log.log(log.WARN, "listener ", tostring(l.addr), " stopped: ", errstr(ev.res))
    l:_drop()
  end
end

-- max_connections_per_ip: the handler task first learns the peer's address
-- (getpeername: it may wait for the socket's descriptor), counts it, and
-- resets the connection when that address already has the maximum; the
-- count drops when the connection's RL_EV_CLOSED comes (ringline.sched).
-- Per worker: with -w N a client can hold up to N times the maximum.
-- Unix-socket peers have no address and are not counted.
-- The handler, after the TLS handshake on a TLS listener: a handshake
-- that fails is counted (listener:tls_failures()), logged at debug level
-- and reset; it never reaches the handler.
local function serve(c)
  local l = c.listener
  if l.tls_ctx then
    local S = c.S
    local ok, err = tls.handshake(S, S.current, c, l.tls_ctx, nil)
    if not ok then
      l.tls_failed = l.tls_failed + 1
      log.log(log.DEBUG, "TLS handshake on ", tostring(l.addr), " failed: ", err)
      if not c.closed then c:close("reset") end
      return
    end
  end
  return l.handler(c)
end

-- TLS handshakes this listener saw fail (or time out, or end closed).
function methods.tls_failures(l) return l.tls_failed end

admit = function(c)
  local S = c.S
  local ip = c:getpeername()
  if ip and ip ~= "" and ip:sub(1, 5) ~= "unix:" and not c.closed then
    local per_ip = S.per_ip
    local n = (per_ip[ip] or 0) + 1
    if n > S.max_connections_per_ip then
      S.ip_refused = S.ip_refused + 1
      c.listener.refused = c.listener.refused + 1
      c:close("reset")
      return
    end
    per_ip[ip] = n
    c.ip = ip
  end
  return serve(c)
end

-- shed_idle: when the connection just accepted (new) left the table at
-- most one free slot, reset the accepted connection idle the longest (its
-- handler parked in a receive that began to wait first). A full table
-- makes the kernel refuse the next peer outright, and a reset slot comes
-- free only when its close completes, a loop turn later: shedding one
-- slot early keeps room for the next peer while that close is under way.
-- A scan of the connections, only when the table is that full.
shed_if_full = function(S, new)
  local w = S.w
  if C.rl_worker_metrics(w).conns_open + 1 < S.cfg.max_connections then return end
  local best, since = nil, math.huge
  for _, c in pairs(S.conns) do
    if c ~= new and c.listener and c.rtask and not c.closed and c.rsince < since then
      best, since = c, c.rsince
    end
  end
  if best then
    S.shed = S.shed + 1
    best:close("reset")
  end
end

-- RL_EV_ACCEPTED: slot/gen the new connection, data/aux the listener's
-- id and generation.
local function on_accepted(S, ev)
  local slot, gen, lid, lgen = ev.slot, ev.gen, ev.data, ev.aux
  local l = S.listeners[lid]
  -- another generation: accepted by an earlier listener that had this id
  if l and l.gen ~= lgen then l = nil end
  if not l and S.released then
    l = S.released[lid]   -- a released listener's late peer
    if l and l.gen ~= lgen then l = nil end
  end
  if not l or (l.closed and not l.released) or (l.max and l.nconns >= l.max) then
    -- Over the listener's cap (or already closed): refuse at once.
    C.rl_conn_close(S.w, slot, gen, RESET)
    if l then l.refused = l.refused + 1 end
    return
  end
  if S.ntasks >= S.max_tasks then
    -- No task for its handler: refuse it as over a cap.
    C.rl_conn_close(S.w, slot, gen, RESET)
    l.refused = l.refused + 1
    S.tasks_refused = S.tasks_refused + 1
    return
  end
  local c = conn_new(S, slot, gen)
  c.listener = l
  c.fresh = true   -- ringline.conn_read: a drain waits for its first request
  l.nconns = l.nconns + 1
  if S.shed_idle ~= 0 then shed_if_full(S, c) end
  if S.max_connections_per_ip > 0 then
    spawn_handler(S, admit, c, l.handler)
  elseif l.tls_ctx then
    spawn_handler(S, serve, c, l.handler)
  else
    spawn_handler(S, l.handler, c)
  end
end

-- The held hook: whether the core still keeps one of the listeners this
-- worker released (methods._release). It does until the accept's cancel
-- completed and the peers the cancel stranded were taken (rl_listener_release),
-- or a member's linger ended; each peer comes as RL_EV_ACCEPTED. The loop
-- waits for that (the core's poll wakes at either), so every such peer's
-- handler runs; only then is the run over.
local held_gen = ffi.new("uint32_t[1]")
local function held(S)
  local r = S.released
  if not r then return false end
  local w = S.w
  for id, l in pairs(r) do
    if C.rl_listener_gen(w, id, held_gen) == 0 and held_gen[0] == l.gen then return true end
  end
  return false
end

-- ringline (init.lua) installs this module's events (ringline.sched lists them).
function M.attach(sched_)
  sched_.on_event(C.RL_EV_ACCEPTED, on_accepted)
  sched_.on_event(EV_LISTENER, on_listener)
  sched_.hook("held", held)
end

return M
