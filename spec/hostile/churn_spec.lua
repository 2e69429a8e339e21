-- Connection churn: hundreds of connections opened and ended every way a
-- peer can (a full request, a reset before sending, a reset mid-line, a
-- half-close) leave the worker's gauges back at idle, as a fresh server
-- reports them: one connection (the one asking), one task, nothing queued,
-- no timer, no accumulator but the asking connection's.
local ringline = require "ringline"
local support = require "support"
local H = require "hostile.host"

-- waves of 50 connections; bench/soak.sh raises it
local WAVES = tonumber(os.getenv("RINGLINE_CHURN_WAVES")) or 8

local SERVER = [[
local ringline = require "ringline"
local lst = assert(ringline.listen("127.0.0.1:0", function(c)
  for line in c:lines() do
    if line == "stats" then
      local m = ringline.metrics()
      c:send(("open=%d tasks=%d queued=%d timers=%d accum=%d slab=%d\n"):format(m.conns_open,
        m.tasks, m.send_bytes_queued, m.timers_active, m.accum_bytes, m.slab_used))
    else
      c:send("ok ", line, "\n")
    end
  end
end))
local host, port = lst:getsockname()
print("listening on " .. host .. ":" .. port)
]]

describe("hostile: connection churn", function()
  teardown(H.cleanup)

  it("leaves the metrics back at idle", function()
    local srv, port = H.serve(H.file(SERVER))
    local ok, res = pcall(support.run, function()
      local function stats()
        local c = support.connect(port, { timeout = 5 })
        c:settimeout(5000)
        assert(c:send("stats\n"))
        local line = c:receive("*l")
        c:close()
        return line
      end
      -- idle as the fresh server reports it (its own asking connection's
      -- receive buffer included)
      local IDLE = stats()
      local served = 0
      local function one(i)
        local c = support.connect(port, { timeout = 5 })
        c:settimeout(5000)
        local kind = i % 4
        if kind == 0 then
          assert(c:send("req ", i, "\n"))
          if c:receive("*l") == "ok req " .. i then served = served + 1 end
          c:close()
        elseif kind == 1 then
          c:close("reset")
        elseif kind == 2 then
          assert(c:send("partial line without its end"))
          c:close("reset")
        else
          assert(c:send("last ", i, "\n"))
          c:shutdown("send")
          if c:receive("*l") == "ok last " .. i then served = served + 1 end
          c:close()
        end
      end
      for wave = 0, WAVES - 1 do
        local ts = {}
        for i = 1, 50 do ts[i] = ringline.spawn(one, wave * 50 + i) end
        for i = 1, 50 do assert(ts[i]:join()) end
      end
      -- the server's closes complete on its own time: ask until idle (bounded)
      local last
      local idle = support.eventually(function()
        last = stats()
        return last == IDLE
      end, 10)
      return { served, idle, last, IDLE }
    end, { timeout = 60 + WAVES * 2 })
    local code, _, err = srv:stop()
    assert(ok, res)
    assert.are.equal(WAVES * 25, res[1])
    -- the stats connection's task may keep its read deadline's timer (lazy)
    assert.matches("^open=1 tasks=1 queued=0 timers=[01] accum=%d+ slab=0$", res[4])
    assert.is_true(res[2], "not idle: " .. tostring(res[3]) .. " (idle: " .. res[4] .. ")")
    assert.are.equal(0, code, err)
  end)
end)
