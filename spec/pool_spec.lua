-- The keep-alive pool of ringline.connect (ringline.pool): conn:setkeepalive
-- and conn:getreusedtimes, idle timeouts, a peer that closes an idle
-- connection, the size limit, the backlog queue, and connections and
-- descriptors back to idle afterwards.
local ringline = require "ringline"
local support = require "support"

local run, server = support.run, support.server

-- Wait (bounded) until cond() holds: the loop detects pooled connections'
-- ends asynchronously, so the spec waits for the effect, not for a time.
local function eventually(cond, what)
  for _ = 1, 2000 do
    if cond() then return end
    ringline.sleep(0.002)
  end
  error("never happened: " .. what, 2)
end

local function m(k) return ringline.metrics()[k] end

-- A line server that counts its connections and reports each end on ch.
local function line_server(state)
  state.accepts, state.ended = 0, 0
  return server(function(c)
    state.accepts = state.accepts + 1
    local id = state.accepts
    while true do
      local l = c:receive("*l")
      if not l then break end
      if l == "two" then
        c:send("a\nb\n")
      elseif l == "bye" then
        c:send("bye\n")
        break
      else
        c:send(id, ":", l, "\n")
      end
    end
    state.ended = state.ended + 1
  end)
end

local function ask(c, s)
  assert(c:send(s, "\n"))
  return c:receive("*l")
end

