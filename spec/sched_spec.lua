-- ringline.run, the scheduler and the task API: results and errors, the
-- main task and what it starts, timeouts, spawn/join, sleep/now, user
-- coroutines inside tasks (the yield sentinel), on_error, configure, log,
-- metrics, worker ids.
local ringline = require "ringline"
local rlog = require "ringline.log"
local support = require "support"

describe("ringline.run", function()
  it("returns the main function's results, arguments passed through", function()
    local a, b, c, n = ringline.run(function(x, y) return x + y, nil, "z", select("#", x, y) end, 2, 3)
    assert.are.equal(5, a)
    assert.is_nil(b)
    assert.are.equal("z", c)
    assert.are.equal(2, n)
  end)

  it("accepts opts first and still passes the arguments", function()
    assert.are.equal("ab", ringline.run({ timeout = 5 }, function(x, y) return x .. y end, "a", "b"))
  end)

  it("raises the main task's error value unchanged (strings and tables)", function()
    local ok, err = pcall(ringline.run, function() error("boom") end)
    assert.is_false(ok)
    assert.matches("sched_spec.lua:%d+: boom", err)
    local obj = { code = 42 }
    ok, err = pcall(ringline.run, function() ringline.sleep(0.001); error(obj) end)
    assert.is_false(ok)
    assert.are.equal(obj, err)
  end)

  it("waits for everything the main task started", function()
    local order = {}
    ringline.run(function()
      ringline.spawn(function()
        ringline.sleep(0.02)
        order[#order + 1] = "child"
      end)
      order[#order + 1] = "main"
    end)
    assert.are.same({ "main", "child" }, order)
  end)

  it('opts.timeout bounds the whole run and raises "timeout"', function()
    local old = rlog.set_sink(function() end)
    local ok, err = pcall(ringline.run, { timeout = 0.05 }, function()
      ringline.spawn(function() ringline.sleep(100) end)
    end)
    rlog.set_sink(old)
    assert.is_false(ok)
    assert.are.equal("timeout", err)
  end)

  it("a timed-out run lists tasks that never started too (no coroutine yet)", function()
    local lines = {}
    local old = rlog.set_sink(function(l) lines[#lines + 1] = l end)
    local ok, err = pcall(ringline.run, { timeout = 0.02 }, function()
      -- a round runs at most 4096 tasks (sched.lua's ROUND): these fill
      -- the next one, and the deadline has passed when it ends, so the
      -- three after them never start
      for _ = 1, 4096 do ringline.spawn(function() end) end
      for _ = 1, 3 do ringline.spawn(function() ringline.sleep(100) end) end
      local t0 = os.clock()
      while os.clock() - t0 < 0.05 do end
      ringline.sleep(100)
    end)
    rlog.set_sink(old)
    assert.is_false(ok)
    assert.are.equal("timeout", err)
    assert.are.equal(5, #lines)   -- the count, main, the three spawned
    local ready = 0
    for i = 2, 5 do
      assert.matches("%] ringline worker 0: task table: 0x%x+ %(", lines[i])
      if lines[i]:find("(ready): not started", 1, true) then ready = ready + 1 end
    end
    assert.are.equal(3, ready)
  end)
  it("can run again in the same process, with fresh state", function()
    for i = 1, 3 do
      local r = ringline.run(function()
        local lst, port = support.server(function(c) c:send("x" .. i) end)
        local c = support.connect(port)
        local d = c:receive("*a")
        c:close()
        lst:close()
        return d
      end)
      assert.are.equal("x" .. i, r)
    end
  end)

  it("refuses to nest and checks its arguments", function()
    local inner_ok = ringline.run(function()
      return pcall(ringline.run, function() end)
    end)
    assert.is_false(inner_ok)
    assert.has_error(function() ringline.run("x") end)
    assert.has_error(function() ringline.run({ timeout = -1 }, function() end) end)
    assert.has_error(function() ringline.run({ on_error = 1 }, function() end) end)
  end)

  it("takes configuration keys in opts and raises on bad ones", function()
    assert.are.equal(8, ringline.run({ recv_buffers = 8 }, function()
      return ringline.config("recv_buffers")
    end))
    local ok, err = pcall(ringline.run, { recv_buffers = 3 }, function() end)
    assert.is_false(ok)
    assert.matches("recv_buffers: 3 is out of range %(1%.%.32768, a power of two%)", err)
    ok, err = pcall(ringline.run, { no_such_key = 1 }, function() end)
    assert.is_false(ok)
    assert.matches("unknown configuration key 'no_such_key'", err)
  end)

  it("API calls with bad arguments raise", function()
    local r = ringline.run(function()
      return { (pcall(ringline.spawn, 42)), (pcall(ringline.on_error, "x")),
               (pcall(ringline.connect, nil, 80)), (pcall(ringline.config, "nope")) }
    end)
    assert.are.same({ false, false, false, false }, r)
  end)

  it("API calls outside a run raise", function()
    assert.has_error(function() ringline.sleep(0.1) end)
    assert.has_error(function() ringline.spawn(function() end) end)
    assert.has_error(function() ringline.listen(0, function() end) end)
    assert.has_error(function() ringline.metrics() end)
    assert.has_error(function() ringline.configure({}) end)
  end)
end)

describe("tasks", function()
  it("spawn/join returns results; join on a finished task returns them again", function()
    local r = ringline.run(function()
      local t = ringline.spawn(function(a, b) ringline.sleep(0.001); return a * b, "ok" end, 6, 7)
      local r1 = { t:join() }
      local r2 = { t:join() }
      return { r1, r2, t:status() }
    end)
    assert.are.same({ { true, 42, "ok" }, { true, 42, "ok" }, "dead" }, r)
  end)

  it("join(0) does not wait: a running task gives nil, \"timeout\" at once", function()
    local r = ringline.run(function()
      local t = ringline.spawn(function() return 42 end)
      local a = { t:join(0) }          -- t has not run yet
      local b = { t:join() }
      return { a, b, (t:join(0)) }
    end)
    assert.are.same({ { nil, "timeout" }, { true, 42 }, true }, r)
  end)

  it("join of a task that raised gives false, err; the error also goes to on_error", function()
    local seen = {}
    local r = ringline.run(function()
      ringline.on_error(function(err, tb) seen[#seen + 1] = tb end)
      local t = ringline.spawn(function() error("task failed") end)
      return { t:join() }
    end)
    assert.is_false(r[1])
    assert.matches("task failed", r[2])
    assert.are.equal(1, #seen)
    assert.matches("stack traceback", seen[1])
  end)

  it('join(timeout) gives nil, "timeout" and can be retried', function()
    local r = ringline.run(function()
      local t = ringline.spawn(function() ringline.sleep(0.05); return "late" end)
      local a, b = t:join(0.001)
      local c, d = t:join()
      return { a, b, c, d }
    end)
    assert.are.same({ nil, "timeout", true, "late" }, r)
  end)

  it("join: a task that ended wins over a timeout firing in the same batch", function()
    local r = ringline.run(function()
      local late, got = 0, 0
      for _ = 1, 20 do
        local t = ringline.spawn(function() ringline.sleep(0.02); return "v" end)
        ringline.sleep(0)
        local ok, v = t:join(0.02)               -- its deadline is the task's, give or take
        if ok == nil and t:status() == "dead" then late = late + 1 end
        if ok and v == "v" then got = got + 1 end
      end
      return { late = late, got = got }
    end)
    assert.are.equal(0, r.late)                 -- never "timeout" for a task that ended
    assert.is_true(r.got > 0)
  end)

  it("several tasks can join one", function()
    local r = ringline.run(function()
      local t = ringline.spawn(function() ringline.sleep(0.01); return 1 end)
      local js = {}
      for i = 1, 3 do js[i] = ringline.spawn(function() local _, v = t:join(); return v + i end) end
      local out = {}
      for i = 1, 3 do out[i] = select(2, js[i]:join()) end
      return out
    end)
    assert.are.same({ 2, 3, 4 }, r)
  end)

  it("a task cannot join itself; join outside a task raises", function()
    local ok = ringline.run(function()
      local me
      me = ringline.spawn(function() return pcall(me.join, me) end)
      local _, inner_ok = me:join()
      return inner_ok
    end)
    assert.is_false(ok)
  end)

  it("an error in one task does not stop the others", function()
    local errs = {}
    local r = ringline.run(function()
      ringline.on_error(function(e) errs[#errs + 1] = e end)
      ringline.spawn(function() error("first") end)
      local t = ringline.spawn(function() ringline.sleep(0.01); return "second ran" end)
      return select(2, t:join())
    end)
    assert.are.equal("second ran", r)
    assert.are.equal(1, #errs)
  end)

  it("a failing on_error handler is logged, not fatal", function()
    local lines = {}
    local old = rlog.set_sink(function(l) lines[#lines + 1] = l end)
    local r = ringline.run(function()
      ringline.on_error(function() error("handler broke") end)
      ringline.spawn(function() error("original") end)
      ringline.sleep(0.001)
      return "alive"
    end)
    rlog.set_sink(old)
    assert.are.equal("alive", r)
    assert.matches("handler broke", lines[1])
    assert.matches("original", lines[1])
  end)

  it("the default on_error logs the traceback at ERR with the worker id", function()
    local lines = {}
    local old = rlog.set_sink(function(l) lines[#lines + 1] = l end)
    ringline.run(function()
      ringline.spawn(function() error("logged by default") end)
    end)
    rlog.set_sink(old)
    assert.are.equal(1, #lines)
    assert.matches("%[error%] ringline worker 0: ", lines[1])
    assert.matches("logged by default", lines[1])
    assert.matches("stack traceback", lines[1])
  end)
end)

describe("task:cancel", function()
  it("ends a blocked receive with nil, \"canceled\"; the connection stays usable", function()
    local r = support.run(function()
      local lst, port = support.server(function(c)
        local l = c:receive("*l")
        c:send("got:", l, "\n")
      end)
      local c = support.connect(port)
      local t = ringline.spawn(function() return c:receive("*l") end)
      ringline.sleep(0)                         -- t parks in receive
      assert.is_true(t:cancel())
      local out = { t:join() }
      c:send("after\n")
      out[4] = c:receive("*l")
      c:close()
      lst:close()
      return out
    end)
    assert.are.same({ true, nil, "canceled", "got:after" }, r)
  end)

  it("ends a connect; a connection made after the cancel is dropped", function()
    local port, close_stuck = support.stuck_listener()
    local r = ringline.run({ timeout = 10 }, function()
      local held = support.fill_queue(port)
      local t = ringline.spawn(function() return ringline.connect("127.0.0.1", port) end)
      ringline.sleep(0)                         -- t parks in connect
      t:cancel()
      local out = { t:join() }
      for _, c in ipairs(held) do c:close() end
      return out
    end)
    close_stuck()
    assert.are.same({ true, nil, "canceled" }, r)
  end)

  it("ends a sleep and a join; sleep releases its timer", function()
    local r = ringline.run(function()
      local sleeper = ringline.spawn(function() return ringline.sleep(10) end)
      local target = ringline.spawn(function() ringline.sleep(10) end)
      local joiner = ringline.spawn(function() return target:join() end)
      ringline.sleep(0)
      sleeper:cancel()
      joiner:cancel()
      target:cancel()
      local out = { { sleeper:join() }, { joiner:join() }, { target:join() } }
      out[4] = ringline.metrics().timers_active
      return out
    end)
    assert.are.same({ true, nil, "canceled" }, r[1])
    assert.are.same({ true, nil, "canceled" }, r[2])
    assert.are.same({ true }, r[3])           -- target: its sleep returned nil, "canceled"
    assert.are.equal(0, r[4])
  end)

  it("a cancel before the task blocks applies to its next blocking call", function()
    local r = ringline.run(function()
      local t = ringline.spawn(function()
        local x = 0
        for i = 1, 10 do x = x + i end          -- runs without blocking
        local a, b = ringline.sleep(5)
        local c = ringline.sleep(0.001)        -- the cancel is used up
        return x, a, b, c
      end)
      t:cancel()                               -- t has not started yet
      return { t:join() }
    end)
    assert.are.same({ true, 55, nil, "canceled", true }, r)
  end)

  it("returns false for a finished task", function()
    local r = ringline.run(function()
      local t = ringline.spawn(function() return 1 end)
      t:join()
      return t:cancel()
    end)
    assert.is_false(r)
  end)
end)

describe("sleep and now", function()
  it("wakes sleepers in deadline order; now() advances", function()
    local order = {}
    local t0, t1 = ringline.run(function()
      local t0 = ringline.now()
      local a = ringline.spawn(function() ringline.sleep(0.03); order[#order + 1] = "a" end)
      local b = ringline.spawn(function() ringline.sleep(0.01); order[#order + 1] = "b" end)
      a:join()
      b:join()
      return t0, ringline.now()
    end)
    assert.are.same({ "b", "a" }, order)
    assert.is_true(t1 - t0 >= 0.025)
    assert.is_true(t1 - t0 < 5)
  end)

  it("sleep(0) yields to the other ready tasks", function()
    local order = {}
    ringline.run(function()
      ringline.spawn(function() order[#order + 1] = "other" end)
      order[#order + 1] = "before"
      assert.is_true(ringline.sleep(0))
      order[#order + 1] = "after"
    end)
    assert.are.same({ "before", "other", "after" }, order)
  end)

  it("a plain coroutine.yield at the top of a task is a cooperative yield", function()
    local order = {}
    ringline.run(function()
      ringline.spawn(function() order[#order + 1] = "other" end)
      coroutine.yield()
      order[#order + 1] = "main"
    end)
    assert.are.same({ "other", "main" }, order)
  end)

  it("raises on a bad duration", function()
    ringline.run(function()
      assert.has_error(function() ringline.sleep("1") end)
      assert.has_error(function() ringline.sleep(0 / 0) end)
    end)
  end)

  it("sleep releases its timer (timers_active back to 0)", function()
    local m = ringline.run(function()
      for _ = 1, 5 do ringline.sleep(0.001) end
      return ringline.metrics()
    end)
    assert.are.equal(0, m.timers_active)
  end)
end)

describe("user coroutines inside tasks (the yield sentinel)", function()
  it("ringline.coroutine.wrap generators may block inside; their own yields still work", function()
    local r = support.run(function()
      local lst, port = support.server(function(c) c:send("l1\nl2\nl3\n") end)
      local c = support.connect(port)
      local gen = ringline.coroutine.wrap(function()
        for _ = 1, 3 do coroutine.yield((c:receive("*l"))) end
        ringline.sleep(0.001)
        return "end"
      end)
      local got = { gen(), gen(), gen(), gen() }
      c:close()
      lst:close()
      return got
    end)
    assert.are.same({ "l1", "l2", "l3", "end" }, r)
  end)

  it("ringline.coroutine.resume nests: a wrap inside a wrap can block", function()
    local r = ringline.run(function()
      local outer = ringline.coroutine.wrap(function()
        local inner = ringline.coroutine.wrap(function()
          ringline.sleep(0.001)
          coroutine.yield("inner")
          ringline.sleep(0.001)
          return "inner done"
        end)
        coroutine.yield(inner())
        ringline.sleep(0.001)
        coroutine.yield(inner())
        return "outer done"
      end)
      return { outer(), outer(), outer() }
    end)
    assert.are.same({ "inner", "inner done", "outer done" }, r)
  end)

  it("ringline.coroutine.resume reports errors like coroutine.resume", function()
    local r = ringline.run(function()
      local co = ringline.coroutine.create(function() ringline.sleep(0.001); error("inside") end)
      return { ringline.coroutine.resume(co) }
    end)
    assert.is_false(r[1])
    assert.matches("inside", r[2])
  end)

  it("a blocking call inside a plain coroutine raises instead of corrupting the task", function()
    local r = ringline.run(function()
      local gen = coroutine.wrap(function() ringline.sleep(0.001) end)
      local ok, err = pcall(gen)
      ringline.sleep(0.001)                     -- the task itself still works
      return { ok, err }
    end)
    assert.is_false(r[1])
    assert.matches("coroutine not made by ringline.coroutine", r[2])
    -- the message names the caller's line, not a line inside ringline
    assert.matches("^[^\n]*sched_spec%.lua:%d+: ringline:", r[2])
  end)

  it("a receive blocked inside a plain coroutine names the caller's line", function()
    local err = support.run(function()
      local lst, port = support.server(function(c) c:receive("*a") end)
      local c = support.connect(port)
      local ok, e = pcall(coroutine.wrap(function() c:receiveany(10) end))
      c:close()
      lst:close()
      assert.is_false(ok)
      return e
    end)
    assert.matches("^[^\n]*sched_spec%.lua:%d+: ringline: blocking call", err)
  end)

  it("a wait refused inside a plain coroutine leaves no reader, timer or joiner behind", function()
    local r = support.run(function()
      local lst, port = support.server(function(c)
        if c:receive(2) then c:send("hello") end
        c:receive("*a")
      end)
      local c = support.connect(port)
      c:settimeout(50)                         -- a deadline the refused wait would have armed
      local out = { pcall(coroutine.wrap(function() return c:receiveany(10) end)) }
      local t = ringline.spawn(function() ringline.sleep(0.15) end)
      out[3] = t
      local ok, err = pcall(coroutine.wrap(function() return t:join() end))
      out[4], out[5] = ok, err
      c:settimeout(0)
      out[6] = { t:join() }                    -- a stale 50 ms timer would end it with "timeout"
      c:send("go")
      out[7] = { c:receive(5) }                -- not "socket busy reading"
      c:close()
      lst:close()
      return out
    end)
    assert.is_false(r[1])
    assert.matches("blocking call", r[2])
    assert.is_false(r[4])
    assert.matches("blocking call", r[5])
    assert.are.same({ true }, r[6])
    assert.are.same({ "hello" }, r[7])
  end)
end)

describe("ringline.configure", function()
  it("sets keys before the first I/O", function()
    local r = ringline.run(function()
      ringline.configure({ send_high_watermark = 131072, line_max = 100 })
      return { ringline.config("send_high_watermark"), ringline.config("line_max") }
    end)
    assert.are.same({ 131072, 100 }, r)
  end)

  it("raises naming the key and the range; unknown keys raise; nothing is half-applied", function()
    local r = ringline.run(function()
      local out = {}
      out[1] = select(2, pcall(ringline.configure, { sq_entries = 100 }))
      out[2] = select(2, pcall(ringline.configure, { bogus = 1 }))
      out[3] = select(2, pcall(ringline.configure, { recv_window = "big" }))
      out[4] = select(2, pcall(ringline.configure, { send_low_watermark = 100000 }))
      out[5] = select(2, pcall(ringline.configure, { line_max = 0 }))
      out[6] = select(2, pcall(ringline.configure, "x"))
      out[7] = select(2, pcall(ringline.configure, { recv_window = 4096, max_timers = 0 }))
      out[8] = ringline.config("recv_window")
      return out
    end)
    assert.matches("sq_entries: 100 is out of range %(8%.%.32768, a power of two%)", r[1])
    assert.matches("unknown configuration key 'bogus'", r[2])
    assert.matches("recv_window: expected an integer", r[3])
    assert.matches("send_low_watermark", r[4])
    assert.matches("line_max: 0 is out of range", r[5])
    assert.matches("expected a table", r[6])
    assert.matches("max_timers", r[7])
    assert.are.equal(262144, r[8])
  end)

  it("raises after the first I/O", function()
    local ok, err = ringline.run(function()
      ringline.sleep(0.001)
      return pcall(ringline.configure, { recv_buffers = 64 })
    end)
    assert.is_false(ok)
    assert.matches("started I/O already", err)
  end)

  it("config_keys lists every key with its range and doc", function()
    local keys = ringline.config_keys()
    assert.are.equal(256, keys.sq_entries.default)
    assert.is_true(keys.sq_entries.pow2)
    assert.are.equal("string", type(keys.max_connections.doc))
    assert.is_table(keys.line_max)
  end)
end)

describe("operations", function()
  it("metrics() is a flat table of numbers with every counter", function()
    local m = ringline.run(function() return ringline.metrics() end)
    local ffi = require "ffi"
    assert.is_true(#ringline._METRICS >= 21)
    assert.are.equal(ffi.sizeof("struct rl_metrics"), 8 * #ringline._METRICS)
    for _, k in ipairs({ "conns_open", "send_slots_used", "send_bytes_queued", "accum_bytes",
                         "recv_buffers_free", "timers_active", "bytes_in", "bytes_out" }) do
      assert.are.equal("number", type(m[k]), k)
    end
    for _, k in ipairs(ringline._METRICS) do
      assert.are.equal("number", type(m[k]), k)
    end
    assert.are.equal(1, m.tasks)                 -- the main task itself
  end)

  it("log writes the level, the worker id and the concatenated arguments", function()
    local lines = {}
    local old = rlog.set_sink(function(l) lines[#lines + 1] = l end)
    ringline.log(ringline.WARN, "x=", 1, " y=", true)
    ringline.log(ringline.DEBUG, "hidden at the default level")
    local prev = ringline.log_level(ringline.DEBUG)
    ringline.log(ringline.DEBUG, "shown")
    ringline.log_level(prev)
    rlog.set_sink(old)
    assert.are.equal(2, #lines)
    assert.matches("%[warn%] ringline worker 0: x=1 y=true\n$", lines[1])
    assert.matches("%[debug%].*shown", lines[2])
    assert.has_error(function() ringline.log("loud", "x") end)
    assert.are.equal(4, ringline.ERR)
    assert.are.equal(8, ringline.DEBUG)
  end)

  it("worker_id() and workers() outside the host are 0 and 1", function()
    assert.are.equal(0, ringline.worker_id())
    assert.are.equal(1, ringline.workers())
  end)
end)
