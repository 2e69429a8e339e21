-- Hostile peers: huge lines and client-given lengths (issue 17, defect 2).
-- receive(n), receive("*a") and view(min) answer nil, "too large" before
-- buffering past max_receive (or the call's opts.max), consume nothing, and
-- the connection stays usable; lines past line_max are "too long". The
-- core's buffer for the connection stays within the window plus one buffer.
local ringline = require "ringline"
local support = require "support"

local run, server, connect = support.run, support.server, support.connect

local function pair(serve, client, opts)
  return run(function()
    local done = support.event()
    local lst, port = server(function(c) done.set({ serve(c) }) end)
    local c = connect(port)
    local cres = { client(c) }
    c:close()
    local sres = done.wait()
    lst:close()
    return sres, cres
  end, opts)
end

-- recv_window and recv_buffer_size as configured for these runs
local WINDOW, BUF = 65536, 16384

describe("hostile: client-given lengths", function()
  it("max_receive is a configuration key, 64 MiB by default, up to 1 GiB", function()
    local d = run(function() return ringline.config("max_receive") end)
    local set = run(function() return ringline.config("max_receive") end, { max_receive = 4096 })
    assert.are.same({ 64 * 1024 * 1024, 4096, 2 ^ 30 },
      { d, set, ringline.config_keys().max_receive.max })
    assert.has_error(function() run(function() end, { max_receive = 2 ^ 30 + 1 }) end)
  end)

  it("receive(n) past max_receive is \"too large\" at once, consuming nothing", function()
    local s = pair(function(c)
      local a, b = c:receive(2 ^ 31)
      local d, e = c:receive(4097)
      local f = c:receive(5)
      return a, b, d, e, f
    end, function(c)
      assert(c:send("hello"))
    end, { max_receive = 4096 })
    assert.are.same({ nil, "too large", nil, "too large", "hello" }, s)
  end)

  it("a length read from the peer (the attack) buffers nothing past the window", function()
    local s = pair(function(c)
      local len = tonumber(c:receive("*l"))
      local a, b = c:receive(len)
      -- the peer keeps streaming; what the core holds stays bounded
      local ok = support.eventually(function() return c.io.rlen >= WINDOW end)
      local held = c.io.rlen
      return a, b, len, ok, held
    end, function(c)
      assert(c:send("1610612736\n"))
      local chunk = ("z"):rep(65536)
      for _ = 1, 8 do if not c:send(chunk) then break end end
    end, { recv_window = WINDOW, recv_buffer_size = BUF })
    assert.are.equal(nil, s[1])
    assert.are.equal("too large", s[2])
    assert.are.equal(1610612736, s[3])
    assert.is_true(s[4])
    assert.is_true(s[5] <= WINDOW + BUF, "held " .. s[5])
  end)

  it("opts.max overrides max_receive for one call, both ways", function()
    local s = pair(function(c)
      local a = c:receive(6000, { max = 8192 })
      local b, e = c:receive(10, { max = 5 })
      local d = c:receive(10)
      return #a, b, e, d
    end, function(c)
      assert(c:send(("q"):rep(6010)))
    end, { max_receive = 4096 })
    assert.are.same({ 6000, nil, "too large", "qqqqqqqqqq" }, s)
  end)

  it('"*a" on a stream longer than max_receive is "too large" without buffering it all', function()
    local s = pair(function(c)
      local a, b = c:receive("*a")
      local held = c.io.rlen
      local d = c:receive("*a", { max = 300000 })
      return a, b, held, #d
    end, function(c)
      assert(c:send(("w"):rep(200000)))
    end, { max_receive = 20000, recv_window = 4096, recv_buffer_size = 4096 })
    assert.are.equal(nil, s[1])
    assert.are.equal("too large", s[2])
    -- one byte past the limit, plus at most one provided buffer
    assert.is_true(s[3] > 20000 and s[3] <= 20001 + 4096, "held " .. s[3])
    assert.are.equal(200000, s[4])
  end)

  it('"*a" within max_receive returns the whole stream', function()
    local s = pair(function(c) return #c:receive("*a") end, function(c)
      assert(c:send(("v"):rep(20000)))
    end, { max_receive = 20000 })
    assert.are.same({ 20000 }, s)
  end)

  it("view(min) past the limit is \"too large\"; within it, a view", function()
    local s = pair(function(c)
      local a, b = c:view(5000)
      local d, e = c:view(3, { max = 2 })
      local p, n = c:view(4, 2000, { max = 4 })   -- a timeout (ms) that a loaded box meets
      return a, b, d, e, p ~= nil, n
    end, function(c)
      assert(c:send("abcd"))
    end, { max_receive = 4096 })
    assert.are.same({ nil, "too large", nil, "too large", true, 4 }, s)
  end)

  it("rejects a bad opts.max at the caller's line", function()
    local s = pair(function(c)
      local r = {}
      for _, m in ipairs { "abc", 0 / 0, 0, 2 ^ 31 } do
        local ok, err = pcall(c.receive, c, 5, { max = m })
        r[#r + 1] = ok
        r[#r + 1] = err:match("opts%.max") ~= nil
      end
      local ok, err = pcall(c.view, c, 1, nil, { max = "x" })
      r[#r + 1] = ok
      r[#r + 1] = err:match("opts%.max") ~= nil
      return r
    end, function() end)
    assert.are.same({ false, true, false, true, false, true, false, true, false, true }, s[1])
  end)
end)

describe("hostile: waits that must end", function()
  it("a fractional view(min) waits for whole bytes (it parked with no event to come)", function()
    local s = run(function()
      local first, done = support.event(), support.event()
      local lst, port = server(function(c)
        local p, n = c:view(1)
        first.set()                         -- wakes the client; we park in view(1.5) first
        local q, m = c:view(1.5)            -- one byte buffered: waits for the second
        done.set({ p ~= nil, n, q ~= nil, m })
      end)
      local c = connect(port)
      assert(c:send("a"))
      first.wait()
      assert(c:send("b"))
      local r = done.wait()
      c:close()
      lst:close()
      return r
    end, { timeout = 3 })
    assert.are.same({ true, 1, true, 2 }, s)
  end)
end)

describe("hostile: huge lines", function()
  it("a line longer than line_max is \"too long\" and buffers at most the window", function()
    local s = pair(function(c)
      local a, b = c:receive("*l")
      return a, b, c.io.rlen
    end, function(c)
      local chunk = ("x"):rep(65536)
      -- the server gives up mid-stream: later sends may fail, that is fine
      for _ = 1, 16 do if not c:send(chunk) then break end end
    end, { line_max = 100000, recv_window = WINDOW, recv_buffer_size = BUF })
    assert.are.equal(nil, s[1])
    assert.are.equal("too long", s[2])
    assert.is_true(s[3] > 100000 and s[3] <= 100001 + BUF, "held " .. s[3])
  end)
end)
