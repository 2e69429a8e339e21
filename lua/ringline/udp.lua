-- ringline.udp: UDP sockets with OpenResty's udpsock names.
--
--   local u = ringline.udp()
--   u:setpeername("127.0.0.1", 53)      -- or u:bind(host, port) for a server
--   u:send(query)
--   local data, err = u:receive()
--
-- The core receives all the time (multishot RECVMSG from the UDP buffer
-- group) into a bounded per-socket queue of whole datagrams; receive takes
-- the oldest one with rl_udp_take, and waits for RL_EV_UDP (asked for with
-- rl_udp_want) only when the queue is empty. So a datagram is never merged
-- with another or split, and a timed-out receive has taken nothing.
--
-- The socket is made lazily by the first bind, setpeername or sendto, with
-- the address family of that address (a wildcard bind for the latter two).
-- Truncation: a datagram longer than the receive size (or than the core's
-- udp_buffer_size) is cut to it and the rest discarded, and the call says
-- so with one more result: receive -> data, nil, "truncated";
-- receivefrom -> data, ip, port, "truncated".
local ffi = require "ffi"
local C = require "ringline.lib"
local sched = require "ringline.sched"
local client = require "ringline.client"
local errors = require "ringline.errors"
local check = require "ringline.check"

local ffi_string, ffi_new = ffi.string, ffi.new
local type, tostring, tonumber, error, setmetatable, pairs = type, tostring, tonumber, error, setmetatable, pairs
local math_floor = math.floor
local errstr = errors.errstr
local wake = sched.wake
local numeric, join_addr, unbracket = client.numeric, client.join_addr, client.unbracket
local addr_errstr = client.addr_errstr

local _ = C.rl_udp_open, C.rl_udp_connect, C.rl_udp_sendto, C.rl_udp_want, C.rl_udp_take,
          C.rl_udp_port, C.rl_udp_close   -- resolved at load, not in a trace

local EV_UDP = C.RL_EV_UDP
local EAGAIN = errors.EAGAIN
local EDESTADDRREQ = errors.EDESTADDRREQ
local MAXDGRAM = 65536    -- the receive size limit (and default): any datagram fits
local HOSTLEN = 64

-- The options of ringline.udp([opts]), one entry each (ringline.check):
-- none yet; the table is where one goes.
local VALID = {
  ssl = "not supported (DTLS is not implemented)",
}

local M = {}
M.VALID = VALID
local methods = {}
local mt = {
  __index = methods,
  __name = "ringline.udp",
  __tostring = function(u) return "ringline.udp(" .. tostring(u.id) .. ")" end,
}
M.mt = mt

local function misuse(msg, lvl)
  error("ringline: " .. msg, lvl + 1)
end

local function on_udp(S, ev)
  local us = S.udps
  local u = us and us[ev.slot]
  if not u then return end
  if ev.res < 0 then u.uerr = ev.res end
  local t = u.rtask
  if t then wake(S, t, nil) end
end

-- A graceful stop (SIGTERM, ringline.exit) ends the receives of bound
-- sockets (servers) with "closed", now and whenever they would wait, as it
-- does for accepted connections; sockets made by setpeername or sendto
-- (clients) keep working until the run ends.
local function on_stop(S)
  local us = S.udps
  if not us then return end
  for _, u in pairs(us) do
    local t = u.rtask
    if t and u.bound then wake(S, t, "closed") end
  end
end

-- Sockets the script left open close with the run.
local function on_drain(S)
  local us = S.udps
  if not us then return end
  for _, u in pairs(us) do u:close() end
end

-- ringline (init.lua) installs this module's event and its stop and drain
-- functions (ringline.sched lists them).
function M.attach(sched_)
  sched_.on_event(EV_UDP, on_udp)
  sched_.on_stop(on_stop)
  sched_.on_drain(on_drain)
end

function M.new(S, opts)
  check.options(opts, VALID, "ringline.udp")
  return setmetatable({ S = S, id = false, family = false, bound = false, peer = false,
                        closed = false, rtask = false, read_to = false, uerr = false }, mt)
