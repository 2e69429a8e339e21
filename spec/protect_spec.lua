-- Protections of the Lua layer (issue 17): finite default timeouts, argument
-- checks at the call, max_tasks, loop rounds, max_connections_per_ip.
-- Server and clients run as tasks of one worker.
local ringline = require "ringline"
local support = require "support"
local log = require "ringline.log"

local run, server, connect = support.run, support.server, support.connect

-- The line of the caller that made pcall(fn, ...) fail, from its message.
local function line_of(err) return tonumber(tostring(err):match("protect_spec%.lua:(%d+):")) end
local function here() return debug.getinfo(2, "l").currentline end

describe("default timeouts", function()
  it("are finite: connect, read and send wait 60 s unless configured", function()
    local r = run(function()
      return { ringline.config("connect_timeout"), ringline.config("read_timeout"),
               ringline.config("send_timeout") }
    end)
    assert.are.same({ 60000, 60000, 60000 }, r)
    local keys = ringline.config_keys()
    for _, k in ipairs { "connect_timeout", "read_timeout", "send_timeout" } do
      assert.are.equal(60000, keys[k].default)
      assert.are.equal(0, keys[k].min)
    end
  end)

  it("read_timeout ends a receive on a connection that sends nothing; settimeout overrides it", function()
    local s = run(function()
      local done = support.event()
      local lst, port = server(function(c)
        local t0 = ringline.now()
        local d, err = c:receive("*l")
        local waited = ringline.now() - t0
        c:settimeout(0)                 -- none: this one waits for the data
        local d2 = c:receive("*l")
        done.set({ d, err, waited, d2 })
      end)
      local c = connect(port)
      -- the client's own reads also default to 50 ms; it does not read
      local r
      ringline.sleep(0.2)               -- well past the server's first deadline
      assert(c:send("late\n"))
      r = done.wait()
      c:close()
      lst:close()
      return r
    end, { read_timeout = 50 })
    assert.is_nil(s[1])
    assert.are.equal("timeout", s[2])
    assert.is_true(s[3] >= 0.04 and s[3] < 5, "waited " .. s[3])
    assert.are.equal("late", s[4])
  end)

  it("send_timeout ends a send to a peer that does not read", function()
    local r = run(function()
      local done = support.event()
      local lst, port = server(function(c)
        local chunk = ("x"):rep(65536)
        local ok, err
        for _ = 1, 4096 do              -- at most 256 MiB: the kernel's buffers fill first
          ok, err = c:send(chunk)
          if not ok then break end
        end
        done.set({ ok, err })
      end)
      local c = connect(port)           -- never reads
      local res = done.wait()
      c:close()
      lst:close()
      return res
    end, { send_timeout = 50, send_high_watermark = 65536, send_low_watermark = 1024 })
    assert.is_nil(r[1])
    assert.are.equal("timeout", r[2])
  end)

  it("connect_timeout bounds a connect that gets no answer", function()
    local r = run(function()
      local port, close = support.stuck_listener()
      local held = support.fill_queue(port)
      local t0 = ringline.now()
      local c, err = ringline.connect("127.0.0.1", port)
      local waited = ringline.now() - t0
      for _, h in ipairs(held) do h:close() end
      close()
      return { c, err, waited }
    end, { connect_timeout = 50 })
    assert.is_nil(r[1])
    assert.are.equal("timeout", r[2])
    assert.is_true(r[3] < 5)
  end)
end)

