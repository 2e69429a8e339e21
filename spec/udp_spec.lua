-- ringline.udp: datagrams between sockets of one run (lazy sockets, peers,
-- echo, whole datagrams, large ones, truncation, timeouts, close).
local ringline = require "ringline"
local support = require "support"

local run = support.run

-- A socket bound to a free loopback port, and the port.
local function bound(host)
  local u = ringline.udp()
  assert(u:bind(host or "127.0.0.1", 0))
  local _, port = u:getsockname()
  return u, port
end

describe("ringline.udp", function()
  it("echo: setpeername/send/receive against bind/receivefrom/sendto", function()
    local r = run(function()
      local srv, port = bound()
      local echo = ringline.spawn(function()
        for _ = 1, 3 do
          local d, ip, p = assert(srv:receivefrom())
          assert(srv:sendto(ip, p, "echo:" .. d))
        end
      end)
      local c = ringline.udp()
      assert(c:setpeername("127.0.0.1", port))
      local out = {}
      for i = 1, 3 do
        assert(c:send("m" .. i))
        out[i] = c:receive()
      end
      echo:join()
      local _, cport = c:getsockname()
      c:close()
      srv:close()
      return { out, cport > 0 }
    end)
    assert.are.same({ { "echo:m1", "echo:m2", "echo:m3" }, true }, r)
  end)

  it("receivefrom gives the sender's address and port", function()
    local r = run(function()
      local a, pa = bound()
      local b, pb = bound()
      assert(b:sendto("127.0.0.1", pa, "hi"))
      local d, ip, port = a:receivefrom()
      a:close(); b:close()
      return { d, ip, port == pb }
    end)
    assert.are.same({ "hi", "127.0.0.1", true }, r)
  end)

  it("datagrams are never merged or split, and keep their order", function()
    local r = run(function()
      local a, pa = bound()
      local b = ringline.udp()
      local sizes = { 1, 100, 0, 1400, 9000, 3 }
      for i, n in ipairs(sizes) do assert(b:sendto("127.0.0.1", pa, ("%d"):format(i % 10):rep(n))) end
      local got = {}
      for i = 1, #sizes do
        local d = assert(a:receive())
        got[i] = #d .. ":" .. (d:sub(1, 1))
      end
      a:close(); b:close()
      return got
    end)
    assert.are.same({ "1:1", "100:2", "0:", "1400:4", "9000:5", "3:6" }, r)
  end)

  it("carries a 60000-byte datagram whole, byte-exact", function()
    local payload = support.pattern(60000, 5)
    local r = run(function()
      local a, pa = bound()
      local b = ringline.udp()
      assert(b:sendto("127.0.0.1", pa, payload))
      local d, e, trunc = a:receive()
      a:close(); b:close()
      return { d == payload, #d, e, trunc }
    end)
    assert.are.same({ true, 60000 }, r)
  end)

  it('reports truncation: a receive size below the datagram cuts it, third result "truncated"', function()
    local r = run(function()
      local a, pa = bound()
      local b = ringline.udp()
      assert(b:sendto("127.0.0.1", pa, ("x"):rep(1000)))
      assert(b:sendto("127.0.0.1", pa, "next"))
      assert(b:sendto("127.0.0.1", pa, ("y"):rep(50)))
      local d1, e1, t1 = a:receive(100)
      local d2, e2, t2 = a:receive(100)       -- the rest of the first one is gone
      local d3, ip, port, t3 = a:receivefrom(10)
      a:close(); b:close()
      return { #d1, e1, t1, d2, e2, t2, d3, ip, t3 }
    end)
    assert.are.same({ 100, nil, "truncated", "next", nil, nil, ("y"):rep(10), "127.0.0.1", "truncated" }, r)
  end)

  it("reports truncation by the core's buffer size (udp_buffer_size) too", function()
    local r = run(function()
      local a, pa = bound()
      local b = ringline.udp()
      assert(b:sendto("127.0.0.1", pa, ("z"):rep(2000)))
      local d, e, t = a:receive()
      local m = ringline.metrics().udp_truncated
      a:close(); b:close()
      return { #d, e, t, m }
    end, { udp_buffer_size = 512 })
    assert.are.same({ 512, nil, "truncated", 1 }, r)
  end)

  it('receive timeout: nil, "timeout" and nothing consumed; the socket stays usable', function()
    local r = run(function()
      local a, pa = bound()
      local b = ringline.udp()
      a:settimeout(30)
      local t0 = ringline.now()
      local d, e = a:receive()
      local dt = ringline.now() - t0
      assert(b:sendto("127.0.0.1", pa, "after"))
      a:settimeout(5000)
      local d2 = a:receive()
      a:settimeout(0)                          -- 0: no limit
      assert(b:sendto("127.0.0.1", pa, "again"))
      local d3 = a:receive()
      a:close(); b:close()
      return { d, e, dt, d2, d3 }
    end)
    assert.are.same({ nil, "timeout" }, { r[1], r[2] })
    assert.is_true(r[3] >= 0.03 and r[3] < 5, tostring(r[3]))
    assert.are.same({ "after", "again" }, { r[4], r[5] })
  end)

  it("a datagram waiting before the timeout fires is returned, not lost", function()
    local r = run(function()
      local a, pa = bound()
      local b = ringline.udp()
      local in0 = ringline.metrics().udp_in
      assert(b:sendto("127.0.0.1", pa, "early"))
      -- the core has it queued on a (the counter settles asynchronously)
      assert(support.eventually(function() return ringline.metrics().udp_in > in0 end))
      a:settimeout(1)                          -- 1 ms, but nothing to wait for
      local d = a:receive()
      a:close(); b:close()
      return d
    end)
    assert.are.equal("early", r)
  end)

  it("a socket made by setpeername receives only from its peer", function()
    local r = run(function()
      local srv, port = bound()
      local other = ringline.udp()
      local c = ringline.udp()
      assert(c:setpeername("127.0.0.1", port))
      local _, cport = c:getsockname()
      assert(other:sendto("127.0.0.1", cport, "stranger"))
      assert(srv:sendto("127.0.0.1", cport, "peer"))
      local d = c:receive()
      c:settimeout(20)
      local d2, e2 = c:receive()
      c:close(); srv:close(); other:close()
      return { d, d2, e2 }
    end)
    assert.are.same({ "peer", nil, "timeout" }, r)
  end)

  it("IPv6 (when the machine has ::1), and names resolved off the loop", function()
    local r = run(function()
      local a = ringline.udp()
      local ok, err = a:bind("::1", 0)
      local v6
      if ok then
        local _, pa = a:getsockname()
        local b = ringline.udp()
        assert(b:sendto("[::1]", pa, "six"))
        local d, ip = a:receivefrom()
        v6 = { d, ip }
        b:close()
      else
        v6 = { "no ::1", type(err) }
      end
      a:close()
      local n, pn = bound()
      local c = ringline.udp()
      assert(c:setpeername("localhost", pn))
      assert(c:send("by name"))
      local d = n:receive()
      local bad = { ringline.udp():sendto("no-such-host.invalid", 9, "x") }
      c:close(); n:close()
      return { v6, d, bad[1], bad[2] }
    end)
    if r[1][1] == "no ::1" then
      assert.are.equal("string", r[1][2])
    else
      assert.are.same({ "six", "::1" }, r[1])
    end
    assert.are.equal("by name", r[2])
    assert.is_nil(r[3])
    assert.matches("could not be resolved", r[4])
  end)

  it("close wakes a waiting receiver with \"closed\"; calls after close say \"closed\"", function()
    local r = run(function()
      local a = bound()
      local t = ringline.spawn(function() return a:receive() end)
      ringline.sleep(0)
      local c1 = a:close()
      local res = { t:join() }
      return { c1, res, { a:close() }, { a:receive() }, { a:send("x") }, { a:sendto("127.0.0.1", 9, "x") },
               { a:bind("127.0.0.1", 0) }, { a:setpeername("127.0.0.1", 9) } }
    end)
    assert.are.same({ true, { true, nil, "closed" }, { nil, "closed" }, { nil, "closed" }, { nil, "closed" },
                      { nil, "closed" }, { nil, "closed" }, { nil, "closed" } }, r)
  end)

  it("errors without a socket or a peer, a second reader, a second bind", function()
    local r = run(function()
      local u = ringline.udp()
      local out = { { u:receive() }, { u:send("x") }, { u:getsockname() } }
      assert(u:bind("127.0.0.1", 0))
      out[#out + 1] = { u:send("no peer") }
      out[#out + 1] = { u:bind("127.0.0.1", 0) }
      local t = ringline.spawn(function() return u:receive() end)
      ringline.sleep(0)
      out[#out + 1] = { u:receive() }
      u:close()
      t:join()
      return out
    end)
    assert.are.same({ { nil, "closed" }, { nil, "closed" }, { nil, "closed" },
                      { nil, "destination address required" }, { nil, "already bound" },
                      { nil, "socket busy reading" } }, r)
  end)

  it("an IPv6 address for an IPv4 socket fails at once; a send the kernel refuses is counted", function()
    local r = run(function()
      local u = bound()
      local bad = { u:sendto("::1", 9, "x") }
      -- a broadcast without SO_BROADCAST: queued, then refused (EACCES)
      local errs0, out0 = ringline.metrics().udp_send_errors, ringline.metrics().udp_out
      local queued = u:sendto("255.255.255.255", 9, "x")
      local counted = support.eventually(function()
        return ringline.metrics().udp_send_errors == errs0 + 1
      end)
      local sent = ringline.metrics().udp_out - out0
      u:close()
      return { bad = bad, queued = queued, counted = counted, sent = sent }
    end)
    assert.are.same({ nil, "address family not supported by protocol" }, r.bad)
    assert.is_true(r.queued)
    assert.is_true(r.counted)
    assert.are.equal(0, r.sent)
  end)

  it("raises on misuse", function()
    local r = run(function()
      local u = ringline.udp()
      local out = { (pcall(u.bind, u, "127.0.0.1", 70000)), (pcall(u.bind, u, 5, 0)),
                    (pcall(u.sendto, u, "127.0.0.1", 9, true)), (pcall(u.settimeout, u, -1)) }
      assert(u:bind("127.0.0.1", 0))
      out[#out + 1] = (pcall(u.receive, u, 0))
      out[#out + 1] = (pcall(u.receive, u, 70000))
      u:close()
      return out
    end)
    assert.are.same({ false, false, false, false, false, false }, r)
    assert.has_error(function() ringline.udp() end)
  end)

  it("sockets left open close with the run, which ends clean", function()
    local r = run(function()
      for _ = 1, 3 do bound() end
      return ringline.metrics().udp_open
    end)
    assert.are.equal(3, r)
  end)

  it("a socket from a run that raised reads as closed afterwards", function()
    local u
    local ok = pcall(ringline.run, function()
      u = bound()
      error("the main task fails")
    end)
    assert.is_false(ok)
    assert.are.same({ nil, "closed" }, { u:send("x") })
    assert.are.same({ nil, "closed" }, { u:getsockname() })
    assert.are.same({ nil, "closed" }, { u:close() })
  end)
end)
