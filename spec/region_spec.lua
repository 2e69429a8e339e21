-- Regions, slices and guarded sends (lua/ringline/region.lua and the
-- guarded path of conn:send / conn:flush), in-process: the server and its
-- clients are tasks of one ringline.run, the clients check every byte.
--
-- "Released exactly once" is checked from both sides: the core's gauges
-- (guards_outstanding, slab_used, rl_region_inflight) and the Lua anchors
-- (region.stats: every guard handed out came back as one RL_EV_GUARD for a
-- token that was outstanding, none left or dropped at teardown).
local ffi = require "ffi"
local ringline = require "ringline"
local support = require "support"
local region = require "ringline.region"
local sched = require "ringline.sched"
local C = require "ringline.lib"

local run, server, connect = support.run, support.server, support.connect

local MiB = 1048576

-- One deterministic byte stream, big enough for every test (made once).
local STREAM_LEN = 16 * MiB + 65536
local stream
local function bytes(off, n)
  if not stream then stream = support.pattern(STREAM_LEN, 11) end
  return stream:sub(off + 1, off + n)
end

-- A region holding bytes(0, size).
local function filled_region(size)
  local r = assert(ringline.region(size))
  if not stream then stream = support.pattern(STREAM_LEN, 11) end
  ffi.copy(r:ptr(), stream, size)
  return r
end

-- run(fn) that also returns the run's state (for region.stats after it).
local function run_s(fn, opts)
  local S
  local res = { run(function()
    S = sched.state()
    return fn()
  end, opts) }
  return S, unpack(res)
end

-- Every guard handed out in the run came back once, as an event.
local function all_released_once(S)
  local st = region.stats(S)
  assert.are.equal(0, st.unknown, "releases of tokens that were not outstanding")
  assert.are.equal(0, st.out, "guards still outstanding")
  assert.are.equal(0, st.dropped, "anchors dropped at teardown instead of released")
  assert.are.equal(st.anchored, st.released)
  return st
end

-- The core's gauges back at idle (they settle as closes complete).
local function idle_metrics()
  local ok = support.eventually(function()
    local m = ringline.metrics()
    return m.slab_used == 0 and m.guards_outstanding == 0 and m.send_bytes_queued == 0
      and m.conns_open == 0
  end)
  local m = ringline.metrics()
  assert(ok, ("not idle: slab_used %d, guards_outstanding %d, send_bytes_queued %d, conns_open %d")
    :format(m.slab_used, m.guards_outstanding, m.send_bytes_queued, m.conns_open))
  return m
end

local function has_zc()
  local ok = run(function()
    local S = sched.state()
    return bit.band(C.rl_worker_features(S.w or sched.start(S)), 8) ~= 0
  end)
  return ok
end

