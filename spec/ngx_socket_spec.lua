-- ngx.socket (ringline.ngx.socket): OpenResty's cosockets on ringline
-- connections - the object before connect, the receive patterns,
-- receiveuntil, timeouts, close, unix sockets, the keep-alive pool through
-- setkeepalive/getreusedtimes and connect's pool options, TLS, UDP.
require "ringline.ngx"
local ringline = require "ringline"
local support = require "support"

local run, server = support.run, support.server

-- A line server: "x" -> "<conn#>:x"; "bye" ends the connection.
local function echo_server(st)
  st.accepts = 0
  return server(function(c)
    st.accepts = st.accepts + 1
    local id = st.accepts
    for l in c:lines() do
      if l == "bye" then return end
      c:send(id, ":", l, "\n")
    end
  end)
end

describe("ngx.socket.tcp", function()
  it("exists before connect; connect, send (arrays), receive patterns, close", function()
    local r = { run(function()
      local lst, port = server(function(c)
        c:send("line one\r\nline two\nABCDEFtail")
        c:receive("*l")
      end)
      local sock = ngx.socket.tcp()
      local before = { sock:send("x") }
      local out = {}
      out[#out + 1] = assert(sock:connect("127.0.0.1", port))
      out[#out + 1] = sock:receive()           -- "*l" by default, CR stripped
      out[#out + 1] = sock:receive("*l")
      out[#out + 1] = sock:receive(3)
      out[#out + 1] = sock:receive("3")
      out[#out + 1] = sock:receiveany(100)
      out[#out + 1] = sock:send({ "a", { "b", 1 }, "\n" })
      local _, err, partial = sock:receive("*a")  -- the server ended: everything
      out[#out + 1] = err == nil and "a-ok" or err
      out[#out + 1] = partial == nil
      out[#out + 1] = sock:close()
      out[#out + 1] = select(2, sock:close())
      out[#out + 1] = select(2, sock:receive())
      lst:close()
      return before, out
    end) }
    assert.are.same({ nil, "closed" }, r[1])
    assert.are.same({ 1, "line one", "line two", "ABC", "DEF", "tail", 4, "a-ok", true, 1,
                      "closed", "closed" }, r[2])
  end)

  it("receiveuntil: parts and pieces; a timeout keeps the socket, an error closes it", function()
    local r = { run(function()
      local lst, port = server(function(c)
        c:send("one--two--")
        c:receive("*l")                    -- wait for the client's line
        c:send("late")
      end)
      local sock = ngx.socket.tcp()
      assert(sock:connect("127.0.0.1", port))
      local it = sock:receiveuntil("--")
      local a = it()
      local b1 = it(2)
      local b2 = it(2)
      local b3, e3 = it(2)
      sock:settimeout(20)
      local _, terr = sock:receive()
      local still = sock:send("go\n")
      sock:settimeout(2000)
      local tail, cerr, part = sock:receive()     -- "late" then EOF
      local after = select(2, sock:send("x"))
      lst:close()
      return a, b1, b2, b3, e3, terr, still, tail, cerr, part, after
    end) }
    assert.are.same({ "one", "tw", "o", nil, nil, "timeout", 3, nil, "closed", "late", "closed" }, r)
  end)

  it("connect(\"unix:/path\"), ngx.socket.connect, connect failures", function()
    local path = os.tmpname()
    os.remove(path)
    local r = { run(function()
      local l = assert(ringline.listen("unix:" .. path, function(c) c:send("u:", c:receive("*l"), "\n") end))
      local s = assert(ngx.socket.connect("unix:" .. path))
      s:send("hi\n")
      local line = s:receive()
      s:close()
      local lst, port = server(function() end)
      lst:close()
      local s2 = ngx.socket.tcp()
      local ok, err = s2:connect("127.0.0.1", port)
      l:close()
      return line, ok, err
    end) }
    os.remove(path)
    assert.are.same({ "u:hi", nil, "connection refused" }, r)
  end)

  it("setkeepalive puts the connection in the pool; the next connect reuses it", function()
    local r = { run(function()
      local st = {}
      local lst, port = echo_server(st)
      local out = {}
      for i = 1, 3 do
        local sock = ngx.socket.tcp()
        assert(sock:connect("127.0.0.1", port, { pool = "p1", pool_size = 2, backlog = 4 }))
        out[#out + 1] = sock:getreusedtimes()
        sock:send("r" .. i .. "\n")
        out[#out + 1] = sock:receive()
        out[#out + 1] = sock:setkeepalive(10000, 2)
        out[#out + 1] = select(2, sock:send("x"))   -- the object is closed now
      end
      -- unread data: refused, the socket stays usable
      local sock = ngx.socket.tcp()
      assert(sock:connect("127.0.0.1", port, { pool = "p1" }))
      sock:send("a\nb\n")
      sock:receive()
      for _ = 1, 1000 do            -- until the second line is buffered
        if sock.c.io.rlen > 0 then break end
        ngx.sleep(0.002)
      end
      local ok, err = sock:setkeepalive()
      out[#out + 1] = err
      out[#out + 1] = sock:receive()
      sock:send("bye\n")
      sock:close()
      lst:close()
      return out, st.accepts
    end) }
    assert.are.same({ { 0, "1:r1", 1, "closed", 1, "1:r2", 1, "closed", 2, "1:r3", 1, "closed",
                        "unread data in buffer", "1:b" }, 1 }, r)
  end)

  it("a pool with backlog queues a second connect until the first is put back", function()
    local r = { run(function()
      local st = {}
      local lst, port = echo_server(st)
      local o = { pool = "bk", pool_size = 1, backlog = 1 }
      local s1 = ngx.socket.tcp()
      assert(s1:connect("127.0.0.1", port, o))
      local th = ngx.thread.spawn(function()
        local s = ngx.socket.tcp()
        assert(s:connect("127.0.0.1", port, o))
        local n = s:getreusedtimes()
        s:close()
        return n
      end)
      local s3 = ngx.socket.tcp()
      ngx.sleep(0)
      local _, full = s3:connect("127.0.0.1", port, o)
      s3:settimeouts(10, 1000, 1000)
      assert(s1:setkeepalive())
      local _, n = ngx.thread.wait(th)
      lst:close()
      return full, n, st.accepts
    end) }
    assert.are.same({ "too many waiting connect operations", 1, 1 }, r)
  end)

  it("settimeouts' connect part bounds a queued connect", function()
    local r = { run(function()
      local lst, port = echo_server({})
      local o = { pool = "q", pool_size = 1, backlog = 2 }
      local s1 = ngx.socket.tcp()
      assert(s1:connect("127.0.0.1", port, o))
      local s2 = ngx.socket.tcp()
      s2:settimeouts(30, 1000, 1000)
      local t0 = ngx.now()
      local ok, err = s2:connect("127.0.0.1", port, o)
      local waited = ngx.now() - t0
      s1:close()
      lst:close()
      return ok, err, waited >= 0.02
    end) }
    assert.are.same({ nil, "timeout", true }, r)
  end)

  it("setoption maps onto the connection; reuseaddr and getfd raise naming themselves", function()
    local r = { run(function()
      local lst, port = echo_server({})
      local s = ngx.socket.tcp()
      local closed = select(2, s:setoption("tcp-nodelay", true))
      assert(s:connect("127.0.0.1", port))
      local ok = s:setoption("keepalive", true)
      local e1 = select(2, pcall(s.setoption, s, "reuseaddr", 1))
      local e2 = select(2, pcall(s.getfd, s))
      s:close()
      lst:close()
      return closed, ok, e1:match("ngx%.socket%.tcp:setoption: reuseaddr") ~= nil,
             e2:match("ngx%.socket%.tcp:getfd: not supported") ~= nil
    end) }
    assert.are.same({ "closed", true, true, true }, r)
  end)
end)

describe("coroutines around cosockets", function()
  it("coroutine.wrap/resume let a receive inside a user coroutine wait (lua-resty-http's body reader)", function()
    local r = { run(function()
      local lst, port = server(function(c)
        for i = 1, 3 do
          c:send("chunk", i, "\n")
          ngx.sleep(0.005)                -- each arrives separately: the reader waits
        end
      end)
      local sock = ngx.socket.tcp()
      assert(sock:connect("127.0.0.1", port))
      local reader = coroutine.wrap(function()
        for _ = 1, 3 do coroutine.yield((sock:receive())) end
      end)
      local co = coroutine.create(function() return sock:receive() end)
      local out = { reader(), reader(), reader() }
      out[#out + 1] = select(2, coroutine.resume(co))   -- EOF: nil, "closed"
      sock:close()
      lst:close()
      return out
    end) }
    assert.are.same({ { "chunk1", "chunk2", "chunk3" } }, r)
  end)
end)

describe("ngx.socket.tcp over TLS", function()
  local dir, cert, key
  setup(function()
    dir = os.tmpname()
    os.remove(dir)
    assert(os.execute("mkdir -p " .. dir))
    cert, key = dir .. "/cert.pem", dir .. "/key.pem"
    assert(os.execute("unset LD_PRELOAD; openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 "
      .. "-nodes -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 "
      .. "-keyout " .. key .. " -out " .. cert .. " >/dev/null 2>&1"))
  end)
  teardown(function() os.execute("rm -rf " .. dir) end)

  it("sslhandshake (no verification by default, as OpenResty); a pooled one is not redone", function()
    local r = { run(function()
      local accepts = 0
      local lst = assert(ringline.listen("127.0.0.1:0", function(c)
        accepts = accepts + 1
        for l in c:lines() do c:send(accepts, ":", l, "\n") end
      end, { ssl = { cert = cert, key = key } }))
      local _, port = lst:getsockname()
      local hs0 = ringline.metrics().tls_handshakes
      local out = {}
      for i = 1, 2 do
        local s = ngx.socket.tcp()
        assert(s:connect("127.0.0.1", port))
        out[#out + 1] = s:sslhandshake(false, "localhost") == true
        s:send("t" .. i .. "\n")
        out[#out + 1] = s:receive()
        assert(s:setkeepalive())
      end
      local s = ngx.socket.tcp()
      assert(s:connect("127.0.0.1", port, { pool = "verify" }))
      local ok, err = s:sslhandshake(nil, "localhost", true)   -- a self-signed cert
      out[#out + 1] = ok == nil
      out[#out + 1] = err and err:match("^certificate verify failed") ~= nil
      local e = select(2, pcall(s.sslhandshake, s, nil, "localhost", false, true))
      out[#out + 1] = e:match("send_status_req") ~= nil
      -- the pooled TLS connection is handed back over
      local p = ngx.socket.tcp()
      assert(p:connect("127.0.0.1", port))
      p:close()
      out[#out + 1] = ringline.metrics().tls_handshakes - hs0
      lst:close()
      return out
    end) }
    -- one handshake on each side for the two pooled uses; the refused one
    -- does not count
    assert.are.same({ { true, "1:t1", true, "1:t2", true, true, true, 2 } }, r)
  end)
end)

describe("ngx.socket.udp", function()
  it("setpeername, send, receive, settimeout, close", function()
    local r = { run(function()
      local srv = ringline.udp()
      assert(srv:bind("127.0.0.1", 0))
      local _, port = srv:getsockname()
      local echo = ringline.spawn(function()
        local d, ip, p = srv:receivefrom()
        srv:sendto(ip, p, "echo:" .. d)
      end)
      local u = ngx.socket.udp()
      local before = select(2, u:send("x"))
      u:settimeout(1000)
      assert(u:setpeername("127.0.0.1", port))
      assert(u:send("ping"))
      local d = u:receive()
      echo:join()
      u:settimeout(10)
      local _, terr = u:receive()
      local closed = u:close()
      srv:close()
      return before, d, terr, closed
    end) }
    assert.are.same({ "closed", "echo:ping", "timeout", 1 }, r)
  end)
end)