describe("ringline.pool: conn:setkeepalive", function()
  it("reuses the connection: same peer connection, getreusedtimes counts", function()
    local r = { run(function()
      local st = {}
      local lst, port = line_server(st)
      local out = {}
      for i = 1, 3 do
        local c = assert(ringline.connect("127.0.0.1", port))
        out[#out + 1] = c:getreusedtimes()
        out[#out + 1] = ask(c, "x" .. i)
        assert(c:setkeepalive())
        out[#out + 1] = m("pool_idle")
      end
      local accepts = st.accepts
      -- another key (a pool name) opens its own connection
      local c = assert(ringline.connect("127.0.0.1", port, { pool = "other" }))
      out[#out + 1] = c:getreusedtimes()
      out[#out + 1] = ask(c, "o")        -- the server has counted it
      c:close()
      c = assert(ringline.connect("127.0.0.1", port))
      out[#out + 1] = c:getreusedtimes()
      c:close()
      lst:close()
      return out, accepts, st.accepts
    end) }
    assert.are.same({ { 0, "1:x1", 1, 1, "1:x2", 1, 2, "1:x3", 1, 0, "2:o", 3 }, 1, 2 }, r)
  end)

  it("a reused connection has the run's default timeouts, not its last user's", function()
    local r = { run(function()
      local lst, port = line_server({})
      local c = assert(ringline.connect("127.0.0.1", port))
      ask(c, "x")
      c:settimeout(1)
      assert(c:setkeepalive())
      c = assert(ringline.connect("127.0.0.1", port))
      local reused = c:getreusedtimes()
      local late = ringline.spawn(function() return ask(c, "y") end)  -- the server answers at once
      local ok, line = late:join()
      c:close()
      lst:close()
      return reused, c.read_to == ringline.config("read_timeout") / 1000, line
    end) }
    assert.are.same({ 1, true, "1:y" }, r)
  end)

  it("refuses a connection with unread bytes, a closed one, a busy one, an accepted one", function()
    local r = { run(function()
      local st = {}
      local lst, port = line_server(st)
      local c = assert(ringline.connect("127.0.0.1", port))
      assert(c:send("two\n"))
      assert.are.equal("a", c:receive("*l"))
      eventually(function() return c.io.rlen > 0 end, "the second line buffered")
      local out = { c:setkeepalive() }
      assert.are.equal("b", c:receive("*l"))
      -- a reader in another task: busy
      local reader = ringline.spawn(function() return c:receive("*l") end)
      ringline.sleep(0)
      out[#out + 1] = select(2, c:setkeepalive())
      reader:cancel()
      reader:join()
      -- the peer ended it: invalid
      assert(c:send("bye\n"))
      assert.are.equal("bye", c:receive("*l"))
      eventually(function() return c.io.reof ~= 0 end, "EOF")
      out[#out + 1] = select(2, c:setkeepalive())
      c:close()
      out[#out + 1] = select(2, c:setkeepalive())
      out[#out + 1] = select(2, c:getreusedtimes())
      lst:close()
      return out
    end) }
    assert.are.same({ { nil, "unread data in buffer", "socket busy", "invalid connection",
                        "closed", "closed" } }, r)
  end)

  it("closes an idle connection after its timeout; connections return to idle", function()
    local r = { run(function()
      local st = {}
      local lst, port = line_server(st)
      local open0 = m("conns_open")
      local c = assert(ringline.connect("127.0.0.1", port))
      ask(c, "x")
      assert(c:setkeepalive(30))
      local idle1 = m("pool_idle")
      eventually(function() return st.ended == 1 end, "the server saw the close")
      local idle2 = m("pool_idle")
      eventually(function() return m("conns_open") == open0 + 0 end, "conns back")
      local c2 = assert(ringline.connect("127.0.0.1", port))
      local reused = c2:getreusedtimes()
      local line = ask(c2, "y")           -- the server has counted it
      c2:close()
      lst:close()
      return idle1, idle2, reused, line
    end) }
    assert.are.same({ 1, 0, 0, "2:y" }, r)
  end)

  it("discards an idle connection the peer closed, at once and on take", function()
    local r = { run(function()
      local st = {}
      local lst, port = line_server(st)
      local c = assert(ringline.connect("127.0.0.1", port))
      assert.are.equal("bye", ask(c, "bye"))   -- the server ends after answering
      assert(c:setkeepalive(0))                -- EOF not seen yet: pooled
      eventually(function() return m("pool_idle") == 0 end, "the idle connection dropped")
      local c2 = assert(ringline.connect("127.0.0.1", port))
      local reused = c2:getreusedtimes()
      local line = ask(c2, "y")
      c2:close()
      lst:close()
      return reused, line, st.accepts
    end) }
    assert.are.same({ 0, "2:y", 2 }, r)
  end)

  it("discards an idle connection the peer sends stray bytes on; its descriptor is closed", function()
    local r = { run(function()
      local ended = false
      local ch = ringline.channel(1)
      local lst, port = server(function(c)
        c:receive("*l")
        c:send("ok\n")
        ch:get()                         -- the client has pooled it
        c:send("stray\n")
        local _, err = c:receive("*l")   -- the pool closes it
        ended = err
      end)
      local open0 = m("conns_open")
      local c = assert(ringline.connect("127.0.0.1", port))
      assert.are.equal("ok", ask(c, "x"))
      assert(c:setkeepalive(0))
      local idle1 = m("pool_idle")
      ch:put(true)
      eventually(function() return ended end, "the server saw the close")
      eventually(function() return m("conns_open") == open0 end, "conns back")
      local idle2 = m("pool_idle")
      lst:close()
      return idle1, idle2, ended
    end) }
    assert.are.same({ 1, 0, "closed" }, r)
  end)

  it("keeps at most size idle connections, closing the least recently used", function()
    local r = { run(function()
      local st = {}
      local lst, port = line_server(st)
      local cs = {}
      for i = 1, 3 do
        cs[i] = assert(ringline.connect("127.0.0.1", port))
        ask(cs[i], "x")
      end
      for i = 1, 3 do assert(cs[i]:setkeepalive(0, 2)) end
      local idle = m("pool_idle")
      eventually(function() return st.ended == 1 end, "one closed")
      -- the newest comes back first: the third connection
      local c = assert(ringline.connect("127.0.0.1", port))
      local line = ask(c, "z")
      c:close()
      assert(ringline.connect("127.0.0.1", port)):close()
      lst:close()
      return idle, line
    end) }
    assert.are.same({ 2, "3:z" }, r)
  end)
end)

describe("ringline.pool: backlog", function()
  it("queues connects past pool_size, refuses past backlog, hands over on setkeepalive and close", function()
    local r = { run(function()
      local st = {}
      local lst, port = line_server(st)
      local o = { pool_size = 1, backlog = 1 }
      local c1 = assert(ringline.connect("127.0.0.1", port, o))
      local w = ringline.spawn(function()
        local c = assert(ringline.connect("127.0.0.1", port, o))
        local n = c:getreusedtimes()
        local line = ask(c, "w")
        c:close()                             -- frees the slot for the next
        return n, line
      end)
      ringline.sleep(0)
      local waiting = m("pool_waiting")
      local _, full = ringline.connect("127.0.0.1", port, o)
      ask(c1, "x")
      assert(c1:setkeepalive())               -- handed straight to the waiter
      local _, n, line = w:join()
      local c3 = assert(ringline.connect("127.0.0.1", port, o))  -- the freed slot: a new one
      local n3 = c3:getreusedtimes()
      assert.are.equal("2:z", ask(c3, "z"))  -- a new connection, the server has counted it
      -- a queued connect times out
      local t0 = ringline.now()
      local _, terr = ringline.connect("127.0.0.1", port, { pool_size = 1, backlog = 1, timeout = 0.05 })
      local waited = ringline.now() - t0
      c3:close()
      local after = m("pool_waiting")
      lst:close()
      return waiting, full, n, line, n3, terr, waited >= 0.04, after, st.accepts
    end) }
    assert.are.same({ 1, "too many waiting connect operations", 1, "1:w", 0, "timeout", true, 0, 2 },
                    r)
  end)

  it("a failed connect gives its slot back", function()
    local r = { run(function()
      local lst, port = server(function() end)
      lst:close()                              -- now refused
      local o = { pool = "p", pool_size = 1, backlog = 0 }
      local _, e1 = ringline.connect("127.0.0.1", port, o)
      local _, e2 = ringline.connect("127.0.0.1", port, o)
      return e1, e2
    end) }
    assert.are.same({ "connection refused", "connection refused" }, r)
  end)
end)

describe("ringline.pool: TLS", function()
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

  it("reuses a TLS connection without a new handshake; plaintext has its own pool", function()
    local r = { run(function()
      local accepts = 0
      local lst = assert(ringline.listen("127.0.0.1:0", function(c)
        accepts = accepts + 1
        for l in c:lines() do c:send(accepts, ":", l, "\n") end
      end, { ssl = { cert = cert, key = key } }))
      local _, port = lst:getsockname()
      local o = { ssl = { ca = cert } }
      local hs0 = ringline.metrics().tls_handshakes
      local c = assert(ringline.connect("127.0.0.1", port, o))
      local a = ask(c, "a")
      assert(c:setkeepalive())
      c = assert(ringline.connect("127.0.0.1", port, o))
      local b, n = ask(c, "b"), c:getreusedtimes()
      c:close()
      local hs = ringline.metrics().tls_handshakes - hs0
      lst:close()
      return a, b, n, accepts, hs
    end) }
    -- one handshake on each side of the one connection
    assert.are.same({ "1:a", "1:b", 1, 1, 2 }, r)
  end)
end)
