-- Zero copy for big Lua strings (issue 15): a string of at least
-- zc_threshold bytes sent alone, inside an array or among other arguments
-- is a guarded part (RL_PART_PINNED) sent with SENDMSG_ZC, anchored until
-- the core releases its guard after the kernel's notification - the same
-- path and guarantees as a region slice (region_spec.lua).
local ringline = require "ringline"
local support = require "support"
local region = require "ringline.region"
local sched = require "ringline.sched"

local run, server, connect = support.run, support.server, support.connect

local KiB, MiB = 1024, 1048576

local function run_s(fn, opts)
  local S
  local res = { run(function()
    S = sched.state()
    return fn()
  end, opts) }
  return S, unpack(res)
end

local function idle_metrics()
  local ok = support.eventually(function()
    local m = ringline.metrics()
    return m.slab_used == 0 and m.guards_outstanding == 0 and m.send_bytes_queued == 0
      and m.conns_open == 0
  end)
  local m = ringline.metrics()
  assert(ok, ("not idle: slab_used %d, guards_outstanding %d, send_bytes_queued %d, conns_open %d")
    :format(m.slab_used, m.guards_outstanding, m.send_bytes_queued, m.conns_open))
end

local function all_released_once(S)
  local st = region.stats(S)
  assert.are.equal(0, st.unknown)
  assert.are.equal(0, st.out)
  assert.are.equal(0, st.dropped)
  assert.are.equal(st.anchored, st.released)
  return st
end

describe("big Lua strings", function()
  it("go zero-copy alone, in arrays and among arguments: 16 KiB, 64 KiB, 1 MiB byte-exact", function()
    local sizes = { 16 * KiB, 64 * KiB, MiB }
    local bodies = {}
    for i = 1, #sizes do bodies[i] = support.pattern(sizes[i], 40 + i) end
    local deltas = {}
    local S = run_s(function()
      local lst, port = server(function(c)
        for i = 1, #sizes do
          local b = bodies[i]
          local z0 = ringline.metrics().zc_sends
          local a0 = region.stats(sched.state()).anchored
          assert.are.equal(#b, c:send(b))                       -- alone
          assert.are.equal(#b + 3, c:send({ "<", { b }, ">" }, "\n"))  -- in arrays
          assert.are.equal(#b + 4, c:send("hd:", b, "\n"))       -- among arguments
          assert(c:flush())
          deltas[i] = { ringline.metrics().zc_sends - z0 > 0,
                        region.stats(sched.state()).anchored - a0 }
        end
      end)
      local c = connect(port)
      c:settimeout(20000)
      for i = 1, #sizes do
        local b = bodies[i]
        local want = b .. "<" .. b .. ">\n" .. "hd:" .. b .. "\n"
        local got = assert(c:receive(#want))
        assert.is_true(got == want, "bytes of size " .. sizes[i] .. " differ")
      end
      c:close()
      lst:close()
      idle_metrics()
    end, { timeout = 30 })
    for i = 1, #sizes do
      assert.are.same({ true, 3 }, deltas[i], "size " .. sizes[i])
    end
    assert.are.equal(3 * #sizes, all_released_once(S).anchored)
  end)

  it("stay anchored until the guard's release, with every Lua reference dropped and a full GC", function()
    -- The send is only queued when conn:send returns: the kernel reads the
    -- string after the next poll submits it. Meanwhile the task drops its
    -- last reference, runs a full collection and allocates strings of the
    -- same size (which would take the string's memory if it were freed):
    -- the peer must still get the exact bytes, and the anchor must hold
    -- the string until the release, and not after.
    local out = {}
    run(function()
      local lst, port = server(function(c)
        local function go()
          local s = support.pattern(32 * KiB, 77) .. "fresh"
          assert(c:send(s))       -- below the high watermark: returns at once
        end
        go()
        collectgarbage()
        collectgarbage()
        local junk = {}
        for i = 1, 64 do junk[i] = string.rep(string.char(i), 32 * KiB + 5) end
        local g = sched.state().rguards
        local _, anchor = next(g.obj)
        out.out = region.stats(sched.state()).out
        out.anchor = anchor == support.pattern(32 * KiB, 77) .. "fresh"
        anchor = nil -- luacheck: ignore
        assert(c:flush())          -- waits for the release
        out.after = next(g.obj) == nil
        out.junk = #junk
      end)
      local c = connect(port)
      c:settimeout(10000)
      -- in pieces: a received string equal to the one the server sent would
      -- be the same (interned) object and keep it alive
      assert.is_true(assert(c:receive(32 * KiB)) == support.pattern(32 * KiB, 77))
      assert.are.equal("fresh", assert(c:receive(5)))
      c:close()
      lst:close()
      idle_metrics()
    end)
    assert.are.equal(1, out.out)
    assert.is_true(out.anchor, "the guard's anchor is not the string sent")
    assert.is_true(out.after, "the anchor outlived the guard's release")
    assert.are.equal(64, out.junk)
  end)

  it("below zc_threshold (or with it raised) are copied as before", function()
    local d
    run(function()
      local lst, port = server(function(c)
        local z0 = ringline.metrics().zc_sends
        assert(c:send(support.pattern(64 * KiB, 5)))
        assert(c:flush())
        d = ringline.metrics().zc_sends - z0
      end)
      local c = connect(port)
      c:settimeout(10000)
      assert.is_true(assert(c:receive(64 * KiB)) == support.pattern(64 * KiB, 5))
      c:close()
      lst:close()
      idle_metrics()
    end, { zc_threshold = 128 * KiB })
    assert.are.equal(0, d)
  end)
end)
