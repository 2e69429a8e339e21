-- Tasks waiting on each other: ringline.wait, semaphores, channels, and
-- task:cancel interrupting every kind of blocked call.
local ringline = require "ringline"
local support = require "support"

local run = support.run

describe("ringline.wait", function()
  it("returns the results of the first task to finish; the others go on", function()
    local r = run(function()
      local slow = ringline.spawn(function() ringline.sleep(0.05) return "slow" end)
      local fast = ringline.spawn(function() ringline.sleep(0.01) return "fast", 2 end)
      local first = { ringline.wait(slow, fast) }
      local st = slow:status()
      local second = { slow:join() }
      return { first, st, second }
    end)
    assert.are.same({ { true, "fast", 2 }, "parked", { true, "slow" } }, r)
  end)

  it("a finished task is returned at once (the first in argument order)", function()
    local r = run(function()
      local a = ringline.spawn(function() return "a" end)
      local b = ringline.spawn(function() return "b" end)
      local c = ringline.spawn(function() ringline.sleep(10) end)
      a:join(); b:join()
      local res = { ringline.wait(c, b, a) }
      c:cancel()
      return res
    end)
    assert.are.same({ true, "b" }, r)
  end)

  it("a task that raised gives false, err", function()
    local r = run(function()
      local bad = ringline.spawn(function() ringline.sleep(0.001) error({ code = 7 }) end)
      local slow = ringline.spawn(function() ringline.sleep(0.2) end)
      local ok, err = ringline.wait(slow, bad)
      slow:cancel()
      return { ok, err.code }
    end, { errors_ok = true })
    assert.are.same({ false, 7 }, r)
  end)

  it('canceled: nil, "canceled"; the tasks it waited for are not affected', function()
    local r = run(function()
      local a = ringline.spawn(function() ringline.sleep(0.03) return "a" end)
      local w = ringline.spawn(function() return ringline.wait(a) end)
      ringline.sleep(0)
      w:cancel()
      return { { w:join() }, { a:join() }, a.joiners == nil or #a.joiners == 0 }
    end)
    assert.are.same({ { true, nil, "canceled" }, { true, "a" }, true }, r)
  end)

  it("a task that ended wins over a cancel that came in the same batch", function()
    local r = ringline.run(function()
      local lost, got = 0, 0
      for _ = 1, 20 do
        local holder = {}
        -- the canceler's timer is armed first, so it fires first in a batch
        local canceler = ringline.spawn(function() ringline.sleep(0.02); holder.me:cancel() end)
        local a = ringline.spawn(function() ringline.sleep(0.02); return "v" end)
        holder.me = ringline.spawn(function()
          local ok, res = ringline.wait(a)
          return ok, res, a:status() == "dead"
        end)
        local _, ok, res, a_dead = holder.me:join()
        canceler:join()
        if ok == nil and a_dead then lost = lost + 1 end
        if ok and res == "v" then got = got + 1 end
      end
      return { lost = lost, got = got }
    end)
    assert.are.equal(0, r.lost)                 -- never "canceled" for a task that had ended
    assert.is_true(r.got > 0)
  end)

  it("raises on misuse", function()
    local r = run(function()
      local me = ringline.current()
      return { (pcall(ringline.wait)), (pcall(ringline.wait, "x")), (pcall(ringline.wait, me)) }
    end)
    assert.are.same({ false, false, false }, r)
  end)
end)

describe("ringline.semaphore", function()
  it("wait takes, post gives; waiters are served first come, first served", function()
    local r = run(function()
      local s = ringline.semaphore(0)
      local order = {}
      local ts = {}
      for i = 1, 5 do
        ts[i] = ringline.spawn(function()
          assert(s:wait())
          order[#order + 1] = i
        end)
      end
      ringline.sleep(0)
      local waiting = s:count()
      s:post()
      ringline.sleep(0); ringline.sleep(0)
      local after1 = #order
      s:post(4)
      for i = 1, 5 do ts[i]:join() end
      return { order, waiting, after1, s:count() }
    end)
    assert.are.same({ { 1, 2, 3, 4, 5 }, -5, 1, 0 }, r)
  end)

  it("a newcomer does not overtake a queued waiter", function()
    local r = run(function()
      local s = ringline.semaphore(0)
      local got = {}
      local queued = ringline.spawn(function() s:wait(); got[#got + 1] = "queued" end)
      ringline.sleep(0)
      s:post()
      -- the resource went to the queued task; a newcomer finds none
      local a, b = s:wait(0)
      queued:join()
      return { got, a, b }
    end)
    assert.are.same({ { "queued" }, nil, "timeout" }, r)
  end)

  it('wait(timeout) gives nil, "timeout" and leaves the queue', function()
    local r = run(function()
      local s = ringline.semaphore(0)
      local t0 = ringline.now()
      local a, b = s:wait(0.03)
      local dt = ringline.now() - t0
      local c0 = s:count()
      s:post()
      return { a, b, dt, c0, s:count(), s:wait(0) }
    end)
    assert.are.same({ nil, "timeout" }, { r[1], r[2] })
    assert.is_true(r[3] >= 0.03 and r[3] < 5)
    assert.are.same({ 0, 1, true }, { r[4], r[5], r[6] })
  end)

  it("a canceled waiter leaves the queue: the next post goes to the next waiter", function()
    local r = run(function()
      local s = ringline.semaphore(0)
      local a = ringline.spawn(function() return s:wait() end)
      local b = ringline.spawn(function() return s:wait() end)
      ringline.sleep(0)
      a:cancel()
      local ra = { a:join() }
      s:post()
      local rb = { b:join() }
      return { ra, rb, s:count() }
    end)
    assert.are.same({ { true, nil, "canceled" }, { true, true }, 0 }, r)
  end)

  it("under contention: never more than n holders, every wait served", function()
    local r = run(function()
      local s = ringline.semaphore(3)
      local inside, max, done = 0, 0, 0
      local ts = {}
      for i = 1, 100 do
        ts[i] = ringline.spawn(function()
          for _ = 1, 10 do
            assert(s:wait(5))
            inside = inside + 1
            if inside > max then max = inside end
            ringline.sleep(0)                  -- hold it across a yield
            inside = inside - 1
            done = done + 1
            s:post()
          end
        end)
      end
      for i = 1, 100 do assert(ts[i]:join()) end
      return { max, done, s:count() }
    end)
    assert.are.same({ 3, 1000, 3 }, r)
  end)

  it("raises on misuse", function()
    assert.has_error(function() ringline.semaphore(-1) end)
    assert.has_error(function() ringline.semaphore(1.5) end)
    local s = ringline.semaphore(1)
    assert.has_error(function() s:post(0) end)
    assert.has_error(function() s:wait(-1) end)
    assert.has_error(function() s:wait("x") end)
  end)
end)

describe("ringline.channel", function()
  it("buffers up to its capacity, first in first out", function()
    local r = run(function()
      local ch = ringline.channel(3)
      local puts = { ch:put(1), ch:put("two"), ch:put({ 3 }), ch:put(4, 0) }
      local gets = { ch:get(), ch:get(), ch:get()[1] }
      return { puts, gets, ch:count() }
    end)
    assert.are.same({ { true, true, true, nil, "timeout" }, { 1, "two", 3 }, 0 }, r)
  end)

  it("a put waits while full; the waiting putters' values keep their order", function()
    local r = run(function()
      local ch = ringline.channel(1)
      ch:put("a")
      local p1 = ringline.spawn(function() return ch:put("b") end)
      local p2 = ringline.spawn(function() return ch:put("c") end)
      ringline.sleep(0)
      local st = p1:status()
      local got = { ch:get(), ch:get(), ch:get() }
      return { st, got, { p1:join() }, { p2:join() } }
    end)
    assert.are.same({ "parked", { "a", "b", "c" }, { true, true }, { true, true } }, r)
  end)

  it("unbuffered (capacity 0): put and get meet", function()
    local r = run(function()
      local ch = ringline.channel(0)
      local p = ringline.spawn(function() return ch:put("x") end)
      ringline.sleep(0)
      local st = p:status()                   -- waits for a getter
      local v = ch:get()
      local g = ringline.spawn(function() return ch:get() end)
      ringline.sleep(0)
      assert(ch:put("y"))                     -- a getter waits: handed over at once
      return { st, v, { p:join() }, { g:join() }, { ch:put("z", 0) } }
    end)
    assert.are.same({ "parked", "x", { true, true }, { true, "y" }, { nil, "timeout" } }, r)
  end)

  it("get(timeout) on an empty channel: nil, \"timeout\", nothing lost after", function()
    local r = run(function()
      local ch = ringline.channel(2)
      local t0 = ringline.now()
      local a, b = ch:get(0.03)
      local dt = ringline.now() - t0
      ch:put("later")
      return { a, b, dt, ch:get(0) }
    end)
    assert.are.same({ nil, "timeout" }, { r[1], r[2] })
    assert.is_true(r[3] >= 0.03 and r[3] < 5)
    assert.are.equal("later", r[4])
  end)

  it("close: waiting getters and putters get \"closed\"; buffered values still come out", function()
    local r = run(function()
      local full = ringline.channel(1)
      full:put("kept")
      local putter = ringline.spawn(function() return full:put("dropped") end)
      local empty = ringline.channel(1)
      local getter = ringline.spawn(function() return empty:get() end)
      ringline.sleep(0)
      local c1 = { full:close() }
      local c2 = { full:close() }
      empty:close()
      return { { putter:join() }, { getter:join() }, c1, c2, { full:get() }, { full:get() },
               { full:put("x") } }
    end)
    assert.are.same({ { true, nil, "closed" }, { true, nil, "closed" }, { true }, { nil, "closed" },
                      { "kept" }, { nil, "closed" }, { nil, "closed" } }, r)
  end)

  it("canceled getters and putters leave the queues", function()
    local r = run(function()
      local ch = ringline.channel(0)
      local g1 = ringline.spawn(function() return ch:get() end)
      local g2 = ringline.spawn(function() return ch:get() end)
      ringline.sleep(0)
      g1:cancel()
      assert(ch:put("for g2"))                 -- g1 is gone: g2 gets it
      local full = ringline.channel(1)
      full:put(1)
      local p1 = ringline.spawn(function() return full:put("canceled") end)
      local p2 = ringline.spawn(function() return full:put("kept") end)
      ringline.sleep(0)
      p1:cancel()
      ringline.sleep(0)
      return { { g1:join() }, { g2:join() }, { p1:join() }, full:get(), full:get(), { p2:join() } }
    end)
    assert.are.same({ { true, nil, "canceled" }, { true, "for g2" }, { true, nil, "canceled" }, 1, "kept",
                      { true, true } }, r)
  end)

  it("under contention: every value delivered once; each consumer sees each producer's in order", function()
    local P, C, N = 10, 5, 1000
    local r = run(function()
      local ch = ringline.channel(16)
      local seen, bad, got = {}, 0, 0
      local producers = {}
      for p = 1, P do
        producers[p] = ringline.spawn(function()
          for i = 1, N do
            assert(ch:put(p * 1000000 + i, 5))
            if i % 7 == 0 then ringline.sleep(0) end
          end
        end)
      end
      local consumers = {}
      for c = 1, C do
        consumers[c] = ringline.spawn(function()
          local last = {}
          while true do
            local v = ch:get(5)
            if not v then return end
            local p, i = math.floor(v / 1000000), v % 1000000
            if seen[v] or i <= (last[p] or 0) then bad = bad + 1 end
            seen[v], last[p] = true, i
            got = got + 1
            if got % 11 == 0 then ringline.sleep(0) end
          end
        end)
      end
      for p = 1, P do producers[p]:join() end
      ch:close()
      for c = 1, C do consumers[c]:join() end
      return { got, bad }
    end)
    assert.are.same({ P * N, 0 }, r)
  end)

  it("raises on misuse", function()
    assert.has_error(function() ringline.channel(-1) end)
    local ch = ringline.channel(1)
    assert.has_error(function() ch:put(nil) end)
    assert.has_error(function() ch:get(-1) end)
  end)
end)

describe("task:cancel interrupts every kind of blocked call", function()
  -- Each case: setup() -> the blocking call (run in its own task), and a
  -- cleanup. The task must be parked in the call; the cancel ends it with
  -- nil, "canceled" at once (well before any timeout in the call).
  local cases = {
    { "receive", function(ctx)
      ctx.lst, ctx.port = support.server(function(c) c:receive("*a") end)
      ctx.c = support.connect(ctx.port)
      return function() return ctx.c:receive("*l") end
    end, function(ctx) ctx.c:close(); ctx.lst:close() end },
    { "send", function(ctx)
      ctx.hold = support.event()
      ctx.lst, ctx.port = support.server(function() ctx.hold.wait() end)
      ctx.c = support.connect(ctx.port)
      local big = ("s"):rep(32 * 1048576)     -- more than the socket buffers hold
      return function() return ctx.c:send(big) end
    end, function(ctx) ctx.hold.set(); ctx.c:close("reset"); ctx.lst:close() end },
    { "connect", function(ctx)
      ctx.port, ctx.close_stuck = support.stuck_listener()
      ctx.held = support.fill_queue(ctx.port)
      return function() return ringline.connect("127.0.0.1", ctx.port, { timeout = 30 }) end
    end, function(ctx) for _, c in ipairs(ctx.held) do c:close() end; ctx.close_stuck() end },
    { "sleep", function()
      return function() return ringline.sleep(30) end
    end },
    { "join", function(ctx)
      ctx.t = ringline.spawn(function() ringline.sleep(30) end)
      return function() return ctx.t:join(30) end
    end, function(ctx) ctx.t:cancel() end },
    { "semaphore wait", function()
      local s = ringline.semaphore(0)
      return function() return s:wait(30) end
    end },
    { "channel get", function()
      local ch = ringline.channel(1)
      return function() return ch:get(30) end
    end },
    { "channel put", function()
      local ch = ringline.channel(1)
      ch:put(1)
      return function() return ch:put(2, 30) end
    end },
    { "udp receive", function(ctx)
      ctx.u = ringline.udp()
      assert(ctx.u:bind("127.0.0.1", 0))
      ctx.u:settimeout(30000)
      return function() return ctx.u:receive() end
    end, function(ctx) ctx.u:close() end },
  }
  for _, case in ipairs(cases) do
    it(case[1], function()
      local r = run(function()
        local ctx = {}
        local call = case[2](ctx)
        local t = ringline.spawn(call)
        ringline.sleep(0)
        local st = t:status()
        local t0 = ringline.now()
        t:cancel()
        local res = { t:join() }
        local dt = ringline.now() - t0
        if case[3] then case[3](ctx) end
        return { st, res, dt }
      end)
      assert.are.equal("parked", r[1])
      assert.are.same({ true, nil, "canceled" }, r[2])
      assert.is_true(r[3] < 5, tostring(r[3]))
    end)
  end
end)