describe("ringline.region", function()
  it("is this kernel's zero-copy send available (the specs below rely on it)", function()
    assert.is_true(has_zc())
  end)

  it("maps a region: ptr, size, id, slices over it, free (idempotent)", function()
    run(function()
      local r = assert(ringline.region(10000))
      assert.are.equal("ringline.region", getmetatable(r).__name)
      assert.are.equal(10000, r:size())
      assert.is_true(ffi.istype("uint8_t *", r:ptr()))
      ffi.fill(r:ptr(), 10000, 65)
      assert.are.equal(0, r:inflight())
      local s = r:slice(100, 50)
      assert.are.equal("ringline.slice", getmetatable(s).__name)
      assert.are.equal(50, s:len())
      assert.are.equal(100, s:offset())
      assert.are.equal(r, s:region())
      assert.is_true(s:ptr() == r:ptr() + 100)
      assert.are.equal(("A"):rep(50), s:string())
      assert.are.equal(9900, r:slice(100):len())           -- the rest
      assert.are.equal(0, r:slice(10000, 0):len())          -- empty, at the end
      assert.are.equal(10000, r:slice(0, 10000):len())
      assert.is_true(r:free())
      assert.is_true(r:free())
      assert.are.equal(0, r:inflight())
      assert.matches("freed", tostring(r))
    end)
  end)

  it("raises on misuse: sizes, slice bounds, freed regions, dot calls", function()
    run(function()
      local function raises(pat, fn, ...)
        -- called from a Lua function of this file (not a tail call), which
        -- the error must name
        local ok, err = pcall(function(...) local v = fn(...) return v end, ...)
        assert.is_false(ok)
        assert.matches(pat, err)
        assert.matches("region_spec.lua:%d+:", err)          -- blames the caller
      end
      raises("size must be an integer", ringline.region, 0)
      raises("size must be an integer", ringline.region, -1)
      raises("size must be an integer", ringline.region, 1.5)
      raises("size must be an integer", ringline.region, "4096")
      local r = assert(ringline.region(4096))
      raises("offset must be an integer >= 0", r.slice, r, -1, 1)
      raises("offset must be an integer >= 0", r.slice, r, 0.5, 1)
      raises("offset must be an integer >= 0", r.slice, r, "0", 1)
      raises("length must be an integer >= 0", r.slice, r, 0, -1)
      raises("4096%+1 is outside the region's 4096 bytes", r.slice, r, 4096, 1)
      raises("0%+4097 is outside", r.slice, r, 0, 4097)
      raises("4000%+100 is outside", r.slice, r, 4000, 100)
      raises("not a region", r.slice, 0, 1)
      raises("not a region", r.ptr)
      local s = r:slice(0, 10)
      raises("not a slice", s.len)
      assert.is_true(r:free())
      raises("the region is freed", r.ptr, r)
      raises("the region is freed", r.slice, r, 0, 1)
      raises("its region is freed", s.ptr, s)
    end)
  end)

  it("the GC frees a dropped region, but not while a guard on it is out", function()
    run(function()
      local S = sched.state()
      local w = S.w or sched.start(S)
      local id
      do
        local r = assert(ringline.region(4096))
        id = r:id()
      end
      collectgarbage()
      collectgarbage()
      assert.are.equal(-2, C.rl_region_inflight(w, id))   -- -ENOENT: freed

      -- a guard held by a peer that has not read yet keeps it alive
      local go = support.event()
      local lst, port = server(function(c)
        local r = filled_region(4 * MiB)
        id = r:id()
        assert(c:send_nowait(r:slice(0, 4 * MiB)))
        r = nil                                            -- luacheck: ignore
        collectgarbage()
        collectgarbage()
        assert.is_true(C.rl_region_inflight(w, id) >= 1)  -- still there, guarded
        go.set()
        assert(c:flush())
      end)
      local c = connect(port)
      go.wait()
      assert.are.equal(bytes(0, 4 * MiB), c:receive(4 * MiB))
      c:close()
      lst:close()
      assert(support.eventually(function()
        collectgarbage()
        return C.rl_region_inflight(w, id) == -2
      end), "the region was not freed once its guards came back")
    end)
  end)
end)