end

-- Scratch space for receives, once per run.
local function scratch(S)
  local b = S.udpbuf
  if not b then
    b = ffi_new("uint8_t[?]", MAXDGRAM)
    S.udpbuf, S.udphost, S.udpmeta = b, ffi_new("char[?]", HOSTLEN), ffi_new("int32_t[2]")
  end
  return b
end

-- The numeric address for host (a name is resolved, in the socket's family
-- once it has one); port checked. Returns "host:port" text and the family.
local function address(u, host, port, what, passive)
  if type(host) ~= "string" or host == "" then misuse(what .. ": host must be a string", 3) end
  if type(port) ~= "number" or port < 0 or port > 65535 or port % 1 ~= 0 then
    misuse(what .. ": bad port " .. tostring(port), 3)
  end
  if host:sub(1, 5) == "unix:" then return nil, "unix datagram sockets are not supported" end
  host = unbracket(host)
  if passive and host == "*" then host = u.family == 6 and "::" or "0.0.0.0" end
  if not numeric(host) then
    local S = u.S
    local list, err = client.resolve(S, sched.current(S, what), host, u.family or 0)
    if not list then return nil, err end
    host = list[1]
  end
  return join_addr(host, port), host:find(":", 1, true) and 6 or 4
end

local function open(u, bind_addr, family)
  local S = u.S
  local w = sched.start(S)
  local id = C.rl_udp_open(w, bind_addr)
  if id < 0 then return nil, addr_errstr(id) end
  u.id, u.family = id, family
  local us = S.udps
  if not us then us = {}; S.udps = us end
  us[id] = u
  return true
end

local function wildcard(family)
  return family == 6 and "[::]:0" or "0.0.0.0:0"
end

-- Bind the (new) socket to host:port; "*" = every address, port 0 = any.
function methods.bind(u, host, port)
  if u.closed then return nil, "closed" end
  if u.id then return nil, "already bound" end
  local addr, fam = address(u, host, port, "udp:bind", true)
  if not addr then return nil, fam end
  if u.closed or u.id then return nil, u.closed and "closed" or "already bound" end
  local ok, err = open(u, addr, fam)
  if not ok then return nil, err end
  u.bound = addr
  return true
end

-- The numeric address of host:port for a client socket, the socket made
-- (on the wildcard address) if it has none yet; or nil, err. A name is
-- resolved meanwhile: the socket may have been closed by then.
local function client_address(u, host, port, what)
  if u.closed then return nil, "closed" end
  local addr, fam = address(u, host, port, what)
  if not addr then return nil, fam end
  if u.closed then return nil, "closed" end
  if not u.id then
    local ok, err = open(u, wildcard(fam), fam)
    if not ok then return nil, err end
  end
  return addr
end

-- Fix the peer: send() goes there and only its datagrams are received.
function methods.setpeername(u, host, port)
  local addr, err = client_address(u, host, port, "udp:setpeername")
  if not addr then return nil, err end
  local rc = C.rl_udp_connect(u.S.w, u.id, addr)
  if rc < 0 then return nil, addr_errstr(rc) end
  u.peer = addr
  return true
end

local function payload(data, what)
  local td = type(data)
  if td == "string" then return data end
  if td == "number" then return tostring(data) end
  if td == "table" then return table.concat(data) end
  misuse(what .. ": data must be a string, a number or an array of strings", 3)
end

