-- Hostile peers: slow and stalled readers must not make the server's send
-- memory grow with connections x body size (issue 17, defect 7).
--
-- - More concurrent zero-copy senders than send slab entries, to readers
--   that do not read: the senders wait for an entry (no part is copied onto
--   the heap), and every byte arrives intact once the readers read.
-- - One copied send of a 64 MiB string to a peer that reads slowly: the
--   queue never holds more than the high watermark plus one send slot.
local ffi = require "ffi"
local ringline = require "ringline"
local support = require "support"
local region = require "ringline.region"
local sched = require "ringline.sched"

local run, server, connect = support.run, support.server, support.connect

local MiB = 1048576

-- run(fn) that also returns the run's state (for region.stats after it).
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
      and m.conns_open == 0 and m.send_heap_bytes == 0
  end)
  local m = ringline.metrics()
  assert(ok, ("not idle: slab_used %d, guards_outstanding %d, send_bytes_queued %d, "
    .. "conns_open %d, send_heap_bytes %d"):format(m.slab_used, m.guards_outstanding,
    m.send_bytes_queued, m.conns_open, m.send_heap_bytes))
  return m
end

describe("hostile: slow readers", function()
  it("more zero-copy senders than slab entries wait for an entry; nothing is copied", function()
    local N, BODY, ENTRIES = 12, 2 * MiB, 4
    local body = support.pattern(BODY, 7)
    local S, peak = run_s(function()
      local r = assert(ringline.region(BODY))
      ffi.copy(r:ptr(), body, BODY)
      local entered, all_in = 0, support.event()
      local results = {}
      local lst, port = server(function(c)
        local id = assert(c:receive("*l"))
        entered = entered + 1
        -- the last one: main runs once this handler's send has parked too
        if entered == N then all_in.set() end
        local n, err = c:send("H" .. id .. "\n", r:slice(0, BODY), "T" .. id .. "\n")
        if n then n, err = c:flush() end
        results[#results + 1] = n and true or err
      end)
      -- readers that say who they are and then read nothing until told
      local go = support.event()
      local readers = {}
      for i = 1, N do
        readers[i] = ringline.spawn(function()
          local c = connect(port)
          c:settimeout(20000)
          assert(c:send(i .. "\n"))
          go.wait()
          local got = assert(c:receive("*a"))
          c:close()
          return got == "H" .. i .. "\n" .. body .. "T" .. i .. "\n"
        end)
      end
      all_in.wait()
      -- every sender is in send now: at most ENTRIES entries are in use and
      -- the others wait for one; the bodies are not copied to the heap
      local m = ringline.metrics()
      local at_peak = { heap = m.send_heap_bytes, fallbacks = m.zc_fallbacks,
                        waits = m.slab_waits, slab = m.slab_used, done = #results }
      go.set()
      local good = 0
      for i = 1, N do
        local ok, same = readers[i]:join()
        assert(ok, same)
        if same then good = good + 1 end
      end
      assert.are.equal(N, good)
      assert.are.same({}, (function()
        local bad = {}
        for _, v in ipairs(results) do if v ~= true then bad[#bad + 1] = v end end
        return bad
      end)())
      assert.are.equal(N, #results)
      lst:close()
      idle_metrics()
      assert.is_true(r:free())
      return at_peak
    end, { timeout = 60, send_slab_entries = ENTRIES })
    assert.are.equal(0, peak.fallbacks, "guarded parts copied because the slab was full")
    assert.is_true(peak.heap < BODY, ("%d bytes of send queue on the heap"):format(peak.heap))
    assert.is_true(peak.slab <= ENTRIES)
    assert.is_true(peak.waits > 0, "no sender waited for a slab entry")
    assert.are.equal(0, peak.done, "a send returned while its body could not be queued")
    local st = region.stats(S)
    assert.are.equal(0, st.unknown)
    assert.are.equal(0, st.out)
    assert.are.equal(0, st.dropped)
    assert.are.equal(N, st.anchored)
    assert.are.equal(N, st.released)
  end)

  it("a send waiting for a slab entry times out cleanly: its tokens go back, others go on", function()
    local BODY = 16 * MiB
    local S, res = run_s(function()
      local r = assert(ringline.region(BODY))
      local go, hold_done = support.event(), support.event()
      local out = {}
      local lst, port = server(function(c)
        local who = assert(c:receive("*l"))
        if who == "holder" then
          -- the only entry, held: its peer does not read yet
          out.holder = { c:send(r:slice(0, BODY)) }
          hold_done.set()
        else
          go.wait()
          c:settimeout(50)
          out.waiter = { c:send("x", r:slice(0, 65536)) }
          c:settimeout(5000)
          out.after = { c:send("plain\n") }   -- the lock was released
          local g = sched.state().rguards
          out.tokens = { top = g.top, free = g.nfree }
        end
      end)
      local holder = connect(port)
      holder:settimeout(20000)
      assert(holder:send("holder\n"))
      local waiter = connect(port)
      waiter:settimeout(20000)
      assert(waiter:send("waiter\n"))
      assert(support.eventually(function() return ringline.metrics().slab_used == 1 end))
      go.set()
      -- the copied part before the guarded one was queued (a prefix, as documented)
      assert.are.equal("xplain", assert(waiter:receive("*l")))
      waiter:close()
      assert.are.equal(BODY, #assert(holder:receive(BODY)))
      hold_done.wait()
      holder:close()
      lst:close()
      idle_metrics()
      assert.is_true(r:free())
      return out
    end, { timeout = 30, send_slab_entries = 1 })
    assert.are.same({ nil, "timeout" }, res.waiter)
    assert.are.same({ 6 }, res.after)
    assert.are.same({ BODY }, res.holder)
    -- at that moment only the holder's guard was out: every other token was back
    assert.are.equal(res.tokens.top - 1, res.tokens.free)
    local st = region.stats(S)
    assert.are.equal(0, st.unknown)
    assert.are.equal(0, st.out)
    assert.are.equal(st.anchored, st.released)
  end)

  it("a 64 MiB copied send queues at most the high watermark plus one slot at a time", function()
    local BLOCK, NBLOCKS = MiB, 64
    local base = support.pattern(BLOCK, 3)
    local blocks = {}
    for i = 1, NBLOCKS do blocks[i] = ("%08d"):format(i) .. base:sub(9) end
    local big = table.concat(blocks)
    blocks = nil
    local HI, SLOT = 65536, 16384
    local res = run(function()
      local sent
      local lst, port = server(function(c)
        sent = { c:send(big) }
        assert(c:flush())
      end)
      local c = connect(port)
      c:settimeout(20000)
      local max_queued, max_heap, parts, n = 0, 0, {}, 0
      while n < #big do
        local s = assert(c:receive(math.min(65536, #big - n)))
        parts[#parts + 1] = s
        n = n + #s
        local m = ringline.metrics()
        if m.send_bytes_queued > max_queued then max_queued = m.send_bytes_queued end
        if m.send_heap_bytes > max_heap then max_heap = m.send_heap_bytes end
      end
      local same = table.concat(parts) == big
      c:close()
      lst:close()
      idle_metrics()
      return { same = same, max_queued = max_queued, max_heap = max_heap, sent = sent }
    end, { timeout = 60, send_high_watermark = HI, send_low_watermark = SLOT,
           send_slot_size = SLOT,
           zc_threshold = 2 ^ 30 })   -- the copy path: at 16 KiB the string would go zero-copy
    assert.is_true(res.same, "the 64 MiB arrived changed")
    assert.are.equal(#big, res.sent[1])
    assert.is_true(res.max_queued <= HI + SLOT,
      ("%d bytes queued at once, bound %d"):format(res.max_queued, HI + SLOT))
    -- the chunk being sent and the next piece
    assert.is_true(res.max_heap <= 2 * (HI + SLOT),
      ("%d bytes of heap chunks at once"):format(res.max_heap))
  end)

  it("a big copied piece beside a slice is bounded the same way", function()
    -- A string.buffer is always copied, also in a send that holds a slice
    -- (one guarded send): it must not be queued whole either.
    local SIZE = 8 * MiB
    local big = support.pattern(SIZE, 5)
    local HI, SLOT = 65536, 16384
    local res = run(function()
      local r = assert(ringline.region(4096))
      ffi.fill(r:ptr(), 4096, 0x41)
      local sent
      local lst, port = server(function(c)
        local buf = require("string.buffer").new():put(big)
        sent = { c:send(r:slice(0, 4096), buf, "end\n") }
        assert(c:flush())
      end)
      local c = connect(port)
      c:settimeout(20000)
      local max_queued, parts, n, want = 0, {}, 0, 4096 + SIZE + 4
      while n < want do
        local s = assert(c:receive(math.min(65536, want - n)))
        parts[#parts + 1] = s
        n = n + #s
        local m = ringline.metrics()
        if m.send_bytes_queued > max_queued then max_queued = m.send_bytes_queued end
      end
      local same = table.concat(parts) == ("A"):rep(4096) .. big .. "end\n"
      c:close()
      lst:close()
      idle_metrics()
      assert.is_true(r:free())
      return { same = same, max_queued = max_queued, sent = sent }
    end, { timeout = 60, send_high_watermark = HI, send_low_watermark = SLOT,
           send_slot_size = SLOT, zc_threshold = 1024 })
    assert.is_true(res.same, "the bytes arrived changed")
    assert.are.same({ 4096 + SIZE + 4 }, res.sent)
    -- the slice (in flight until the peer reads it) and the bound
    assert.is_true(res.max_queued <= 4096 + HI + SLOT,
      ("%d bytes queued at once, bound %d"):format(res.max_queued, 4096 + HI + SLOT))
  end)
end)