describe("argument checks raise at the caller's line", function()
  it("settimeout / settimeouts refuse NaN, negative and infinite values", function()
    local r = run(function()
      local lst, port = server(function(c) c:receive() end)
      local c = connect(port)
      local out = {}
      for _, v in ipairs { 0 / 0, -1, math.huge, -math.huge, "5" } do
        local line = here() + 1
        local ok, err = pcall(c.settimeout, c, v)
        out[#out + 1] = { ok, tostring(err), line }
        line = here() + 1
        ok, err = pcall(function() c:settimeouts(nil, nil, v) end)
        out[#out + 1] = { ok, tostring(err), line }
      end
      -- the valid ones still work: 0 = none, a number = ms
      c:settimeout(0)
      local none = c.read_to
      c:settimeout(250)
      out.valid = { none, c.read_to }
      c:close()
      lst:close()
      return out
    end)
    for _, o in ipairs(r) do
      assert.is_false(o[1])
      assert.matches("expected milliseconds (a finite number >= 0)", o[2], 1, true)
    end
    -- settimeouts through a closure: the line is the closure's call
    assert.are.equal(r[2][3], line_of(r[2][2]))
    assert.are.same({ false, 0.25 }, r.valid)
  end)

  it("receiveuntil refuses a max that is not a finite number >= 0", function()
    local r = run(function()
      local lst, port = server(function(c) c:receive() end)
      local c = connect(port)
      local out = {}
      for _, v in ipairs { "abc", 0 / 0, -1, math.huge, {} } do
        local line = here() + 1
        local ok, err = pcall(function() local it = c:receiveuntil("\r\n", { max = v }); return it end)
        out[#out + 1] = { ok, tostring(err), line }
      end
      out.ok = type(c:receiveuntil("--", { max = 10 })) == "function"
      c:close()
      lst:close()
      return out
    end)
    for _, o in ipairs(r) do
      assert.is_false(o[1])
      assert.matches("opts.max must be a finite number >= 0", o[2], 1, true)
      assert.are.equal(o[3], line_of(o[2]))
    end
    assert.is_true(r.ok)
  end)

  it("a max of 0/0 no longer turns the limit off", function()
    -- before: {max = 0/0} compared false with every length, so a part of
    -- any size was buffered; now the call raises (above) and a finite max
    -- holds: 8 bytes without the delimiter are "too long" for max = 4
    local r = run(function()
      local done = support.event()
      local lst, port = server(function(c)
        local it = c:receiveuntil("\r\n", { max = 4 })
        done.set({ it() })
      end)
      local c = connect(port)
      assert(c:send("12345678"))
      local res = done.wait()
      c:close()
      lst:close()
      return res
    end)
    assert.is_nil(r[1])
    assert.are.equal("too long", r[2])
  end)

  it("flush, view and udp:settimeout refuse NaN, negative and infinite timeouts", function()
    local r = run(function()
      local lst, port = server(function(c) c:receive() end)
      local c = connect(port)
      local u = ringline.udp()
      local out = {}
      for _, v in ipairs { 0 / 0, -1, math.huge } do
        local line = here() + 1
        local ok, err = pcall(function() local a = c:flush(v); return a end)
        out[#out + 1] = { ok, tostring(err), line }
        line = here() + 1
        ok, err = pcall(function() local a = c:view(1, v); return a end)
        out[#out + 1] = { ok, tostring(err), line }
        line = here() + 1
        ok, err = pcall(function() local a = u:settimeout(v); return a end)
        out[#out + 1] = { ok, tostring(err), line }
      end
      u:close()
      c:close()
      lst:close()
      return out
    end)
    assert.are.equal(9, #r)
    for _, o in ipairs(r) do
      assert.is_false(o[1])
      assert.matches("(a finite number >= 0)", o[2], 1, true)
      assert.are.equal(o[3], line_of(o[2]))
    end
  end)

  it("task:join refuses NaN and negative timeouts", function()
    local r = run(function()
      local t = ringline.spawn(ringline.sleep, 0.01)
      local a = { pcall(t.join, t, 0 / 0) }
      local b = { pcall(t.join, t, -1) }
      local ok = t:join(5)
      return { a[1], tostring(a[2]), b[1], ok }
    end)
    assert.is_false(r[1])
    assert.matches("expected seconds (a finite number >= 0)", r[2], 1, true)
    assert.is_false(r[3])
    assert.is_true(r[4])
  end)
end)

describe("max_tasks", function()
  it("spawn past it returns nil, \"too many tasks\"; counted; room again when tasks end", function()
    local r = run(function()
      local got, refused, err = 0, 0, nil
      local ts = {}
      for _ = 1, 20 do
        local t, e = ringline.spawn(ringline.sleep, 0.01)
        if t then got = got + 1; ts[#ts + 1] = t else refused = refused + 1; err = e end
      end
      local m = ringline.metrics()
      for _, t in ipairs(ts) do t:join() end
      local again = ringline.spawn(function() return 1 end)
      return { got, refused, err, m.tasks_refused, again ~= nil }
    end, { max_tasks = 10 })
    -- the main task is one of the 10
    assert.are.same({ 9, 11, "too many tasks", 11, true }, r)
  end)

  it("an accept with no room for its handler's task is reset and counted", function()
    local r = run(function()
      local served = 0
      local lst, port = server(function(c)
        served = served + 1
        c:receive()
      end)
      -- main + the first handler + a parked helper = 3: the next accept has no room
      local c1 = connect(port)
      assert(support.eventually(function() return served == 1 end))
      local helper = ringline.spawn(ringline.sleep, 10)
      local c2 = connect(port)
      local d, err = c2:receive()
      local m = ringline.metrics()
      helper:cancel()
      c1:close(); c2:close()
      lst:close()
      return { served, d, err, m.tasks_refused, lst:connections() }
    end, { max_tasks = 3 })
    assert.are.equal(1, r[1])
    assert.is_nil(r[2])
    assert.is_truthy(r[3] == "closed" or r[3]:find("reset"), r[3])
    assert.are.equal(1, r[4])
  end)

  it("a burst of ready tasks runs over several loop rounds: the loop keeps polling", function()
    local r = run(function()
      local N = 20000
      local first, last
      for i = 1, N do
        ringline.spawn(function()
          if i == 1 then first = ringline.metrics().loop_iterations end
          if i == N then last = ringline.metrics().loop_iterations end
        end)
      end
      ringline.sleep(0.01)
      return { first, last }
    end)
    -- 4096 tasks per round: at least 4 polls between the first and the last
    assert.is_true(r[2] - r[1] >= 4, ("loop iterations %d -> %d"):format(r[1], r[2]))
  end)

  it("a million spawns in a loop end quickly at the default cap", function()
    local r = run(function()
      local t0 = os.clock()
      local ok, refused = 0, 0
      local function noop() end
      for _ = 1, 1e6 do
        if ringline.spawn(noop) then ok = ok + 1 else refused = refused + 1 end
      end
      return { ok, refused, os.clock() - t0, ringline.config("max_tasks") }
    end)
    assert.are.equal(100000, r[4])
    assert.are.equal(r[4] - 1, r[1])
    assert.are.equal(1e6 - r[4] + 1, r[2])
    -- ~0.3 s on an idle machine: a generous bound for a loaded one
    assert.is_true(r[3] < 5, ("took %.2f s of CPU"):format(r[3]))
  end)
end)

describe("max_connections_per_ip", function()
  it("resets a peer's connections past the limit, counts them, and frees the count on close", function()
    local r = run(function()
      local open = 0
      local lst, port = server(function(c)
        open = open + 1
        c:send("hi\n")
        c:receive()
        open = open - 1
      end)
      local a, b = connect(port), connect(port)
      assert.are.equal("hi", a:receive())
      assert.are.equal("hi", b:receive())
      local c3 = connect(port)
      local d3, e3 = c3:receive()
      local refused = ringline.metrics().conns_refused_per_ip
      a:close()
      assert(support.eventually(function() return open == 1 and lst:connections() == 1 end))
      local c4 = connect(port)
      local d4 = c4:receive()
      b:close(); c3:close(); c4:close()
      lst:close()
      return { d3, e3, refused, d4 }
    end, { max_connections_per_ip = 2 })
    assert.is_nil(r[1])
    assert.is_truthy(r[2] == "closed" or r[2]:find("reset"), r[2])
    assert.are.equal(1, r[3])
    assert.are.equal("hi", r[4])
  end)

  it("is off by default", function()
    local r = run(function()
      local lst, port = server(function(c) c:send("hi\n"); c:receive() end)
      local cs, got = {}, 0
      for i = 1, 5 do
        cs[i] = connect(port)
        if cs[i]:receive() == "hi" then got = got + 1 end
      end
      for i = 1, 5 do cs[i]:close() end
      lst:close()
      return { got, ringline.config("max_connections_per_ip"), ringline.metrics().conns_refused_per_ip }
    end)
    assert.are.same({ 5, 0, 0 }, r)
  end)
end)

describe("shed_idle", function()
  -- max_connections = 0 (the default) lets the core size the table to
  -- RLIMIT_NOFILE: the shed test compared against that 0 and shed an idle
  -- connection at every accept, however empty the table.
  it("with the default max_connections sheds nothing while the table has room", function()
    local r = run(function()
      local lst, port = server(function(c) c:send("hi\n"); c:receive() end)
      local a = connect(port)
      local da = a:receive()        -- its handler has parked in a receive
      local b = connect(port)
      local db = b:receive()        -- b was accepted (a shed comes before)
      local shed = ringline.metrics().conns_shed
      assert(a:send("x\n"))          -- a's handler was not reset: it reads
      local max = ringline.config("max_connections")
      a:close(); b:close(); lst:close()
      return { da, db, shed, max > 0 }
    end, { shed_idle = 1 })
    assert.are.same({ "hi", "hi", 0, true }, r)
  end)
end)

describe("RINGLINE_LOG_LEVEL", function()
  it("an unknown value is reported with the valid ones", function()
    local root = debug.getinfo(1, "S").source:match("^@(.*)/spec/[^/]+$") or "."
    local cmd = ("cd %q && RINGLINE_LOG_LEVEL=loud luajit -e %q 2>&1"):format(root,
      "package.path='lua/?.lua;lua/?/init.lua;bindings/?.lua;'..package.path; "
      .. "local l = require 'ringline.log'; io.write('level=', l.level())")
    local p = assert(io.popen(cmd))
    local out = p:read("*a")
    p:close()
    assert.matches("RINGLINE_LOG_LEVEL: unknown value 'loud'", out, 1, true)
    assert.matches("ERR, WARN, NOTICE, INFO, DEBUG", out, 1, true)
    assert.matches("level=" .. log.INFO, out, 1, true)
  end)
end)
