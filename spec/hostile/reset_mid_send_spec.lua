-- Hostile peers: resets in the middle of sends, zero-copy ones included,
-- while other senders wait for a send slab entry or for room under the
-- high watermark. Every send ends with an error (never hangs), every guard
-- handed to the core comes back exactly once, every token the Lua layer
-- made (including those of parts that never got an entry) is returned, and
-- the worker's gauges are back at idle.
local ffi = require "ffi"
local ringline = require "ringline"
local support = require "support"
local region = require "ringline.region"
local sched = require "ringline.sched"

local run, server, connect = support.run, support.server, support.connect

local MiB = 1048576

describe("hostile: resets mid-send", function()
  it("zero-copy and big copied sends to peers that reset: guards back once, metrics idle", function()
    -- bodies far beyond what loopback buffers for a peer that does not read
    local N, BODY, ENTRIES = 12, 16 * MiB, 4
    local S, results, m, tokens = nil, nil, nil, nil
    run(function()
      S = sched.state()
      local r = assert(ringline.region(BODY))
      ffi.fill(r:ptr(), BODY, 120)
      local big = ("y"):rep(16 * MiB)
      local entered, all_in = 0, support.event()
      local out = {}
      local lst, port = server(function(c)
        local id = tonumber(assert(c:receive("*l")))
        entered = entered + 1
        if entered == N then all_in.set() end
        local n, err
        if id % 3 == 0 then
          n, err = c:send(big)                                  -- copied, progressive
        else
          n, err = c:send("H\n", r:slice(0, BODY), { r:slice(0, 65536), "T\n" })
        end
        if n then n, err = c:flush() end
        out[id] = n and "sent" or err
      end)
      local peers = {}
      for i = 1, N do
        peers[i] = ringline.spawn(function()
          local c = connect(port)
          c:settimeout(20000)
          assert(c:send(i .. "\n"))
          all_in.wait()
          -- some bytes first, for half of them; then a reset
          if i % 2 == 0 then assert(c:receive(1000)) end
          c:close("reset")
        end)
      end
      for i = 1, N do assert(peers[i]:join()) end
      assert(support.eventually(function()
        local k = 0
        for _ in pairs(out) do k = k + 1 end
        return k == N
      end, 20), "a send did not end after its peer reset")
      lst:close()
      assert(support.eventually(function()
        local mm = ringline.metrics()
        return mm.slab_used == 0 and mm.guards_outstanding == 0 and mm.send_bytes_queued == 0
          and mm.conns_open == 0 and mm.send_heap_bytes == 0
      end))
      m = ringline.metrics()
      local g = S.rguards
      tokens = { top = g.top, free = g.nfree, waiting = S.slabq and #S.slabq or 0 }
      results = out
      assert.is_true(r:free())
    end, { timeout = 60, send_slab_entries = ENTRIES })
    for i = 1, N do
      assert.are_not.equal("sent", results[i], "send " .. i .. " succeeded to a peer that reset")
      assert.is_string(results[i])
    end
    assert.are.equal(0, m.zc_fallbacks)
    assert.is_true(m.slab_waits > 0, "no sender waited for a slab entry")
    local st = region.stats(S)
    assert.are.equal(0, st.unknown, "releases of tokens that were not outstanding")
    assert.are.equal(0, st.out)
    assert.are.equal(0, st.dropped)
    assert.are.equal(st.anchored, st.released)
    assert.is_true(st.anchored > 0)
    assert.are.equal(tokens.top, tokens.free, "tokens of parts never queued were not returned")
    assert.are.equal(0, tokens.waiting, "a sender left in the slab queue")
  end)
end)
