-- After a burst of tasks (connection handlers) ends, the loop gives the
-- memory back once it goes idle: a full collection, the scheduler's tables
-- that grew with the burst copied to their live entries, rl_worker_trim
-- (docs/operations.md, "Memory per connection"). Small bursts do not.
local ringline = require "ringline"
local sched = require "ringline.sched"

local function count(t)
  local n = 0
  for _ in pairs(t) do n = n + 1 end
  return n
end

local function burst(n)
  local ts = {}
  for i = 1, n do ts[i] = ringline.spawn(function() ringline.sleep(0) end) end
  for i = 1, n do assert(ts[i]:join()) end
end

describe("the trim after a burst", function()
  it("compacts the scheduler's tables once the loop is idle, and only after a big burst", function()
    ringline.run(function()
      local S = sched.state()
      local live0 = S.live
      burst(100)                 -- below the trim's minimum: left alone
      ringline.sleep(0.001)      -- the loop goes idle
      assert.are.equal(live0, S.live)
      burst(600)                 -- 600 tasks, then 1 (main): a burst ended
      assert.is_true(S.trim_due)
      ringline.sleep(0.001)      -- idle: the trim runs before the poll blocks
      assert.is_false(S.trim_due)
      assert.are_not.equal(live0, S.live)
      assert.are.equal(1, count(S.live))   -- the main task alone
      assert.are.equal(1, S.task_peak)
      -- and the scheduler goes on working
      burst(10)
      assert.are.equal(1, count(S.live))
    end)
  end)
end)

describe("the connection object", function()
  it("has at most 32 fields when made (33 double its hash part: 768 bytes per idle connection)", function()
    local n
    ringline.run(function()
      local lst = assert(ringline.listen("127.0.0.1:0", function(c)
        n = 0
        for _ in pairs(c) do n = n + 1 end
        -- and the fields made false from the start count too: pairs sees them
      end))
      local _, port = lst:getsockname()
      local c = assert(ringline.connect("127.0.0.1", port))
      c:receive(1)
      c:close()
      lst:close()
    end)
    assert.is_true(n ~= nil and n <= 32, ("%s fields"):format(tostring(n)))
  end)
end)
