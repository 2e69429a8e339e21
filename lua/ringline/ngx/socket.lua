-- ringline.ngx.socket: ngx.socket.tcp/udp/connect (OpenResty's cosockets)
-- on ringline connections, ringline.udp and the keep-alive pool
-- (ringline.pool).
--
-- A tcp object exists before it connects and after it closes; it holds at
-- most one ringline connection (self.c, false when none). connect on a
-- connected object closes the old connection first, as OpenResty does.
-- Errors other than "timeout" close the connection (OpenResty's cosockets
-- are closed after a failed send or receive), so the descriptor goes back.
local ringline = require "ringline"
local buffer = require "string.buffer"

local type, error, tostring, setmetatable = type, error, tostring, setmetatable

local M = {}

local function misuse(what, msg)
  error(what .. ": " .. msg, 3)
end

------------------------------------------------------------------------
-- tcp
------------------------------------------------------------------------

local Tcp = {}
local tcp_mt = { __index = Tcp, __name = "ngx.socket.tcp" }
M.tcp_mt = tcp_mt

function M.tcp()
  -- timeouts in ms as OpenResty's settimeout(s) take them; false = default
  return setmetatable({ c = false, cto = false, sto = false, rto = false, bindaddr = false,
                        buf = false }, tcp_mt)
end

-- An error from the connection: "timeout" keeps it, the rest close it.
local function failed(s, err, partial)
  if err ~= "timeout" then
    local c = s.c
    if c then
      s.c = false
      if not c.closed then c:close() end
    end
  end
  return nil, err, partial
end

local function apply_timeouts(s, c)
  if s.sto or s.rto then c:settimeouts(nil, s.sto or nil, s.rto or nil) end
end

-- connect(host, port [, opts]) or connect("unix:/path" [, opts]); opts:
-- pool, pool_size, backlog (ringline.connect's). Returns 1 or nil, err.
function Tcp.connect(s, host, port, opts)
  if type(host) ~= "string" then misuse("ngx.socket.tcp:connect", "bad host") end
  if host:sub(1, 5) == "unix:" then
    if type(port) == "table" then port, opts = nil, port end
  elseif type(port) == "string" and tonumber(port) then
    port = tonumber(port)
  end
  if opts ~= nil and type(opts) ~= "table" then misuse("ngx.socket.tcp:connect", "bad options table") end
  local old = s.c
  if old then
    s.c = false
    if not old.closed then old:close() end
  end
  local o = { timeout = s.cto and s.cto / 1000 or nil, bind = s.bindaddr or nil }
  if opts then
    -- only these; others are ignored, as OpenResty does (lua-resty-redis
    -- passes its own ssl options through)
    o.pool, o.pool_size, o.backlog = opts.pool, opts.pool_size, opts.backlog
  end
  local c, err = ringline.connect(host, port, o)
  if not c then return nil, err end
  apply_timeouts(s, c)
  s.c = c
  return 1
end

-- OpenResty's sslhandshake(reused_session, server_name, ssl_verify,
-- send_status_req). ssl_verify defaults to false as in OpenResty (the
-- system store is the trust store when it is true). A connection taken
-- from a pool already speaks TLS: the handshake is not redone.
function Tcp.sslhandshake(s, reused_session, server_name, ssl_verify, send_status_req)
  if send_status_req then
    error("ngx.socket.tcp:sslhandshake: send_status_req (OCSP stapling) is not supported", 2)
  end
  local c = s.c
  if not c then return nil, "closed" end
  if c.tls == true then
    if reused_session == false then return true end
    local sess = c:sslinfo().session
    return sess or true
  end
  if reused_session == nil then reused_session = false end
  local r, err = c:sslhandshake(reused_session, server_name, ssl_verify == true)
  if not r then return failed(s, err) end
  return r
end
Tcp.tlshandshake = function()
  error("ngx.socket.tcp:tlshandshake: not supported (use sslhandshake)", 2)
end

-- An array (lua-resty-redis sends each command as one, of a dozen small
-- strings) is gathered into one buffer: one send into the core instead of
-- one per element (a third less client CPU per Redis command). The buffer
-- is the socket's: a large send may wait half-way, and another task's
-- send on another socket must not reset it meanwhile.

local function gather(b, t)
  for i = 1, #t do
    local v = t[i]
    local tv = type(v)
    if tv == "string" or tv == "number" then
      b:put(v)
    elseif tv == "table" then
      gather(b, v)
    elseif tv == "boolean" then
      b:put(v and "true" or "false")
    else
      error("ngx.socket.tcp:send: bad data in the array (" .. tv .. ")", 4)
    end
  end
end

function Tcp.send(s, data)
  local c = s.c
  if not c then return nil, "closed" end
  local td = type(data)
  if td == "boolean" or td == "nil" then
    data = tostring(data)
  elseif td == "table" then
    local b = s.buf
    if not b then b = buffer.new(); s.buf = b end
    gather(b, data)
    data = b
  end
  local n, err = c:send(data)
  if td == "table" then s.buf:reset() end
  if not n then return failed(s, err) end
  return n
end

-- receive([pattern]): "*l"/"l" (default), "*a"/"a", or a byte count.
function Tcp.receive(s, pat)
  local c = s.c
  if not c then return nil, "closed" end
  if pat == nil or pat == "l" then
    pat = "*l"
  elseif pat == "a" then
    pat = "*a"
  elseif type(pat) == "string" and tonumber(pat) then
    pat = tonumber(pat)
  end
  if type(pat) == "number" and pat == 0 then return "" end
  local d, err, partial = c:receive(pat)
  if not d then return failed(s, err, partial) end
  return d
end

function Tcp.receiveany(s, max)
  local c = s.c
  if not c then return nil, "closed" end
  local d, err = c:receiveany(max)
  if not d then return failed(s, err) end
  return d
end

-- The iterator works on the connection it was made for.
function Tcp.receiveuntil(s, pat, opts)
  local c = s.c
  if not c then
    return function() return nil, "closed" end
  end
  local it = c:receiveuntil(pat, opts)
  return function(size)
    if s.c ~= c then return nil, "closed" end
    local d, err, partial = it(size)
    if d == nil and err ~= nil then return failed(s, err, partial) end
    return d, err, partial
  end
end

local function ms(v, what)
  if v == nil then return false end
  if type(v) ~= "number" or not (v >= 0) or v == math.huge then
    error(what .. ": timeout must be milliseconds >= 0", 3)
  end
  return v
end

function Tcp.settimeout(s, t)
  local v = ms(t, "ngx.socket.tcp:settimeout")
  s.cto, s.sto, s.rto = v, v, v
  if s.c then s.c:settimeout(v or nil) end
end

function Tcp.settimeouts(s, c_ms, s_ms, r_ms)
  s.cto = ms(c_ms, "ngx.socket.tcp:settimeouts")
  s.sto = ms(s_ms, "ngx.socket.tcp:settimeouts")
  s.rto = ms(r_ms, "ngx.socket.tcp:settimeouts")
  if s.c then s.c:settimeouts(nil, s.sto or nil, s.rto or nil) end
end

function Tcp.setoption(s, opt, value)
  if opt == "reuseaddr" then
    error("ngx.socket.tcp:setoption: reuseaddr is not supported (outbound sockets need none)", 2)
  end
  local c = s.c
  if not c then return nil, "closed" end
  return c:setoption(opt, value)
end

function Tcp.bind(s, addr)
  if type(addr) ~= "string" then misuse("ngx.socket.tcp:bind", "bad address") end
  s.bindaddr = addr
  return 1
end

function Tcp.close(s)
  local c = s.c
  if not c then return nil, "closed" end
  s.c = false
  c:close()
  return 1
end

function Tcp.shutdown(s, what)
  local c = s.c
  if not c then return nil, "closed" end
  return c:shutdown(what)
end

function Tcp.setkeepalive(s, timeout, size)
  local c = s.c
  if not c then return nil, "closed" end
  if timeout ~= nil and type(timeout) ~= "number" then timeout = tonumber(timeout) end
  local ok, err = c:setkeepalive(timeout, size)
  if not ok then
    if err == "invalid connection" or err == "closed" then return failed(s, err) end
    return nil, err
  end
  s.c = false            -- OpenResty: the object is closed now
  return 1
end

function Tcp.getreusedtimes(s)
  local c = s.c
  if not c then return nil, "closed" end
  return c:getreusedtimes()
end

function Tcp.getpeername(s)
  local c = s.c
  if not c then return nil, "closed" end
  return c:getpeername()
end

for _, name in ipairs({ "getfd", "setclientcert", "getsslsession", "getsslctx", "peek" }) do
  Tcp[name] = function()
    error("ngx.socket.tcp:" .. name .. ": not supported by ringline", 2)
  end
end

-- ngx.socket.connect(host, port [, opts]): a connected tcp object.
function M.connect(host, port, opts)
  local s = M.tcp()
  local ok, err = s:connect(host, port, opts)
  if not ok then return nil, err end
  return s
end

------------------------------------------------------------------------
-- udp
------------------------------------------------------------------------

local Udp = {}
local udp_mt = { __index = Udp, __name = "ngx.socket.udp" }

function M.udp()
  return setmetatable({ u = false, to = false }, udp_mt)
end

function Udp.setpeername(s, host, port)
  if type(host) == "string" and host:sub(1, 5) == "unix:" then
    error("ngx.socket.udp:setpeername: unix datagram sockets are not supported", 2)
  end
  if s.u then s.u:close() end
  local u = ringline.udp()
  if s.to then u:settimeout(s.to) end
  local ok, err = u:setpeername(host, tonumber(port) or port)
  if not ok then
    u:close()
    s.u = false
    return nil, err
  end
  s.u = u
  return 1
end

function Udp.bind(s, addr)
  if s.u then return nil, "already bound" end
  local u = ringline.udp()
  local ok, err = u:bind(addr, 0)
  if not ok then u:close() return nil, err end
  s.u = u
  return 1
end

function Udp.send(s, data)
  local u = s.u
  if not u then return nil, "closed" end
  local ok, err = u:send(data)
  if not ok then return nil, err end
  return 1
end

function Udp.receive(s, size)
  local u = s.u
  if not u then return nil, "closed" end
  local d, err = u:receive(size)
  return d, err
end

function Udp.settimeout(s, t)
  s.to = ms(t, "ngx.socket.udp:settimeout") or nil
  if s.u then s.u:settimeout(s.to) end
end

function Udp.close(s)
  local u = s.u
  if not u then return nil, "closed" end
  s.u = false
  u:close()
  return 1
end

return M
