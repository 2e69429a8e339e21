-- ngx.sleep, ngx.timer, ngx.thread, ngx.worker, ngx.exit outside a request
-- and ngx.get_phase (ringline.ngx.tasks).
require "ringline.ngx"
local ringline = require "ringline"
local support = require "support"

local run = support.run

describe("ngx tasks", function()
  it("ngx.timer.at/every: premature first, args, running_count, pending_count", function()
    local r = { run(function()
      local seen = {}
      local sem = require("ngx.semaphore").new(0)
      assert.are.equal(true, ngx.timer.at(0, function(premature, a, b)
        seen[#seen + 1] = { premature, a, b, ngx.timer.running_count(), ngx.get_phase() }
        sem:post()
      end, "x", 2))
      local pending = ngx.timer.pending_count()
      assert(sem:wait(1))
      local n = 0
      assert(ngx.timer.every(0.001, function(premature)
        n = n + 1
        if n == 3 then sem:post() end
      end))
      assert(sem:wait(1))
      local _, err = pcall(ngx.timer.at, 1, "nope")
      return seen, pending, n >= 3, ngx.timer.running_count(), err:match("ngx%.timer%.at") ~= nil
    end) }
    assert.are.same({ { { false, "x", 2, 1, "timer" } }, 1, true, 0, true }, r)
  end)

  it("a pending timer runs premature when the run ends", function()
    local premature
    run(function()
      ngx.timer.at(60, function(p) premature = p end)
    end)
    assert.is_true(premature)
  end)

  it("ngx.exit in a timer or a thread ends it quietly", function()
    local r = { run(function()
      local after = false
      local sem = require("ngx.semaphore").new(0)
      ngx.timer.at(0, function()
        sem:post()
        ngx.exit(0)
        after = true
      end)
      assert(sem:wait(1))
      local t = ngx.thread.spawn(function() ngx.exit(0) return "no" end)
      local ok, v = ngx.thread.wait(t)
      ngx.sleep(0)
      return after, ok, v
    end) }
    assert.are.same({ false, true, nil }, r)
  end)

  it("ngx.thread.spawn/wait/kill", function()
    local r = { run(function()
      local t1 = ngx.thread.spawn(function(a) ngx.sleep(0.001) return a, "b" end, "a")
      local t2 = ngx.thread.spawn(function() error("bad") end)
      local out = { ngx.thread.wait(t1) }
      local ok, err = ngx.thread.wait(t2)
      out[#out + 1] = ok
      out[#out + 1] = tostring(err):match("bad") ~= nil
      local reached = false
      local k = ngx.thread.spawn(function()
        ngx.sleep(30)
        reached = true
      end)
      ngx.sleep(0)
      out[#out + 1] = ngx.thread.kill(k)
      out[#out + 1] = ngx.thread.wait(k)
      out[#out + 1] = reached
      out[#out + 1] = select(2, ngx.thread.kill(k))
      return out
    end, { errors_ok = true }) }
    assert.are.same({ { true, "a", "b", false, true, true, true, false, "already terminated" } }, r)
  end)

  it("ngx.thread.spawn runs the new thread until it waits before returning, as OpenResty", function()
    local r = { run(function()
      local order = {}
      local t = ngx.thread.spawn(function()
        order[#order + 1] = "child"
        ngx.sleep(0.001)
        order[#order + 1] = "child after wait"
      end)
      order[#order + 1] = "parent"
      ngx.thread.wait(t)
      -- a cancel that arrives during that yield is not lost
      local self = ringline.current()
      local t2 = ngx.thread.spawn(function() self:cancel() end)
      local _, why = ringline.sleep(5)
      ngx.thread.wait(t2)
      return order, why
    end) }
    assert.are.same({ { "child", "parent", "child after wait" }, "canceled" }, r)
  end)

  it("ngx.worker and ngx.get_phase", function()
    local r = { run(function()
      return ngx.worker.id(), ngx.worker.count(), ngx.worker.pid() > 0, ngx.worker.exiting(),
             ngx.get_phase()
    end) }
    assert.are.same({ 0, 1, true, false, "timer" }, r)
    assert.are.equal("init", ngx.get_phase())
  end)

  it("ngx.sleep sleeps at least that long", function()
    local r = { run(function()
      local t0 = ringline.now()
      ngx.sleep(0.02)
      return ringline.now() - t0 >= 0.019
    end) }
    assert.are.same({ true }, r)
    assert.has_error(function() ngx.sleep(-1) end, "ngx.sleep: expected seconds >= 0")
  end)
end)
