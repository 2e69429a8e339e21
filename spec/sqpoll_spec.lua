-- SQPOLL (issue 15): --set sqpoll=1 makes the worker's ring with a kernel
-- polling thread (RL_FEAT_SQPOLL), probed; a kernel that refuses it
-- (here: a CPU that does not exist for sqpoll_cpu) leaves the default ring
-- and the run goes on. The whole suite runs with it too:
-- RINGLINE_SQPOLL=1 busted --lua=luajit (docs/operations.md, "SQPOLL").
local ringline = require "ringline"
local support = require "support"
local sched = require "ringline.sched"
local C = require "ringline.lib"

local run, server, connect = support.run, support.server, support.connect

local function features()
  local S = sched.state()
  return C.rl_worker_features(S.w or sched.start(S))
end

-- 300 line round trips and a 1 MiB echo through one connection.
local function echo_run()
  local lst, port = server(function(c)
    while true do
      local l = c:receive("*l")
      if not l then return end
      assert(c:send(l, "\n"))
    end
  end)
  local c = connect(port)
  c:settimeout(10000)
  for i = 1, 300 do
    assert(c:send("line ", i, "\n"))
    assert.are.equal("line " .. i, c:receive("*l"))
  end
  local big = support.pattern(1048576, 9):gsub("\n", " ")
  assert(c:send(big, "\n"))
  assert.is_true(c:receive("*l") == big)
  c:close()
  lst:close()
  assert(support.eventually(function() return ringline.metrics().conns_open == 0 end))
end

describe("sqpoll", function()
  it("=1 gives a ring with an SQ polling thread that serves as the default one does", function()
    local f = run(function()
      echo_run()
      return features()
    end, { sqpoll = 1 })
    assert.are_not.equal(0, bit.band(f, C.RL_FEAT_SQPOLL))
  end)

  it("is off by default", function()
    local f, cpu = run(function() return features(), ringline.config("sqpoll_cpu") end)
    if os.getenv("RINGLINE_SQPOLL") ~= "1" then
      assert.are.equal(0, bit.band(f, C.RL_FEAT_SQPOLL))
    end
    assert.are.equal(C.RL_SQPOLL_ANY_CPU, cpu)
  end)

  it("refused by the kernel (a CPU that does not exist) falls back to the default ring", function()
    local f = run(function()
      echo_run()
      return features()
    end, { sqpoll = 1, sqpoll_cpu = 65534 })
    assert.are.equal(0, bit.band(f, C.RL_FEAT_SQPOLL))
  end)

  it("rejects values out of range", function()
    assert.has_error(function() ringline.run({ sqpoll = 2 }, function() end) end)
    assert.has_error(function() ringline.run({ sqpoll_cpu = 65536 }, function() end) end)
  end)
end)
