-- Hostile peers against the send slab (issue 17, review of defect 7): the
-- slab's entries are few (send_slab_entries) and zero-copy sends wait for
-- one, so nothing may hold an entry without bound.
--
-- - A peer that never reads, whose handler's zero-copy send timed out and
--   returned: the graceful close must not keep the entry queued forever
--   (it is reset after close_timeout without progress), or a few hundred
--   such peers deny every zero-copy send of the worker.
-- - A send waiting for an entry whose own peer resets with nothing of its
--   connection in flight: it hears the reset at once, not at its timeout.
local ffi = require "ffi"
local ringline = require "ringline"
local support = require "support"

local run, server, connect = support.run, support.server, support.connect

local MiB = 1048576

local function idle_metrics()
  local ok = support.eventually(function()
    local m = ringline.metrics()
    return m.slab_used == 0 and m.guards_outstanding == 0 and m.send_bytes_queued == 0
      and m.conns_open == 0
  end)
  local m = ringline.metrics()
  assert(ok, ("not idle: slab_used %d, guards_outstanding %d, send_bytes_queued %d, "
    .. "conns_open %d"):format(m.slab_used, m.guards_outstanding, m.send_bytes_queued,
    m.conns_open))
end

describe("hostile: the send slab", function()
  it("a graceful close to a peer that never reads is reset after close_timeout", function()
    local BODY, SMALL = 16 * MiB, 65536
    local body = support.pattern(SMALL, 11)
    local res = run(function()
      local r = assert(ringline.region(BODY))
      ffi.copy(r:ptr(), body, SMALL)
      local out = {}
      local holder_done = support.event()
      local lst, port = server(function(c)
        local who = assert(c:receive("*l"))
        if who == "holder" then
          -- the only entry; its peer never reads: the send times out and
          -- the handler returns, closing gracefully with the entry queued
          c:settimeout(200)
          out.holder = { c:send(r:slice(0, BODY)) }
          holder_done.set()
        else
          c:settimeout(5000)
          out.second = { c:send(r:slice(0, SMALL)) }
        end
      end)
      local holder = connect(port)
      holder:settimeout(20000)
      assert(holder:send("holder\n"))
      holder_done.wait()
      local second = connect(port)
      second:settimeout(5000)
      assert(second:send("second\n"))
      out.got = { second:receive(SMALL) }
      second:close()
      out.resets = ringline.metrics().close_resets
      holder:close()
      lst:close()
      idle_metrics()
      assert.is_true(r:free())
      return out
    end, { timeout = 30, send_slab_entries = 1, close_timeout = 300 })
    assert.are.same({ nil, "timeout" }, res.holder)
    assert.are.same({ SMALL }, res.second)
    assert.is_true(res.got[1] == body, "the second peer got " .. tostring(res.got[2] or #res.got[1]))
    assert.are.equal(1, res.resets)
  end)

  it("a send waiting for an entry hears its peer's reset at once", function()
    local BODY = 16 * MiB
    local res = run(function()
      local r = assert(ringline.region(BODY))
      local out = {}
      local waiter_done = support.event()
      local lst, port = server(function(c)
        local who = assert(c:receive("*l"))
        if who == "holder" then
          c:settimeout(20000)
          c:send(r:slice(0, BODY))   -- holds the only entry until its peer reads
        else
          c:settimeout(10000)
          local t0 = ringline.now()
          out.waiter = { c:send(r:slice(0, 65536)) }
          out.waited = ringline.now() - t0
          waiter_done.set()
        end
      end)
      local holder = connect(port)
      holder:settimeout(20000)
      assert(holder:send("holder\n"))
      assert(support.eventually(function() return ringline.metrics().slab_used == 1 end))
      local waits = ringline.metrics().slab_waits
      local waiter = connect(port)
      assert(waiter:send("waiter\n"))
      assert(support.eventually(function() return ringline.metrics().slab_waits > waits end))
      waiter:close("reset")
      waiter_done.wait()
      assert.are.equal(BODY, #assert(holder:receive(BODY)))
      holder:close()
      lst:close()
      idle_metrics()
      assert.is_true(r:free())
      return out
    end, { timeout = 30, send_slab_entries = 1 })
    assert.are.same({ nil, "connection reset by peer" }, res.waiter)
    assert.is_true(res.waited < 5, ("woken after %.3f s"):format(res.waited))
  end)
end)