-- One datagram to the peer set with setpeername.
function methods.send(u, data)
  local s = payload(data, "udp:send")
  if u.closed or not u.id then return nil, "closed" end
  if not u.peer then return nil, errstr(-EDESTADDRREQ) end
  local rc = C.rl_udp_sendto(u.S.w, u.id, nil, s, #s)
  if rc < 0 then return nil, errstr(rc) end
  return true
end

-- One datagram to host:port (the socket is made if it has none yet).
function methods.sendto(u, host, port, data)
  local s = payload(data, "udp:sendto")
  local addr, err = client_address(u, host, port, "udp:sendto")
  if not addr then return nil, err end
  local rc = C.rl_udp_sendto(u.S.w, u.id, addr, s, #s)
  if rc < 0 then return nil, addr_errstr(rc) end
  return true
end

-- Why u cannot be read from (an error the core reported, closed, or a
-- server's stop), or nil.
local function read_error(u, S)
  local e = u.uerr
  if e then
    u.uerr = false
    return errstr(e)
  end
  if u.closed or (S.draining and u.bound) then return "closed" end
end

-- Wait once for a datagram (the caller takes it, and waits again if none
-- came): nil when one is queued, else the reason. The core wakes the
-- reader only when one is queued or on an error, so after a wake-up there
-- is nothing to ask it.
local function wait_dgram(u, S)
  local t = sched.waiter(S, "udp: a receive that must wait needs a ringline task")
  local why = read_error(u, S)
  if why then return why end
  local rc = C.rl_udp_want(S.w, u.id)
  if rc < 0 then return errstr(rc) end
  if rc == 1 then return nil end
  local ok, err = sched.wait_begin(S, t, u.read_to)
  if not ok then return err end
  u.rtask = t
  why = sched.wait_park(S, t)
  u.rtask = false
  sched.wait_end(S, t)
  return why or read_error(u, S)
end

local function recv(u, size, what)
  if size == nil then
    size = MAXDGRAM
  elseif type(size) ~= "number" or size < 1 or size > MAXDGRAM then
    misuse(what .. ": size must be 1.." .. MAXDGRAM, 3)
  else
    size = math_floor(size)
  end
  if u.closed or not u.id then return nil, "closed" end
  if u.rtask then return nil, "socket busy reading" end
  local S = u.S
  local buf = scratch(S)
  local host, meta = S.udphost, S.udpmeta
  local n = C.rl_udp_take(S.w, u.id, buf, size, host, HOSTLEN, meta)
  while n == -EAGAIN do
    local why = wait_dgram(u, S)
    if why then return nil, why end
    n = C.rl_udp_take(S.w, u.id, buf, size, host, HOSTLEN, meta)
  end
  if n < 0 then return nil, errstr(n) end
  return ffi_string(buf, n), meta[1] ~= 0 and "truncated" or nil
end

-- data, err [, "truncated"] = u:receive([size]): the oldest datagram, cut
-- to size bytes (default and maximum 65536).
function methods.receive(u, size)
  local data, x = recv(u, size, "udp:receive")
  if not data then return nil, x end
  if x then return data, nil, x end
  return data
end

-- data, ip, port [, "truncated"] = u:receivefrom([size]): the oldest
-- datagram and its sender.
function methods.receivefrom(u, size)
  local data, x = recv(u, size, "udp:receivefrom")
  if not data then return nil, x end
  local S = u.S
  return data, ffi_string(S.udphost), tonumber(S.udpmeta[0]), x
end

-- Milliseconds for receive and receivefrom (nil or 0: no limit).
function methods.settimeout(u, ms)
  check.milliseconds(ms, "udp:settimeout")
  u.read_to = (ms and ms > 0) and ms / 1000 or false
end

-- The bound address (as bound; the wildcard for a socket made by
-- setpeername/sendto) and port.
function methods.getsockname(u)
  if u.closed or not u.id then return nil, "closed" end
  local port = C.rl_udp_port(u.S.w, u.id)
  if port < 0 then return nil, errstr(port) end
  local addr = u.bound or wildcard(u.family)
  return unbracket(addr:match("^(.*):%d+$")), port
end

function methods.close(u)
  if u.closed then return nil, "closed" end
  u.closed = true
  local id = u.id
  if id then
    local S = u.S
    if S.udps then S.udps[id] = nil end
    if S.w then C.rl_udp_close(S.w, id) end
    local t = u.rtask
    if t then
      u.rtask = false
      wake(S, t, "closed")
    end
  end
  return true
end

return M
