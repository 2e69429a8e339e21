-- The host's watchdog: a task that does not yield stops its worker's loop;
-- the watchdog names the worker and where the task started, counts it in
-- ringline.metrics(), and with watchdog_abort=1 aborts the process.
local H = require "hostile.host"

describe("hostile: watchdog", function()
  teardown(H.cleanup)

  it("reports a loop that stopped turning, with the worker and the task's start, and counts it", function()
    local s = H.file([[
local ringline = require "ringline"
local function busy()            -- line 2: what the report names
  local t = os.clock()
  while os.clock() - t < 1.2 do end
end
ringline.sleep(0.01)
local t = ringline.spawn(busy)
t:join()
print("stalls " .. ringline.metrics().watchdog_stalls)
]])
    local code, out, err = H.run("--set watchdog_timeout=300 " .. s)
    assert.are.equal(0, code, err)
    -- every report is counted (a start-up slower than 300 ms on a loaded
    -- machine is one too); one of them names busy
    local lines, named = 0, nil
    for line in err:gmatch("[^\n]*watchdog[^\n]*") do
      lines = lines + 1
      if line:find(s:match("[^/]+$") .. ":2", 1, true) then named = line end
    end
    assert.are.equal("stalls " .. lines, out:match("stalls %d+"), err)
    assert.is_not_nil(named, err)
    assert.matches("worker 0", named, 1, true)
  end)

  it("stays quiet for a worker that waits (idle is not a stall)", function()
    -- 1.5 s of waiting is more than one timeout; nothing is reported,
    -- the start-up included (before the fix of watch_seen.h a watchdog
    -- thread that first looked after the worker published reported it
    -- at once, as stalled since the clock's epoch)
    local s = H.file([[
local ringline = require "ringline"
ringline.sleep(1.5)
print("stalls " .. ringline.metrics().watchdog_stalls)
]])
    local code, out, err = H.run("--set watchdog_timeout=1000 " .. s)
    assert.are.equal(0, code, err)
    assert.matches("stalls 0", out, 1, true)
    assert.is_nil(err:find("watchdog", 1, true), err)
  end)

  it("with watchdog_abort=1 aborts the process on a handler that never yields", function()
    local s = H.file([[
local ringline = require "ringline"
local lst = assert(ringline.listen("127.0.0.1:0", function(c)
  while true do end
end))
local _, port = lst:getsockname()
local c = assert(ringline.connect("127.0.0.1", port))
ringline.sleep(30)
]])
    local code, _, err = H.run("-w 2 --set watchdog_timeout=200 --set watchdog_abort=1 " .. s,
      nil, nil, "ulimit -c 0")
    assert.are.equal(128 + 6, code, err)   -- SIGABRT
    local line = err:match("[^\n]*watchdog[^\n]*")
    assert.is_not_nil(line, err)
    assert.matches("aborting", line, 1, true)
    assert.matches(s:match("[^/]+$") .. ":2", line, 1, true)
  end)

  it("is configurable and on by default (5 s)", function()
    local keys = require("ringline").config_keys()
    assert.are.equal(5000, keys.watchdog_timeout.default)
    assert.are.equal(0, keys.watchdog_abort.default)
  end)
end)
