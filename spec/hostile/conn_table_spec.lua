-- The connection table under a flood of idle connections: refused when
-- full by default; with shed_idle=1 the longest-idle connection is reset
-- to keep room for the next peer, and each shed is counted
-- (ringline.metrics().conns_shed).
local support = require "support"
local H = require "hostile.host"

local SERVER = [[
local ringline = require "ringline"
local lst = assert(ringline.listen("127.0.0.1:0", function(c)
  c:send("hi\n")                  -- sent once the handler has parked below
  for line in c:lines() do
    local m = ringline.metrics()
    c:send(("shed=%d\n"):format(m.conns_shed))
  end
end))
local host, port = lst:getsockname()
print("listening on " .. host .. ":" .. port)
]]

-- n idle clients (each greeted: its handler is parked in a receive), then
-- what happens to the first and to one more.
local function flood(port, n)
  return support.run(function()
    local idle = {}
    for i = 1, n do
      idle[i] = support.connect(port, { timeout = 5 })
      idle[i]:settimeout(5000)
      assert(idle[i]:receive("*l") == "hi")
    end
    local extra = support.connect(port, { timeout = 5 })
    extra:settimeout(5000)
    local greet, gerr = extra:receive("*l")
    local stats
    if greet then
      assert(extra:send("stats\n"))
      stats = extra:receive("*l")
    end
    -- the first (the longest idle): still open, or reset by the server
    idle[1]:settimeout(200)
    local d, ferr = idle[1]:receive("*l")
    for i = 1, n do idle[i]:close() end
    extra:close()
    return { greet or gerr, stats, d or ferr }
  end, { timeout = 30 })
end

describe("hostile: a full connection table", function()
  teardown(H.cleanup)

  it("refuses the next peer by default", function()
    local srv, port = H.serve("--set max_connections=8 " .. H.file(SERVER))
    local ok, r = pcall(flood, port, 8)
    local code, _, err = srv:stop()
    assert(ok, r)
    assert.is_truthy(r[1] == "closed" or r[1]:find("reset"), r[1])
    assert.are.equal("timeout", r[3])       -- the first is untouched
    assert.are.equal(0, code, err)
  end)

  it("with shed_idle=1 resets the longest-idle connection and serves the new one", function()
    local srv, port = H.serve("--set max_connections=8 --set shed_idle=1 " .. H.file(SERVER))
    local ok, r = pcall(flood, port, 8)
    local code, _, err = srv:stop()
    assert(ok, r)
    assert.are.equal("hi", r[1])
    -- one slot is kept free: the 7th accept shed the 1st, the 8th the
    -- 2nd, the extra one the 3rd
    assert.are.equal("shed=3", r[2])
    assert.is_truthy(r[3] == "closed" or r[3]:find("reset"), r[3])
    assert.are.equal(0, code, err)
  end)
end)
