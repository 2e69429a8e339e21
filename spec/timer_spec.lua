-- Time: many concurrent sleepers, ringline.timer.at / every, cancel, and
-- premature runs at the end of a run.
local ffi = require "ffi"
local ringline = require "ringline"
local rlog = require "ringline.log"
local support = require "support"

local run = support.run

pcall(ffi.cdef, [[
  struct ringline_spec_ts { long sec; long nsec; };
  int ringline_spec_clock_gettime(int clk, struct ringline_spec_ts *ts) __asm__("clock_gettime");
]])
local ts = ffi.new("struct ringline_spec_ts")
-- CLOCK_MONOTONIC, the core's clock (ringline.now() is its value cached at the last poll).
local function mono()
  ffi.C.ringline_spec_clock_gettime(1, ts)
  return tonumber(ts.sec) + tonumber(ts.nsec) * 1e-9
end

describe("sleep", function()
  it("10k concurrent sleepers wake in deadline order, none early", function()
    local N = 10000
    local r = run(function()
      -- The core takes its deadline (clock + delay) inside sleep, at a
      -- moment we cannot read; but the sleepers run one after the other in
      -- one round, so it lies between this task's clock read (lo) and the
      -- next one's. That bounds each deadline however the machine stalls.
      local order, lo, d, woke, early = {}, {}, {}, {}, 0
      for i = 1, N + 1 do
        ringline.spawn(function()
          local k = #order + 1
          order[k] = i
          lo[i] = mono()
          if i > N then return end              -- the last read, bounding sleeper N
          -- 97 distinct delays spread over 0.2 s, interleaved across tasks
          d[i] = (i * 37 % 97 + 1) * 0.002
          ringline.sleep(d[i])
          if ringline.now() < lo[i] + d[i] then early = early + 1 end
          woke[#woke + 1] = i
        end)
      end
      while #woke < N do ringline.sleep(0.01) end
      local hi = {}
      for k = 1, N do hi[order[k]] = lo[order[k + 1]] end
      return { woke = woke, lo = lo, hi = hi, d = d, early = early,
               timers = ringline.metrics().timers_active }
    end)
    assert.are.equal(N, #r.woke)
    assert.are.equal(0, r.early)
    local inversions = 0
    for k = 2, N do
      -- a woke before b: a's deadline cannot be later than b's
      local a, b = r.woke[k - 1], r.woke[k]
      if r.lo[a] + r.d[a] > r.hi[b] + r.d[b] then inversions = inversions + 1 end
    end
    assert.are.equal(0, inversions)
    assert.are.equal(0, r.timers)
  end)
end)

describe("max_timers", function()
  it("a timer past it fails with \"too many timers\"; one canceled makes room", function()
    local r = run(function()
      local hs, err = {}, nil
      for _ = 1, 10 do           -- the run's own deadline holds one as well
        local h, e = ringline.timer.at(10, function() end)
        if not h then err = e break end
        hs[#hs + 1] = h
      end
      local ok, serr = ringline.sleep(0.5)     -- a sleep needs a timer too
      hs[#hs]:cancel()
      local again = ringline.timer.at(10, function() end)
      for _, h in ipairs(hs) do h:cancel() end
      if again then again:cancel() end
      return { #hs, err, ok, serr, again ~= nil }
    end, { max_timers = 4 })
    assert.is_true(r[1] >= 1 and r[1] <= 4, tostring(r[1]))
    assert.are.same({ "too many timers", nil, "too many timers", true }, { r[2], r[3], r[4], r[5] })
  end)
end)

describe("ringline.timer.at", function()
  it("runs fn(false, ...) in a new task after the delay", function()
    local r = run(function()
      local got = support.event()
      local main = ringline.current()
      local t0 = ringline.now()
      local h = ringline.timer.at(0.03, function(premature, a, b)
        got.set({ premature, a, b, ringline.current() ~= main and ringline.current() ~= nil,
                  ringline.now() - t0 })
      end, "a", nil)
      local res = got.wait()
      return { res, h:pending(), h:cancel(), ringline.timer.pending_count() }
    end)
    local res = r[1]
    assert.are.same({ false, "a", nil, true }, { res[1], res[2], res[3], res[4] })
    assert.is_true(res[5] >= 0.03 and res[5] < 5, tostring(res[5]))
    assert.are.same({ false, false, 0 }, { r[2], r[3], r[4] })
  end)

  it("a canceled timer never runs; cancel is true once", function()
    local r = run(function()
      local ran = false
      local h = ringline.timer.at(0.01, function() ran = true end)
      local c1, c2 = h:cancel(), h:cancel()
      ringline.sleep(0.05)
      return { ran, c1, c2, ringline.metrics().timers_active }
    end)
    assert.are.same({ false, true, false, 0 }, r)
  end)

  it("delay 0 runs after the current task yields; timers fire in due order", function()
    local r = run(function()
      local order = {}
      ringline.timer.at(0.02, function() order[#order + 1] = "b" end)
      ringline.timer.at(0.01, function() order[#order + 1] = "a" end)
      ringline.timer.at(0, function() order[#order + 1] = "zero" end)
      order[#order + 1] = "main"
      ringline.sleep(0.06)
      return order
    end)
    assert.are.same({ "main", "zero", "a", "b" }, r)
  end)

  it("an error in fn goes to on_error and costs only that run", function()
    local errs = {}
    local r = ringline.run({ timeout = 10, on_error = function(e) errs[#errs + 1] = e end }, function()
      local done = support.event()
      ringline.timer.at(0, function() error("tick failed", 0) end)
      ringline.timer.at(0.01, function() done.set("next ran") end)
      return done.wait()
    end)
    assert.are.equal("next ran", r)
    assert.are.same({ "tick failed" }, errs)
  end)

  it("raises on misuse", function()
    local r = run(function()
      return { pcall(ringline.timer.at, -1, function() end), pcall(ringline.timer.at, 0, "f"),
               pcall(ringline.timer.at, 0 / 0, function() end), pcall(ringline.timer.every, 0, function() end),
               pcall(ringline.timer.every, "1", function() end) }
    end)
    for i = 1, #r, 2 do assert.is_false(r[i]) end
    assert.has_error(function() ringline.timer.at(1, function() end) end)
  end)
end)

describe("ringline.timer.every", function()
  it("runs every interval on a fixed schedule until canceled", function()
    local r = run(function()
      local times = {}
      local t0 = ringline.now()
      local h
      local enough = support.event()
      h = ringline.timer.every(0.01, function(premature, tag)
        times[#times + 1] = { premature, tag, ringline.now() - t0 }
        if #times == 5 then enough.set() end
      end, "tag")
      enough.wait()
      local c = h:cancel()
      local n = #times
      ringline.sleep(0.05)
      return { times = times, n = n, after = #times, cancel = c, pending = h:pending() }
    end)
    -- A late loop may run a due run in the same batch as the fifth, before
    -- this task resumes to cancel: at least five, and none after the cancel.
    assert.is_true(r.n >= 5, tostring(r.n))
    assert.are.equal(r.n, r.after)          -- nothing ran after the cancel
    assert.is_true(r.cancel)
    assert.is_false(r.pending)
    for i, v in ipairs(r.times) do
      assert.are.same({ false, "tag" }, { v[1], v[2] })
      assert.is_true(v[3] >= 0.01 * i - 0.001, ("run %d at %.4f"):format(i, v[3]))
    end
    assert.is_true(r.times[5][3] < 5)
  end)

  it("cancel from inside its own run stops it", function()
    local r = run(function()
      local n = 0
      local h
      h = ringline.timer.every(0.005, function()
        n = n + 1
        if n == 3 then h:cancel() end
      end)
      ringline.sleep(0.08)
      return { n, ringline.timer.pending_count() }
    end)
    assert.are.same({ 3, 0 }, r)
  end)
end)

describe("the end of a run", function()
  it("pending timers do not keep it alive: each runs once more with premature = true", function()
    local log = {}
    local t0 = os.time()
    ringline.run({ timeout = 10 }, function()
      ringline.timer.at(100, function(premature, x)
        log[#log + 1] = { "at", premature, x, (ringline.timer.at(0, function() end)) }
      end, "x")
      ringline.timer.every(50, function(premature)
        log[#log + 1] = { "every", premature, select(2, ringline.timer.at(0, function() end)) }
      end)
      local gone = ringline.timer.at(100, function() log[#log + 1] = { "canceled one ran" } end)
      gone:cancel()
      ringline.timer.at(0, function(premature) log[#log + 1] = { "due", premature } end)
      ringline.sleep(0.01)
    end)
    assert.is_true(os.time() - t0 < 5)
    assert.are.same({ { "due", false }, { "every", true, "process exiting" }, { "at", true, "x", nil } }, log)
  end)

  it("premature runs may still do I/O, and the run waits for them", function()
    local r = {}
    ringline.run({ timeout = 10 }, function()
      -- (an open listener would keep the run alive: UDP talks to itself)
      ringline.timer.at(100, function(premature)
        local u = ringline.udp()
        assert(u:bind("127.0.0.1", 0))
        local _, port = u:getsockname()
        assert(u:sendto("127.0.0.1", port, "bye"))
        ringline.sleep(0.01)
        r[1], r[2] = premature, u:receive()
      end)
    end)
    assert.are.same({ true, "bye" }, r)
  end)

  it("a listener keeps the run alive; its close lets the premature runs start", function()
    local log = {}
    ringline.run({ timeout = 10 }, function()
      local lst = assert(ringline.listen("127.0.0.1:0", function() end))
      ringline.timer.at(100, function(premature) log[#log + 1] = { "timer", premature } end)
      ringline.timer.at(0.02, function()
        log[#log + 1] = { "closing" }
        lst:close()
      end)
    end)
    assert.are.same({ { "closing" }, { "timer", true } }, log)
  end)

  it("are not run premature when the run fails", function()
    local ran = false
    local old = rlog.set_sink(function() end)
    local ok = pcall(ringline.run, function()
      ringline.timer.at(100, function() ran = true end)
      error("main failed")
    end)
    rlog.set_sink(old)
    assert.is_false(ok)
    assert.is_false(ran)
  end)
end)

describe("100k timers", function()
  it("are cheap to arm and cancel, and leave nothing behind", function()
    local N = 100000
    local r = run(function()
      local base = ringline.metrics().timers_active
      local hs = {}
      local t0 = mono()
      local fn = function() end
      for i = 1, N do hs[i] = ringline.timer.at(1000 + i % 100, fn) end
      local armed = mono() - t0
      local active = ringline.metrics().timers_active - base
      ringline.sleep(0.001)                  -- the loop runs with them pending
      local pending = ringline.timer.pending_count()
      for i = 1, N do hs[i]:cancel() end
      return { active = active, pending = pending, armed = armed,
               after = ringline.metrics().timers_active - base }
    end)
    assert.are.equal(N, r.active)
    assert.are.equal(N, r.pending)
    assert.are.equal(0, r.after)
    assert.is_true(r.armed < 5, "arming 100k timers took " .. r.armed .. " s")
  end)
end)

describe("deadlines kept lazily across waits", function()
  it("a later, longer deadline is not cut short by the timer of an earlier one", function()
    local r = run(function()
      local lst, port = support.server(function(c) c:receive("*a") end)
      local c = support.connect(port)
      -- a short timed wait that ends early (its timer stays armed, lazily)
      local sem = ringline.semaphore(0)
      ringline.spawn(function() sem:post(1) end)
      assert(sem:wait(0.05))
      -- then a longer one: the short timer fires first and must re-arm
      local t0 = ringline.now()
      local ok, err = sem:wait(0.3)
      local long = ringline.now() - t0
      -- then a shorter one than what is armed: it must not wait for it
      c:settimeout(5000)
      c:settimeout(40)
      t0 = ringline.now()
      local d, rerr = c:receive(1)
      local short = ringline.now() - t0
      c:close()
      lst:close()
      return { ok, err, long, d, rerr, short }
    end)
    assert.are.same({ nil, "timeout" }, { r[1], r[2] })
    assert.is_true(r[3] >= 0.3 - 1e-3, ("timed out after %.3f s, not 0.3"):format(r[3]))
    assert.are.same({ nil, "timeout" }, { r[4], r[5] })
    assert.is_true(r[6] >= 0.04 - 1e-3 and r[6] < 3, ("%.3f s"):format(r[6]))
  end)

  it("a kept timer that fires outside a timed wait wakes nobody", function()
    local r = run(function()
      local sem = ringline.semaphore(0)
      ringline.spawn(function() sem:post(1) end)
      assert(sem:wait(0.02))            -- leaves a timer due in 0.02 s
      local waiter = ringline.spawn(function() return ringline.sleep(0.1) end)
      local t = ringline.spawn(function() ringline.sleep(0.08); sem:post(1) end)
      local ok, err = sem:wait()        -- no deadline: only the post may end it
      return { ok, err, (waiter:join()), (t:join()) }
    end)
    assert.are.same({ true, nil, true, true }, { r[1], r[2], r[3], r[4] })
  end)
end)
