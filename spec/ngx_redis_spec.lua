-- The cosocket calls lua-resty-redis makes, in its order, against Debian's
-- redis-server (.ci/setup installs it): connect with pool options,
-- settimeouts, send of an array of strings (its request encoding),
-- receive() for the reply line and receive(n) for bulk payloads plus their
-- CRLF, setkeepalive and getreusedtimes, a pipeline, a unix socket. The
-- library itself is not in the repository; these are its socket calls.
require "ringline.ngx"
local ringline = require "ringline"
local support = require "support"

local run = support.run

local dir, port, sockpath

-- a free port: one the kernel just handed out
local function free_port()
  return run(function()
    local l = assert(ringline.listen("127.0.0.1:0", function() end))
    local _, p = l:getsockname()
    l:close()
    return p
  end)
end

setup(function()
  dir = os.tmpname()
  os.remove(dir)
  assert(os.execute("mkdir -p " .. dir))
  port = free_port()
  sockpath = dir .. "/redis.sock"
  local cmd = ("unset LD_PRELOAD; redis-server --port %d --bind 127.0.0.1 --unixsocket %s --save '' --appendonly no "
    .. "--daemonize yes --pidfile %s/redis.pid --logfile %s/redis.log --dir %s"):format(
    port, sockpath, dir, dir, dir)
  assert(os.execute(cmd), "redis-server (Debian's, installed by .ci/setup) starts")
end)

teardown(function()
  os.execute(("kill $(cat %s/redis.pid) 2>/dev/null; sleep 0.05; rm -rf %s"):format(dir, dir))
end)

-- lua-resty-redis's request encoding: one array of strings per command.
local function request(...)
  local n = select("#", ...)
  local t = { "*", n, "\r\n" }
  for i = 1, n do
    local a = tostring((select(i, ...)))
    t[#t + 1] = "$"
    t[#t + 1] = #a
    t[#t + 1] = "\r\n"
    t[#t + 1] = a
    t[#t + 1] = "\r\n"
  end
  return t
end

-- ... and its reply reader: receive() for the line, receive(n) then
-- receive(2) for a bulk string.
local function reply(sock)
  local line, err = sock:receive()
  if not line then return nil, err end
  local p = line:sub(1, 1)
  if p == "$" then
    local size = tonumber(line:sub(2))
    if size < 0 then return ngx.null end
    local data = assert(sock:receive(size))
    assert(sock:receive(2))
    return data
  elseif p == "+" then
    return line:sub(2)
  elseif p == ":" then
    return tonumber(line:sub(2))
  elseif p == "*" then
    local n = tonumber(line:sub(2))
    local t = {}
    for i = 1, n do t[i] = reply(sock) end
    return t
  elseif p == "-" then
    return false, line:sub(2)
  end
  return nil, "bad reply"
end

-- Wait (bounded) for redis-server to accept: it daemonizes before it listens.
local function connect(sock, host, p, opts)
  local ok, err
  for _ = 1, 500 do
    ok, err = sock:connect(host, p, opts)
    if ok or err ~= "connection refused" then return ok, err end
    ngx.sleep(0.01)
  end
  return ok, err
end

describe("lua-resty-redis's cosocket calls against redis-server", function()
  it("connect with pool options, send arrays, receive lines and sizes, keepalive reuse", function()
    local r = { run(function()
      local out = {}
      for i = 1, 3 do
        local sock = ngx.socket.tcp()
        sock:settimeouts(1000, 1000, 1000)
        assert(connect(sock, "127.0.0.1", port, { pool = "redis-spec", pool_size = 4, backlog = 8 }))
        out[#out + 1] = sock:getreusedtimes()
        assert(sock:send(request("SET", "k" .. i, ("v"):rep(i * 10000))))
        out[#out + 1] = reply(sock)
        assert(sock:send(request("GET", "k" .. i)))
        out[#out + 1] = #reply(sock)
        assert(sock:send(request("GET", "missing")))
        out[#out + 1] = reply(sock) == ngx.null
        out[#out + 1] = sock:setkeepalive(10000, 4)
      end
      -- a pipeline: several requests in one send, then the replies
      local sock = ngx.socket.tcp()
      assert(connect(sock, "127.0.0.1", port, { pool = "redis-spec" }))
      out[#out + 1] = sock:getreusedtimes()
      assert(sock:send({ request("INCR", "n"), request("INCR", "n"), request("HGET", "k1", "x") }))
      out[#out + 1] = reply(sock)
      out[#out + 1] = reply(sock)
      local ok, err = reply(sock)
      out[#out + 1] = ok == false and err:match("^WRONGTYPE") ~= nil
      assert(sock:send(request("DEL", "n")))
      reply(sock)
      out[#out + 1] = sock:setkeepalive()
      out[#out + 1] = ringline.metrics().pool_idle
      return out
    end) }
    assert.are.same({ { 0, "OK", 10000, true, 1, 1, "OK", 20000, true, 1, 2, "OK", 30000, true, 1,
                        3, 1, 2, true, 1, 1 } }, r)
  end)

  it("unix sockets, and a connection redis-server closed is not reused", function()
    local r = { run(function()
      local sock = ngx.socket.tcp()
      assert(connect(sock, "unix:" .. sockpath, nil, { pool = "redis-unix" }))
      assert(sock:send(request("CLIENT", "SETNAME", "victim")))
      local named = reply(sock)
      assert(sock:setkeepalive())
      -- another connection asks the server to close the pooled one
      local admin = ngx.socket.tcp()
      assert(connect(admin, "unix:" .. sockpath))
      assert(admin:send(request("CLIENT", "KILL", "SKIPME", "yes", "TYPE", "normal")))
      local killed = reply(admin)
      admin:close()
      for _ = 1, 1000 do                      -- until the pool noticed
        if ringline.metrics().pool_idle == 0 then break end
        ngx.sleep(0.002)
      end
      local idle = ringline.metrics().pool_idle
      local s2 = ngx.socket.tcp()
      assert(connect(s2, "unix:" .. sockpath, nil, { pool = "redis-unix" }))
      local reused = s2:getreusedtimes()
      assert(s2:send(request("PING")))
      local pong = reply(s2)
      s2:close()
      return named, killed, idle, reused, pong
    end) }
    assert.are.same({ "OK", 1, 0, 0, "PONG" }, r)
  end)
end)