describe("guarded sends", function()
  -- conn:send(header, slice, small, buffer, number, {nested slice}, big)
  -- for one body size; mixed_expect(n) is what the client must receive.
  local function mixed_parts(n)
    local k = n < 10 and n or 10
    return ("H %d\r\n"):format(n), k, bytes(100, 8192)   -- bytes(...): a string >= zc_threshold
  end

  local function mixed_expect(n)
    local head, k, big = mixed_parts(n)
    return head .. bytes(7, n) .. "tail<buf>42[" .. bytes(0, k) .. "]" .. big
  end

  local function mixed(c, r, n)
    local buf = require("string.buffer").new()
    buf:put("<buf>")
    local head, k, big = mixed_parts(n)
    local sent = assert(c:send(head, r:slice(7, n), "tail", buf, 42,
                               { "[", { r:slice(0, k) }, "]" }, big))
    assert.are.equal(#mixed_expect(n), sent)
  end

  it("are byte-exact with mixed parts, 1 B .. 16 MiB", function()
    local sizes = { 1, 100, 4095, 4096, 4097, 65536, 300000, MiB, 16 * MiB }
    local S = run_s(function()
      local r = filled_region(16 * MiB + 4096)
      local lst, port = server(function(c)
        for i = 1, #sizes do mixed(c, r, sizes[i]) end
        assert(c:flush())
      end)
      local c = connect(port)
      c:settimeout(20000)
      for i = 1, #sizes do
        local hdr = assert(c:receive("*l"))
        assert.are.equal("H " .. sizes[i] .. "\r", hdr .. "\r")
        local want = mixed_expect(sizes[i])
        local rest = #want - #hdr - 2
        local got = assert(c:receive(rest))
        assert.is_true(got == want:sub(#hdr + 3), "body of size " .. sizes[i] .. " differs")
      end
      c:close()
      lst:close()
      idle_metrics()
      assert.are.equal(0, r:inflight())
      assert.is_true(r:free())
    end, { timeout = 60, zc_threshold = 4096 })  -- the sizes straddle this threshold
    local st = all_released_once(S)
    -- per size: the body slice when >= 4096, the 8 KiB string always
    assert.are.equal(#sizes + 6, st.anchored)
  end)

  it("200 connections at once, each its own slice of one region", function()
    local N, BODY = 200, 20000
    local S = run_s(function()
      local r = filled_region(MiB)
      local lst, port = server(function(c)
        local line = assert(c:receive("*l"))
        local i = tonumber(line)
        assert(c:send("#" .. i .. "\n", r:slice(i * 1000, BODY), "\n"))
      end)
      local tasks = {}
      for i = 1, N do
        tasks[i] = ringline.spawn(function()
          local c = connect(port)
          c:settimeout(10000)
          assert(c:send(i .. "\n"))
          local got = assert(c:receive("*a"))
          c:close()
          return got == "#" .. i .. "\n" .. bytes(i * 1000, BODY) .. "\n"
        end)
      end
      local good = 0
      for i = 1, N do
        local ok, same = tasks[i]:join()
        assert(ok, same)
        if same then good = good + 1 end
      end
      assert.are.equal(N, good)
      lst:close()
      idle_metrics()
      assert.is_true(r:free())
    end, { timeout = 60 })
    local st = all_released_once(S)
    assert.are.equal(N, st.anchored)
  end)

  it("a peer that resets mid-send: the send fails, every guard still comes back once", function()
    local S, err, partial = run_s(function()
      local r = filled_region(16 * MiB)
      local done = support.event()
      local lst, port = server(function(c)
        -- eight guarded parts, far more than the socket buffers hold
        local parts = {}
        for i = 1, 8 do parts[i] = r:slice((i - 1) * 2 * MiB, 2 * MiB) end
        local ok, e = c:send(parts)
        if ok then ok, e = c:flush() end
        done.set({ ok, e })
      end)
      local c = connect(port)
      local got = assert(c:receive(100000))
      c:close("reset")
      local res = done.wait()
      lst:close()
      idle_metrics()
      assert.are.equal(0, r:inflight())
      assert.is_true(r:free())
      return res[2], got
    end, { timeout = 30 })
    assert.are.equal("connection reset by peer", err)
    assert.are.equal(bytes(0, 100000), partial)
    local st = all_released_once(S)
    assert.are.equal(8, st.anchored)
  end)

  it("close() with guarded sends in flight delivers them; close(\"reset\") releases them", function()
    local S = run_s(function()
      local r = filled_region(8 * MiB)
      local lst, port = server(function(c)
        local what = assert(c:receive("*l"))
        assert(c:send_nowait("go\n", r:slice(0, 8 * MiB)))
        assert.is_true(c.guards > 0)
        assert.is_true(r:inflight() > 0)
        if what == "graceful" then c:close() else c:close("reset") end
      end)
      -- graceful: every byte arrives, then EOF
      local c = connect(port)
      c:settimeout(10000)
      assert(c:send("graceful\n"))
      local all = assert(c:receive("*a"))
      assert.is_true(all == "go\n" .. bytes(0, 8 * MiB))
      c:close()
      -- reset: the peer sees a reset (maybe after some bytes), guards come back
      c = connect(port)
      c:settimeout(10000)
      assert(c:send("reset\n"))
      local data, err, part = c:receive("*a")
      assert.is_nil(data)
      assert.are.equal("connection reset by peer", err)
      assert.is_true(#part < 3 + 8 * MiB)
      c:close()
      lst:close()
      idle_metrics()
      assert.is_true(r:free())
    end, { timeout = 30 })
    local st = all_released_once(S)
    assert.are.equal(2, st.anchored)
  end)

  it("the end of a run releases guards still in flight (normal end: as events)", function()
    local r
    local S = run_s(function()
      r = filled_region(8 * MiB)
      local sent = support.event()
      local lst, port = server(function(c)
        assert(c:send_nowait(r:slice(0, 8 * MiB)))
        sent.set()
      end)
      local c = connect(port)
      sent.wait()
      assert.is_true(ringline.metrics().guards_outstanding > 0)
      lst:close()
      -- c stays open and unread: the run's drain closes it, the server's
      -- send then fails and its guard comes back before the worker goes
      return c
    end)
    local st = all_released_once(S)
    assert.are.equal(1, st.anchored)
    -- the worker is gone, and the region with it
    assert.is_true(r:free())
    assert.has_error(function() r:ptr() end)
  end)

  it("the end of a run releases guards still in flight (the main task raised)", function()
    local S
    local ok, err = pcall(run, function()
      S = sched.state()
      local r = filled_region(8 * MiB)
      local sent = support.event()
      local lst, port = server(function(c)
        assert(c:send_nowait(r:slice(0, 4 * MiB), r:slice(4 * MiB, 4 * MiB)))
        sent.set()
        c:receive("*a")
      end)
      local c = connect(port)
      sent.wait()
      assert.are.equal(2, region.stats(S).out)
      error("the script fails with " .. tostring(c) .. " " .. tostring(lst))
    end)
    assert.is_false(ok)
    assert.matches("the script fails", err)
    local st = region.stats(S)
    assert.are.equal(0, st.unknown)
    assert.are.equal(0, st.out)
    assert.are.equal(2, st.anchored)
    assert.are.equal(st.anchored, st.released + st.dropped)
  end)

  it("region:free says busy while guards are out, and frees after flush", function()
    local S, res = run_s(function()
      local r = filled_region(4 * MiB)
      local results = {}
      local lst, port = server(function(c)
        assert(c:send_nowait(r:slice(0, 4 * MiB)))
        results.inflight = r:inflight()
        results.free1 = { r:free() }
        assert(c:flush())
        results.guards = c.guards
        results.inflight2 = r:inflight()
        results.free2 = { r:free() }
        results.free3 = { r:free() }
      end)
      local c = connect(port)
      c:settimeout(10000)
      assert.is_true(assert(c:receive(4 * MiB)) == bytes(0, 4 * MiB))
      c:close()
      lst:close()
      return results
    end)
    all_released_once(S)
    assert.are.equal(1, res.inflight)
    assert.are.same({ nil, "busy" }, res.free1)
    assert.are.equal(0, res.guards)
    assert.are.equal(0, res.inflight2)
    assert.are.same({ true }, res.free2)
    assert.are.same({ true }, res.free3)
  end)

  it("flush waits for guards under its deadline: timeout while the peer does not read", function()
    local S, r1, r2 = run_s(function()
      local r = filled_region(8 * MiB)
      local reading = support.event()
      local out = {}
      local lst, port = server(function(c)
        assert(c:send_nowait(r:slice(0, 8 * MiB)))
        out[1] = { c:flush(50) }
        reading.set()
        out[2] = { c:flush(10000) }
      end)
      local c = connect(port)
      c:settimeout(10000)
      reading.wait()
      assert.is_true(assert(c:receive(8 * MiB)) == bytes(0, 8 * MiB))
      c:close()
      lst:close()
      idle_metrics()
      return out[1], out[2]
    end)
    assert.are.same({ nil, "timeout" }, r1)
    assert.are.same({ true }, r2)
    all_released_once(S)
  end)

  it("a flush waiting for guards returns \"closed\" when another task closes", function()
    local S, res = run_s(function()
      local r = filled_region(8 * MiB)
      local out
      local lst, port = server(function(c)
        assert(c:send_nowait(r:slice(0, 8 * MiB)))
        local t = ringline.spawn(function() out = { c:flush() } end)
        ringline.sleep(0)                 -- the flusher parks
        c:close("reset")
        t:join()
      end)
      local c = connect(port)
      c:receive("*a")
      c:close()
      lst:close()
      idle_metrics()
      return out
    end)
    assert.are.same({ nil, "closed" }, res)
    all_released_once(S)
  end)

  it("Lua strings at or above zc_threshold go zero-copy (anchored), smaller ones are copied", function()
    local S, d_small, d_big, d_plain, thr = run_s(function()
      local thr = ringline.config("zc_threshold")
      local r = filled_region(4096)
      local small = bytes(0, thr - 1)
      local big = bytes(0, thr)
      local out = {}
      local lst, port = server(function(c)
        local tiny = r:slice(0, 16)                  -- a slice below the threshold: copied
        local function zc(...)
          local before = ringline.metrics().zc_sends
          local st0 = region.stats(sched.state()).anchored
          assert(c:send(...))
          assert(c:flush())
          return ringline.metrics().zc_sends - before, region.stats(sched.state()).anchored - st0
        end
        out.small = { zc(tiny, small) }
        out.big = { zc(tiny, big) }
        out.plain = { zc(big) }                      -- alone, no slice: zero-copy too
        -- nothing guarded, one part and four: queued in order all the same
        out.one = { zc(tiny) }
        out.four = { zc(tiny, "-", { small, tiny }) }
      end)
      local c = connect(port)
      c:settimeout(10000)
      local want = bytes(0, 16) .. small .. bytes(0, 16) .. big .. big
        .. bytes(0, 16) .. bytes(0, 16) .. "-" .. small .. bytes(0, 16)
      assert.is_true(assert(c:receive(#want)) == want)
      c:close()
      lst:close()
      idle_metrics()
      assert.are.same({ 0, 0 }, out.one)
      assert.are.same({ 0, 0 }, out.four)
      return out.small, out.big, out.plain, thr
    end, { zc_threshold = 4096 })
    assert.are.equal(4096, thr)
    assert.are.same({ 0, 0 }, d_small)
    assert.are.same({ 1, 1 }, d_big)
    assert.are.same({ 1, 1 }, d_plain)
    local st = all_released_once(S)
    assert.are.equal(2, st.anchored)
  end)

  it("misuse inside a guarded send raises, queues nothing and leaves no anchor", function()
    local S, e1, e2, e3 = run_s(function()
      local r = filled_region(MiB)
      local errs = {}
      local lst, port = server(function(c)
        local s = r:slice(0, 8192)
        local ok
        ok, errs[1] = pcall(function() local n = c:send("a", s, true) return n end)
        assert.is_false(ok)
        local cyc = { s }
        cyc[2] = cyc
        ok, errs[2] = pcall(c.send, c, cyc)
        assert.is_false(ok)
        local r2 = assert(ringline.region(4096))
        local s2 = r2:slice(0, 4096)
        assert.is_true(r2:free())
        ok, errs[3] = pcall(c.send, c, s, s2)
        assert.is_false(ok)
        assert.are.equal(0, c.guards)
        assert.are.equal(0, c.io.unsent)
        assert(c:send("ok"))
      end)
      local c = connect(port)
      assert.are.equal("ok", c:receive("*a"))
      c:close()
      lst:close()
      idle_metrics()
      return errs[1], errs[2], errs[3]
    end)
    assert.matches("region_spec.lua:%d+: ringline: conn:send: cannot send a boolean", e1)
    assert.matches("nested too deep", e2)
    assert.matches("a slice of a freed region", e3)
    local st = all_released_once(S)
    assert.are.equal(0, st.anchored)
  end)
end)
