-- ringline.connect and ringline.resolve: address forms (IPv4, IPv6, unix,
-- names through the resolver thread), refused / timed-out / canceled
-- connects and their clean teardown, and which task owns a connection.
local ringline = require "ringline"
local support = require "support"

local run, server = support.run, support.server

-- A listener on [::1], or nil and the OS's reason when the machine has no ::1.
local function v6_server(handler)
  local lst, err = ringline.listen("[::1]:0", handler)
  if not lst then return nil, err end
  local _, port = lst:getsockname()
  return lst, port
end

describe("ringline.connect: address forms", function()
  it("IPv4, a name (\"localhost\") and unix paths connect; the peer sees the bytes", function()
    local path = os.tmpname()
    os.remove(path)
    local r = run(function()
      local lst, port = server(function(c) c:send("v4:", c:receive("*l"), "\n") end)
      local ulst = assert(ringline.listen("unix:" .. path, function(c) c:send("unix:", c:receive("*l"), "\n") end))
      local out = {}
      for _, h in ipairs({ "127.0.0.1", "localhost", "unix:" .. path }) do
        local c = assert(ringline.connect(h, not h:find("^unix:") and port or nil, { timeout = 5 }))
        assert(c:send(h, "\n"))
        out[#out + 1] = c:receive("*l")
        c:close()
      end
      lst:close()
      ulst:close()
      return out
    end)
    os.remove(path)
    assert.are.same({ "v4:127.0.0.1", "v4:localhost", "unix:unix:" .. path }, r)
  end)

  it("IPv6 in both forms, \"::1\" and \"[::1]\" (when the machine has ::1)", function()
    local r = run(function()
      local lst, port = v6_server(function(c) c:send((c:getpeername()), "\n") end)
      if not lst then
        -- no IPv6 loopback here: a connect to it must fail with a message
        local c, err = ringline.connect("::1", 9, { timeout = 2 })
        return { no_v6 = true, c = c, err = err }
      end
      local out = {}
      for _, h in ipairs({ "::1", "[::1]" }) do
        local c = assert(ringline.connect(h, port, { timeout = 5 }))
        out[#out + 1] = c:receive("*l")
        c:close()
      end
      lst:close()
      return out
    end)
    if r.no_v6 then
      assert.is_nil(r.c)
      assert.are.equal("string", type(r.err))
    else
      assert.are.same({ "::1", "::1" }, r)
    end
  end)

  it("a name with several addresses: a refused one is skipped for the next", function()
    -- "localhost" may resolve to ::1 and 127.0.0.1; the server is on
    -- 127.0.0.1 only, so whichever comes first, the connect succeeds.
    local r = run(function()
      local addrs = assert(ringline.resolve("localhost"))
      local lst, port = server(function(c) c:send("ok\n") end)
      local c = assert(ringline.connect("localhost", port, { timeout = 5 }))
      local line = c:receive("*l")
      c:close()
      lst:close()
      return { line, addrs }
    end)
    assert.are.equal("ok", r[1])
    assert.is_true(#r[2] >= 1)
    for _, a in ipairs(r[2]) do
      assert.is_truthy(a == "127.0.0.1" or a == "::1", a)
    end
  end)

  it("ringline.resolve returns numeric addresses; family 4 restricts them", function()
    local r = run(function()
      return { ringline.resolve("localhost", 4), ringline.resolve("127.0.0.1"), ringline.resolve("[::1]", 6) }
    end)
    assert.are.same({ "127.0.0.1" }, r[1])
    assert.are.same({ "127.0.0.1" }, r[2])
    assert.are.same({ "::1" }, r[3])
  end)

  it("an unknown name fails with the resolver's message; the loop ran meanwhile", function()
    local r = run(function()
      local ticks = 0
      local ticker = ringline.spawn(function()
        while true do
          if not ringline.sleep(0.001) then return end
          ticks = ticks + 1
        end
      end)
      local c, err = ringline.connect("no-such-host.invalid", 80, { timeout = 10 })
      local a, rerr = ringline.resolve("no-such-host.invalid")
      ticker:cancel()
      return { c, err, a, rerr }
    end)
    assert.is_nil(r[1])
    assert.matches("^no%-such%-host%.invalid could not be resolved %(.+%)$", r[2])
    assert.is_nil(r[3])
    assert.are.equal(r[2], r[4])
  end)

  it("opts.bind fixes the local address: numeric, with a port, a name; family must match", function()
    local r = run(function()
      local lst, port = server(function(c) c:send((c:getpeername()), "\n") end)
      local out = {}
      for _, b in ipairs({ "127.0.0.2", "localhost", "127.0.0.3:0" }) do
        local c, err = ringline.connect("127.0.0.1", port, { bind = b, timeout = 5 })
        out[#out + 1] = c and c:receive("*l") or err
        if c then c:close() end
      end
      -- a fixed port: the server sees it
      local fixed, let_go = support.stuck_listener()  -- a free port: bind, then let it go
      let_go()
      local c = ringline.connect("127.0.0.1", port, { bind = "127.0.0.1:" .. fixed })
      if c then
        local _, lport = c:getsockname()
        out[#out + 1] = lport == fixed
        c:close()
      else
        out[#out + 1] = "fixed port busy"
      end
      for _, b in ipairs({ "192.0.2.1", "127.0.0.1:" .. port, "::1", "no-such-host.invalid" }) do
        local c2, err = ringline.connect("127.0.0.1", port, { bind = b, timeout = 5 })
        out[#out + 1] = c2 and "connected" or err
      end
      lst:close()
      return out
    end)
    assert.are.same({ "127.0.0.2", "127.0.0.1", "127.0.0.3", true }, { r[1], r[2], r[3], r[4] })
    assert.are.same({ "cannot assign requested address", "address already in use",
                      "address family not supported by protocol" }, { r[5], r[6], r[7] })
    assert.matches("^no%-such%-host%.invalid could not be resolved", r[8])
  end)

  it("raises on misuse", function()
    local r = run(function()
      local out = {}
      for _, args in ipairs({
        { "127.0.0.1", 70000 }, { "127.0.0.1", -1 }, { 1, 80 }, { "", 80 }, { "127.0.0.1", "80" },
        { "127.0.0.1", 80, { timeout = -1 } }, { "127.0.0.1", 80, 5 }, { "127.0.0.1", 80, { bind = 5 } },
      }) do
        out[#out + 1] = (pcall(ringline.connect, unpack(args, 1, 3)))
      end
      out[#out + 1] = (pcall(ringline.resolve, 5))
      out[#out + 1] = (pcall(ringline.resolve, "localhost", 5))
      return out
    end)
    assert.are.same({ false, false, false, false, false, false, false, false, false, false }, r)
    assert.has_error(function() ringline.connect("127.0.0.1", 80) end)
  end)
end)

describe("ringline.connect: failures", function()
  it('a port nobody listens on gives "connection refused" (IPv4 and a name)', function()
    local r = run(function()
      local lst, port = server(function() end)
      lst:close()
      local _, e1 = ringline.connect("127.0.0.1", port)
      local _, e2 = ringline.connect("localhost", port)
      return { e1, e2 }
    end)
    assert.are.same({ "connection refused", "connection refused" }, r)
  end)

  it('a peer that never answers gives "timeout" within the deadline, also for a name', function()
    local port, close_stuck = support.stuck_listener()
    local r = run(function()
      local held = support.fill_queue(port)
      local out = {}
      for _, h in ipairs({ "127.0.0.1", "localhost" }) do
        local t0 = ringline.now()
        local c, err = ringline.connect(h, port, { timeout = 0.2 })
        out[#out + 1] = { c, err, ringline.now() - t0 }
      end
      for _, c in ipairs(held) do c:close() end
      return out
    end)
    close_stuck()
    for i = 1, 2 do
      assert.is_nil(r[i][1])
      assert.are.equal("timeout", r[i][2])
      assert.is_true(r[i][3] >= 0.15 and r[i][3] < 5, tostring(r[i][3]))
    end
  end)

  it("a canceled connect is aborted in the kernel: the run ends clean and nothing stays open", function()
    local port, close_stuck = support.stuck_listener()
    local r = run(function()
      local held = support.fill_queue(port)
      local open0 = ringline.metrics().conns_open
      local ts = {}
      for i = 1, 3 do
        ts[i] = ringline.spawn(function() return ringline.connect("127.0.0.1", port, { timeout = 30 }) end)
      end
      ringline.sleep(0)                       -- all three park in connect
      for i = 1, 3 do ts[i]:cancel() end
      local out = {}
      for i = 1, 3 do out[i] = { ts[i]:join() } end
      for _, c in ipairs(held) do c:close() end
      assert(support.eventually(function() return ringline.metrics().conns_open == 0 end))
      out.open0 = open0
      return out
    end)
    close_stuck()
    for i = 1, 3 do assert.are.same({ true, nil, "canceled" }, r[i]) end
    assert.is_true(r.open0 >= 1)
  end)

  it("a cancel reaching a connect at its name lookup ends it; the late answer is dropped", function()
    local r = run(function()
      local t = ringline.spawn(function() return ringline.connect("localhost", 9, { timeout = 30 }) end)
      t:cancel()        -- before it starts: its first blocking step, the lookup, returns
      local out = { t:join() }
      out[4] = ringline.resolve("127.0.0.1")[1]   -- the resolver still serves the next one
      return out
    end)
    assert.are.same({ true, nil, "canceled", "127.0.0.1" }, r)
  end)
end)

describe("connection ownership", function()
  it("a connection opened in a task closes when the task ends (the peer sees EOF)", function()
    local r = run(function()
      local got = support.event()
      local lst, port = server(function(c) got.set(c:receive("*a")) end)
      local conn
      local t = ringline.spawn(function()
        conn = support.connect(port)
        conn:send("bye")
      end)
      t:join()
      local data = got.wait()
      lst:close()
      return { data, conn.closed, select(2, conn:send("x")) }
    end)
    assert.are.same({ "bye", true, "closed" }, r)
  end)

  it("a long-lived task that opens and closes connections keeps none of them alive", function()
    local r = run(function()
      local lst, port = server(function(c) c:receive("*a") end)
      local weak = setmetatable({}, { __mode = "k" })
      for _ = 1, 50 do
        local c = support.connect(port)
        weak[c] = true
        c:close()
      end
      assert(support.eventually(function() return ringline.metrics().conns_open == 0 end))
      collectgarbage("collect")
      collectgarbage("collect")
      lst:close()
      return next(weak) == nil
    end)
    assert.is_true(r)
  end)

  it("a task that raises resets its connections", function()
    local r = run(function()
      local got = support.event()
      local lst, port = server(function(c) got.set({ c:receive("*a") }) end)
      local t = ringline.spawn(function()
        local c = support.connect(port)
        c:send("partial")
        c:flush()
        error("boom", 0)
      end)
      local ok, err = t:join()
      local res = got.wait()
      lst:close()
      return { ok, err, res[2] }
    end, { errors_ok = true })
    assert.are.same({ false, "boom", "connection reset by peer" }, r)
  end)

  it("connections a task returns pass to the task that joins it", function()
    local r = run(function()
      local lst, port = server(function(c) c:send("hello\n"); c:receive("*a") end)
      local t = ringline.spawn(function() return support.connect(port), "x" end)
      local ok, c, x = t:join()
      local line = c:receive("*l")      -- still open after t ended
      local owner = c:getowner()
      c:close()
      lst:close()
      return { ok, x, line, owner == ringline.current() }
    end)
    assert.are.same({ true, "x", "hello", true }, r)
  end)

  it("setowner hands a connection to another task; setowner(nil) to nobody", function()
    local r = run(function()
      local lst, port = server(function(c)
        for l in c:lines() do c:send(l, "\n") end
      end)
      local box = ringline.channel(1)
      local user = ringline.spawn(function()
        local c = box:get()
        c:send("still here\n")
        return c:receive("*l")
      end)
      local opener = ringline.spawn(function()
        local c = support.connect(port)
        assert(c:setowner(user))
        box:put(c)
      end)
      opener:join()
      local _, line = user:join()
      -- unowned: survives its opener
      local free
      ringline.spawn(function()
        free = support.connect(port)
        free:setowner(nil)
      end):join()
      free:send("free\n")
      local fl = free:receive("*l")
      free:close()
      local misuse = { pcall(free.setowner, free, "x") }
      lst:close()
      return { line, fl, misuse[1] }
    end)
    assert.are.same({ "still here", "free", false }, r)
  end)

  it("a handler can give its accepted connection away before it returns", function()
    local r = run(function()
      local box = ringline.channel(1)
      local keeper = ringline.spawn(function()
        local c = box:get()
        c:send("kept\n")
        c:close()
      end)
      local lst, port = server(function(c)
        c:setowner(keeper)
        box:put(c)
      end)
      local c = support.connect(port)
      local line = c:receive("*l")
      keeper:join()
      lst:close()
      return line
    end)
    assert.are.equal("kept", r)
  end)
end)
